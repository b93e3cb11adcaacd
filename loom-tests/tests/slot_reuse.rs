//! Races: slot reuse against a stale `ShapeId`, a stale `remove`, and a stale writer.
//!
//! Under loom a page holds two slots, so a freed slot is reused by the very next `register`.
//!
//! - `stale_id_vs_reuse`: after a keepalive at 4 (`track(4, [])`), one thread drops `a`'s
//!   writer and registers `c` (which takes `a`'s slot); the other runs
//!   `track(10, [a's old id, b])`. The old id must never reach `c`: `c` stays caught up with
//!   nothing sent, whatever the order; `b` is always tracked, pending at the keepalive.
//! - `stale_remove_vs_reuse`: one thread runs `remove("a")`; the other drops `a`'s writer and
//!   registers `c` into its slot. The removal, which looked `a` up before the slot was reused,
//!   must not end `c`.
//! - `stale_writer_vs_new_shape`: `a` was removed but its writer lives on and reports; another
//!   thread registers `c` and tracks commits for it. The writer owns its slot until it is
//!   dropped, so `c` gets another slot and never sees the stale report.
//! - `foreign_id_is_skipped`: a `ShapeId` made by another tracker (same slot index, and a
//!   generation from the process-wide counter) is skipped by `track` while that tracker's
//!   shape reports concurrently; the shape of this tracker in the same slot is untouched.
//!
//! Safety is checked too: the watermark never passes what every live shape made durable.
//!
//! Bound: preemption bound 3 (two threads each): enough to put the other thread's whole
//! operation, or any single step of it, between any two steps of a drop, a `register` or a
//! `track`; the generation checks are single loads/CASes, so their placement is fully covered.
#![cfg(loom)]

use flushwatch::Event;
use flushwatch_loom_tests::{assert_position, assert_safe, drain, explore, tracker, ShapeFacts};
use loom::thread;

#[test]
fn stale_id_vs_reuse() {
    explore(3, || {
        let (t, _mock) = tracker();
        let a = t.register("a").unwrap();
        let b = t.register("b").unwrap();
        let (a_id, b_id) = (a.id(), b.id());
        t.track(4, &[]).unwrap(); // a keepalive: positions are sparse

        let reuser = {
            let t = t.clone();
            thread::spawn(move || {
                drop(a);
                t.register("c").unwrap()
            })
        };
        let tr = t.track(10, &[a_id, b_id]).unwrap();
        let c = reuser.join().unwrap();

        assert_eq!(tr.tracked + tr.skipped, 2, "{tr:?}");
        assert_eq!(tr.previous, 4, "{tr:?}");
        assert!(tr.tracked >= 1, "b is always tracked: {tr:?}");
        let s = t.status(&"c").expect("c is live");
        assert_eq!(
            (s.sent, s.flushed, s.pending),
            (0, 0, false),
            "a stale id wrote into the shape that reused its slot"
        );
        assert!(!c.is_evicted());
        let r = t.scan();
        assert_eq!((r.watermark, r.pending, r.registered), (4, 1, 2), "{r:?}");
        assert_safe(
            r.watermark,
            &[0, 4, 10],
            &[ShapeFacts {
                tracked: &[10],
                durable: 0,
                live: true,
            }],
            &r,
        );
        assert_eq!(r.pinned_by, Some("b"));
        // And from now on the old id is skipped for good.
        let tr = t.track(20, &[a_id]).unwrap();
        assert_eq!((tr.tracked, tr.skipped), (0, 1));
        assert!(!t.status(&"c").unwrap().pending);
        drop(b);
    });
}

#[test]
fn stale_remove_vs_reuse() {
    explore(3, || {
        let (t, _mock) = tracker();
        let a = t.register("a").unwrap();
        let b = t.register("b").unwrap();
        t.track(10, &[a.id(), b.id()]).unwrap();

        let reuser = {
            let t = t.clone();
            thread::spawn(move || {
                drop(a);
                let c = t.register("c").unwrap();
                t.track(25, &[c.id()]).unwrap();
                c
            })
        };
        let removed = t.remove(&"a");
        let c = reuser.join().unwrap();

        // `remove` ended `a` (true) unless the drop ended it first (false: the drop queued
        // `WriterDown`, `a` being pending); exactly one of them did. Either way `c`, which
        // reused the slot, is untouched.
        let downs: Vec<_> = drain(&t)
            .into_iter()
            .filter(|e| matches!(e, Event::WriterDown { key: "a", .. }))
            .collect();
        assert_eq!(
            downs.len(),
            usize::from(!removed),
            "removed {removed}, events {downs:?}"
        );
        assert!(
            !c.is_evicted(),
            "a stale removal ended the shape that reused the slot"
        );
        let s = t.status(&"c").expect("c is live");
        assert_eq!((s.sent, s.flushed, s.pending), (25, 10, true));
        let r = t.scan();
        assert_eq!((r.registered, r.pending), (2, 2), "{r:?}");
        assert_eq!(r.watermark, 0, "b pins at 0 (sent 10, raised to start_at)");
        c.flushed(25);
        b.flushed(10);
        let w = t.scan().watermark;
        assert_position(w, &[0, 10, 25], &"caught up");
        assert_eq!(w, 25);
    });
}

#[test]
fn stale_writer_vs_new_shape() {
    explore(3, || {
        let (t, _mock) = tracker();
        let a = t.register("a").unwrap();
        t.track(10, &[a.id()]).unwrap();
        assert!(t.remove(&"a"));

        let stale = thread::spawn(move || {
            a.flushed(10);
            a.defer();
            a.flushed(99);
            a
        });
        let c = t.register("c").unwrap();
        t.track(25, &[c.id()]).unwrap();
        let r = t.scan();
        let a = stale.join().unwrap();

        let bound = assert_safe(
            r.watermark,
            &[0, 10, 25],
            &[ShapeFacts {
                tracked: &[25],
                durable: 0,
                live: true,
            }],
            &r,
        );
        assert_eq!(bound, 10);
        assert_eq!(
            r.watermark, 10,
            "c is pending at 10 (the raise to the previous commit), untouched by a"
        );
        let s = t.status(&"c").unwrap();
        assert_eq!(
            (s.sent, s.flushed, s.pending, s.suspected),
            (25, 10, true, false)
        );
        assert!(a.is_evicted() && !c.is_evicted());
        assert_ne!(a.id(), c.id());
    });
}

#[test]
fn foreign_id_is_skipped() {
    explore(3, || {
        let (t, _mock) = tracker();
        let (other, _other_mock) = tracker();
        let mine = t.register("a").unwrap();
        let theirs = other.register("a").unwrap();
        other.track(10, &[theirs.id()]).unwrap();
        // Both are the first shape of their tracker (slot 0); generations come from one
        // process-wide counter, so the ids differ.
        assert_ne!(mine.id(), theirs.id());
        let foreign = theirs.id();

        let reporter = thread::spawn(move || {
            theirs.flushed(10);
            theirs
        });
        let tr = t.track(10, &[foreign]).unwrap();
        let theirs = reporter.join().unwrap();

        assert_eq!((tr.tracked, tr.skipped, tr.previous), (0, 1, 0), "{tr:?}");
        let s = t.status(&"a").unwrap();
        assert_eq!((s.sent, s.flushed, s.pending), (0, 0, false), "{s:?}");
        assert_eq!(t.scan().watermark, 10, "nothing pending here: last_seen");
        assert_eq!(other.scan().watermark, 10);
        assert!(!mine.is_evicted() && !theirs.is_evicted());
    });
}
