//! Race: `register` against a `scan`, into a reused slot and into a new page.
//!
//! - `register_reused_slot_vs_scan`: `x` was sent 10, made nothing durable and was dropped, so
//!   its slot still holds `x`'s old fields (sent 10, flushed 0, a tick 10 ms old, grace 1 ms).
//!   One thread registers `c`, which reuses that slot; the other scans. The scan must see
//!   either a free slot or the fully initialised `c` (nothing sent, not pending): never the
//!   new generation with the old fields, which would make `c` pending at 0, lower the
//!   watermark and suspect a shape that was registered a moment ago.
//! - `register_new_page_vs_scan`: two shapes fill the first page; one thread registers a third
//!   (a new page), the other scans. The scan sees two or three shapes, never a half-built one.
//!
//! Checked in every interleaving: the watermark is exactly `last_seen` (nothing live is
//! pending), no shape is suspected and no event is queued, the scan counts the new shape or
//! not (never anything else), and a later scan sees it caught up; once tracked, it is pending
//! at the previous commit (sparse positions: never `c - 1`).
//!
//! Bound: preemption bound 3 (two threads): `register` is a map lookup, the producer lock, the
//! free list, the key mutex, seven field stores and the publishing store of `state`; three
//! preemptions let the scan's visit of the slot fall between any two of them and back.
#![cfg(loom)]

use std::time::Duration;

use flushwatch::FlushTracker;
use flushwatch_loom_tests::{assert_position, config, drain, explore, MS};
use loom::thread;

#[test]
fn register_reused_slot_vs_scan() {
    explore(3, || {
        let (config, mock) = config();
        let t = FlushTracker::new(config.grace(MS).challenge(Duration::ZERO)).unwrap();
        let x = t.register("x").unwrap();
        t.track(10, &[x.id()]).unwrap(); // x: sent 10, flushed 0, tick 0
        drop(x); // WriterDown { DroppedPending }; the slot keeps x's fields until reused
        assert_eq!(drain(&t).len(), 1);
        mock.increment(10 * MS);

        let registrar = {
            let t = t.clone();
            thread::spawn(move || t.register("c").unwrap())
        };
        let r = t.scan();
        let c = registrar.join().unwrap();

        assert!(r.registered <= 1, "{r:?}");
        assert_eq!(
            (r.watermark, r.pending),
            (10, 0),
            "a new shape is never pending: {r:?}"
        );
        assert!(r.suspected.is_empty(), "a new shape was suspected: {r:?}");
        let events = drain(&t);
        assert!(events.is_empty(), "{events:?}");

        let r = t.scan();
        assert_eq!((r.watermark, r.pending, r.registered), (10, 0, 1), "{r:?}");
        let s = t.status(&"c").unwrap();
        assert_eq!(
            (s.sent, s.flushed, s.pending, s.suspected),
            (0, 0, false, false)
        );
        assert!(!c.is_suspected() && !c.is_evicted());
        let tr = t.track(25, &[c.id()]).unwrap();
        assert_eq!((tr.tracked, tr.previous), (1, 10));
        assert_eq!(t.scan().watermark, 10, "c pending at the previous commit");
    });
}

#[test]
fn register_new_page_vs_scan() {
    explore(3, || {
        let (config, mock) = config();
        let t = FlushTracker::new(config.grace(MS).challenge(Duration::ZERO)).unwrap();
        let a = t.register("a").unwrap();
        let b = t.register("b").unwrap();
        t.track(10, &[a.id(), b.id()]).unwrap();
        a.flushed(10);
        b.flushed(10);
        mock.increment(10 * MS);

        let registrar = {
            let t = t.clone();
            thread::spawn(move || t.register("c").unwrap())
        };
        let r = t.scan();
        let c = registrar.join().unwrap();

        assert!(r.registered == 2 || r.registered == 3, "{r:?}");
        assert_eq!((r.watermark, r.pending), (10, 0), "{r:?}");
        assert!(r.suspected.is_empty(), "{r:?}");
        let r = t.scan();
        assert_eq!((r.watermark, r.registered), (10, 3), "{r:?}");
        t.track(25, &[c.id()]).unwrap();
        let w = t.scan().watermark;
        assert_position(w, &[0, 10, 25], &"c tracked");
        assert_eq!(w, 10, "c pending at 10 (the raise to the previous commit)");
        c.flushed(25);
        assert_eq!(t.scan().watermark, 25);
        drop((a, b));
    });
}
