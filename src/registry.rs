//! The cold path: key -> id map, slot allocation, and the producer's serialised state.
//!
//! Ground rules:
//! - `registry` (a `DashMap<K, ShapeId>`) maps each registered key to its current id. No
//!   guard of it is ever held across another map call, a lock, a callback or a channel send.
//! - `producer` serialises `track` and slot (re)assignment. It is the only place a slot gets a
//!   new generation (the slot's `gen` word is only touched under it), so a `track` that validated an id under it writes to that very shape.
//! - `pages` only grows; a page never moves or goes away while the tracker or a writer lives.
//! - `free` holds slots whose writer is gone. Only a writer's drop pushes a slot (see
//!   `slot.rs`, "Slot ownership"); only `register` pops one, under `producer`.
//!
//! Lock order: `scan` -> `producer` -> `pages` -> `free` -> a page's key mutex. `registry`
//! shard locks are taken alone.

use crate::pending::Listed;
use crate::slot::{self, Page, Slot, Slots};
use crate::sync::{lock, read, write, Arc, Mutex, RwLock};
use crate::ShapeId;

/// State only `track` and `register` touch, under the producer lock.
pub(crate) struct Producer<K> {
    /// The highest commit tracked (the authoritative copy; `Shared::last_seen` publishes it).
    pub(crate) last_seen: u64,
    /// Slots created so far (the next new index).
    pub(crate) slots: usize,
    /// Scratch for counting distinct skipped ids without allocating in steady state.
    pub(crate) skipped: Vec<ShapeId>,
    /// The producer's own copy of the page list (it is the only one that grows it), so that
    /// `track` finds slots without touching the shared `pages` lock.
    pub(crate) pages: Vec<Page<K>>,
    /// The producer's half of the pending set (see `pending.rs`).
    pub(crate) pending: Listed,
}

impl<K> Producer<K> {
    pub(crate) fn new(last_seen: u64) -> Self {
        Producer {
            last_seen,
            slots: 0,
            skipped: Vec::new(),
            pages: Vec::new(),
            pending: Listed::default(),
        }
    }
}

/// Slot storage: pages, plus the free list.
pub(crate) struct Slab<K> {
    pub(crate) pages: RwLock<Vec<Page<K>>>,
    pub(crate) free: Mutex<Vec<u32>>,
}

impl<K> Slab<K> {
    pub(crate) fn new() -> Self {
        Slab {
            pages: RwLock::new(Vec::new()),
            free: Mutex::new(Vec::new()),
        }
    }

    /// Takes a slot for a new shape (producer lock held by the caller, who passes its state).
    /// Returns its id and the slots of its page; the slot is initialised and `LIVE`, with `key`
    /// stored.
    pub(crate) fn assign(
        &self,
        producer: &mut Producer<K>,
        key: K,
        now: u64,
    ) -> (ShapeId, Arc<Slots>) {
        let reused = lock(&self.free).pop();
        let index = match reused {
            Some(i) => i as usize,
            None => {
                let index = producer.slots;
                producer.slots += 1;
                if slot::place(index).1 == 0 {
                    let page = Page::new();
                    producer.pages.push(page.clone());
                    write(&self.pages).push(page);
                }
                index
            }
        };
        let (k, off) = slot::place(index);
        let page = &producer.pages[k];
        page.set_key(off, key);
        let gen = page.slots[off].init(now);
        let index = u32::try_from(index).expect("more than 2^32 shapes registered at once");
        (ShapeId { index, gen }, page.slots.clone())
    }

    /// Runs `f` on slot `index` (the page list's read lock held), if the slot exists.
    pub(crate) fn with_slot<R>(&self, index: u32, f: impl FnOnce(&Slot) -> R) -> Option<R> {
        slot::locate(&read(&self.pages), index).map(f)
    }

    /// Returns a slot whose writer is gone to the free list.
    pub(crate) fn release(&self, index: u32) {
        lock(&self.free).push(index);
    }
}
