//! What a tracker tells its users: the watermark (`watermark`, `wait_watermark`), `last_seen`,
//! the events (`events`, `events_dropped`), and the operators' view: `status`, `pinned_by`,
//! `stats`, and a shape's status from its slot.
//!
//! Cold paths only: each reads an atomic (see its ordering comment) or takes a lock briefly (a
//! `DashMap` shard, the page list's read lock, a page's key mutex, the small `pinned` mutex,
//! the watermark's condition variable) and reads slots without writing them.

use std::borrow::Borrow;
use std::hash::Hash;
use std::time::Duration;

use crate::slot;
use crate::sync::{lock, read, Ordering};
use crate::{Events, FlushTracker, Offset, ShapeKey, ShapeStatus, Stats};

impl<K: ShapeKey> FlushTracker<K> {
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

    /// A receiver of the tracker's events ([`Events`]). All receivers share one ordered
    /// queue: each event reaches one of them. Nobody reading never blocks anything. When the queue holds
    /// `event_capacity` events, new *informational* events (`Suspected`, `Lagging`,
    /// `ScanPanicked`) are dropped and counted in
    /// [`events_dropped`](FlushTracker::events_dropped); *action* events (`Stalled`,
    /// `WriterDown`) are queued anyway and never lost. A shape has at most one unread
    /// `Stalled`: one that stalls again (under `StallPolicy::Report`) while its previous
    /// `Stalled` is unread is counted in [`Stats::stalled`](crate::Stats::stalled) and listed in
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
    #[must_use = "a receiver does nothing unless read; the events stay queued"]
    pub fn events(&self) -> Events<K> {
        Events::new(self.shared().events.receiver())
    }

    /// Informational events dropped because the queue held `event_capacity` events.
    pub fn events_dropped(&self) -> u64 {
        // Relaxed: a statistic.
        self.shared().events.dropped.load(Ordering::Relaxed)
    }

    /// The state of one registered shape. Takes any borrowed form of the key, as
    /// `HashMap::get` does; the status holds the registered key (a clone).
    ///
    /// Locking behaviour: a `DashMap` shard read lock, the page list's read lock, then the
    /// page's key mutex (the key is cloned under it), one after the other.
    ///
    /// # Panics
    ///
    /// If the key's `Hash`, `Eq` or `Clone` panics (nothing changed).
    ///
    /// ```
    /// use flushwatch::{Config, FlushTracker};
    /// let tracker = FlushTracker::new(Config::default()).unwrap();
    /// let w = tracker.register("a").unwrap();
    /// tracker.track(4, &[w.id()]).unwrap();
    /// tracker.track(9, &[w.id()]).unwrap();
    /// w.flushed(4);
    /// let s = tracker.status("a").unwrap();
    /// assert_eq!((s.sent, s.flushed, s.pending, s.lag), (9, 4, true, 5));
    /// ```
    pub fn status<Q>(&self, key: &Q) -> Option<ShapeStatus<K>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let shared = self.shared();
        let id = self.id_of(key)?;
        let now = shared.ticker.now();
        let last_seen = self.last_seen();
        // The page (shared handles), out of the page list's lock.
        let (page, off) = slot::locate_page(&read(&shared.slab.pages), id.index)
            .map(|(page, off)| (page.clone(), off))?;
        // The status reports the registered key (`key` may be a borrowed form of it): cloned
        // from the page first, then validated by the state read after it, as everywhere (a
        // slot is never reassigned without its generation changing).
        let registered = page.key(off)?;
        let slot = &page.slots[off];
        let state = slot.state();
        (slot::is_live(state) && slot::gen32(state) == id.gen as u32)
            .then(|| slot.status(registered, state, now, last_seen))
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
            // Relaxed: a statistic.
            registered: c.live.load(Ordering::Relaxed),
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
