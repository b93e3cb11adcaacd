//! The producer's side of `FlushTracker`: [`track`](FlushTracker::track) and
//! [`track_keys`](FlushTracker::track_keys). The algorithm and its orderings are in
//! `core.rs` (`Shared::track_ids`), next to the state it writes.

use std::borrow::Borrow;
use std::hash::Hash;

use crate::{slot, Error, FlushTracker, Offset, ShapeId, ShapeKey, TrackHint, Tracked};

impl<K: ShapeKey> FlushTracker<K> {
    /// Records commit `commit` as sent to `shapes`. Commits must strictly increase and be at
    /// least 1. Ids whose shape is gone, and ids made by another tracker, are skipped and
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
    /// # Errors
    ///
    /// [`Error::ZeroCommit`] for `commit == 0`, [`Error::OffsetRegression`] for a commit not
    /// above [`last_seen`](FlushTracker::last_seen); nothing changed.
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

    /// A [`TrackHint`] for shape `id`, to call [`TrackHint::prefetch`] with when the producer
    /// first routes a change to it, ahead of the `track` of its commit. `None` if `id` does
    /// not name a live shape of this tracker (gone, or made by another tracker).
    ///
    /// Get it once per shape (when it is registered, next to its id), not per change.
    /// Locking behaviour: the page list's read lock.
    ///
    /// ```
    /// use flushwatch::{Config, FlushTracker};
    /// let tracker = FlushTracker::new(Config::default())?;
    /// let other = FlushTracker::<&str>::new(Config::default())?;
    /// let w = tracker.register("a")?;
    /// assert!(tracker.track_hint(w.id()).is_some());
    /// assert!(other.track_hint(w.id()).is_none()); // another tracker's id
    /// drop(w);
    /// # Ok::<(), flushwatch::Error>(())
    /// ```
    #[must_use = "a hint does nothing until its `prefetch` is called"]
    pub fn track_hint(&self, id: ShapeId) -> Option<TrackHint> {
        let pages = crate::sync::read(&self.shared().slab.pages);
        let (page, off) = slot::locate_page(&pages, id.index)?;
        // Checked as `is_live` checks, under the same read lock that finds the page.
        page.slots[off]
            .holds(id)
            .then(|| TrackHint::new(page.slots.clone(), id))
    }

    /// [`track`](FlushTracker::track) by key: keys that are not registered are skipped and
    /// counted in [`Tracked::skipped`]; a key named twice counts once. Takes any borrowed form
    /// of the key, as `HashMap::get` does.
    ///
    /// Linear in the number of keys, however many are unknown or repeated. Locking behaviour:
    /// looks each key up (a `DashMap` shard read lock each) before taking the producer lock.
    /// Allocates small buffers for the ids and the unknown keys.
    ///
    /// ```
    /// use flushwatch::{Config, FlushTracker};
    /// let tracker = FlushTracker::new(Config::default())?;
    /// let _a = tracker.register("a")?;
    /// let t = tracker.track_keys(1, &["a", "gone"])?;
    /// assert_eq!((t.tracked, t.skipped), (1, 1));
    ///
    /// // String keys, looked up by `&str`:
    /// let tracker = FlushTracker::<String>::new(Config::default())?;
    /// let _orders = tracker.register("orders".into())?;
    /// let t = tracker.track_keys(1, ["orders", "users"])?;
    /// assert_eq!((t.tracked, t.skipped), (1, 1));
    /// # Ok::<(), flushwatch::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`track`](FlushTracker::track); nothing changed.
    ///
    /// # Panics
    ///
    /// If the key's `Hash` or `Eq` panics (the panic reaches the caller; nothing changed).
    pub fn track_keys<'a, Q>(
        &self,
        commit: Offset,
        keys: impl IntoIterator<Item = &'a Q>,
    ) -> Result<Tracked, Error>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized + 'a,
    {
        if commit == 0 {
            return Err(Error::ZeroCommit);
        }
        let shared = self.shared();
        let mut ids = Vec::new();
        let mut unknown = 0;
        // Each distinct key is looked up once, so it is counted once even if a concurrent
        // eviction unregisters it between two of its occurrences.
        let mut seen: std::collections::HashSet<&Q> = std::collections::HashSet::new();
        for key in keys {
            if !seen.insert(key) {
                continue;
            }
            match shared.registry.get(key) {
                Some(r) => ids.push(*r.value()),
                None => unknown += 1,
            }
        }
        shared.track_ids(commit, ids, unknown)
    }
}
