//! Race: the application rebuilding an evicted shape against the scanner evicting it. The key
//! must be free before the eviction is observable.
//!
//! The eviction is two-phase: the scanner CASes the suspected `LIVE` word to `ENDING` (from
//! then on the shape is inert and no longer counts, but `is_evicted()` is still false), removes
//! the key from the registry (only if it still maps to this shape's id), CASes `ENDING` to
//! `EVICTED` (`is_evicted()` turns true), and then queues `Stalled { evicted: true }`.
//!
//! Configuration: grace 0, challenge 0, `StallPolicy::Evict`. Sparse positions: `a` was sent
//! 10 and 25 and has made nothing durable; `b` is caught up at 10. A first scan suspected `a`
//! and the clock moved on, so the racing scan stalls and evicts `a` (its writer never
//! answers).
//!
//! - `evicted_key_is_free_when_the_writer_sees_it`: an application thread spins (yielding) on
//!   `a.is_evicted()`; the moment it is true, `register("a")` must succeed.
//! - `evicted_key_is_free_when_the_event_arrives`: an event loop takes events until it gets
//!   `Stalled { key: "a" }`; then `register("a")` must succeed.
//! - `register_once_racing_the_eviction`: the application looks at `is_evicted()` once and
//!   calls `register("a")` once, anywhere in the eviction. If it saw the eviction, the
//!   register succeeds. Whatever it saw, a register that succeeded made a new shape that the
//!   eviction never touches: the scanner's removal is by id, so it never unregisters the new
//!   shape (which would free its key while it lives), and its CASes are from the old word, so
//!   the new shape's slot is never marked evicted. A register that failed did so because the
//!   old shape still held the key, and succeeds once the eviction is observable.
//!
//! Checked as well: the old writer ends evicted and inert, the scan reports `a` stalled and
//! excludes it (watermark 25, a tracked commit), exactly one `Stalled { evicted: true }` is
//! queued, and the registry ends with the new shape's id, also after the old writer is
//! dropped (its drop unregisters by id).
//!
//! Blind spot: the key map (`DashMap`) and the event queue (`crossbeam-channel`) are not loom
//! objects, so loom switches threads only at the loom operations around them. Between the CAS
//! to `ENDING` and the key's removal there is one (the `live` counter), and between the
//! removal and the CAS to `EVICTED` none, so these models catch an eviction that is observable
//! before the key is free (a CAS straight to `EVICTED`, or the removal moved after the event is
//! queued) and one that never frees the key or never completes; a window bounded by map or
//! channel operations alone is left to the stress tests with real threads.
//!
//! The application thread reads `stats()` before each look at its shape (see `probe`), which
//! lets loom put that look anywhere in the eviction's tail.
//!
//! Bound: preemption bound 2. Two threads; the application's side is a statistics read, one
//! or two loads, a map lookup and a `register` (producer lock, free list, key mutex, seven
//! stores), the scanner's eviction a handful of steps (CAS, counter, CAS, counters, queue).
//! The application switches at every `yield_now` without spending a preemption, and the
//! failures these models look for need one preemption of the scanner inside its eviction (and
//! one back); bound 3 adds nothing the mutations of `scripts/loom-mutations` need, for twice
//! the time.
#![cfg(loom)]

use flushwatch::{Error, Event, FlushTracker, Writer};

type Tracker = FlushTracker<&'static str>;
use flushwatch_loom_tests::{about_to_evict, assert_safe_ab, drain, explore, MS};
use loom::thread;

/// What the racing scan must have done, whatever the application did meanwhile.
fn check_eviction(t: &Tracker, r: &flushwatch::ScanReport<&'static str>, a: &Writer<&'static str>) {
    assert_eq!(r.stalled, vec!["a"], "{r:?}");
    assert_safe_ab(r.watermark, 0, false, r);
    assert_eq!(r.watermark, 25, "the stalling scan excludes `a`: {r:?}");
    assert!(a.is_evicted() && !a.is_suspected());
    assert_eq!(t.stats().evicted, 1);
}

/// What an application's supervisor loop may do besides watching its shape: read the
/// tracker's statistics. It gives loom a handle on the application thread: the `stalled` and
/// `evicted` counters are bumped by the scanner between its CAS to `EVICTED` and queuing the
/// event, so loom places the application's next look at the shape right there (the key map is
/// not a loom object: without this, loom would never switch to the application inside the
/// eviction's tail).
fn probe(t: &Tracker) {
    let _ = t.stats();
}

/// How the application learns that its shape was evicted.
#[derive(Clone, Copy, Debug)]
enum Notice {
    /// The writer polls `is_evicted()`.
    WriterPolls,
    /// An event loop receives `Event::Stalled`.
    Event,
}

/// "Never half evicted" from the application's side: the moment the eviction is observable
/// (the writer sees `is_evicted()`, or the `Stalled` event arrives), the key is free, so the
/// application can rebuild the shape and register it again at once.
fn evicted_key_is_free_once_observable(notice: Notice) {
    explore(2, move || {
        let (t, a, b) = about_to_evict();

        let app = {
            let t = t.clone();
            thread::spawn(move || {
                let mut events = Vec::new();
                match notice {
                    Notice::WriterPolls => loop {
                        probe(&t);
                        if a.is_evicted() {
                            break;
                        }
                        thread::yield_now();
                    },
                    Notice::Event => {
                        let rx = t.events();
                        loop {
                            probe(&t);
                            match rx.try_recv() {
                                Ok(e @ Event::Stalled { key: "a", .. }) => {
                                    events.push(e);
                                    break;
                                }
                                Ok(e) => events.push(e),
                                Err(_) => thread::yield_now(),
                            }
                        }
                    }
                }
                let rebuilt = t.register("a");
                assert!(
                    rebuilt.is_ok(),
                    "{notice:?}: eviction observed but the key is not free: {rebuilt:?}"
                );
                (a, rebuilt.unwrap(), events)
            })
        };
        let r = t.scan();
        let (a, rebuilt, mut events) = app.join().unwrap();

        check_eviction(&t, &r, &a);
        assert!(!rebuilt.is_evicted() && !rebuilt.is_suspected());
        assert_eq!(t.id_of(&"a"), Some(rebuilt.id()));
        drop(a);
        assert_eq!(
            t.id_of(&"a"),
            Some(rebuilt.id()),
            "the evicted writer's drop unregistered the new shape"
        );
        events.extend(drain(&t));
        assert_eq!(
            events,
            vec![Event::Stalled {
                key: "a",
                idle: 20 * MS,
                flushed: 0,
                sent: 25,
                evicted: true
            }]
        );
        drop(b);
    });
}

#[test]
fn evicted_key_is_free_when_the_writer_sees_it() {
    evicted_key_is_free_once_observable(Notice::WriterPolls);
}

#[test]
fn evicted_key_is_free_when_the_event_arrives() {
    evicted_key_is_free_once_observable(Notice::Event);
}

#[test]
fn register_once_racing_the_eviction() {
    explore(2, || {
        let (t, a, b) = about_to_evict();

        let app = {
            let t = t.clone();
            thread::spawn(move || {
                probe(&t);
                let saw_eviction = a.is_evicted();
                let rebuilt = t.register("a");
                if saw_eviction {
                    assert!(
                        rebuilt.is_ok(),
                        "is_evicted() was true but the key is not free: {rebuilt:?}"
                    );
                }
                (a, rebuilt)
            })
        };
        let r = t.scan();
        let (a, rebuilt) = app.join().unwrap();

        check_eviction(&t, &r, &a);
        let rebuilt = match rebuilt {
            Ok(w) => w,
            Err(e) => {
                assert_eq!(e, Error::DuplicateShape);
                t.register("a")
                    .expect("the key is free once the eviction is observable")
            }
        };
        // The eviction never touched the new shape: still registered, live, caught up.
        assert_eq!(
            t.id_of(&"a"),
            Some(rebuilt.id()),
            "the eviction unregistered the new shape"
        );
        assert!(!rebuilt.is_evicted() && !rebuilt.is_suspected());
        let s = t.status(&"a").expect("the new shape is live");
        assert_eq!((s.sent, s.flushed, s.pending), (0, 0, false), "{s:?}");
        let tr = t.track(40, &[rebuilt.id(), a.id()]).unwrap();
        assert_eq!((tr.tracked, tr.skipped, tr.previous), (1, 1, 25));
        drop(a);
        assert_eq!(
            t.id_of(&"a"),
            Some(rebuilt.id()),
            "the evicted writer's drop unregistered the new shape"
        );
        rebuilt.flushed(40);
        assert_eq!(t.scan().watermark, 40);
        let events = drain(&t);
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(matches!(
            events[0],
            Event::Stalled {
                key: "a",
                evicted: true,
                ..
            }
        ));
        drop(b);
    });
}
