//! Races: `flushed` / `defer` against the scanner suspecting, stalling and evicting the same
//! shape.
//!
//! Configuration: grace 0, challenge 0, mock clock. `a` was sent 3 and 5 at tick 0 and has
//! made 2 durable; `b` is caught up at 3; `last_seen` is 5.
//!
//! - `suspect_vs_flushed`: the clock is 10 ms on, so `a` is overdue. One thread reports
//!   `a.flushed(3)` while a scan decides whether to suspect `a`. Progress clears suspicion: a
//!   suspicion that raced the report is answered by the next scan at the latest, and `a` is
//!   never stalled by the scan that suspects it.
//! - `evict_vs_flushed` / `evict_vs_defer` (`StallPolicy::Evict`): a first scan suspected `a`
//!   and the clock moved 10 ms more, so the next scan stalls and evicts it unless `a` answers.
//!   One thread reports `a.flushed(3)` (or calls `a.defer()`) and then looks at
//!   `a.is_evicted()`; the other runs that scan. Checked:
//!   - never both: if the writer's call returned and `a` was not evicted at that moment, `a`
//!     is never evicted (its answer changed the state word, so the scanner's CAS fails);
//!   - never a lost unpin: the scan that stalls `a` already publishes the watermark without
//!     it (5), and a later report from the inert writer changes nothing;
//!   - never half evicted: an evicted `a` is inert, its key is free, its id is skipped, and
//!     exactly one `Stalled { evicted: true }` was emitted; a surviving `a` is live, not
//!     suspected after the next scan, and counts with what it reported;
//!   - safety: the watermark never passes what the live shapes made durable.
//! - `report_vs_flushed` (`StallPolicy::Report`): the same race; a stall only re-arms: `a` is
//!   never evicted, keeps pinning the watermark, and is not stalled again by the next scan.
//!
//! - `evicted_key_is_free_when_the_writer_sees_it` / `..._when_the_event_arrives`: the
//!   application learns of the eviction (the writer polls `is_evicted()`, or an event loop
//!   receives `Stalled`) and registers the key again at once: that must succeed.
//!   Blind spot: the key map (`DashMap`) and the event queue (`crossbeam-channel`) are not
//!   loom objects, so loom neither branches on them nor sees their ordering (these two models
//!   run in a handful of executions). They fail if the eviction never frees the key, but the
//!   window between the `Stalled` event and the key's removal is invisible to them; a
//!   std-thread repro found it (reported with issue 4).
//!
//! The clock moves only between the models' phases, before their threads start.
//!
//! Bound: preemption bound 3. Each model has two threads; the writer's call is at most seven
//! loom steps (positions, tick, state CAS, `is_evicted`), the scan visits two slots. Three
//! preemptions let the writer's stores and CAS fall between any two of the scan's loads and
//! its CAS on `a`'s state, and back; loom explores every value each load may return under the
//! C11 model regardless of the bound.
#![cfg(loom)]

use std::time::Duration;

use flushwatch::{Event, FlushTracker, StallPolicy, Writer};
use flushwatch_loom_tests::{a_pending_b_caught_up, assert_safe_ab, config, drain, explore, MS};
use loom::thread;

type Tracker = FlushTracker<&'static str>;

/// `a` pending (sent 3 and 5, flushed 2), `b` caught up at 3, both at tick 0.
fn setup(
    policy: StallPolicy,
) -> (
    Tracker,
    std::sync::Arc<flushwatch::quanta::Mock>,
    Writer<&'static str>,
    Writer<&'static str>,
) {
    let (config, mock) = config();
    let t = FlushTracker::new(
        config
            .grace(Duration::ZERO)
            .challenge(Duration::ZERO)
            .stall_policy(policy),
    )
    .unwrap();
    let (a, b) = a_pending_b_caught_up(&t);
    (t, mock, a, b)
}

#[test]
fn suspect_vs_flushed() {
    explore(3, || {
        let (t, mock, a, b) = setup(StallPolicy::Evict);
        mock.increment(10 * MS);

        let writer = thread::spawn(move || {
            a.flushed(3);
            a
        });
        let r = t.scan();
        let a = writer.join().unwrap();

        assert!(
            r.stalled.is_empty(),
            "never stalled in the scan that suspects: {r:?}"
        );
        assert!(r.watermark == 2 || r.watermark == 3, "{r:?}");
        if r.watermark == 3 {
            assert!(r.suspected.is_empty(), "new position, old tick: {r:?}");
        }
        let r = t.scan();
        assert!(r.suspected.is_empty() && r.stalled.is_empty(), "{r:?}");
        assert!(!a.is_suspected(), "progress clears suspicion");
        assert!(!a.is_evicted());
        assert_eq!(r.watermark, 3);
        drop(b);
    });
}

/// What the racing writer does.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Flushed,
    Defer,
}

fn stall_vs_answer(policy: StallPolicy, answer: Answer) {
    explore(3, move || {
        let (t, mock, a, b) = setup(policy);
        let a_id = a.id();
        mock.increment(10 * MS);
        let r = t.scan();
        assert_eq!(r.suspected, vec!["a"]);
        assert!(a.is_suspected());
        mock.increment(10 * MS);
        drain(&t);

        let writer = thread::spawn(move || {
            match answer {
                Answer::Flushed => a.flushed(3),
                Answer::Defer => a.defer(),
            }
            let evicted_after = a.is_evicted();
            (a, evicted_after)
        });
        let r = t.scan();
        let (a, evicted_after_answer) = writer.join().unwrap();

        let durable = match answer {
            Answer::Flushed => 3,
            Answer::Defer => 2,
        };
        let stalled = r.stalled.contains(&"a");
        let evicted = a.is_evicted();
        assert_safe_ab(
            r.watermark,
            durable,
            !stalled || policy == StallPolicy::Report,
            &r,
        );
        let events = drain(&t);
        let stall_events: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, Event::Stalled { .. }))
            .collect();
        assert_eq!(stall_events.len(), usize::from(stalled), "{events:?}");

        if !evicted_after_answer {
            assert!(
                !evicted,
                "the answer returned before the decision, yet `a` was evicted"
            );
        }
        match policy {
            StallPolicy::Evict if stalled => {
                assert!(evicted, "stalled under Evict but not inert");
                assert!(matches!(
                    stall_events[0],
                    Event::Stalled { evicted: true, .. }
                ));
                assert_eq!(r.watermark, 5, "the stalling scan already excludes `a`");
                assert_eq!(r.pending, 0, "{r:?}");
                assert_eq!(t.id_of(&"a"), None, "the key is free at once");
                a.flushed(5); // ignored
                assert!(!a.is_suspected());
                let tr = t.track(6, &[a_id]).unwrap();
                assert_eq!((tr.tracked, tr.skipped), (0, 1));
                let again = t.register("a").expect("the key is free at once");
                drop(again);
            }
            _ => {
                assert!(!evicted, "evicted without a stall: {r:?}");
                // The scan saw the old position (2) or the report.
                assert!(r.watermark == 2 || r.watermark == durable, "{r:?}");
                // The next scan at the same instant: `a` answered (or was re-armed), so it is
                // neither overdue nor suspected, and it still counts.
                let r2 = t.scan();
                assert!(r2.stalled.is_empty(), "{r2:?}");
                assert!(!a.is_evicted());
                assert_eq!(t.id_of(&"a"), Some(a_id));
                assert_eq!(r2.watermark, r.watermark.max(durable));
                assert_eq!(r2.pinned_by, Some("a"));
            }
        }
        drop(b);
    });
}

#[test]
fn evict_vs_flushed() {
    stall_vs_answer(StallPolicy::Evict, Answer::Flushed);
}

#[test]
fn evict_vs_defer() {
    stall_vs_answer(StallPolicy::Evict, Answer::Defer);
}

#[test]
fn report_vs_flushed() {
    stall_vs_answer(StallPolicy::Report, Answer::Flushed);
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
    explore(3, move || {
        let (t, mock, a, b) = setup(StallPolicy::Evict);
        mock.increment(10 * MS);
        assert_eq!(t.scan().suspected, vec!["a"]);
        mock.increment(10 * MS);
        drain(&t);

        let app = {
            let t = t.clone();
            thread::spawn(move || {
                match notice {
                    Notice::WriterPolls => {
                        while !a.is_evicted() {
                            thread::yield_now();
                        }
                    }
                    Notice::Event => {
                        let rx = t.events();
                        loop {
                            match rx.try_recv() {
                                Ok(Event::Stalled { key: "a", .. }) => break,
                                _ => thread::yield_now(),
                            }
                        }
                    }
                }
                let rebuilt = t.register("a");
                assert!(
                    rebuilt.is_ok(),
                    "{notice:?}: eviction observed but the key is not free: {rebuilt:?}"
                );
                (a, rebuilt.unwrap())
            })
        };
        let r = t.scan();
        assert_eq!(r.stalled, vec!["a"]);
        let (a, rebuilt) = app.join().unwrap();
        assert!(a.is_evicted() && !rebuilt.is_evicted());
        assert_eq!(t.id_of(&"a"), Some(rebuilt.id()));
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
