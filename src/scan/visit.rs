//! The visit pass of a scan: every entry of the pending set once ([`visit_all`]): the steady
//! visits in a loop of their own ([`steady_run`]), and the full [`visit`] of the entries that
//! changed. The ground rules are the scan's (`mod.rs`).

use super::{lag, stall, Cold, Lowest, Outcome, Rec, Sample, ScanState, Visit};
use super::{BATCH, BROKEN, FLAGS_SHIFT, PREFETCH_FROM, UNSEEN};
use crate::core::Shared;
use crate::slot::{self, Page, Slot};
use crate::sync::prefetch;
use crate::{Event, ScanReport};

/// Visits every entry of the set: counts each pending shape in the watermark (the steady
/// visits write nothing), takes the full [`visit`] for the others, and notes the entries
/// that leave.
pub(super) fn visit_all<K>(
    shared: &Shared<K>,
    st: &mut ScanState<K>,
    t: u64,
    last_seen: u64,
    report: &mut ScanReport<K>,
) -> Lowest
where
    K: crate::ShapeKey,
{
    let epoch = st.epoch;
    let mut suspected_now = 0;
    // The lowest flushed position of a pending shape, and where: the first pending shape
    // wins ties (every flushed position of a pending shape is below `u64::MAX`).
    let mut low = Low {
        lowest: u64::MAX,
        holder: usize::MAX,
        holder_sw: 0,
    };

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
    let grew = v.lag_window > 0 && last_seen != v.prev_last_seen;
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

    // Overlap the misses: the set is visited in batches of `BATCH` entries, and before a batch
    // is visited the slot lines of the next one are requested (`prefetch_slots`). A smaller
    // set is not prefetched: its lines stay in the caches, where a prefetch only costs
    // instructions. (Its batches still let `steady_run` walk a page's slots in order.)
    let prefetching = set.len() >= PREFETCH_FROM;
    if prefetching {
        prefetch_slots(pages, &set[..BATCH]);
    }
    let mut start = 0;
    while start < set.len() {
        let end = set.len().min(start + BATCH);
        if prefetching {
            prefetch_slots(pages, &set[end..set.len().min(end + BATCH)]);
        }
        let mut pos = start;
        while pos < end {
            // The steady visits, in a loop of their own (`steady_run`), up to the first entry
            // that is not steady, which takes the full visit below; then on after it.
            let run = &set[pos..end];
            let steady = if grew {
                steady_run::<K, true>(pages, run, t, &mut low)
            } else {
                steady_run::<K, false>(pages, run, t, &mut low)
            };
            pending += steady;
            let stop = pos + steady;
            if stop == end {
                break;
            }
            pos = stop + 1;
            // The full visit reads the slot afresh: a sample taken after the one that failed
            // the steady test, which a visit may take as well as any.
            let rec = &mut set[stop];
            let Some((page, off)) = slot::locate_page(pages, rec.index) else {
                continue; // unreachable: a listed slot's page was gathered
            };
            let slot = &page.slots[off];
            let sw = slot.state();
            let (reported, flushed, sent) = slot.snapshot();
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
                &mut cold[stop],
                sample,
                report,
            );
            match out {
                Outcome::Leaves => leaving.push(stop),
                Outcome::Pending { suspected } => {
                    suspected_now += usize::from(suspected);
                    pending += 1;
                    low.count(sample.flushed, rec.index, sample.sw);
                }
            }
        }
        start = end;
    }
    report.pending = pending;
    Lowest {
        lowest: low.lowest,
        holder: low.holder,
        holder_sw: low.holder_sw,
        suspected_now,
    }
}

/// The lowest flushed position of a pending shape so far, and its slot and state word.
struct Low {
    lowest: u64,
    holder: usize,
    holder_sw: u64,
}

impl Low {
    /// Counts a pending shape of slot `index`, seen at `flushed` with state word `sw`: the
    /// first of equal positions stays.
    #[inline(always)]
    fn count(&mut self, flushed: u64, index: u32, sw: u64) {
        if flushed < self.lowest {
            *self = Low {
                lowest: flushed,
                holder: index as usize,
                holder_sw: sw,
            };
        }
    }
}

/// The steady visits at the start of `run`, in order: returns how many entries were steady
/// (`run.len()` if all were), each counted in `low`; the first entry that is not steady is the
/// caller's, for a full visit.
///
/// A steady visit finds the slot's state word and flushed position as the previous visit
/// recorded them, the tick below the record's deadline, and (`GREW`: `last_seen` moved and the
/// lag classifier is on) the grown lag already noted; it only counts the shape and writes
/// nothing. (Still pending follows: a nonzero deadline means the previous visit saw this shape,
/// the same generation, pending at `flushed_prev`, and `sent` never decreases.)
///
/// Most of a scan runs this loop, so it is a function of its own, not inlined, with nothing
/// else live: everything stays in registers, and the lowest position's holder is kept as its
/// record, whose index and state word (the word read, in a steady visit) are taken when the
/// run ends. With the slots in the last-level cache, these instructions are what a scan costs
/// (`BENCHMARKS.md`, "Cold scan").
#[inline(never)]
fn steady_run<K, const GREW: bool>(pages: &[Page<K>], run: &[Rec], t: u64, low: &mut Low) -> usize {
    let mut lowest = low.lowest;
    let mut holder: Option<&Rec> = None;
    let mut count = |rec, flushed| {
        if flushed < lowest {
            (lowest, holder) = (flushed, Some(rec));
        }
    };
    // Records of consecutive slots of one page (a set in slot order): the slots are walked
    // alongside the records, no lookup per entry, so a slot's loads need not wait for its
    // record's. Each record's index is still checked (the test on the run's ends is a guess).
    let mut done = 0;
    if let Some(slots) = consecutive(pages, run) {
        let first = run[0].index;
        done = run
            .iter()
            .zip(slots)
            .enumerate()
            .position(|(i, (rec, slot))| {
                if rec.index != first.wrapping_add(i as u32) {
                    return true;
                }
                let Some(flushed) = steady::<GREW>(slot, rec, t) else {
                    return true;
                };
                count(rec, flushed);
                false
            })
            .unwrap_or(run.len());
    }
    let steady = done
        + run[done..]
            .iter()
            .position(|rec| {
                let Some((page, off)) = slot::locate_page(pages, rec.index) else {
                    return true;
                };
                let Some(flushed) = steady::<GREW>(&page.slots[off], rec, t) else {
                    return true;
                };
                count(rec, flushed);
                false
            })
            .unwrap_or(run.len() - done);
    if let Some(rec) = holder {
        *low = Low {
            lowest,
            holder: rec.index as usize,
            holder_sw: rec.sw,
        };
    }
    steady
}

/// The steady test of one visit: the flushed position read from `slot` if the visit of `rec`
/// is steady (see [`steady_run`]), `None` if it needs the full visit.
#[inline(always)]
fn steady<const GREW: bool>(slot: &Slot, rec: &Rec, t: u64) -> Option<u64> {
    let sw = slot.state();
    let (_, flushed, _) = slot.snapshot();
    let changed = (sw ^ rec.sw) | (flushed ^ rec.flushed_prev) != 0;
    let noted = !GREW || rec.bits & NEED_GREW != 0;
    (!changed && t < rec.deadline && noted).then_some(flushed)
}

/// The slots of `run` if its records look like consecutive slots of one page: the last one's
/// index is the first one's plus the run's length less one, and both are in the same page.
#[inline(always)]
fn consecutive<'p, K>(pages: &'p [Page<K>], run: &[Rec]) -> Option<&'p [Slot]> {
    let (first, last) = (run.first()?, run.last()?);
    if last.index.wrapping_sub(first.index) as usize != run.len() - 1 {
        return None;
    }
    let (page, off) = slot::locate_page(pages, first.index)?;
    page.slots.get(off..off + run.len())
}

/// [`Rec::bits`] with the lag classifier's `GREW` flag (`lag.rs`).
const NEED_GREW: u32 = lag::GREW << FLAGS_SHIFT;

/// Asks for the slot lines of `recs` (the next batch of entries to visit) without waiting for
/// them, in a loop of its own.
///
/// Why a loop of its own (`BENCHMARKS.md`, "Cold scan"): a scan of a sparse set misses the
/// TLB on nearly every slot (1% of 1M pending: one slot per 4 KiB page, 10,000 pages), and a
/// prefetch that misses the TLB held up retirement until its page walk was done (profiled on
/// the host measured, most samples of the visiting loop fell on the prefetch). Issued from
/// inside the visiting loop, one prefetch per visit of some 40 instructions, only a few fit in
/// the reorder window, so the walks were done a few at a time; issued back to back, ten
/// instructions each, many more are under way at once. A batch
/// listed in slot order (its last slot `len - 1` after its first) is skipped: the hardware's
/// stream prefetcher already loads its lines. (A hint either way: nothing is read into the
/// program, so a wrong guess only costs time.)
#[inline]
fn prefetch_slots<K>(pages: &[Page<K>], recs: &[Rec]) {
    let (Some(first), Some(last)) = (recs.first(), recs.last()) else {
        return;
    };
    if last.index.wrapping_sub(first.index) as usize == recs.len() - 1 {
        return;
    }
    for rec in recs {
        if let Some((page, off)) = slot::locate_page(pages, rec.index) {
            prefetch(&page.slots[off]);
        }
    }
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
