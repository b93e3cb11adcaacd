//! Conformance to the contract (docs/contract.md): the bad-input table, Electric's FlushTracker scenarios with exact
//! watermarks, writer liveness, and the stall rules with a mock clock.

use std::sync::Arc;
use std::time::Duration;

use flushwatch::{Clock, MockClock};
use flushwatch::{Config, ConfigError, DownCause, Error, Event, FlushTracker, StallPolicy, Writer};

/// A default tracker on a mock clock (deterministic, and runs under Miri).
fn tracker() -> FlushTracker<&'static str> {
    FlushTracker::new(Config::default().clock(Clock::mock().0)).unwrap()
}

fn mocked(config: Config) -> (FlushTracker<&'static str>, Arc<MockClock>) {
    let (clock, mock) = Clock::mock();
    (FlushTracker::new(config.clock(clock)).unwrap(), mock)
}

fn events<K>(t: &FlushTracker<K>) -> Vec<Event<K>>
where
    K: std::hash::Hash + Eq + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    t.events().try_iter().collect()
}

const MS: Duration = Duration::from_millis(1);

// --- the API's shape ----------------------------------------------------------------------------

#[test]
fn the_public_types_have_the_promised_traits() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    fn clone<T: Clone>() {}
    fn id<T: Copy + Eq + std::hash::Hash + std::fmt::Debug>() {}
    fn error<T: std::error::Error + Send + Sync + 'static>() {}
    send_sync::<FlushTracker<String>>();
    clone::<FlushTracker<String>>();
    send::<Writer<String>>();
    id::<flushwatch::ShapeId>();
    error::<Error>();
    send_sync::<flushwatch::Scanner>();
    // Tracked is a plain value a test can build and compare.
    let t = flushwatch::Tracked {
        tracked: 1,
        skipped: 0,
        previous: 0,
    };
    assert_eq!(t, flushwatch::Tracked::default().clone_with(1));
    // The clock and the receiver are flushwatch's own types.
    let (_clock, _mock): (flushwatch::Clock, std::sync::Arc<MockClock>) = Clock::mock();
    let _rx: flushwatch::Events<u8> = FlushTracker::<u8>::new(Config::default()).unwrap().events();
}

trait CloneWith {
    fn clone_with(self, tracked: usize) -> Self;
}
impl CloneWith for flushwatch::Tracked {
    fn clone_with(mut self, tracked: usize) -> Self {
        self.tracked = tracked;
        self
    }
}

// --- the bad-input table ----------------------------------------------------------------------

#[test]
fn track_rejects_zero_and_regressions_and_changes_nothing() {
    let t = tracker();
    let a = t.register("a").unwrap();
    t.track(5, &[a.id()]).unwrap();
    assert_eq!(t.track(0, &[a.id()]), Err(Error::ZeroCommit));
    assert_eq!(
        t.track(5, &[a.id()]),
        Err(Error::OffsetRegression {
            last_seen: 5,
            got: 5
        })
    );
    assert_eq!(
        t.track(3, &[a.id()]),
        Err(Error::OffsetRegression {
            last_seen: 5,
            got: 3
        })
    );
    assert_eq!(t.track_keys(0, &["a"]), Err(Error::ZeroCommit));
    assert_eq!(
        t.track_keys(4, &["a"]),
        Err(Error::OffsetRegression {
            last_seen: 5,
            got: 4
        })
    );
    // Nothing changed: still pending on 5 with flushed 0 (start_at), last_seen 5.
    let s = t.status(&"a").unwrap();
    assert_eq!((s.sent, s.flushed, s.pending), (5, 0, true));
    assert_eq!(t.last_seen(), 5);
    assert_eq!(t.scan().watermark, 0);
    assert_eq!(
        t.track(9, &[]).unwrap().previous,
        5,
        "the errors left `previous` alone"
    );
}

#[test]
fn track_skips_gone_ids_and_counts_each_once() {
    let t = tracker();
    let a = t.register("a").unwrap();
    let b = t.register("b").unwrap();
    let (ida, idb) = (a.id(), b.id());
    drop(b);
    let r = t.track(1, &[ida, idb, idb, ida]).unwrap();
    assert_eq!((r.tracked, r.skipped), (1, 1));
    // A stale id stays stale even after its slot is reused by another shape.
    let c = t.register("c").unwrap();
    let r = t.track(2, &[idb, c.id()]).unwrap();
    assert_eq!((r.tracked, r.skipped), (1, 1));
    assert_eq!(t.status(&"c").unwrap().sent, 2);
    // Named after the shape that reuses its slot, in one call: still skipped, although the
    // slot was just sent this very commit (what an id named twice in one call looks like).
    let r = t.track(4, &[c.id(), idb]).unwrap();
    assert_eq!((r.tracked, r.skipped), (1, 1));
    assert_eq!(t.status(&"c").unwrap().sent, 4);
    let r = t.track_keys(5, &["a", "nope", "nope", "b"]).unwrap();
    assert_eq!((r.tracked, r.skipped), (1, 2));
}

#[test]
fn duplicate_register_leaves_the_existing_shape_untouched() {
    let t = tracker();
    let a = t.register("a").unwrap();
    t.track(3, &[a.id()]).unwrap();
    t.track(7, &[a.id()]).unwrap();
    a.flushed(3);
    assert_eq!(t.register("a").unwrap_err(), Error::DuplicateShape);
    let s = t.status(&"a").unwrap();
    assert_eq!((s.sent, s.flushed, s.pending), (7, 3, true));
    assert_eq!(t.id_of(&"a"), Some(a.id()));
    a.flushed(7);
    assert_eq!(t.scan().watermark, 7);
}

#[test]
fn lower_and_repeated_reports_are_ignored() {
    let t = tracker();
    let a = t.register("a").unwrap();
    t.track(10, &[a.id()]).unwrap();
    t.track(20, &[a.id()]).unwrap();
    t.track(30, &[a.id()]).unwrap();
    a.flushed(20);
    a.flushed(10);
    a.flushed(20);
    assert_eq!(t.status(&"a").unwrap().flushed, 20);
    t.scan();
    assert_eq!(t.watermark(), 20);
}

#[test]
fn overshoot_counts_as_caught_up_to_sent_and_a_later_track_is_pending() {
    let t = tracker();
    let a = t.register("a").unwrap();
    t.track(10, &[a.id()]).unwrap();
    a.flushed(1_000);
    let s = t.status(&"a").unwrap();
    assert_eq!((s.sent, s.flushed, s.pending), (10, 10, false));
    t.track(11, &[a.id()]).unwrap();
    let s = t.status(&"a").unwrap();
    assert_eq!((s.sent, s.flushed, s.pending), (11, 10, true));
    assert_eq!(t.scan().watermark, 10);
}

#[test]
fn a_partial_report_is_the_previous_commit_never_arithmetic() {
    // Sparse positions, as Postgres end LSNs are: nothing between two commits is a position.
    let t = FlushTracker::new(Config::default().start_at(0x1000)).unwrap();
    let a = t.register("a").unwrap();
    let first = t.track(0x1A28, &[a.id()]).unwrap();
    assert_eq!(first.previous, 0x1000, "start_at before any commit");
    let second = t.track(0x2F10, &[a.id()]).unwrap();
    assert_eq!(second.previous, 0x1A28);
    // `a` wrote all of 0x1A28 and part of 0x2F10: it reports previous(0x2F10).
    a.flushed(second.previous);
    let s = t.status(&"a").unwrap();
    assert_eq!((s.flushed, s.pending), (0x1A28, true));
    t.scan();
    assert_eq!(t.watermark(), 0x1A28, "never 0x2F10 - 1");
    // A keepalive with no shape moves last_seen and `previous` along.
    let k = t.track(0x3000, &[]).unwrap();
    assert_eq!((k.tracked, k.skipped, k.previous), (0, 0, 0x2F10));
    a.flushed(0x2F10);
    t.scan();
    assert_eq!(
        t.watermark(),
        0x3000,
        "caught up: last_seen is acknowledged"
    );
}

#[test]
fn a_caught_up_shape_is_raised_to_the_previous_commit_not_c_minus_1() {
    // The defect behind this rule: with end LSNs, raising to `c - 1` acknowledges part of `c`
    // to Postgres. The raise goes to the previous commit, so the watermark is always start_at
    // or a tracked commit.
    let t = tracker();
    let [a, b, _c] = abc(&t);
    t.track(0x100, &[a.id(), b.id()]).unwrap();
    a.flushed(0x100);
    b.flushed(0x100);
    t.track(0x250, &[b.id()]).unwrap(); // touches only b
    t.track(0x400, &[a.id()]).unwrap(); // a was caught up: durable up to 0x250
    let s = t.status(&"a").unwrap();
    assert_eq!((s.sent, s.flushed, s.pending), (0x400, 0x250, true));
    b.flushed(0x250);
    t.scan();
    assert_eq!(t.watermark(), 0x250);
    assert_ne!(t.watermark(), 0x3FF);
}

#[test]
fn reports_from_evicted_removed_or_retired_writers_are_ignored() {
    let (t, mock) = mocked(
        Config::default()
            .grace(Duration::ZERO)
            .challenge(Duration::ZERO),
    );
    let a = t.register("a").unwrap();
    let b = t.register("b").unwrap();
    t.track(5, &[a.id(), b.id()]).unwrap();
    // a: evicted.
    mock.increment(MS);
    t.scan();
    mock.increment(MS);
    b.flushed(5);
    let r = t.scan();
    assert_eq!(r.stalled, vec!["a"]);
    assert!(a.is_evicted());
    a.flushed(5);
    assert_eq!(t.status(&"a"), None, "an evicted key is free");
    // b: removed, then its reports are ignored and it no longer pins anything.
    t.track(6, &[b.id()]).unwrap();
    assert!(t.remove(&"b"));
    assert!(b.is_evicted());
    b.flushed(6);
    assert_eq!(t.status(&"b"), None);
    assert_eq!(t.scan().watermark, 6);
    // retired while pending: it reported 7 of 7 and 8; it no longer pins (a live shape at 7
    // would hold the watermark at 7), it ends quietly, its key is free, and a new writer for
    // the same key starts fresh (nothing of the old shape's positions).
    let c = t.register("c").unwrap();
    t.track(7, &[c.id()]).unwrap();
    t.track(8, &[c.id()]).unwrap();
    c.flushed(7);
    assert_eq!(t.scan().watermark, 7, "c pins at 7 while live");
    events(&t);
    c.retire();
    assert_eq!(t.status(&"c"), None, "a retired key is free");
    let r = t.scan();
    assert_eq!((r.watermark, r.pending, r.registered), (8, 0, 0));
    assert!(events(&t).is_empty(), "a retired writer ends quietly");
    let c2 = t.register("c").unwrap();
    let s = t.status(&"c").unwrap();
    assert_eq!((s.sent, s.flushed, s.pending), (0, 0, false));
    assert_eq!(t.track(9, &[c2.id()]).unwrap().previous, 8);
    let s = t.status(&"c").unwrap();
    assert_eq!(
        (s.sent, s.flushed, s.pending),
        (9, 8, true),
        "raised to 8, not the old 7"
    );
}

#[test]
fn track_hints_of_ended_shapes_and_other_trackers_are_none_and_stale_ones_are_harmless() {
    let t = tracker();
    let other = tracker();
    let removed = t.register("removed").unwrap();
    let dropped = t.register("dropped").unwrap();
    let foreign = other.register("foreign").unwrap();
    let stale = [removed.track_hint(), dropped.track_hint()];
    assert!(t.remove("removed"));
    drop(dropped);
    for h in &stale {
        assert!(t.track_hint(h.id()).is_none(), "{h:?}");
    }
    assert!(t.track_hint(foreign.id()).is_none(), "another tracker's id");
    assert!(other.track_hint(foreign.id()).is_some());

    // New shapes take the freed slots; the stale hints' prefetches change nothing.
    let a = t.register("a").unwrap();
    let b = t.register("b").unwrap();
    for h in &stale {
        h.prefetch();
    }
    let tracked = t
        .track(10, &[a.id(), b.id(), stale[0].id(), stale[1].id()])
        .unwrap();
    assert_eq!((tracked.tracked, tracked.skipped), (2, 2));
    a.flushed(10);
    t.scan();
    assert_eq!(t.watermark(), 0, "b holds it");
    b.flushed(10);
    t.scan();
    assert_eq!(t.watermark(), 10);
}

#[test]
fn invalid_configs_are_rejected_and_zero_grace_and_challenge_are_valid() {
    let bad = FlushTracker::<u8>::new(Config::default().scan_interval(Duration::ZERO));
    assert_eq!(
        bad.unwrap_err(),
        Error::InvalidConfig(ConfigError::ZeroScanInterval)
    );
    let bad = FlushTracker::<u8>::new(Config::default().event_capacity(0));
    assert_eq!(
        bad.unwrap_err(),
        Error::InvalidConfig(ConfigError::ZeroEventCapacity)
    );
    let ok = FlushTracker::<u8>::new(
        Config::default()
            .grace(Duration::ZERO)
            .challenge(Duration::ZERO),
    );
    assert!(ok.is_ok());
    // Errors are readable.
    let msg = Error::InvalidConfig(ConfigError::ZeroScanInterval).to_string();
    assert!(msg.contains("scan_interval"), "{msg}");
}

#[test]
fn nobody_reading_events_never_blocks_drops_informational_events_and_keeps_actions() {
    let (t, mock) = mocked(
        Config::default()
            .grace(Duration::ZERO)
            .challenge(Duration::ZERO)
            .event_capacity(4),
    );
    let rounds = 20_000u64;
    for round in 0..rounds {
        let next = 10 + round * 7;
        // A shape stuck forever under Evict, rebuilt every round: Suspected + Stalled per round.
        let w = t.register("stuck").unwrap();
        t.track(next, &[w.id()]).unwrap();
        mock.increment(MS);
        t.scan();
        mock.increment(MS);
        let r = t.scan();
        assert_eq!(r.stalled, vec!["stuck"], "round {round}");
    }
    // Two Suspected fit before the queue reached its capacity; every Stalled is kept.
    assert_eq!(
        t.events_dropped(),
        rounds - 2,
        "the other Suspected were dropped"
    );
    let events = events(&t);
    assert_eq!(events.len() as u64, rounds + 2);
    let stalled = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Stalled {
                    key: "stuck",
                    evicted: true,
                    ..
                }
            )
        })
        .count();
    assert_eq!(stalled as u64, rounds, "every eviction reaches the reader");
}

#[test]
fn a_second_scanner_is_refused() {
    let t = tracker();
    let s = t.spawn_scanner().unwrap();
    assert_eq!(t.spawn_scanner().unwrap_err(), Error::ScannerRunning);
    assert_eq!(
        t.clone().spawn_scanner().unwrap_err(),
        Error::ScannerRunning
    );
    drop(s);
    let _s = t.spawn_scanner().unwrap();
}

// --- start_at edge cases ------------------------------------------------------------------------

#[test]
fn start_at_zero_and_max_are_legal() {
    let t = FlushTracker::<u8>::new(Config::default().start_at(u64::MAX)).unwrap();
    assert_eq!(t.watermark(), u64::MAX);
    let w = t.register(1).unwrap();
    assert_eq!(
        t.track(u64::MAX, &[w.id()]),
        Err(Error::OffsetRegression {
            last_seen: u64::MAX,
            got: u64::MAX
        })
    );
    assert_eq!(t.scan().watermark, u64::MAX);

    let t = FlushTracker::<u8>::new(Config::default().start_at(100)).unwrap();
    let w = t.register(1).unwrap();
    assert_eq!(t.scan().watermark, 100);
    w.flushed(50);
    t.track(101, &[w.id()]).unwrap();
    assert_eq!(t.scan().watermark, 100);
    w.flushed(101);
    assert_eq!(t.scan().watermark, 101);
}

// --- Electric's FlushTracker scenarios ----------------------------------------------------------

/// Helper: register shapes a, b, c.
fn abc(t: &FlushTracker<&'static str>) -> [Writer<&'static str>; 3] {
    ["a", "b", "c"].map(|k| t.register(k).unwrap())
}

#[test]
fn electric_nothing_pending_acknowledges_last_seen() {
    let t = tracker();
    let [a, _b, _c] = abc(&t);
    t.track(10, &[a.id()]).unwrap();
    a.flushed(10);
    t.track(11, &[]).unwrap();
    assert_eq!(t.scan().watermark, 11);
}

#[test]
fn electric_alternating_load() {
    // Transactions alternate between a and b at sparse positions; each shape flushes one
    // transaction behind.
    let t = tracker();
    let [a, b, _c] = abc(&t);
    let commits: Vec<u64> = (1..=20u64).map(|i| 100 * i + (i * i) % 37).collect();
    let mut expect = Vec::new();
    let mut got = Vec::new();
    let mut prev = 0;
    for (i, &commit) in commits.iter().enumerate() {
        let (this, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        assert_eq!(t.track(commit, &[this.id()]).unwrap().previous, prev);
        // The other shape flushes the transaction it got one step ago.
        if i > 0 {
            other.flushed(prev);
        }
        t.scan();
        got.push(t.watermark());
        // Only `this` is pending, on `commit`, raised to the previous commit.
        expect.push(prev);
        prev = commit;
    }
    assert_eq!(got, expect);
    b.flushed(prev);
    t.scan();
    assert_eq!(t.watermark(), prev);
}

#[test]
fn electric_partial_flushes() {
    let t = tracker();
    let [a, b, _c] = abc(&t);
    let p200 = t.track(100, &[a.id(), b.id()]).unwrap().previous;
    assert_eq!(p200, 0);
    let p200 = t.track(200, &[a.id(), b.id()]).unwrap().previous;
    let p300 = t.track(300, &[a.id()]).unwrap().previous;
    assert_eq!((p200, p300), (100, 200));
    a.flushed(p200); // a wrote 100 and part of 200
    b.flushed(100);
    t.scan();
    assert_eq!(t.watermark(), 100);
    b.flushed(200); // b caught up
    t.scan();
    assert_eq!(t.watermark(), 100, "a still holds 200 in part");
    a.flushed(p300); // a wrote 200 and part of 300
    t.scan();
    assert_eq!(t.watermark(), 200);
    a.flushed(300);
    t.scan();
    assert_eq!(t.watermark(), 300);
}

#[test]
fn electric_removal_unpins() {
    let t = tracker();
    let [a, b, c] = abc(&t);
    t.track(5, &[a.id(), b.id(), c.id()]).unwrap();
    b.flushed(5);
    c.flushed(5);
    assert_eq!(
        t.scan().watermark,
        0,
        "a holds commit 5: durable up to start_at"
    );
    assert_eq!(t.pinned_by().unwrap().key, "a");
    assert!(t.remove(&"a"));
    assert_eq!(t.scan().watermark, 5);
    assert!(t.pinned_by().is_none());
    drop(a);
}

#[test]
fn electric_gaps_between_commits() {
    // Commits far apart, shapes skipping many of them: the raise to the previous commit
    // acknowledges what the other shapes left durable, and nothing in between.
    let t = tracker();
    let [a, b, _c] = abc(&t);
    t.track(1_000, &[a.id()]).unwrap();
    a.flushed(1_000);
    t.track(5_000, &[b.id()]).unwrap();
    assert_eq!(t.scan().watermark, 1_000);
    t.track(9_000, &[a.id()]).unwrap();
    assert_eq!(
        t.status(&"a").unwrap().flushed,
        5_000,
        "a raised to the previous commit"
    );
    assert_eq!(t.scan().watermark, 1_000);
    b.flushed(5_000);
    assert_eq!(t.scan().watermark, 5_000);
    a.flushed(9_000);
    assert_eq!(t.scan().watermark, 9_000);
}

#[test]
fn electric_overshoot_does_not_ack_later_transactions() {
    let t = tracker();
    let [a, b, _c] = abc(&t);
    t.track(10, &[a.id(), b.id()]).unwrap();
    a.flushed(50); // claims more than sent: counts as 10
    b.flushed(10);
    assert_eq!(t.scan().watermark, 10);
    t.track(20, &[a.id()]).unwrap();
    assert_eq!(t.scan().watermark, 10, "a pending on 20: durable up to 10");
    a.flushed(20);
    assert_eq!(t.scan().watermark, 20);
}

#[test]
fn never_acknowledges_less_than_electric_on_sequential_input() {
    // Electric acknowledges tx - 1 whenever anything is pending; flushwatch acknowledges
    // exactly what is durable.
    let t = tracker();
    let [a, b, _c] = abc(&t);
    t.track(10, &[a.id()]).unwrap();
    t.track(11, &[b.id()]).unwrap();
    a.flushed(10);
    // b pending on 11 with flushed 10 (caught up before): both agree on 10 here.
    assert_eq!(t.scan().watermark, 10);
    t.track(12, &[a.id()]).unwrap();
    b.flushed(11);
    // Electric: something pending -> 12 - 1; flushwatch: a pending on 12, durable to 11 -> 11.
    assert_eq!(t.scan().watermark, 11);
}

#[test]
fn watermark_never_decreases_and_starts_at_start_at() {
    let t = FlushTracker::<u8>::new(Config::default().start_at(50)).unwrap();
    assert_eq!(t.watermark(), 50);
    let a = t.register(1).unwrap();
    t.track(60, &[a.id()]).unwrap();
    assert_eq!(t.watermark(), 50, "changes only in scan");
    assert_eq!(t.scan().watermark, 50);
    a.flushed(60);
    assert_eq!(t.scan().watermark, 60);
    // A late registration made pending at 70 never lowers what was published.
    let b = t.register(2).unwrap();
    t.track(70, &[b.id()]).unwrap();
    assert_eq!(t.scan().watermark, 60);
    b.flushed(70);
    assert_eq!(t.scan().watermark, 70);
}

// --- writer liveness -----------------------------------------------------------------------------

#[test]
fn dropping_a_pending_writer_unpins_and_reports() {
    let t = tracker();
    let [a, b, _c] = abc(&t);
    t.track(3, &[a.id(), b.id()]).unwrap();
    b.flushed(3);
    assert_eq!(t.scan().watermark, 0);
    drop(a);
    assert_eq!(t.id_of(&"a"), None, "key free at once");
    assert_eq!(t.scan().watermark, 3);
    assert_eq!(
        events(&t)
            .into_iter()
            .filter(|e| matches!(e, Event::WriterDown { .. }))
            .collect::<Vec<_>>(),
        vec![Event::WriterDown {
            key: "a",
            cause: DownCause::DroppedPending
        }]
    );
}

#[test]
fn dropping_a_caught_up_writer_or_retiring_is_quiet() {
    let t = tracker();
    let [a, b, c] = abc(&t);
    t.track(3, &[a.id(), b.id()]).unwrap();
    a.flushed(3);
    drop(a);
    b.retire(); // pending, but deliberate
    drop(c); // never sent anything
    assert!(events(&t).is_empty());
    assert_eq!(t.scan().watermark, 3);
    assert_eq!(t.stats().registered, 0);
}

#[test]
fn a_panicking_consumer_unpins_with_writer_down_panicked() {
    let t = tracker();
    let a = t.register("a").unwrap();
    t.track(9, &[a.id()]).unwrap();
    a.flushed(9);
    t.track(10, &[a.id()]).unwrap();
    let handle = std::thread::spawn(move || {
        let _writer = a;
        panic!("consumer bug");
    });
    assert!(handle.join().is_err());
    let r = t.scan();
    assert_eq!(r.watermark, 10);
    assert!(events(&t).contains(&Event::WriterDown {
        key: "a",
        cause: DownCause::Panicked
    }));
}

#[test]
fn remove_returns_whether_registered_and_makes_the_writer_inert() {
    let t = tracker();
    let a = t.register("a").unwrap();
    assert!(t.remove(&"a"));
    assert!(!t.remove(&"a"));
    assert!(a.is_evicted());
    let a2 = t.register("a").unwrap();
    assert!(!a2.is_evicted());
    drop(a); // inert: must not touch a2
    assert_eq!(t.id_of(&"a"), Some(a2.id()));
    assert!(events(&t).is_empty());
}

/// The slot index inside a `ShapeId` (its `Debug` form: `ShapeId { index: N, gen: G }`).
fn slot_of(id: flushwatch::ShapeId) -> u32 {
    let text = format!("{id:?}");
    let digits: String = text["ShapeId { index: ".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

#[test]
fn a_removed_writer_never_touches_another_shape_and_a_stale_id_never_touches_the_slot_s_next_shape()
{
    let t = tracker();
    let a = t.register("a").unwrap();
    let old = a.id();
    assert!(t.remove(&"a"));
    // `a`'s writer still owns its slot: a new registration gets another slot, and what the
    // removed writer does lands in its own slot only.
    let b = t.register("b").unwrap();
    assert_ne!(slot_of(b.id()), slot_of(old));
    t.track(4, &[b.id()]).unwrap();
    a.flushed(4);
    a.defer();
    let s = t.status(&"b").unwrap();
    assert_eq!((s.flushed, s.suspected), (0, false));
    assert_eq!(t.track(5, &[old]).unwrap().skipped, 1);
    // Once the writer is gone its slot is reused: the old id names the slot of `c` now, and
    // is still skipped (another generation); `c` is untouched by it.
    drop(a);
    let c = t.register("c").unwrap();
    assert_eq!(slot_of(c.id()), slot_of(old), "the freed slot is reused");
    assert_ne!(c.id(), old);
    let tracked = t.track(6, &[old]).unwrap();
    assert_eq!((tracked.tracked, tracked.skipped), (0, 1));
    let s = t.status(&"c").unwrap();
    assert_eq!((s.sent, s.flushed, s.pending), (0, 0, false));
    assert!(t.remove(&"c"));
    assert!(c.is_evicted());
    assert!(!t.remove(&"c"), "removed once");
}

// --- stall detection (mock clock) --------------------------------------------------------------

fn stall_tracker(
    grace_ms: u64,
    challenge_ms: u64,
    policy: StallPolicy,
) -> (FlushTracker<&'static str>, Arc<MockClock>) {
    mocked(
        Config::default()
            .grace(MS * grace_ms as u32)
            .challenge(MS * challenge_ms as u32)
            .stall_policy(policy),
    )
}

#[test]
fn overdue_is_strictly_more_than_grace() {
    let (t, mock) = stall_tracker(100, 10, StallPolicy::Evict);
    let a = t.register("a").unwrap();
    mock.increment(MS * 7);
    t.track(1, &[a.id()]).unwrap(); // tick at 7 ms
    mock.increment(MS * 100);
    assert!(
        t.scan().suspected.is_empty(),
        "exactly grace is not overdue"
    );
    assert!(!a.is_suspected());
    mock.increment(Duration::from_nanos(1));
    let r = t.scan();
    assert_eq!(r.suspected, vec!["a"]);
    assert!(a.is_suspected());
    match events(&t).as_slice() {
        [Event::Suspected { key: "a", idle }] => {
            assert_eq!(*idle, MS * 100 + Duration::from_nanos(1))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn stalls_beyond_the_first_page_are_found_and_counted() {
    // Slots come in pages of 1,024: 2,600 shapes fill two pages and part of a third; the
    // stuck shapes sit on the second and the third.
    const N: u32 = 2_600;
    const STUCK: [u32; 2] = [1_500, 2_500];
    let (clock, mock) = Clock::mock();
    let t: FlushTracker<u32> = FlushTracker::new(
        Config::default()
            .grace(MS * 10)
            .challenge(MS * 5)
            .event_capacity(4)
            .clock(clock),
    )
    .unwrap();
    let writers: Vec<_> = (0..N).map(|k| t.register(k).unwrap()).collect();
    let ids: Vec<_> = writers.iter().map(|w| w.id()).collect();
    assert_eq!(
        ids.iter().map(|&id| slot_of(id) / 1024).max(),
        Some(2),
        "three pages"
    );
    t.track(1, &ids).unwrap();
    for w in &writers {
        if !STUCK.contains(w.key()) {
            w.flushed(1);
        }
    }
    mock.increment(MS * 11);
    let r = t.scan();
    let sorted = |mut v: Vec<u32>| {
        v.sort_unstable();
        v
    };
    assert_eq!(sorted(r.suspected.clone()), STUCK);
    assert_eq!(r.registered, N as usize);
    assert!(r.pinned_by.is_some_and(|k| STUCK.contains(&k)), "{r:?}");
    let s = t.stats();
    assert_eq!((s.registered, s.pending, s.suspected), (N as usize, 2, 2));
    mock.increment(MS * 6);
    let r = t.scan();
    assert_eq!(sorted(r.stalled.clone()), STUCK);
    assert_eq!(r.watermark, 1);
    for k in STUCK {
        let k = k as usize;
        assert!(writers[k].is_evicted());
        assert!(!writers[k - 1].is_evicted() && !writers[k + 1].is_evicted());
    }
    let s = t.stats();
    assert_eq!((s.pending, s.suspected, s.evicted), (0, 0, 2));
    let evicted: Vec<u32> = events(&t)
        .into_iter()
        .filter_map(|e| match e {
            Event::Stalled {
                key, evicted: true, ..
            } => Some(key),
            _ => None,
        })
        .collect();
    assert_eq!(sorted(evicted), STUCK, "both evictions reach the reader");
    assert_eq!(t.id_of(&1_500), None, "the evicted key is free");
    assert_eq!(t.id_of(&1_499), Some(writers[1_499].id()));
    let again = t.register(2_500).expect("registered again at once");
    t.track(2, &[again.id()]).unwrap();
    assert_eq!(t.scan().pinned_by, Some(2_500));
    let s = t.stats();
    assert_eq!(
        (s.pending, s.suspected, s.evicted),
        (1, 0, 2),
        "only the new shape"
    );
}

#[test]
fn a_pending_set_in_slot_order_names_the_first_holder_in_every_scan() {
    // Entries of consecutive slots are visited by walking their page's slots in order
    // (`visit.rs`, `steady_run`); each record's index is still checked. Sets under and over
    // the prefetch size (4,096), over several pages (1,024 slots), in slot order but for two
    // entries swapped (a batch whose ends look consecutive while its middle is not). Ties at
    // the lowest position: `pinned_by` names the first holder in visiting order, in the first
    // scan (full visits) and in the later ones (steady visits).
    for n in [1_000u32, 2 * 1024 + 100, 3 * 4096 + 7] {
        let (clock, _mock) = Clock::mock();
        let t = FlushTracker::<u32>::new(Config::default().clock(clock)).unwrap();
        let writers: Vec<_> = (0..n).map(|k| t.register(k).unwrap()).collect();
        let mut order: Vec<u32> = (0..n).collect();
        order.swap(17, 18);
        let ids: Vec<_> = order.iter().map(|&k| writers[k as usize].id()).collect();
        for commit in 1..=3 {
            t.track(commit, &ids).unwrap();
        }
        // Every shape pending at 2 but three at 1, visited in the order 18, 17, n - 1.
        let holders = [18, 17, n - 1];
        for (k, w) in (0..n).zip(&writers) {
            w.flushed(if holders.contains(&k) { 1 } else { 2 });
        }
        for holder in holders {
            for _ in 0..3 {
                let r = t.scan();
                assert_eq!((r.pending, r.watermark), (n as usize, 1), "n {n}");
                assert_eq!(r.pinned_by, Some(holder), "n {n}");
            }
            writers[holder as usize].flushed(2);
        }
        let r = t.scan();
        assert_eq!((r.pending, r.watermark), (n as usize, 2), "n {n}");
        assert_eq!(
            r.pinned_by,
            Some(0),
            "n {n}: all tie at 2, the first visited"
        );
        for w in writers.iter().step_by(2) {
            w.flushed(3);
        }
        let r = t.scan();
        assert_eq!((r.pending, r.watermark), (n as usize / 2, 2), "n {n}");
        assert_eq!(r.pinned_by, Some(1), "n {n}");
        for w in &writers {
            w.flushed(3);
        }
        let r = t.scan();
        assert_eq!((r.pending, r.watermark, r.pinned_by), (0, 3, None), "n {n}");
    }
}

#[test]
fn a_large_shuffled_pending_set_counts_every_shape_in_every_scan() {
    // Past the size from which a scan prefetches in batches (4,096 entries), not a multiple of
    // a batch, tracked in a shuffled order (so that no batch is in slot order): every pending
    // shape counts in each scan, the first (full visits) and the later ones (steady visits).
    const N: u32 = 3 * 4096 + 7;
    let (clock, _mock) = Clock::mock();
    let t = FlushTracker::<u32>::new(Config::default().clock(clock)).unwrap();
    let writers: Vec<_> = (0..N).map(|k| t.register(k).unwrap()).collect();
    let mut order: Vec<usize> = (0..N as usize).collect();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let ids: Vec<_> = order.iter().map(|&i| writers[i].id()).collect();
    for commit in 1..=3 {
        t.track(commit, &ids).unwrap();
    }
    // Two of every three stay pending at 2; the last of them, alone, at 1.
    let pending = |k: u32| k % 3 != 0;
    let holder = (0..N).rev().find(|&k| pending(k)).unwrap();
    for (k, w) in (0..N).zip(&writers) {
        w.flushed(match k {
            _ if k == holder => 1,
            _ if pending(k) => 2,
            _ => 3,
        });
    }
    let count = (0..N).filter(|&k| pending(k)).count();
    for _ in 0..3 {
        let r = t.scan();
        assert_eq!((r.pending, r.watermark), (count, 1));
        assert_eq!(r.pinned_by, Some(holder));
    }
    writers[holder as usize].flushed(2);
    let r = t.scan();
    assert_eq!((r.pending, r.watermark), (count, 2));
    for w in &writers {
        w.flushed(3);
    }
    let r = t.scan();
    assert_eq!((r.pending, r.watermark, r.pinned_by), (0, 3, None));
}

#[test]
fn challenge_then_stall_never_in_the_suspecting_scan() {
    let (t, mock) = stall_tracker(10, 5, StallPolicy::Evict);
    let a = t.register("a").unwrap();
    let b = t.register("b").unwrap();
    t.track(1, &[a.id(), b.id()]).unwrap();
    b.flushed(1);
    mock.increment(MS * 11);
    let r = t.scan();
    assert_eq!((r.suspected.len(), r.stalled.len()), (1, 0));
    mock.increment(MS * 5);
    assert!(
        t.scan().stalled.is_empty(),
        "exactly challenge is not enough"
    );
    mock.increment(Duration::from_nanos(1));
    let r = t.scan();
    assert_eq!(r.stalled, vec!["a"]);
    assert_eq!(r.watermark, 1, "evict unpins in the same scan");
    assert_eq!(r.pending, 0);
    assert!(a.is_evicted());
    assert!(!a.is_suspected());
    assert!(t.register("a").is_ok(), "the key is free at once");
    let stalled: Vec<_> = events(&t)
        .into_iter()
        .filter(|e| matches!(e, Event::Stalled { .. }))
        .collect();
    assert_eq!(
        stalled,
        vec![Event::Stalled {
            key: "a",
            idle: MS * 16 + Duration::from_nanos(1),
            flushed: 0,
            sent: 1,
            evicted: true
        }]
    );
    let s = t.stats();
    assert_eq!((s.stalled, s.evicted), (1, 1));
}

#[test]
fn zero_grace_and_challenge() {
    let (t, mock) = stall_tracker(0, 0, StallPolicy::Evict);
    let a = t.register("a").unwrap();
    t.track(1, &[a.id()]).unwrap();
    assert!(
        t.scan().suspected.is_empty(),
        "no time has passed: idle 0 is not > 0"
    );
    mock.increment(Duration::from_nanos(1));
    assert_eq!(t.scan().suspected, vec!["a"]);
    assert!(t.scan().stalled.is_empty(), "no time since the suspicion");
    mock.increment(Duration::from_nanos(1));
    assert_eq!(t.scan().stalled, vec!["a"]);
}

#[test]
fn defer_answers_a_challenge() {
    let (t, mock) = stall_tracker(10, 5, StallPolicy::Evict);
    let a = t.register("a").unwrap();
    t.track(1, &[a.id()]).unwrap();
    mock.increment(MS * 11);
    t.scan();
    assert!(a.is_suspected());
    a.defer();
    assert!(!a.is_suspected());
    mock.increment(MS * 6);
    let r = t.scan();
    assert!(r.stalled.is_empty(), "answered");
    assert!(r.suspected.is_empty(), "defer refreshed the tick");
    mock.increment(MS * 5);
    assert_eq!(
        t.scan().suspected,
        vec!["a"],
        "idle again 11 ms after the defer"
    );
}

#[test]
fn progress_answers_and_refreshes_but_new_transactions_and_repeats_do_not() {
    let (t, mock) = stall_tracker(10, 5, StallPolicy::Evict);
    let a = t.register("a").unwrap();
    t.track(1, &[a.id()]).unwrap();
    t.track(2, &[a.id()]).unwrap();
    mock.increment(MS * 8);
    t.track(3, &[a.id()]).unwrap(); // already pending: not a refresh
    a.flushed(0); // not progress (flushed is already 0)
    mock.increment(MS * 3);
    assert_eq!(
        t.scan().suspected,
        vec!["a"],
        "11 ms since it became pending"
    );
    a.flushed(1); // progress
    assert!(!a.is_suspected());
    mock.increment(MS * 10);
    assert!(
        t.scan().suspected.is_empty(),
        "10 ms since progress: not overdue"
    );
    a.flushed(1); // repeated: not progress
    mock.increment(Duration::from_nanos(1));
    assert_eq!(t.scan().suspected, vec!["a"]);
    mock.increment(MS * 6);
    let r = t.scan();
    assert_eq!(r.stalled, vec!["a"]);
    assert_eq!(r.watermark, 3, "a evicted: nothing pending, last_seen");
}

#[test]
fn completion_never_stalls() {
    let (t, mock) = stall_tracker(10, 5, StallPolicy::Evict);
    let a = t.register("a").unwrap();
    t.track(1, &[a.id()]).unwrap();
    a.flushed(1);
    mock.increment(MS * 1000);
    let r = t.scan();
    assert!(r.suspected.is_empty() && r.stalled.is_empty());
    // Suspected, then it completes: the suspicion clears, no stall.
    t.track(2, &[a.id()]).unwrap();
    mock.increment(MS * 11);
    assert_eq!(t.scan().suspected, vec!["a"]);
    a.flushed(2);
    mock.increment(MS * 100);
    let r = t.scan();
    assert!(r.stalled.is_empty());
    assert!(!a.is_evicted());
    assert_eq!(r.watermark, 2);
}

#[test]
fn report_policy_pins_and_rearms_without_an_event_storm() {
    let (t, mock) = stall_tracker(10, 5, StallPolicy::Report);
    let a = t.register("a").unwrap();
    t.track(1, &[a.id()]).unwrap();
    let mut suspected = 0;
    let mut stalled = 0;
    // 1 ms scans for 100 ms: suspected at 11, stalled at 17, re-armed: suspected at 28,
    // stalled at 34, ...: one cycle every grace + challenge + 2 scans.
    for _ in 0..100 {
        mock.increment(MS);
        let r = t.scan();
        suspected += r.suspected.len();
        stalled += r.stalled.len();
        assert_eq!(r.watermark, 0, "Report keeps the shape pinned");
    }
    assert!(!a.is_evicted());
    assert_eq!((suspected, stalled), (6, 5), "cycles of 17 ms over 100 ms");
    assert_eq!(t.status(&"a").unwrap().sent, 1);
}

#[test]
fn a_tick_from_the_future_counts_as_zero() {
    let (t, mock) = stall_tracker(10, 5, StallPolicy::Evict);
    mock.increment(MS * 50);
    let a = t.register("a").unwrap();
    t.track(1, &[a.id()]).unwrap(); // tick at 50 ms
    mock.decrement(MS * 30); // the clock goes back
    let r = t.scan();
    assert!(r.suspected.is_empty());
    assert_eq!(t.status(&"a").unwrap().idle, Duration::ZERO);
}

#[test]
fn status_and_pinned_by_report_lag_and_idle() {
    let (t, mock) = stall_tracker(1000, 5, StallPolicy::Evict);
    let [a, b, _c] = abc(&t);
    t.track(10, &[a.id(), b.id()]).unwrap();
    t.track(15, &[b.id()]).unwrap();
    a.flushed(10);
    mock.increment(MS * 3);
    t.scan();
    let p = t.pinned_by().unwrap();
    assert_eq!(
        (p.key, p.flushed, p.sent, p.lag, p.idle),
        ("b", 0, 15, 15, MS * 3)
    );
    let s = t.status(&"a").unwrap();
    assert_eq!((s.pending, s.idle, s.lag), (false, Duration::ZERO, 0));
    assert_eq!(t.status(&"nope"), None);
}

/// A tracker on a mock clock and the sequential model, both with a lag window of 2 scans and
/// a grace of an hour (no stall gets in the way): the lagging tests drive both with the same
/// steps.
fn lag_window_2() -> (
    FlushTracker<&'static str>,
    Arc<MockClock>,
    flushwatch::model::Model<&'static str>,
) {
    let grace = Duration::from_secs(3600);
    let (clock, mock) = Clock::mock();
    let t = FlushTracker::new(Config::default().clock(clock).grace(grace).lag_window(2)).unwrap();
    let model = flushwatch::model::Model::new(flushwatch::model::ModelConfig {
        grace: grace.as_nanos() as u64,
        lag_window: 2,
        ..Default::default()
    });
    (t, mock, model)
}

#[test]
fn lagging_is_reported_once_per_episode() {
    let (t, mock, mut model) = lag_window_2();
    let slow = t.register("slow").unwrap();
    let m_slow = model.register("slow", 0).unwrap();
    let mut now = 0;
    let mut commit = 0;
    let mut lagging = 0;
    let mut first = (None, None);
    // The consumer flushes 1 commit per scan while 3 arrive: lag grows by 2 per scan.
    for step in 0..10u64 {
        for _ in 0..3 {
            commit += 1;
            t.track(commit, &[slow.id()]).unwrap();
            model.track(commit, &[m_slow], now).unwrap();
        }
        slow.flushed(step + 1);
        model.flushed(m_slow, step + 1, now);
        mock.increment(MS);
        now += 1_000_000;
        let found = t.scan().lagging.len();
        lagging += found;
        if found > 0 {
            first.0.get_or_insert(step);
        }
        if !model.scan(now).lagging.is_empty() {
            first.1.get_or_insert(step);
        }
    }
    assert_eq!(lagging, 1, "once per episode");
    // First seen pending at step 0 (a run of one scan), grown and progressed in every scan
    // from step 1: the run exceeds the window of 2 scans at step 2, not before or after.
    assert_eq!(first, (Some(2), Some(2)), "(tracker, model)");
    // It catches up: the episode ends; a new one can start later.
    slow.flushed(commit);
    t.scan();
    for step in 0..6u64 {
        for _ in 0..3 {
            commit += 1;
            t.track(commit, &[slow.id()]).unwrap();
        }
        slow.flushed(30 + step + 1);
        mock.increment(MS);
        lagging += t.scan().lagging.len();
    }
    assert_eq!(lagging, 2);
    assert!(events(&t)
        .iter()
        .any(|e| matches!(e, Event::Lagging { key: "slow", .. })));
}

#[test]
fn a_lag_that_holds_steady_while_progressing_is_not_lagging() {
    // One commit arrives and one is flushed per scan: the lag never grows, so the shape is
    // not slow, on the tracker or on the model.
    let (t, mock, mut model) = lag_window_2();
    let w = t.register("steady").unwrap();
    let m = model.register("steady", 0).unwrap();
    let mut now = 0;
    for step in 1..=10u64 {
        t.track(step * 10, &[w.id()]).unwrap();
        model.track(step * 10, &[m], now).unwrap();
        if step > 1 {
            w.flushed((step - 1) * 10);
            model.flushed(m, (step - 1) * 10, now);
        }
        mock.increment(MS);
        now += 1_000_000;
        assert!(t.scan().lagging.is_empty(), "tracker, step {step}");
        assert!(model.scan(now).lagging.is_empty(), "model, step {step}");
    }
}

#[test]
fn lag_grown_between_progress_counts_toward_lagging() {
    // The lag grows only in scans where the consumer made no progress (the source moves on
    // through keepalives), and holds steady in the scan where it progresses: the run still
    // never decreased, ended higher and saw progress, so it is lagging. A scan that skipped
    // the shape while nothing about it changed must still note that its lag grew.
    let (t, mock) = mocked(
        Config::default()
            .grace(Duration::from_secs(3600))
            .lag_window(2),
    );
    let a = t.register("a").unwrap();
    for c in [100, 150, 200, 250] {
        t.track(c, &[a.id()]).unwrap();
    }
    mock.increment(MS);
    let r1 = t.scan(); // lag 250
    t.track(1_000, &[]).unwrap(); // keepalive
    mock.increment(MS);
    let r2 = t.scan(); // lag 1,000: grew, no progress
    a.flushed(100);
    t.track(1_100, &[]).unwrap();
    mock.increment(MS);
    let r3 = t.scan(); // lag 1,000: held, progress; a run of three scans
    assert!(r1.lagging.is_empty() && r2.lagging.is_empty());
    assert_eq!(r3.lagging, vec!["a"], "{r3:?}");
    assert_eq!(t.status(&"a").unwrap().lag, 1_000);
}

#[test]
fn scan_panics_are_caught_by_the_scanner_and_detection_goes_on() {
    use std::hash::{Hash, Hasher};
    use std::sync::atomic::{AtomicBool, Ordering};
    static EXPLODE: AtomicBool = AtomicBool::new(false);
    #[derive(Debug, PartialEq, Eq)]
    struct Touchy(u8);
    impl Hash for Touchy {
        fn hash<H: Hasher>(&self, h: &mut H) {
            self.0.hash(h)
        }
    }
    impl Clone for Touchy {
        fn clone(&self) -> Self {
            // Relaxed: a test switch.
            if EXPLODE.load(Ordering::Relaxed) {
                panic!("key clone exploded");
            }
            Touchy(self.0)
        }
    }
    let t = FlushTracker::new(
        Config::default()
            .grace(Duration::ZERO)
            .challenge(Duration::ZERO)
            .scan_interval(MS),
    )
    .unwrap();
    let w = t.register(Touchy(1)).unwrap();
    t.track(1, &[w.id()]).unwrap();
    // Relaxed: a test switch.
    EXPLODE.store(true, Ordering::Relaxed);
    let scanner = t.spawn_scanner().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while t.stats().scan_panics < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(MS);
    }
    assert!(
        t.stats().scan_panics >= 3,
        "the scanner keeps scanning after panics"
    );
    // Relaxed: a test switch.
    EXPLODE.store(false, Ordering::Relaxed);
    while !w.is_evicted() && std::time::Instant::now() < deadline {
        std::thread::sleep(MS);
    }
    assert!(w.is_evicted(), "detection resumed");
    drop(scanner);
    assert!(t
        .events()
        .try_iter()
        .any(|e| matches!(e, Event::ScanPanicked { ref message } if message.contains("exploded"))));
}
