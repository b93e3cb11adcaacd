//! `scan()` with 1k, 100k and 1M registered shapes, all pending and 1% pending; plus, before
//! criterion starts, the memory per registered shape and the allocation counts of the steady
//! state, measured with a counting global allocator.
//!
//! Scan: every shape is tracked at commit 1; for "1% pending" 99 of every 100 shapes then flush
//! to 1 (caught up), for "10% pending" 9 of every 10. A scan visits only the pending set, so
//! these cost what the pending shapes cost, next to the floor over every registered line. Throughput is `Elements(n)`: criterion's time per element is ns per
//! registered shape. The grace is a day, so no shape is ever suspected or evicted while a scan
//! is measured: this is the steady state, a scan that finds nothing to report. The baselines
//! `mutex_hashmap` and `dashmap` compute their watermark by a scan too, and are measured beside
//! it (all pending), as is `floor`: the minimum over one 64-byte slot per shape and nothing
//! else, the memory-bound floor of any design that keeps each shape in its own cache line.
//!
//! The counting allocator costs one relaxed atomic add per allocation; `scan`, the only code
//! timed here, allocates nothing in the steady state (checked below).
//!
//! `scan_cold`: the same scans with other memory walked between them, as in a pipeline where
//! other work runs between scans. Before each timed scan (outside the timed region) a pass reads
//! one 64-byte line per registered shape in another allocation, which evicts the slots' lines
//! from L1 and L2 and their pages from the TLB; the line floor gets the same treatment in the
//! same run. Whether the slots also leave the last-level cache depends on its size: the pass
//! over 1M lines is 64 MiB, over 100k 6.4 MiB (see `BENCHMARKS.md` for the host measured).
//! `flushwatch_all_pending_shuffled` and `floor_shuffled` visit the slots in a shuffled order,
//! as a pipeline's pending set is (shapes join it in the order commits touch them).
//!
//! Before criterion starts, the same cold scans and floors are also timed interleaved, a block
//! of scans and a block of floors in each round (`cold:` lines): on a shared machine the load
//! can change between two of criterion's measurements, less so within one round.
//!
//! Run: `cargo bench --bench scan` (`-- scan_cold` for the cold group only).

mod baselines;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use baselines::{
    floor_scan, flushwatch_tracked, Dash, Design, Electric, FloorSlot, MutexMap, Shape,
};
use criterion::{BenchmarkId, Criterion, Throughput};
use flushwatch::{Config, FlushTracker, ShapeId, Writer};

/// Counts live bytes and allocation calls, then defers to the system allocator.
struct Counting;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees hold; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // Relaxed: statistics, read after the measured code on the same thread; nothing is
        // published through them.
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // Relaxed: as above.
        LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // Relaxed: statistics only, as in `alloc`.
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // Relaxed: as above.
        LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded as is; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Relaxed: statistics only, as in `alloc`.
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded as is; `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Relaxed: statistics only, as in `alloc`.
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // Relaxed: as above.
        LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded as is; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live_bytes() -> i64 {
    // Relaxed: read on the thread that did the measured work.
    LIVE_BYTES.load(Ordering::Relaxed)
}

fn allocations() -> u64 {
    // Relaxed: read on the thread that did the measured work.
    ALLOCATIONS.load(Ordering::Relaxed)
}

const SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];
const MEMORY_SHAPES: usize = 100_000;

/// No shape is ever overdue while a scan is timed.
fn config() -> Config {
    Config::default().grace(Duration::from_secs(24 * 3600))
}

/// A tracker with `n` shapes all tracked at commit 1, and every `1/pending_every`-th one left
/// pending (the others flush to 1).
fn flushwatch_table(
    n: usize,
    pending_every: usize,
    config: Config,
) -> (FlushTracker<u64>, Vec<Writer<u64>>) {
    let (tracker, writers) = flushwatch_tracked(n, config);
    for (i, w) in writers.iter().enumerate() {
        if i % pending_every != 0 {
            w.flushed(1);
        }
    }
    let report = tracker.scan();
    assert_eq!(report.pending, n.div_ceil(pending_every));
    assert_eq!(report.watermark, 0);
    (tracker, writers)
}

fn per_shape(bytes: i64, n: usize) -> f64 {
    bytes as f64 / n as f64
}

/// Heap bytes per registered shape (after `register`, then after one `track` of every shape),
/// for `flushwatch` and the baselines, printed as `memory:` lines that `scripts/bench-summary`
/// collects. Keys are `u64`: 8 bytes per copy of a key are included in these figures.
fn report_memory() {
    let n = MEMORY_SHAPES;
    {
        let keys: Vec<u64> = (0..n as u64).collect();
        let mut writers: Vec<Writer<u64>> = Vec::with_capacity(n);
        let mut ids: Vec<ShapeId> = Vec::with_capacity(n);
        let before = live_bytes();
        let tracker = FlushTracker::new(config()).expect("valid config");
        let empty = live_bytes();
        for &k in &keys {
            writers.push(tracker.register(k).expect("fresh key"));
        }
        let registered = live_bytes();
        ids.extend(writers.iter().map(Writer::id));
        let ids_done = live_bytes();
        tracker.track(1, &ids).expect("first commit");
        let tracked = live_bytes();
        black_box(tracker.scan());
        let scanned = live_bytes();
        println!(
            "memory: flushwatch {n} shapes: registered {:.1} B/shape, after track {:.1} B/shape, \
             after scan {:.1} B/shape (empty tracker {} B; Writer<u64> handle {} B inline, held by \
             the consumer)",
            per_shape(registered - empty, n),
            per_shape(tracked - ids_done + registered - empty, n),
            per_shape(scanned - ids_done + registered - empty, n),
            empty - before,
            std::mem::size_of::<Writer<u64>>(),
        );
        drop(writers);
        drop(tracker);
    }
    memory_of::<Electric>(n);
    memory_of::<MutexMap>(n);
    memory_of::<Dash>(n);
}

fn memory_of<D: Design>(n: usize) {
    let keys: Vec<Shape> = (0..n as u64).collect();
    let before = live_bytes();
    let d = D::create();
    for &k in &keys {
        d.register(k);
    }
    let registered = live_bytes();
    d.track(1, &keys);
    let tracked = live_bytes();
    println!(
        "memory: {} {n} shapes: registered {:.1} B/shape, after track {:.1} B/shape",
        D::NAME,
        per_shape(registered - before, n),
        per_shape(tracked - before, n),
    );
}

/// Allocation calls in the steady state of `flushed`, `track` and `scan`, printed as
/// `allocations:` lines. The target is zero for `flushed` and `track`.
fn report_allocations() {
    const SHAPES: usize = 1_000;
    let tracker = FlushTracker::new(config()).expect("valid config");
    let writers: Vec<Writer<u64>> = (0..SHAPES as u64)
        .map(|k| tracker.register(k).expect("fresh key"))
        .collect();
    let ids: Vec<ShapeId> = writers.iter().map(Writer::id).collect();
    let ten_writers: Vec<&Writer<u64>> = writers.iter().step_by(100).collect();
    let ten: Vec<ShapeId> = ten_writers.iter().map(|w| w.id()).collect();
    let mut commit = 0;
    fn steady(label: &str, calls: u64, f: &mut dyn FnMut()) {
        for _ in 0..1_000 {
            f(); // warm up: first-time growth is not the steady state
        }
        let before = allocations();
        for _ in 0..calls {
            f();
        }
        let n = allocations() - before;
        println!("allocations: flushwatch {label}: {n} in {calls} calls");
    }
    steady("track (10 shapes, pending)", 100_000, &mut || {
        commit += 1;
        black_box(tracker.track(commit, &ten).expect("increasing commit"));
    });
    // Track everything once more, far ahead, so every report below is progress.
    let big = u64::MAX / 2;
    tracker.track(big, &ids).expect("increasing commit");
    let mut pos = commit;
    let mut i = 0;
    steady(
        "flushed (1k shapes, pending, progress)",
        1_000_000,
        &mut || {
            pos += 1;
            i = (i + 1) % SHAPES;
            writers[i].flushed(pos);
        },
    );
    let mut c2 = big;
    steady(
        "track (10 shapes, waking: flush + track)",
        100_000,
        &mut || {
            for w in &ten_writers {
                w.flushed(c2); // caught up: `c2` is what was sent last
            }
            c2 += 1;
            black_box(tracker.track(c2, &ten).expect("increasing commit"));
        },
    );
    steady("scan (1k shapes)", 10_000, &mut || {
        black_box(tracker.scan());
    });
}

fn bench_scan(c: &mut Criterion) {
    let mut g = c.benchmark_group("scan");
    g.sample_size(10);
    for n in SIZES {
        g.throughput(Throughput::Elements(n as u64));
        let variants = [
            ("flushwatch_all_pending", 1, config()),
            ("flushwatch_10pct_pending", 10, config()),
            ("flushwatch_1pct_pending", 100, config()),
            // All pending without the lag classifier (`Event::Lagging`): what it costs a scan.
            ("flushwatch_all_pending_nolag", 1, config().lag_window(0)),
        ];
        for (name, every, config) in variants {
            let (tracker, writers) = flushwatch_table(n, every, config);
            g.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter(|| black_box(tracker.scan()))
            });
            drop(writers);
        }
        // The floor: one 64-byte slot per shape, min over the pending ones, nothing else.
        let slots: Vec<FloorSlot> = (0..n).map(|_| FloorSlot::with_sent(1)).collect();
        g.bench_function(BenchmarkId::new("floor", n), |b| {
            b.iter(|| black_box(floor_scan(black_box(&slots), 1)))
        });
        drop(slots);
        baseline_scan::<MutexMap>(&mut g, n);
        baseline_scan::<Dash>(&mut g, n);
    }
    g.finish();
}

/// A tracker with `n` shapes all pending, tracked at commit 1 in a shuffled order: the scan
/// visits their slots in that order, as in a pipeline where shapes become pending in whatever
/// order commits touch them (the other tables list them in slot order, which the hardware
/// prefetcher follows).
fn flushwatch_shuffled(n: usize) -> (FlushTracker<u64>, Vec<Writer<u64>>) {
    let tracker = FlushTracker::new(config()).expect("valid config");
    let writers: Vec<Writer<u64>> = (0..n as u64)
        .map(|k| tracker.register(k).expect("fresh key"))
        .collect();
    let order = shuffled(n);
    let ids: Vec<ShapeId> = order.iter().map(|&i| writers[i].id()).collect();
    tracker.track(1, &ids).expect("first commit");
    assert_eq!(tracker.scan().pending, n);
    (tracker, writers)
}

/// `0..n` in a fixed pseudo-random order (Fisher-Yates with xorshift64).
fn shuffled(n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    order
}

/// Registered shapes in the cold group.
const COLD_SIZES: [usize; 2] = [100_000, 1_000_000];

/// One line of the other allocation that the cold group walks between scans.
#[repr(align(64))]
struct Line([u64; 8]);

/// Reads one word of every line: each line is brought into L1, evicting what was there (the
/// hardware prefetcher follows the sequential walk, so the pass itself is fast).
fn walk(lines: &[Line]) -> u64 {
    lines
        .iter()
        .fold(0u64, |sum, line| sum.wrapping_add(black_box(line).0[0]))
}

/// Times `scan` alone, after a [`walk`] over `lines` before each call (not timed).
fn cold<R>(b: &mut criterion::Bencher<'_>, lines: &[Line], mut scan: impl FnMut() -> R) {
    b.iter_custom(|iters| {
        let mut timed = Duration::ZERO;
        for _ in 0..iters {
            black_box(walk(black_box(lines)));
            let start = Instant::now();
            black_box(scan());
            timed += start.elapsed();
        }
        timed
    })
}

fn bench_scan_cold(c: &mut Criterion) {
    let mut g = c.benchmark_group("scan_cold");
    // The walk costs more than the scan it precedes, and criterion budgets by the timed part:
    // short budgets keep the group to about a minute.
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for n in COLD_SIZES {
        g.throughput(Throughput::Elements(n as u64));
        let lines: Vec<Line> = (0..n as u64).map(|i| Line([i; 8])).collect();
        for (name, every) in [
            ("flushwatch_all_pending", 1),
            ("flushwatch_1pct_pending", 100),
        ] {
            let (tracker, writers) = flushwatch_table(n, every, config());
            g.bench_function(BenchmarkId::new(name, n), |b| {
                cold(b, &lines, || tracker.scan())
            });
            drop(writers);
        }
        let (tracker, writers) = flushwatch_shuffled(n);
        g.bench_function(
            BenchmarkId::new("flushwatch_all_pending_shuffled", n),
            |b| cold(b, &lines, || tracker.scan()),
        );
        drop(writers);
        // The floors: every line (all pending), and every 100th line (1% pending; a constant
        // stride, which the hardware's stride prefetcher follows, unlike a real pending set).
        let slots: Vec<FloorSlot> = (0..n).map(|_| FloorSlot::with_sent(1)).collect();
        g.bench_function(BenchmarkId::new("floor", n), |b| {
            cold(b, &lines, || floor_scan(black_box(&slots), 1))
        });
        g.bench_function(BenchmarkId::new("floor_1pct", n), |b| {
            cold(b, &lines, || {
                floor_scan(black_box(&slots).iter().step_by(100), 1)
            })
        });
        // Every line, in the shuffled order (through a list of indices, as a scan's records).
        let order: Vec<u32> = shuffled(n).into_iter().map(|i| i as u32).collect();
        g.bench_function(BenchmarkId::new("floor_shuffled", n), |b| {
            cold(b, &lines, || {
                let slots = black_box(&slots);
                floor_scan(order.iter().map(|&i| &slots[i as usize]), 1)
            })
        });
    }
    g.finish();
}

/// Rounds of the interleaved cold comparison ([`report_cold_interleaved`]), and runs of each
/// side per round (the first of which is not counted).
const COLD_ROUNDS: usize = 15;
const COLD_BLOCK: usize = 5;

/// The median of `v` (sorted in place).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The median time of `f` in µs over `COLD_BLOCK - 1` runs, each after a [`walk`] over
/// `lines`, after one such run that is not counted (it finds what the other side left).
fn cold_block<R>(lines: &[Line], mut f: impl FnMut() -> R) -> f64 {
    let mut times: Vec<f64> = (0..COLD_BLOCK)
        .map(|_| {
            black_box(walk(black_box(lines)));
            let start = Instant::now();
            black_box(f());
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    median(&mut times[1..])
}

/// The cold scans next to their floors, interleaved, printed as `cold:` lines (collected by
/// `scripts/bench-summary`): each of [`COLD_ROUNDS`] rounds times a block of scans, then a
/// block of floors over exactly the lines those scans must read, each run after a walk over
/// the other allocation ([`cold_block`]). A scan and its floor are thus timed within a second
/// of each other, under the same load from the rest of the machine, where criterion times them
/// a minute apart; the ratio reported is the median of the rounds' ratios. Where the walk is
/// larger than the last-level cache (1M shapes here) this is the cold state criterion measures.
/// Where it is not (100k), the other side's block pushes part of a case's data out of that cache,
/// which criterion's long runs of one case do not (`BENCHMARKS.md`, "Cold scan").
fn report_cold_interleaved() {
    for n in COLD_SIZES {
        let lines: Vec<Line> = (0..n as u64).map(|i| Line([i; 8])).collect();
        let slots: Vec<FloorSlot> = (0..n).map(|_| FloorSlot::with_sent(1)).collect();
        let order: Vec<u32> = shuffled(n).into_iter().map(|i| i as u32).collect();
        let cases: [(&str, usize); 3] = [("all pending", 1), ("1% pending", 100), ("shuffled", 0)];
        for (label, every) in cases {
            let (tracker, writers) = if every == 0 {
                flushwatch_shuffled(n)
            } else {
                flushwatch_table(n, every, config())
            };
            let floor = || match every {
                0 => floor_scan(order.iter().map(|&i| &slots[i as usize]), 1),
                _ => floor_scan(slots.iter().step_by(every), 1),
            };
            let (mut scans, mut floors, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..COLD_ROUNDS {
                let scan = cold_block(&lines, || tracker.scan());
                let line_floor = cold_block(&lines, floor);
                scans.push(scan);
                floors.push(line_floor);
                ratios.push(scan / line_floor);
            }
            println!(
                "cold: interleaved, {n} shapes, {label}: scan {:.1} us, floor {:.1} us (medians \
                 of {COLD_ROUNDS} rounds of {} runs each); scan / floor {:.2}x (median of the \
                 rounds' ratios)",
                median(&mut scans),
                median(&mut floors),
                COLD_BLOCK - 1,
                median(&mut ratios),
            );
            drop(writers);
        }
    }
}

fn baseline_scan<D: Design>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    n: usize,
) {
    let d = D::create();
    let keys: Vec<Shape> = (0..n as u64).collect();
    for &k in &keys {
        d.register(k);
    }
    d.track(1, &keys);
    g.bench_function(BenchmarkId::new(D::NAME, n), |b| {
        b.iter(|| black_box(d.watermark()))
    });
}

fn main() {
    baselines::self_check_all();
    report_memory();
    report_allocations();
    report_cold_interleaved();
    let mut c = Criterion::default().configure_from_args();
    bench_scan(&mut c);
    bench_scan_cold(&mut c);
    c.final_summary();
}
