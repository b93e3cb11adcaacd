//! The differential harness: random operation sequences run through the lock-free tracker and
//! the sequential model (`flushwatch::model`), compared after every step.
//!
//! Shared by `tests/differential.rs` (proptest over random bytes + the saved fuzz corpus) and
//! the cargo-fuzz target `fuzz/fuzz_targets/differential.rs`, so one decoder and one checker
//! serve all three.
//!
//! Besides tracker == model, every step is checked against the harness's own **safety
//! oracle**, which trusts neither: from what the harness tracked to each shape, what each
//! writer reported and which shapes ended, the highest position durable everywhere. The
//! published watermark must be at most that, `start_at` or a tracked commit, and never go
//! down; a bug shared by the model and the tracker fails here.
//!
//! Fuzzed configuration beyond the stall settings: coarse ticks (the real-clock rule), small
//! event capacities, a lazy reader (events left unread across steps: FIFO, at most one unread
//! `Stalled` per shape and the dropping rule at capacity are compared with the model), and
//! runs whose shapes all live past the first page of slots.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use flushwatch::model::{Model, ModelConfig, ModelId};
use flushwatch::{Clock, MockClock};
use flushwatch::{Config, DownCause, Event, FlushTracker, Offset, ScanReport, StallPolicy, Writer};

/// Keys are small so that operations collide on them.
pub const KEYS: u16 = 12;

/// Slots per page (`slot::PAGE`): a paged run first registers this many filler shapes (keys
/// from [`FILLER`]), so that every shape of the run lives on the second page.
pub const PAGE: u16 = 1024;
/// The first filler key.
pub const FILLER: u16 = 1000;

/// The key an operand names.
fn key(k: u8) -> u16 {
    u16::from(k) % KEYS
}

/// One configuration of a run.
#[derive(Debug, Clone, Arbitrary)]
pub struct RunConfig {
    pub grace_ms: u8,
    pub challenge_ms: u8,
    pub report: bool,
    pub lag_window: u8,
    pub start_at: StartAt,
    /// `Config::coarse_ticks`: the real-clock stall rule on the mock clock.
    pub coarse: bool,
    /// `event_capacity`: 1 to 4 when below 128, else the default.
    pub capacity: u8,
    /// Events are read after every step (else only by `Op::Read` and at the end).
    pub eager_reader: bool,
    /// 1,024 filler shapes first when `paged % 4 == 0` (a quarter of the runs: the fillers
    /// cost time): the run's shapes live on the second page.
    pub paged: u8,
}

/// Interesting `start_at` values.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum StartAt {
    Zero,
    Some(u16),
    Max,
}

/// One operation. Decoded with weights (see the `Arbitrary` impl) so that random bytes reach
/// stalls, evictions and lagging, not only errors.
#[derive(Debug, Clone)]
pub enum Op {
    Register(u8),
    /// `track(next commit, writers named by index)`: commits are sparse (random gaps, like
    /// LSNs); one step in sixteen is a regression, `zero` tries commit 0.
    Track {
        step: u8,
        writers: Vec<u8>,
        zero: bool,
    },
    /// `track_keys(next commit, keys)`.
    TrackKeys {
        step: u8,
        keys: Vec<u8>,
    },
    /// `flushed` of a commit the writer received (`back` commits before its newest), or of
    /// that commit's `previous` when `partial` (the reporting contract); or, when `over`, of a
    /// position beyond what was sent (clamped: the bad-input rule).
    Flushed {
        writer: u8,
        back: u8,
        over: bool,
        partial: bool,
    },
    /// `track` naming an id made by another tracker (skipped, counted).
    Foreign(u8),
    Defer(u8),
    Retire(u8),
    Drop {
        writer: u8,
        panicking: bool,
    },
    Remove(u8),
    /// Advance the mock clock by this many milliseconds (and a few nanoseconds, to hit the
    /// exact boundaries).
    Advance {
        ms: u8,
        nanos: u8,
    },
    Scan,
    /// Read every queued event (compared with the model's queue, in order).
    Read,
}

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let small = |u: &mut Unstructured<'a>| -> arbitrary::Result<Vec<u8>> {
            let n = u.int_in_range(0..=4)?;
            (0..n).map(|_| u8::arbitrary(u)).collect()
        };
        Ok(match u.int_in_range(0..=99u8)? {
            0..=7 => Op::Register(u8::arbitrary(u)?),
            8..=27 => Op::Track {
                step: u8::arbitrary(u)?,
                writers: small(u)?,
                zero: u.ratio(1, 40)?,
            },
            28..=32 => Op::TrackKeys {
                step: u8::arbitrary(u)?,
                keys: small(u)?,
            },
            33..=53 => Op::Flushed {
                writer: u8::arbitrary(u)?,
                back: u8::arbitrary(u)?,
                over: u.ratio(1, 8)?,
                partial: u.ratio(1, 4)?,
            },
            54..=55 => Op::Foreign(u8::arbitrary(u)?),
            56..=59 => Op::Defer(u8::arbitrary(u)?),
            60..=61 => Op::Retire(u8::arbitrary(u)?),
            62..=64 => Op::Drop {
                writer: u8::arbitrary(u)?,
                panicking: bool::arbitrary(u)?,
            },
            65..=66 => Op::Remove(u8::arbitrary(u)?),
            67..=82 => Op::Advance {
                ms: u8::arbitrary(u)?,
                nanos: u8::arbitrary(u)?,
            },
            83..=94 => Op::Scan,
            _ => Op::Read,
        })
    }
}

/// A decoded run.
#[derive(Debug, Clone)]
pub struct Run {
    pub config: RunConfig,
    pub ops: Vec<Op>,
}

impl Run {
    /// Decodes a run from raw bytes (never fails: missing bytes decode as zeros).
    pub fn decode(bytes: &[u8]) -> Run {
        let mut u = Unstructured::new(bytes);
        let config = RunConfig::arbitrary(&mut u).unwrap_or(RunConfig {
            grace_ms: 0,
            challenge_ms: 0,
            report: false,
            lag_window: 0,
            start_at: StartAt::Zero,
            coarse: false,
            capacity: 255,
            eager_reader: true,
            paged: 1,
        });
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < 400 {
            match Op::arbitrary(&mut u) {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        Run { config, ops }
    }
}

struct Held {
    writer: Writer<u16>,
    id: ModelId,
    /// The commits tracked for this shape, with their `Tracked::previous`, newest last.
    received: Vec<(Offset, Offset)>,
    /// The oracle's record: every commit a successful `track` named this shape with (while
    /// it was not evicted or removed), and the highest position it reported, clamped to the
    /// newest of them.
    tracked: Vec<Offset>,
    durable: Offset,
}

/// How much `check` compares after each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checks {
    /// Every key's status after every step (the tests).
    Full,
    /// After each step the status of the keys the step named; after every `Scan` and at the
    /// end of the run every key's. The watermark, `last_seen`, writer flags and events are
    /// still compared after every step. A wrong status that lasts until the next scan is
    /// caught; one that a later step repairs before the next scan may not be. About 2x the
    /// executions per second of `Full`, for the long fuzz runs.
    Touched,
}

/// The tracker and the model side by side.
pub struct Harness {
    pub tracker: FlushTracker<u16>,
    pub model: Model<u16>,
    mock: Arc<MockClock>,
    now: u64,
    writers: Vec<Held>,
    /// `start_at` and every commit handed to `track`: the only values a watermark may take.
    positions: BTreeSet<Offset>,
    /// A second tracker, whose ids `Op::Foreign` hands to the first.
    foreign: FlushTracker<u16>,
    foreign_writers: Vec<Writer<u16>>,
    last_watermark: Offset,
    /// Events are read after every step.
    eager_reader: bool,
    /// Coarse ticks.
    coarse: bool,
    /// `(events emitted by the model up to step n, n)`, for the steps that emitted any: which
    /// step emitted a numbered event.
    emitted_at: Vec<(u64, usize)>,
    /// Events read so far from the tracker and from the model.
    read: (u64, u64),
    /// Filler shapes of a paged run (kept alive, never tracked).
    fillers: Vec<Writer<u16>>,
    /// How many operations ran.
    pub steps: usize,
    checks: Checks,
    /// The keys the last step named (for `Checks::Touched`).
    touched: Vec<u16>,
    /// Which rules the run reached.
    pub coverage: Coverage,
}

/// Which rules a run (or many) reached: the harness's own test asserts that the fixed seeds
/// reach all of them, so a decoder change cannot quietly make the differential test toothless.
#[derive(Debug, Default, Clone, Copy)]
pub struct Coverage {
    pub advanced: usize,
    pub suspected: usize,
    pub evicted: usize,
    pub stalled_reported: usize,
    pub down_panicked: usize,
    pub down_pending: usize,
    pub lagging: usize,
    pub skipped: usize,
    pub track_errors: usize,
    pub defer_answered: usize,
    pub foreign_skipped: usize,
    pub partial_reports: usize,
    /// Reads that found events of more than one step (left unread in between).
    pub unread_kept: usize,
    /// Informational events dropped at capacity.
    pub dropped: usize,
    /// `Stalled` events withheld: the shape's previous one was unread.
    pub stalls_withheld: usize,
    /// Stalls in coarse-tick runs.
    pub coarse_stalls: usize,
    /// Stalls of shapes on the second page.
    pub paged_stalls: usize,
}

impl Coverage {
    pub fn add(&mut self, o: &Coverage) {
        self.advanced += o.advanced;
        self.suspected += o.suspected;
        self.evicted += o.evicted;
        self.stalled_reported += o.stalled_reported;
        self.down_panicked += o.down_panicked;
        self.down_pending += o.down_pending;
        self.lagging += o.lagging;
        self.skipped += o.skipped;
        self.track_errors += o.track_errors;
        self.defer_answered += o.defer_answered;
        self.foreign_skipped += o.foreign_skipped;
        self.partial_reports += o.partial_reports;
        self.unread_kept += o.unread_kept;
        self.dropped += o.dropped;
        self.stalls_withheld += o.stalls_withheld;
        self.coarse_stalls += o.coarse_stalls;
        self.paged_stalls += o.paged_stalls;
    }
}

const MS: u64 = 1_000_000;

impl Harness {
    pub fn new(c: &RunConfig, checks: Checks) -> Harness {
        let (clock, mock) = Clock::mock();
        let grace = u64::from(c.grace_ms % 20) * MS;
        let challenge = u64::from(c.challenge_ms % 10) * MS;
        let policy = if c.report {
            StallPolicy::Report
        } else {
            StallPolicy::Evict
        };
        let lag_window = u32::from(c.lag_window % 5);
        let start_at = match c.start_at {
            StartAt::Zero => 0,
            StartAt::Some(v) => u64::from(v),
            StartAt::Max => u64::MAX,
        };
        let event_capacity = if c.capacity < 128 {
            usize::from(c.capacity % 4) + 1
        } else {
            4096
        };
        let tracker = FlushTracker::new(
            Config::default()
                .grace(Duration::from_nanos(grace))
                .challenge(Duration::from_nanos(challenge))
                .stall_policy(policy)
                .lag_window(lag_window)
                .start_at(start_at)
                .event_capacity(event_capacity)
                .coarse_ticks(c.coarse)
                .clock(clock),
        )
        .expect("valid config");
        let mut model = Model::new(ModelConfig {
            grace,
            challenge,
            start_at,
            policy,
            lag_window,
            coarse: c.coarse,
            event_capacity,
        });
        // A mock clock here too: Miri cannot read the real one (CPUID).
        let foreign =
            FlushTracker::new(Config::default().clock(Clock::mock().0)).expect("valid config");
        let foreign_writers = (0..KEYS)
            .map(|k| foreign.register(k).expect("fresh key"))
            .collect();
        let fillers = if c.paged % 4 == 0 {
            (FILLER..FILLER + PAGE)
                .map(|k| {
                    model.register(k, 0).expect("fresh key");
                    tracker.register(k).expect("fresh key")
                })
                .collect()
        } else {
            Vec::new()
        };
        Harness {
            tracker,
            model,
            mock,
            now: 0,
            writers: Vec::new(),
            positions: BTreeSet::from([start_at]),
            foreign,
            foreign_writers,
            last_watermark: start_at,
            eager_reader: c.eager_reader,
            coarse: c.coarse,
            emitted_at: Vec::new(),
            read: (0, 0),
            fillers,
            steps: 0,
            checks,
            touched: Vec::new(),
            coverage: Coverage::default(),
        }
    }

    /// Runs a whole decoded run, checking everything after every step.
    pub fn run(run: &Run) -> Coverage {
        Harness::run_with(run, Checks::Full)
    }

    /// Runs a whole decoded run, checking after every step as `checks` says, and everything
    /// at the end.
    pub fn run_with(run: &Run, checks: Checks) -> Coverage {
        quiet_panics();
        let mut h = Harness::new(&run.config, checks);
        for op in &run.ops {
            h.apply(op);
            h.check(op);
        }
        h.checks = Checks::Full;
        h.eager_reader = true;
        h.check(&Op::Scan);
        h.coverage
    }

    /// Notes that the current step names the shape of writer `i`.
    fn touch(&mut self, i: usize) {
        let key = *self.writers[i].writer.key();
        self.touched.push(key);
    }

    fn pick(&self, i: u8) -> Option<usize> {
        (!self.writers.is_empty()).then(|| usize::from(i) % self.writers.len())
    }

    /// The next commit: a sparse step above `last_seen` (gaps of 1 to 4096, like LSNs), or a
    /// regression (one step in sixteen).
    fn next_commit(&self, step: u8) -> Offset {
        let last = self.model.last_seen();
        if step % 16 == 0 {
            return last.saturating_sub(u64::from(step % 3));
        }
        let gap = 1 + (u64::from(step) * 2_654_435_761 + self.steps as u64 * 40_503) % 4096;
        last.saturating_add(gap)
    }

    /// Records a successful `track` of `commit` for the shapes the model counted (what the
    /// writers report from), and, for the oracle, for the shapes the harness named (`keys`:
    /// by key) that the tracker does not say ended.
    fn received(&mut self, commit: Offset, previous: Offset, named: &[ModelId], keys: &[u16]) {
        self.positions.insert(commit);
        for h in self.writers.iter_mut() {
            if named.contains(&h.id) && self.model.ended(h.id).is_none() {
                h.received.push((commit, previous));
            }
            let by_key = keys.contains(h.writer.key());
            if (by_key || named.contains(&h.id)) && !h.writer.is_evicted() {
                h.tracked.push(commit);
            }
        }
    }

    /// The safety oracle: the highest position `P` (`start_at` or a tracked commit) such that
    /// every commit `<= P` tracked to a live shape (a held writer, not evicted or removed) is
    /// durable in it, that is at most the highest position its writer reported.
    fn safe_bound(&self) -> Offset {
        let first_undurable = self
            .writers
            .iter()
            .filter(|h| !h.writer.is_evicted())
            .filter_map(|h| h.tracked.iter().copied().filter(|&c| c > h.durable).min())
            .min()
            .unwrap_or(Offset::MAX);
        let below = self.positions.range(..first_undurable).next_back();
        // `start_at` is below every commit, so `below` is `None` only when nothing is undurable.
        *below.or(self.positions.last()).expect("start_at")
    }

    pub fn apply(&mut self, op: &Op) {
        self.steps += 1;
        self.touched.clear();
        let now = self.now;
        match op {
            Op::Register(k) => {
                let key = key(*k);
                self.touched.push(key);
                let t = self.tracker.register(key);
                let m = self.model.register(key, now);
                match (t, m) {
                    (Ok(writer), Ok(id)) => self.writers.push(Held {
                        writer,
                        id,
                        received: Vec::new(),
                        tracked: Vec::new(),
                        durable: 0,
                    }),
                    (Err(a), Err(b)) => assert_eq!(a, b, "register({key}) errors differ"),
                    (t, m) => panic!("register({key}): tracker {t:?}, model {m:?}"),
                }
            }
            Op::Track {
                step,
                writers,
                zero,
            } => {
                let commit = if *zero { 0 } else { self.next_commit(*step) };
                let mut ids = Vec::new();
                let mut mids = Vec::new();
                for &w in writers.iter().take(8) {
                    if let Some(i) = self.pick(w) {
                        self.touch(i);
                        ids.push(self.writers[i].writer.id());
                        mids.push(self.writers[i].id);
                    }
                }
                let t = self.tracker.track(commit, &ids);
                let m = self.model.track(commit, &mids, now);
                assert_eq!(t, m, "track({commit}, {mids:?})");
                if let Ok(t) = t {
                    self.received(commit, t.previous, &mids, &[]);
                }
                self.count_track(&t);
            }
            Op::TrackKeys { step, keys } => {
                let commit = self.next_commit(*step);
                let keys: Vec<u16> = keys.iter().take(8).map(|&k| key(k)).collect();
                self.touched.extend(&keys);
                let mids: Vec<ModelId> = keys.iter().filter_map(|k| self.model.id_of(k)).collect();
                let t = self.tracker.track_keys(commit, &keys);
                let m = self.model.track_keys(commit, &keys, now);
                assert_eq!(t, m, "track_keys({commit}, {keys:?})");
                if let Ok(t) = t {
                    self.received(commit, t.previous, &mids, &keys);
                }
                self.count_track(&t);
            }
            Op::Flushed {
                writer,
                back,
                over,
                partial,
            } => {
                if let Some(i) = self.pick(*writer) {
                    self.touch(i);
                    let h = &self.writers[i];
                    let p = match h.received.len() {
                        _ if *over => {
                            let newest = h.received.last().map_or(0, |r| r.0);
                            newest.saturating_add(1 + u64::from(*back))
                        }
                        0 => return,
                        n => {
                            let (commit, previous) = h.received[n - 1 - usize::from(*back % 8) % n];
                            if *partial {
                                self.coverage.partial_reports += 1;
                                previous
                            } else {
                                commit
                            }
                        }
                    };
                    let h = &mut self.writers[i];
                    h.writer.flushed(p);
                    self.model.flushed(h.id, p, now);
                    let newest = h.tracked.iter().copied().max().unwrap_or(0);
                    h.durable = h.durable.max(p.min(newest));
                }
            }
            Op::Foreign(w) => {
                let foreign = self.foreign_writers[usize::from(key(*w))].id();
                let commit = self.next_commit(w | 1);
                let t = self.tracker.track(commit, &[foreign]);
                // The model has never seen this id: it is skipped like a gone shape's.
                let m = self.model.track(commit, &[ModelId(u64::MAX)], now);
                assert_eq!(t, m, "track({commit}, [an id of another tracker])");
                if let Ok(t) = t {
                    assert_eq!(t.skipped, 1, "a foreign id is skipped");
                    self.coverage.foreign_skipped += 1;
                    self.received(commit, t.previous, &[], &[]);
                }
                self.count_track(&t);
                assert!(self.foreign.status(&key(*w)).is_some());
            }
            Op::Defer(w) => {
                if let Some(i) = self.pick(*w) {
                    self.touch(i);
                    self.coverage.defer_answered +=
                        usize::from(self.model.is_suspected(self.writers[i].id));
                    self.writers[i].writer.defer();
                    self.model.defer(self.writers[i].id, now);
                }
            }
            Op::Retire(w) => {
                if let Some(i) = self.pick(*w) {
                    self.touch(i);
                    let held = self.writers.swap_remove(i);
                    held.writer.retire();
                    self.model.retire(held.id);
                }
            }
            Op::Drop { writer, panicking } => {
                if let Some(i) = self.pick(*writer) {
                    self.touch(i);
                    let held = self.writers.swap_remove(i);
                    if *panicking {
                        let w = held.writer;
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                            let _w = w;
                            panic!("flushwatch-harness: simulated consumer panic");
                        }));
                        assert!(r.is_err());
                    } else {
                        drop(held.writer);
                    }
                    self.model.drop_writer(held.id, *panicking);
                }
            }
            Op::Remove(k) => {
                let key = key(*k);
                self.touched.push(key);
                assert_eq!(
                    self.tracker.remove(&key),
                    self.model.remove(&key),
                    "remove({key})"
                );
            }
            Op::Advance { ms, nanos } => {
                let d = u64::from(ms % 8) * MS + u64::from(nanos % 3);
                self.mock.increment(Duration::from_nanos(d));
                self.now += d;
            }
            Op::Scan => {
                let t = self.tracker.scan();
                let m = self.model.scan(now);
                self.compare_reports(&t, &m);
                if !m.stalled.is_empty() {
                    let c = &mut self.coverage;
                    c.coarse_stalls += usize::from(self.coarse);
                    c.paged_stalls += usize::from(!self.fillers.is_empty());
                }
            }
            Op::Read => {}
        }
        let queued = self.model.events_emitted();
        if self.emitted_at.last().is_none_or(|&(q, _)| q < queued) {
            self.emitted_at.push((queued, self.steps));
        }
    }

    fn count_track(&mut self, t: &Result<flushwatch::Tracked, flushwatch::Error>) {
        match t {
            Ok(t) => self.coverage.skipped += t.skipped,
            Err(_) => self.coverage.track_errors += 1,
        }
    }

    fn compare_reports(&self, t: &ScanReport<u16>, m: &ScanReport<u16>) {
        let set = |v: &Vec<u16>| v.iter().copied().collect::<BTreeSet<u16>>();
        assert_eq!(t.watermark, m.watermark, "scan watermark");
        assert_eq!(t.last_seen, m.last_seen, "scan last_seen");
        assert_eq!(t.pending, m.pending, "scan pending");
        assert_eq!(t.registered, m.registered, "scan registered");
        assert_eq!(set(&t.suspected), set(&m.suspected), "newly suspected");
        assert_eq!(set(&t.stalled), set(&m.stalled), "stalled");
        assert_eq!(set(&t.lagging), set(&m.lagging), "lagging");
        match &t.pinned_by {
            None => assert!(
                m.pinned_by.is_none(),
                "pinned_by: model has {:?}",
                m.pinned_by
            ),
            Some(k) => assert!(
                self.model.pinned_candidates().contains(k),
                "pinned_by {k} is not among {:?}",
                self.model.pinned_candidates()
            ),
        }
    }

    /// Every observable agrees, and the watermark passes the oracle.
    pub fn check(&mut self, op: &Op) {
        let w = self.tracker.watermark();
        assert_eq!(w, self.model.watermark(), "watermark after {op:?}");
        assert!(
            self.positions.contains(&w),
            "watermark {w} is neither start_at nor a tracked commit, after {op:?}"
        );
        let bound = self.safe_bound();
        assert!(
            w <= bound,
            "watermark {w} passes the highest position durable in every live shape, {bound}, after {op:?}"
        );
        assert!(
            w >= self.last_watermark,
            "the watermark went down from {} to {w} after {op:?}",
            self.last_watermark
        );
        if w > self.last_watermark {
            self.coverage.advanced += 1;
        }
        self.last_watermark = w;
        assert_eq!(self.tracker.last_seen(), self.model.last_seen());
        let all = self.checks == Checks::Full || matches!(op, Op::Scan);
        let keys: Vec<u16> = if all {
            (0..KEYS).collect()
        } else {
            self.touched.clone()
        };
        for key in keys {
            let t = self.tracker.status(&key);
            let m = self.model.status(&key, self.now);
            assert_eq!(t, m, "status({key}) after {op:?}");
            assert_eq!(
                self.tracker.id_of(&key).is_some(),
                self.model.id_of(&key).is_some(),
                "registered({key})"
            );
        }
        for h in &self.writers {
            assert_eq!(
                h.writer.is_suspected(),
                self.model.is_suspected(h.id),
                "is_suspected({}) after {op:?}",
                h.writer.key()
            );
            assert_eq!(
                h.writer.is_evicted(),
                self.model.is_evicted(h.id),
                "is_evicted({}) after {op:?}",
                h.writer.key()
            );
        }
        let (lo, hi) = self.model.events_dropped_range();
        let dropped = self.tracker.events_dropped();
        assert!(
            (lo..=hi).contains(&dropped),
            "{dropped} events dropped at capacity, the model says {lo} to {hi}, after {op:?}"
        );
        self.coverage.dropped = self.model.events_dropped() as usize;
        self.coverage.stalls_withheld = self.model.stalls_withheld() as usize;
        if self.eager_reader || matches!(op, Op::Read) {
            self.read_events(op);
        }
    }

    /// Reads both queues and compares them: the same number of events; for each key, the
    /// tracker's events in the order the model emitted them; and first in, first out across
    /// steps (within one scan, events of different keys may come in another order: the
    /// tracker visits shapes in its own order). When informational events were dropped at
    /// capacity, which ones depends on that order, so the tracker's may be any of those the
    /// model emitted (queued or dropped); action events are never dropped.
    fn read_events(&mut self, op: &Op) {
        let t: Vec<Event<u16>> = self.tracker.events().try_iter().collect();
        let m = self.model.take_events_numbered();
        let dropped = self.model.take_dropped();
        let text = |e: &Event<u16>| format!("{e:?}");
        // Every event emitted was read or dropped, as many in the tracker as in the model.
        self.read.0 += t.len() as u64;
        self.read.1 += m.len() as u64;
        assert_eq!(
            self.read.0 + self.tracker.events_dropped(),
            self.read.1 + self.model.events_dropped(),
            "events read or dropped, after {op:?}: tracker {t:?}, model {m:?}"
        );
        let step_of = |n: u64| self.emitted_at[self.emitted_at.partition_point(|&(q, _)| q <= n)].1;
        // Everything the model emitted since the last read, by key, in emission order.
        let mut pool: Vec<&(u64, Event<u16>)> = m.iter().chain(&dropped).collect();
        pool.sort_by_key(|(n, _)| *n);
        let mut by_key: BTreeMap<u16, Vec<(usize, String, bool)>> = BTreeMap::new();
        for (n, e) in pool {
            let action = matches!(e, Event::Stalled { .. } | Event::WriterDown { .. });
            by_key
                .entry(event_key(e))
                .or_default()
                .push((step_of(*n), text(e), action));
        }
        let mut next: BTreeMap<u16, usize> = BTreeMap::new();
        let mut last_step = 0;
        for e in &t {
            let k = event_key(e);
            let want = text(e);
            let entries = by_key.get(&k).map_or(&[][..], Vec::as_slice);
            let n = next.entry(k).or_default();
            // The next entry of this key the tracker's event can be: informational entries
            // the tracker dropped may be skipped, action entries may not.
            let step = loop {
                let Some((step, got, action)) = entries.get(*n) else {
                    panic!("event {want} read out of order or never emitted, after {op:?}: tracker {t:?}, model {m:?}");
                };
                *n += 1;
                if *got == want {
                    break *step;
                }
                assert!(
                    !action,
                    "events of key {k} out of order: read {want}, the model's next is {got}, after {op:?}: tracker {t:?}, model {m:?}"
                );
            };
            assert!(
                step >= last_step,
                "an event of step {step} read after one of step {last_step} (first in, first out), after {op:?}: tracker {t:?}"
            );
            last_step = step;
        }
        for (k, entries) in &by_key {
            let taken = next.get(k).copied().unwrap_or(0);
            assert!(
                entries[taken..].iter().all(|(_, _, action)| !action),
                "an action event of key {k} was never read, after {op:?}: tracker {t:?}, model {m:?}"
            );
        }
        if let (Some(a), Some(b)) = (m.first(), m.last()) {
            self.coverage.unread_kept += usize::from(step_of(a.0) != step_of(b.0));
        }
        for (_, e) in &m {
            let c = &mut self.coverage;
            match e {
                Event::Suspected { .. } => c.suspected += 1,
                Event::Stalled { evicted: true, .. } => c.evicted += 1,
                Event::Stalled { .. } => c.stalled_reported += 1,
                Event::WriterDown {
                    cause: DownCause::Panicked,
                    ..
                } => c.down_panicked += 1,
                Event::WriterDown { .. } => c.down_pending += 1,
                Event::Lagging { .. } => c.lagging += 1,
                _ => {}
            }
        }
    }
}

/// The key an event names.
fn event_key(e: &Event<u16>) -> u16 {
    match e {
        Event::Suspected { key, .. }
        | Event::Stalled { key, .. }
        | Event::WriterDown { key, .. }
        | Event::Lagging { key, .. } => *key,
        other => panic!("unexpected event {other:?}"),
    }
}

/// Silences the harness's simulated panics (and only those) on stderr.
pub fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .unwrap_or_default();
            if !msg.starts_with("flushwatch-harness") {
                default(info);
            }
        }));
    });
}
