//! Race: `status(&key)`, the operator's query of one shape, against the end of that shape.
//!
//! What the docs promise. `status` gives "the state of one registered shape"; `remove` "ends a
//! shape: it stops counting at once, its key is free at once"; the contract's "How a shape ends"
//! says the same of every end (remove, eviction, a writer's drop), and `register` of the key
//! "succeeds as soon as the end is visible in any way (`is_evicted()` is true, or
//! `status`/`id_of` answers `None`)". So an end is one instant, and `status` is on one side
//! of it. The invariant, checked in every interleaving:
//!
//! - **`None` once the end is visible.** A `status` says `None` if its caller could already
//!   see the end in any way: `remove` returned (a flag with `Release`/`Acquire`), a scan on the
//!   same thread no longer counted the shape, `is_evicted()` was true, or an earlier `status`
//!   said `None` (an ended shape never lives again).
//! - **`Some` is the shape as it was.** A `status` that says `Some` reports the ended shape's
//!   own key and positions (`a`: sent 25, flushed 0, pending, lag 25).
//!
//! Sparse positions: `a` was sent 10 and 25 and made nothing durable; `b` is caught up at 10;
//! `last_seen` is 25.
//!
//! - `status_vs_remove`: another thread removes `a`; this one scans, then asks `status("a")`
//!   twice. Between `remove`'s CAS to `ENDING` and its removal of the key, the key still maps
//!   to `a`'s id: only the state word's live test keeps `status` from describing the removed
//!   shape after a scan saw it gone (`scripts/loom-mutations status-not-live`).
//! - `status_vs_eviction`: another thread runs the scan that evicts `a` (suspected and overdue,
//!   `StallPolicy::Evict`); this one reads `stats()` (a loom operation inside the eviction's
//!   tail, see `evicted_key.rs`), asks `status("a")`, looks at `a.is_evicted()`, and asks
//!   again.
//!
//! Bound: preemption bound 2 (two threads): one preemption puts the other thread's end
//! between two steps of this one, one brings it back.
#![cfg(loom)]

use flushwatch::ShapeStatus;
use flushwatch_loom_tests::{
    a_pending_b_caught_up, about_to_evict, check_scan_vs_end_of_a, drain, explore, spawn_remove,
    tracker,
};
use loom::thread;

/// A `status("a")` that says `Some` is `a` as it was before its end (sent 25, flushed 0).
fn assert_is_a(s: &ShapeStatus<&'static str>, suspected: bool) {
    assert_eq!(
        (s.key, s.sent, s.flushed, s.pending, s.lag, s.suspected),
        ("a", 25, 0, true, 25, suspected),
        "a status of `a` that is not `a`: {s:?}"
    );
}

#[test]
fn status_vs_remove() {
    explore(2, || {
        let (t, _mock) = tracker();
        let (a, b) = a_pending_b_caught_up(&t);
        let (remover, removed) = spawn_remove(&t, "a");
        let r = t.scan();
        let returned = removed.get();
        let first = t.status(&"a");
        let second = t.status(&"a");
        remover.join().unwrap();

        // Read after the scan, the flag says nothing of what the scan saw.
        let scan_saw_a = check_scan_vs_end_of_a(&r, 0, false);
        if !scan_saw_a || returned {
            assert_eq!(
                first, None,
                "the end was visible (scan {r:?}, remove returned: {returned})"
            );
        }
        if first.is_none() {
            assert_eq!(second, None, "an ended shape lives again");
        }
        for s in first.iter().chain(second.iter()) {
            assert_is_a(s, false);
        }
        assert_eq!(t.status(&"a"), None);
        assert!(a.is_evicted());
        assert!(drain(&t).is_empty(), "a removal is quiet");
        drop((a, b));
    });
}

#[test]
fn status_vs_eviction() {
    explore(2, || {
        let (t, a, b) = about_to_evict();
        let scanner = {
            let t = t.clone();
            thread::spawn(move || t.scan())
        };
        let _ = t.stats();
        let first = t.status(&"a");
        let evicted = a.is_evicted();
        let second = t.status(&"a");
        let r = scanner.join().unwrap();

        assert_eq!(r.stalled, vec!["a"], "{r:?}");
        if evicted {
            assert_eq!(second, None, "`is_evicted()` was true");
        }
        if first.is_none() {
            assert_eq!(second, None, "an ended shape lives again");
        }
        for s in first.iter().chain(second.iter()) {
            assert_is_a(s, true);
        }
        assert!(a.is_evicted());
        assert_eq!(t.status(&"a"), None);
        drop((a, b));
    });
}
