//! Race: `remove` against the shape's own `flushed` and against a `scan`.
//!
//! Sparse positions: `a` was sent 10 and 25 and has made nothing durable (flushed 0); `b` is
//! caught up at 10; `last_seen` is 25. Three threads: one removes `a`, one reports
//! `a.flushed(10)`, one scans.
//!
//! Checked in every interleaving:
//! - safety: the watermark is start_at or a tracked commit; while the scan saw `a` live, it is
//!   at most 10 (commit 25 is never durable in `a`); once `a` is gone it no longer counts;
//! - removal counts at once: a scan that started after `remove` returned (a flag with
//!   `Release`/`Acquire`) does not see `a` and publishes 25;
//! - `remove` returns true, the writer is inert (`is_evicted()`), the key is free at once
//!   (registering it again gives a new, caught-up shape), a late report from the removed
//!   writer is ignored, and `track` skips the removed id;
//! - nothing half done: exactly one of the scan seeing `a` and the scan not seeing it, and no
//!   event at all for a removal.
//!
//! `register_once_the_removal_is_observable`: the application asks `status("a")` while
//! another thread removes `a`, then calls `register("a")`. If `status` already said `None`,
//! the register succeeds (the shape has ended, even if its key is not unregistered yet); a new
//! shape made while the removal runs is never touched by it.
//!
//! Bound: preemption bound 3 with three threads (about 2 000 executions). `remove` is one map
//! removal and one CAS, `flushed` five steps; three preemptions let the scan and the report
//! each run anywhere around the removing CAS and come back, which covers every order of the
//! CAS, the report's stores and the scan's loads of the slot (loom explores every value each
//! load may return regardless of the bound).
#![cfg(loom)]

use flushwatch::Error;
use flushwatch_loom_tests::{
    a_pending_b_caught_up, assert_position, check_scan_vs_end_of_a, drain, explore, spawn_remove,
    tracker,
};
use loom::thread;

#[test]
fn remove_vs_flushed_and_scan() {
    explore(3, || {
        let (t, _mock) = tracker();
        let (a, b) = a_pending_b_caught_up(&t); // a: sent 25, flushed 0
        let a_id = a.id();

        let (remover, removed) = spawn_remove(&t, "a");
        let writer = thread::spawn(move || {
            a.flushed(10);
            a
        });
        let after_remove = removed.get();
        let r = t.scan();
        remover.join().unwrap();
        let a = writer.join().unwrap();

        let saw_a = check_scan_vs_end_of_a(&r, 10, after_remove);
        if saw_a {
            assert!(r.watermark == 0 || r.watermark == 10, "{r:?}");
            assert_eq!(r.pinned_by, Some("a"));
        } else {
            assert_eq!((r.watermark, r.pending), (25, 0), "{r:?}");
        }

        // Nothing half done.
        assert!(a.is_evicted(), "the removed shape's writer is inert");
        assert!(!a.is_suspected());
        assert_eq!(t.id_of(&"a"), None);
        assert!(!t.remove(&"a"), "removed once");
        assert_eq!(t.scan().watermark, 25);
        let again = t.register("a").expect("the key is free at once");
        assert_ne!(again.id(), a_id);
        a.flushed(25); // a late report from the removed writer
        let s = t.status(&"a").unwrap();
        assert_eq!((s.sent, s.flushed, s.pending), (0, 0, false));
        let tr = t.track(40, &[a_id, again.id()]).unwrap();
        assert_eq!(
            (tr.tracked, tr.skipped, tr.previous),
            (1, 1, 25),
            "the removed id is skipped"
        );
        let w = t.scan().watermark;
        assert_position(w, &[0, 10, 25, 40], &"after the re-register");
        assert_eq!(
            w, 25,
            "the new shape is pending at 25 (the previous commit)"
        );
        let events = drain(&t);
        assert!(events.is_empty(), "a removal is quiet: {events:?}");
        drop(a);
        assert_eq!(
            t.id_of(&"a"),
            Some(again.id()),
            "the removed writer's drop unregistered the new shape"
        );
        assert!(drain(&t).is_empty(), "an inert writer's drop is quiet");
        drop(b);
    });
}

#[test]
fn register_once_the_removal_is_observable() {
    explore(3, || {
        let (t, _mock) = tracker();
        let (a, b) = a_pending_b_caught_up(&t);
        let a_id = a.id();
        let remover = {
            let t = t.clone();
            thread::spawn(move || assert!(t.remove(&"a")))
        };
        let gone = t.status(&"a").is_none();
        let rebuilt = t.register("a");
        if gone {
            assert!(
                rebuilt.is_ok(),
                "status said the shape was gone, then register said {rebuilt:?}"
            );
        }
        remover.join().unwrap();
        let rebuilt = match rebuilt {
            Ok(w) => w,
            Err(e) => {
                assert_eq!(e, Error::DuplicateShape);
                t.register("a").expect("the key is free once removed")
            }
        };
        assert_ne!(rebuilt.id(), a_id);
        assert_eq!(
            t.id_of(&"a"),
            Some(rebuilt.id()),
            "the removal unregistered the new shape"
        );
        assert!(a.is_evicted() && !rebuilt.is_evicted());
        drop(a);
        assert_eq!(
            t.id_of(&"a"),
            Some(rebuilt.id()),
            "the removed writer's drop unregistered the new shape"
        );
        assert!(drain(&t).is_empty(), "a removal is quiet");
        drop(b);
    });
}
