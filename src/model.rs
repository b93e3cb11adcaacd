//! The sequential reference model: the executable form of the documented contract (the crate
//! docs, "Guarantees" and "Stall detection").
//!
//! [`Model`] implements every rule of the contract with plain data and no concurrency: positions,
//! pending, the raise to the previous commit, the watermark and its monotone publication, removal, writer
//! liveness, and the stall machine with time passed in explicitly. It is simple and obviously
//! right, not fast: the property tests, the fuzz targets and the loom models check the
//! lock-free [`FlushTracker`](crate::FlushTracker) against it.
//!
//! Time is in nanoseconds; the tracker driven by [`Clock::mock()`](crate::Clock::mock) reads exactly the
//! same ticks (see the crate docs, "Ticks"), so on a sequential run both agree step by step.
//!
//! ```
//! use flushwatch::model::{Model, ModelConfig};
//!
//! let mut m = Model::new(ModelConfig::default());
//! let a = m.register("a", 0).unwrap();
//! let b = m.register("b", 0).unwrap();
//! m.track(10, &[a, b], 0).unwrap();
//! m.track(17, &[a, b], 0).unwrap();
//! m.flushed(a, 10, 0);
//! m.flushed(b, 17, 0);
//! assert_eq!(m.scan(0).watermark, 10);
//! ```

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::time::Duration;

use crate::{DownCause, Error, Event, Offset, ScanReport, ShapeStatus, StallPolicy, Tracked};

/// The model's configuration (the stall-relevant part of [`Config`](crate::Config)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelConfig {
    /// Overdue when idle strictly longer than this (nanoseconds).
    pub grace: u64,
    /// Stalled when still overdue and suspected strictly longer than this (nanoseconds).
    pub challenge: u64,
    /// Initial `last_seen` and watermark.
    pub start_at: Offset,
    /// What a stall does.
    pub policy: StallPolicy,
    /// Lagging window in scans (0: off).
    pub lag_window: u32,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            grace: 60_000_000_000,
            challenge: 5_000_000_000,
            start_at: 0,
            policy: StallPolicy::Evict,
            lag_window: 50,
        }
    }
}

/// A registration in the model: unique for the model's life (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelId(pub u64);

/// How a model shape ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Stalled under `StallPolicy::Evict`.
    Evicted,
    /// `remove(key)`.
    Removed,
    /// Writer retired or dropped (quietly or not).
    WriterGone,
}

#[derive(Debug, Clone)]
struct Shape<K> {
    key: K,
    sent: Offset,
    flushed: Offset,
    /// Last progress or defer.
    tick: u64,
    /// When it last became pending.
    since: u64,
    /// When a stall under `Report` re-armed it.
    rearm: u64,
    suspected_at: Option<u64>,
    ended: Option<Ended>,
    lag_run: u32,
    lag_prev: u64,
    lag_first: u64,
    flushed_first: u64,
    lagging: bool,
}

impl<K> Shape<K> {
    fn pending(&self) -> bool {
        self.flushed < self.sent
    }
    /// Where the stall timer starts: the last progress or the last re-arm.
    fn progress_tick(&self) -> u64 {
        self.last_progress().max(self.rearm)
    }
    /// The last progress (became pending, moved, deferred): what `idle` counts from.
    fn last_progress(&self) -> u64 {
        self.tick.max(self.since)
    }
    fn reset_lag(&mut self) {
        self.lag_run = 0;
        self.lagging = false;
    }
}

/// The sequential reference model of a [`FlushTracker`](crate::FlushTracker).
#[derive(Debug, Clone)]
pub struct Model<K> {
    config: ModelConfig,
    last_seen: Offset,
    watermark: Offset,
    shapes: BTreeMap<ModelId, Shape<K>>,
    by_key: HashMap<K, ModelId>,
    next: u64,
    events: Vec<Event<K>>,
}

impl<K: Hash + Eq + Clone> Model<K> {
    /// An empty model.
    pub fn new(config: ModelConfig) -> Self {
        Model {
            config,
            last_seen: config.start_at,
            watermark: config.start_at,
            shapes: BTreeMap::new(),
            by_key: HashMap::new(),
            next: 0,
            events: Vec::new(),
        }
    }

    fn live(&mut self, id: ModelId) -> Option<&mut Shape<K>> {
        self.shapes.get_mut(&id).filter(|s| s.ended.is_none())
    }

    fn end(&mut self, id: ModelId, how: Ended) {
        if let Some(s) = self.shapes.get_mut(&id) {
            if s.ended.is_none() {
                s.ended = Some(how);
                s.suspected_at = None;
                if self.by_key.get(&s.key) == Some(&id) {
                    self.by_key.remove(&s.key);
                }
            }
        }
    }

    /// `FlushTracker::register` at time `now`.
    pub fn register(&mut self, key: K, now: u64) -> Result<ModelId, Error> {
        if self.by_key.contains_key(&key) {
            return Err(Error::DuplicateShape);
        }
        self.next += 1;
        let id = ModelId(self.next);
        self.by_key.insert(key.clone(), id);
        self.shapes.insert(
            id,
            Shape {
                key,
                sent: 0,
                flushed: 0,
                tick: now,
                since: now,
                rearm: 0,
                suspected_at: None,
                ended: None,
                lag_run: 0,
                lag_prev: 0,
                lag_first: 0,
                flushed_first: 0,
                lagging: false,
            },
        );
        Ok(id)
    }

    /// The live registration of `key`.
    pub fn id_of(&self, key: &K) -> Option<ModelId> {
        self.by_key.get(key).copied()
    }

    /// `FlushTracker::track` at time `now`.
    pub fn track(&mut self, commit: Offset, ids: &[ModelId], now: u64) -> Result<Tracked, Error> {
        if commit == 0 {
            return Err(Error::ZeroCommit);
        }
        if commit <= self.last_seen {
            return Err(Error::OffsetRegression {
                last_seen: self.last_seen,
                got: commit,
            });
        }
        let mut out = Tracked {
            previous: self.last_seen,
            ..Tracked::default()
        };
        let mut skipped = Vec::new();
        for &id in ids {
            let Some(s) = self.live(id) else {
                if !skipped.contains(&id) {
                    skipped.push(id);
                }
                continue;
            };
            if s.sent == commit {
                continue;
            }
            if s.flushed >= s.sent {
                s.flushed = out.previous;
                s.since = now;
            }
            s.sent = commit;
            out.tracked += 1;
        }
        out.skipped = skipped.len();
        self.last_seen = commit;
        Ok(out)
    }

    /// `FlushTracker::track_keys` at time `now`.
    pub fn track_keys(&mut self, commit: Offset, keys: &[K], now: u64) -> Result<Tracked, Error> {
        if commit == 0 {
            return Err(Error::ZeroCommit);
        }
        let mut ids = Vec::new();
        let mut unknown: Vec<&K> = Vec::new();
        for k in keys {
            match self.by_key.get(k) {
                Some(&id) => ids.push(id),
                None if !unknown.contains(&k) => unknown.push(k),
                None => {}
            }
        }
        let unknown = unknown.len();
        let mut t = self.track(commit, &ids, now)?;
        t.skipped += unknown;
        Ok(t)
    }

    /// `Writer::flushed` at time `now`.
    pub fn flushed(&mut self, id: ModelId, position: Offset, now: u64) {
        if let Some(s) = self.live(id) {
            let p = position.min(s.sent);
            if p > s.flushed {
                s.flushed = p;
                s.tick = now;
                s.suspected_at = None;
            }
        }
    }

    /// `Writer::defer` at time `now`.
    pub fn defer(&mut self, id: ModelId, now: u64) {
        if let Some(s) = self.live(id) {
            s.tick = now;
            s.suspected_at = None;
        }
    }

    /// `Writer::retire`.
    pub fn retire(&mut self, id: ModelId) {
        self.end(id, Ended::WriterGone);
    }

    /// Dropping the writer (`panicking`: its thread was panicking).
    pub fn drop_writer(&mut self, id: ModelId, panicking: bool) {
        let Some(s) = self.live(id) else { return };
        let cause = if panicking {
            Some(DownCause::Panicked)
        } else if s.pending() {
            Some(DownCause::DroppedPending)
        } else {
            None
        };
        let key = s.key.clone();
        self.end(id, Ended::WriterGone);
        if let Some(cause) = cause {
            self.events.push(Event::WriterDown { key, cause });
        }
    }

    /// `FlushTracker::remove`.
    pub fn remove(&mut self, key: &K) -> bool {
        match self.by_key.get(key).copied() {
            Some(id) => {
                self.end(id, Ended::Removed);
                true
            }
            None => false,
        }
    }

    /// `FlushTracker::scan` at time `now`.
    pub fn scan(&mut self, now: u64) -> ScanReport<K> {
        let c = self.config;
        let mut report = ScanReport {
            watermark: 0,
            last_seen: self.last_seen,
            pending: 0,
            suspected: Vec::new(),
            stalled: Vec::new(),
            lagging: Vec::new(),
            pinned_by: None,
            registered: 0,
        };
        let mut min = self.last_seen;
        let mut holder: Option<K> = None;
        let mut evicted = Vec::new();
        for (&id, s) in self.shapes.iter_mut().filter(|(_, s)| s.ended.is_none()) {
            report.registered += 1;
            if !s.pending() {
                s.suspected_at = None;
                s.reset_lag();
                continue;
            }
            // Events report the time since the last progress; a re-arm restarts only the
            // stall timer.
            let idle = now.saturating_sub(s.last_progress());
            let overdue = now.saturating_sub(s.progress_tick()) > c.grace;
            match s.suspected_at {
                Some(at) if overdue && now.saturating_sub(at) > c.challenge => {
                    let evict = c.policy == StallPolicy::Evict;
                    self.events.push(Event::Stalled {
                        key: s.key.clone(),
                        idle: Duration::from_nanos(idle),
                        flushed: s.flushed,
                        sent: s.sent,
                        evicted: evict,
                    });
                    report.stalled.push(s.key.clone());
                    s.suspected_at = None;
                    if evict {
                        evicted.push(id);
                        continue;
                    }
                    s.rearm = now;
                }
                Some(_) => {}
                None if overdue => {
                    s.suspected_at = Some(now);
                    self.events.push(Event::Suspected {
                        key: s.key.clone(),
                        idle: Duration::from_nanos(idle),
                    });
                    report.suspected.push(s.key.clone());
                }
                None => {}
            }
            report.pending += 1;
            if s.flushed < min || holder.is_none() {
                min = min.min(s.flushed);
                holder = Some(s.key.clone());
            }
            if c.lag_window > 0 {
                let lag = self.last_seen.saturating_sub(s.flushed);
                if s.lag_run == 0 || lag < s.lag_prev {
                    s.lag_run = 1;
                    s.lag_first = lag;
                    s.flushed_first = s.flushed;
                    s.lagging = false;
                } else {
                    s.lag_run = s.lag_run.saturating_add(1);
                }
                s.lag_prev = lag;
                if !s.lagging
                    && s.lag_run > c.lag_window
                    && lag > s.lag_first
                    && s.flushed > s.flushed_first
                {
                    s.lagging = true;
                    self.events.push(Event::Lagging {
                        key: s.key.clone(),
                        lag,
                    });
                    report.lagging.push(s.key.clone());
                }
            }
        }
        for id in evicted {
            self.end(id, Ended::Evicted);
        }
        if min > self.watermark {
            self.watermark = min;
        }
        report.watermark = self.watermark;
        report.pinned_by = holder;
        report
    }

    /// The published watermark.
    pub fn watermark(&self) -> Offset {
        self.watermark
    }

    /// The highest commit tracked.
    pub fn last_seen(&self) -> Offset {
        self.last_seen
    }

    /// Whether registration `id` is suspected and unanswered.
    pub fn is_suspected(&self, id: ModelId) -> bool {
        self.shapes
            .get(&id)
            .is_some_and(|s| s.ended.is_none() && s.suspected_at.is_some())
    }

    /// Whether registration `id` was evicted or removed.
    pub fn is_evicted(&self, id: ModelId) -> bool {
        self.shapes
            .get(&id)
            .is_some_and(|s| matches!(s.ended, Some(Ended::Evicted | Ended::Removed)))
    }

    /// How registration `id` ended, if it did.
    pub fn ended(&self, id: ModelId) -> Option<Ended> {
        self.shapes.get(&id).and_then(|s| s.ended)
    }

    /// The status of a registered key at time `now`.
    pub fn status(&self, key: &K, now: u64) -> Option<ShapeStatus<K>> {
        let s = &self.shapes[self.by_key.get(key)?];
        let pending = s.pending();
        Some(ShapeStatus {
            key: s.key.clone(),
            sent: s.sent,
            flushed: s.flushed,
            pending,
            idle: Duration::from_nanos(if pending {
                now.saturating_sub(s.last_progress())
            } else {
                0
            }),
            suspected: s.suspected_at.is_some(),
            lag: if pending {
                self.last_seen.saturating_sub(s.flushed)
            } else {
                0
            },
        })
    }

    /// Keys of the live pending shapes.
    pub fn pending_keys(&self) -> Vec<K> {
        self.shapes
            .values()
            .filter(|s| s.ended.is_none() && s.pending())
            .map(|s| s.key.clone())
            .collect()
    }

    /// Keys of the live pending shapes with the lowest flushed position: any of them may be
    /// reported as `pinned_by`.
    pub fn pinned_candidates(&self) -> Vec<K> {
        let live = || {
            self.shapes
                .values()
                .filter(|s| s.ended.is_none() && s.pending())
        };
        let Some(min) = live().map(|s| s.flushed).min() else {
            return Vec::new();
        };
        live()
            .filter(|s| s.flushed == min)
            .map(|s| s.key.clone())
            .collect()
    }

    /// Takes the events emitted since the last call.
    pub fn take_events(&mut self) -> Vec<Event<K>> {
        std::mem::take(&mut self.events)
    }

    /// The safety bound: the largest `P` such that every transaction with commit `<= P` is
    /// durable in every live shape it was tracked for, given the history so far. Equal to
    /// `min(last_seen, min flushed over live pending shapes)` in the model.
    pub fn safe_bound(&self) -> Offset {
        self.shapes
            .values()
            .filter(|s| s.ended.is_none() && s.pending())
            .map(|s| s.flushed)
            .fold(self.last_seen, Offset::min)
    }
}
