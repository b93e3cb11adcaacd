//! One scan: the watermark, the stall machine and the lagging classifier over the pending set.
//!
//! # Ground rules
//!
//! - A scan holds the scan lock (the `Mutex<ScanState>`) for its whole pass; everything in
//!   [`ScanState`] is private to it and needs no atomics.
//! - Order: read `last_seen` (`Acquire`, pairs with `track`'s `Release`), *then* take the slots
//!   `track` listed ([`gather`], producer lock, see `pending.rs`), then visit each slot of the
//!   set once (`Slot::state`, then `Slot::snapshot`, then, in a full visit, the ticks). A scan
//!   that read the state of the slots before `last_seen` could publish a watermark past
//!   undurable data.
//! - Most visits are *steady* (see [`Rec`]): the slot's state word and flushed position are as
//!   the previous visit left them, the shape is still pending and its deadline not reached;
//!   such a visit reads 32 bytes of its record and the slot's line, counts the shape in the
//!   watermark and writes nothing. Everything else is a full [`visit`].
//! - It writes to a slot only when the slot changes state (suspected, answered, stalled,
//!   re-armed; see `stall.rs`): healthy slots are only read, so the scanner never steals their
//!   cache lines.
//! - Slots seen caught up or ended leave the set at the end ([`prune`], producer lock).
//! - Idleness on a real clock is judged by an upper bound of the progress time (see
//!   [`Cold::seen`] and the crate docs, "Ticks"); on a mock clock the stored ticks are exact.
//!
//! The passes, each in its own place: [`gather`]; the loop in [`scan`] (the watermark, and
//! the steady test); [`visit`] for the entries that changed; [`stall::attend`] for the few
//! suspected or overdue slots; [`lag::classify`]; [`prune`]; publication.

mod lag;
mod stall;

use std::time::Instant;

use crate::core::Shared;
use crate::slot::{self, Page};
use crate::sync::{lock, prefetch, Mutex, Ordering};
use crate::{Event, ScanReport};

/// What a scan remembers of one pending slot between scans, in two parts: [`Rec`], which
/// every visit reads (32 bytes), and [`Cold`], which only a full visit reads (12 bytes), kept
/// in parallel vectors. Every entry of the set is visited by every scan, so a record written
/// by one scan is read by the next (the previous sample's lag is
/// `prev_last_seen - flushed_prev`).
///
/// The steady test: a visit that finds the slot's state word and flushed position as the
/// previous visit left them, the shape still pending, and the tick below [`Rec::deadline`],
/// only counts the shape in the watermark; it writes nothing. Anything else takes the full
/// visit, which sets `deadline` to 0 whenever the next visit must be full too.
#[derive(Clone, Copy)]
pub(super) struct Rec {
    /// The flushed position at the previous visit.
    flushed_prev: u64,
    /// The state word at the previous visit: its generation, its answer counter (a `defer`
    /// bumps it), its phase and suspicion.
    sw: u64,
    /// A visit at a tick below this, with nothing changed, finds the shape not overdue and
    /// nothing else to do; 0 when the next visit must be full (a new entry, a suspicion, a
    /// progress not dated yet, a lag run that may be reported).
    deadline: u64,
    /// The slot's index.
    index: u32,
    /// The lag classifier's flags (bits 24..28) and `BROKEN` (bit 31).
    bits: u32,
}

/// The part of a pending-set entry that only a full visit reads. Packed to 12 bytes (its
/// fields are only read and written by value).
#[derive(Clone, Copy)]
#[repr(C, packed(4))]
pub(super) struct Cold {
    /// Real clocks: an upper bound of the time of the shape's last progress (`UNSEEN`: the
    /// progress was first seen by the previous scan, whose end time bounds it).
    seen: u64,
    /// The scan that started the current run of non-decreasing lag (`lag.rs`).
    run_start: u32,
}

/// [`Rec::bits`]: the previous scan did not see this shape pending (a new entry, or one seen
/// caught up): the record starts anew at the next pending visit.
const BROKEN: u32 = 1 << 31;
const FLAGS_SHIFT: u32 = 24;

impl Rec {
    /// The record of an entry that just joined the set.
    const fn new(index: u32) -> Rec {
        Rec {
            flushed_prev: 0,
            sw: 0,
            deadline: 0,
            index,
            bits: BROKEN,
        }
    }

    /// The lag classifier's flags.
    fn flags(&self) -> u32 {
        (self.bits >> FLAGS_SHIFT) & 0xF
    }

    fn set_flags(&mut self, flags: u32) {
        self.bits = (self.bits & !(0xF << FLAGS_SHIFT)) | (flags << FLAGS_SHIFT);
    }
}

impl Cold {
    const NEW: Cold = Cold {
        seen: UNSEEN,
        run_start: 0,
    };
}

/// [`Cold::seen`]: progress first seen by the previous scan.
const UNSEEN: u64 = u64::MAX;

/// How many entries ahead of its visit a scan prefetches a slot line, in a set of at least
/// [`PREFETCH_FROM`] entries (`BENCHMARKS.md`, "Cold scan": 4, 8, 16, 32 and 64 measured; a
/// smaller set's lines stay in the caches, where the prefetch only costs instructions).
const AHEAD: usize = 16;
const PREFETCH_FROM: usize = 4096;

/// The scanner's private state (behind the scan lock).
pub(crate) struct ScanState<K> {
    /// The scanner's half of the pending set (see `pending.rs`): the slots a scan visits.
    set: Vec<Rec>,
    /// `cold[i]` goes with `set[i]`.
    cold: Vec<Cold>,
    /// Scratch: positions in `set` seen caught up or ended.
    leaving: Vec<usize>,
    /// The stall machine's memory (`stall.rs`).
    stalls: stall::Memory,
    /// The clock at the end of the previous scan: an upper bound of the time of any progress
    /// that scan saw.
    prev_end: u64,
    /// Whether the previous scan ran to its end (and set `prev_end`), not stopped by a panic
    /// (a user's `Clone`, say).
    completed: bool,
    /// `last_seen` as the previous scan read it (the lag of its samples).
    prev_last_seen: u64,
    /// Scans started so far (wrapping); numbers the records.
    epoch: u32,
    /// The pages this scanner knows; refreshed when the slab grew.
    pages: Vec<Page<K>>,
    /// The published watermark (the authoritative copy).
    published: u64,
    #[cfg(feature = "tracing")]
    log: crate::log::Limiter,
}

impl<K> ScanState<K> {
    pub(crate) fn new(start_at: u64) -> Self {
        ScanState {
            set: Vec::new(),
            cold: Vec::new(),
            leaving: Vec::new(),
            stalls: stall::Memory::default(),
            prev_end: 0,
            completed: true,
            prev_last_seen: 0,
            epoch: 0,
            pages: Vec::new(),
            published: start_at,
            #[cfg(feature = "tracing")]
            log: crate::log::Limiter::default(),
        }
    }
}

/// Takes the slots `track` listed since the last scan into the set, and the pages they live in,
/// under the producer lock (no scratch copy: the producer's list is drained in place; a
/// `track` waits for this loop, a few nanoseconds per newly listed slot).
fn gather<K>(shared: &Shared<K>, st: &mut ScanState<K>) {
    let mut producer = lock(&shared.producer);
    let producer = &mut *producer;
    // The producer's own page list holds every listed slot's page.
    if st.pages.len() < producer.pages.len() {
        let known = st.pages.len();
        st.pages.extend(producer.pages[known..].iter().cloned());
    }
    let incoming = producer.pending.incoming();
    // Grow the set by what arrived, at least an eighth, not by doubling: one `track` of every
    // shape fills it once, without a third of it left empty (44 bytes per slack entry).
    let room = st.set.capacity() - st.set.len();
    if incoming.len() > room {
        let grow = incoming.len().max(st.set.len() / 8);
        st.set.reserve_exact(grow);
        st.cold.reserve_exact(grow);
    }
    // No slot is in the set twice: `track` lists a slot only when it is not listed, and
    // `prune` unlists a slot in the same critical section that takes it out of the set
    // (`pending.rs`). (A mutation that skipped a duplicate check here survived every suite:
    // there are no duplicates to skip.)
    for index in incoming.drain(..) {
        st.set.push(Rec::new(index));
        st.cold.push(Cold::NEW);
    }
}

/// Drops from the set the slots this scan saw caught up or ended, each only if the producer
/// lock proves it still is: then no `track` can make it pending without listing it again.
fn prune<K>(shared: &Shared<K>, st: &mut ScanState<K>) {
    if st.leaving.is_empty() {
        return;
    }
    let ScanState {
        set,
        cold,
        leaving,
        pages,
        ..
    } = st;
    let mut producer = lock(&shared.producer);
    // Descending, so that each `swap_remove` moves an element that stays.
    for &pos in leaving.iter().rev() {
        let index = set[pos].index;
        let Some(slot) = slot::locate(pages, index) else {
            continue; // unreachable: a listed slot's page was gathered
        };
        let live = slot::is_live(slot.state());
        // `sent` is exact here: only `track` writes it, under the lock this holds.
        let (flushed, sent) = slot.positions();
        if !live || flushed >= sent {
            producer.pending.unlist(index);
            set.swap_remove(pos);
            cold.swap_remove(pos);
        }
    }
}

/// One scan at `clock.now()`.
pub(crate) fn scan<K>(shared: &Shared<K>, state: &Mutex<ScanState<K>>) -> ScanReport<K>
where
    K: crate::ShapeKey,
{
    let started = Instant::now();
    let mut guard = lock(state);
    let st = &mut *guard;
    let t = shared.ticker.now();
    shared.ticker.publish(t);
    if !st.completed {
        // The previous scan panicked after it dated some progress as first seen by it, and
        // did not record its end: it ended before this one began, so `t` bounds it.
        st.prev_end = t;
    }
    st.completed = false;
    // Acquire: pairs with track's Release store; every slot update of the commits up to
    // `last_seen` is visible in the slot loads below.
    let last_seen = shared.last_seen.load(Ordering::Acquire);
    gather(shared, st);
    st.epoch = st.epoch.wrapping_add(1);
    let epoch = st.epoch;

    let mut report = ScanReport {
        watermark: 0,
        last_seen,
        pending: 0,
        suspected: Vec::new(),
        stalled: Vec::new(),
        lagging: Vec::new(),
        pinned_by: None,
        // Relaxed: a statistic (exact when nothing races the scan).
        registered: shared.counters.live.load(Ordering::Relaxed),
    };
    let mut suspected_now = 0;
    // The lowest flushed position of a pending shape, and where: the first pending shape
    // wins ties (every flushed position of a pending shape is below `u64::MAX`).
    let mut lowest = u64::MAX;
    let (mut holder, mut holder_sw) = (usize::MAX, 0);

    // Loop invariants in locals: the `Acquire` loads below would otherwise make the compiler
    // reload them for every slot.
    let v = Visit {
        t,
        epoch,
        last_seen,
        prev_end: st.prev_end,
        prev_last_seen: st.prev_last_seen,
        grace: shared.grace,
        lag_window: shared.lag_window,
        exact: shared.ticker.is_exact(),
    };
    // The steady test's lag condition: when `last_seen` moved, a pending shape whose flushed
    // position did not has a grown lag, which the classifier must note unless it has already.
    let need_grew = if v.lag_window > 0 && last_seen != v.prev_last_seen {
        lag::GREW << FLAGS_SHIFT
    } else {
        0
    };
    let ScanState {
        set,
        cold,
        leaving,
        stalls,
        pages,
        #[cfg(feature = "tracing")]
        log,
        ..
    } = st;
    leaving.clear();
    let mut pending = 0;
    let set = set.as_mut_slice(); // its length and address stay in registers
    let ahead = if set.len() >= PREFETCH_FROM {
        AHEAD
    } else {
        set.len() // never an entry: no prefetch
    };
    for pos in 0..set.len() {
        // Overlap the misses: start loading the slot line of the entry `AHEAD` visits on, so
        // that a set spread over many pages (the pending set is sparse: a line and a TLB
        // entry per shape) does not wait out one miss at a time.
        if let Some(next) = set.get(pos + ahead) {
            if let Some((page, off)) = slot::locate_page(pages, next.index) {
                prefetch(&page.slots[off]);
            }
        }
        let rec = &mut set[pos];
        let Some((page, off)) = slot::locate_page(pages, rec.index) else {
            continue; // unreachable: a listed slot's page was gathered
        };
        let slot = &page.slots[off];
        let sw = slot.state();
        let (reported, flushed, sent) = slot.snapshot();
        // The steady test, one branch: nothing changed, not overdue, nothing for the
        // classifier. Such a visit only counts the shape; it writes nothing. (Still pending
        // follows: a nonzero deadline means the previous visit saw this shape, the same
        // generation, pending at `flushed_prev`, and `sent` never decreases.)
        let steady = ((sw ^ rec.sw) | (flushed ^ rec.flushed_prev) == 0)
            & (t < rec.deadline)
            & (rec.bits & need_grew == need_grew);
        if !steady {
            let sample = Sample {
                sw,
                reported,
                flushed,
                sent,
            };
            let out = visit(
                shared,
                &v,
                stalls,
                #[cfg(feature = "tracing")]
                log,
                page,
                off,
                rec,
                &mut cold[pos],
                sample,
                &mut report,
            );
            match out {
                Outcome::Leaves => {
                    leaving.push(pos);
                    continue;
                }
                Outcome::Pending { suspected } => suspected_now += usize::from(suspected),
            }
        }
        pending += 1;
        if flushed < lowest {
            lowest = flushed;
            (holder, holder_sw) = (rec.index as usize, sw);
        }
    }
    report.pending = pending;
    prune(shared, st);
    st.stalls.purge(epoch);
    st.prev_last_seen = last_seen;

    let min = last_seen.min(lowest);
    if min > st.published {
        st.published = min;
        shared.watermark.publish(min);
    }
    report.watermark = st.published;

    let pinned = (holder != usize::MAX).then_some(holder).and_then(|index| {
        let (page, off) = slot::locate_page(&st.pages, index as u32)?;
        let slot = &page.slots[off];
        // The shape counted in this scan's watermark, so it is named even if it ended since,
        // as long as the key read is still its own: a dropped writer's slot is FREE (no
        // generation) before its key is taken, and a new shape's key is stored before its
        // state, so seeing the holder's generation after the key read proves the key.
        let key = page.key(off)?;
        (slot::gen32(slot.state()) == slot::gen32(holder_sw))
            .then(|| slot.status(key, holder_sw, t, last_seen))
    });
    report.pinned_by = pinned.as_ref().map(|s| s.key.clone());
    *lock(&shared.pinned) = pinned;

    let c = &shared.counters;
    // Relaxed (all): statistics.
    c.pending.store(report.pending, Ordering::Relaxed);
    c.suspected.store(suspected_now, Ordering::Relaxed);
    c.scans.fetch_add(1, Ordering::Relaxed);
    let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    c.last_scan_nanos.store(nanos, Ordering::Relaxed);
    #[cfg(feature = "metrics")]
    crate::features::metrics::record_scan(shared, &report, std::time::Duration::from_nanos(nanos));
    if !v.exact {
        st.prev_end = shared.ticker.now();
    }
    st.completed = true;
    report
}

/// What one scan passes to every full visit.
struct Visit {
    t: u64,
    epoch: u32,
    last_seen: u64,
    /// The clock at the end of the previous scan (real clocks).
    prev_end: u64,
    prev_last_seen: u64,
    grace: u64,
    lag_window: u32,
    exact: bool,
}

/// What a visit read from the slot (state word first, then `Slot::snapshot`).
#[derive(Clone, Copy)]
struct Sample {
    sw: u64,
    reported: u64,
    flushed: u64,
    sent: u64,
}

/// The outcome of a full visit (and of [`stall::attend`]).
pub(super) enum Outcome {
    /// No longer counting (caught up, ended, or evicted by this scan): the entry leaves the
    /// set if `prune` proves it may.
    Leaves,
    /// Still pending and counting in this scan's watermark, suspected or not.
    Pending { suspected: bool },
}

/// The full visit of one entry: whatever changed since the previous visit, the stall machine
/// for a suspected or overdue shape, the lag classifier; then the record, with the deadline
/// of the next steady visit.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn visit<K>(
    shared: &Shared<K>,
    v: &Visit,
    stalls: &mut stall::Memory,
    #[cfg(feature = "tracing")] log: &mut crate::log::Limiter,
    page: &Page<K>,
    off: usize,
    rec: &mut Rec,
    cold: &mut Cold,
    sample: Sample,
    report: &mut ScanReport<K>,
) -> Outcome
where
    K: crate::ShapeKey,
{
    let Sample {
        mut sw,
        reported,
        flushed,
        sent,
    } = sample;
    let slot = &page.slots[off];
    let index = rec.index as usize;
    // Until proven otherwise, the next visit is full.
    rec.deadline = 0;
    if !slot::is_live(sw) || flushed >= sent {
        // Ended, or caught up (never overdue; a suspicion the writer did not clear is
        // answered): it leaves the set if `prune` proves it.
        if slot::is_suspected(sw) && flushed >= sent {
            slot.cas(sw, slot::answered(sw));
        }
        rec.bits |= BROKEN;
        return Outcome::Leaves;
    }
    // A `defer` since the last look: clear its bit first, so that every decision below is
    // made from a word that any later `defer` changes (no counter wrap can hide one).
    let deferred = sw & slot::DEFERRED != 0;
    if deferred {
        let Some(cleared) = slot.clear_deferred(sw) else {
            rec.bits |= BROKEN;
            return Outcome::Leaves; // ended meanwhile
        };
        sw = cleared;
    }
    let t = v.t;
    let gen = slot::gen32(sw);
    let counter = slot::counter(sw);
    let lag = v.last_seen.saturating_sub(flushed);
    let fresh = rec.bits & BROKEN != 0 || slot::gen32(rec.sw) != gen;
    if fresh {
        *rec = Rec {
            flushed_prev: flushed,
            sw,
            deadline: 0,
            index: rec.index,
            bits: 0,
        };
        *cold = Cold {
            seen: UNSEEN,
            run_start: v.epoch,
        };
    }
    // Time since the last progress, as reported (events): from the stored ticks, so that a
    // re-arm does not reset it. The stall machine's own idleness is `stall_idle`.
    let idle = t.saturating_sub(slot.last_progress());
    let stall_idle = if v.exact {
        t.saturating_sub(slot.progress_tick())
    } else {
        // Real clock: a progress (a higher flushed position, a `defer`, becoming pending)
        // first seen by a scan happened before that scan ended: never overdue in the scan
        // that first sees it, whatever the time since the previous scan.
        if deferred || flushed != rec.flushed_prev || counter != slot::counter(rec.sw) {
            cold.seen = UNSEEN;
        } else if cold.seen == UNSEEN && !fresh {
            cold.seen = v.prev_end;
        }
        if cold.seen == UNSEEN {
            0
        } else {
            t.saturating_sub(cold.seen)
        }
    };
    let overdue = stall_idle > v.grace;
    let mut suspected = slot::is_suspected(sw);
    if suspected || overdue {
        let seen = stall::Seen {
            index,
            sw,
            reported,
            flushed,
            sent,
            idle,
            overdue,
        };
        match stall::attend(
            shared,
            stalls,
            #[cfg(feature = "tracing")]
            log,
            page,
            seen,
            t,
            v.epoch,
            report,
        ) {
            Outcome::Leaves => return Outcome::Leaves,
            Outcome::Pending { suspected: s } => suspected = s,
        }
    }
    let mut armed = false;
    if v.lag_window > 0 && !fresh {
        let lag_prev = v.prev_last_seen.saturating_sub(rec.flushed_prev);
        let (fired, still_armed) =
            lag::classify(rec, cold, lag_prev, lag, flushed, v.epoch, v.lag_window);
        armed = still_armed;
        if let Some(lag) = fired {
            if let Some(key) = page.key(off) {
                lag::reported(rec);
                armed = false;
                shared.events.info(Event::Lagging {
                    key: key.clone(),
                    lag,
                });
                report.lagging.push(key);
            }
        }
    }
    rec.flushed_prev = flushed;
    rec.sw = sw;
    // The next visit may be steady if nothing here needs another look: the shape was not
    // suspected (before or by this visit), its idleness is dated, and no lag run is about to
    // be reported. It is then overdue from the tick after `progress + grace`.
    let progress = if v.exact {
        Some(slot.progress_tick())
    } else {
        (cold.seen != UNSEEN).then_some(cold.seen)
    };
    if let Some(progress) = progress.filter(|_| !suspected && !slot::is_suspected(sw) && !armed) {
        rec.deadline = progress.saturating_add(v.grace).saturating_add(1);
    }
    Outcome::Pending { suspected }
}

#[cfg(all(test, not(loom)))]
mod tests {
    #[test]
    fn a_pending_set_entry_is_44_bytes() {
        // What a pending shape costs the scanner in memory (`BENCHMARKS.md`, memory per shape):
        // 32 bytes read by every visit, 12 by full visits only.
        assert_eq!(std::mem::size_of::<super::Rec>(), 32);
        assert_eq!(std::mem::size_of::<super::Cold>(), 12);
    }
}
