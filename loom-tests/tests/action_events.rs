//! Race: action events (`WriterDown`, `Stalled`) queued by a writer's drop and by a scan, while
//! a receiver drains the queue and informational events (`Suspected`) fill it.
//!
//! The queue is one unbounded channel; a new informational event is dropped (and counted)
//! when the queue holds `event_capacity` events, an action event is queued whatever its length,
//! and a `StallPolicy::Report` shape has at most one unread `Stalled`. Emitters take the
//! queue's `order` mutex (a loom mutex) for one push, so loom orders the emitters against each
//! other and against the receiver's steps.
//!
//! - `action_events_vs_drop_and_receiver`: `event_capacity(1)`, grace 5 ms, challenge 0,
//!   `StallPolicy::Evict`, sparse positions. `b` (pending since 0 ms) was suspected by a scan
//!   at 10 ms, whose `Suspected` fills the queue; `c` became pending at 8 ms and `a` at 15 ms.
//!   At 20 ms three threads race: one drops `a`'s writer (pending: `WriterDown`), one scans
//!   (stalls and evicts `b`: `Stalled`; suspects `c`: a `Suspected` that is dropped unless the
//!   receiver made room), and a receiver takes events between yields. Checked: every action
//!   event reaches a receiver exactly once (the racing receiver or a drain after the joins),
//!   none is ever dropped however full the queue; each informational event is either received
//!   or counted in `events_dropped`, never both, never neither; the queue is FIFO (the first
//!   `Suspected` comes first); the watermark is a tracked commit and safe.
//! - `restall_vs_receiver`: `StallPolicy::Report`, `event_capacity(1)`, grace and challenge 0.
//!   `a` was suspected (10 ms), stalled (20 ms: `Stalled` queued, the shape re-armed) and
//!   suspected again (30 ms: that `Suspected` is dropped, the queue is full). At 40 ms a scan
//!   stalls it again while a receiver takes the first `Suspected` and the first `Stalled`. The
//!   second `Stalled` is queued only if the first was taken ("at most one unread `Stalled`");
//!   checked: the stall is always counted and listed in the report; if the receiver had taken
//!   the first `Stalled` before the scan started (a flag with `Release`/`Acquire`), the second
//!   one is queued and received; if it had not even started taking it when the scan returned
//!   (a counter it bumps before each take, read by a read-modify-write), there is only one;
//!   the reader gets one or two `Stalled`, never none, and never two unread at the end.
//!
//! The channel is not a loom object, so loom places a receiver's takes only at the receiver's
//! own loom operations. In `restall_vs_receiver` the receiver reads `stats()` before each take
//! (see `probe`), so loom puts the takes on either side of the scan's stall emission; in the
//! three-thread model that probe multiplies the executions past 300 000, so its receiver only
//! yields between takes (its takes fall before, between or after the other threads' steps as
//! the yields allow) and the exactly-once check covers the drain after the joins as well.
//!
//! Bound: preemption bound 3 for both. Three-thread model: the drop is a handful of steps, the
//! scan visits three slots, the receiver switches at every `yield_now` without spending a
//! preemption; three preemptions put the drop's push before, between and after the scan's
//! pushes and the receiver's takes. Two-thread model: the scan's check of the unread `Stalled`
//! is one lock; three preemptions place the receiver's takes on either side of it. The channel itself is not a loom object: loom switches threads only at
//! the `order` mutex, the state words and the yields, which is where the decisions are made.
#![cfg(loom)]

use std::time::Duration;

use flushwatch::{DownCause, Event, FlushTracker, StallPolicy};
use flushwatch_loom_tests::{assert_safe, config, drain, explore, ShapeFacts, MS};
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

/// What a monitoring receiver loop may do between takes: read the tracker's statistics. It
/// gives loom a handle on the receiver: the channel is not a loom object, but the `stalled`,
/// `evicted` and `writers_down` counters the statistics load are bumped just before their
/// action event is queued, and `events_dropped` just after an informational one is dropped,
/// so loom places the receiver's takes on either side of those emissions.
fn probe(t: &FlushTracker<&'static str>) {
    let _ = t.stats();
}

fn is_info(e: &Event<&'static str>) -> bool {
    matches!(
        e,
        Event::Suspected { .. } | Event::Lagging { .. } | Event::ScanPanicked { .. }
    )
}

#[test]
fn action_events_vs_drop_and_receiver() {
    explore(3, || {
        let (config, mock) = config();
        let t = FlushTracker::new(
            config
                .event_capacity(1)
                .grace(5 * MS)
                .challenge(Duration::ZERO)
                .stall_policy(StallPolicy::Evict),
        )
        .unwrap();
        let a = t.register("a").unwrap();
        let b = t.register("b").unwrap();
        let c = t.register("c").unwrap();
        t.track(10, &[b.id()]).unwrap(); // b pending since 0 ms (flushed 0)
        mock.increment(8 * MS);
        t.track(25, &[c.id()]).unwrap(); // c pending since 8 ms (flushed 10)
        mock.increment(2 * MS);
        let r = t.scan(); // 10 ms
        assert_eq!(r.suspected, vec!["b"], "{r:?}");
        mock.increment(5 * MS);
        t.track(40, &[a.id()]).unwrap(); // a pending since 15 ms (flushed 25)
        mock.increment(5 * MS); // 20 ms: b stalls, c is overdue, a is not

        let rx = t.events();
        let receiver = thread::spawn(move || {
            let mut got = Vec::new();
            for _ in 0..2 {
                got.extend(rx.try_iter());
                thread::yield_now();
            }
            got
        });
        let dropper = thread::spawn(move || drop(a));
        let r = t.scan();
        dropper.join().unwrap();
        let mut all = receiver.join().unwrap();
        all.extend(drain(&t));

        // The scan: b stalled and excluded; c suspected; a counted unless already dropped.
        assert_eq!(r.stalled, vec!["b"], "{r:?}");
        assert_eq!(r.suspected, vec!["c"], "{r:?}");
        let bound = assert_safe(
            r.watermark,
            &[0, 10, 25, 40],
            &[
                // `a` counts or not (dropped): it pends at 25, above `c`, either way.
                ShapeFacts {
                    tracked: &[40],
                    durable: 0,
                    live: true,
                },
                ShapeFacts {
                    tracked: &[10],
                    durable: 0,
                    live: false,
                },
                ShapeFacts {
                    tracked: &[25],
                    durable: 0,
                    live: true,
                },
            ],
            &r,
        );
        assert_eq!((bound, r.watermark), (10, 10), "{r:?}");

        // Every action event exactly once.
        let downs = all
            .iter()
            .filter(|e| {
                **e == Event::WriterDown {
                    key: "a",
                    cause: DownCause::DroppedPending,
                }
            })
            .count();
        let stalls = all
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::Stalled {
                        key: "b",
                        evicted: true,
                        ..
                    }
                )
            })
            .count();
        assert_eq!((downs, stalls), (1, 1), "{all:?}");
        // Informational events: received or dropped, never both, never neither.
        let info: Vec<_> = all.iter().filter(|e| is_info(e)).collect();
        assert_eq!(info.len() + downs + stalls, all.len(), "{all:?}");
        assert_eq!(
            info.len() as u64 + t.events_dropped(),
            2,
            "two Suspected were emitted: {all:?}, dropped {}",
            t.events_dropped()
        );
        assert!(
            matches!(all[0], Event::Suspected { key: "b", .. }),
            "FIFO: {all:?}"
        );
        if info.len() == 2 {
            assert!(
                matches!(info[1], Event::Suspected { key: "c", .. }),
                "{all:?}"
            );
        }
        assert_eq!((t.stats().writers_down, t.stats().evicted), (1, 1));
        assert!(drain(&t).is_empty());
        drop((b, c));
    });
}

#[test]
fn restall_vs_receiver() {
    explore(3, || {
        let (config, mock) = config();
        let t = FlushTracker::new(
            config
                .event_capacity(1)
                .grace(Duration::ZERO)
                .challenge(Duration::ZERO)
                .stall_policy(StallPolicy::Report),
        )
        .unwrap();
        let a = t.register("a").unwrap();
        t.track(10, &[a.id()]).unwrap();
        mock.increment(10 * MS);
        assert_eq!(t.scan().suspected, vec!["a"]); // Suspected queued
        mock.increment(10 * MS);
        assert_eq!(t.scan().stalled, vec!["a"]); // Stalled queued (beyond capacity), re-armed
        mock.increment(10 * MS);
        assert_eq!(t.scan().suspected, vec!["a"]); // Suspected dropped: the queue is full
        assert_eq!(t.events_dropped(), 1);
        mock.increment(10 * MS);

        let took_stall = Arc::new(AtomicBool::new(false));
        // How many takes the receiver has started: the first takes the `Suspected`, the
        // second the first `Stalled` (the queue is FIFO).
        let takes = Arc::new(AtomicUsize::new(0));
        let receiver = {
            let rx = t.events();
            let took_stall = took_stall.clone();
            let takes = takes.clone();
            let t = t.clone();
            thread::spawn(move || {
                let mut got = Vec::new();
                for i in 0..2 {
                    probe(&t);
                    // Release: pairs with the scanning thread's read-modify-write below.
                    takes.store(i + 1, Ordering::Release);
                    if let Ok(e) = rx.try_recv() {
                        let stall = matches!(e, Event::Stalled { .. });
                        got.push(e);
                        if stall {
                            // Release: pairs with the scanning thread's Acquire load.
                            took_stall.store(true, Ordering::Release);
                        }
                    }
                    // No `yield_now` here: loom would then run the other thread first, and never
                    // let the receiver take both events before the scan starts.
                }
                got
            })
        };
        // Acquire: pairs with the receiver's Release store.
        let first_read = took_stall.load(Ordering::Acquire);
        let r = t.scan();
        // AcqRel read-modify-write: reads the latest count, so a count below 2 means the
        // receiver had not started taking the first `Stalled` when the scan returned.
        let first_unread_throughout = takes.fetch_add(0, Ordering::AcqRel) < 2;
        let got = receiver.join().unwrap();
        let unread = drain(&t);

        assert_eq!(r.stalled, vec!["a"], "a stall is always listed: {r:?}");
        assert_eq!(t.stats().stalled, 2, "and counted");
        assert!(!a.is_evicted(), "Report never evicts");
        let stalled = |v: &[Event<&'static str>]| {
            v.iter()
                .filter(|e| {
                    matches!(
                        e,
                        Event::Stalled {
                            key: "a",
                            evicted: false,
                            ..
                        }
                    )
                })
                .count()
        };
        let (taken, left) = (stalled(&got), stalled(&unread));
        assert!(left <= 1, "two unread Stalled: {got:?} {unread:?}");
        assert!(
            taken + left >= 1,
            "the Stalled was lost: {got:?} {unread:?}"
        );
        assert!(taken + left <= 2, "{got:?} {unread:?}");
        if first_read {
            assert_eq!(
                taken + left,
                2,
                "the first Stalled was read before the scan: the second must be queued"
            );
        }
        if first_unread_throughout {
            assert_eq!(
                taken + left,
                1,
                "a second Stalled was queued while the first was unread: {got:?} {unread:?}"
            );
        }
        // Only the first Suspected and the Stalled events ever reach the reader.
        let all: Vec<_> = got.iter().chain(&unread).collect();
        assert_eq!(all.len(), 1 + taken + left, "{all:?}");
        assert!(
            matches!(all[0], Event::Suspected { key: "a", .. }),
            "{all:?}"
        );
        assert_eq!(t.events_dropped(), 1);
        assert_eq!(t.watermark(), 0, "a still pins start_at");
    });
}
