//! `tracker-mem N`: the heap a `FlushTracker` holds for N shapes keyed as pg-pipeline keys
//! them (table index and remainder, 8 bytes inline), counted by a global allocator.
//!
//! Counted from just before `FlushTracker::new` (the caller's own vectors of writers and ids
//! are allocated before that, as a consumer's are its own): the N registrations, then a
//! stream of commits like the pipeline's (1 to 4 shapes each, random over all N, each shape
//! reported durable about 64 commits later, a scan every 256 commits) long enough to touch
//! every shape about twice, so that whatever the tracker grows lazily (pending set, scanner
//! records) is in the figure. Prints the live bytes per shape at the end (`bytes_per_shape`),
//! the peak, and the worst case where every shape is pending at once (`all_pending`); and the
//! time one `id_of` lookup of every shape takes (`id_of_sweep_ms`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};

use flushwatch::{Config, FlushTracker, ShapeId, Writer};

/// Counts live bytes (and their peak), then defers to the system allocator.
struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);
static PEAK: AtomicI64 = AtomicI64::new(0);

fn add(n: i64) {
    // Relaxed: statistics; this program allocates on one thread (the tracker's own calls run
    // on it; no scanner thread is spawned).
    let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    // Relaxed: as above.
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees hold; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as i64);
        // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as i64);
        // SAFETY: forwarded as is; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as i64));
        // SAFETY: forwarded as is; `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size as i64 - layout.size() as i64);
        // SAFETY: forwarded as is; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// pg-pipeline's shape key: table index and remainder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    table: u16,
    k: u32,
}

fn live() -> i64 {
    // Relaxed: see `add`.
    LIVE.load(Ordering::Relaxed)
}

/// xorshift64*: a deterministic stream of shape choices.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
        .max(1);
    let key = |i: usize| Key {
        table: (i % 4) as u16,
        k: (i / 4) as u32,
    };
    // The caller's own memory, before the baseline.
    let mut writers: Vec<Writer<Key>> = Vec::with_capacity(n);
    let mut ids: Vec<ShapeId> = Vec::with_capacity(n);
    let mut touched: Vec<ShapeId> = Vec::with_capacity(8);
    let mut due: VecDeque<(usize, u64)> = VecDeque::with_capacity(8 * 64 + 8);
    let base = live();
    // Relaxed: see `add`.
    PEAK.store(base, Ordering::Relaxed);

    let tracker: FlushTracker<Key> = FlushTracker::new(Config::default()).expect("config");
    for i in 0..n {
        let w = tracker.register(key(i)).expect("register");
        ids.push(w.id());
        writers.push(w);
    }
    let registered = live() - base;

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let commits = (n / 2).max(10_000) as u64;
    for c in 1..=commits {
        touched.clear();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(n);
            touched.push(ids[i]);
            due.push_back((i, c));
        }
        tracker.track(c, &touched).expect("track");
        while due.front().is_some_and(|&(_, at)| at + 64 <= c) {
            let (i, at) = due.pop_front().expect("checked");
            writers[i].flushed(at);
        }
        if c % 256 == 0 {
            tracker.scan();
        }
    }
    for (i, at) in due.drain(..) {
        writers[i].flushed(at);
    }
    tracker.scan();
    let used = live() - base;
    // Relaxed: see `add`.
    let peak = PEAK.load(Ordering::Relaxed) - base;

    // The worst case: one commit pending on every shape at once, scanned.
    tracker.track(commits + 1, &ids).expect("track");
    tracker.scan();
    let all_pending = live() - base;
    for w in &writers {
        w.flushed(commits + 1);
    }
    tracker.scan();

    // What pg-pipeline's acknowledgement did before it drained the event queue instead: look
    // every shape up (`id_of`) on every acknowledgement. Timed here, warm, best of 5.
    let sweep = (0..5)
        .map(|_| {
            let t = std::time::Instant::now();
            let live = (0..n)
                .filter(|&i| tracker.id_of(&key(i)) == Some(ids[i]))
                .count();
            assert_eq!(live, n);
            t.elapsed()
        })
        .min()
        .expect("five runs");

    let per = |b: i64| b as f64 / n as f64;
    println!(
        "tracker-mem: shapes={n} commits={commits} registered_bytes={registered} used_bytes={used} peak_bytes={peak} all_pending_bytes={all_pending} registered_per_shape={:.1} bytes_per_shape={:.1} peak_per_shape={:.1} all_pending_per_shape={:.1} id_of_sweep_ms={:.3}",
        per(registered),
        per(used),
        per(peak),
        per(all_pending),
        sweep.as_secs_f64() * 1e3
    );
    drop(writers);
}
