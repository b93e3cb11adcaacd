//! Races: slot reuse against a stale `ShapeId`, a stale `remove`, and a stale writer.
//!
//! Under loom a page holds two slots, so a freed slot is reused by the very next `register`.
//!
//! - `stale_id_vs_reuse`: one thread drops `a`'s writer and registers `c` (which takes `a`'s
//!   slot); the other runs `track(5, [a's old id, b])`. The old id must never reach `c`: `c`
//!   stays caught up with nothing sent, whatever the order; `b` is always tracked.
//! - `stale_remove_vs_reuse`: one thread runs `remove("a")`; the other drops `a`'s writer and
//!   registers `c` into its slot. The removal, which looked `a` up before the slot was reused,
//!   must not end `c`.
//! - `stale_writer_vs_new_shape`: `a` was removed but its writer lives on and reports; another
//!   thread registers `c` and tracks commits for it. The writer owns its slot until it is
//!   dropped, so `c` gets another slot and never sees the stale report.
//!
//! Safety is checked too: the watermark never passes what every live shape made durable.
//!
//! Bound: preemption bound 3 (two threads each): enough to put the other thread's whole
//! operation, or any single step of it, between any two steps of a drop, a `register` or a
//! `track`; the generation checks are single loads/CASes, so their placement is fully covered.
#![cfg(loom)]

use flushwatch_loom_tests::{explore, safe_bound, tracker, ShapeFacts};
use loom::thread;

#[test]
fn stale_id_vs_reuse() {
    explore(3, || {
        let (t, _mock) = tracker();
        let a = t.register("a").unwrap();
        let b = t.register("b").unwrap();
        let (a_id, b_id) = (a.id(), b.id());

        let reuser = {
            let t = t.clone();
            thread::spawn(move || {
                drop(a);
                t.register("c").unwrap()
            })
        };
        let tr = t.track(5, &[a_id, b_id]).unwrap();
        let c = reuser.join().unwrap();

        assert_eq!(tr.tracked + tr.skipped, 2, "{tr:?}");
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
        assert_eq!(r.pinned_by, Some("b"));
        // And from now on the old id is skipped for good.
        let tr = t.track(6, &[a_id]).unwrap();
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
        t.track(3, &[a.id(), b.id()]).unwrap();

        let reuser = {
            let t = t.clone();
            thread::spawn(move || {
                drop(a);
                let c = t.register("c").unwrap();
                t.track(4, &[c.id()]).unwrap();
                c
            })
        };
        let removed = t.remove(&"a");
        let c = reuser.join().unwrap();

        // `remove` saw `a` registered unless the drop unregistered it first; either way `c`,
        // which reused the slot, is untouched.
        let _ = removed;
        assert!(
            !c.is_evicted(),
            "a stale removal ended the shape that reused the slot"
        );
        let s = t.status(&"c").expect("c is live");
        assert_eq!((s.sent, s.flushed, s.pending), (4, 3, true));
        let r = t.scan();
        assert_eq!((r.registered, r.pending), (2, 2), "{r:?}");
        assert_eq!(r.watermark, 2, "b pins at 2 (sent 3, raised to 2)");
        c.flushed(4);
        b.flushed(3);
        assert_eq!(t.scan().watermark, 4);
    });
}

#[test]
fn stale_writer_vs_new_shape() {
    explore(3, || {
        let (t, _mock) = tracker();
        let a = t.register("a").unwrap();
        t.track(2, &[a.id()]).unwrap();
        assert!(t.remove(&"a"));

        let stale = thread::spawn(move || {
            a.flushed(2);
            a.defer();
            a.flushed(9);
            a
        });
        let c = t.register("c").unwrap();
        t.track(5, &[c.id()]).unwrap();
        let r = t.scan();
        let a = stale.join().unwrap();

        let bound = safe_bound(&[ShapeFacts {
            tracked: &[5],
            durable: 0,
            live: true,
        }]);
        assert!(r.watermark <= bound, "unsafe: {} > {bound}", r.watermark);
        assert_eq!(
            r.watermark, 4,
            "c is pending at 4 (the raise), untouched by a"
        );
        let s = t.status(&"c").unwrap();
        assert_eq!(
            (s.sent, s.flushed, s.pending, s.suspected),
            (5, 4, true, false)
        );
        assert!(a.is_evicted() && !c.is_evicted());
        assert_ne!(a.id(), c.id());
    });
}
