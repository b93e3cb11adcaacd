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
//! Run: `cargo bench --bench track`.

mod baselines;

use std::hint::black_box;
use std::time::{Duration, Instant};

use baselines::{Actor, Dash, Design, Electric, MutexMap, Shape};
use criterion::{measurement::WallTime, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use flushwatch::{Config, FlushTracker, ShapeId, Writer};

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
    c.final_summary();
}
