//! A counting global allocator proves that the hot path (`Writer::flushed`), `track` with
//! pre-registered ids, and a steady-state `scan` allocate nothing.
//!
//! Only allocations made by the measuring thread while it measures are counted (the flag and
//! the count are thread-local), so other tests running in parallel cannot disturb the count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use flushwatch::{Config, FlushTracker};

struct Counting;

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    if MEASURING.with(|m| m.get()) {
        ALLOCS.with(|a| a.set(a.get() + 1));
    }
}

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    let before = ALLOCS.with(|a| a.get());
    MEASURING.with(|m| m.set(true));
    f();
    MEASURING.with(|m| m.set(false));
    ALLOCS.with(|a| a.get()) - before
}

#[test]
fn the_counter_counts() {
    // The instrument itself works (so the zeros below mean something).
    let n = allocations(|| {
        let v: Vec<u64> = Vec::with_capacity(16);
        std::hint::black_box(v);
    });
    assert_eq!(n, 1);
}

#[test]
fn flushed_track_and_scan_allocate_nothing_in_steady_state() {
    let tracker = FlushTracker::new(Config::default()).unwrap();
    let writers: Vec<_> = (0..256u32).map(|k| tracker.register(k).unwrap()).collect();
    let ids: Vec<_> = writers.iter().map(|w| w.id()).collect();
    // Warm-up: scratch buffers and the scanner's pending set reach their steady size (every
    // shape pending, then every shape caught up and leaving the set).
    tracker.track(1, &ids).unwrap();
    tracker.scan();
    for w in &writers {
        w.flushed(1);
    }
    assert_eq!(tracker.scan().pending, 0);

    let mut commit = 1;
    let n = allocations(|| {
        for round in 0..2_000u64 {
            // Sparse positions; every other round the writers report only `previous`.
            commit += 1 + round % 97;
            let previous = tracker.track(commit, &ids).unwrap().previous;
            for w in &writers {
                w.flushed(previous);
                if round % 2 == 0 {
                    w.flushed(commit);
                }
            }
        }
    });
    assert_eq!(n, 0, "flushed and track allocated {n} times");

    let n = allocations(|| {
        for w in &writers {
            w.flushed(commit);
        }
        for _ in 0..100 {
            std::hint::black_box(tracker.scan());
        }
    });
    // A scan's report owns Vecs, but empty ones do not allocate; nothing is pinned, so no key
    // is cloned.
    assert_eq!(n, 0, "steady-state scans allocated {n} times");
}
