//! Race: a writer's `defer`, `remove` of its shape, and a scan, all at once.
//!
//! A `defer` sets `DEFERRED` in the live state word; the scan that sees the bit clears it (a
//! compare-and-swap loop, `Slot::clear_deferred`) before it judges the shape, and only while
//! the word is still the live word of that shape. `remove` ends the shape in two steps: a CAS
//! from the live word to `ENDING` (the `DEFERRED` bit kept), then, once the key is free, a CAS
//! from exactly that word to `REMOVED`, which is what makes `is_evicted()` true. A scan that
//! read the word before the first CAS and clears the bit after it must leave the ended word
//! alone: clearing it there (`scripts/loom-mutations clear-deferred-not-live`) makes the second
//! CAS fail, so the removed shape's writer never turns inert-and-evicted, and the scan goes on
//! judging a shape that has ended.
//!
//! Sparse positions: `a` was sent 10 and 25 and made nothing durable; `b` is caught up at 10;
//! `last_seen` is 25. Three threads: `a`'s consumer calls `defer()`, another removes `a`, the
//! model's main thread scans.
//!
//! Checked, from the docs of `remove` and `defer`: `remove` returns true (the defer does not
//! end the shape); afterwards the writer is inert and `is_evicted()` is true, it is not
//! suspected, `status` and `id_of` say `None`, and a later `defer` or report through it changes
//! nothing; the racing scan is safe (it counts `a` pending at 0 or not at all) and does not
//! count `a` if the removal returned before it started; the next scan publishes 25 with nothing
//! pending; a removal and a defer queue no event; the key is free for a new shape.
//!
//! Bound: preemption bound 3: one preemption runs the `defer` before the scan reads the word,
//! one puts the removal's first CAS between the scan's read and its clear, one holds the
//! removal before its second CAS.
#![cfg(loom)]

use flushwatch_loom_tests::{
    a_pending_b_caught_up, check_scan_vs_end_of_a, drain, explore, spawn_remove, tracker,
};
use loom::thread;

#[test]
fn defer_vs_remove_vs_scan() {
    explore(3, || {
        let (t, _mock) = tracker();
        let (a, b) = a_pending_b_caught_up(&t); // a: sent 25, flushed 0

        let consumer = thread::spawn(move || {
            a.defer();
            a
        });
        // A deferred shape is live: the removal ends it (`spawn_remove` asserts it).
        let (remover, removed) = spawn_remove(&t, "a");
        let after_remove = removed.get();
        let r = t.scan();
        let a = consumer.join().unwrap();
        remover.join().unwrap();

        check_scan_vs_end_of_a(&r, 0, after_remove);
        assert!(r.suspected.is_empty() && r.stalled.is_empty(), "{r:?}");

        // The removal completed, whatever the scan did with the `DEFERRED` bit meanwhile.
        assert!(a.is_evicted(), "the removed shape's writer is inert");
        assert!(!a.is_suspected());
        assert_eq!(t.status(&"a"), None);
        assert_eq!(t.id_of(&"a"), None);
        a.defer();
        a.flushed(25);
        assert!(a.is_evicted(), "a removed writer stays inert");
        let r = t.scan();
        assert_eq!((r.watermark, r.pending), (25, 0), "{r:?}");
        assert_eq!(t.stats().registered, 1, "only `b` is left");
        assert!(drain(&t).is_empty(), "a removal and a defer are quiet");

        let again = t.register("a").expect("the key is free");
        let s = t.status(&"a").unwrap();
        assert_eq!((s.sent, s.flushed, s.pending), (0, 0, false));
        drop((a, again, b));
    });
}
