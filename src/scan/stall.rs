//! The stall machine: challenge, then act (the crate docs, "Stall detection").
//!
//! # Ground rules
//!
//! - Runs in the scan, under the scan lock, only for pending slots that are suspected or
//!   overdue: out of line and cold, so a healthy slot never gets here.
//! - Every decision is a CAS of the slot's state word from exactly the word the scan saw
//!   (`Slot::cas`). A writer's progress or `defer` that changed the word first makes it
//!   fail: the stall is not decided, the progress is applied. A CAS that wins makes the
//!   writer's later `answer` fail: its report is ignored. Never both.
//! - Eviction is two steps: LIVE -> ENDING (inert, no longer counting), then the key is
//!   freed in the registry, then ENDING -> EVICTED (`is_evicted()` turns true). So whoever
//!   observes the eviction (the writer, the `Stalled` event) finds the key free.
//! - What the machine remembers (the challenges in flight, the last `Stalled` queued per
//!   shape) lives in side maps keyed by slot index, holding only suspected or stalled shapes.

use std::collections::HashMap;
use std::time::Duration;

use crate::core::Shared;
use crate::events::Seq;
use crate::slot::{self, Page};
use crate::sync::Ordering;
use crate::{Event, ScanReport, StallPolicy};

use super::Outcome;

/// A challenge in flight: what the scan that suspected a slot saw.
#[derive(Clone, Copy)]
pub(super) struct Snap {
    /// The state word after the CAS that suspected the slot.
    state: u64,
    /// `reported` when the slot was suspected.
    reported: u64,
    /// Tick of the scan that suspected the slot.
    at: u64,
    /// Low 32 bits of the last scan that saw the challenge (stale entries are purged).
    pub(super) seen: u32,
}

/// What the stall machine keeps between scans.
#[derive(Default)]
pub(super) struct Memory {
    /// Challenges in flight, by slot index.
    pub(super) snaps: HashMap<usize, Snap>,
    /// The last `Stalled` queued for a slot's shape (`StallPolicy::Report`): the low 32 bits
    /// of its generation and the event's sequence number (at most one unread per shape).
    stalls: HashMap<usize, (u32, Seq)>,
}

impl Memory {
    /// Forgets the challenges that this scan (`epoch`) did not see: answered, or ended.
    pub(super) fn purge(&mut self, epoch: u32) {
        if !self.snaps.is_empty() {
            self.snaps.retain(|_, snap| snap.seen == epoch);
        }
    }
}

/// What the scan read from a pending slot that needs the stall machine.
pub(super) struct Seen {
    pub(super) index: usize,
    pub(super) sw: u64,
    pub(super) reported: u64,
    pub(super) flushed: u64,
    pub(super) sent: u64,
    /// Time since the shape's last progress (what events report; a re-arm does not reset it).
    pub(super) idle: u64,
    /// Idle for longer than `grace` since the stall timer started (the last progress, a
    /// re-arm, or on a real clock the scan that saw either).
    pub(super) overdue: bool,
}

/// The stall machine for one pending slot that is suspected or overdue, at scan `epoch` and
/// tick `t`. [`Outcome::Leaves`] when it evicted the shape (it no longer counts).
#[cold]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub(super) fn attend<K>(
    shared: &Shared<K>,
    memory: &mut Memory,
    #[cfg(feature = "tracing")] log: &mut crate::log::Limiter,
    page: &Page<K>,
    seen: Seen,
    t: u64,
    epoch: u32,
    report: &mut ScanReport<K>,
) -> Outcome
where
    K: crate::ShapeKey,
{
    let Seen {
        index,
        sw,
        reported,
        idle,
        overdue,
        ..
    } = seen;
    let off = slot::place(index).1;
    let slot = &page.slots[off];
    // A challenge that starts now, from state word `state`.
    let challenge = |state| Snap {
        state,
        reported,
        at: t,
        seen: epoch,
    };
    if !slot::is_suspected(sw) {
        if overdue {
            if let Some(key) = page.key(off) {
                let to = sw | slot::SUSPECTED;
                if slot.cas(sw, to) {
                    memory.snaps.insert(index, challenge(to));
                    shared.events.info(Event::Suspected {
                        key: key.clone(),
                        idle: Duration::from_nanos(idle),
                    });
                    report.suspected.push(key);
                    return Outcome::Pending { suspected: true };
                }
            }
        }
        return Outcome::Pending { suspected: false };
    }
    let Some(snap) = memory.snaps.get_mut(&index).filter(|s| s.state == sw) else {
        // Suspected by a scan whose record was lost (it panicked): restart the challenge.
        memory.snaps.insert(index, challenge(sw));
        return Outcome::Pending { suspected: true };
    };
    snap.seen = epoch;
    if reported != snap.reported {
        // Progress by a writer that read the state before it was suspected.
        let answered = slot.cas(sw, slot::answered(sw));
        return Outcome::Pending {
            suspected: !answered,
        };
    }
    if !(overdue && t.saturating_sub(snap.at) > shared.challenge) {
        return Outcome::Pending { suspected: true };
    }
    let Some(key) = page.key(off) else {
        return Outcome::Pending { suspected: true };
    };
    // The event's copy of the key, made before anything is decided: a `Clone` that panics
    // here leaves the shape as it was (still suspected; the next scan tries again), never
    // stalled or evicted without its `Stalled`. Nothing after the decision calls user code
    // that can panic, except `Hash`/`Eq` in the registry, which are caught.
    let event_key = key.clone();
    let evict = shared.policy == StallPolicy::Evict;
    let gen = slot::gen32(sw);
    if evict {
        // Not yet EVICTED: `is_evicted()` turns true only once the key is free.
        let evicting = slot::with_phase(sw, slot::ENDING);
        if !slot.cas(sw, evicting) {
            return Outcome::Pending { suspected: true };
        }
        // Relaxed: a statistic.
        shared.counters.live.fetch_sub(1, Ordering::Relaxed);
        // Free the key before the eviction is observable. A panic in the user's `Hash`/`Eq`
        // must not leave the slot half evicted.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            shared.registry.remove_if(&key, |_, id| {
                id.index as usize == index && id.gen as u32 == gen
            })
        }));
        // Fails only if the writer was dropped meanwhile (FREE): nothing left to mark.
        slot.cas(evicting, slot::with_phase(sw, slot::EVICTED));
    } else {
        slot.set_rearm(t);
        if !slot.cas(sw, slot::answered(sw)) {
            return Outcome::Pending { suspected: true };
        }
    }
    let previous = match memory.stalls.get(&index) {
        Some(&(g, seq)) if !evict && g == gen => Some(seq),
        _ => None,
    };
    let seq = on_stall(shared, event_key, &seen, evict, previous);
    if !evict {
        memory.stalls.insert(index, (gen, seq));
    }
    // After the event: the user's `Debug` runs here.
    #[cfg(feature = "tracing")]
    log.stalled(&key, idle, seen.flushed, seen.sent, evict);
    report.stalled.push(key);
    if evict {
        Outcome::Leaves
    } else {
        Outcome::Pending { suspected: false }
    }
}

/// Counts a stall and queues its event (an action event: never dropped), unless `previous`,
/// the shape's last `Stalled`, is still unread. Returns the sequence number of the unread one.
fn on_stall<K>(
    shared: &Shared<K>,
    key: K,
    seen: &Seen,
    evicted: bool,
    previous: Option<Seq>,
) -> Seq {
    let c = &shared.counters;
    // Relaxed (both): statistics.
    c.stalled.fetch_add(1, Ordering::Relaxed);
    if evicted {
        c.evicted.fetch_add(1, Ordering::Relaxed);
    }
    let event = Event::Stalled {
        key,
        idle: Duration::from_nanos(seen.idle),
        flushed: seen.flushed,
        sent: seen.sent,
        evicted,
    };
    shared.events.stalled(event, previous)
}
