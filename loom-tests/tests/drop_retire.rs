//! Races: a `Writer` dropped (or retired) against a `scan`, and against a `track` naming it.
//!
//! Sparse positions (start_at 0, commits 10, 25, ...).
//!
//! - `drop_pending_vs_scan` / `retire_pending_vs_scan`: `a` was sent 10 and 25 and has made 10
//!   durable, `b` is caught up at 10. One thread drops (or retires) `a`'s writer while the
//!   other scans. A scan that saw `a` live publishes at most 10 (safety) and exactly 10; a
//!   scan after the end publishes 25 (the shape stopped counting at once: "never a lost
//!   unpin"). Afterwards: the key is free, the id is skipped by `track`, and the queue holds
//!   exactly one event, `WriterDown { DroppedPending }` (the retirement none).
//! - `drop_caught_up_vs_track`: `a` is caught up at 10. One thread drops its writer while the
//!   other runs `track(25, [a])`. Linearizability: either the track came first (`tracked == 1`,
//!   and the drop then saw a pending shape: `WriterDown { DroppedPending }`) or the drop came
//!   first (`skipped == 1`, and the drop was quiet). Never a commit counted as sent to a shape
//!   that then ended quietly: nobody would rebuild it, and the watermark would pass commit 25
//!   although `a` never made it durable. (This model found that bug: `Writer::drop` read the
//!   positions, then a `track` counted the shape, then the drop swapped the state. The fix
//!   orders the drop's read and swap against `track` with the producer lock.)
//!
//! Bound: preemption bound 3. Each model has two threads; the drop is a handful of loom steps
//! (positions, the state swap, the key mutex, the free list, the event queue's locks), the
//! scan and the track a dozen; three preemptions place every step of one between any two
//! steps of the other and back. Loom explores every value each load may return regardless of
//! the bound.
#![cfg(loom)]

use flushwatch::{DownCause, Event};
use flushwatch_loom_tests::{
    a_pending_b_caught_up, assert_position, check_scan_vs_end_of_a, drain, explore, tracker,
    Returned,
};
use loom::thread;

fn end_pending_vs_scan(retire: bool) {
    explore(3, move || {
        let (t, _mock) = tracker();
        let (a, b) = a_pending_b_caught_up(&t);
        a.flushed(10);
        let a_id = a.id();

        let ended = Returned::new();
        let ender = {
            let ended = ended.clone();
            thread::spawn(move || {
                if retire {
                    a.retire();
                } else {
                    drop(a);
                }
                ended.set();
            })
        };
        let after_end = ended.get();
        let r = t.scan();
        ender.join().unwrap();

        let saw_a = check_scan_vs_end_of_a(&r, 10, after_end);
        if saw_a {
            // Named unless the end took its key before the scan looked it up.
            assert_eq!(r.watermark, 10, "{r:?}");
            assert!(matches!(r.pinned_by, Some("a") | None), "{r:?}");
        } else {
            assert_eq!((r.watermark, r.pinned_by), (25, None), "{r:?}");
        }

        // Nothing half done, nothing lost.
        assert_eq!(t.scan().watermark, 25, "the ended shape stopped counting");
        assert_eq!(t.id_of(&"a"), None);
        let tr = t.track(40, &[a_id]).unwrap();
        assert_eq!((tr.tracked, tr.skipped, tr.previous), (0, 1, 25));
        let events = drain(&t);
        if retire {
            assert!(events.is_empty(), "retirement is quiet: {events:?}");
        } else {
            assert_eq!(
                events,
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
        t.track(10, &[a.id()]).unwrap();
        a.flushed(10);
        let a_id = a.id();

        let dropper = thread::spawn(move || drop(a));
        let tr = t.track(25, &[a_id]).unwrap();
        dropper.join().unwrap();

        let events = drain(&t);
        assert_eq!(tr.tracked + tr.skipped, 1);
        assert_eq!(tr.previous, 10);
        if tr.tracked == 1 {
            assert_eq!(
                events,
                vec![Event::WriterDown {
                    key: "a",
                    cause: DownCause::DroppedPending
                }],
                "commit 25 was counted as sent to `a`, so its writer ended pending"
            );
        } else {
            assert!(
                events.is_empty(),
                "the drop came first, caught up: {events:?}"
            );
        }
        let w = t.scan().watermark;
        assert_position(w, &[0, 10, 25], &tr);
        assert_eq!(w, 25);
    });
}
