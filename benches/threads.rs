//! Aggregate flush throughput with 1 and 2 threads, each on its own writers.
//!
//! Each thread owns 1,000 shapes (so `T` threads share a tracker of `1000 * T` shapes, all pending
//! as in `benches/flush.rs`) and flushes a random one of its own per call: every thread has the
//! same working set whatever `T`, so the scaling shows sharing and contention, not a smaller
//! per-thread table fitting a cache better. The threads are persistent: spawned once per design and thread count, started and stopped by two
//! barriers around each criterion sample (`iter_custom`), so a sample times exactly `iters` calls
//! on every thread at once. Throughput is `Elements(T)` per iteration: criterion's elem/s is the
//! aggregate rate. The actor's threads end each sample with a round trip, so its timing is end to
//! end; its tracker thread is a third thread on this 2-core machine, which is part of the design.
//!
//! Run: `cargo bench --bench threads`.

mod baselines;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use baselines::{
    flushwatch_pending, Actor, Dash, Design, Electric, FloorSlot, MutexMap, Shape, XorShift, BIG,
};
use criterion::{measurement::WallTime, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use flushwatch::{Config, FlushTracker, Writer};

/// Shapes each thread owns.
const PER_THREAD: usize = 1_000;
const THREADS: [usize; 2] = [1, 2];

/// One worker's job: do `iters` flushes on its own shapes.
type Job = Box<dyn FnMut(u64) + Send>;

/// Persistent worker threads run in lock step with the bench thread through two barriers.
struct Crew {
    start: Arc<Barrier>,
    done: Arc<Barrier>,
    iters: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Crew {
    fn new(jobs: Vec<Job>) -> Self {
        let start = Arc::new(Barrier::new(jobs.len() + 1));
        let done = Arc::new(Barrier::new(jobs.len() + 1));
        let iters = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = jobs
            .into_iter()
            .enumerate()
            .map(|(i, mut job)| {
                let (start, done) = (start.clone(), done.clone());
                let (iters, stop) = (iters.clone(), stop.clone());
                std::thread::Builder::new()
                    .name(format!("bench-worker-{i}"))
                    .spawn(move || loop {
                        start.wait();
                        // Relaxed: the start barrier orders this after the bench thread's store.
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        // Relaxed: ordered by the start barrier, like `stop`.
                        job(iters.load(Ordering::Relaxed));
                        done.wait();
                    })
                    .expect("spawn a bench worker")
            })
            .collect();
        Self {
            start,
            done,
            iters,
            stop,
            threads,
        }
    }

    /// Every worker does `iters` calls; returns the wall time from start to the last one done.
    fn run(&self, iters: u64) -> Duration {
        // Relaxed: published to the workers by the start barrier.
        self.iters.store(iters, Ordering::Relaxed);
        let t0 = Instant::now();
        self.start.wait();
        self.done.wait();
        t0.elapsed()
    }
}

impl Drop for Crew {
    fn drop(&mut self) {
        // Relaxed: published to the workers by the start barrier below.
        self.stop.store(true, Ordering::Relaxed);
        self.start.wait();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The shapes thread `t` owns.
fn chunk(t: usize) -> std::ops::Range<usize> {
    t * PER_THREAD..(t + 1) * PER_THREAD
}

fn bench_crew(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, threads: usize, jobs: Vec<Job>) {
    let crew = Crew::new(jobs);
    g.throughput(Throughput::Elements(threads as u64));
    g.bench_function(BenchmarkId::new(name, threads), |b| {
        b.iter_custom(|iters| crew.run(iters))
    });
}

fn floor_jobs(threads: usize) -> Vec<Job> {
    (0..threads)
        .map(|t| {
            let slots: Vec<FloorSlot> = chunk(t).map(|_| FloorSlot::default()).collect();
            let mut rng = XorShift::new(0x1234_5678 + t as u64);
            let mut pos = 0u64;
            Box::new(move |iters: u64| {
                for _ in 0..iters {
                    pos += 1;
                    slots[rng.below(slots.len())].flushed(pos);
                }
            }) as Job
        })
        .collect()
}

fn flushwatch_jobs(threads: usize) -> (FlushTracker<u64>, Vec<Job>) {
    let (tracker, mut writers) = flushwatch_pending(PER_THREAD * threads, Config::default());
    let mut jobs = Vec::new();
    for t in (0..threads).rev() {
        let mine: Vec<Writer<u64>> = writers.drain(chunk(t)).collect();
        let mut rng = XorShift::new(0x1234_5678 + t as u64);
        let mut pos = 0u64;
        jobs.push(Box::new(move |iters: u64| {
            for _ in 0..iters {
                pos += 1;
                mine[rng.below(mine.len())].flushed(pos);
            }
        }) as Job);
    }
    (tracker, jobs)
}

fn baseline_jobs<D: Design + 'static>(threads: usize) -> Vec<Job> {
    let d = Arc::new(D::create());
    let keys: Vec<Shape> = (0..(PER_THREAD * threads) as u64).collect();
    for &k in &keys {
        d.register(k);
    }
    d.track(1, &keys);
    d.track(BIG, &keys);
    (0..threads)
        .map(|t| {
            let d = d.clone();
            let mine: Vec<Shape> = keys[chunk(t)].to_vec();
            let mut rng = XorShift::new(0x1234_5678 + t as u64);
            let mut pos = 0u64;
            Box::new(move |iters: u64| {
                for _ in 0..iters {
                    pos += 1;
                    d.flushed(mine[rng.below(mine.len())], pos);
                }
                // End to end for the actor (a no-op lock for the others).
                black_box(d.watermark());
            }) as Job
        })
        .collect()
}

/// 512 bytes on a 256-byte boundary: two threads' "slots" at a chosen distance inside it.
#[repr(align(256))]
struct Block([AtomicU64; 64]);

/// Distances between the two threads' slots, in bytes: the same 64-byte line, adjacent lines
/// (the layout of `flushwatch`'s 64-byte slots), 128 bytes (crossbeam's `CachePadded` on
/// x86_64: a pair of lines, against the adjacent-line prefetcher) and 256 bytes.
const DISTANCES: [usize; 4] = [16, 64, 128, 256];

/// Two jobs, each storing a tick and a position (`Release`, the hot path's two stores) to its
/// own pair of words, the second job's pair `distance` bytes after the first's.
fn neighbour_jobs(distance: usize) -> Vec<Job> {
    let block = Arc::new(Block(std::array::from_fn(|_| AtomicU64::new(0))));
    (0..2)
        .map(|t| {
            let block = block.clone();
            let word = t * distance / 8;
            Box::new(move |iters: u64| {
                let (tick, pos) = (&block.0[word], &block.0[word + 1]);
                for i in 0..iters {
                    // Relaxed: published by the Release store below (as in `Slot::report`).
                    tick.store(i, Ordering::Relaxed);
                    // Release: the hot path's publication; nothing reads it here.
                    pos.store(black_box(i), Ordering::Release);
                }
            }) as Job
        })
        .collect()
}

/// False sharing between neighbouring slots written from two cores, interleaved like
/// [`interleaved`]: each distance's crew runs `ROUNDS` windows in turn with the others, and the
/// medians are printed as a `threads:` line per distance (ns per pair of stores per thread).
fn neighbours() {
    let crews: Vec<(usize, Crew)> = DISTANCES
        .iter()
        .map(|&d| (d, Crew::new(neighbour_jobs(d))))
        .collect();
    for (_, crew) in &crews {
        crew.run(WINDOW_CALLS / 4); // warm up
    }
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); crews.len()];
    for round in 0..ROUNDS {
        for k in 0..crews.len() {
            let i = if round % 2 == 0 {
                k
            } else {
                crews.len() - 1 - k
            };
            let took = crews[i].1.run(WINDOW_CALLS);
            ns[i].push(took.as_nanos() as f64 / WINDOW_CALLS as f64);
        }
    }
    for ((d, _), v) in crews.iter().zip(&mut ns) {
        v.sort_by(f64::total_cmp);
        let median = (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0;
        println!(
            "threads: neighbours, 2 threads, slots {d} B apart: {median:.2} ns per flush \
             (two stores) per thread, median of {ROUNDS} windows of {WINDOW_CALLS}; best {:.2} ns",
            v[0]
        );
    }
}

fn bench_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("threads");
    for threads in THREADS {
        bench_crew(&mut g, "floor", threads, floor_jobs(threads));
        {
            // The tracker outlives the crew (and so the writers it owns).
            let (_tracker, jobs) = flushwatch_jobs(threads);
            bench_crew(&mut g, "flushwatch", threads, jobs);
        }
        bench_crew(
            &mut g,
            MutexMap::NAME,
            threads,
            baseline_jobs::<MutexMap>(threads),
        );
        bench_crew(&mut g, Dash::NAME, threads, baseline_jobs::<Dash>(threads));
        bench_crew(
            &mut g,
            Electric::NAME,
            threads,
            baseline_jobs::<Electric>(threads),
        );
        bench_crew(
            &mut g,
            Actor::NAME,
            threads,
            baseline_jobs::<Actor>(threads),
        );
    }
    g.finish();
}

/// Rounds, and calls per thread in one window, of the interleaved comparison.
const ROUNDS: usize = 10;
const WINDOW_CALLS: u64 = 20_000_000;

/// On a shared 2-core machine a burst of other work during the 2-thread benchmark takes a core
/// away from it, and criterion measures the two thread counts minutes apart. So the scaling of
/// `floor` and `flushwatch` is also measured interleaved: a 1-thread crew and a 2-thread crew,
/// both parked at their barriers, take turns (`ROUNDS` windows each, alternating order). Printed
/// as a `threads:` line with the medians, and the best window of each (the least disturbed).
fn interleaved(name: &str, one: Vec<Job>, two: Vec<Job>) {
    let crews = [Crew::new(one), Crew::new(two)];
    for crew in &crews {
        crew.run(WINDOW_CALLS / 4); // warm up
    }
    let mut mops: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..ROUNDS {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let took = crews[i].run(WINDOW_CALLS);
            let calls = (i as u64 + 1) * WINDOW_CALLS;
            mops[i].push(calls as f64 / took.as_nanos() as f64 * 1e3);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let (b1, b2) = (best(&mops[0]), best(&mops[1]));
    let (m1, m2) = (median(&mut mops[0]), median(&mut mops[1]));
    println!(
        "threads: interleaved, {name}, {ROUNDS} windows of {WINDOW_CALLS} calls per thread: 1 thread \
         {m1:.1} Mops/s, 2 threads {m2:.1} Mops/s, 2 vs 1 {:.2}x (medians); best windows {b1:.1} \
         and {b2:.1} Mops/s, {:.2}x",
        m2 / m1,
        b2 / b1,
    );
}

fn main() {
    baselines::self_check_all();
    if baselines::wanted("threads/interleaved") {
        interleaved("floor", floor_jobs(1), floor_jobs(2));
        let (_t1, one) = flushwatch_jobs(1);
        let (_t2, two) = flushwatch_jobs(2);
        interleaved("flushwatch", one, two);
    }
    if baselines::wanted("threads/neighbours") {
        neighbours();
    }
    let mut c = Criterion::default().configure_from_args();
    bench_threads(&mut c);
    c.final_summary();
}
