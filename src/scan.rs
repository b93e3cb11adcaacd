//! One pass over the slots (watermark + stall machine), and the thin scanner thread.
//!
//! Ground rules:
//! - A scan holds the scan lock for the whole pass; everything in [`ScanState`] is private to
//!   it and needs no atomics.
//! - A scan reads `last_seen` (`Acquire`) before any slot, then visits each slot once:
//!   `state` (`Acquire`), then `sent`, `reported`, `floor`, then the ticks (see `slot.rs`).
//! - It writes to a slot only when the slot changes state (suspected, answered, stalled,
//!   re-armed): healthy slots are only read, so the scanner never steals their cache lines.
//! - Every state change is a CAS from the exact word the scan saw. A writer's progress or
//!   `defer` that changed the word first makes the CAS fail: the stall is not decided, the
//!   progress is applied. A CAS that wins makes the writer's later CAS fail: its report is
//!   ignored and `is_evicted` is true. Never both.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use crate::events::Seq;
use crate::slot::{self, Page, Slot, PAGE};
use crate::sync::{lock, read, thread, Arc, Condvar, Mutex, Ordering};
use crate::tracker::{status_of, Shared};
use crate::{Event, ScanReport, StallPolicy};

/// What the lag classifier remembers of one pending slot between scans: 32 bytes, touched
/// only for slots that are pending (a caught-up or free slot costs the scan its own cache
/// line and nothing else).
#[derive(Clone, Copy, Default)]
struct Rec {
    /// `stamp(generation, scan)` of the last scan that saw the shape pending: the record goes
    /// on only if that was the previous scan and the same shape (a scan that saw it caught
    /// up, or a new shape in the slot, breaks it). Zero: never seen.
    stamp: u64,
    /// Lag and flushed position at the previous sample.
    lag_prev: u64,
    flushed_prev: u64,
    /// Real clocks: an upper bound of the time of the shape's last progress (`UNSEEN`: the
    /// progress was first seen by the previous scan, whose end time bounds it).
    seen: u64,
    /// The state word's answer counter at the previous sample (a `defer` bumps it).
    counter: u32,
    /// Scans in the current run of non-decreasing lag.
    run: u32,
    /// `GREW`, `PROGRESSED`, `LAGGING`.
    flags: u32,
}

/// [`Rec::seen`]: progress first seen by the previous scan.
const UNSEEN: u64 = u64::MAX;

/// A record stamp: the low 32 bits of a shape's generation and of a scan number.
#[inline]
fn stamp(gen: u32, epoch: u32) -> u64 {
    (u64::from(gen) << 32) | u64::from(epoch)
}

/// The lag grew during the run.
const GREW: u32 = 1;
/// The flushed position moved during the run.
const PROGRESSED: u32 = 2;
/// The run was reported as lagging (once per episode).
const LAGGING: u32 = 4;

/// A challenge in flight: what the scan that suspected a slot saw. Kept in a small side map
/// (only suspected slots are in it), not in every slot's record.
#[derive(Clone, Copy)]
struct Snap {
    /// The state word after the CAS that suspected the slot.
    state: u64,
    /// `reported` when the slot was suspected.
    reported: u64,
    /// Tick of the scan that suspected the slot.
    at: u64,
    /// Low 32 bits of the last scan that saw the challenge (stale entries are purged).
    seen: u32,
}

/// The scanner's private state (behind the scan lock).
pub(crate) struct ScanState<K> {
    recs: Vec<Rec>,
    snaps: HashMap<usize, Snap>,
    /// The last `Stalled` queued for a slot's shape (`StallPolicy::Report`): the low 32 bits
    /// of its generation and the event's sequence number, so that a shape has at most one
    /// unread `Stalled`.
    stalls: HashMap<usize, (u32, Seq)>,
    /// The clock at the end of the previous scan: an upper bound of the time of any progress
    /// that scan saw.
    prev_end: u64,
    /// Scans started so far (wrapping); numbers the records.
    epoch: u32,
    /// The pages this scanner knows; refreshed when the slab grew.
    pages: Vec<Arc<Page<K>>>,
    /// The published watermark (the authoritative copy).
    published: u64,
    #[cfg(feature = "tracing")]
    log: crate::log::Limiter,
}

impl<K> ScanState<K> {
    pub(crate) fn new(start_at: u64) -> Self {
        ScanState {
            recs: Vec::new(),
            snaps: HashMap::new(),
            stalls: HashMap::new(),
            prev_end: 0,
            epoch: 0,
            pages: Vec::new(),
            published: start_at,
            #[cfg(feature = "tracing")]
            log: crate::log::Limiter::default(),
        }
    }
}

/// The key stored with a slot (cloned). Read before a CAS that validates it: a slot cannot be
/// reassigned without its generation changing, so a CAS that succeeds proves the key right.
fn key_of<K: Clone>(page: &Page<K>, off: usize) -> Option<K> {
    lock(&page.keys[off]).clone()
}

/// A state CAS from exactly `from`.
fn cas(slot: &Slot, from: u64, to: u64) -> bool {
    // AcqRel: pairs with the writer's `answer`/`defer` update and drop swap and with
    // `remove`'s CAS; whoever changes the word first decides, the other one fails.
    slot.state
        .compare_exchange(from, to, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
}

/// One scan at `clock.now()`.
pub(crate) fn scan<K>(shared: &Shared<K>) -> ScanReport<K>
where
    K: Hash + Eq + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    let started = Instant::now();
    let mut guard = lock(&shared.scan);
    let st = &mut *guard;
    let t = shared.ticker.now();
    shared.ticker.publish(t);
    // Acquire: pairs with track's Release store; every slot update of the commits up to
    // `last_seen` is visible in the slot loads below.
    let last_seen = shared.last_seen.load(Ordering::Acquire);

    // The page list is refreshed *after* `last_seen`: every shape tracked at or before
    // `last_seen` was registered before that `track`, so its page is in the list read here.
    // (Refreshing first would let a shape registered and tracked in between pin nothing.)
    if st.pages.len() * PAGE < shared.slab.capacity() {
        let pages = read(&shared.slab.pages);
        let known = st.pages.len();
        st.pages.extend(pages[known..].iter().cloned());
    }
    st.recs.resize(st.pages.len() * PAGE, Rec::default());
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
        registered: 0,
    };
    let mut suspected_now = 0;
    // The lowest flushed position of a pending shape, and where: the first pending shape
    // wins ties (every flushed position of a pending shape is below `u64::MAX`).
    let mut lowest = u64::MAX;
    let (mut holder, mut holder_sw) = (usize::MAX, 0);

    // Loop invariants in locals: the `Acquire` loads below would otherwise make the compiler
    // reload them for every slot.
    let (grace, lag_window) = (shared.grace, shared.lag_window);
    let exact = shared.ticker.is_exact();
    let prev_end = st.prev_end;
    let prev_epoch = epoch.wrapping_sub(1);
    let ScanState {
        recs,
        snaps,
        stalls,
        pages,
        #[cfg(feature = "tracing")]
        log,
        ..
    } = st;
    for (p, (page, recs)) in pages.iter().zip(recs.chunks_exact_mut(PAGE)).enumerate() {
        for (off, (slot, rec)) in page.slots.iter().zip(recs).enumerate() {
            // Acquire: pairs with register's Release store (the slot's fields are initialised)
            // and with the CASes and swap of writers and `remove`.
            let sw = slot.state.load(Ordering::Acquire);
            if !slot::is_live(sw) {
                continue;
            }
            report.registered += 1;
            // Acquire: pairs with track's Release store of `sent` (its `floor` comes with it).
            let sent = slot.sent.load(Ordering::Acquire);
            // Acquire: pairs with the writer's Release store of `reported` (its `tick` too).
            let reported = slot.reported.load(Ordering::Acquire);
            // Relaxed: published by the `sent` load above.
            let floor = slot.floor.load(Ordering::Relaxed);
            let flushed = reported.max(floor);
            if flushed >= sent {
                // Caught up: never overdue. A suspicion the writer did not clear is answered.
                if slot::is_suspected(sw) {
                    cas(slot, sw, slot::answered(sw));
                }
                continue;
            }

            // Whether the previous scan saw this shape pending (else the record starts anew).
            let gen = slot::gen32(sw);
            let fresh = rec.stamp != stamp(gen, prev_epoch);
            let counter = slot::counter(sw);
            let idle = if exact {
                // Mock clock: ticks are exact.
                t.saturating_sub(slot.progress_tick())
            } else {
                // Real clock: a stored tick is coarse (a lower bound of the progress time), so
                // idleness is judged by an upper bound instead: progress (a higher flushed
                // position, a `defer`, becoming pending) first seen by a scan happened before
                // that scan ended. Never overdue in the scan that first sees it, whatever the
                // time since the previous scan.
                let progressed = fresh || flushed != rec.flushed_prev || counter != rec.counter;
                rec.seen = match (progressed, rec.seen) {
                    (true, _) => UNSEEN,
                    (false, UNSEEN) => prev_end,
                    (false, seen) => seen,
                };
                if rec.seen == UNSEEN {
                    0
                } else {
                    t.saturating_sub(rec.seen)
                }
            };
            let overdue = idle > grace;
            let mut suspected = slot::is_suspected(sw);
            if suspected || overdue {
                let seen = Seen {
                    index: p * PAGE + off,
                    sw,
                    reported,
                    flushed,
                    sent,
                    idle,
                    overdue,
                };
                let mut cx = Ctx {
                    shared,
                    snaps: &mut *snaps,
                    stalls: &mut *stalls,
                    #[cfg(feature = "tracing")]
                    log: &mut *log,
                    t,
                    epoch,
                };
                match attend(&mut cx, page, seen, &mut report) {
                    Attended::Evicted => continue,
                    Attended::Pending { suspected: s } => suspected = s,
                }
            }

            report.pending += 1;
            suspected_now += usize::from(suspected);
            if flushed < lowest {
                lowest = flushed;
                (holder, holder_sw) = (p * PAGE + off, sw);
            }
            if lag_window > 0 {
                let lag = last_seen.saturating_sub(flushed);
                if !fresh && lag >= rec.lag_prev {
                    rec.run = rec.run.saturating_add(1);
                    rec.flags |= (GREW * u32::from(lag > rec.lag_prev))
                        | (PROGRESSED * u32::from(flushed > rec.flushed_prev));
                } else {
                    rec.run = 1;
                    rec.flags = 0;
                }
                rec.lag_prev = lag;
                if rec.flags == GREW | PROGRESSED && rec.run > lag_window {
                    if let Some(key) = key_of(page, off) {
                        rec.flags |= LAGGING;
                        shared.events.info(Event::Lagging {
                            key: key.clone(),
                            lag,
                        });
                        report.lagging.push(key);
                    }
                }
            }
            rec.stamp = stamp(gen, epoch);
            rec.flushed_prev = flushed;
            rec.counter = counter;
        }
    }
    if !st.snaps.is_empty() {
        // Challenges not seen in this scan were answered (or their shape ended).
        st.snaps.retain(|_, snap| snap.seen == epoch);
    }

    let min = last_seen.min(lowest);
    if min > st.published {
        st.published = min;
        shared.watermark.publish(min);
    }
    report.watermark = st.published;

    let pinned = (holder != usize::MAX).then_some(holder).and_then(|index| {
        let (page, off) = (&st.pages[index / PAGE], index % PAGE);
        let slot = &page.slots[off];
        // The shape counted in this scan's watermark, so it is named even if it ended since,
        // as long as the key read is still its own: a dropped writer's slot is FREE (no
        // generation) before its key is taken, and a new shape's key is stored before its
        // state, so seeing the holder's generation after the key read proves the key.
        let key = key_of(page, off)?;
        // Acquire: pairs with the drop's swap and register's store of `state`.
        let now = slot.state.load(Ordering::Acquire);
        (slot::gen32(now) == slot::gen32(holder_sw))
            .then(|| status_of(slot, key, holder_sw, t, last_seen))
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
    crate::features::metrics::record_scan(shared, &report, Duration::from_nanos(nanos));
    if !exact {
        st.prev_end = shared.ticker.now();
    }
    report
}

/// What the scan read from a pending slot that needs the stall machine.
struct Seen {
    index: usize,
    sw: u64,
    reported: u64,
    flushed: u64,
    sent: u64,
    idle: u64,
    /// `idle > grace`.
    overdue: bool,
}

/// What the stall machine needs besides the slot.
struct Ctx<'a, K> {
    shared: &'a Shared<K>,
    snaps: &'a mut HashMap<usize, Snap>,
    stalls: &'a mut HashMap<usize, (u32, Seq)>,
    #[cfg(feature = "tracing")]
    log: &'a mut crate::log::Limiter,
    t: u64,
    epoch: u32,
}

/// The outcome of [`attend`].
enum Attended {
    /// Stalled and evicted in this scan: the slot no longer counts.
    Evicted,
    /// Still pending (and counting), suspected or not.
    Pending { suspected: bool },
}

/// The stall machine for one pending slot that is suspected or overdue. Out of line and cold:
/// a healthy slot never gets here, and the scan's main loop stays small.
#[cold]
#[inline(never)]
fn attend<K>(
    cx: &mut Ctx<'_, K>,
    page: &Page<K>,
    seen: Seen,
    report: &mut ScanReport<K>,
) -> Attended
where
    K: Hash + Eq + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    let Seen {
        index,
        sw,
        reported,
        flushed,
        sent,
        idle,
        overdue,
    } = seen;
    let (shared, t, epoch) = (cx.shared, cx.t, cx.epoch);
    let off = index % PAGE;
    let slot = &page.slots[off];
    // A challenge that starts now, from state word `state`.
    let challenge = |state| Snap {
        state,
        reported,
        at: t,
        seen: epoch,
    };
    let mut suspected = slot::is_suspected(sw);
    if suspected {
        match cx.snaps.get_mut(&index) {
            Some(snap) if snap.state == sw => {
                snap.seen = epoch;
                if reported != snap.reported {
                    // Progress by a writer that read the state before it was suspected.
                    if cas(slot, sw, slot::answered(sw)) {
                        suspected = false;
                    }
                } else if overdue && t.saturating_sub(snap.at) > shared.challenge {
                    if let Some(key) = key_of(page, off) {
                        let evict = shared.policy == StallPolicy::Evict;
                        let to = if evict {
                            // Not yet EVICTED: `is_evicted()` turns true only once the key is
                            // free (below), but from this CAS on the shape is inert.
                            slot::with_phase(sw, slot::EVICTING)
                        } else {
                            // Relaxed: read only by scans (under the scan lock) and `status`;
                            // published to them by the CAS below.
                            slot.rearm.store(t, Ordering::Relaxed);
                            slot::answered(sw)
                        };
                        if cas(slot, sw, to) {
                            suspected = false;
                            let gen = slot::gen32(sw);
                            if evict {
                                // Free the key before the eviction is observable (the writer's
                                // `is_evicted`, the event). A panic in the user's `Hash`/`Eq`
                                // must not leave the slot half evicted.
                                let _ =
                                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                        shared.registry.remove_if(&key, |_, id| {
                                            id.index as usize == index && id.gen as u32 == gen
                                        })
                                    }));
                                // Fails only if the writer was dropped meanwhile (FREE).
                                cas(slot, to, slot::with_phase(sw, slot::EVICTED));
                            }
                            #[cfg(feature = "tracing")]
                            cx.log.stalled(&key, idle, flushed, sent, evict);
                            let previous = match cx.stalls.get(&index) {
                                Some(&(g, seq)) if !evict && g == gen => Some(seq),
                                _ => None,
                            };
                            let seq = on_stall(shared, &key, idle, flushed, sent, evict, previous);
                            if !evict {
                                cx.stalls.insert(index, (gen, seq));
                            }
                            report.stalled.push(key);
                            if evict {
                                return Attended::Evicted;
                            }
                        }
                    }
                }
            }
            _ => {
                // Suspected by a scan whose record was lost (it panicked): restart the
                // challenge from now.
                cx.snaps.insert(index, challenge(sw));
            }
        }
    } else if overdue {
        if let Some(key) = key_of(page, off) {
            let to = sw | slot::SUSPECTED;
            if cas(slot, sw, to) {
                cx.snaps.insert(index, challenge(to));
                suspected = true;
                shared.events.info(Event::Suspected {
                    key: key.clone(),
                    idle: Duration::from_nanos(idle),
                });
                report.suspected.push(key);
            }
        }
    }
    Attended::Pending { suspected }
}

/// Counts a stall and queues its event (an action event: never dropped), unless `previous`,
/// the shape's last `Stalled`, is still unread. Returns the sequence number of the unread one.
fn on_stall<K: Clone>(
    shared: &Shared<K>,
    key: &K,
    idle: u64,
    flushed: u64,
    sent: u64,
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
        key: key.clone(),
        idle: Duration::from_nanos(idle),
        flushed,
        sent,
        evicted,
    };
    shared.events.stalled(event, previous)
}

/// Tells the scanner thread to stop, promptly.
pub(crate) struct StopSignal {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl StopSignal {
    pub(crate) fn new() -> Self {
        StopSignal {
            stopped: Mutex::new(false),
            wake: Condvar::new(),
        }
    }

    pub(crate) fn stop(&self) {
        *lock(&self.stopped) = true;
        self.wake.notify_all();
    }

    /// Sleeps until `deadline` or a stop; returns whether stopped. (Under loom, timeouts are
    /// not modelled: it waits for the stop.)
    fn wait_until(&self, deadline: Instant) -> bool {
        let mut stopped = lock(&self.stopped);
        loop {
            if *stopped {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            stopped = match self.wake.wait_timeout(stopped, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }
}

/// Starts the scanner thread.
pub(crate) fn spawn<K>(
    shared: Arc<Shared<K>>,
    stop: Arc<StopSignal>,
) -> std::io::Result<thread::JoinHandle<()>>
where
    K: Hash + Eq + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    thread::Builder::new()
        .name("flushwatch-scanner".into())
        .spawn(move || run(&shared, &stop))
}

/// The scanner loop: fixed rate on the grid `start + k * scan_interval`. A scan that overruns
/// delays the next one (which then starts at once) without shifting the grid; grid points
/// missed entirely are skipped rather than run in a burst.
fn run<K>(shared: &Shared<K>, stop: &StopSignal)
where
    K: Hash + Eq + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    let interval = shared.scan_interval;
    let mut next = Instant::now();
    while !stop.wait_until(next) {
        scan_catching(shared);
        // An interval beyond `Instant`'s range means "never again until stopped".
        next = next
            .checked_add(interval)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(u64::from(u32::MAX)));
        let now = Instant::now();
        if next < now {
            let missed = (now - next).as_nanos() / interval.as_nanos();
            let missed = u32::try_from(missed).unwrap_or(u32::MAX);
            next += interval.saturating_mul(missed);
        }
    }
    // Release: pairs with spawn_scanner's AcqRel CAS.
    shared.scanner_running.store(false, Ordering::Release);
}

/// One scan; a panic inside it is caught, counted and reported.
fn scan_catching<K>(shared: &Shared<K>)
where
    K: Hash + Eq + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scan(shared)));
    if let Err(payload) = result {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        // Relaxed: a statistic.
        shared.counters.scan_panics.fetch_add(1, Ordering::Relaxed);
        shared.events.info(Event::ScanPanicked { message });
    }
}
