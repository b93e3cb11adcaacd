//! Race, three ways: `track`, a writer's `flushed` (and its drop, and a new shape in the freed
//! slot), and `scan`: the monotone publication of the watermark (the clamp in `scan`, which
//! publishes a scan's minimum only if it is above what was published).
//!
//! Sparse positions, `start_at` 10 (published from the start): `a` and `c` were tracked 20
//! (both raised to 10); `a` is caught up at 20, `c` has reported nothing. One thread runs
//! `track(30, [c])`; another reports `c` durable to 20, drops `a`'s writer (quietly: caught
//! up) and registers `b`, which takes `a`'s freed slot; the model's thread scans.
//!
//! The first scan may visit `a`'s slot while the second thread frees and reinitialises it: it
//! reads the state word of the live `a`, then positions of which some are `a`'s (`sent` 20)
//! and some `b`'s fresh ones (`reported` 0, floor 0), and so counts a pending shape flushed to
//! 0. Its minimum is then 0, below the published 10: without the clamp it would publish a
//! watermark that goes down, and one that is not even a position.
//!
//! Checked in every interleaving: the published watermark is a position, at most the safety
//! bound (20: commit 30 is durable nowhere), and never below `start_at`, the one published
//! before (the scan's report and `watermark()` after it); after both threads, exactly 20.
//!
//! Bound: preemption bound 1: one preemption puts the second thread's whole drop and register
//! between the scan's state load and its position loads (a thread that finishes hands over
//! without a preemption, and loom picks any coherent value of each load regardless of the
//! bound); the `track` runs before, after or between the other thread's steps. Bound 2 (with
//! two scans) explores 244,000 executions in 6 minutes and finds nothing more; bound 1 catches
//! the clamp's removal (`scripts/loom-mutations no-clamp`).
#![cfg(loom)]

use flushwatch::FlushTracker;
use flushwatch_loom_tests::{assert_safe, config, explore, ShapeFacts};
use loom::thread;

const POSITIONS: [u64; 3] = [10, 20, 30];

#[test]
fn publication_is_monotone_when_track_flushed_and_scan_race() {
    explore(1, || {
        let (config, _mock) = config();
        let t = FlushTracker::new(config.start_at(10)).unwrap();
        let a = t.register("a").unwrap();
        let c = t.register("c").unwrap();
        let tracked = t.track(20, &[a.id(), c.id()]).unwrap();
        assert_eq!((tracked.tracked, tracked.previous), (2, 10));
        a.flushed(20);
        assert_eq!(t.watermark(), 10);
        let c_id = c.id();

        let producer = {
            let t = t.clone();
            thread::spawn(move || {
                let tracked = t.track(30, &[c_id]).unwrap();
                assert_eq!((tracked.tracked, tracked.previous), (1, 20));
            })
        };
        let consumer = {
            let t = t.clone();
            thread::spawn(move || {
                c.flushed(20);
                drop(a);
                let b = t.register("b").unwrap();
                (b, c)
            })
        };

        let facts = [
            ShapeFacts {
                tracked: &[20, 30],
                durable: 20,
                live: true,
            },
            ShapeFacts {
                tracked: &[20],
                durable: 20,
                live: true,
            },
        ];
        let r = t.scan();
        assert_safe(r.watermark, &POSITIONS, &facts, &r);
        assert!(
            r.watermark >= 10,
            "the watermark went down from 10 to {}: {r:?}",
            r.watermark
        );
        assert_eq!(t.watermark(), r.watermark, "{r:?}");
        producer.join().unwrap();
        let (b, c) = consumer.join().unwrap();

        let r = t.scan();
        assert_eq!(r.watermark, 20, "{r:?}");
        assert!(!b.is_evicted());
        c.flushed(30);
        assert_eq!(t.scan().watermark, 30);
    });
}
