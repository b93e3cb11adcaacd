//! The slots' pages: where slot `index` lives, and the page that holds it with its shapes'
//! keys. No atomics of its own (a slot's are in `slot.rs`); the keys sit behind one lock per
//! page, taken on cold paths only (`register`, a writer's drop, events).

use super::Slot;
use crate::sync::{Arc, Mutex};

// --- pages ------------------------------------------------------------------------------
//
// Slots live in pages of `PAGE` that never move, each one contiguous run of slots with the
// page's keys in a separate allocation: a scan over many pending shapes walks memory in order
// and the hardware prefetcher follows it (with 64-slot pages interleaved with their keys it did
// not: `BENCHMARKS.md`, "Pages"). The size is fixed so that a slot's address is the page
// pointer plus an offset masked from the index, with no bounds check and no further load on
// the hot path; a tracker with one shape holds one page (64 KiB of slots, plus the keys).

/// Slots per page. Small under loom, so models allocate few atomics.
#[cfg(not(loom))]
pub(crate) const PAGE: usize = 1024;
#[cfg(loom)]
pub(crate) const PAGE: usize = 2;

/// Where slot `index` lives: `(page, offset in the page)`.
#[inline]
pub(crate) const fn place(index: usize) -> (usize, usize) {
    (index / PAGE, index % PAGE)
}

/// The slots of one page.
pub(crate) type Slots = [Slot; PAGE];

/// The one id-to-slot lookup: the page holding slot `index` in a page list, and the slot's
/// offset in it.
#[inline]
pub(crate) fn locate_page<K>(pages: &[Page<K>], index: u32) -> Option<(&Page<K>, usize)> {
    let (k, off) = place(index as usize);
    pages.get(k).map(|page| (page, off))
}

/// Slot `index` in the page that holds it (a `Writer`'s or a `TrackHint`'s): the page
/// offset masked from the index, no bounds check.
#[inline(always)]
pub(crate) fn in_page(slots: &Slots, index: u32) -> &Slot {
    &slots[place(index as usize).1]
}

/// Slot `index` in a page list (see [`locate_page`]).
#[inline]
pub(crate) fn locate<K>(pages: &[Page<K>], index: u32) -> Option<&Slot> {
    locate_page(pages, index).map(|(page, off)| &page.slots[off])
}

/// A page: its slots, and the keys of the shapes in them (cold: read on events only), in two
/// allocations, so that the slots of a page are one contiguous run. Cloning shares both.
pub(crate) struct Page<K> {
    /// The slots; a `Writer` holds this `Arc` and reaches its slot with no further load.
    pub(crate) slots: Arc<Slots>,
    /// The keys, one lock for the page: they are touched only by `register`, a writer's
    /// drop, and events (8 bytes per shape less than a lock per key).
    pub(crate) keys: Arc<Mutex<Vec<Option<K>>>>,
}

impl<K> Clone for Page<K> {
    fn clone(&self) -> Self {
        Page {
            slots: self.slots.clone(),
            keys: self.keys.clone(),
        }
    }
}

impl<K> Page<K> {
    /// The key of the shape in slot `off` (cloned), if any. Read before a CAS that validates
    /// it: a slot cannot be reassigned without its generation changing, so a CAS that
    /// succeeds proves the key right.
    pub(crate) fn key(&self, off: usize) -> Option<K>
    where
        K: Clone,
    {
        crate::sync::lock(&self.keys)[off].clone()
    }

    /// Stores the key of a new shape in slot `off` (producer lock held).
    pub(crate) fn set_key(&self, off: usize, key: K) {
        crate::sync::lock(&self.keys)[off] = Some(key);
    }

    /// Takes the key out of slot `off` (its writer's drop).
    pub(crate) fn take_key(&self, off: usize) -> Option<K> {
        crate::sync::lock(&self.keys)[off].take()
    }

    /// A page, every slot free. Built in place on the heap (no page-sized value on the stack).
    pub(crate) fn new() -> Self {
        Page {
            slots: crate::sync::shared_array(Slot::new),
            keys: Arc::new(Mutex::new((0..PAGE).map(|_| None).collect())),
        }
    }
}
