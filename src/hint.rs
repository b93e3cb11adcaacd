//! [`TrackHint`]: a shape's slot named ahead of `track`, so that its cache line can start
//! moving to the producer's core while the producer still parses the transaction.

use std::fmt;

use crate::slot::{in_page, Slot, Slots};
use crate::sync::{prefetch, Arc};
use crate::ShapeId;

/// A shape's slot, named ahead of [`track`](crate::FlushTracker::track): call
/// [`prefetch`](TrackHint::prefetch) when the producer first routes a change to the shape,
/// and the `track` of its commit finds the slot's cache line already on its core.
///
/// Why: a shape's slot is written by its consumer on each flush, usually from another core,
/// and `track` reads it to know whether the shape was caught up. At 100,000 shapes most of
/// `track`'s time is waiting for that one line (`BENCHMARKS.md`, "The tracker's share at
/// 100,000 shapes, and `TrackHint`"). A producer that parses the rows of a transaction before its commit knows
/// each shape it touches a few microseconds before `track` does.
///
/// A hint only: [`prefetch`](TrackHint::prefetch) changes no value, orders nothing and takes no
/// lock. A hint outlives its shape harmlessly (it keeps the slot's page allocated, which the
/// tracker does anyway, and prefetches a line nobody needs); get a new one for a shape
/// registered again. 24 bytes, `Send + Sync`; `prefetch` is a no-op except on x86_64.
///
/// ```
/// use flushwatch::{Config, FlushTracker};
/// let tracker = FlushTracker::new(Config::default())?;
/// let w = tracker.register("orders")?;
/// let hint = w.track_hint(); // or tracker.track_hint(id), from an id alone
/// assert_eq!(hint.id(), w.id());
/// // ...a row for "orders" arrives:
/// hint.prefetch();
/// // ...its commit:
/// assert_eq!(tracker.track(7, &[w.id()])?.tracked, 1);
/// # Ok::<(), flushwatch::Error>(())
/// ```
#[derive(Clone)]
pub struct TrackHint {
    /// The slots of the page holding the shape's slot (as its `Writer` holds them).
    slots: Arc<Slots>,
    id: ShapeId,
}

impl TrackHint {
    pub(crate) fn new(slots: Arc<Slots>, id: ShapeId) -> Self {
        TrackHint { slots, id }
    }

    fn slot(&self) -> &Slot {
        in_page(&self.slots, self.id.index)
    }

    /// Starts moving the shape's slot line into this core's cache, and returns at once.
    #[inline]
    pub fn prefetch(&self) {
        prefetch(self.slot());
    }

    /// The shape this hint was made for.
    pub fn id(&self) -> ShapeId {
        self.id
    }
}

impl fmt::Debug for TrackHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackHint").field("id", &self.id).finish()
    }
}
