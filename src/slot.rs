//! The per-shape slot: its fields, who writes each, the orderings and why.
//!
//! # Ground rules
//!
//! A slot is eight `AtomicU64` in one 64-byte, 64-byte-aligned block, so no two shapes share a
//! cache line. Every field has exactly one writer at a time, except `state`, which only ever
//! changes by compare-and-swap or swap:
//!
//! | field | written by | when | read by |
//! | --- | --- | --- | --- |
//! | `state` | register (store), scanner (CAS), writer `defer`/drop (CAS/swap), `remove` (CAS) | on a state change only | everyone |
//! | `sent` | producer (`track`, under the producer lock) | each commit for the shape | writer (clamp), scanner |
//! | `floor` | producer | when a commit makes a caught-up shape pending (the previous commit) | writer, scanner |
//! | `since` | producer | when the shape becomes pending | scanner |
//! | `reported` | the shape's `Writer` | each report that is progress | scanner, producer |
//! | `tick` | the shape's `Writer` | with each progress and each `defer` | scanner |
//! | `rearm` | scanner | when a stall fires under `StallPolicy::Report` | scanner, `status` |
//! | `gen` | register (under the producer lock) | when the slot is given to a new shape | `track` (id check, under the lock), the slot's `Writer` (`id()`) |
//!
//! The shape's flushed position is `max(reported, floor)`: the writer and the producer never
//! write the same word, so neither can lose the other's update. Its progress tick is
//! `max(tick, since, rearm)`.
//!
//! Publication order (the pairs every ordering comment refers to):
//! - `track` stores `floor` and `since` (`Relaxed`), then `sent` (`Release`), and after all
//!   shapes of the commit, `last_seen` (`Release`). A reader that `Acquire`-loads `sent` sees the
//!   `floor` of that commit; a scan that `Acquire`-loads `last_seen` sees every `sent` up to it.
//! - The writer stores `tick` (`Relaxed`), then `reported` (`Release`); the scanner
//!   `Acquire`-loads `reported` before `tick`, so a new position never comes with an old tick.
//! - `register` initialises every field (`Relaxed`), then stores `state` (`Release`); a scan
//!   `Acquire`-loads `state` first.
//!
//! A stale reader only ever sees *lower* positions (every position field only grows within
//! one shape's life), which can only lower the watermark, never raise it.
//!
//! # Slot ownership and ABA
//!
//! A slot is owned by its [`Writer`](crate::Writer) for the writer's whole life: it returns to
//! the free list only in the writer's `Drop`, so a writer's plain stores can never land in
//! another shape's slot, and the hot path needs no generation check. A [`ShapeId`](crate::ShapeId)
//! carries a 64-bit generation that `track` checks under the producer lock, the only place a
//! slot is reassigned, so a stale id can never touch a later shape.

use crate::sync::{AtomicU64, Mutex, Ordering};

/// Slots per page. Small under loom, so models allocate few atomics.
#[cfg(not(loom))]
pub(crate) const PAGE: usize = 64;
#[cfg(loom)]
pub(crate) const PAGE: usize = 2;

// --- the state word -------------------------------------------------------------------------
//
// bits 0..4   phase
// bit  4      SUSPECTED (only with LIVE)
// bits 8..32  counter: bumped by `defer` and by clearing a suspicion, so that a CAS by the
//             scanner that expected the word it saw at suspicion fails if anything answered
// bits 32..64 low 32 bits of the slot's generation

/// Mask of the phase bits.
pub(crate) const PHASE: u64 = 0xF;
/// Free: on the free list, or being initialised.
pub(crate) const FREE: u64 = 0;
/// Registered and counting.
pub(crate) const LIVE: u64 = 1;
/// Stalled and evicted by the scanner; the writer still exists and is inert.
pub(crate) const EVICTED: u64 = 2;
/// Removed by `FlushTracker::remove`; the writer still exists and is inert.
pub(crate) const REMOVED: u64 = 3;
/// Stalled and being evicted: no longer counting and inert, but its key is not free yet, so
/// `is_evicted()` stays false until the scanner has freed the key and stored `EVICTED`.
pub(crate) const EVICTING: u64 = 4;
/// Suspected by the scanner and not answered yet.
pub(crate) const SUSPECTED: u64 = 0x10;
const COUNTER_SHIFT: u32 = 8;
const COUNTER_MASK: u64 = 0xFF_FFFF << COUNTER_SHIFT;

/// The phase of a state word.
#[inline]
pub(crate) const fn phase(s: u64) -> u64 {
    s & PHASE
}

/// Whether a state word is `LIVE` (suspected or not).
#[inline]
pub(crate) const fn is_live(s: u64) -> bool {
    phase(s) == LIVE
}

/// Whether a state word is `LIVE` and suspected.
#[inline]
pub(crate) const fn is_suspected(s: u64) -> bool {
    s & (PHASE | SUSPECTED) == LIVE | SUSPECTED
}

/// The answer counter of a state word (bumped by every `defer` and answered challenge).
#[inline]
pub(crate) const fn counter(s: u64) -> u32 {
    ((s & COUNTER_MASK) >> COUNTER_SHIFT) as u32
}

/// The low 32 bits of the generation in a state word.
#[inline]
pub(crate) const fn gen32(s: u64) -> u32 {
    (s >> 32) as u32
}

/// A fresh `LIVE` word for generation `gen`.
#[inline]
pub(crate) const fn live_word(gen: u64) -> u64 {
    (gen << 32) | LIVE
}

/// `s` with its phase replaced (suspicion cleared); generation and counter kept.
#[inline]
pub(crate) const fn with_phase(s: u64, phase: u64) -> u64 {
    (s & !(PHASE | SUSPECTED)) | phase
}

/// `s` with its suspicion cleared and its counter bumped (wrapping within its 24 bits).
#[inline]
pub(crate) const fn answered(s: u64) -> u64 {
    let counter = ((s & COUNTER_MASK) + (1 << COUNTER_SHIFT)) & COUNTER_MASK;
    (s & !(COUNTER_MASK | SUSPECTED)) | counter
}

/// One shape's slot. See the module docs for who writes which field.
#[repr(align(64))]
pub(crate) struct Slot {
    pub(crate) state: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) floor: AtomicU64,
    pub(crate) since: AtomicU64,
    pub(crate) reported: AtomicU64,
    pub(crate) tick: AtomicU64,
    pub(crate) rearm: AtomicU64,
    /// The full 64-bit generation (the state word holds only its low 32 bits).
    pub(crate) gen: AtomicU64,
}

impl Slot {
    fn new() -> Self {
        Slot {
            state: AtomicU64::new(FREE),
            sent: AtomicU64::new(0),
            floor: AtomicU64::new(0),
            since: AtomicU64::new(0),
            reported: AtomicU64::new(0),
            tick: AtomicU64::new(0),
            rearm: AtomicU64::new(0),
            gen: AtomicU64::new(0),
        }
    }

    /// Gives a free slot to a new shape (producer lock held: nobody else writes the slot now;
    /// the old writer is gone, stale ids fail the generation check). Returns the generation.
    pub(crate) fn init(&self, now: u64) -> u64 {
        let gen = crate::sync::next_generation();
        // Relaxed: `gen` is only written under the producer lock; the slot's next writer, which
        // reads it in `id()`, is created after this and handed over by the caller.
        self.gen.store(gen, Ordering::Relaxed);
        // Relaxed (all five): published by the Release store of `state` below.
        self.sent.store(0, Ordering::Relaxed);
        self.floor.store(0, Ordering::Relaxed);
        self.since.store(now, Ordering::Relaxed);
        self.reported.store(0, Ordering::Relaxed);
        self.tick.store(now, Ordering::Relaxed);
        // Relaxed: as above.
        self.rearm.store(0, Ordering::Relaxed);
        // Release: pairs with the Acquire load of `state` that starts each slot visit of a scan.
        self.state.store(live_word(gen), Ordering::Release);
        gen
    }

    /// The shape's flushed position and its sent position, as `(flushed, sent)`.
    #[inline]
    pub(crate) fn positions(&self) -> (u64, u64) {
        // Acquire: pairs with track's Release store of `sent` (makes its `floor` visible).
        let sent = self.sent.load(Ordering::Acquire);
        // Acquire: pairs with the writer's Release store of `reported` (makes its `tick` visible).
        let reported = self.reported.load(Ordering::Acquire);
        // Relaxed: published by the `sent` load above.
        let floor = self.floor.load(Ordering::Relaxed);
        (reported.max(floor), sent)
    }

    /// The shape's progress tick: `max(tick, since, rearm)`. Call after [`Slot::positions`].
    #[inline]
    pub(crate) fn progress_tick(&self) -> u64 {
        // Relaxed: published by the `reported` load in `positions`.
        let tick = self.tick.load(Ordering::Relaxed);
        // Relaxed: published by the `sent` load in `positions`.
        let since = self.since.load(Ordering::Relaxed);
        // Relaxed: written only by the scanner; read here by the scanner or for `status`.
        let rearm = self.rearm.load(Ordering::Relaxed);
        tick.max(since).max(rearm)
    }
}

/// A page of slots, and the keys of the shapes in them (cold: read on events only).
pub(crate) struct Page<K> {
    pub(crate) slots: [Slot; PAGE],
    pub(crate) keys: [Mutex<Option<K>>; PAGE],
}

impl<K> Page<K> {
    pub(crate) fn new() -> Self {
        Page {
            slots: std::array::from_fn(|_| Slot::new()),
            keys: std::array::from_fn(|_| Mutex::new(None)),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Slot>(), 64);
        assert_eq!(std::mem::align_of::<Slot>(), 64);
    }

    #[test]
    fn state_word_round_trips() {
        let w = live_word(7);
        assert!(is_live(w));
        assert!(!is_suspected(w));
        assert_eq!(gen32(w), 7);
        let s = w | SUSPECTED;
        assert!(is_suspected(s));
        let a = answered(s);
        assert!(is_live(a) && !is_suspected(a));
        assert_ne!(a, w, "answering bumps the counter");
        assert_eq!(gen32(a), 7);
        assert_eq!(phase(with_phase(s, EVICTED)), EVICTED);
        assert!(!is_suspected(with_phase(s, EVICTED)));
        // The counter wraps inside its bits and never touches the generation.
        let x = answered(w | COUNTER_MASK);
        assert_eq!(x & COUNTER_MASK, 0);
        assert_eq!(gen32(x), 7);
        assert!(is_live(x));
    }
}
