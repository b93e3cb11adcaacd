//! Race: `register` against a `scan`, into a reused slot and into a new page.
//!
//! - `register_reused_slot_vs_scan`: `x` was sent 3, made nothing durable and was dropped, so
//!   its slot still holds `x`'s old fields (sent 3, flushed 2, a tick 10 ms old, grace 1 ms).
//!   One thread registers `c`, which reuses that slot; the other scans. The scan must see
//!   either a free slot or the fully initialised `c` (nothing sent, not pending): never the
//!   new generation with the old fields, which would make `c` pending at 2, lower the
//!   watermark and suspect a shape that was registered a moment ago.
//! - `register_new_page_vs_scan`: two shapes fill the first page; one thread registers a third
//!   (a new page), the other scans. The scan sees two or three shapes, never a half-built one.
//!
//! Checked in every interleaving: the watermark is exactly `last_seen` (nothing live is
//! pending), no shape is suspected, the scan counts the new shape or not (never anything
//! else), and a later scan sees it caught up.
//!
//! Bound: preemption bound 3 (two threads): `register` is a map lookup, the producer lock, the
//! free list, the key mutex, seven field stores and the publishing store of `state`; three
//! preemptions let the scan's visit of the slot fall between any two of them and back.
#![cfg(loom)]

use std::time::Duration;

use flushwatch::{Event, FlushTracker};
use flushwatch_loom_tests::{config, drain, explore, MS};
use loom::thread;

#[test]
fn register_reused_slot_vs_scan() {
    explore(3, || {
        let (config, mock) = config();
        let t = FlushTracker::new(config.grace(MS).challenge(Duration::ZERO)).unwrap();
        let x = t.register("x").unwrap();
        t.track(3, &[x.id()]).unwrap(); // x: sent 3, flushed 2, tick 0
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
            (3, 0),
            "a new shape is never pending: {r:?}"
        );
        assert!(r.suspected.is_empty(), "a new shape was suspected: {r:?}");
        assert!(drain(&t)
            .iter()
            .all(|e| matches!(e, Event::Advanced { .. })));

        let r = t.scan();
        assert_eq!((r.watermark, r.pending, r.registered), (3, 0, 1), "{r:?}");
        let s = t.status(&"c").unwrap();
        assert_eq!(
            (s.sent, s.flushed, s.pending, s.suspected),
            (0, 0, false, false)
        );
        assert!(!c.is_suspected() && !c.is_evicted());
    });
}

#[test]
fn register_new_page_vs_scan() {
    explore(3, || {
        let (config, mock) = config();
        let t = FlushTracker::new(config.grace(MS).challenge(Duration::ZERO)).unwrap();
        let a = t.register("a").unwrap();
        let b = t.register("b").unwrap();
        t.track(3, &[a.id(), b.id()]).unwrap();
        a.flushed(3);
        b.flushed(3);
        mock.increment(10 * MS);

        let registrar = {
            let t = t.clone();
            thread::spawn(move || t.register("c").unwrap())
        };
        let r = t.scan();
        let c = registrar.join().unwrap();

        assert!(r.registered == 2 || r.registered == 3, "{r:?}");
        assert_eq!((r.watermark, r.pending), (3, 0), "{r:?}");
        assert!(r.suspected.is_empty(), "{r:?}");
        let r = t.scan();
        assert_eq!((r.watermark, r.registered), (3, 3), "{r:?}");
        t.track(4, &[c.id()]).unwrap();
        assert_eq!(t.scan().watermark, 3, "c pending at 3 (the raise)");
        c.flushed(4);
        assert_eq!(t.scan().watermark, 4);
        drop((a, b));
    });
}
