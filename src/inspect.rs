//! The operators' view: `status`, `pinned_by`, `stats`, and a shape's status from its slot.
//!
//! Cold paths only: each takes a lock briefly (a `DashMap` shard, the page list's read lock,
//! a page's key mutex, the small `pinned` mutex) and reads slots without writing them.

use std::borrow::Borrow;
use std::hash::Hash;
use std::time::Duration;

use crate::slot;
use crate::sync::{lock, read, Ordering};
use crate::{FlushTracker, ShapeKey, ShapeStatus, Stats};

impl<K: ShapeKey> FlushTracker<K> {
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
