//! Race: `flushed` (the hot path) against a `scan` computing and publishing the watermark.
//!
//! `a` was sent commits 2 and 5 and has made 1 durable; `b` is caught up at 5. The mock clock
//! is 10 ms past `a`'s last progress, with a grace of 1 ms: to a scan that does not see new
//! progress, `a` is overdue. One thread reports `a.flushed(4)` (partial progress: commit 5 is
//! still not durable); the other scans.
//!
//! Checked in every interleaving:
//! - safety: the watermark never passes 4;
//! - the scan sees either the old position (watermark 1) or the new one (4), and when the
//!   report returned before the scan started (a flag with `Release`/`Acquire`), the new one;
//! - a new position never comes with an old tick: a scan that saw position 4 did not suspect
//!   `a` (its progress tick is now, so it is not overdue);
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
use flushwatch_loom_tests::{config, explore, safe_bound, ShapeFacts, MS};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;

#[test]
fn flushed_vs_scan() {
    explore(3, || {
        let (config, mock) = config();
        let t = FlushTracker::new(config.grace(MS).challenge(Duration::ZERO)).unwrap();
        let a = t.register("a").unwrap();
        let b = t.register("b").unwrap();
        t.track(2, &[a.id()]).unwrap(); // a: flushed 1 (the raise), tick 0
        t.track(5, &[a.id(), b.id()]).unwrap(); // a stays pending; b: flushed 4
        b.flushed(5);
        mock.increment(10 * MS);

        let reported = Arc::new(AtomicBool::new(false));
        let writer = {
            let reported = reported.clone();
            thread::spawn(move || {
                a.flushed(4);
                // Release: pairs with the scanning thread's Acquire load.
                reported.store(true, Ordering::Release);
                a
            })
        };
        // Acquire: pairs with the writer's Release store.
        let before = reported.load(Ordering::Acquire);
        let r = t.scan();
        let a = writer.join().unwrap();

        let bound = safe_bound(&[
            ShapeFacts {
                tracked: &[2, 5],
                durable: 4,
                live: true,
            },
            ShapeFacts {
                tracked: &[5],
                durable: 5,
                live: true,
            },
        ]);
        assert!(r.watermark <= bound, "unsafe: {} > {bound}", r.watermark);
        assert!(r.watermark == 1 || r.watermark == 4, "got {}", r.watermark);
        if before {
            assert_eq!(
                r.watermark, 4,
                "a report that returned before the scan counts"
            );
        }
        if r.watermark == 4 {
            assert!(
                r.suspected.is_empty(),
                "the scan saw the new position with an old tick: {r:?}"
            );
        }
        assert!(
            r.stalled.is_empty(),
            "never stalled in the scan that suspects"
        );

        // The next scan sees the report, answers any suspicion raced with it, and publishes 4.
        let r2 = t.scan();
        assert_eq!(r2.watermark, 4);
        assert!(r2.suspected.is_empty() && r2.stalled.is_empty(), "{r2:?}");
        assert!(!a.is_suspected(), "progress clears suspicion");
        assert!(!a.is_evicted());
        assert_eq!(t.watermark(), 4);
        drop(b);
    });
}
