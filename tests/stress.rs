//! Multi-thread stress tests with an oracle.
//!
//! A producer tracks sparse commits (random gaps, like LSNs) for random subsets of shapes and
//! hands each commit, with its `Tracked::previous`, to the shape's consumer; consumer threads
//! make commits "durable" (the oracle's record) and report them, in batches and partially
//! (`previous(c)` for a transaction written in part); a checker thread scans continuously.
//! After every scan the oracle asserts that the published watermark
//! - never passes a commit that some live shape was sent and has not made durable,
//! - never goes back,
//! - is always `start_at` or a tracked commit (never a position between two commits),
//! - and, once everyone has flushed everything, reaches the last commit.
//!
//! The oracle reads durability *after* each scan: durability only grows, so a commit that is
//! not durable then was not durable during the scan (no false alarms), and every commit at or
//! below the watermark was tracked before the scan read `last_seen` (so it is in the oracle's
//! sent list, which the producer appends to before `track`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use flushwatch::{Config, FlushTracker, ShapeId, StallPolicy, Writer};

/// splitmix64
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the oracle knows of one shape.
struct OracleShape {
    /// Commits sent to the shape and not yet durable, in order (appended by the producer
    /// before `track`, popped by the consumer as it makes them durable).
    undurable: Mutex<VecDeque<u64>>,
    /// Whether the shape still counts (false once evicted).
    live: AtomicBool,
}

impl OracleShape {
    fn new() -> Arc<Self> {
        Arc::new(OracleShape {
            undurable: Mutex::new(VecDeque::new()),
            live: AtomicBool::new(true),
        })
    }
    /// The first commit sent to the shape that is not durable.
    fn first_undurable(&self) -> Option<u64> {
        self.undurable.lock().unwrap().front().copied()
    }
}

struct Msg {
    shape: usize,
    commit: u64,
    /// `Tracked::previous` of the commit.
    previous: u64,
}

struct Run {
    shapes: usize,
    consumers: usize,
    commits: u64,
    /// A consumer that holds one shape's messages, once, until the shape is evicted or this
    /// long has passed (a wedge).
    wedge: Option<Duration>,
    config: Config,
}

/// What a run ended with.
struct Outcome {
    /// The final watermark.
    watermark: u64,
    /// The last commit tracked.
    last: u64,
    stats: flushwatch::Stats,
    /// The shapes the scans reported stalled (evicted under `StallPolicy::Evict`), in order.
    stalled: Vec<usize>,
}

/// Runs the scenario.
fn run(r: Run) -> Outcome {
    let tracker: FlushTracker<usize> = FlushTracker::new(r.config).unwrap();
    let oracle: Vec<Arc<OracleShape>> = (0..r.shapes).map(|_| OracleShape::new()).collect();
    let mut writers: Vec<Vec<(usize, Writer<usize>)>> =
        (0..r.consumers).map(|_| Vec::new()).collect();
    let mut ids: Vec<ShapeId> = Vec::new();
    for s in 0..r.shapes {
        let w = tracker.register(s).unwrap();
        ids.push(w.id());
        writers[s % r.consumers].push((s, w));
    }
    let (txs, rxs): (Vec<Sender<Msg>>, Vec<Receiver<Msg>>) =
        (0..r.consumers).map(|_| unbounded()).unzip();
    let done = Arc::new(AtomicBool::new(false));
    // Every commit tracked, ascending (appended by the producer before `track`), and start_at.
    let tracked: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(vec![0]));
    // The commit after which the wedge starts.
    let wedge_from = Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));

    std::thread::scope(|scope| {
        // The checker: scans and checks the oracle after every scan.
        let checker = {
            let tracker = tracker.clone();
            let oracle = oracle.clone();
            let done = done.clone();
            let tracked = tracked.clone();
            scope.spawn(move || {
                let mut prev = 0;
                let mut scans = 0u64;
                let mut stalled = Vec::new();
                loop {
                    // Relaxed: the final check below re-scans after joining everyone.
                    let finished = done.load(Ordering::Relaxed);
                    let report = tracker.scan();
                    scans += 1;
                    let w = report.watermark;
                    assert!(w >= prev, "watermark went back: {prev} -> {w}");
                    assert!(
                        tracked.lock().unwrap().binary_search(&w).is_ok(),
                        "watermark {w} is neither start_at nor a tracked commit"
                    );
                    prev = w;
                    for key in &report.stalled {
                        // Relaxed: read by this thread only.
                        oracle[*key].live.store(false, Ordering::Relaxed);
                        stalled.push(*key);
                    }
                    for (s, o) in oracle.iter().enumerate() {
                        // Relaxed: written by this thread only.
                        if !o.live.load(Ordering::Relaxed) {
                            continue;
                        }
                        if let Some(c) = o.first_undurable() {
                            assert!(
                                w < c,
                                "watermark {w} passes commit {c}, not yet durable in shape {s}"
                            );
                        }
                    }
                    if finished {
                        return (prev, scans, stalled);
                    }
                    std::thread::yield_now();
                }
            })
        };

        // Consumers.
        let mut consumer_handles = Vec::new();
        for (ci, (mine, rx)) in writers.into_iter().zip(rxs).enumerate() {
            let oracle = oracle.clone();
            let wedge_from = wedge_from.clone();
            let wedge = if ci == 0 { r.wedge } else { None };
            consumer_handles.push(scope.spawn(move || {
                let mut rng = Rng(ci as u64 + 1);
                let index: std::collections::HashMap<usize, usize> =
                    mine.iter().enumerate().map(|(i, (s, _))| (*s, i)).collect();
                let mut unreported: Vec<Option<u64>> = vec![None; mine.len()];
                let mut wedged_until: Option<Instant> = None;
                let wedged_shape = mine.first().map(|(s, _)| *s);
                let mut held: Vec<Msg> = Vec::new();
                let process = |m: Msg, rng: &mut Rng, unreported: &mut Vec<Option<u64>>| {
                    let i = index[&m.shape];
                    let (_, w) = &mine[i];
                    if rng.below(4) == 0 {
                        // Part of this transaction written, everything before it durable: the
                        // reporting contract says `previous(c)`, never `c - 1`.
                        w.flushed(m.previous);
                    }
                    // Durable: pop it from the oracle, then (maybe later) report.
                    let popped = oracle[m.shape].undurable.lock().unwrap().pop_front();
                    assert_eq!(popped, Some(m.commit), "consumer sees commits in order");
                    match rng.below(3) {
                        0 => {
                            w.flushed(m.commit);
                            unreported[i] = None;
                        }
                        _ => unreported[i] = Some(m.commit),
                    }
                    if rng.below(8) == 0 {
                        for (j, u) in unreported.iter_mut().enumerate() {
                            if let Some(c) = u.take() {
                                mine[j].1.flushed(c);
                            }
                        }
                    }
                };
                for m in rx.iter() {
                    if let (Some(d), Some(ws)) = (wedge, wedged_shape) {
                        // Relaxed: set by the producer before it sent this message.
                        let from = wedge_from.load(Ordering::Relaxed);
                        if m.shape == ws && m.commit > from && wedged_until.is_none() {
                            wedged_until = Some(Instant::now() + d);
                        }
                        if let Some(until) = wedged_until {
                            // Stuck until the scanner evicts the shape (or the cap passes):
                            // its messages are held, the other shapes' processed. (Draining
                            // the held ones at the next message of another shape, as this
                            // once did, ended the wedge at once: a healthy shape was evicted
                            // instead, and `evicted >= 1` passed.)
                            let stuck = !mine[index[&ws]].1.is_evicted();
                            if stuck && Instant::now() < until {
                                if m.shape == ws {
                                    held.push(m);
                                    continue;
                                }
                            } else {
                                for h in held.drain(..) {
                                    process(h, &mut rng, &mut unreported);
                                }
                            }
                        }
                    }
                    process(m, &mut rng, &mut unreported);
                }
                // Still wedged when the stream ends: report what the healthy shapes made
                // durable, and stay stuck until evicted or the cap.
                for (j, u) in unreported.iter_mut().enumerate() {
                    if let Some(c) = u.take() {
                        mine[j].1.flushed(c);
                    }
                }
                if let (Some(until), Some(ws)) = (wedged_until, wedged_shape) {
                    while !mine[index[&ws]].1.is_evicted() && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                for h in held.drain(..) {
                    process(h, &mut rng, &mut unreported);
                }
                for (j, u) in unreported.iter_mut().enumerate() {
                    if let Some(c) = u.take() {
                        mine[j].1.flushed(c);
                    }
                }
                mine // keep the writers alive until the end
            }));
        }

        // The producer.
        let mut rng = Rng(99);
        let mut named = Vec::new();
        let mut commit = 0u64;
        for n in 1..=r.commits {
            // Sparse positions: a random gap of 1 to 1000 between commits.
            commit += 1 + rng.below(1000);
            if n == r.commits / 4 {
                // Relaxed: read by a consumer after it receives a later message on a channel.
                wedge_from.store(commit, Ordering::Relaxed);
            }
            named.clear();
            let k = 1 + rng.below(3);
            for _ in 0..k {
                let s = rng.below(r.shapes as u64) as usize;
                if !named.contains(&s) {
                    named.push(s);
                }
            }
            for &s in &named {
                oracle[s].undurable.lock().unwrap().push_back(commit);
            }
            let shape_ids: Vec<ShapeId> = named.iter().map(|&s| ids[s]).collect();
            tracked.lock().unwrap().push(commit);
            let previous = tracker.track(commit, &shape_ids).unwrap().previous;
            for &s in &named {
                let msg = Msg {
                    shape: s,
                    commit,
                    previous,
                };
                txs[s % r.consumers].send(msg).unwrap();
            }
            if n % 64 == 0 {
                std::thread::yield_now();
            }
            if r.wedge.is_some() && n % 256 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        drop(txs);
        let writers: Vec<_> = consumer_handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        // Relaxed: the checker's last pass is ordered by the join below anyway.
        done.store(true, Ordering::Relaxed);
        let (last, scans, stalled) = checker.join().unwrap();
        assert!(scans > 10, "the checker ran only {scans} scans");
        let final_w = tracker.scan().watermark;
        assert!(final_w >= last);
        drop(writers);
        Outcome {
            watermark: final_w,
            last: commit,
            stats: tracker.stats(),
            stalled,
        }
    })
}

#[test]
fn stress_watermark_is_safe_monotone_and_complete() {
    let commits = 100_000;
    let out = run(Run {
        shapes: 16,
        consumers: 2,
        commits,
        wedge: None,
        config: Config::default(),
    });
    assert_eq!(
        out.watermark, out.last,
        "everyone flushed everything: the watermark reaches the last commit"
    );
    assert_eq!(out.stats.evicted, 0);
    assert_eq!(out.stalled, Vec::<usize>::new());
}

#[test]
fn stress_with_a_wedged_consumer_and_eviction_stays_safe() {
    // Real clock, short grace: the wedged shape is evicted; everything else stays safe, and
    // the watermark still reaches the end.
    let commits = 30_000;
    let out = run(Run {
        shapes: 8,
        consumers: 2,
        commits,
        // Wedged until evicted: the cap only bounds the test if detection were broken.
        wedge: Some(Duration::from_secs(20)),
        config: Config::default()
            .grace(Duration::from_millis(20))
            .challenge(Duration::from_millis(10))
            .scan_interval(Duration::from_millis(1))
            .stall_policy(StallPolicy::Evict),
    });
    let (stats, stalled) = (out.stats, out.stalled);
    assert_eq!(out.watermark, out.last);
    // Shape 0 (consumer 0's first) is the wedged one: it is evicted, once. A healthy shape
    // may be evicted too when the machine starves its consumer for longer than grace +
    // challenge (50 ms), so others are allowed, each once, and the count must agree.
    assert!(
        stalled.contains(&0),
        "the wedged shape 0 was evicted: {stalled:?}, {stats:?}"
    );
    let mut distinct = stalled.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        stalled.len(),
        "each shape evicted at most once: {stalled:?}"
    );
    assert_eq!(
        stats.evicted,
        stalled.len() as u64,
        "{stalled:?}, {stats:?}"
    );
    assert_eq!(stats.stalled, stats.evicted, "{stats:?}");
}

/// Three-way races with slot reuse: a producer tracks every shape, consumers report and also
/// drop their shape and register a new one (which takes the freed slot, often while a scan is
/// visiting it), and a checker scans without pause. Every published watermark must be a
/// position and at least the one before (the clamp in `scan`: a scan that reads a slot torn
/// between the dropped shape and the new one counts a pending shape at 0). Safety against
/// undurable commits is the other stress tests' oracle; here every shape reports as soon as
/// it was sent anything, so the watermark keeps rising.
#[test]
fn stress_publication_is_monotone_under_track_flushed_scan_and_slot_reuse() {
    const START: u64 = 1_000;
    let tracker: FlushTracker<u32> = FlushTracker::new(Config::default().start_at(START)).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    // Every position (start_at and every commit), appended before `track`.
    let tracked: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(vec![START]));
    // The live shapes' ids, each in its own cell (the consumers replace them as they churn).
    let cells: Vec<Arc<Mutex<Option<ShapeId>>>> = (0..4).map(|_| Arc::default()).collect();
    std::thread::scope(|scope| {
        let checker = {
            let (tracker, done, tracked) = (tracker.clone(), done.clone(), tracked.clone());
            scope.spawn(move || {
                let (mut prev, mut scans, mut rises) = (START, 0u64, 0u64);
                // Relaxed: the loop's last pass runs after the flag; nothing else is published.
                while !done.load(Ordering::Relaxed) {
                    let w = tracker.scan().watermark;
                    assert!(w >= prev, "the watermark went down: {prev} -> {w}");
                    assert!(
                        tracked.lock().unwrap().binary_search(&w).is_ok(),
                        "watermark {w} is neither start_at nor a tracked commit"
                    );
                    assert!(tracker.watermark() >= w);
                    rises += u64::from(w > prev);
                    prev = w;
                    scans += 1;
                }
                (scans, rises)
            })
        };
        for (k, cell) in cells.iter().enumerate() {
            let (tracker, cell, done) = (tracker.clone(), cell.clone(), done.clone());
            scope.spawn(move || {
                let mut generation = 0u32;
                // Relaxed: a stop flag.
                while !done.load(Ordering::Relaxed) {
                    let key = k as u32 * 1_000_000 + generation;
                    generation += 1;
                    let w = tracker.register(key).unwrap();
                    *cell.lock().unwrap() = Some(w.id());
                    // Wait (with a deadline) until the producer tracked it, report it caught
                    // up, then drop it: its slot is freed while still in the scan's set.
                    let deadline = Instant::now() + Duration::from_secs(5);
                    loop {
                        let sent = tracker.status(&key).map_or(0, |s| s.sent);
                        if sent > 0 {
                            w.flushed(sent);
                            break;
                        }
                        // Relaxed: a stop flag.
                        if done.load(Ordering::Relaxed) || Instant::now() > deadline {
                            break;
                        }
                        std::thread::yield_now();
                    }
                    *cell.lock().unwrap() = None;
                    drop(w);
                }
            });
        }
        let mut commit = START;
        let started = Instant::now();
        let mut commits = 0u64;
        while started.elapsed() < Duration::from_secs(2) || commits < 2_000 {
            commit += 1 + commits % 7;
            commits += 1;
            let ids: Vec<ShapeId> = cells.iter().filter_map(|c| *c.lock().unwrap()).collect();
            tracked.lock().unwrap().push(commit);
            tracker.track(commit, &ids).unwrap();
        }
        // Relaxed: a stop flag.
        done.store(true, Ordering::Relaxed);
        let (scans, rises) = checker.join().unwrap();
        assert!(scans > 100, "the checker ran only {scans} scans");
        assert!(
            rises > 10,
            "the watermark rose only {rises} times in {scans} scans"
        );
    });
    let churned = tracker.stats();
    assert_eq!(churned.evicted, 0, "{churned:?}");
}
