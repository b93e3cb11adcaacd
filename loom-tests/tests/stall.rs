//! Races: `flushed` / `defer` against the scanner suspecting, stalling and evicting the same
//! shape.
//!
//! Configuration: grace 0, challenge 0, mock clock. Sparse positions: `a` was sent 10 and 25
//! at tick 0 and has made nothing durable (flushed 0, start_at); `b` is caught up at 10;
//! `last_seen` is 25.
//!
//! - `suspect_vs_flushed`: the clock is 10 ms on, so `a` is overdue. One thread reports
//!   `a.flushed(10)` while a scan decides whether to suspect `a`. Progress clears suspicion: a
//!   suspicion that raced the report is answered by the next scan at the latest, and `a` is
//!   never stalled by the scan that suspects it.
//! - `evict_vs_flushed` / `evict_vs_defer` (`StallPolicy::Evict`): a first scan suspected `a`
//!   and the clock moved 10 ms more, so the next scan stalls and evicts it unless `a` answers.
//!   One thread reports `a.flushed(10)` (or calls `a.defer()`) and then looks whether the stall
//!   was decided; the other runs that scan. The eviction is two-phase (CAS to `ENDING`,
//!   which makes the shape inert; the key's removal; CAS to `EVICTED`, which makes
//!   `is_evicted()` true), and the writer's call may land anywhere in it. Checked:
//!   - never both: if the writer's call returned and the stall was not decided at that moment
//!     (`is_evicted()` false and `status(&"a")` still live: `status` reads the state word, so
//!     it sees `ENDING` too), `a` is never evicted (its answer changed the state word, so
//!     the scanner's CAS fails); a call that landed in `ENDING` was ignored, and
//!     `is_evicted()` is true once the scan returned;
//!   - never a lost unpin: the scan that stalls `a` already publishes the watermark without
//!     it (25), and a later report from the inert writer changes nothing;
//!   - never half evicted: an evicted `a` is inert, its key is free, its id is skipped, and
//!     exactly one event was queued, `Stalled { evicted: true }`; a surviving `a` is live, not
//!     suspected after the next scan, counts with what it reported, and no action event was
//!     queued;
//!   - safety: the watermark is start_at or a tracked commit and never passes what the live
//!     shapes made durable.
//! - `report_vs_flushed` (`StallPolicy::Report`): the same race; a stall only re-arms: `a` is
//!   never evicted, keeps pinning the watermark, and is not stalled again by the next scan.
//!
//! The application's side of an eviction (the key is free once it is observable) is in
//! `evicted_key.rs`; a drop or a `remove` racing the eviction in `evicting.rs`.
//!
//! The clock moves only between the models' phases, before their threads start.
//!
//! Bound: preemption bound 3. Each model has two threads; the writer's call is at most seven
//! loom steps (positions, tick, state CAS, `is_evicted`), the scan visits two slots. Three
//! preemptions let the writer's stores and CAS fall between any two of the scan's loads and
//! its CAS on `a`'s state, and back; loom explores every value each load may return under the
//! C11 model regardless of the bound.
#![cfg(loom)]

use flushwatch::{Event, StallPolicy};
use flushwatch_loom_tests::{assert_safe_ab, drain, explore, stalling, MS};
use loom::thread;

#[test]
fn suspect_vs_flushed() {
    explore(3, || {
        let (t, mock, a, b) = stalling(StallPolicy::Evict);
        mock.increment(10 * MS);

        let writer = thread::spawn(move || {
            a.flushed(10);
            a
        });
        let r = t.scan();
        let a = writer.join().unwrap();

        assert!(
            r.stalled.is_empty(),
            "never stalled in the scan that suspects: {r:?}"
        );
        assert_safe_ab(r.watermark, 10, true, &r);
        assert!(r.watermark == 0 || r.watermark == 10, "{r:?}");
        if r.watermark == 10 {
            assert!(r.suspected.is_empty(), "new position, old tick: {r:?}");
        }
        let r = t.scan();
        assert!(r.suspected.is_empty() && r.stalled.is_empty(), "{r:?}");
        assert!(!a.is_suspected(), "progress clears suspicion");
        assert!(!a.is_evicted());
        assert_eq!(r.watermark, 10);
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
        let (t, mock, a, b) = stalling(policy);
        let a_id = a.id();
        mock.increment(10 * MS);
        let r = t.scan();
        assert_eq!(r.suspected, vec!["a"]);
        assert!(a.is_suspected());
        mock.increment(10 * MS);
        drain(&t);

        let writer = {
            let t = t.clone();
            thread::spawn(move || {
                match answer {
                    Answer::Flushed => a.flushed(10),
                    Answer::Defer => a.defer(),
                }
                // Whether the stall was decided before this point: `is_evicted()` covers
                // `EVICTED`; `status` is `None` once the key is gone or the state word is not
                // live (`ENDING` included), so together they see the decision itself.
                let decided = a.is_evicted() || t.status(&"a").is_none();
                (a, decided)
            })
        };
        let r = t.scan();
        let (a, decided_before_return) = writer.join().unwrap();

        let durable = match answer {
            Answer::Flushed => 10,
            Answer::Defer => 0,
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
        // The queue: the stall's action event, nothing else (no `Suspected`: this scan
        // stalls or leaves alone a shape that is already suspected).
        let stall_events: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, Event::Stalled { key: "a", .. }))
            .collect();
        assert_eq!(stall_events.len(), usize::from(stalled), "{events:?}");
        assert_eq!(events.len(), stall_events.len(), "{events:?}");

        if !decided_before_return {
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
                assert_eq!(r.watermark, 25, "the stalling scan already excludes `a`");
                assert_eq!(r.pending, 0, "{r:?}");
                assert_eq!(t.id_of(&"a"), None, "the key is free at once");
                a.flushed(25); // ignored
                a.defer(); // ignored
                assert!(!a.is_suspected() && a.is_evicted());
                let tr = t.track(40, &[a_id]).unwrap();
                assert_eq!((tr.tracked, tr.skipped), (0, 1));
                assert_eq!(t.scan().watermark, 40, "nothing counts `a` any more");
                let again = t.register("a").expect("the key is free at once");
                drop(again);
            }
            _ => {
                assert!(!evicted, "evicted without a stall: {r:?}");
                // The scan saw the old position (0) or the report.
                assert!(r.watermark == 0 || r.watermark == durable, "{r:?}");
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
