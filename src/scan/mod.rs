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
//!   watermark and writes nothing. Everything else is a full visit (`visit.rs`).
//! - It writes to a slot only when the slot changes state (suspected, answered, stalled,
//!   re-armed; see `stall.rs`): healthy slots are only read, so the scanner never steals their
//!   cache lines.
//! - Slots seen caught up or ended leave the set at the end ([`prune`], producer lock).
//! - Idleness on a real clock is judged by an upper bound of the progress time (see
//!   [`Cold::seen`] and the crate docs, "Ticks"); on a mock clock the stored ticks are exact.
//!
//! The passes, each a function of its own, in the order [`scan`] runs them: `start` (the
//! clock); [`gather`]; [`visit_all`] (`visit.rs`: the watermark, the steady test, and the
//! full `visit` of the entries that changed, which calls [`stall::attend`] for the few
//! suspected or overdue slots and [`lag::classify`]); [`prune`]; `publish` (the watermark);
//! `pin` (`pinned_by`); `record` (statistics and metrics).

mod lag;
mod stall;
mod visit;

use std::time::Instant;

use crate::core::Shared;
use crate::slot::{self, Page};
use crate::sync::{lock, Mutex, Ordering};
use crate::ScanReport;

use visit::visit_all;

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

/// Entries per batch of the visiting loop and per prefetch: before visiting a batch, a scan
/// asks for the slot lines of the next one (`visit.rs`, `prefetch_slots`), in a set of at
/// least [`PREFETCH_FROM`] entries (`BENCHMARKS.md`, "Cold scan": batches of 16 and 32
/// measured, and the former per-entry prefetch 16 entries ahead; a smaller set's lines stay in
/// the caches, where a prefetch only costs instructions).
const BATCH: usize = 16;
const PREFETCH_FROM: usize = 4096;
// The first batch is prefetched before the loop, as `set[..BATCH]`.
const _: () = assert!(BATCH <= PREFETCH_FROM);

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

/// One scan at `clock.now()`: [`gather`], [`visit_all`] (the watermark, the steady test and
/// the full visits), [`prune`], then [`publish`], [`pin`] and [`record`].
pub(crate) fn scan<K>(shared: &Shared<K>, state: &Mutex<ScanState<K>>) -> ScanReport<K>
where
    K: crate::ShapeKey,
{
    let started = Instant::now();
    let mut guard = lock(state);
    let st = &mut *guard;
    let t = start(shared, st);
    // Acquire: pairs with track's Release store; every slot update of the commits up to
    // `last_seen` is visible in the slot loads below.
    let last_seen = shared.last_seen.load(Ordering::Acquire);
    gather(shared, st);
    st.epoch = st.epoch.wrapping_add(1);

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
    let low = visit_all(shared, st, t, last_seen, &mut report);
    prune(shared, st);
    st.stalls.purge(st.epoch);
    st.prev_last_seen = last_seen;
    publish(shared, st, last_seen.min(low.lowest), &mut report);
    pin(shared, st, &low, t, &mut report);
    record(shared, &report, low.suspected_now, started);
    if !shared.ticker.is_exact() {
        st.prev_end = shared.ticker.now();
    }
    st.completed = true;
    report
}

/// The scan's clock: reads it, publishes it to the writers, and bounds a panicked previous
/// scan's end by it.
fn start<K>(shared: &Shared<K>, st: &mut ScanState<K>) -> u64 {
    let t = shared.ticker.now();
    shared.ticker.publish(t);
    if !st.completed {
        // The previous scan panicked after it dated some progress as first seen by it, and
        // did not record its end: it ended before this one began, so `t` bounds it.
        st.prev_end = t;
    }
    st.completed = false;
    t
}

/// Publishes `min` (the lowest flushed position of a pending shape, or `last_seen`) if it
/// raises the watermark.
fn publish<K>(shared: &Shared<K>, st: &mut ScanState<K>, min: u64, report: &mut ScanReport<K>) {
    if min > st.published {
        st.published = min;
        shared.watermark.publish(min);
    }
    report.watermark = st.published;
}

/// Names the shape that holds the watermark back (`pinned_by`), if it is still the one counted.
fn pin<K>(shared: &Shared<K>, st: &ScanState<K>, low: &Lowest, t: u64, report: &mut ScanReport<K>)
where
    K: crate::ShapeKey,
{
    let Lowest {
        holder, holder_sw, ..
    } = *low;
    let last_seen = report.last_seen;
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
}

/// The scan's statistics (and, feature `metrics`, its metrics).
fn record<K>(shared: &Shared<K>, report: &ScanReport<K>, suspected_now: usize, started: Instant) {
    let c = &shared.counters;
    // Relaxed (all): statistics.
    c.pending.store(report.pending, Ordering::Relaxed);
    c.suspected.store(suspected_now, Ordering::Relaxed);
    c.scans.fetch_add(1, Ordering::Relaxed);
    let took = started.elapsed();
    c.last_scan_nanos
        .store(crate::clock::nanos(took), Ordering::Relaxed);
    #[cfg(feature = "metrics")]
    crate::features::metrics::record_scan(
        &shared.metrics,
        &shared.counters,
        &shared.events,
        report,
        took,
    );
}

/// What the visits found: the lowest flushed position of a pending shape and where, and how
/// many pending shapes are suspected.
#[derive(Clone, Copy)]
struct Lowest {
    /// The lowest flushed position of a pending shape; `u64::MAX` when none is pending.
    lowest: u64,
    /// Its slot's index (`usize::MAX` when none is pending) and the state word read.
    holder: usize,
    holder_sw: u64,
    /// Pending shapes suspected after this scan.
    suspected_now: usize,
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

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::sync::lock;
    use crate::{Config, FlushTracker, Writer};

    #[test]
    fn the_set_grows_by_what_arrived_or_an_eighth_never_by_doubling() {
        // The memory per pending shape (`BENCHMARKS.md`, memory per shape) and an amortised
        // growth: what the cargo-mutants run found no test for.
        let t = FlushTracker::new(Config::default()).unwrap();
        let capacity = || lock(t.scan_state()).set.capacity();
        let len = || lock(t.scan_state()).set.len();
        let mut writers: Vec<Writer<u32>> = (0..10_000).map(|k| t.register(k).unwrap()).collect();
        let ids: Vec<_> = writers.iter().map(Writer::id).collect();
        t.track(1, &ids).unwrap(); // all pending, never flushed: they stay in the set
        t.scan();
        assert_eq!(len(), 10_000);
        assert!(
            capacity() <= 10_000 + 10_000 / 8,
            "slack after one track of every shape: {}",
            capacity()
        );
        // One new shape per scan: the set grows by an eighth at a time, not by one.
        let mut grown = 0;
        for k in 0..2_000 {
            let before = capacity();
            let w = t.register(100_000 + k).unwrap();
            t.track(2 + u64::from(k), &[w.id()]).unwrap();
            writers.push(w);
            t.scan();
            grown += usize::from(capacity() != before);
            assert!(
                capacity() <= len() + len() / 8 + 1,
                "{} for {}",
                capacity(),
                len()
            );
        }
        assert!(
            grown <= 2,
            "the set grew {grown} times for 2,000 single arrivals"
        );
        // What arrives exactly fills the room: no growth.
        let (before, room) = (capacity(), capacity() - len());
        let more: Vec<Writer<u32>> = (0..room as u32)
            .map(|k| t.register(200_000 + k).unwrap())
            .collect();
        let ids: Vec<_> = more.iter().map(Writer::id).collect();
        t.track(10_000, &ids).unwrap();
        t.scan();
        assert_eq!(
            (len(), capacity()),
            (before, before),
            "{room} arrivals fit the room"
        );
        // Caught up, they leave the set (the scan follows the pending set).
        for w in writers.iter().chain(&more) {
            w.flushed(10_000);
        }
        t.scan();
        assert_eq!(len(), 0, "caught-up shapes left the set");
        // So do ended ones, pending or not.
        let x = t.register(u32::MAX).unwrap();
        t.track(10_001, &[x.id()]).unwrap();
        t.scan();
        assert_eq!(len(), 1);
        assert!(t.remove(&u32::MAX));
        t.scan();
        assert_eq!(len(), 0, "an ended pending shape left the set");
        drop(x);
    }

    #[test]
    fn a_challenge_is_forgotten_once_answered() {
        // The stall machine keeps one record per open challenge, not one per shape ever
        // suspected.
        let (clock, mock) = crate::Clock::mock();
        let grace = std::time::Duration::from_secs(1);
        let t = FlushTracker::new(Config::default().clock(clock).grace(grace)).unwrap();
        let w = t.register("a").unwrap();
        t.track(10, &[w.id()]).unwrap();
        t.scan();
        mock.increment(2 * grace);
        assert_eq!(t.scan().suspected, vec!["a"]);
        assert_eq!(
            lock(t.scan_state()).stalls.snaps.len(),
            1,
            "a challenge is open"
        );
        w.flushed(5); // progress answers it
        t.scan();
        assert!(!w.is_suspected());
        assert_eq!(
            lock(t.scan_state()).stalls.snaps.len(),
            0,
            "answered: forgotten"
        );
    }

    #[test]
    fn a_pending_set_entry_is_44_bytes() {
        // What a pending shape costs the scanner in memory (`BENCHMARKS.md`, memory per shape):
        // 32 bytes read by every visit, 12 by full visits only.
        assert_eq!(std::mem::size_of::<super::Rec>(), 32);
        assert_eq!(std::mem::size_of::<super::Cold>(), 12);
    }
}
