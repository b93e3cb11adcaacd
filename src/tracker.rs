//! `FlushTracker`, the shared handle, and `Writer`, the consumer's end.

use std::fmt;
use std::hash::Hash;
use std::time::Duration;

use crossbeam_utils::CachePadded;
use dashmap::DashMap;

use crate::clock::Ticker;
use crate::events::Events;
use crate::registry::{Producer, Slab};
use crate::scan::{ScanState, StopSignal};
use crate::slot::{self, Page, Slot, PAGE};
use crate::sync::{lock, Arc, AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering};
use crate::watermark::Watermark;
use crate::{
    Config, DownCause, Error, Event, Offset, ShapeId, ShapeStatus, StallPolicy, Stats, Tracked,
};

/// Counters behind [`FlushTracker::stats`]. All `Relaxed`: they publish nothing.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) stalled: AtomicU64,
    pub(crate) evicted: AtomicU64,
    pub(crate) writers_down: AtomicU64,
    /// `writers_down` by cause (see `Counters::down` in `features/mod.rs`).
    pub(crate) down_panicked: AtomicU64,
    pub(crate) down_dropped_pending: AtomicU64,
    pub(crate) scans: AtomicU64,
    pub(crate) scan_panics: AtomicU64,
    pub(crate) last_scan_nanos: AtomicU64,
    pub(crate) pending: AtomicUsize,
    pub(crate) suspected: AtomicUsize,
}

/// Everything the tracker handles, the scanner thread and the writers share.
pub(crate) struct Shared<K> {
    pub(crate) grace: u64,
    pub(crate) challenge: u64,
    pub(crate) scan_interval: Duration,
    pub(crate) policy: StallPolicy,
    pub(crate) lag_window: u32,
    pub(crate) ticker: Ticker,
    /// The highest commit tracked. Written by `track` (producer lock held) with `Release`
    /// after every slot of the commit; read by `scan` with `Acquire` before any slot.
    pub(crate) last_seen: CachePadded<AtomicU64>,
    /// The published watermark. Published only by `scan` (scan lock held).
    pub(crate) watermark: Watermark,
    pub(crate) registry: DashMap<K, ShapeId>,
    pub(crate) producer: Mutex<Producer<K>>,
    pub(crate) slab: Slab<K>,
    pub(crate) scan: Mutex<ScanState<K>>,
    pub(crate) pinned: Mutex<Option<ShapeStatus<K>>>,
    pub(crate) events: Events<K>,
    pub(crate) counters: Counters,
    /// Feature `metrics`: what the scans recorded so far.
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::features::metrics::State,
    /// Whether a scanner thread runs. CAS false -> true in `spawn_scanner`, stored false by
    /// the thread as it exits.
    pub(crate) scanner_running: AtomicBool,
    /// Removes `key` from `registry` if it still maps to `id`. A function pointer made where
    /// `K: Hash + Eq` is known, so that `Writer`'s `Drop` needs no bounds on `K`.
    pub(crate) unregister: fn(&DashMap<K, ShapeId>, &K, ShapeId),
}

fn unregister<K: Hash + Eq>(registry: &DashMap<K, ShapeId>, key: &K, id: ShapeId) {
    registry.remove_if(key, |_, current| *current == id);
}

impl<K> Shared<K> {
    /// The slot of `id` if the id names a live shape (producer lock held by the caller).
    fn live_slot(pages: &[Arc<Page<K>>], id: ShapeId) -> Option<&Slot> {
        let index = id.index as usize;
        let slot = pages.get(index / PAGE)?.slots.get(index % PAGE)?;
        // Relaxed: `gen` is only written under the producer lock, which the caller holds.
        if slot.gen.load(Ordering::Relaxed) != id.gen {
            return None;
        }
        // Relaxed: only the phase is used; a shape ending concurrently is a race the caller
        // tolerates (its stores land in a slot that no longer counts and is not reassigned
        // while the producer lock is held).
        slot::is_live(slot.state.load(Ordering::Relaxed)).then_some(slot)
    }

    pub(crate) fn track_ids(
        &self,
        commit: Offset,
        ids: impl IntoIterator<Item = ShapeId>,
        mut skipped_extra: usize,
    ) -> Result<Tracked, Error> {
        if commit == 0 {
            return Err(Error::ZeroCommit);
        }
        let mut producer = lock(&self.producer);
        if commit <= producer.last_seen {
            return Err(Error::OffsetRegression {
                last_seen: producer.last_seen,
                got: commit,
            });
        }
        let producer = &mut *producer;
        let previous = producer.last_seen;
        let pages = &producer.pages;
        producer.skipped.clear();
        let mut tracked = 0;
        let mut now = None;
        for id in ids {
            let Some(slot) = Self::live_slot(pages, id) else {
                producer.skipped.push(id);
                continue;
            };
            // Relaxed: only `track` stores `sent`, and it holds the producer lock.
            let sent = slot.sent.load(Ordering::Relaxed);
            if sent == commit {
                continue; // named twice in this call
            }
            // Acquire: pairs with the writer's Release store of `reported`.
            let reported = slot.reported.load(Ordering::Acquire);
            // Relaxed: only `track` stores `floor`.
            let floor = slot.floor.load(Ordering::Relaxed);
            if reported.max(floor) >= sent {
                // Caught up: everything sent before is durable and the commits in between did
                // not touch it, so it is durable up to the previous commit. (Never `commit - 1`:
                // positions are sparse, and that would acknowledge part of `commit`.)
                let tick = *now.get_or_insert_with(|| self.ticker.recent());
                // Relaxed (both): published by the Release store of `sent` below.
                slot.floor.store(previous, Ordering::Relaxed);
                slot.since.store(tick, Ordering::Relaxed);
            }
            // Release: pairs with the Acquire loads of `sent` by the writer and the scanner.
            slot.sent.store(commit, Ordering::Release);
            tracked += 1;
        }
        producer.skipped.sort_unstable();
        producer.skipped.dedup();
        skipped_extra += producer.skipped.len();
        producer.last_seen = commit;
        // Release: pairs with scan's Acquire load; every slot store above happens-before it.
        self.last_seen.store(commit, Ordering::Release);
        Ok(Tracked {
            tracked,
            skipped: skipped_extra,
            previous,
        })
    }
}

/// The flush tracker: a cheap, cloneable, `Send + Sync` handle.
///
/// The producer calls [`track`](FlushTracker::track) for each commit with the shapes it
/// affects; each consumer owns a [`Writer`] and reports what is durable; [`scan`](FlushTracker::scan)
/// (or the background [`Scanner`]) computes the watermark the pipeline may acknowledge and
/// catches stuck consumers.
///
/// Locking behaviour: `track`, `track_keys`, `register` and a writer's drop serialise on the
/// producer lock (`track` walks the producer's own page list); `scan` holds the scan lock and
/// never takes the producer lock. `register`, `remove`, `id_of`, `status` and `track_keys`
/// take a `DashMap` shard lock briefly, never across another call. Nothing here waits on a
/// writer, and no writer waits on anything here.
///
/// ```
/// use flushwatch::{Config, FlushTracker};
///
/// let tracker = FlushTracker::new(Config::default().start_at(100)).unwrap();
/// let orders = tracker.register("orders").unwrap();
/// let users = tracker.register("users").unwrap();
///
/// // Positions are sparse (for Postgres, commit end LSNs).
/// let t = tracker.track(0x1A0, &[orders.id(), users.id()]).unwrap();
/// assert_eq!(t.previous, 100, "the commit tracked before, here start_at");
/// tracker.track(0x1F8, &[orders.id()]).unwrap();
///
/// users.flushed(0x1A0);
/// tracker.scan();
/// assert_eq!(tracker.watermark(), 100, "orders has made nothing durable yet");
/// orders.flushed(0x1F8);
/// tracker.scan();
/// assert_eq!(tracker.watermark(), 0x1F8);
/// ```
pub struct FlushTracker<K> {
    handle: Arc<Handle<K>>,
}

/// The last `FlushTracker` handle going away stops the scanner thread.
struct Handle<K> {
    shared: Arc<Shared<K>>,
    stop: Mutex<Option<Arc<StopSignal>>>,
}

impl<K> Drop for Handle<K> {
    fn drop(&mut self) {
        if let Some(stop) = lock(&self.stop).take() {
            stop.stop();
        }
    }
}

impl<K> Clone for FlushTracker<K> {
    fn clone(&self) -> Self {
        FlushTracker {
            handle: self.handle.clone(),
        }
    }
}

impl<K: fmt::Debug + Hash + Eq> fmt::Debug for FlushTracker<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.handle.shared;
        f.debug_struct("FlushTracker")
            // Relaxed (both): a diagnostic snapshot.
            .field("last_seen", &s.last_seen.load(Ordering::Relaxed))
            .field("watermark", &s.watermark.get())
            .field("registered", &s.registry.len())
            .finish_non_exhaustive()
    }
}

impl<K> FlushTracker<K>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
{
    /// Creates a tracker. Fails with [`Error::InvalidConfig`] on a zero `scan_interval` or
    /// `event_capacity`.
    ///
    /// ```
    /// use flushwatch::{Config, Error, FlushTracker};
    /// let err = FlushTracker::<u8>::new(Config::default().event_capacity(0)).unwrap_err();
    /// assert!(matches!(err, Error::InvalidConfig(_)));
    /// ```
    pub fn new(config: Config) -> Result<Self, Error> {
        config.validate().map_err(Error::InvalidConfig)?;
        let clock = config.clock.clone().unwrap_or_default();
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let shared = Shared {
            grace: nanos(config.grace),
            challenge: nanos(config.challenge),
            scan_interval: config.scan_interval,
            policy: config.stall_policy,
            lag_window: config.lag_window,
            ticker: Ticker::new(clock, config.coarse_ticks),
            last_seen: CachePadded::new(AtomicU64::new(config.start_at)),
            watermark: Watermark::new(config.start_at),
            registry: DashMap::new(),
            producer: Mutex::new(Producer::new(config.start_at)),
            slab: Slab::new(),
            scan: Mutex::new(ScanState::new(config.start_at)),
            pinned: Mutex::new(None),
            events: Events::new(config.event_capacity),
            counters: Counters::default(),
            #[cfg(feature = "metrics")]
            metrics: crate::features::metrics::State::new(),
            scanner_running: AtomicBool::new(false),
            unregister: unregister::<K>,
        };
        Ok(FlushTracker {
            handle: Arc::new(Handle {
                shared: Arc::new(shared),
                stop: Mutex::new(None),
            }),
        })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared<K>> {
        &self.handle.shared
    }

    /// Registers a shape and returns the [`Writer`] its consumer reports through.
    ///
    /// A new shape has nothing sent to it and is not pending. Fails with
    /// [`Error::DuplicateShape`] if `key` is registered; the existing shape is untouched.
    /// An evicted, removed or ended shape's key is free at once.
    ///
    /// Locking behaviour: takes the producer lock and a `DashMap` shard lock, one after the
    /// other.
    ///
    /// ```
    /// use flushwatch::{Config, Error, FlushTracker};
    /// let tracker = FlushTracker::new(Config::default()).unwrap();
    /// let w = tracker.register(7u32).unwrap();
    /// assert_eq!(tracker.register(7).unwrap_err(), Error::DuplicateShape);
    /// w.retire();
    /// assert!(tracker.register(7).is_ok(), "a retired shape's key is free");
    /// ```
    pub fn register(&self, key: K) -> Result<Writer<K>, Error> {
        let shared = self.shared();
        if shared.registry.contains_key(&key) {
            return Err(Error::DuplicateShape);
        }
        // Every user callback that can panic (`Clone`) runs before any state changes; `Hash`
        // and `Eq` run in the map calls, each at a point where a panic leaves nothing behind
        // (the writer below already owns the slot, and its drop gives it back).
        let (slot_key, map_key) = (key.clone(), key.clone());
        let (id, page) = {
            let mut producer = lock(&shared.producer);
            let now = shared.ticker.recent();
            shared.slab.assign(&mut producer, slot_key, now)
        };
        let mut writer = Writer {
            shared: shared.clone(),
            page,
            index: id.index,
            key,
            // Until the key is in the map, a drop (a lost race, or a panic in the map call)
            // gives the slot back quietly.
            retired: true,
        };
        let inserted = match shared.registry.entry(map_key) {
            dashmap::Entry::Occupied(_) => false,
            dashmap::Entry::Vacant(v) => {
                v.insert(id);
                true
            }
        };
        if !inserted {
            // Lost a race with another `register` of the same key.
            return Err(Error::DuplicateShape);
        }
        writer.retired = false;
        Ok(writer)
    }

    /// The id of a registered key.
    ///
    /// Locking behaviour: takes a `DashMap` shard read lock briefly.
    pub fn id_of(&self, key: &K) -> Option<ShapeId> {
        self.shared().registry.get(key).map(|r| *r.value())
    }

    /// Records commit `commit` as sent to `shapes`. Commits must strictly increase and be at
    /// least 1: otherwise `Err` ([`Error::ZeroCommit`], [`Error::OffsetRegression`]) and nothing
    /// changed. Ids whose shape is gone, and ids made by another tracker, are skipped and
    /// counted; an id named twice counts once. `shapes` may be empty: keepalives and
    /// transactions that touch no shape advance `last_seen`, so an idle or filtered source
    /// still lets the watermark move.
    ///
    /// Returns [`Tracked::previous`], the commit tracked just before this one (or `start_at`):
    /// hand it to the consumers with the transaction, so that one that has durably written
    /// everything before `commit` but only part of `commit` reports `flushed(previous)`.
    ///
    /// A shape that was caught up becomes pending with its flushed position raised to that
    /// previous commit (it was durable for everything sent before, and the commits in between
    /// did not touch it): never to a position made by arithmetic on `commit`. Every shape's
    /// new `sent` is visible before `commit` is published as `last_seen`.
    ///
    /// Allocates nothing in steady state. Locking behaviour: takes the producer lock for the
    /// whole call (the ids are resolved through the producer's own page list).
    ///
    /// ```
    /// use flushwatch::{Config, Error, FlushTracker};
    /// let tracker = FlushTracker::new(Config::default()).unwrap();
    /// let w = tracker.register("a").unwrap();
    /// assert_eq!(tracker.track(5, &[w.id()]).unwrap().tracked, 1);
    /// assert_eq!(
    ///     tracker.track(5, &[w.id()]).unwrap_err(),
    ///     Error::OffsetRegression { last_seen: 5, got: 5 }
    /// );
    /// ```
    pub fn track(&self, commit: Offset, shapes: &[ShapeId]) -> Result<Tracked, Error> {
        self.shared().track_ids(commit, shapes.iter().copied(), 0)
    }

    /// [`track`](FlushTracker::track) by key: keys that are not registered are skipped and
    /// counted in [`Tracked::skipped`].
    ///
    /// Linear in the number of keys, however many are unknown or repeated. Locking behaviour:
    /// looks each key up (a `DashMap` shard read lock each) before taking the producer lock.
    /// Allocates small buffers for the ids and the unknown keys.
    ///
    /// ```
    /// use flushwatch::{Config, FlushTracker};
    /// let tracker = FlushTracker::new(Config::default()).unwrap();
    /// let _a = tracker.register("a").unwrap();
    /// let t = tracker.track_keys(1, &["a", "gone"]).unwrap();
    /// assert_eq!((t.tracked, t.skipped), (1, 1));
    /// ```
    pub fn track_keys<'a>(
        &self,
        commit: Offset,
        keys: impl IntoIterator<Item = &'a K>,
    ) -> Result<Tracked, Error>
    where
        K: 'a,
    {
        if commit == 0 {
            return Err(Error::ZeroCommit);
        }
        let shared = self.shared();
        let mut ids = Vec::new();
        let mut unknown: std::collections::HashSet<&K> = std::collections::HashSet::new();
        for key in keys {
            match shared.registry.get(key) {
                Some(r) => ids.push(*r.value()),
                None => {
                    unknown.insert(key);
                }
            }
        }
        shared.track_ids(commit, ids, unknown.len())
    }

    /// Ends a shape: it stops counting at once, its key is free at once, and its writer
    /// becomes inert ([`Writer::is_evicted`] turns true). Returns whether `key` was registered.
    ///
    /// Locking behaviour: takes a `DashMap` shard write lock and the page list's read lock.
    ///
    /// ```
    /// use flushwatch::{Config, FlushTracker};
    /// let tracker = FlushTracker::new(Config::default()).unwrap();
    /// let w = tracker.register("a").unwrap();
    /// assert!(tracker.remove(&"a"));
    /// assert!(!tracker.remove(&"a"));
    /// assert!(w.is_evicted());
    /// ```
    pub fn remove(&self, key: &K) -> bool {
        let shared = self.shared();
        let Some((_, id)) = shared.registry.remove(key) else {
            return false;
        };
        let page = shared.slab.page(id.index as usize);
        let slot = &page.slots[id.index as usize % PAGE];
        // Relaxed: the CAS below validates it.
        let mut cur = slot.state.load(Ordering::Relaxed);
        while slot::is_live(cur) && slot::gen32(cur) == id.gen as u32 {
            // AcqRel: pairs with the scanner's and the writer's CASes on `state`; an eviction,
            // a drop and a removal are mutually exclusive.
            match slot.state.compare_exchange_weak(
                cur,
                slot::with_phase(cur, slot::REMOVED),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(s) => cur = s,
            }
        }
        true
    }

    /// One pass at `clock.now()`: recomputes and publishes the watermark (never lower than
    /// before), and runs the stall machine (see the crate docs, "Stall detection"). Emits
    /// `Suspected`, `Stalled` and `Lagging` events. It makes stall decisions on the calling
    /// thread: to *read* the watermark, use [`watermark`](FlushTracker::watermark) or
    /// [`wait_watermark`](FlushTracker::wait_watermark).
    ///
    /// Locking behaviour: takes the scan lock for the whole pass (concurrent scans serialise);
    /// never blocks `track` or a writer (it reads the page list under its read lock only when
    /// new pages appeared since the last scan).
    ///
    /// ```
    /// use flushwatch::{Config, FlushTracker};
    /// let tracker = FlushTracker::new(Config::default()).unwrap();
    /// let w = tracker.register(1u64).unwrap();
    /// tracker.track(3, &[w.id()]).unwrap();
    /// let report = tracker.scan();
    /// assert_eq!((report.watermark, report.pending), (0, 1), "start_at: nothing durable");
    /// assert_eq!(report.pinned_by, Some(1));
    /// ```
    pub fn scan(&self) -> crate::ScanReport<K> {
        crate::scan::scan(self.shared())
    }

    /// The published watermark, as of the last scan: the safe position to acknowledge.
    /// Starts at `start_at`, changes only in a scan, never decreases, and is always
    /// `start_at` or a commit handed to `track`. A cheap load: no scan, no lock.
    pub fn watermark(&self) -> Offset {
        self.shared().watermark.get()
    }

    /// Blocks the calling thread until a scan publishes a watermark `>= at_least` (and returns
    /// it), or `timeout` passes (and returns the current one, below `at_least`). A timeout too
    /// large for `Instant` (`Duration::MAX` included) waits for ever.
    ///
    /// Locking behaviour: waits on a condition variable that every publication notifies; takes
    /// no lock a scan, `track` or a writer needs for longer than a notification.
    ///
    /// ```
    /// use std::time::Duration;
    /// use flushwatch::{Config, FlushTracker};
    /// let tracker = FlushTracker::new(Config::default().scan_interval(Duration::from_millis(5)))?;
    /// let w = tracker.register("a")?;
    /// tracker.track(42, &[w.id()])?;
    /// let _scanner = tracker.spawn_scanner()?;
    /// assert_eq!(tracker.wait_watermark(42, Duration::from_millis(20)), 0, "not durable yet");
    /// w.flushed(42);
    /// assert_eq!(tracker.wait_watermark(42, Duration::MAX), 42);
    /// # Ok::<(), flushwatch::Error>(())
    /// ```
    pub fn wait_watermark(&self, at_least: Offset, timeout: Duration) -> Offset {
        self.shared().watermark.wait(at_least, timeout)
    }

    /// The highest commit tracked (`start_at` before any).
    pub fn last_seen(&self) -> Offset {
        // Acquire: pairs with track's Release store.
        self.shared().last_seen.load(Ordering::Acquire)
    }

    /// A receiver of the tracker's events. All receivers share one ordered queue: each event
    /// reaches one of them. Nobody reading never blocks anything. When the queue holds
    /// `event_capacity` events, new *informational* events (`Suspected`, `Lagging`,
    /// `ScanPanicked`) are dropped and counted in
    /// [`events_dropped`](FlushTracker::events_dropped); *action* events (`Stalled`,
    /// `WriterDown`) are queued anyway and never lost. A shape has at most one unread
    /// `Stalled`: one that stalls again (under `StallPolicy::Report`) while its previous
    /// `Stalled` is unread is counted in [`Stats::stalled`] and listed in
    /// [`ScanReport::stalled`](crate::ScanReport::stalled), not queued again. Watermark
    /// changes are not events: see [`watermark`](FlushTracker::watermark) and
    /// [`wait_watermark`](FlushTracker::wait_watermark).
    ///
    /// ```
    /// use flushwatch::{Config, Event, FlushTracker};
    /// let tracker = FlushTracker::new(Config::default().event_capacity(1))?;
    /// let (a, b) = (tracker.register("a")?, tracker.register("b")?);
    /// tracker.track(7, &[a.id(), b.id()])?;
    /// drop(a); // pending: WriterDown
    /// drop(b); // pending: WriterDown, queued beyond the capacity
    /// let events: Vec<_> = tracker.events().try_iter().collect();
    /// assert_eq!(events.len(), 2);
    /// assert!(events.iter().all(|e| matches!(e, Event::WriterDown { .. })));
    /// # Ok::<(), flushwatch::Error>(())
    /// ```
    pub fn events(&self) -> crossbeam_channel::Receiver<Event<K>> {
        self.shared().events.receiver()
    }

    /// Informational events dropped because the queue held `event_capacity` events.
    pub fn events_dropped(&self) -> u64 {
        // Relaxed: a statistic.
        self.shared().events.dropped.load(Ordering::Relaxed)
    }

    /// Starts the background scanner: a thread named `flushwatch-scanner` that runs
    /// [`scan`](FlushTracker::scan) every `scan_interval` at a fixed rate (a slow scan delays
    /// the next one, it does not shift the schedule). The returned guard stops and joins it
    /// on drop, promptly; the thread also stops when the last `FlushTracker` handle goes.
    /// A panic inside a scan is caught, counted, reported as [`Event::ScanPanicked`], and
    /// scanning goes on. Fails with [`Error::ScannerRunning`] if one runs. With the `tokio`
    /// feature, a guard dropped inside a tokio runtime only signals stop (see [`Scanner`]).
    ///
    /// ```
    /// use flushwatch::{Config, Error, FlushTracker};
    /// let tracker = FlushTracker::<u8>::new(Config::default()).unwrap();
    /// let scanner = tracker.spawn_scanner().unwrap();
    /// assert_eq!(tracker.spawn_scanner().unwrap_err(), Error::ScannerRunning);
    /// drop(scanner);
    /// assert!(tracker.spawn_scanner().is_ok());
    /// ```
    pub fn spawn_scanner(&self) -> Result<Scanner, Error> {
        let shared = self.shared().clone();
        if shared
            .scanner_running
            // AcqRel: pairs with the exiting thread's Release store of false.
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(Error::ScannerRunning);
        }
        let stop = Arc::new(StopSignal::new());
        if let Some(old) = lock(&self.handle.stop).replace(stop.clone()) {
            old.stop();
        }
        match crate::scan::spawn(shared.clone(), stop.clone()) {
            Ok(join) => Ok(Scanner {
                stop,
                join: Some(join),
            }),
            Err(e) => {
                // Release: pairs with the Acquire CAS above.
                shared.scanner_running.store(false, Ordering::Release);
                Err(Error::ScannerSpawn(e.to_string()))
            }
        }
    }

    /// The state of one registered shape.
    ///
    /// Locking behaviour: a `DashMap` shard read lock, then the page list's read lock and the
    /// key's mutex, one after the other.
    ///
    /// ```
    /// use flushwatch::{Config, FlushTracker};
    /// let tracker = FlushTracker::new(Config::default()).unwrap();
    /// let w = tracker.register("a").unwrap();
    /// tracker.track(4, &[w.id()]).unwrap();
    /// let s = tracker.status(&"a").unwrap();
    /// assert_eq!((s.sent, s.flushed, s.pending, s.lag), (4, 3, true, 1));
    /// ```
    pub fn status(&self, key: &K) -> Option<ShapeStatus<K>> {
        let shared = self.shared();
        let id = self.id_of(key)?;
        let now = shared.ticker.now();
        let last_seen = self.last_seen();
        let page = shared.slab.page(id.index as usize);
        let slot = &page.slots[id.index as usize % PAGE];
        // Acquire: pairs with the Release stores and CASes of `state`.
        let state = slot.state.load(Ordering::Acquire);
        if !slot::is_live(state) || slot::gen32(state) != id.gen as u32 {
            return None;
        }
        Some(status_of(slot, key.clone(), state, now, last_seen))
    }

    /// As of the last scan: the pending shape holding the watermark (the one with the lowest
    /// flushed position), with its lag and idle time. `None` when nothing is pending.
    ///
    /// Locking behaviour: a small mutex the scan updates at its end.
    pub fn pinned_by(&self) -> Option<ShapeStatus<K>> {
        lock(&self.shared().pinned).clone()
    }

    /// A cheap snapshot of the tracker's counters.
    ///
    /// ```
    /// use flushwatch::{Config, FlushTracker};
    /// let tracker = FlushTracker::new(Config::default()).unwrap();
    /// let _w = tracker.register("a").unwrap();
    /// tracker.scan();
    /// let stats = tracker.stats();
    /// assert_eq!((stats.registered, stats.scans), (1, 1));
    /// ```
    pub fn stats(&self) -> Stats {
        let s = self.shared();
        let c = &s.counters;
        // Relaxed (all): statistics.
        Stats {
            registered: s.registry.len(),
            pending: c.pending.load(Ordering::Relaxed),
            suspected: c.suspected.load(Ordering::Relaxed),
            stalled: c.stalled.load(Ordering::Relaxed),
            evicted: c.evicted.load(Ordering::Relaxed),
            writers_down: c.writers_down.load(Ordering::Relaxed),
            events_dropped: s.events.dropped.load(Ordering::Relaxed),
            scans: c.scans.load(Ordering::Relaxed),
            scan_panics: c.scan_panics.load(Ordering::Relaxed),
            last_scan: Duration::from_nanos(c.last_scan_nanos.load(Ordering::Relaxed)),
            last_seen: self.last_seen(),
            watermark: self.watermark(),
        }
    }
}

/// A shape's status from its slot (`state` already loaded and checked live).
pub(crate) fn status_of<K>(
    slot: &Slot,
    key: K,
    state: u64,
    now: u64,
    last_seen: Offset,
) -> ShapeStatus<K> {
    let (flushed, sent) = slot.positions();
    let pending = flushed < sent;
    let idle = if pending {
        now.saturating_sub(slot.progress_tick())
    } else {
        0
    };
    ShapeStatus {
        key,
        sent,
        flushed,
        pending,
        idle: Duration::from_nanos(idle),
        suspected: slot::is_suspected(state),
        lag: if pending {
            last_seen.saturating_sub(flushed)
        } else {
            0
        },
    }
}

/// The guard of the background scanner thread: dropping it stops and joins the thread.
///
/// With the `tokio` feature, a guard dropped inside a tokio runtime only signals stop and
/// returns at once: the thread exits after the scan in flight, and
/// [`spawn_scanner`](FlushTracker::spawn_scanner) returns [`Error::ScannerRunning`] until then.
#[must_use = "dropping the guard stops the scanner"]
pub struct Scanner {
    stop: Arc<StopSignal>,
    join: Option<crate::sync::thread::JoinHandle<()>>,
}

impl fmt::Debug for Scanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scanner").finish_non_exhaustive()
    }
}

impl Scanner {
    /// Stops the scanner thread and waits for it (what dropping the guard does; inside a tokio
    /// runtime, with the `tokio` feature, it does not wait).
    pub fn stop(self) {}
}

impl Drop for Scanner {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(join) = self.join.take() {
            if crate::features::detach_scanner() {
                return; // inside a tokio runtime: detach, never block an executor thread
            }
            // A scan panic is caught inside the thread; a join error can only come from a
            // panic in the loop itself, which there is nobody to report to here.
            let _ = join.join();
        }
    }
}

/// A consumer's end of one shape: it reports what is durable.
///
/// `Writer` is `Send + Sync`. It is meant to be owned by one consumer (moved into its thread or
/// task), which is what lets the hot path use plain stores instead of read-modify-writes. Calls
/// from several threads at once are still safe: two racing reports may leave the shape at the
/// lower of the two (a conservative, true claim) until the next report; the watermark never
/// goes back and never passes what is durable.
///
/// Dropping a writer ends its shape: quietly when it was caught up, with
/// [`Event::WriterDown`] when it was pending ([`DownCause::DroppedPending`]) or its thread was
/// panicking ([`DownCause::Panicked`]). [`retire`](Writer::retire) ends it quietly even when
/// pending. Either way the shape stops counting and its key is free at once. A writer whose
/// shape was already evicted or removed is inert: dropping it does nothing more.
///
/// ```
/// use flushwatch::{Config, FlushTracker};
/// let tracker = FlushTracker::new(Config::default()).unwrap();
/// let writer = tracker.register("orders").unwrap();
/// tracker.track(1, &[writer.id()]).unwrap();
/// std::thread::spawn(move || {
///     // ... write commit 1 and fsync ...
///     writer.flushed(1);
/// })
/// .join()
/// .unwrap();
/// tracker.scan();
/// assert_eq!(tracker.watermark(), 1);
/// ```
pub struct Writer<K> {
    // Kept small (32 bytes for a `u64` key): a consumer holding thousands of writers touches
    // one dense array of them plus one slot line per flush. The slot's address is the page
    // pointer plus an offset, with no further load; the id's generation lives in the slot.
    shared: Arc<Shared<K>>,
    page: Arc<Page<K>>,
    /// The slot's index (the id's index).
    index: u32,
    key: K,
    /// Set by `retire` (and by `register`'s rollback): the drop ends the shape quietly.
    retired: bool,
}

impl<K: fmt::Debug> fmt::Debug for Writer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("key", &self.key)
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl<K> Writer<K> {
    /// The slot's offset in its page.
    #[inline(always)]
    fn off(&self) -> usize {
        self.index as usize & (PAGE - 1)
    }

    #[inline(always)]
    fn slot(&self) -> &Slot {
        &self.page.slots[self.off()]
    }

    /// The shape's id, for [`FlushTracker::track`].
    pub fn id(&self) -> ShapeId {
        ShapeId {
            index: self.index,
            // Relaxed: written under the producer lock when the slot was assigned to this
            // writer, before the writer existed; it does not change while the writer lives.
            gen: self.slot().gen.load(Ordering::Relaxed),
        }
    }

    /// The shape's key.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// Reports that every transaction with commit position `<= position` tracked for this
    /// shape is durable. **The hot path**: no lock, no allocation, no hash lookup, no syscall;
    /// a few loads and, when it is progress, two stores to the shape's own cache line.
    ///
    /// **The reporting contract** (the safety of the watermark assumes it): report only commit
    /// positions this consumer has *received*, or [`Tracked::previous`] of a commit it
    /// received (the producer hands it over with the transaction) when it has durably written
    /// everything before that commit but not all of it. Never a position made by arithmetic on
    /// a commit: positions are sparse. Reporting an earlier commit it received is safe but may
    /// hold the watermark back.
    ///
    /// A position beyond what was sent counts as caught up to what was sent, never more (a
    /// later `track` still makes the shape pending): this protects reports made before a later
    /// `track`. A position at or below the current flushed position is ignored and is not
    /// progress. Reports from an evicted, removed or retired writer are ignored.
    ///
    /// Progress refreshes the shape's tick and answers a challenge ([`is_suspected`](Writer::is_suspected)
    /// turns false).
    ///
    /// ```
    /// use flushwatch::{Config, FlushTracker};
    /// let tracker = FlushTracker::new(Config::default()).unwrap();
    /// let w = tracker.register(1u8).unwrap();
    /// tracker.track(10, &[w.id()]).unwrap();
    /// w.flushed(99); // beyond what was sent: clamped to 10
    /// tracker.track(20, &[w.id()]).unwrap();
    /// tracker.scan();
    /// assert_eq!(tracker.watermark(), 10, "pending again: durable up to the commit before 20");
    /// ```
    #[inline]
    pub fn flushed(&self, position: Offset) {
        let slot = self.slot();
        // Relaxed: only the phase is used. A stale LIVE means a concurrent eviction, whose
        // outcome (this report ignored, `is_evicted` true) is allowed; a stale SUSPECTED
        // costs one CAS in `answer`.
        let state = slot.state.load(Ordering::Relaxed);
        if state & (slot::PHASE | slot::SUSPECTED) == slot::LIVE {
            self.advance(slot, position);
        } else if slot::is_live(state) && self.advance(slot, position) {
            self.answer(slot);
        }
    }

    /// Stores `position` (clamped to `sent`) if it is progress; returns whether it was.
    #[inline(always)]
    fn advance(&self, slot: &Slot, position: Offset) -> bool {
        // Acquire: pairs with track's Release store of `sent`, so the `floor` it raised with
        // it is visible below.
        let sent = slot.sent.load(Ordering::Acquire);
        let position = position.min(sent);
        // Relaxed: only this writer stores `reported` (see the type docs for concurrent calls).
        let reported = slot.reported.load(Ordering::Relaxed);
        // Relaxed: published by the `sent` load above.
        let floor = slot.floor.load(Ordering::Relaxed);
        if position <= reported.max(floor) {
            return false;
        }
        let now = self.shared.ticker.recent();
        // Relaxed: published by the Release store of `reported` below.
        slot.tick.store(now, Ordering::Relaxed);
        // Release: pairs with the scanner's Acquire load of `reported`.
        slot.reported.store(position, Ordering::Release);
        true
    }

    /// Clears a suspicion after progress or `defer` (bumping the counter), if still live.
    #[cold]
    fn answer(&self, slot: &Slot) {
        // AcqRel: pairs with the scanner's CASes; exactly one of "answered" and "stalled" wins.
        let _ = slot
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |s| {
                slot::is_live(s).then(|| slot::answered(s))
            });
    }

    /// Says "alive, deliberately not flushing yet": refreshes the shape's tick and answers a
    /// challenge, without claiming anything durable. A healthy consumer that sees
    /// [`is_suspected`](Writer::is_suspected) during a long, legitimate pause calls it.
    ///
    /// Not the hot path: one compare-and-swap on the shape's state.
    pub fn defer(&self) {
        let slot = self.slot();
        let now = self.shared.ticker.recent();
        // Relaxed: published by the AcqRel update of `state` below.
        slot.tick.store(now, Ordering::Relaxed);
        self.answer(slot);
    }

    /// Whether the scanner suspects this shape and no progress or `defer` has answered yet.
    pub fn is_suspected(&self) -> bool {
        // Acquire: pairs with the scanner's CAS that suspected it.
        slot::is_suspected(self.slot().state.load(Ordering::Acquire))
    }

    /// Whether this writer's shape was evicted (a stall) or removed: it is inert now, and its
    /// key is already free (an eviction frees the key before this turns true).
    pub fn is_evicted(&self) -> bool {
        // Acquire: pairs with the scanner's evicting CAS and with `remove`'s CAS.
        let phase = slot::phase(self.slot().state.load(Ordering::Acquire));
        phase == slot::EVICTED || phase == slot::REMOVED
    }

    /// Ends the shape deliberately and quietly, even if it is pending: it stops counting and
    /// its key is free at once. No event.
    pub fn retire(mut self) {
        self.retired = true;
    }
}

impl<K> Drop for Writer<K> {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        let slot = self.slot();
        // The producer lock orders this end against `track`: a `track` that counted this shape
        // ran before, so the positions below include its commit (and the drop reports the
        // shape pending); one that runs after sees the slot free and skips the id.
        let producer = lock(&self.shared.producer);
        let (flushed, sent) = slot.positions();
        let cause = if self.retired {
            None
        } else if panicking {
            Some(DownCause::Panicked)
        } else if flushed < sent {
            Some(DownCause::DroppedPending)
        } else {
            None
        };
        // AcqRel: pairs with the scanner's and `remove`'s CASes: if the shape was still live,
        // this drop is what ends it; either way the slot is free from here on.
        let prev = slot.state.swap(slot::FREE, Ordering::AcqRel);
        drop(producer); // before any map call or channel send
        let key = lock(&self.page.keys[self.off()]).take();
        let shared = &self.shared;
        // Unregister this id whatever the phase was (an eviction or removal has usually done
        // it already; `remove_if` by id is idempotent and never touches a newer shape of the
        // key). The user's `Hash`/`Eq` run here: a panic in them must not abort a drop that
        // runs during unwinding, nor keep the slot from going back to the free list.
        let id = self.id();
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (shared.unregister)(&shared.registry, &self.key, id)
        }));
        if slot::is_live(prev) {
            if let (Some(cause), Some(key)) = (cause, key) {
                // Relaxed: a statistic.
                shared.counters.writers_down.fetch_add(1, Ordering::Relaxed);
                // Relaxed: a statistic.
                shared.counters.down(cause).fetch_add(1, Ordering::Relaxed);
                shared.events.action(Event::WriterDown { key, cause });
            }
        }
        shared.slab.release(self.index);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_writer_is_small() {
        // The flush path of a consumer with many shapes walks an array of writers.
        assert_eq!(std::mem::size_of::<Writer<u64>>(), 32);
    }
}
