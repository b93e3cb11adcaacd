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
//! | `rearm` | scanner | when a stall fires under `StallPolicy::Report` | scanner |
//! | `gen` | register (under the producer lock) | when the slot is given to a new shape | `track` (id check, under the lock), the slot's `Writer` (`id()`) |
//!
//! Every operation on a slot is a method below, the one place its orderings are written:
//! [`Slot::init`] (register), [`Slot::record`] (track: send and raise), [`Slot::report`] and
//! [`Slot::defer`] (the writer), [`Slot::snapshot`] / [`Slot::positions`] /
//! [`Slot::progress_tick`] (readers), [`Slot::cas`], [`Slot::clear_deferred`] and [`Slot::set_rearm`] (the scanner's
//! suspect / answer / stall / evict), [`Slot::end`] and [`Slot::free`] (the ends of a
//! shape). No other file touches a slot's atomics.
//!
//! The shape's flushed position is `max(reported, floor)`: the writer and the producer never
//! write the same word, so neither can lose the other's update. Its last progress is
//! `max(tick, since)` (what `idle` reports), and its stall timer starts at
//! `max(tick, since, rearm)`: a re-arm restarts the stall machine without pretending the shape
//! progressed.
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

use std::time::Duration;

use crate::sync::{AtomicU64, Ordering};
use crate::ShapeStatus;

mod page;
mod word;

pub(crate) use page::*;
pub(crate) use word::*;

/// One shape's slot. See the module docs for who writes which field.
///
/// Alignment, per architecture: 64 bytes on x86_64, where neighbouring 64-byte slots written
/// from two cores were measured not to interfere (`benches/threads.rs`, `threads/neighbours`:
/// 1.06 ns per flush 64 B apart, 1.05 ns 128 B apart, 3.89 ns in the same line; the
/// adjacent-line prefetcher that makes crossbeam pad to 128 bytes did not show on this AMD
/// host); 128 bytes on aarch64 and powerpc64 (128-byte lines on Apple's cores and POWER) and
/// 256 on s390x, as crossbeam-utils' `CachePadded` does, since they were not measured here.
#[cfg_attr(
    any(target_arch = "aarch64", target_arch = "powerpc64"),
    repr(align(128))
)]
#[cfg_attr(target_arch = "s390x", repr(align(256)))]
#[cfg_attr(
    not(any(
        target_arch = "aarch64",
        target_arch = "powerpc64",
        target_arch = "s390x"
    )),
    repr(align(64))
)]
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

    /// What the shape's positions are, as `(reported, flushed, sent)`: the writer's own
    /// report, the flushed position `max(reported, floor)`, and the highest commit sent.
    #[inline]
    pub(crate) fn snapshot(&self) -> (u64, u64, u64) {
        // Acquire: pairs with track's Release store of `sent` (makes its `floor` visible).
        let sent = self.sent.load(Ordering::Acquire);
        // Acquire: pairs with the writer's Release store of `reported` (makes its `tick` visible).
        let reported = self.reported.load(Ordering::Acquire);
        // Relaxed: published by the `sent` load above.
        let floor = self.floor.load(Ordering::Relaxed);
        (reported, reported.max(floor), sent)
    }

    /// The shape's flushed position and its sent position, as `(flushed, sent)`.
    #[inline]
    pub(crate) fn positions(&self) -> (u64, u64) {
        let (_, flushed, sent) = self.snapshot();
        (flushed, sent)
    }

    /// Where the shape's stall timer starts: `max(tick, since, rearm)`, its last progress or
    /// the last re-arm. Call after [`Slot::positions`].
    #[inline]
    pub(crate) fn progress_tick(&self) -> u64 {
        // Relaxed: written only by the scanner, which is the only reader.
        let rearm = self.rearm.load(Ordering::Relaxed);
        self.last_progress().max(rearm)
    }

    /// The shape's last progress: `max(tick, since)` (it became pending, its position moved,
    /// or it deferred), what `idle` is measured from. A re-arm is not progress. Call after
    /// [`Slot::positions`].
    #[inline]
    pub(crate) fn last_progress(&self) -> u64 {
        // Relaxed: published by the `reported` load in `positions`.
        let tick = self.tick.load(Ordering::Relaxed);
        // Relaxed: published by the `sent` load in `positions`.
        let since = self.since.load(Ordering::Relaxed);
        tick.max(since)
    }

    /// The shape's status (`state` already loaded and checked live) at tick `now`.
    pub(crate) fn status<K>(&self, key: K, state: u64, now: u64, last_seen: u64) -> ShapeStatus<K> {
        let (flushed, sent) = self.positions();
        // Never above `sent`: a status racing `track` may read the old `sent` and the floor
        // that track raised for the new one (stored before `sent`, published by it); the
        // clamp gives the shape as it was before that track, caught up at the old `sent`.
        let flushed = flushed.min(sent);
        let pending = flushed < sent;
        let idle = if pending {
            now.saturating_sub(self.last_progress())
        } else {
            0
        };
        ShapeStatus {
            key,
            sent,
            flushed,
            pending,
            idle: Duration::from_nanos(idle),
            suspected: is_suspected(state),
            lag: if pending {
                last_seen.saturating_sub(flushed)
            } else {
                0
            },
        }
    }

    /// The state word, for a decision that depends on it.
    #[inline]
    pub(crate) fn state(&self) -> u64 {
        // Acquire: pairs with register's Release store (the fields are initialised) and with
        // every CAS and swap of the word.
        self.state.load(Ordering::Acquire)
    }

    /// The state word for the hot path, which uses only its phase and suspicion bits.
    #[inline(always)]
    pub(crate) fn state_hint(&self) -> u64 {
        // Relaxed: a stale LIVE means a concurrent eviction, whose outcome (the report is
        // ignored, `is_evicted` true) is allowed; a stale SUSPECTED costs one CAS in `answer`.
        self.state.load(Ordering::Relaxed)
    }

    /// Whether the slot holds `id`'s shape, live: what `is_live` and `track_hint` check. The
    /// full generation too: a slot reassigned since reads a newer one.
    pub(crate) fn holds(&self, id: crate::ShapeId) -> bool {
        let state = self.state();
        is_live(state) && gen32(state) == id.gen as u32 && self.generation() == id.gen
    }

    /// The generation of the shape holding the slot.
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        // Relaxed: written under the producer lock before the slot's writer or any id of this
        // shape existed; it does not change while they are in use.
        self.gen.load(Ordering::Relaxed)
    }

    // --- the producer (`track`, producer lock held) -----------------------------------------

    /// The highest commit sent, as the producer (the only writer of `sent`) knows it.
    #[inline]
    pub(crate) fn sent_by_producer(&self) -> u64 {
        // Relaxed: only `track` stores `sent`, under the producer lock the caller holds.
        self.sent.load(Ordering::Relaxed)
    }

    /// Records `commit` as sent to the shape. A caught-up shape becomes pending with its
    /// flushed position raised to `previous`, the commit tracked before (never `commit - 1`:
    /// positions are sparse), and its pending tick set from `tick`. Returns false when the
    /// shape was already sent `commit` (named twice in one call).
    #[inline]
    pub(crate) fn record(&self, commit: u64, previous: u64, tick: impl FnOnce() -> u64) -> bool {
        // Relaxed: only `track` stores `sent`, and it holds the producer lock.
        let sent = self.sent.load(Ordering::Relaxed);
        if sent == commit {
            return false;
        }
        // Acquire: pairs with the writer's Release store of `reported`.
        let reported = self.reported.load(Ordering::Acquire);
        // Relaxed: only `track` stores `floor`.
        let floor = self.floor.load(Ordering::Relaxed);
        if reported.max(floor) >= sent {
            // Relaxed (both): published by the Release store of `sent` below.
            self.floor.store(previous, Ordering::Relaxed);
            self.since.store(tick(), Ordering::Relaxed);
        }
        // Release: pairs with the Acquire loads of `sent` by the writer and the scanner, which
        // then see the raised `floor` and `since`.
        self.sent.store(commit, Ordering::Release);
        true
    }

    // --- the shape's writer ---------------------------------------------------------------

    /// Stores `position` (clamped to `sent`) if it is progress; returns whether it was. The
    /// hot path: loads of the slot's own line and, on progress, two plain stores.
    #[inline(always)]
    pub(crate) fn report(&self, position: u64, now: impl FnOnce() -> u64) -> bool {
        // Acquire: pairs with track's Release store of `sent`, so the `floor` it raised with
        // it is visible below.
        let sent = self.sent.load(Ordering::Acquire);
        let position = position.min(sent);
        // Relaxed: only this slot's writer stores `reported`.
        let reported = self.reported.load(Ordering::Relaxed);
        // Relaxed: published by the `sent` load above.
        let floor = self.floor.load(Ordering::Relaxed);
        if position <= reported.max(floor) {
            return false;
        }
        // Relaxed: published by the Release store of `reported` below.
        self.tick.store(now(), Ordering::Relaxed);
        // Release: pairs with the scanner's Acquire load of `reported` (the tick comes with it).
        self.reported.store(position, Ordering::Release);
        true
    }

    /// Clears a suspicion and bumps the answer counter, if the shape is still live: after
    /// progress or a `defer`. Exactly one of "answered" and a scanner's stall CAS wins.
    #[cold]
    pub(crate) fn answer(&self) {
        // AcqRel: pairs with the scanner's CASes on `state`.
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |s| {
                is_live(s).then(|| answered(s))
            });
    }

    /// "Alive, deliberately not flushing yet": a fresh tick, the challenge answered, and
    /// `DEFERRED` set, which the scan's words lack (see the state word's layout).
    pub(crate) fn defer(&self, now: u64) {
        // Relaxed: published by the AcqRel update of `state` below.
        self.tick.store(now, Ordering::Relaxed);
        // AcqRel: pairs with the scanner's CASes on `state` and with its `clear_deferred`,
        // whose Acquire makes the tick above visible to the scan that sees the bit.
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |s| {
                is_live(s).then(|| answered(s) | DEFERRED)
            });
    }

    /// Frees the slot (the writer's drop, producer lock held) and returns the word it had: if
    /// that was live, this drop is what ended the shape.
    pub(crate) fn free(&self) -> u64 {
        // AcqRel: pairs with the scanner's and `remove`'s CASes: at most one of them ends a
        // live shape.
        self.state.swap(FREE, Ordering::AcqRel)
    }

    // --- the scanner and `remove` ---------------------------------------------------------

    /// A state change from exactly the word `from`: suspect, answer, stall, evict.
    pub(crate) fn cas(&self, from: u64, to: u64) -> bool {
        // AcqRel: pairs with the writer's `answer` and drop swap and with `remove`'s CAS;
        // whoever changes the word first decides, the other one fails.
        self.state
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Clears `DEFERRED` from the live word of the shape the scan saw as `sw` (which has it),
    /// retrying while the writer changes the word. Returns the word as cleared, the scan's
    /// new view of the state; `None` if the shape is no longer live.
    pub(crate) fn clear_deferred(&self, sw: u64) -> Option<u64> {
        let gen = gen32(sw);
        // AcqRel: pairs with the writer's `defer` (its tick is visible after this) and with
        // every other CAS of `state`.
        match self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (is_live(s) && gen32(s) == gen).then_some(s & !DEFERRED)
            }) {
            Ok(s) => Some(s & !DEFERRED),
            Err(_) => None,
        }
    }

    /// Re-arms a stall under `StallPolicy::Report` at tick `t`: the stall machine starts
    /// over from `t`. Published by the CAS that follows it.
    pub(crate) fn set_rearm(&self, t: u64) {
        // Relaxed: read only by scans, under the scan lock.
        self.rearm.store(t, Ordering::Relaxed);
    }

    /// Starts ending the live shape of generation `gen32` (low 32 bits) for `remove`: LIVE ->
    /// ENDING, inert from here on. Returns the ENDING word, or `None` if the shape is not live
    /// (a scan is evicting it, its writer dropped it, or it is already gone).
    pub(crate) fn end(&self, gen32: u32) -> Option<u64> {
        // Relaxed: the CAS below validates it.
        let mut cur = self.state.load(Ordering::Relaxed);
        while is_live(cur) && self::gen32(cur) == gen32 {
            let ending = with_phase(cur, ENDING);
            // AcqRel: pairs with the scanner's and the writer's CASes on `state`; an eviction,
            // a drop and a removal are mutually exclusive.
            match self
                .state
                .compare_exchange_weak(cur, ending, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Some(ending),
                Err(s) => cur = s,
            }
        }
        None
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_one_cache_line() {
        // Its fields fill 64 bytes; the alignment (per architecture) pads it to a whole line.
        assert_eq!(std::mem::size_of::<Slot>(), std::mem::align_of::<Slot>());
        #[cfg(target_arch = "x86_64")]
        assert_eq!(std::mem::size_of::<Slot>(), 64);
    }
}
