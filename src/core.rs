//! The shared core: what the tracker handles, the writers and the scanner thread share, and
//! the producer's algorithm (`track`).
//!
//! # Ground rules
//!
//! - `producer` (a mutex) serialises `track`, slot assignment (`register`) and a writer's drop.
//!   It guards the producer's page list, `last_seen`'s authoritative copy and the producer's
//!   half of the pending set. It is never held across a map call, a callback or an event.
//! - `last_seen` (the published copy) is written only by `track`, with `Release`, after every
//!   slot of the commit; a scan reads it with `Acquire` before any slot.
//! - `registry` (key -> id) is a `DashMap` used on cold paths only, no guard of it held across
//!   another call.
//! - The counters (`counters.rs`) are statistics (`Relaxed`), except `live`, which is exact when
//!   nothing races.

use std::hash::Hash;
use std::time::Duration;

use crossbeam_utils::CachePadded;
use dashmap::DashMap;

use crate::clock::Ticker;
use crate::counters::Counters;
use crate::events::Queue;
use crate::registry::{Producer, Slab};
use crate::slot::{self, Page, Slot};
use crate::sync::{lock, AtomicBool, AtomicU64, Mutex, Ordering};
use crate::watermark::Watermark;
use crate::{Error, Offset, ShapeId, ShapeStatus, StallPolicy, Tracked};

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
    pub(crate) pinned: Mutex<Option<ShapeStatus<K>>>,
    pub(crate) events: Queue<K>,
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

pub(crate) fn unregister<K: Hash + Eq>(registry: &DashMap<K, ShapeId>, key: &K, id: ShapeId) {
    registry.remove_if(key, |_, current| *current == id);
}

impl<K> Shared<K> {
    /// The slot of `id` if the id names a live shape of this tracker (producer lock held:
    /// the only place slots get a new generation). Generations are unique in the process,
    /// so an id made by another tracker never matches.
    fn live_slot(pages: &[Page<K>], id: ShapeId) -> Option<&Slot> {
        let slot = slot::locate(pages, id.index)?;
        // A shape ending concurrently is a race the caller tolerates: its stores land in a
        // slot that no longer counts and is not reassigned while the producer lock is held.
        (slot.generation() == id.gen && slot::is_live(slot.state_hint())).then_some(slot)
    }

    /// Whether `id` names a live shape: what `status` and `register` agree on. Once a shape
    /// is ending (removed, evicted, its writer dropped) this is false, before its key leaves
    /// the registry, and it never turns true again. Takes the page list's read lock.
    pub(crate) fn is_live(&self, id: ShapeId) -> bool {
        self.slab
            .with_slot(id.index, |slot| slot.holds(id))
            .unwrap_or(false)
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
        let previous = producer.last_seen;
        let Producer {
            pages,
            skipped,
            pending,
            ..
        } = &mut *producer;
        skipped.clear();
        let mut tracked = 0;
        let mut now = None;
        for id in ids {
            let Some(slot) = Self::live_slot(pages, id) else {
                // Named earlier in this call and recorded, then ended by a concurrent eviction
                // or drop: it counts once, as tracked.
                let recorded = slot::locate(pages, id.index)
                    .is_some_and(|s| s.generation() == id.gen && s.sent_by_producer() == commit);
                if !recorded {
                    skipped.push(id);
                }
                continue;
            };
            // A caught-up shape is raised to `previous`: it was durable for everything sent
            // before, and the commits in between did not touch it.
            if !slot.record(commit, previous, || {
                *now.get_or_insert_with(|| self.ticker.pending_tick())
            }) {
                continue; // named twice in this call
            }
            // The shape is pending: make sure the scan visits it.
            pending.list(id.index);
            tracked += 1;
        }
        skipped.sort_unstable();
        skipped.dedup();
        skipped_extra += skipped.len();
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
