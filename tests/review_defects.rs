//! Regression tests for the defects an outside review found in 0.1 (issue 9), each written to
//! fail on the old code: `c - 1` raises (in `conformance.rs`), ids from another tracker, false
//! suspicion when scans are far apart, action events crowded out of a full queue, the evicted
//! key not free when the eviction is observable, quadratic `track_keys`, and user callbacks
//! (`Hash`, `Eq`, `Clone`) that panic.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flushwatch::{Clock, MockClock};
use flushwatch::{Config, Error, Event, FlushTracker, StallPolicy};

const MS: Duration = Duration::from_millis(1);

fn mocked(config: Config) -> (FlushTracker<u32>, Arc<MockClock>) {
    let (clock, mock) = Clock::mock();
    (FlushTracker::new(config.clock(clock)).unwrap(), mock)
}

// --- ids from another tracker ----------------------------------------------------------------

#[test]
fn an_id_from_another_tracker_is_skipped_and_changes_nothing() {
    // Both trackers put their first shape in slot 0: in 0.1 both had generation 1, and B
    // tracked A's id into its own healthy shape, which was then suspected and evicted.
    let config = Config::default()
        .grace(Duration::ZERO)
        .challenge(Duration::ZERO);
    let (a, _) = mocked(config.clone());
    let (b, b_clock) = mocked(config);
    let foreign = a.register(1).unwrap();
    let own = b.register(1).unwrap();
    let t = b.track(10, &[foreign.id()]).unwrap();
    assert_eq!((t.tracked, t.skipped, t.previous), (0, 1, 0));
    let s = b.status(&1).unwrap();
    assert_eq!((s.sent, s.pending), (0, false), "B's shape untouched");
    for _ in 0..3 {
        b_clock.increment(MS);
        let r = b.scan();
        assert!(r.suspected.is_empty() && r.stalled.is_empty());
    }
    assert!(!own.is_evicted());
    assert_eq!(
        b.watermark(),
        10,
        "nothing pending: last_seen is acknowledged"
    );
    // A's shape is untouched too.
    assert_eq!(a.status(&1).unwrap().sent, 0);
    assert_ne!(foreign.id(), own.id());
}

// --- the cadence rule: no false suspicion however far apart scans are ----------------------------

/// A tracker whose mock clock behaves like a real one (coarse ticks published by scans).
fn coarse(grace: Duration, challenge: Duration) -> (FlushTracker<u32>, Arc<MockClock>) {
    mocked(
        Config::default()
            .grace(grace)
            .challenge(challenge)
            .coarse_ticks(true),
    )
}

#[test]
fn a_shape_that_just_progressed_is_never_overdue_when_scans_are_far_apart() {
    let (t, clock) = coarse(Duration::from_millis(100), Duration::ZERO);
    let w = t.register(1).unwrap();
    let mut commits = vec![1_000, 1_977];
    for &c in &commits {
        t.track(c, &[w.id()]).unwrap();
    }
    t.scan();
    for round in 0..5 {
        // Scans ten graces apart; the consumer, still pending, progresses by one commit a
        // microsecond before each scan.
        clock.increment(Duration::from_secs(1));
        w.flushed(commits[round]);
        clock.increment(Duration::from_micros(1));
        let r = t.scan();
        assert!(r.suspected.is_empty(), "suspected 1 µs after it progressed");
        assert_eq!(r.pending, 1);
        // challenge(0) and two back-to-back scans: in 0.1 this evicted the healthy shape.
        let r = t.scan();
        assert!(r.suspected.is_empty() && r.stalled.is_empty());
        assert!(!w.is_evicted());
        let next = commits[commits.len() - 1] + 977 + round as u64;
        t.track(next, &[w.id()]).unwrap();
        commits.push(next);
    }
    // Without progress for longer than the grace it is suspected, then stalled.
    clock.increment(Duration::from_secs(1));
    assert_eq!(t.scan().suspected, vec![1]);
    clock.increment(MS);
    assert_eq!(t.scan().stalled, vec![1]);
}

#[test]
fn the_first_scan_after_a_backfill_suspects_nobody() {
    let (t, clock) = coarse(Duration::from_millis(50), Duration::ZERO);
    let writers: Vec<_> = (0..4).map(|k| t.register(k).unwrap()).collect();
    let ids: Vec<_> = writers.iter().map(|w| w.id()).collect();
    // A backfill with no scanner running: long, with progress all along.
    let mut commit = 0;
    for _ in 0..100 {
        commit += 131;
        t.track(commit, &ids).unwrap();
        clock.increment(MS * 10);
        for w in &writers[1..] {
            w.flushed(commit);
        }
    }
    // Shape 0 got everything and made nothing durable; the others flushed a moment ago.
    let r = t.scan();
    assert!(
        r.suspected.is_empty(),
        "the first scan judged the backfill: {r:?}"
    );
    let r = t.scan();
    assert!(r.suspected.is_empty() && r.stalled.is_empty());
}

#[test]
fn coarse_ticks_still_detect_a_wedged_shape_within_one_extra_scan() {
    let grace = Duration::from_millis(100);
    let challenge = Duration::from_millis(50);
    let (t, clock) = coarse(grace, challenge);
    let w = t.register(1).unwrap();
    t.track(7, &[w.id()]).unwrap();
    let step = Duration::from_millis(10);
    let (mut suspected_at, mut stalled_at) = (None, None);
    for i in 1..=40u32 {
        clock.increment(step);
        let r = t.scan();
        if !r.suspected.is_empty() {
            suspected_at.get_or_insert(i);
        }
        if !r.stalled.is_empty() {
            stalled_at.get_or_insert(i);
        }
    }
    // First seen pending by scan 1 (ended at 10 ms): overdue once more than 100 ms after that.
    assert_eq!(suspected_at, Some(12), "grace + one scan of resolution");
    assert_eq!(
        stalled_at,
        Some(18),
        "then strictly more than the challenge"
    );
    assert!(w.is_evicted());
}

#[test]
fn a_defer_on_a_coarse_clock_answers_and_restarts_the_idle_time() {
    let (t, clock) = coarse(Duration::from_millis(100), Duration::from_millis(100));
    let w = t.register(1).unwrap();
    t.track(7, &[w.id()]).unwrap();
    for _ in 0..12 {
        clock.increment(MS * 10);
        t.scan();
    }
    assert!(w.is_suspected());
    w.defer();
    assert!(!w.is_suspected());
    for _ in 0..10 {
        clock.increment(MS * 10);
        assert!(t.scan().suspected.is_empty(), "idle restarts at the defer");
    }
    assert!(!w.is_evicted());
}

// --- action events are never lost ---------------------------------------------------------------

#[test]
fn ten_thousand_evictions_in_one_scan_all_reach_a_reader_with_a_queue_of_16() {
    let n = 10_000u32;
    let (t, clock) = mocked(
        Config::default()
            .grace(MS)
            .challenge(MS)
            .event_capacity(16)
            .lag_window(1),
    );
    let writers: Vec<_> = (0..n).map(|k| t.register(k).unwrap()).collect();
    let ids: Vec<_> = writers.iter().map(|w| w.id()).collect();
    t.track(5, &ids).unwrap();
    clock.increment(MS * 2);
    assert_eq!(t.scan().suspected.len(), n as usize); // 10,000 informational events
    clock.increment(MS * 2);
    assert_eq!(t.scan().stalled.len(), n as usize);
    // The reader drains after the scan.
    let mut evicted = HashSet::new();
    let mut suspected = 0;
    for e in t.events().try_iter() {
        match e {
            Event::Stalled {
                key, evicted: true, ..
            } => assert!(evicted.insert(key), "{key} twice"),
            Event::Suspected { .. } => suspected += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        evicted.len(),
        n as usize,
        "every eviction reached the reader"
    );
    assert_eq!(suspected, 16, "informational events stop at the capacity");
    assert_eq!(t.events_dropped(), u64::from(n) - 16);
    assert!(writers.iter().all(|w| w.is_evicted()));
    assert_eq!(t.watermark(), 5);
}

#[test]
fn a_rearmed_shape_has_at_most_one_unread_stalled() {
    let (t, clock) = mocked(
        Config::default()
            .grace(MS)
            .challenge(MS)
            .event_capacity(1)
            .stall_policy(StallPolicy::Report),
    );
    let w = t.register(1).unwrap();
    t.track(9, &[w.id()]).unwrap();
    let mut stalls = 0;
    for _ in 0..30 {
        clock.increment(MS * 2);
        stalls += t.scan().stalled.len();
    }
    // Every 2 ms: suspected (idle 2 ms > grace), stalled at the next scan (challenge 2 ms >
    // 1 ms) and re-armed, suspected again...: one stall per two scans.
    assert_eq!(stalls, 15, "stalled again and again under Report");
    assert_eq!(t.stats().stalled, stalls as u64, "every stall is counted");
    let unread: Vec<_> = t.events().try_iter().collect();
    let stalled: Vec<_> = unread
        .iter()
        .filter(|e| matches!(e, Event::Stalled { key: 1, .. }))
        .collect();
    assert_eq!(
        stalled.len(),
        1,
        "one unread Stalled, not {stalls}: {unread:?}"
    );
    // Once read, the next stall is queued again.
    let mut queued = 0;
    for _ in 0..10 {
        clock.increment(MS * 2);
        if !t.scan().stalled.is_empty() {
            queued += t
                .events()
                .try_iter()
                .filter(|e| matches!(e, Event::Stalled { .. }))
                .count();
        }
    }
    assert_eq!(queued, 5, "a read Stalled does not block the next");
    assert!(!w.is_evicted());
}

#[test]
fn writer_down_events_survive_a_flood_of_informational_events() {
    let (t, clock) = mocked(
        Config::default()
            .grace(Duration::ZERO)
            .challenge(Duration::from_secs(3600))
            .event_capacity(2),
    );
    let stuck: Vec<_> = (0..100).map(|k| t.register(k).unwrap()).collect();
    let ids: Vec<_> = stuck.iter().map(|w| w.id()).collect();
    t.track(3, &ids).unwrap();
    clock.increment(MS);
    assert_eq!(t.scan().suspected.len(), 100); // the queue is full of Suspected
    drop(stuck); // 100 pending writers dropped
    let down = t
        .events()
        .try_iter()
        .filter(|e| matches!(e, Event::WriterDown { .. }))
        .count();
    assert_eq!(down, 100);
}

// --- the key is free when the eviction is observable ----------------------------------------------

#[test]
fn the_key_is_free_as_soon_as_is_evicted_turns_true() {
    // A background scanner evicts a stuck shape; a thread that sees `is_evicted()` re-registers
    // the key at once. In 0.1, 39 of 3,000 raced into DuplicateShape.
    let rounds = 600u32;
    let t: FlushTracker<u32> = FlushTracker::new(
        Config::default()
            .grace(Duration::ZERO)
            .challenge(Duration::ZERO)
            .scan_interval(Duration::from_micros(200)),
    )
    .unwrap();
    let _scanner = t.spawn_scanner().unwrap();
    let mut commit = 0;
    for round in 0..rounds {
        let w = t
            .register(7)
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        commit += 17;
        t.track(commit, &[w.id()]).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !w.is_evicted() {
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: the stuck shape was never evicted"
            );
            std::hint::spin_loop();
        }
        // The next round's register is the check.
    }
    let stalled = t
        .events()
        .try_iter()
        .filter(|e| matches!(e, Event::Stalled { evicted: true, .. }))
        .count();
    assert_eq!(stalled, rounds as usize);
}

// --- track_keys is linear ----------------------------------------------------------------------------

static EQ_CALLS: AtomicUsize = AtomicUsize::new(0);

/// A key that counts its `Eq` calls.
#[derive(Clone, Debug)]
struct Counted(u64);
impl PartialEq for Counted {
    fn eq(&self, other: &Self) -> bool {
        // Relaxed: a test counter.
        EQ_CALLS.fetch_add(1, Ordering::Relaxed);
        self.0 == other.0
    }
}
impl Eq for Counted {}
impl Hash for Counted {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.hash(h);
    }
}

#[test]
fn track_keys_with_many_unknown_keys_is_linear() {
    let t: FlushTracker<Counted> = FlushTracker::new(Config::default()).unwrap();
    let _w = t.register(Counted(0)).unwrap();
    let n = 20_000u64;
    let keys: Vec<Counted> = (1..=n).map(Counted).chain((1..=n).map(Counted)).collect();
    // Relaxed: test counters, read on this thread.
    EQ_CALLS.store(0, Ordering::Relaxed);
    let r = t.track_keys(5, &keys).unwrap();
    assert_eq!(
        (r.tracked, r.skipped),
        (0, n as usize),
        "each unknown key counted once"
    );
    let calls = EQ_CALLS.load(Ordering::Relaxed);
    // 0.1 compared each unknown key with every earlier one: n^2 / 2 = 2 * 10^8 calls.
    assert!(
        calls <= 4 * keys.len(),
        "{calls} Eq calls for {} keys",
        keys.len()
    );
}

// --- panicking user callbacks --------------------------------------------------------------------

static PANIC_CLONE: AtomicBool = AtomicBool::new(false);
static PANIC_HASH: AtomicBool = AtomicBool::new(false);

/// A key whose `Clone` or `Hash` panics on demand.
#[derive(Debug, PartialEq, Eq)]
struct Touchy(u32);
impl Clone for Touchy {
    fn clone(&self) -> Self {
        // Relaxed: a test switch.
        if PANIC_CLONE.load(Ordering::Relaxed) {
            panic!("flushwatch-test: Clone panics");
        }
        Touchy(self.0)
    }
}
impl Hash for Touchy {
    fn hash<H: Hasher>(&self, h: &mut H) {
        // Relaxed: a test switch.
        if PANIC_HASH.load(Ordering::Relaxed) {
            panic!("flushwatch-test: Hash panics");
        }
        self.0.hash(h);
    }
}

/// Serialises the tests that flip the global switches.
static TOUCHY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn quiet<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    r
}

#[test]
fn a_key_whose_clone_panics_in_register_leaves_the_tracker_consistent() {
    let _g = TOUCHY.lock().unwrap_or_else(|e| e.into_inner());
    let t: FlushTracker<Touchy> = FlushTracker::new(Config::default()).unwrap();
    let a = t.register(Touchy(1)).unwrap();
    PANIC_CLONE.store(true, Ordering::Relaxed);
    let tc = t.clone();
    assert!(quiet(move || tc.register(Touchy(2))).is_err());
    PANIC_CLONE.store(false, Ordering::Relaxed);
    // Nothing half-registered: the key is free, no slot counts, the tracker works.
    assert!(t.id_of(&Touchy(2)).is_none());
    let b = t.register(Touchy(2)).unwrap();
    t.track(40, &[a.id(), b.id()]).unwrap();
    a.flushed(40);
    b.flushed(40);
    let r = t.scan();
    assert_eq!((r.registered, r.pending, r.watermark), (2, 0, 40));
}

#[test]
fn a_writer_dropped_while_its_key_hash_panics_does_not_abort_and_frees_its_slot() {
    let _g = TOUCHY.lock().unwrap_or_else(|e| e.into_inner());
    let t: FlushTracker<Touchy> = FlushTracker::new(Config::default()).unwrap();
    let a = t.register(Touchy(1)).unwrap();
    t.track(3, &[a.id()]).unwrap();
    PANIC_HASH.store(true, Ordering::Relaxed);
    // The consumer panics; its writer's drop runs during the unwinding and calls `Hash`.
    let r = quiet(move || {
        let _a = a;
        panic!("flushwatch-test: consumer panics");
    });
    PANIC_HASH.store(false, Ordering::Relaxed);
    assert!(r.is_err());
    let r = t.scan();
    assert_eq!((r.registered, r.pending, r.watermark), (0, 0, 3));
    assert!(t
        .events()
        .try_iter()
        .any(|e| matches!(e, Event::WriterDown { .. })));
    // The slot went back to the free list and is reused.
    let b = t.register(Touchy(2)).unwrap();
    assert_eq!(t.track(4, &[b.id()]).unwrap().tracked, 1);
    assert_eq!(t.register(Touchy(2)).unwrap_err(), Error::DuplicateShape);
}
