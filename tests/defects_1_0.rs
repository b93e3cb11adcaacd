//! Regression tests for the five defects a hostile review of 1.0 found, each written to fail
//! on the code before its fix:
//!
//! 1. a key whose `Clone` panics during an eviction: the shape ended without its `Stalled`;
//! 2. exactly 2^24 `defer()` calls between two scans went unseen on a real (coarse) clock;
//! 3. `register(key)` failed with `DuplicateShape` after `status(key)` already said the shape
//!    had ended;
//! 4. `ShapeStatus::idle` counted from the tracker's creation before the first scan, and a
//!    re-arm under `StallPolicy::Report` reset it;
//! 5. a `Writer` shared between threads could lower its own reported position (it is no
//!    longer `Sync`: see the `compile_fail` example on `Writer`).

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use flushwatch::{Clock, MockClock};
use flushwatch::{Config, Error, Event, FlushTracker, StallPolicy, Writer};

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

fn mocked<K>(config: Config) -> (FlushTracker<K>, Arc<MockClock>)
where
    K: Hash + Eq + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    let (clock, mock) = Clock::mock();
    (FlushTracker::new(config.clock(clock)).unwrap(), mock)
}

fn stalled_events<K>(t: &FlushTracker<K>) -> Vec<Event<K>>
where
    K: Hash + Eq + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    t.events()
        .try_iter()
        .filter(|e| matches!(e, Event::Stalled { .. }))
        .collect()
}

// --- 1. a key whose Clone panics during an eviction ------------------------------------------

/// A key whose `Clone` panics once, on the `n`-th clone after [`Fused::arm`]`(n)`. `Hash` and
/// `Eq` look at `id` only.
#[derive(Debug)]
struct Fused {
    id: u32,
    fuse: Arc<AtomicI64>,
}

impl Fused {
    fn new(id: u32) -> (Fused, Arc<AtomicI64>) {
        let fuse = Arc::new(AtomicI64::new(0));
        (
            Fused {
                id,
                fuse: fuse.clone(),
            },
            fuse,
        )
    }
}

impl Clone for Fused {
    fn clone(&self) -> Self {
        // SeqCst: a test switch, flipped between scans on this thread.
        let before = self
            .fuse
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| {
                (f > 0).then(|| f - 1)
            });
        if before == Ok(1) {
            panic!("flushwatch-test: Clone panics");
        }
        Fused {
            id: self.id,
            fuse: self.fuse.clone(),
        }
    }
}
impl PartialEq for Fused {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}
impl Eq for Fused {}
impl Hash for Fused {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.id.hash(h);
    }
}

/// For every clone a scan makes (the `n`-th panics, for each `n` in turn), under `policy`: a
/// stall that happened (counted, or the shape evicted and its key free) always has its
/// `Stalled` queued, and a scan after the panic finishes the job.
fn clone_panics_in_the_stalling_scan(policy: StallPolicy) {
    for n in 1..=6 {
        let (t, clock) = mocked::<Fused>(
            Config::default()
                .grace(Duration::ZERO)
                .challenge(Duration::ZERO)
                .stall_policy(policy),
        );
        let (key, fuse) = Fused::new(1);
        let w = t.register(key.clone()).unwrap();
        t.track(5, &[w.id()]).unwrap();
        clock.increment(MS);
        assert_eq!(t.scan().suspected.len(), 1, "n = {n}");
        let _ = t.events().try_iter().count();
        clock.increment(MS);
        // SeqCst: a test switch.
        fuse.store(n, Ordering::SeqCst);
        let tc = t.clone();
        let panicked =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tc.scan())).is_err();
        // SeqCst: a test switch.
        let unused = fuse.swap(0, Ordering::SeqCst);
        assert_eq!(panicked, unused == 0, "n = {n}: the n-th clone panicked");
        let mut events = stalled_events(&t).len() as u64;
        let ended = w.is_evicted() || t.status(&key).is_none();
        if policy == StallPolicy::Evict {
            assert_eq!(ended, events == 1, "n = {n}: evicted without its Stalled");
        }
        assert_eq!(
            t.stats().stalled,
            events,
            "n = {n}: a stall without its Stalled"
        );
        // The next scans finish the job: exactly one stall (and under Evict one eviction).
        let mut scans = 0;
        while events == 0 && scans < 4 {
            clock.increment(MS);
            t.scan();
            events += stalled_events(&t).len() as u64;
            scans += 1;
        }
        assert_eq!(events, 1, "n = {n}");
        assert_eq!(t.stats().stalled, 1, "n = {n}");
        if policy == StallPolicy::Evict {
            assert!(w.is_evicted(), "n = {n}");
            assert_eq!(t.stats().evicted, 1, "n = {n}");
            assert!(t.register(key.clone()).is_ok(), "n = {n}: the key is free");
        } else {
            assert!(!w.is_evicted(), "n = {n}");
            assert!(t.status(&key).is_some_and(|s| s.pending), "n = {n}");
        }
    }
}

#[test]
fn an_eviction_whose_key_clone_panics_still_queues_its_stalled() {
    clone_panics_in_the_stalling_scan(StallPolicy::Evict);
}

#[test]
fn a_reported_stall_whose_key_clone_panics_still_queues_its_stalled() {
    clone_panics_in_the_stalling_scan(StallPolicy::Report);
}

#[test]
fn a_scan_that_panicked_does_not_make_the_next_one_misjudge_progress() {
    // A coarse clock dates progress by the scans that see it; a scan that panicked after
    // seeing some must not leave the next one dating it by the scan before.
    let (t, clock) = mocked::<Fused>(Config::default().grace(100 * MS).coarse_ticks(true));
    let (ka, _) = Fused::new(1);
    let (kb, fuse) = Fused::new(2);
    let a = t.register(ka.clone()).unwrap();
    let b = t.register(kb.clone()).unwrap();
    t.track(1, &[a.id(), b.id()]).unwrap();
    t.track(2, &[a.id(), b.id()]).unwrap();
    assert!(t.scan().suspected.is_empty());
    clock.increment(90 * MS);
    a.flushed(1); // progress at 90 ms
    clock.increment(11 * MS);
    // At 101 ms the scan sees a's progress, then suspects b, whose key's `Clone` panics.
    // SeqCst: a test switch.
    fuse.store(1, Ordering::SeqCst);
    let tc = t.clone();
    assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tc.scan())).is_err());
    // SeqCst: a test switch.
    assert_eq!(fuse.swap(0, Ordering::SeqCst), 0, "the clone panicked");
    clock.increment(49 * MS);
    let r = t.scan();
    assert!(!r.suspected.contains(&ka), "a progressed 60 ms ago: {r:?}");
    assert_eq!(r.suspected, vec![kb], "b's suspicion is retried");
}

// --- 2. 2^24 defers between two scans on a coarse clock ---------------------------------------

/// A shape deferring `defers` times between two scans far enough apart that, had it not
/// deferred, it would be overdue: never suspected. Once it stops, it is suspected after
/// `grace`, as usual.
fn deferring_between_two_scans(defers: u64) {
    let grace = 100 * MS;
    let (t, clock) = mocked::<u32>(
        Config::default()
            .grace(grace)
            .challenge(Duration::ZERO)
            .coarse_ticks(true),
    );
    let w = t.register(1).unwrap();
    t.track(1, &[w.id()]).unwrap();
    clock.increment(MS);
    assert!(t.scan().suspected.is_empty());
    clock.increment(50 * MS);
    assert!(t.scan().suspected.is_empty());
    clock.increment(60 * MS); // 110 ms since the first scan, longer than the grace
    for _ in 0..defers {
        w.defer();
    }
    let r = t.scan();
    assert!(
        r.suspected.is_empty(),
        "{defers} defers a moment ago, and suspected"
    );
    assert!(!w.is_suspected());
    // Detection still works once it stops.
    clock.increment(MS);
    assert!(t.scan().suspected.is_empty());
    clock.increment(grace + MS);
    assert_eq!(t.scan().suspected, vec![1], "after {defers} defers");
}

#[test]
fn exactly_2_pow_24_defers_between_two_scans_count_as_progress() {
    deferring_between_two_scans(1 << 24);
}

#[test]
fn more_than_2_pow_24_defers_between_two_scans_count_as_progress() {
    deferring_between_two_scans((1 << 24) + 3);
}

// --- 3. register once the end is observable ----------------------------------------------------

/// How the shape ends in one round of [`register_once_the_end_is_observable`].
#[derive(Clone, Copy, Debug)]
enum Ender {
    Remove,
    Evict,
    Drop,
}

/// Rounds of: a shape of key 7 is ending on one thread while another polls `status(&7)` and
/// `id_of(&7)`; the moment either says the shape is gone, `register(7)` must succeed (the
/// oracle). Runs `rounds` rounds or for `budget`, whichever comes first; returns the rounds
/// run and the rounds whose `register` failed. No thread panics mid-round (a panic would leave
/// the others waiting at a barrier): failures are counted and asserted at the end.
fn register_once_the_end_is_observable(ender: Ender, rounds: u32, budget: Duration) -> (u32, u32) {
    let (t, clock) = mocked::<u32>(
        Config::default()
            .grace(Duration::ZERO)
            .challenge(Duration::ZERO),
    );
    let start = Barrier::new(3);
    let done = Barrier::new(3);
    let stop = AtomicBool::new(false);
    let failed = AtomicU32::new(0);
    let unended = AtomicU32::new(0);
    let slot: std::sync::Mutex<Option<Writer<u32>>> = std::sync::Mutex::new(None);
    let commit = AtomicU64::new(0);
    let deadline = Instant::now() + budget;
    let mut ran = 0;
    std::thread::scope(|s| {
        // The ender.
        s.spawn(|| loop {
            start.wait();
            // SeqCst: the round's switch, set by the main thread before the barrier.
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let ended = match ender {
                Ender::Remove => t.remove(&7),
                Ender::Evict => t.scan().stalled == [7],
                Ender::Drop => slot.lock().unwrap().take().is_some(),
            };
            if !ended {
                // SeqCst: read by the main thread after the last round.
                unended.fetch_add(1, Ordering::SeqCst);
            }
            done.wait();
        });
        // The observer: the oracle.
        s.spawn(|| loop {
            start.wait();
            // SeqCst: as above.
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let mut polls = 0u64;
            let again = loop {
                polls += 1;
                let gone = if polls % 2 == 0 {
                    t.status(&7).is_none()
                } else {
                    t.id_of(&7).is_none()
                };
                if gone {
                    break t.register(7);
                }
            };
            match again {
                Ok(w) => w.retire(),
                Err(e) => {
                    assert_eq!(e, Error::DuplicateShape);
                    // SeqCst: read by the main thread after the last round.
                    failed.fetch_add(1, Ordering::SeqCst);
                }
            }
            done.wait();
        });
        while ran < rounds && Instant::now() < deadline {
            let w = t.register(7).unwrap();
            // SeqCst: commits strictly increase across rounds.
            let c = commit.fetch_add(1, Ordering::SeqCst) + 1;
            t.track(c, &[w.id()]).unwrap();
            if let Ender::Evict = ender {
                clock.increment(MS);
                assert_eq!(t.scan().suspected, vec![7]);
                clock.increment(MS);
            }
            *slot.lock().unwrap() = Some(w);
            start.wait();
            done.wait();
            // The removed or evicted writer goes now (the dropped one went in the round).
            drop(slot.lock().unwrap().take());
            let _ = t.events().try_iter().count();
            ran += 1;
        }
        // SeqCst: as above.
        stop.store(true, Ordering::SeqCst);
        start.wait();
    });
    // SeqCst (both): the threads are joined.
    assert_eq!(
        unended.load(Ordering::SeqCst),
        0,
        "{ender:?} did not end the shape"
    );
    (ran, failed.load(Ordering::SeqCst))
}

fn check_register_once_the_end_is_observable(ender: Ender) {
    let (ran, failed) = register_once_the_end_is_observable(ender, ROUNDS, BUDGET);
    assert_eq!(
        failed, 0,
        "{ender:?}: {failed} of {ran} rounds saw the end, then got DuplicateShape"
    );
    assert!(ran > 100, "{ender:?}: only {ran} rounds");
}

const ROUNDS: u32 = 20_000;
const BUDGET: Duration = Duration::from_secs(8);

#[test]
fn register_succeeds_once_a_removal_is_observable() {
    check_register_once_the_end_is_observable(Ender::Remove);
}

#[test]
fn register_succeeds_once_an_eviction_is_observable() {
    check_register_once_the_end_is_observable(Ender::Evict);
}

#[test]
fn register_succeeds_once_a_writer_drop_is_observable() {
    check_register_once_the_end_is_observable(Ender::Drop);
}

// --- 4. idle: since the last progress, never since creation, never reset by a re-arm ---------

#[test]
fn idle_before_any_scan_counts_from_becoming_pending() {
    for coarse in [true, false] {
        let (t, clock) = mocked::<u32>(Config::default().coarse_ticks(coarse));
        clock.increment(800 * MS);
        let w = t.register(1).unwrap();
        t.track(1, &[w.id()]).unwrap();
        clock.increment(MS);
        let idle = t.status(&1).unwrap().idle;
        assert!(
            idle >= MS && idle <= 2 * MS,
            "coarse = {coarse}: pending for 1 ms, idle {idle:?}"
        );
    }
}

/// A shape wedged for 30 s under `StallPolicy::Report` (grace 10 s, challenge 2 s, a scan a
/// second): its idle time (status, pinned_by, events) keeps counting from when it became
/// pending, while the stall machine re-arms (suspected at 11 s, stalled at 14 s, suspected
/// again at 25 s, stalled again at 28 s).
fn wedged_under_report(coarse: bool) {
    let (t, clock) = mocked::<u32>(
        Config::default()
            .grace(10 * SEC)
            .challenge(2 * SEC)
            .stall_policy(StallPolicy::Report)
            .coarse_ticks(coarse),
    );
    let w = t.register(1).unwrap();
    t.track(1, &[w.id()]).unwrap();
    // Exact ticks read the truth; coarse ones may overstate it by up to one scan interval.
    let close = |idle: Duration, truth: Duration| {
        if coarse {
            idle >= truth.saturating_sub(SEC) && idle <= truth + SEC
        } else {
            idle == truth
        }
    };
    let (mut suspected_at, mut stalled_at) = (Vec::new(), Vec::new());
    for s in 0..=30u64 {
        let truth = Duration::from_secs(s);
        let r = t.scan();
        let status = t.status(&1).unwrap();
        assert!(
            close(status.idle, truth),
            "at {s} s: idle {:?}",
            status.idle
        );
        let pinned = t.pinned_by().unwrap();
        assert!(
            close(pinned.idle, truth),
            "at {s} s: pinned_by idle {:?}",
            pinned.idle
        );
        for e in t.events().try_iter() {
            match e {
                Event::Suspected { idle, .. } | Event::Stalled { idle, .. } => {
                    assert!(close(idle, truth), "at {s} s: {e:?}")
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        if !r.suspected.is_empty() {
            suspected_at.push(s);
        }
        if !r.stalled.is_empty() {
            stalled_at.push(s);
        }
        clock.increment(SEC);
    }
    // The re-arm still restarts the stall machine.
    if coarse {
        // A coarse clock dates the re-arm by the scan that sees it (at 15 s, bounded by that
        // scan's end): suspected again when idle since then exceeds the grace, one scan later
        // than on an exact clock, within the detection bound (grace + challenge + 2 scans + r).
        assert_eq!((suspected_at, stalled_at), (vec![11, 26], vec![14, 29]));
    } else {
        assert_eq!((suspected_at, stalled_at), (vec![11, 25], vec![14, 28]));
    }
}

#[test]
fn idle_is_not_reset_by_a_rearm_under_report() {
    wedged_under_report(false);
}

#[test]
fn idle_is_not_reset_by_a_rearm_under_report_on_a_coarse_clock() {
    wedged_under_report(true);
}

// --- 5. a Writer is Send, not Sync -----------------------------------------------------------

#[test]
fn a_writer_is_send() {
    fn send<T: Send>(_: &T) {}
    let t = FlushTracker::<u32>::new(Config::default()).unwrap();
    let w = t.register(1).unwrap();
    send(&w);
    t.track(3, &[w.id()]).unwrap();
    std::thread::spawn(move || w.flushed(3)).join().unwrap();
    assert_eq!(t.scan().watermark, 3);
    assert!(t.register(1).is_ok(), "the writer ended with its thread");
}
