//! The flush hot path, one thread: `Writer::flushed` next to the floor and the baselines.
//!
//! Every shape is pending for the whole run and every call is real progress: each shape is
//! tracked at commit 1 (pending, flushed raised to 0) and then at a huge commit (still pending,
//! so nothing is raised), and the reported positions come from one counter that increases by one
//! per call, so each report is above the shape's flushed position and below what was sent.
//!
//! Four floors, none of them a correct tracker: `floor` is two `Release` stores to a 64-byte
//! aligned slot in a contiguous vector plus a `Relaxed` read of a coarse tick (the floor
//! the targets are stated against); `floor_checked` adds the two loads a correct flush cannot skip (clamp to `sent`,
//! progress check), so its slot line is read before it is written; `floor_shared` is
//! `floor_checked` with a `fetch_max` in place of the position's store (what a `Writer` shared
//! between threads would need to stay monotonic; `Writer` is not `Sync`); `floor_handle` is
//! `floor_checked` behind a handle exactly as large as a `Writer<u64>` (an `Arc` to the slot
//! plus padding), so with a random writer per call it pays the same handle cache misses as
//! `flushwatch` does in this bench. The gap between `floor_handle` and `flushwatch` is what the
//! core's own flush path costs.
//!
//! With 1 shape the bench holds the writer, as a consumer does. With 1k and 100k shapes each call
//! picks a random writer from a `Vec` (xorshift + multiply-shift, ~1 ns); every design pays the
//! same indexing, so the differences are the flushes. The actor's timing is end to end: a batch of
//! sends followed by a round trip that returns once the tracker thread has processed them all.
//!
//! Run: `cargo bench --bench flush` (see BENCHMARKS.md and `scripts/bench-summary`).

mod baselines;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use baselines::{
    flushwatch_pending, Actor, Dash, Design, Electric, FloorSlot, MutexMap, Shape, XorShift, BIG,
};
use criterion::{measurement::WallTime, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use flushwatch::{Config, Writer};

/// Shape counts of the group.
const SHAPES: [usize; 3] = [1, 1_000, 100_000];

/// The per-call inputs: which shape (random among `n`, or the held one when `n == 1`) and an
/// increasing position. Kept outside the timed closures so positions keep increasing across
/// criterion's samples.
struct Ops {
    rng: XorShift,
    pos: u64,
}

impl Ops {
    fn new(seed: u64) -> Self {
        Self {
            rng: XorShift::new(seed),
            pos: 0,
        }
    }

    #[inline(always)]
    fn next(&mut self, n: usize) -> (usize, u64) {
        self.pos += 1;
        let i = if n == 1 { 0 } else { self.rng.below(n) };
        (i, self.pos)
    }
}

/// `floor_checked`'s slot behind a handle as large as a `Writer<u64>`.
struct Handle {
    slot: Arc<FloorSlot>,
    _rest: [u8; HANDLE_PADDING],
}

const HANDLE_PADDING: usize =
    std::mem::size_of::<Writer<u64>>() - std::mem::size_of::<Arc<FloorSlot>>();

impl Default for Handle {
    fn default() -> Self {
        Self {
            slot: Arc::new(FloorSlot::with_sent(BIG)),
            _rest: [0; HANDLE_PADDING],
        }
    }
}

fn baseline_pending<D: Design>(n: usize) -> (D, Vec<Shape>) {
    let d = D::create();
    let keys: Vec<Shape> = (0..n as u64).collect();
    for &k in &keys {
        d.register(k);
    }
    d.track(1, &keys);
    d.track(BIG, &keys);
    assert_eq!(d.watermark(), 0, "{}: every shape pending at 0", D::NAME);
    (d, keys)
}

fn bench_baseline<D: Design>(g: &mut BenchmarkGroup<'_, WallTime>, n: usize) {
    let (d, keys) = baseline_pending::<D>(n);
    let mut ops = Ops::new(0x9e37_79b9_7f4a_7c15);
    g.bench_function(BenchmarkId::new(D::NAME, n), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let (i, pos) = ops.next(n);
                d.flushed(keys[i], pos);
            }
            // A no-op for the locked designs; for the actor, the round trip that makes the
            // timing end to end.
            black_box(d.watermark());
            start.elapsed()
        })
    });
    // The work was done: every shape that was flushed is past 0 (the actor processed it all).
    let w = d.watermark();
    assert!(
        w <= ops.pos,
        "{}: watermark {w} above the last report",
        D::NAME
    );
    if n == 1 {
        assert_eq!(
            w,
            ops.pos,
            "{}: the single shape is at the last report",
            D::NAME
        );
    }
}

fn bench_flush(c: &mut Criterion) {
    let mut g = c.benchmark_group("flush");
    g.throughput(Throughput::Elements(1));
    for n in SHAPES {
        {
            // The floor: a contiguous vector of aligned slots, the same indexing as the others.
            let slots: Vec<FloorSlot> = (0..n).map(|_| FloorSlot::default()).collect();
            let mut ops = Ops::new(0x9e37_79b9_7f4a_7c15);
            g.bench_function(BenchmarkId::new("floor", n), |b| {
                b.iter(|| {
                    let (i, pos) = ops.next(n);
                    slots[i].flushed(pos);
                })
            });
            if ops.pos > 0 {
                assert!(slots.iter().any(|s| s.position() > 0), "the floor stored");
            }
        }
        {
            // The floor plus the loads a correct flush needs (clamp, progress check).
            let slots: Vec<FloorSlot> = (0..n).map(|_| FloorSlot::with_sent(BIG)).collect();
            let mut ops = Ops::new(0x9e37_79b9_7f4a_7c15);
            g.bench_function(BenchmarkId::new("floor_checked", n), |b| {
                b.iter(|| {
                    let (i, pos) = ops.next(n);
                    slots[i].flushed_checked(pos);
                })
            });
            if ops.pos > 0 {
                assert!(slots.iter().any(|s| s.position() > 0), "the floor stored");
            }
        }
        {
            // The checked floor made monotonic under sharing (`fetch_max`): what a `Sync`
            // writer would pay (`Writer` is not `Sync`, so it pays `floor_checked`).
            let slots: Vec<FloorSlot> = (0..n).map(|_| FloorSlot::with_sent(BIG)).collect();
            let mut ops = Ops::new(0x9e37_79b9_7f4a_7c15);
            g.bench_function(BenchmarkId::new("floor_shared", n), |b| {
                b.iter(|| {
                    let (i, pos) = ops.next(n);
                    slots[i].flushed_shared(pos);
                })
            });
            if ops.pos > 0 {
                assert!(slots.iter().any(|s| s.position() > 0), "the floor stored");
            }
        }
        {
            let slots: Vec<Handle> = (0..n).map(|_| Handle::default()).collect();
            let mut ops = Ops::new(0x9e37_79b9_7f4a_7c15);
            g.bench_function(BenchmarkId::new("floor_handle", n), |b| {
                b.iter(|| {
                    let (i, pos) = ops.next(n);
                    slots[i].slot.flushed_checked(pos);
                })
            });
        }
        {
            let (tracker, writers) = flushwatch_pending(n, Config::default());
            let mut ops = Ops::new(0x9e37_79b9_7f4a_7c15);
            g.bench_function(BenchmarkId::new("flushwatch", n), |b| {
                b.iter(|| {
                    let (i, pos) = ops.next(n);
                    writers[i].flushed(pos);
                })
            });
            // The reports were applied: the watermark moved off 0 only if every shape flushed.
            let report = tracker.scan();
            assert_eq!(report.pending, n, "every shape is still pending");
            if n == 1 {
                assert_eq!(
                    report.watermark, ops.pos,
                    "the held writer is at the last report"
                );
            }
        }
        bench_baseline::<MutexMap>(&mut g, n);
        bench_baseline::<Dash>(&mut g, n);
        bench_baseline::<Electric>(&mut g, n);
        bench_baseline::<Actor>(&mut g, n);
    }
    g.finish();
}

fn main() {
    baselines::self_check_all();
    let mut c = Criterion::default().configure_from_args();
    bench_flush(&mut c);
    c.final_summary();
}
