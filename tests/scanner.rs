//! The background scanner with the real clock: detection within the documented bound, healthy
//! consumers untouched, prompt shutdown, a fixed rate.
//!
//! Nothing here sleeps to wait for the scanner: tests poll what they wait for with a deadline.
//! The sleeps left pace the simulated producer and consumers, or let real time pass where
//! the rule under test is about real time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flushwatch::{Config, Event, FlushTracker};

/// The tests here count scanner threads process-wide, so they run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn scanner_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .filter(|name| name.trim() == "flushwatch-scan") // the 15-byte kernel name
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_wedged_writer_is_stalled_within_the_bound_and_the_healthy_one_never_suspected() {
    let _serial = serial();
    let grace = Duration::from_millis(100);
    let challenge = Duration::from_millis(50);
    let interval = Duration::from_millis(20);
    // The documented bound: grace + challenge + 2 * scan_interval + r, with r = scan_interval here.
    let bound = grace + challenge + 3 * interval;
    let tracker = FlushTracker::new(
        Config::default()
            .grace(grace)
            .challenge(challenge)
            .scan_interval(interval),
    )
    .unwrap();
    let events = tracker.events();
    let healthy = tracker.register("healthy").unwrap();
    let wedged = tracker.register("wedged").unwrap();
    let ids = [healthy.id(), wedged.id()];
    let commit = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let _scanner = tracker.spawn_scanner().unwrap();

    let healthy = std::thread::scope(|s| {
        // Producer: a commit for both shapes every 2 ms.
        s.spawn(|| {
            let mut c = 0;
            // Relaxed: a test stop flag.
            while !stop.load(Ordering::Relaxed) {
                c += 1;
                tracker.track(c, &ids).unwrap();
                // Release: the consumers read it with Acquire and report only what was tracked.
                commit.store(c, Ordering::Release);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        // Healthy consumer: reports everything received, every 5 ms. Each consumer owns its
        // writer (a `Writer` is not `Sync`) and hands it back when done.
        let healthy = s.spawn(|| {
            let healthy = healthy;
            // Relaxed: a test stop flag.
            while !stop.load(Ordering::Relaxed) {
                // Acquire: pairs with the producer's Release store.
                healthy.flushed(commit.load(Ordering::Acquire));
                std::thread::sleep(Duration::from_millis(5));
            }
            healthy
        });
        // Wedged consumer: healthy for 100 ms, then stuck.
        let last_progress = s.spawn(|| {
            let wedged = wedged;
            let until = Instant::now() + Duration::from_millis(100);
            let mut last = Instant::now();
            while Instant::now() < until {
                // Acquire: pairs with the producer's Release store.
                wedged.flushed(commit.load(Ordering::Acquire));
                last = Instant::now();
                std::thread::sleep(Duration::from_millis(5));
            }
            (last, wedged)
        });
        let (last, wedged) = last_progress.join().unwrap();
        let deadline = last + bound + Duration::from_secs(5);
        let mut stalled_at = None;
        let mut suspected = Vec::new();
        while stalled_at.is_none() && Instant::now() < deadline {
            match events.recv_timeout(Duration::from_millis(10)) {
                Ok(Event::Stalled { key, evicted, .. }) => {
                    assert_eq!(key, "wedged");
                    assert!(evicted);
                    stalled_at = Some(Instant::now());
                }
                Ok(Event::Suspected { key, .. }) => suspected.push(key),
                _ => {}
            }
        }
        let stalled_at = stalled_at.expect("the wedged writer was never stalled");
        let latency = stalled_at - last;
        println!("detection latency {latency:?}, bound {bound:?} (+ one scan)");
        // Slack for a noisy, shared 2-core machine; the figure itself is printed above.
        assert!(
            latency <= bound + Duration::from_millis(150),
            "stalled {latency:?} after the last progress, bound {bound:?}"
        );
        // Ticks have the resolution of one scan, so a stall can come at most one interval early.
        assert!(
            latency + interval >= grace + challenge,
            "stalled too early: {latency:?}"
        );
        assert!(wedged.is_evicted());
        assert_eq!(suspected, vec!["wedged"]);

        // The watermark moves on with the healthy consumer.
        let before = tracker.watermark();
        let deadline = Instant::now() + Duration::from_secs(5);
        while tracker.watermark() == before && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert!(
            tracker.watermark() > before,
            "the watermark advances after eviction"
        );
        // Relaxed: a test stop flag.
        stop.store(true, Ordering::Relaxed);
        healthy.join().unwrap()
    });
    assert!(!healthy.is_suspected() && !healthy.is_evicted());
    assert!(!events
        .try_iter()
        .any(|e| matches!(e, Event::Suspected { key: "healthy", .. })));
}

#[test]
fn the_guard_stops_the_scanner_promptly() {
    let _serial = serial();
    let tracker =
        FlushTracker::<u8>::new(Config::default().scan_interval(Duration::from_secs(30))).unwrap();
    let scanner = tracker.spawn_scanner().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while tracker.stats().scans == 0 && Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(
        tracker.stats().scans,
        1,
        "the first scan runs at once, and only it"
    );
    let t0 = Instant::now();
    drop(scanner);
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "stopping took {:?}: it must not wait for the 30 s interval",
        t0.elapsed()
    );
}

#[test]
fn the_last_tracker_handle_stops_the_scanner() {
    let _serial = serial();
    let before = scanner_threads();
    let tracker =
        FlushTracker::<u8>::new(Config::default().scan_interval(Duration::from_secs(30))).unwrap();
    let writer = tracker.register(1).unwrap(); // a writer does not keep the scanner alive
    let clone = tracker.clone();
    let scanner = tracker.spawn_scanner().unwrap();
    std::mem::forget(scanner); // even a leaked guard does not keep it alive
    let deadline = Instant::now() + Duration::from_secs(5);
    while scanner_threads() == before && Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(scanner_threads(), before + 1, "the scanner thread started");
    drop(tracker);
    // For 20 ms, at every look, the thread is still there (not a wait for it: a check that
    // it does not go away).
    let until = Instant::now() + Duration::from_millis(20);
    while Instant::now() < until {
        assert!(
            scanner_threads() > before,
            "a clone still holds the tracker"
        );
    }
    drop(clone);
    let deadline = Instant::now() + Duration::from_secs(5);
    while scanner_threads() > before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(scanner_threads(), before, "the scanner thread exited");
    writer.flushed(1);
}

/// A key whose `clone` takes 3 ms: a scan that reports a pinned shape clones its key, so
/// every scan takes several milliseconds.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SlowKey(u8);

impl Clone for SlowKey {
    fn clone(&self) -> Self {
        std::thread::sleep(Duration::from_millis(3));
        SlowKey(self.0)
    }
}

#[test]
fn the_scanner_runs_at_a_fixed_rate() {
    // Scans of 6 ms or more, every 10 ms: at a fixed rate (a grid of 10 ms), 30 scans take
    // about 300 ms; at a fixed delay (10 ms after each scan ends) they would take 480 ms or
    // more. (Without slow scans the two are indistinguishable.)
    let _serial = serial();
    let interval = Duration::from_millis(10);
    let tracker = FlushTracker::new(Config::default().scan_interval(interval)).unwrap();
    let w = tracker.register(SlowKey(1)).unwrap();
    tracker.track(1, &[w.id()]).unwrap(); // pending: every scan names (clones) it
    let t0 = Instant::now();
    let scan = Instant::now();
    assert_eq!(tracker.scan().pinned_by, Some(SlowKey(1)));
    let one = scan.elapsed();
    assert!(one >= Duration::from_millis(6), "a scan took only {one:?}");
    let before = tracker.stats().scans;
    let scanner = tracker.spawn_scanner().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while tracker.stats().scans < before + 31 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(200));
    }
    let elapsed = t0.elapsed() - one;
    drop(scanner);
    let scans = tracker.stats().scans - before;
    assert!(scans >= 31, "{scans} scans in {elapsed:?}");
    // 31 scans span 30 intervals: 300 ms on the grid. A loaded machine may skip a grid point
    // now and then (a scan that overruns its slot); fixed delay needs 30 * 16 ms = 480 ms.
    assert!(
        elapsed < Duration::from_millis(420),
        "30 intervals took {elapsed:?}: not a fixed rate of {interval:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(290),
        "30 intervals took {elapsed:?}: faster than {interval:?}"
    );
}

/// A key whose first clone sleeps `SLOW_FIRST`: the scan that makes it (every scan names the
/// one pending shape) overruns several grid points.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SlowOnce(u8);

/// Set once the shape is registered (registering clones the key too): the next clone sleeps.
static ARMED: AtomicBool = AtomicBool::new(false);

const SLOW_FIRST: Duration = Duration::from_millis(55);

impl Clone for SlowOnce {
    fn clone(&self) -> Self {
        // Relaxed: a test flag; the spawn of the scanner orders the arming before its clones.
        if ARMED.swap(false, Ordering::Relaxed) {
            std::thread::sleep(SLOW_FIRST);
        }
        SlowOnce(self.0)
    }
}

#[test]
fn grid_points_missed_by_a_slow_scan_are_skipped_not_run_in_a_burst() {
    // A first scan of 55 ms on a 10 ms grid misses five grid points. The scanner then scans
    // once at once (catching up) and goes on at the grid points after: no window of 4 ms
    // holds more than three scan ends (the slow scan's, the catch-up's and the next grid
    // point's). Running the missed points in a burst puts six within a few microseconds;
    // losing the grid, no further scan at all. The test samples the scan counter: a
    // descheduled sampler can miss a burst, never invent one.
    let _serial = serial();
    let interval = Duration::from_millis(10);
    let tracker = FlushTracker::new(Config::default().scan_interval(interval)).unwrap();
    let w = tracker.register(SlowOnce(1)).unwrap();
    tracker.track(1, &[w.id()]).unwrap(); // pending: every scan clones its key
                                          // Relaxed: see `ARMED`.
    ARMED.store(true, Ordering::Relaxed);
    let scanner = tracker.spawn_scanner().unwrap();
    // (before, scans, after): the counter read between two clock reads, so that every scan it
    // counts beyond an earlier sample's ended after that sample's `before` and before this
    // one's `after`, however late the sampler ran. Kept: the first and the last sample of
    // each count.
    let sample = || {
        let before = Instant::now();
        let scans = tracker.stats().scans;
        (before, scans, Instant::now())
    };
    let mut samples = vec![sample()];
    let deadline = Instant::now() + Duration::from_secs(10);
    while samples.last().unwrap().1 < 10 && Instant::now() < deadline {
        std::thread::yield_now();
        let now = sample();
        let n = samples.len();
        if n >= 2 && samples[n - 1].1 == now.1 && samples[n - 2].1 == now.1 {
            samples[n - 1] = now;
        } else {
            samples.push(now);
        }
    }
    drop(scanner);
    let scans = samples.last().unwrap().1;
    assert!(
        scans >= 10,
        "{scans} scans in 10 s: the scanner lost its grid"
    );
    for (i, &(from, before, _)) in samples.iter().enumerate() {
        for &(_, after, to) in samples[i..]
            .iter()
            .take_while(|(_, _, to)| *to - from <= interval * 2 / 5)
        {
            assert!(
                after - before <= 3,
                "{} scans within {:?}: missed grid points run in a burst",
                after - before,
                to - from
            );
        }
    }
    drop(w);
}

#[test]
fn real_clock_manual_scans_far_apart_never_suspect_a_shape_that_just_progressed() {
    // The cadence rule on a real clock: scans three graces apart, challenge 0, a consumer
    // that progresses right before each scan. In 0.1 the coarse tick dated its progress to the
    // previous scan, and two back-to-back scans evicted it.
    let _serial = serial();
    let grace = Duration::from_millis(40);
    let tracker = FlushTracker::new(
        Config::default()
            .grace(grace)
            .challenge(Duration::ZERO)
            .scan_interval(Duration::from_millis(10)),
    )
    .unwrap();
    let w = tracker.register("a").unwrap();
    let mut commits = vec![4_096u64, 8_192];
    for &c in &commits {
        tracker.track(c, &[w.id()]).unwrap();
    }
    tracker.scan();
    for round in 0..6 {
        std::thread::sleep(grace * 3);
        w.flushed(commits[round]); // progress, still pending
        let r = tracker.scan();
        assert!(r.suspected.is_empty(), "round {round}: {r:?}");
        let r = tracker.scan();
        assert!(
            r.suspected.is_empty() && r.stalled.is_empty(),
            "round {round}: {r:?}"
        );
        let next = commits[commits.len() - 1] + 4_096;
        tracker.track(next, &[w.id()]).unwrap();
        commits.push(next);
    }
    assert!(!w.is_evicted());
    // And a real stall is still caught: no progress for longer than the grace.
    std::thread::sleep(grace * 2);
    assert_eq!(tracker.scan().suspected, vec!["a"]);
    std::thread::sleep(Duration::from_millis(1));
    assert_eq!(tracker.scan().stalled, vec!["a"]);
    assert!(w.is_evicted());
}
