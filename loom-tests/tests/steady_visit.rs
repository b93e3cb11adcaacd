//! Races on the scan's steady test (`src/scan/visit.rs`): a visit that finds a slot's state word
//! and flushed position as the previous visit recorded them, the shape pending and its
//! deadline not reached, only counts the shape and writes nothing. A writer changing the slot
//! while the scan reads it must never leave the scanner with a stale record that later scans
//! keep trusting: either this scan sees the change (and visits in full) or the next one does.
//!
//! Sparse positions (start_at 0, commits 10, 25).
//!
//! - `steady_vs_progress`: `a` was sent 10 and 25, two scans made its visit steady. One
//!   thread reports 10 and then 25, the other scans. Checked: the racing scan publishes 0, 10
//!   or 25, each only if the writer had reported it; after the join every scan counts `a`
//!   caught up (watermark 25, nothing pending): the progress is never lost behind the steady
//!   record.
//! - `steady_vs_defer_past_deadline`: `a` (sent 10, nothing durable) is steady, then the mock
//!   clock moves past its deadline (grace 60 s). One thread calls `defer()`, the other scans:
//!   the scan may see the old word (full visit, overdue: it tries to suspect `a`) or the new
//!   one. Checked: after the join `a` is not suspected (the defer answered, or the suspicion's
//!   CAS failed), not evicted, and the next scan at the same time suspects nothing (the defer
//!   renewed the progress tick) and counts `a` pending at 0.
//!
//! Bound: preemption bound 3: the writer's report is a few loads and two stores, `defer` a
//! store and a CAS loop; three preemptions put them before, inside and after the scan's loads
//! of the slot (state word, then `sent`, `reported`, `floor`) and its CAS.
#![cfg(loom)]

use std::time::Duration;

use flushwatch_loom_tests::{assert_position, explore, tracker};
use loom::thread;

const POSITIONS: [u64; 3] = [0, 10, 25];

#[test]
fn steady_vs_progress() {
    explore(3, || {
        let (t, _mock) = tracker();
        let a = t.register("a").unwrap();
        t.track(10, &[a.id()]).unwrap();
        t.track(25, &[a.id()]).unwrap();
        // The first scan takes `a` into the set and records it; the second is steady.
        for _ in 0..2 {
            let r = t.scan();
            assert_eq!((r.watermark, r.pending), (0, 1));
        }
        let durable = loom::sync::Arc::new(loom::sync::atomic::AtomicU64::new(0));
        let writer = {
            let durable = durable.clone();
            thread::spawn(move || {
                for p in [10, 25] {
                    // SeqCst: the model's own record of what is durable, read after the scan.
                    durable.store(p, loom::sync::atomic::Ordering::SeqCst);
                    a.flushed(p);
                }
                a
            })
        };
        let r = t.scan();
        // SeqCst: pairs with the writer's stores; read after the scan returned.
        let made = durable.load(loom::sync::atomic::Ordering::SeqCst);
        assert_position(r.watermark, &POSITIONS, &r);
        assert!(
            r.watermark <= made,
            "watermark {} passed what was durable ({made}): {r:?}",
            r.watermark
        );
        let a = writer.join().unwrap();
        for _ in 0..2 {
            let r = t.scan();
            assert_eq!((r.watermark, r.pending), (25, 0), "{r:?}");
        }
        drop(a);
    });
}

#[test]
fn steady_vs_defer_past_deadline() {
    explore(3, || {
        let (t, mock) = tracker();
        let a = t.register("a").unwrap();
        t.track(10, &[a.id()]).unwrap();
        for _ in 0..2 {
            let r = t.scan();
            assert_eq!((r.watermark, r.pending, r.suspected.len()), (0, 1, 0));
        }
        // Past the deadline: 60 s of grace and then some.
        mock.increment(Duration::from_secs(61));
        let writer = thread::spawn(move || {
            a.defer();
            a
        });
        let r = t.scan();
        assert_eq!((r.watermark, r.pending), (0, 1), "{r:?}");
        let a = writer.join().unwrap();
        assert!(!a.is_suspected(), "the defer answered any suspicion");
        assert!(!a.is_evicted());
        let r = t.scan();
        assert_eq!(
            (r.watermark, r.pending, r.suspected.len(), r.stalled.len()),
            (0, 1, 0, 0),
            "{r:?}"
        );
        assert!(!a.is_suspected());
    });
}
