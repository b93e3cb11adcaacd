//! Races: a `Writer` dropped (or retired) against a `scan`, and against a `track` naming it.
//!
//! - `drop_pending_vs_scan` / `retire_pending_vs_scan`: `a` was sent 3 and 5 and has made 3
//!   durable, `b` is caught up at 3. One thread drops (or retires) `a`'s writer while the
//!   other scans. A scan that saw `a` live publishes at most 4 (safety) and exactly 3; a scan
//!   after the end publishes 5 (the shape stopped counting at once: "never a lost unpin").
//!   Afterwards: the key is free, the id is skipped by `track`, and the drop emitted exactly
//!   one `WriterDown { DroppedPending }` (the retirement none).
//! - `drop_caught_up_vs_track`: `a` is caught up at 3. One thread drops its writer while the
//!   other runs `track(5, [a])`. Linearizability: either the track came first (`tracked == 1`,
//!   and the drop then saw a pending shape: `WriterDown { DroppedPending }`) or the drop came
//!   first (`skipped == 1`, and the drop was quiet). Never a commit counted as sent to a shape
//!   that then ended quietly: nobody would rebuild it, and the watermark would pass commit 5
//!   although `a` never made it durable. (This model found that bug: `Writer::drop` read the
//!   positions, then a `track` counted the shape, then the drop swapped the state. The fix
//!   orders the drop's read and swap against `track` with the producer lock.)
//!
//! Bound: preemption bound 3. Each model has two threads; the drop is a handful of loom steps
//! (positions, the state swap, the key mutex, the free list), the scan and the track a dozen;
//! three preemptions place every step of one between any two steps of the other and back.
//! Loom explores every value each load may return regardless of the bound.
#![cfg(loom)]

use flushwatch::{DownCause, Event};
use flushwatch_loom_tests::{a_pending_b_caught_up, assert_safe_ab, drain, explore, tracker};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;

fn end_pending_vs_scan(retire: bool) {
    explore(3, move || {
        let (t, _mock) = tracker();
        let (a, b) = a_pending_b_caught_up(&t);
        a.flushed(3);
        let a_id = a.id();

        let ended = Arc::new(AtomicBool::new(false));
        let ender = {
            let ended = ended.clone();
            thread::spawn(move || {
                if retire {
                    a.retire();
                } else {
                    drop(a);
                }
                // Release: pairs with the scanner's Acquire load.
                ended.store(true, Ordering::Release);
            })
        };
        // Acquire: pairs with the ender's Release store.
        let after_end = ended.load(Ordering::Acquire);
        let r = t.scan();
        ender.join().unwrap();

        let saw_a = r.registered == 2;
        assert_safe_ab(r.watermark, 3, saw_a, &r);
        if after_end {
            assert!(
                !saw_a,
                "an end that returned before the scan counts at once"
            );
        }
        if saw_a {
            assert_eq!((r.watermark, r.pending), (3, 1), "{r:?}");
        } else {
            assert_eq!((r.watermark, r.pending, r.registered), (5, 0, 1), "{r:?}");
        }

        // Nothing half done, nothing lost.
        assert_eq!(t.scan().watermark, 5, "the ended shape stopped counting");
        assert_eq!(t.id_of(&"a"), None);
        let tr = t.track(6, &[a_id]).unwrap();
        assert_eq!((tr.tracked, tr.skipped), (0, 1));
        let downs: Vec<_> = drain(&t)
            .into_iter()
            .filter(|e| matches!(e, Event::WriterDown { .. }))
            .collect();
        if retire {
            assert!(downs.is_empty(), "retirement is quiet: {downs:?}");
        } else {
            assert_eq!(
                downs,
                vec![Event::WriterDown {
                    key: "a",
                    cause: DownCause::DroppedPending
                }]
            );
        }
        let again = t.register("a").expect("the key is free at once");
        assert_ne!(again.id(), a_id);
        drop(b);
    });
}

#[test]
fn drop_pending_vs_scan() {
    end_pending_vs_scan(false);
}

#[test]
fn retire_pending_vs_scan() {
    end_pending_vs_scan(true);
}

#[test]
fn drop_caught_up_vs_track() {
    explore(3, || {
        let (t, _mock) = tracker();
        let a = t.register("a").unwrap();
        t.track(3, &[a.id()]).unwrap();
        a.flushed(3);
        let a_id = a.id();

        let dropper = thread::spawn(move || drop(a));
        let tr = t.track(5, &[a_id]).unwrap();
        dropper.join().unwrap();

        let downs: Vec<_> = drain(&t)
            .into_iter()
            .filter(|e| matches!(e, Event::WriterDown { .. }))
            .collect();
        assert_eq!(tr.tracked + tr.skipped, 1);
        if tr.tracked == 1 {
            assert_eq!(
                downs,
                vec![Event::WriterDown {
                    key: "a",
                    cause: DownCause::DroppedPending
                }],
                "commit 5 was counted as sent to `a`, so its writer ended pending"
            );
        } else {
            assert!(
                downs.is_empty(),
                "the drop came first, caught up: {downs:?}"
            );
        }
        assert_eq!(t.scan().watermark, 5);
    });
}
