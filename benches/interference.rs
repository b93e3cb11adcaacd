//! Scanner interference: one thread's flush cost with no scanner, with the background scanner at
//! its default interval (100 ms), at 1 ms, and with another thread calling `scan()` in a tight
//! loop.
//!
//! The flushing thread is the bench thread, flushing a random writer among `n` per call, all
//! shapes pending, every call progress (as in `benches/flush.rs`). The same tracker and writers
//! serve every variant of one `n`, except `scanner_1ms`, which needs its own `Config`. The group
//! ends with `no_scanner_again`, the first variant measured once more: the gap between the two
//! is the run-to-run noise of this machine, the yardstick for the 2% target.
//!
//! Before criterion starts, the same comparison is made interleaved (see [`interleaved`]): the
//! figure to read for the 2% target on a shared machine.
//!
//! The grace is a day so that no shape is suspected or evicted while flushes are measured (an
//! evicted writer's flushes are cheaper, which would flatter the scanner).
//!
//! Run: `cargo bench --bench interference`.

mod baselines;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use baselines::{flushwatch_pending, XorShift};
use criterion::{measurement::WallTime, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use flushwatch::{Config, FlushTracker, Writer};

const SHAPES: [usize; 2] = [1_000, 100_000];

struct Table {
    tracker: FlushTracker<u64>,
    writers: Vec<Writer<u64>>,
    rng: XorShift,
    pos: u64,
}

impl Table {
    fn new(n: usize, config: Config) -> Self {
        let (tracker, writers) = flushwatch_pending(n, config);
        Self {
            tracker,
            writers,
            rng: XorShift::new(0x9e37_79b9_7f4a_7c15),
            pos: 0,
        }
    }

    fn bench(&mut self, g: &mut BenchmarkGroup<'_, WallTime>, name: &str) {
        let n = self.writers.len();
        let (writers, rng, pos) = (&self.writers, &mut self.rng, &mut self.pos);
        g.bench_function(BenchmarkId::new(name, n), |b| {
            b.iter(|| {
                *pos += 1;
                writers[rng.below(n)].flushed(*pos);
            })
        });
    }
}

impl Table {
    /// Flushes (as `bench` does) for about `window`; returns ns per flush.
    fn timed_window(&mut self, window: Duration) -> f64 {
        let n = self.writers.len();
        let start = Instant::now();
        let mut calls = 0u64;
        while start.elapsed() < window {
            for _ in 0..100_000 {
                self.pos += 1;
                self.writers[self.rng.below(n)].flushed(self.pos);
            }
            calls += 100_000;
        }
        start.elapsed().as_nanos() as f64 / calls as f64
    }
}

/// Rounds and window of the interleaved comparison.
const ROUNDS: usize = 10;
const WINDOW: Duration = Duration::from_millis(500);

/// The 2% target is below this shared machine's drift between two criterion benchmarks run a
/// minute apart, so it is also measured interleaved: `ROUNDS` pairs of `WINDOW`-long flush
/// windows, one with the background scanner at its default interval (a fresh `spawn_scanner`,
/// whose first scan runs at once) and one without, in alternating order; the medians of each
/// side are compared. Printed as an `interference:` line that `scripts/bench-summary` reads.
fn interleaved(n: usize) {
    let mut table = Table::new(n, Config::default());
    table.timed_window(WINDOW); // warm up
    let (mut off, mut on) = (Vec::new(), Vec::new());
    let scans_before = table.tracker.stats().scans;
    for round in 0..ROUNDS {
        for with_scanner in [round % 2 == 0, round % 2 != 0] {
            let scanner =
                with_scanner.then(|| table.tracker.spawn_scanner().expect("no scanner runs yet"));
            let ns = table.timed_window(WINDOW);
            drop(scanner);
            if with_scanner { &mut on } else { &mut off }.push(ns);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    let (off, on) = (median(&mut off), median(&mut on));
    println!(
        "interference: interleaved A/B, {n} shapes, {ROUNDS} x 2 windows of {WINDOW:?}: no scanner \
         {off:.2} ns/flush, scanner at 100 ms {on:.2} ns/flush (medians), {:+.1}% ({} scans)",
        (on / off - 1.0) * 100.0,
        table.tracker.stats().scans - scans_before,
    );
}

/// A thread that calls `scan()` back to back until dropped.
struct Spinner {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Spinner {
    fn start(tracker: FlushTracker<u64>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bench-spinning-scan".into())
            .spawn(move || {
                let mut scans = 0u64;
                // Relaxed: a stop request; nothing else is published through it.
                while !flag.load(Ordering::Relaxed) {
                    black_box(tracker.scan());
                    scans += 1;
                }
                scans
            })
            .expect("spawn the spinning scanner");
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        // Relaxed: a stop request, see the loop; the join below orders the rest.
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let scans = t.join().expect("the spinning scanner does not panic");
            if scans > 0 {
                println!("interference: the spinning scanner ran {scans} scans");
            }
        }
    }
}

fn bench_interference(c: &mut Criterion) {
    let mut g = c.benchmark_group("interference");
    g.throughput(Throughput::Elements(1));
    for n in SHAPES {
        let mut table = Table::new(n, Config::default());
        table.bench(&mut g, "no_scanner");
        {
            let before = table.tracker.stats().scans;
            let scanner = table.tracker.spawn_scanner().expect("no scanner runs yet");
            table.bench(&mut g, "scanner_100ms");
            drop(scanner);
            let stats = table.tracker.stats();
            if stats.scans > before {
                println!(
                    "interference: the background scanner ran {} scans over {n} shapes, the last \
                     one took {:?}",
                    stats.scans - before,
                    stats.last_scan,
                );
            }
        }
        {
            let _spinner = Spinner::start(table.tracker.clone());
            table.bench(&mut g, "scan_spinning");
        }
        {
            let mut fast = Table::new(n, Config::default().scan_interval(Duration::from_millis(1)));
            let _scanner = fast.tracker.spawn_scanner().expect("no scanner runs yet");
            fast.bench(&mut g, "scanner_1ms");
        }
        table.bench(&mut g, "no_scanner_again");
        let report = table.tracker.scan();
        assert_eq!(
            report.pending, n,
            "every shape still pending: nothing was evicted"
        );
    }
    g.finish();
}

fn main() {
    baselines::self_check_all();
    if baselines::wanted("interference/interleaved") {
        for n in SHAPES {
            interleaved(n);
        }
    }
    let mut c = Criterion::default().configure_from_args();
    bench_interference(&mut c);
    c.final_summary();
}
