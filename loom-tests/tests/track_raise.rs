//! Race: `track` turning a caught-up shape pending (the raise to the previous commit) against a
//! concurrent `flushed` of the same shape.
//!
//! Positions are sparse: start_at 0, commits 10, 18 (for `b` only) and 25. Shape `a` was sent
//! commit 10 and has made nothing durable (flushed 0, the raise to `start_at`); `b` was sent 10
//! and 18 and is caught up at 18; `last_seen` is 18. One thread reports `a.flushed(10)`
//! (catching `a` up), the other runs `track(25, [a])`. If the report happened before the
//! track, `a` was caught up when 25 arrived, so it is durable up to the previous commit, 18
//! (the raise: commit 18 did not touch `a`), and the watermark is exactly 18. If they race,
//! the track may miss the report and the watermark may be 10 until the next report, never
//! more than 18, and never 24: `c - 1` is not a position (it would acknowledge part of 25).
//!
//! Checked in every interleaving:
//! - safety: the watermark is a tracked commit or start_at and never passes 18 (commit 25 is
//!   not durable in `a`);
//! - exactness: when the report happened-before the track (seen through a flag the reporting
//!   thread sets with `Release` after `flushed` returns), the watermark is exactly 18;
//! - `track` returns `previous == 18`, and the next report of it (what a consumer that wrote
//!   everything before 25 reports: `flushed(previous)`) restores exactness.
//!
//! Bound: preemption bound 3. The race has two threads of one short operation each (track
//! is about a dozen loom steps, flushed about five); three preemptions let the reporter run
//! between any two steps of the track and back, which covers every placement of its `reported`
//! store relative to the track's loads, and loom explores every value each load may return
//! under the C11 model regardless of the bound.
#![cfg(loom)]

use flushwatch_loom_tests::{assert_safe, explore, tracker, ShapeFacts};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;

const POSITIONS: [u64; 4] = [0, 10, 18, 25];

#[test]
fn raise_vs_concurrent_flushed() {
    explore(3, || {
        let (t, _mock) = tracker();
        let a = t.register("a").unwrap();
        let b = t.register("b").unwrap();
        t.track(10, &[a.id(), b.id()]).unwrap(); // a: sent 10, flushed 0 (the raise to start_at)
        t.track(18, &[b.id()]).unwrap();
        b.flushed(18);
        let a_id = a.id();

        let reported = Arc::new(AtomicBool::new(false));
        let writer = {
            let reported = reported.clone();
            thread::spawn(move || {
                a.flushed(10);
                // Release: pairs with the producer's Acquire load; "the report returned".
                reported.store(true, Ordering::Release);
                a
            })
        };
        let producer = {
            let t = t.clone();
            let reported = reported.clone();
            thread::spawn(move || {
                // Acquire: pairs with the writer's Release store above.
                let before = reported.load(Ordering::Acquire);
                let tracked = t.track(25, &[a_id]).unwrap();
                assert_eq!(
                    (tracked.tracked, tracked.skipped, tracked.previous),
                    (1, 0, 18)
                );
                before
            })
        };
        let a = writer.join().unwrap();
        let report_before_track = producer.join().unwrap();

        let r = t.scan();
        let bound = assert_safe(
            r.watermark,
            &POSITIONS,
            &[
                ShapeFacts {
                    tracked: &[10, 25],
                    durable: 10,
                    live: true,
                },
                ShapeFacts {
                    tracked: &[10, 18],
                    durable: 18,
                    live: true,
                },
            ],
            &r,
        );
        assert_eq!(bound, 18);
        assert!(
            r.watermark == 10 || r.watermark == 18,
            "a reported 10 and b is caught up: {r:?}"
        );
        if report_before_track {
            assert_eq!(
                r.watermark, 18,
                "a caught-up shape is raised to the previous commit"
            );
        }
        let s = t.status(&"a").unwrap();
        assert_eq!((s.sent, s.pending), (25, true));
        assert_eq!(s.flushed, r.watermark);

        // The next report restores exactness: the consumer wrote everything before 25.
        a.flushed(18);
        assert_eq!(t.scan().watermark, 18);
        a.flushed(25);
        assert_eq!(t.scan().watermark, 25);
        assert_eq!(t.watermark(), 25);
        drop(b);
    });
}
