//! `FlushTracker`: the thin public facade over the shared core (`core.rs`), the scan
//! (`scan/`), the background scanner (`scanner.rs`) and the writers (`writer.rs`).
//!
//! # Ground rules
//!
//! - A `FlushTracker` is a cheap handle (`Arc`); the last handle going away stops the scanner.
//! - It owns the scan state behind the scan lock, which `scan()` and the scanner thread take;
//!   nothing else here holds a lock across a call into user code or another lock.

use std::borrow::Borrow;
use std::fmt;
use std::hash::Hash;

use crossbeam_utils::CachePadded;
use dashmap::DashMap;

use crate::clock::Ticker;
use crate::core::{unregister, Shared};
use crate::counters::Counters;
use crate::events::Queue;
use crate::registry::{Producer, Slab};
use crate::scan::ScanState;
use crate::scanner::{Scanner, StopSignal};
use crate::slot;
use crate::sync::{lock, Arc, AtomicBool, AtomicU64, Mutex, Ordering};
use crate::watermark::Watermark;
use crate::writer::Writer;
use crate::{Config, Error, ShapeId, ShapeKey};

mod track;

/// The flush tracker: a cheap, cloneable, `Send + Sync` handle.
///
/// `K` is the shape's key: any `Hash + Eq + Clone + Send + Sync + 'static` type (see
/// [`ShapeKey`]); lookups take a borrowed form of it, as `HashMap::get` does (a
/// `FlushTracker<String>` answers `id_of("orders")`).
///
/// The producer calls [`track`](FlushTracker::track) for each commit with the shapes it
/// affects; each consumer owns a [`Writer`] and reports what is durable; [`scan`](FlushTracker::scan)
/// (or the background [`Scanner`]) computes the watermark the pipeline may acknowledge and
/// catches stuck consumers.
///
/// Locking behaviour: `track`, `track_keys`, `register` and a writer's drop serialise on the
/// producer lock (`track` walks the producer's own page list); `scan` holds the scan lock and
/// takes the producer lock twice, briefly, for work proportional to the shapes that became
/// pending or caught up since the last scan. `register`, `remove`, `id_of`, `status` and `track_keys`
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
    scan: Arc<Mutex<ScanState<K>>>,
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

/// A diagnostic snapshot (`last_seen`, the watermark, registered shapes); it prints no key, so
/// it needs no `K: Debug`.
impl<K: Hash + Eq> fmt::Debug for FlushTracker<K> {
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

impl<K: ShapeKey> FlushTracker<K> {
    /// Creates a tracker.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] on a zero `scan_interval` or `event_capacity`.
    ///
    /// ```
    /// use flushwatch::{Config, Error, FlushTracker};
    /// let err = FlushTracker::<u8>::new(Config::default().event_capacity(0)).unwrap_err();
    /// assert!(matches!(err, Error::InvalidConfig(_)));
    /// ```
    pub fn new(config: Config) -> Result<Self, Error> {
        config.validate().map_err(Error::InvalidConfig)?;
        let clock = config.clock.clone().unwrap_or_default();
        let shared = Shared {
            grace: crate::clock::nanos(config.grace),
            challenge: crate::clock::nanos(config.challenge),
            scan_interval: config.scan_interval,
            policy: config.stall_policy,
            lag_window: config.lag_window,
            ticker: Ticker::new(clock, config.coarse_ticks),
            last_seen: CachePadded::new(AtomicU64::new(config.start_at)),
            watermark: Watermark::new(config.start_at),
            registry: DashMap::new(),
            producer: Mutex::new(Producer::new(config.start_at)),
            slab: Slab::new(),
            pinned: Mutex::new(None),
            events: Queue::new(config.event_capacity),
            counters: Counters::default(),
            #[cfg(feature = "metrics")]
            metrics: crate::features::metrics::State::new(),
            scanner_running: AtomicBool::new(false),
            unregister: unregister::<K>,
        };
        Ok(FlushTracker {
            handle: Arc::new(Handle {
                shared: Arc::new(shared),
                scan: Arc::new(Mutex::new(ScanState::new(config.start_at))),
                stop: Mutex::new(None),
            }),
        })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared<K>> {
        &self.handle.shared
    }

    /// The scanner's private state, for the scan's own unit tests.
    #[cfg(test)]
    pub(crate) fn scan_state(&self) -> &Mutex<ScanState<K>> {
        &self.handle.scan
    }

    /// Registers a shape and returns the [`Writer`] its consumer reports through.
    ///
    /// A new shape has nothing sent to it and is not pending. An evicted, removed or ended
    /// shape's key is free at once. Keep the writer: dropping it ends the shape (it is
    /// `#[must_use]`).
    ///
    /// # Errors
    ///
    /// [`Error::DuplicateShape`] if `key` is registered; the existing shape is untouched.
    ///
    /// # Panics
    ///
    /// If the key's `Clone`, `Hash` or `Eq` panics (the panic reaches the caller; nothing is
    /// registered), or with more than 2^32 shapes registered at once.
    ///
    /// Locking behaviour: takes the producer lock and a `DashMap` shard lock, one after the
    /// other.
    ///
    /// Memory: slots come in pages of 1,024 that are never freed while the tracker lives (a
    /// slot is reused by the next shape); the register that opens a page allocates its 64 KiB
    /// of slots and its key table, under the producer lock (74-89 µs median on the test
    /// machine, first-touch page faults included, against ~0.3 µs for any other register; a
    /// concurrent `track` waits that long once per 1,024 shapes). A freed slot is reused first.
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
        // The key's current id, if any (the map's guard is gone before the slot is read: no
        // lock is taken under a shard lock). A shape that has ended (it is being removed,
        // evicted or dropped on another thread, which unregisters it a moment later, by id)
        // leaves its key free: the end is already observable (`status` says `None`), so
        // `register` must not fail. An id, once ended, never lives again.
        let existing = shared.registry.get(&key).map(|r| *r.value());
        let ended = match existing {
            Some(id) if shared.is_live(id) => return Err(Error::DuplicateShape),
            ended => ended,
        };
        // Every user callback that can panic (`Clone`) runs before any state changes; `Hash`
        // and `Eq` run in the map calls, each at a point where a panic leaves nothing behind
        // (the writer below already owns the slot, and its drop gives it back).
        let (slot_key, map_key) = (key.clone(), key.clone());
        let (id, slots) = {
            let mut producer = lock(&shared.producer);
            let now = shared.ticker.recent();
            shared.slab.assign(&mut producer, slot_key, now)
        };
        // Relaxed: a statistic.
        shared.counters.live.fetch_add(1, Ordering::Relaxed);
        let mut writer = Writer {
            shared: shared.clone(),
            slots,
            index: id.index,
            key,
            // Until the key is in the map, a drop (a lost race, or a panic in the map call)
            // gives the slot back quietly.
            retired: true,
            not_sync: std::marker::PhantomData,
        };
        // Still mapped to the ended shape: replace it (the ending thread unregisters by id, so
        // it leaves this entry alone). Mapped to any other id: a concurrent `register` won.
        let inserted = match shared.registry.entry(map_key) {
            dashmap::Entry::Occupied(mut o) if ended == Some(*o.get()) => {
                o.insert(id);
                true
            }
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

    /// The id of a registered key. Takes any borrowed form of the key, as `HashMap::get`
    /// does.
    ///
    /// Locking behaviour: takes a `DashMap` shard read lock briefly.
    ///
    /// ```
    /// use flushwatch::{Config, FlushTracker};
    /// let tracker = FlushTracker::<String>::new(Config::default())?;
    /// let w = tracker.register("orders".to_string())?;
    /// assert_eq!(tracker.id_of("orders"), Some(w.id()));
    /// assert_eq!(tracker.id_of("users"), None);
    /// # Ok::<(), flushwatch::Error>(())
    /// ```
    pub fn id_of<Q>(&self, key: &Q) -> Option<ShapeId>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shared().registry.get(key).map(|r| *r.value())
    }

    /// Ends a shape: it stops counting at once, its key is free at once, and its writer
    /// becomes inert ([`Writer::is_evicted`] turns true, once the key is free). Returns true
    /// iff `key` was registered and this call ended its shape: a shape that a concurrent scan
    /// is evicting (the application hears of that through
    /// [`Event::Stalled`](crate::Event::Stalled)) or whose writer
    /// is being dropped is not removed again, so exactly one of "removed", "stalled" and
    /// "writer down" happens to a shape.
    ///
    /// Takes any borrowed form of the key, as `HashMap::get` does.
    ///
    /// Locking behaviour: a `DashMap` shard read lock, then the page list's read lock, then a
    /// `DashMap` shard write lock, one after the other.
    ///
    /// # Panics
    ///
    /// If the key's `Hash` or `Eq` panics while looking it up (nothing changed). A panic in
    /// them while freeing the key is caught: the shape still ends.
    ///
    /// ```
    /// use flushwatch::{Config, FlushTracker};
    /// let tracker = FlushTracker::new(Config::default()).unwrap();
    /// let w = tracker.register("a").unwrap();
    /// assert!(tracker.remove("a"));
    /// assert!(!tracker.remove("a"));
    /// assert!(w.is_evicted());
    /// assert!(tracker.register("a").is_ok(), "the key is free");
    /// ```
    pub fn remove<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let shared = self.shared();
        let Some(id) = self.id_of(key) else {
            return false;
        };
        // LIVE -> ENDING (inert) first: if a scan's eviction or the writer's drop got there
        // first, the shape is theirs to end (and to report).
        let ending = shared
            .slab
            .with_slot(id.index, |slot| slot.end(id.gen as u32))
            .flatten();
        if ending.is_some() {
            // Relaxed: a statistic.
            shared.counters.live.fetch_sub(1, Ordering::Relaxed);
        }
        // Free the key whoever ended the shape (by id: never a newer shape of the key), before
        // the removal is observable (`is_evicted`), so that the caller can register the key
        // again as soon as this returns. A panic in the user's `Hash`/`Eq` must not leave the
        // slot half removed.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            shared.registry.remove_if(key, |_, current| *current == id)
        }));
        let Some(ending) = ending else {
            return false;
        };
        shared.slab.with_slot(id.index, |slot| {
            // Fails only if the writer was dropped meanwhile (FREE): nothing left to mark.
            slot.cas(ending, slot::with_phase(ending, slot::REMOVED))
        });
        true
    }

    /// One pass at `clock.now()`: recomputes and publishes the watermark (never lower than
    /// before), and runs the stall machine (see the crate docs, "Stall detection"). Emits
    /// `Suspected`, `Stalled` and `Lagging` events. It makes stall decisions on the calling
    /// thread: to *read* the watermark, use [`watermark`](FlushTracker::watermark) or
    /// [`wait_watermark`](FlushTracker::wait_watermark).
    ///
    /// Locking behaviour: takes the scan lock for the whole pass (concurrent scans serialise),
    /// and the producer lock twice, briefly: at the start, to take the slots `track` made
    /// pending since the last scan (a few nanoseconds each), and at the end, to drop the ones
    /// it saw caught up. It never blocks a writer.
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
        crate::scan::scan(self.shared(), &self.handle.scan)
    }

    /// Starts the background scanner: a thread named `flushwatch-scanner` that runs
    /// [`scan`](FlushTracker::scan) every `scan_interval` at a fixed rate (a slow scan delays
    /// the next one, it does not shift the schedule). The returned guard stops and joins it
    /// on drop, promptly; the thread also stops when the last `FlushTracker` handle goes.
    /// A panic inside a scan is caught, counted, reported as
    /// [`Event::ScanPanicked`](crate::Event::ScanPanicked), and scanning goes on. With the
    /// `tokio` feature, a guard dropped inside a tokio runtime only signals stop (see
    /// [`Scanner`]).
    ///
    /// # Errors
    ///
    /// [`Error::ScannerRunning`] if a scanner of this tracker runs; [`Error::ScannerSpawn`] if
    /// the operating system refuses to start a thread.
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
        match crate::scanner::spawn(shared.clone(), self.handle.scan.clone(), stop.clone()) {
            Ok(join) => Ok(Scanner {
                stop,
                join: Some(join),
            }),
            Err(e) => {
                // Release: pairs with the Acquire CAS above.
                shared.scanner_running.store(false, Ordering::Release);
                Err(Error::ScannerSpawn(crate::error::SpawnError::new(e)))
            }
        }
    }
}
