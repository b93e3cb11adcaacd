//! The producer path: `track` with 1, 10 and 1,000 affected shapes per commit.
//!
//! 10,000 shapes are registered; a commit names `k` of them spread evenly over the table (every
//! `10_000 / k`-th), so consecutive shapes of a commit do not share cache lines. Throughput is
//! `Elements(k)`: criterion's time per element is the cost per affected shape.
//!
//! `track_scale`: the same functions with 300,000 shapes registered and 1 or 10,000 of them per
//! commit (every 30th for 10,000: each affected shape on its own line, a new 4 KiB page every
//! second shape), the sizes Electric's users run.
//!
//! - `flushwatch`: the steady state of a busy pipeline, every named shape already pending (its
//!   consumers have not caught up), so `track` raises `sent` and nothing else.
//! - `flushwatch_wake`: every named shape caught up before each commit, so `track` makes it
//!   pending (raise to the previous commit, fresh tick). Each iteration is `k` writer flushes (the consumers
//!   catching up) plus the `track`: the figure includes one `flushed` per shape (~1-3 ns, see
//!   `benches/flush.rs`).
//! - baselines: the steady state, like `flushwatch`. The actor's timing is end to end (a round
//!   trip closes each sample).
//!
//! `track_remote`: `track` as a pipeline's producer meets it, and [`TrackHint`]. 100,000 shapes
//! whose writers live on a consumer thread that sweeps them without pause, reporting each caught
//! up (a report is a store to the shape's slot line only where the shape had a new commit); the
//! producer, on another core, tracks one shape per commit, in a pseudo-random order. Before each
//! `track` it does a fixed piece of other work (`PARSE`, standing for the transaction's rows
//! being parsed: the same instructions in every case):
//! - `parse_track`: the work, then `track`;
//! - `hint_parse_track`: the shape's `TrackHint::prefetch()`, the work, then `track`, as
//!   pg-pipeline does when it routes a row;
//! - `parse`: the work alone, the floor of both. What `track` costs in each is its time less
//!   this one (`scripts/bench-summary` prints both differences and their ratio).
//!
//! Run: `cargo bench --bench track`.

mod baselines;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use baselines::{Actor, Dash, Design, Electric, MutexMap, Shape};
use criterion::{measurement::WallTime, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use flushwatch::{Config, FlushTracker, ShapeId, TrackHint, Writer};

/// Registered shapes and shapes per commit: the `track` group, then `track_scale`.
const REGISTERED: usize = 10_000;
const AFFECTED: [usize; 3] = [1, 10, 1_000];
const REGISTERED_AT_SCALE: usize = 300_000;
const AFFECTED_AT_SCALE: [usize; 2] = [1, 10_000];

/// The `k` shapes of a commit among `n` registered: every `n / k`-th index.
fn spread(n: usize, k: usize) -> impl Iterator<Item = usize> {
    (0..k).map(move |i| i * (n / k))
}

fn tracker(n: usize) -> (FlushTracker<u64>, Vec<Writer<u64>>) {
    // No scan runs in this bench; the long grace keeps the setup explicit all the same.
    let config = Config::default().grace(Duration::from_secs(24 * 3600));
    let tracker = FlushTracker::new(config).expect("valid config");
    let writers = (0..n as u64)
        .map(|key| tracker.register(key).expect("fresh key"))
        .collect();
    (tracker, writers)
}

fn bench_flushwatch(g: &mut BenchmarkGroup<'_, WallTime>, n: usize, k: usize) {
    let (tracker, writers) = tracker(n);
    let ids: Vec<ShapeId> = spread(n, k).map(|i| writers[i].id()).collect();
    let mut commit = 0u64;
    g.bench_function(BenchmarkId::new("flushwatch", k), |b| {
        b.iter(|| {
            commit += 1;
            black_box(
                tracker
                    .track(commit, black_box(&ids))
                    .expect("increasing commit"),
            );
        })
    });
    if commit > 0 {
        let report = tracker.scan();
        assert_eq!(report.pending, k, "the named shapes are pending");
        assert_eq!(report.watermark, 0, "nobody flushed");
    }
}

fn bench_flushwatch_wake(g: &mut BenchmarkGroup<'_, WallTime>, n: usize, k: usize) {
    let (tracker, writers) = tracker(n);
    let mine: Vec<&Writer<u64>> = spread(n, k).map(|i| &writers[i]).collect();
    let ids: Vec<ShapeId> = mine.iter().map(|w| w.id()).collect();
    let mut commit = 0u64;
    g.bench_function(BenchmarkId::new("flushwatch_wake", k), |b| {
        b.iter(|| {
            for w in &mine {
                w.flushed(commit); // caught up: `commit` is what was sent last
            }
            commit += 1;
            black_box(
                tracker
                    .track(commit, black_box(&ids))
                    .expect("increasing commit"),
            );
        })
    });
    if commit > 1 {
        let report = tracker.scan();
        assert_eq!(report.pending, k, "the named shapes are pending again");
        let previous = tracker.track(commit + 1, &[]).expect("increasing").previous;
        assert_eq!(previous, commit);
        assert_eq!(
            tracker.status(mine[0].key()).map(|s| s.flushed),
            Some(commit - 1),
            "raised to the previous commit (dense commits here)"
        );
    }
}

fn bench_baseline<D: Design>(g: &mut BenchmarkGroup<'_, WallTime>, n: usize, k: usize) {
    let d = D::create();
    for key in 0..n as u64 {
        d.register(key);
    }
    let shapes: Vec<Shape> = spread(n, k).map(|i| i as u64).collect();
    let mut commit = 0u64;
    g.bench_function(BenchmarkId::new(D::NAME, k), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                commit += 1;
                d.track(commit, black_box(&shapes));
            }
            black_box(d.watermark()); // the actor's round trip; a lock for the others
            start.elapsed()
        })
    });
    assert_eq!(d.watermark(), 0, "{}: nobody flushed", D::NAME);
}

fn bench_track(c: &mut Criterion, group: &str, n: usize, affected: &[usize]) {
    let mut g = c.benchmark_group(group);
    for &k in affected {
        g.throughput(Throughput::Elements(k as u64));
        bench_flushwatch(&mut g, n, k);
        bench_flushwatch_wake(&mut g, n, k);
        bench_baseline::<MutexMap>(&mut g, n, k);
        bench_baseline::<Dash>(&mut g, n, k);
        bench_baseline::<Electric>(&mut g, n, k);
        bench_baseline::<Actor>(&mut g, n, k);
    }
    g.finish();
}

/// Shapes in `track_remote`.
const REMOTE: usize = 100_000;
/// Rounds of [`parse`] before each `track` in `track_remote` (0.4 µs here, `BENCHMARKS.md`).
const PARSE: u64 = 400;

/// The producer's other work before a commit: a fixed chain of dependent integer operations.
#[inline(never)]
fn parse(seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..PARSE {
        x = black_box(x.rotate_left(7) ^ x.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    }
    x
}

fn bench_remote(c: &mut Criterion) {
    let (tracker, writers) = tracker(REMOTE);
    let ids: Vec<ShapeId> = writers.iter().map(|w| w.id()).collect();
    let hints: Vec<TrackHint> = writers.iter().map(|w| w.track_hint()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sweeps = 0u64;
            // Relaxed: a stop flag; the join below orders everything else.
            while !stop.load(Ordering::Relaxed) {
                for w in &writers {
                    w.flushed(u64::MAX); // clamped to what was sent: caught up
                }
                sweeps += 1;
            }
            (writers, sweeps)
        })
    };
    let mut g = c.benchmark_group("track_remote");
    let mut commit = 0u64;
    let mut k = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        k ^= k << 13;
        k ^= k >> 7;
        k ^= k << 17;
        (k % REMOTE as u64) as usize
    };
    g.bench_function(BenchmarkId::new("parse", REMOTE), |b| {
        b.iter(|| black_box(parse(next() as u64)))
    });
    g.bench_function(BenchmarkId::new("parse_track", REMOTE), |b| {
        b.iter(|| {
            let i = next();
            black_box(parse(i as u64));
            commit += 1;
            black_box(tracker.track(commit, &[ids[i]]).expect("increasing"))
        })
    });
    g.bench_function(BenchmarkId::new("hint_parse_track", REMOTE), |b| {
        b.iter(|| {
            let i = next();
            hints[i].prefetch();
            black_box(parse(i as u64));
            commit += 1;
            black_box(tracker.track(commit, &[ids[i]]).expect("increasing"))
        })
    });
    g.finish();
    // Relaxed: see the consumer's load.
    stop.store(true, Ordering::Relaxed);
    let (writers, sweeps) = consumer.join().expect("the consumer does not panic");
    // The consumer kept up: everything tracked so far was reported by it, or is now.
    for w in &writers {
        w.flushed(u64::MAX);
    }
    assert_eq!(tracker.scan().watermark, commit, "every commit reported");
    println!("remote: {commit} commits tracked, {sweeps} consumer sweeps of {REMOTE} shapes");
}

fn main() {
    baselines::self_check_all();
    let mut c = Criterion::default().configure_from_args();
    bench_track(&mut c, "track", REGISTERED, &AFFECTED);
    bench_track(
        &mut c,
        "track_scale",
        REGISTERED_AT_SCALE,
        &AFFECTED_AT_SCALE,
    );
    bench_remote(&mut c);
    c.final_summary();
}
