//! `Writer`, the consumer's end of one shape: the hot path, and the end of a shape's life.
//!
//! # Ground rules
//!
//! - A writer owns its slot for its whole life: the slot returns to the free list only in the
//!   writer's `Drop`, so a writer's plain stores can never land in another shape's slot and the
//!   hot path needs no generation check (see `slot.rs`, "Slot ownership").
//! - [`Writer::flushed`] takes no lock, allocates nothing, does no hash lookup: a relaxed load
//!   of the state word, the slot's report ([`Slot::report`]), and a CAS only when answering a
//!   challenge. All its orderings are written in `slot.rs`.
//! - The drop holds the producer lock across reading the positions and freeing the slot, so a
//!   concurrent `track` is either counted in the drop's verdict or skips the freed id; it
//!   releases the lock before any map call (the user's `Hash`/`Eq`) or event.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

use crate::core::Shared;
use crate::slot::{self, Slot, Slots};
use crate::sync::{lock, Arc, Ordering};
use crate::{DownCause, Event, Offset, ShapeId};

/// A consumer's end of one shape: it reports what is durable.
///
/// `Writer` is `Send` but not `Sync`: it is owned by one consumer (moved into its thread or
/// task), and only that owner reports through it. This is what lets the hot path use plain
/// stores (a load, a compare, and two stores to the shape's own cache line) instead of a
/// read-modify-write: if two threads could call [`flushed`](Writer::flushed) on one writer
/// at once, the lower of two racing reports could land last and lower the shape's reported
/// position, which the scan assumes only grows. Making the store monotonic under sharing
/// (`fetch_max`, a compare-and-swap loop on x86) would put a locked read-modify-write on every
/// flush of every consumer, measured at 1.1-2.3x the plain-store path (`benches/flush.rs`,
/// `floor_shared` against `floor_checked`; `BENCHMARKS.md`), to serve a sharing no consumer
/// needs. A consumer that fans its work out to several threads reports through the one that
/// knows what is durable (or hands the writer over: it is `Send`).
///
/// Sharing one writer between threads does not compile:
///
/// ```compile_fail,E0277
/// use flushwatch::{Config, FlushTracker};
/// let tracker = FlushTracker::new(Config::default()).unwrap();
/// let writer = tracker.register("orders").unwrap();
/// tracker.track(2, &[writer.id()]).unwrap();
/// std::thread::scope(|s| {
///     s.spawn(|| writer.flushed(2));
///     s.spawn(|| writer.flushed(1));
/// });
/// ```
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
///
/// A writer bound to nothing ends its shape at once, so `Writer` is `#[must_use]`: this does
/// not compile under `#![deny(unused_must_use)]` (it warns by default),
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// # fn main() -> Result<(), flushwatch::Error> {
/// let tracker = flushwatch::FlushTracker::new(flushwatch::Config::default())?;
/// tracker.register("orders")?; // the shape ends here
/// # Ok(())
/// # }
/// ```
///
/// and this, which keeps the writer, does:
///
/// ```
/// #![deny(unused_must_use)]
/// # fn main() -> Result<(), flushwatch::Error> {
/// let tracker = flushwatch::FlushTracker::new(flushwatch::Config::default())?;
/// let _orders = tracker.register("orders")?; // lives until the end of the scope
/// # Ok(())
/// # }
/// ```
#[must_use = "dropping a Writer ends its shape at once"]
pub struct Writer<K> {
    // Kept small (32 bytes for a `u64` key): a consumer holding thousands of writers touches
    // one dense array of them plus one slot line per flush. The slot's address is the page
    // pointer plus an offset, with no further load; the id's generation lives in the slot.
    pub(crate) shared: Arc<Shared<K>>,
    /// The slots of the page holding this writer's slot.
    pub(crate) slots: Arc<Slots>,
    /// The slot's index (the id's index).
    pub(crate) index: u32,
    pub(crate) key: K,
    /// Set by `retire` (and by `register`'s rollback): the drop ends the shape quietly.
    pub(crate) retired: bool,
    /// Not `Sync` (see the type's docs): one owner reports, so plain stores stay monotonic.
    pub(crate) not_sync: PhantomData<Cell<()>>,
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
    /// The writer's slot: its offset from the one id-to-slot arithmetic (`slot::in_page`), a
    /// mask of the index, no bounds check.
    #[inline(always)]
    fn slot(&self) -> &Slot {
        slot::in_page(&self.slots, self.index)
    }

    /// The shape's id, for [`FlushTracker::track`](crate::FlushTracker::track).
    pub fn id(&self) -> ShapeId {
        ShapeId {
            index: self.index,
            gen: self.slot().generation(),
        }
    }

    /// A [`TrackHint`](crate::TrackHint) for this shape, for the producer to
    /// [`prefetch`](crate::TrackHint::prefetch) ahead of `track`: take it with the id when
    /// the shape is registered, before the writer goes to its consumer. An evicted, removed or
    /// retired writer still gives one, whose id `track` skips, as it skips the writer's own.
    ///
    /// ```
    /// use flushwatch::{Config, FlushTracker};
    /// let tracker = FlushTracker::new(Config::default())?;
    /// let w = tracker.register("a")?;
    /// let hint = w.track_hint();
    /// assert_eq!(hint.id(), w.id());
    /// # Ok::<(), flushwatch::Error>(())
    /// ```
    #[must_use = "a hint does nothing until its `prefetch` is called"]
    pub fn track_hint(&self) -> crate::TrackHint {
        crate::TrackHint::new(self.slots.clone(), self.id())
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
    /// positions this consumer has *received*, or [`Tracked::previous`](crate::Tracked::previous) of a commit it
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
        let state = slot.state_hint();
        let now = || self.shared.ticker.recent();
        if state & (slot::PHASE | slot::SUSPECTED) == slot::LIVE {
            slot.report(position, now);
        } else if slot::is_live(state) && slot.report(position, now) {
            slot.answer();
        }
    }

    /// Says "alive, deliberately not flushing yet": refreshes the shape's tick and answers a
    /// challenge, without claiming anything durable. A healthy consumer that sees
    /// [`is_suspected`](Writer::is_suspected) during a long, legitimate pause calls it.
    ///
    /// Not the hot path: one compare-and-swap on the shape's state.
    pub fn defer(&self) {
        self.slot().defer(self.shared.ticker.recent());
    }

    /// Whether the scanner suspects this shape and no progress or `defer` has answered yet.
    pub fn is_suspected(&self) -> bool {
        slot::is_suspected(self.slot().state())
    }

    /// Whether this writer's shape was evicted (a stall) or removed: it is inert now, and its
    /// key is already free (an eviction frees the key before this turns true).
    pub fn is_evicted(&self) -> bool {
        let phase = slot::phase(self.slot().state());
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
        // If the shape was still live, this drop is what ends it; the slot is free from here.
        let prev = slot.free();
        // The key is taken under the producer lock (lock order: producer, then a page's key mutex);
        // the slot cannot be given to a new shape before `release` below anyway.
        let key = slot::locate_page(&producer.pages, self.index)
            .and_then(|(page, off)| page.take_key(off));
        drop(producer); // before any map call or channel send
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
            // Relaxed: a statistic.
            shared.counters.live.fetch_sub(1, Ordering::Relaxed);
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
