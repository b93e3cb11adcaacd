//! The `config` fuzz target's logic: arbitrary `Config` values (zero and huge durations,
//! `start_at` at 0 and `u64::MAX`, zero and huge capacities, both policies) and a short
//! arbitrary operation sequence, asserting that nothing panics and that every error is one
//! the contract (docs/contract.md) documents for that call:
//!
//! - `FlushTracker::new` fails iff `scan_interval` or `event_capacity` is zero, with
//!   `Error::InvalidConfig` naming the first of the two;
//! - `track` / `track_keys` fail only with `ZeroCommit` (iff the commit is 0) or
//!   `OffsetRegression { last_seen, got }` (iff the commit does not pass `last_seen`), and
//!   change nothing when they fail;
//! - `register` fails only with `DuplicateShape`; `spawn_scanner` only with `ScannerRunning`
//!   while a scanner runs (`ScannerSpawn`, an OS that refuses a thread, fails the run), and a
//!   stopped scanner can always be restarted;
//! - the published watermark starts at `start_at`, never decreases and never passes
//!   `last_seen`; statuses are self-consistent; the event queue never holds more than its
//!   capacity plus the action events emitted; no scan panics.
//!
//! Shared by `fuzz/fuzz_targets/config.rs` and `tests/fuzz_config.rs` (which replays the saved
//! corpus and fixed seeds on stable), through `#[path]`.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use flushwatch::{Clock, MockClock};
use flushwatch::{
    Config, ConfigError, Error, FlushTracker, Offset, Scanner, ShapeId, StallPolicy, Writer,
};

/// A duration from one of the interesting classes.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Dur {
    Zero,
    Nanos(u16),
    Millis(u16),
    Secs(u32),
    Max,
    Raw(u64, u32),
}

impl Dur {
    pub fn get(self) -> Duration {
        match self {
            Dur::Zero => Duration::ZERO,
            Dur::Nanos(n) => Duration::from_nanos(u64::from(n)),
            Dur::Millis(m) => Duration::from_millis(u64::from(m)),
            Dur::Secs(s) => Duration::from_secs(u64::from(s)),
            Dur::Max => Duration::MAX,
            Dur::Raw(s, n) => Duration::new(s, n % 1_000_000_000),
        }
    }
}

/// A `start_at` from one of the interesting classes.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Start {
    Zero,
    Small(u16),
    NearMax(u8),
    Max,
    Raw(u64),
}

impl Start {
    pub fn get(self) -> Offset {
        match self {
            Start::Zero => 0,
            Start::Small(v) => u64::from(v),
            Start::NearMax(d) => u64::MAX - u64::from(d),
            Start::Max => u64::MAX,
            Start::Raw(v) => v,
        }
    }
}

/// An event capacity from one of the interesting classes.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Cap {
    Zero,
    Small(u8),
    Medium(u16),
    Max,
    Raw(u64),
}

impl Cap {
    pub fn get(self) -> usize {
        match self {
            Cap::Zero => 0,
            Cap::Small(n) => usize::from(n),
            Cap::Medium(n) => usize::from(n),
            Cap::Max => usize::MAX,
            Cap::Raw(n) => usize::try_from(n).unwrap_or(usize::MAX),
        }
    }
}

/// The fuzzed configuration.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct FuzzConfig {
    pub grace: Dur,
    pub challenge: Dur,
    pub scan_interval: Dur,
    pub start_at: Start,
    pub event_capacity: Cap,
    pub lag_window: u32,
    pub report: bool,
}

/// A commit position relative to `last_seen`, or absolute.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Commit {
    Zero,
    Next(u8),
    Same,
    Back(u8),
    Max,
    Raw(u64),
}

/// A reported position.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Pos {
    Zero,
    LastSeen,
    Below(u8),
    Above(u8),
    Max,
    Raw(u64),
}

/// One operation.
#[derive(Debug, Clone, Arbitrary)]
pub enum Op {
    Register(u8),
    Track {
        commit: Commit,
        writers: Vec<u8>,
    },
    TrackStale {
        commit: Commit,
        ids: Vec<u8>,
    },
    TrackKeys {
        commit: Commit,
        keys: Vec<u8>,
    },
    Flushed {
        writer: u8,
        pos: Pos,
    },
    /// `flushed(previous)` with the `Tracked::previous` of the last successful `track`.
    FlushedPrevious {
        writer: u8,
    },
    Defer(u8),
    Retire(u8),
    Drop(u8),
    Remove(u8),
    Advance(Dur),
    Rewind(Dur),
    Scan,
    Status(u8),
    Query,
    SpawnScanner,
    StopScanner,
}

/// A decoded input.
#[derive(Debug, Clone)]
pub struct Input {
    pub config: FuzzConfig,
    pub ops: Vec<Op>,
}

/// At most this many operations per input: the target is about configurations and inputs at
/// the edges, not long histories (the `differential` target covers those).
pub const MAX_OPS: usize = 64;

impl Input {
    /// Decodes an input from raw bytes; `None` if there are not enough bytes for a config.
    pub fn decode(bytes: &[u8]) -> Option<Input> {
        let mut u = Unstructured::new(bytes);
        let config = FuzzConfig::arbitrary(&mut u).ok()?;
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < MAX_OPS {
            match Op::arbitrary(&mut u) {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        Some(Input { config, ops })
    }
}

/// Decodes and runs one input. Panics on any violation.
pub fn run_bytes(bytes: &[u8]) {
    if let Some(input) = Input::decode(bytes) {
        run(&input);
    }
}

const KEYS: u8 = 6;

/// Runs one input.
pub fn run(input: &Input) {
    let c = input.config;
    let scan_interval = c.scan_interval.get();
    let capacity = c.event_capacity.get();
    let start_at = c.start_at.get();
    let (clock, mock) = Clock::mock();
    let config = Config::default()
        .grace(c.grace.get())
        .challenge(c.challenge.get())
        .scan_interval(scan_interval)
        .start_at(start_at)
        .event_capacity(capacity)
        .lag_window(c.lag_window)
        .stall_policy(if c.report {
            StallPolicy::Report
        } else {
            StallPolicy::Evict
        })
        .clock(clock);
    let tracker = match FlushTracker::<u8>::new(config) {
        Ok(t) => {
            assert!(
                !scan_interval.is_zero() && capacity != 0,
                "accepted an invalid config"
            );
            t
        }
        Err(e) => {
            let expected = if scan_interval.is_zero() {
                ConfigError::ZeroScanInterval
            } else {
                assert_eq!(capacity, 0, "rejected a valid config: {e:?}");
                ConfigError::ZeroEventCapacity
            };
            assert_eq!(e, Error::InvalidConfig(expected));
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert_eq!(tracker.watermark(), start_at);
    assert_eq!(tracker.last_seen(), start_at);
    let mut run = Run {
        tracker,
        mock,
        offset: 0,
        capacity,
        start_at,
        writers: Vec::new(),
        ids: Vec::new(),
        scanner: None,
        watermark: start_at,
        concurrent: false,
        previous: std::cell::Cell::new(start_at),
    };
    for op in &input.ops {
        run.apply(op);
        run.check();
    }
    run.finish();
}

struct Run {
    tracker: FlushTracker<u8>,
    mock: Arc<MockClock>,
    /// The mock clock's offset (kept in range: the mock saturates, the model's time must too).
    offset: u64,
    capacity: usize,
    start_at: Offset,
    writers: Vec<Writer<u8>>,
    /// Every id ever issued (stale ones included).
    ids: Vec<ShapeId>,
    scanner: Option<Scanner>,
    /// The highest watermark seen so far.
    watermark: Offset,
    /// Whether a scanner thread ever ran (scans then race the harness's operations).
    concurrent: bool,
    /// `Tracked::previous` of the last successful `track`.
    previous: std::cell::Cell<Offset>,
}

impl Run {
    fn writer(&self, i: u8) -> Option<&Writer<u8>> {
        (!self.writers.is_empty()).then(|| &self.writers[usize::from(i) % self.writers.len()])
    }

    fn take_writer(&mut self, i: u8) -> Option<Writer<u8>> {
        (!self.writers.is_empty()).then(|| {
            self.writers
                .swap_remove(usize::from(i) % self.writers.len())
        })
    }

    fn commit(&self, c: Commit) -> Offset {
        let last = self.tracker.last_seen();
        match c {
            Commit::Zero => 0,
            Commit::Next(d) => last.saturating_add(1 + u64::from(d % 8)),
            Commit::Same => last,
            Commit::Back(d) => last.saturating_sub(u64::from(d)),
            Commit::Max => u64::MAX,
            Commit::Raw(v) => v,
        }
    }

    fn pos(&self, p: Pos) -> Offset {
        let last = self.tracker.last_seen();
        match p {
            Pos::Zero => 0,
            Pos::LastSeen => last,
            Pos::Below(d) => last.saturating_sub(u64::from(d)),
            Pos::Above(d) => last.saturating_add(u64::from(d)),
            Pos::Max => u64::MAX,
            Pos::Raw(v) => v,
        }
    }

    /// Checks a `track` outcome against the documented errors.
    fn check_track(
        &self,
        commit: Offset,
        before: Offset,
        named: usize,
        r: Result<flushwatch::Tracked, Error>,
    ) {
        match r {
            Ok(t) => {
                assert!(
                    commit != 0 && commit > before,
                    "track({commit}) accepted after {before}"
                );
                assert!(t.tracked + t.skipped <= named, "{t:?} for {named} names");
                assert_eq!(self.tracker.last_seen(), commit);
                assert_eq!(t.previous, before, "previous is the last_seen before");
                self.previous.set(t.previous);
            }
            Err(Error::ZeroCommit) => {
                assert_eq!(commit, 0);
                assert_eq!(
                    self.tracker.last_seen(),
                    before,
                    "a failed track changed state"
                );
            }
            Err(Error::OffsetRegression { last_seen, got }) => {
                assert_ne!(commit, 0, "commit 0 is ZeroCommit");
                assert_eq!((last_seen, got), (before, commit));
                assert!(commit <= before);
                assert_eq!(
                    self.tracker.last_seen(),
                    before,
                    "a failed track changed state"
                );
            }
            Err(e) => panic!("track({commit}): undocumented error {e:?}"),
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Register(k) => match self.tracker.register(k % KEYS) {
                Ok(w) => {
                    self.ids.push(w.id());
                    self.writers.push(w);
                }
                Err(Error::DuplicateShape) => {}
                Err(e) => panic!("register: undocumented error {e:?}"),
            },
            Op::Track { commit, writers } => {
                let ids: Vec<ShapeId> = writers
                    .iter()
                    .take(8)
                    .filter_map(|&w| self.writer(w).map(Writer::id))
                    .collect();
                let commit = self.commit(*commit);
                let before = self.tracker.last_seen();
                let distinct = ids.iter().collect::<BTreeSet<_>>().len();
                let r = self.tracker.track(commit, &ids);
                self.check_track(commit, before, distinct, r);
            }
            Op::TrackStale { commit, ids } => {
                let ids: Vec<ShapeId> = if self.ids.is_empty() {
                    Vec::new()
                } else {
                    ids.iter()
                        .take(8)
                        .map(|&i| self.ids[usize::from(i) % self.ids.len()])
                        .collect()
                };
                let commit = self.commit(*commit);
                let before = self.tracker.last_seen();
                let distinct = ids.iter().collect::<BTreeSet<_>>().len();
                let r = self.tracker.track(commit, &ids);
                self.check_track(commit, before, distinct, r);
            }
            Op::TrackKeys { commit, keys } => {
                let keys: Vec<u8> = keys.iter().take(8).map(|k| k % KEYS).collect();
                let commit = self.commit(*commit);
                let before = self.tracker.last_seen();
                let distinct = keys.iter().collect::<BTreeSet<_>>().len();
                let r = self.tracker.track_keys(commit, &keys);
                self.check_track(commit, before, distinct, r);
            }
            Op::Flushed { writer, pos } => {
                let p = self.pos(*pos);
                if let Some(w) = self.writer(*writer) {
                    w.flushed(p);
                }
            }
            Op::FlushedPrevious { writer } => {
                let p = self.previous.get();
                if let Some(w) = self.writer(*writer) {
                    w.flushed(p);
                }
            }
            Op::Defer(w) => {
                if let Some(w) = self.writer(*w) {
                    w.defer();
                }
            }
            Op::Retire(w) => {
                if let Some(w) = self.take_writer(*w) {
                    w.retire();
                }
            }
            Op::Drop(w) => drop(self.take_writer(*w)),
            Op::Remove(k) => {
                let key = k % KEYS;
                let registered = self.tracker.id_of(&key).is_some();
                let removed = self.tracker.remove(&key);
                if self.scanner.is_none() {
                    assert_eq!(removed, registered, "remove({key})");
                }
                assert_eq!(self.tracker.id_of(&key), None);
            }
            Op::Advance(d) => {
                let n = u64::try_from(d.get().as_nanos()).unwrap_or(u64::MAX);
                let n = n.min(u64::MAX - self.offset);
                self.mock.increment(Duration::from_nanos(n));
                self.offset += n;
            }
            Op::Rewind(d) => {
                let n = u64::try_from(d.get().as_nanos()).unwrap_or(u64::MAX);
                let n = n.min(self.offset);
                self.mock.decrement(Duration::from_nanos(n));
                self.offset -= n;
            }
            Op::Scan => {
                let r = self.tracker.scan();
                assert!(r.watermark >= self.watermark, "the watermark went back");
                assert!(r.watermark <= r.last_seen, "{r:?}");
                assert!(r.pending <= r.registered);
                if let Some(k) = r.pinned_by {
                    assert!(k < KEYS);
                    assert!(r.pending > 0);
                }
                self.watermark = r.watermark;
            }
            Op::Status(k) => {
                if let Some(s) = self.tracker.status(&(k % KEYS)) {
                    assert_eq!(s.pending, s.flushed < s.sent, "{s:?}");
                    assert!(s.flushed <= s.sent, "flushed past what was sent: {s:?}");
                    assert!(s.sent <= self.tracker.last_seen(), "{s:?}");
                    if !s.pending {
                        assert_eq!((s.idle, s.lag), (Duration::ZERO, 0), "{s:?}");
                    }
                }
            }
            Op::Query => {
                let stats = self.tracker.stats();
                assert_eq!(stats.scan_panics, 0, "a scan panicked");
                assert!(stats.watermark <= stats.last_seen, "{stats:?}");
                if let Some(p) = self.tracker.pinned_by() {
                    // A background scan builds this snapshot from the slot at its end, so a
                    // report racing it can show the holder caught up (reported in issue 4).
                    if !self.concurrent {
                        assert!(p.pending, "{p:?}");
                    }
                }
                let _ = self.tracker.events_dropped();
            }
            Op::SpawnScanner => match self.tracker.spawn_scanner() {
                Ok(g) => {
                    assert!(self.scanner.is_none(), "two scanners at once");
                    self.scanner = Some(g);
                    self.concurrent = true;
                }
                Err(Error::ScannerRunning) => {
                    assert!(
                        self.scanner.is_some(),
                        "ScannerRunning with no scanner running (a stopped one did not exit?)"
                    );
                }
                // Documented, but only for an OS that refuses a thread: never expected here.
                Err(e) => panic!("spawn_scanner: {e:?}"),
            },
            Op::StopScanner => drop(self.scanner.take()),
        }
    }

    fn check(&mut self) {
        let w = self.tracker.watermark();
        assert!(
            w >= self.watermark,
            "the watermark went back: {w} < {}",
            self.watermark
        );
        assert!(w >= self.start_at);
        assert!(w <= self.tracker.last_seen());
        self.watermark = w;
        // Informational events stop at the capacity; action events (one per stall or writer
        // down) are queued beyond it.
        let stats = self.tracker.stats();
        let actions = stats.stalled.saturating_add(stats.writers_down);
        assert!(
            (self.tracker.events().len() as u64) <= (self.capacity as u64).saturating_add(actions),
            "the event queue holds more than its capacity plus the action events"
        );
    }

    fn finish(mut self) {
        if let Some(g) = self.scanner.take() {
            g.stop();
            // A stopped scanner can always be restarted.
            match self.tracker.spawn_scanner() {
                Ok(g) => drop(g),
                Err(e) => panic!("restart after stop: {e:?}"),
            }
        }
        let stats = self.tracker.stats();
        assert_eq!(stats.scan_panics, 0, "a scan panicked");
        let _: Vec<_> = self.tracker.events().try_iter().collect();
        drop(self.writers);
    }
}
