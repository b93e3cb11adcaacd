//! Race: `track` turning a caught-up shape pending (the `c - 1` raise) against a concurrent
//! `flushed` of the same shape.
//!
//! Shape `a` was sent commit 3 and has made 2 durable; `b` is caught up at 3. One thread
//! reports `a.flushed(3)` (catching `a` up), the other runs `track(5, [a])`. If the report
//! happened before the track, `a` was caught up when 5 arrived, so it is durable up to 4 (the
//! raise) and the watermark is exactly 4. If they race, the track may miss the report and the
//! watermark may be 3 until the next report, never more than 4.
//!
//! Checked in every interleaving:
//! - safety: the watermark never passes 4 (commit 5 is not durable in `a`);
//! - exactness: when the report happened-before the track (seen through a flag the reporting
//!   thread sets with `Release` after `flushed` returns), the watermark is exactly 4;
//! - the next report restores exactness: after `flushed_partial(5)` the watermark is 4.
//!
//! Bound: preemption bound 3. The race has two threads of one short operation each (track
//! is about a dozen loom steps, flushed about five); three preemptions let the reporter run
//! between any two steps of the track and back, which covers every placement of its `reported`
//! store relative to the track's loads, and loom explores every value each load may return
//! under the C11 model regardless of the bound.
#![cfg(loom)]

use flushwatch_loom_tests::{explore, safe_bound, tracker, ShapeFacts};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;

#[test]
fn raise_vs_concurrent_flushed() {
    explore(3, || {
        let (t, _mock) = tracker();
        let a = t.register("a").unwrap();
        let b = t.register("b").unwrap();
        t.track(3, &[a.id(), b.id()]).unwrap(); // a: sent 3, flushed 2 (the raise from 0)
        b.flushed(3);
        let a_id = a.id();

        let reported = Arc::new(AtomicBool::new(false));
        let writer = {
            let reported = reported.clone();
            thread::spawn(move || {
                a.flushed(3);
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
                let tracked = t.track(5, &[a_id]).unwrap();
                assert_eq!((tracked.tracked, tracked.skipped), (1, 0));
                before
            })
        };
        let a = writer.join().unwrap();
        let report_before_track = producer.join().unwrap();

        let r = t.scan();
        let bound = safe_bound(&[
            ShapeFacts {
                tracked: &[3, 5],
                durable: 3,
                live: true,
            },
            ShapeFacts {
                tracked: &[3],
                durable: 3,
                live: true,
            },
        ]);
        assert_eq!(bound, 4);
        assert!(r.watermark <= bound, "unsafe: {} > {bound}", r.watermark);
        assert!(r.watermark >= 3, "a reported 3 and b is caught up");
        if report_before_track {
            assert_eq!(r.watermark, 4, "a caught-up shape is raised to c - 1");
        }
        let s = t.status(&"a").unwrap();
        assert_eq!((s.sent, s.pending), (5, true));

        // The next report restores exactness.
        a.flushed_partial(5);
        assert_eq!(t.scan().watermark, 4);
        a.flushed(5);
        assert_eq!(t.scan().watermark, 5);
        drop(b);
    });
}
