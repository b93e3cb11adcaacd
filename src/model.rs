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
//! With [`ModelConfig::coarse`] the model follows the real-clock rule instead
//! (`Config::coarse_ticks`): progress is stamped with the tick of the last scan, and a scan
//! dates a progress it first sees by the end of that scan (an upper bound).
//!
//! The event queue is modelled too: first in, first out, informational events dropped at
//! [`ModelConfig::event_capacity`], at most one unread `Stalled` per shape; events stay queued
//! until [`Model::take_events_numbered`] reads them.
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

mod inspect;
mod scan;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::Hash;

use crate::{DownCause, Error, Event, Offset, StallPolicy, Tracked};

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
    /// The real-clock rule (`Config::coarse_ticks`): ticks of progress are the last scan's,
    /// and idleness is measured from an upper bound of the progress time.
    pub coarse: bool,
    /// Queue length at which informational events are dropped (`Config::event_capacity`).
    pub event_capacity: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            grace: 60_000_000_000,
            challenge: 5_000_000_000,
            start_at: 0,
            policy: StallPolicy::Evict,
            lag_window: 50,
            coarse: false,
            event_capacity: 4096,
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
    /// Coarse ticks: progress (a higher flushed position, a `defer`, a re-arm) since the
    /// previous scan.
    changed: bool,
    /// Coarse ticks: the upper bound of the last progress's time, once a scan dated it.
    seen: Option<u64>,
    /// Whether the previous scan counted this shape pending (else the next one starts anew).
    counted: bool,
    /// The sequence number of this shape's last queued `Stalled` (at most one unread).
    stalled_seq: Option<u64>,
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
    /// Unread events with their sequence numbers and emission numbers, oldest first.
    queue: VecDeque<(u64, u64, Event<K>)>,
    /// Events emitted so far, queued or dropped (the next event's emission number).
    emitted: u64,
    /// Informational events dropped at capacity since the last read, with their emission
    /// numbers.
    dropped_unread: Vec<(u64, Event<K>)>,
    /// Events queued so far (the next sequence number).
    queued: u64,
    /// Informational events dropped at capacity.
    dropped: u64,
    /// The fewest and the most informational events the scans so far could have dropped:
    /// when a scan at capacity emits action and informational events, how many are dropped
    /// depends on the order in which it visits the shapes (the model's is by registration).
    dropped_range: (u64, u64),
    /// `Stalled` events not queued because the shape's previous one was unread.
    withheld: u64,
    /// Coarse ticks: the tick the last scan published (what progress is stamped with), and
    /// the end of the last scan.
    scan_tick: u64,
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
            queue: VecDeque::new(),
            emitted: 0,
            dropped_unread: Vec::new(),
            queued: 0,
            dropped: 0,
            dropped_range: (0, 0),
            withheld: 0,
            scan_tick: 0,
        }
    }

    /// The tick progress made at `now` is stamped with.
    fn tick(&self, now: u64) -> u64 {
        if self.config.coarse {
            self.scan_tick
        } else {
            now
        }
    }

    fn push(&mut self, event: Event<K>) -> u64 {
        let seq = self.queued;
        self.queue.push_back((seq, self.emitted, event));
        self.queued += 1;
        self.emitted += 1;
        seq
    }

    /// Queues an informational event, or drops and counts it at capacity.
    fn info(&mut self, event: Event<K>) {
        if self.queue.len() >= self.config.event_capacity {
            self.dropped += 1;
            self.dropped_unread.push((self.emitted, event));
            self.emitted += 1;
        } else {
            self.push(event);
        }
    }

    /// Whether the event numbered `seq` was read.
    fn is_read(&self, seq: u64) -> bool {
        seq < self.queued - self.queue.len() as u64
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
        let now = self.tick(now);
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
                changed: false,
                seen: None,
                counted: false,
                stalled_seq: None,
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
        // The tick a shape becomes pending at: as progress, except that before the first scan
        // (no tick published yet) a coarse clock is read exactly.
        let now = match self.tick(now) {
            0 => now,
            tick => tick,
        };
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
        let now = self.tick(now);
        if let Some(s) = self.live(id) {
            let p = position.min(s.sent);
            if p > s.flushed {
                s.flushed = p;
                s.tick = now;
                s.suspected_at = None;
                s.changed = true;
            }
        }
    }

    /// `Writer::defer` at time `now`.
    pub fn defer(&mut self, id: ModelId, now: u64) {
        let now = self.tick(now);
        if let Some(s) = self.live(id) {
            s.tick = now;
            s.suspected_at = None;
            s.changed = true;
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
            self.push(Event::WriterDown { key, cause });
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
}
