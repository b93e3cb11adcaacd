//! Race: `flushed` (the hot path) against a `scan` computing and publishing the watermark.
//!
//! Sparse positions: `a` was sent commits 10 and 25 and has made nothing durable (flushed 0,
//! the raise to start_at); `b` is caught up at 25. The mock clock is 10 ms past `a`'s last
//! progress, with a grace of 1 ms: to a scan that does not see new progress, `a` is overdue.
//! One thread reports `a.flushed(10)` (partial progress, the `previous` of 25: commit 25 is
//! still not durable); the other scans.
//!
//! - `flushed_vs_scan`: exact (mock) ticks: a new position must come with its new tick.
//! - `flushed_vs_scan_coarse_ticks`: the real-clock rule, on a mock clock with
//!   `Config::coarse_ticks(true)`: ticks are what the last scan published, and idleness is
//!   judged from what scans saw (a scan at 0 ms saw `a` pending; this one is at 10 ms). The
//!   cadence rule: progress first seen by a scan is never overdue in that scan, whatever the
//!   time since the previous scan.
//!
//! Checked in every interleaving:
//! - safety: the watermark is start_at or a tracked commit and never passes 10;
//! - the scan sees either the old position (watermark 0) or the new one (10), and when the
//!   report returned before the scan started (a flag with `Release`/`Acquire`), the new one;
//! - a new position never comes with an old tick (or, coarse, is never judged idle): a scan
//!   that saw position 10 did not suspect `a`;
//! - progress clears suspicion: if the scan suspected `a` concurrently with the report, the
//!   next scan answers it, and `a` is never stalled;
//! - the published watermark never decreases.
//!
//! Bound: preemption bound 3: the report is five loom steps and the scan visits two slots;
//! three preemptions place the report's two stores anywhere among the scan's loads of `a`'s
//! slot (and vice versa). Loom explores every value each load may return regardless.
#![cfg(loom)]

use std::time::Duration;

use flushwatch::FlushTracker;
use flushwatch_loom_tests::{assert_safe, config, explore, ShapeFacts, MS};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;

const POSITIONS: [u64; 3] = [0, 10, 25];

fn flushed_vs_scan_with(coarse: bool) {
    explore(3, move || {
        let (config, mock) = config();
        let t = FlushTracker::new(
            config
                .grace(MS)
                .challenge(Duration::ZERO)
                .coarse_ticks(coarse),
        )
        .unwrap();
        let a = t.register("a").unwrap();
        let b = t.register("b").unwrap();
        t.track(10, &[a.id()]).unwrap(); // a: flushed 0 (the raise), tick 0
        t.track(25, &[a.id(), b.id()]).unwrap(); // a stays pending; b: flushed 10
        b.flushed(25);
        if coarse {
            // The scan that first sees `a` pending (at 0 ms): not overdue, whatever happened
            // before it.
            let r = t.scan();
            assert_eq!((r.watermark, r.pending), (0, 1));
            assert!(r.suspected.is_empty(), "{r:?}");
        }
        mock.increment(10 * MS);

        let reported = Arc::new(AtomicBool::new(false));
        let writer = {
            let reported = reported.clone();
            thread::spawn(move || {
                a.flushed(10);
                // Release: pairs with the scanning thread's Acquire load.
                reported.store(true, Ordering::Release);
                a
            })
        };
        // Acquire: pairs with the writer's Release store.
        let before = reported.load(Ordering::Acquire);
        let r = t.scan();
        let a = writer.join().unwrap();

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
                    tracked: &[25],
                    durable: 25,
                    live: true,
                },
            ],
            &r,
        );
        assert_eq!(bound, 10);
        assert!(r.watermark == 0 || r.watermark == 10, "got {}", r.watermark);
        if before {
            assert_eq!(
                r.watermark, 10,
                "a report that returned before the scan counts"
            );
        }
        if r.watermark == 10 {
            assert!(
                r.suspected.is_empty(),
                "the scan saw the new position with an old tick: {r:?}"
            );
        }
        assert!(
            r.stalled.is_empty(),
            "never stalled in the scan that suspects"
        );

        // The next scan sees the report, answers any suspicion raced with it, and publishes 10.
        let r2 = t.scan();
        assert_eq!(r2.watermark, 10);
        assert!(r2.suspected.is_empty() && r2.stalled.is_empty(), "{r2:?}");
        assert!(!a.is_suspected(), "progress clears suspicion");
        assert!(!a.is_evicted());
        assert_eq!(t.watermark(), 10);
        drop(b);
    });
}

#[test]
fn flushed_vs_scan() {
    flushed_vs_scan_with(false);
}

#[test]
fn flushed_vs_scan_coarse_ticks() {
    flushed_vs_scan_with(true);
}
