//! Races: a `track` that lands between a scan's gather and its visit of an already-listed slot,
//! and a reader of `last_seen()` against the `track` that publishes it.
//!
//! Sparse positions: `a` was tracked 20 and is caught up at 20 (still listed: no scan since);
//! a keepalive `track(25, [])` made `last_seen` 25. One thread runs `track(30, [a])`, which
//! raises `a` to the previous commit, 25, and makes it pending.
//!
//! - `a_track_between_gather_and_visit_is_seen_whole`: the other thread scans. A scan that
//!   read `last_seen` 25 may visit `a` after the track: it must see `sent` 30 together with the
//!   raised floor 25 (the `Release` store of `sent` publishes the floor), and publish exactly
//!   25 whatever the interleaving; with the old floor it would count `a` pending at 20 and
//!   publish 20 although everything up to 25 is durable.
//! - `last_seen_comes_with_the_slots_of_its_commit`: the other thread reads `last_seen()` and
//!   then `status("a")`: having seen 30, it must see `a` sent 30 (`last-seen-release`); and
//!   whatever `last_seen` it read, a status that shows `sent` 30 shows the floor raised with
//!   it, flushed 25, never `sent` 30 with flushed 20 (`sent-release`: `track` storing `sent`
//!   without `Release`); and one that shows the old `sent` 20 shows `a` caught up at 20, never
//!   flushed 25 above it, though its load of the floor may see the track's raise
//!   (`status-above-sent`).
//!
//! Why the scan model does not catch `sent-release` on its own: loom never runs the track
//! between the scan's gather and its loads of the slot. Its partial-order reduction adds a
//! backtracking point only at the *last* access to an object before a conflicting one, and
//! skips it when that access happens-before the conflicting one. The last scan load of `a`'s
//! `sent` and `floor` before the track's stores is `prune`'s re-check, made under the producer
//! lock, which the lock orders before the track: so loom never tries the track before the
//! visit's earlier loads (instrumented: in all 14 executions, every scan load that returned
//! `sent` 30 also returned the floor 25, through a lock hand-over). `status` takes no producer
//! lock, so the second model reaches the window with the stale floor.
//!
//! Bound: preemption bound 2: one preemption puts the whole `track` between the scan's gather
//! (or the reader's first load) and what follows; loom picks every coherent value of each load.
#![cfg(loom)]

use flushwatch_loom_tests::{explore, tracker};
use loom::thread;

type Tracker = flushwatch::FlushTracker<&'static str>;

/// The setup, then `track(30, [a])` on another thread while `race` runs on this one.
fn with_track_30(race: impl FnOnce(&Tracker, &flushwatch::Writer<&'static str>)) {
    let (t, _mock) = tracker();
    let a = t.register("a").unwrap();
    t.track(20, &[a.id()]).unwrap();
    a.flushed(20);
    assert_eq!(t.track(25, &[]).unwrap().previous, 20);
    let id = a.id();
    let producer = {
        let t = t.clone();
        thread::spawn(move || {
            let tracked = t.track(30, &[id]).unwrap();
            assert_eq!((tracked.tracked, tracked.previous), (1, 25));
        })
    };
    race(&t, &a);
    producer.join().unwrap();
}

#[test]
fn a_track_between_gather_and_visit_is_seen_whole() {
    explore(2, || {
        let mut report = None;
        with_track_30(|t, _| report = Some(t.scan()));
        // Before the track: `a` caught up, the watermark is `last_seen`, 25. After it (or
        // seen whole in between): `a` pending at 25, the watermark 25.
        let r = report.unwrap();
        assert_eq!(r.watermark, 25, "{r:?}");
    });
}

#[test]
fn last_seen_comes_with_the_slots_of_its_commit() {
    explore(2, || {
        with_track_30(|t, a| {
            let seen = t.last_seen();
            let s = t.status(&"a").unwrap();
            match seen {
                30 => assert_eq!((s.sent, s.flushed, s.pending), (30, 25, true), "{s:?}"),
                // Before the track, or after it: the raised floor comes with `sent` 30. With
                // `sent` 20 the load of the floor may see the track's store of it (not ordered
                // after the load of `sent`); a status still never shows it above `sent`.
                25 => assert!(
                    matches!(
                        (s.sent, s.flushed, s.pending),
                        (20, 20, false) | (30, 25, true)
                    ),
                    "{s:?}"
                ),
                other => panic!("last_seen {other}"),
            }
            assert!(!a.is_evicted());
        });
    });
}
