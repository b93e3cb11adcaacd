//! The only file that names std or loom synchronisation primitives.
//!
//! Everything in the crate imports atomics, `Arc`, `Mutex`, `RwLock` and `thread` from here,
//! so `RUSTFLAGS="--cfg loom"` swaps the whole crate onto loom's model-checked versions
//! (tokio's `src/loom/mod.rs` and sharded-slab's `src/sync.rs` do the same).
//!
//! Locks are taken through [`lock`], [`read`] and [`write()`], which ignore poisoning: every
//! structure behind a lock here stays consistent at each point a user callback (`Hash`, `Eq`,
//! `Clone` of a key) could panic, so a panic on one thread must not disable the tracker for all.

#[cfg(loom)]
pub(crate) use loom::{
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
    },
    thread,
};

#[cfg(not(loom))]
pub(crate) use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
    },
    thread,
};

/// Outside any model: a std `Arc` and a std atomic even under loom, for what the public API
/// hands out (`Arc<MockClock>`, which a test may make outside `loom::model`) and what orders
/// nothing a model checks (a mock clock's time, moved only between a model's steps).
pub(crate) use std::sync::{atomic::AtomicU64 as UnmodelledU64, Arc as StdArc};

/// Locks a mutex, ignoring poisoning (see the module docs).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Read-locks an `RwLock`, ignoring poisoning.
pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

/// Write-locks an `RwLock`, ignoring poisoning.
pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// A shared array of `N` values made by `f`, built in place on the heap (an array of a page's
/// size must not pass through the stack of whichever thread registers a shape). Loom's `Arc`
/// has no `FromIterator`; it adopts a unique std `Arc` instead.
pub(crate) fn shared_array<T, const N: usize>(mut f: impl FnMut() -> T) -> Arc<[T; N]> {
    let slice: std::sync::Arc<[T]> = (0..N).map(|_| f()).collect();
    let Ok(array) = std::sync::Arc::<[T; N]>::try_from(slice) else {
        unreachable!("a slice of N values is an array of N")
    };
    #[cfg(loom)]
    let array = Arc::from_std(array);
    array
}

/// A process-wide source of slot generations: every shape of every tracker in the process gets
/// a distinct one, so a [`ShapeId`](crate::ShapeId) made by another tracker never matches a
/// slot here (`track` skips it). A plain std atomic even under loom: it only hands out unique
/// numbers and orders nothing, so there is no interleaving to explore.
pub(crate) fn next_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    // Relaxed: uniqueness comes from the read-modify-write itself; nothing is published.
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Asks the CPU to start loading the cache line of `value` (and its TLB entry) without waiting
/// for it: a scan calls it for the slots of the batch of entries it visits next. A hint only: it
/// changes no value and orders nothing. A no-op except on x86_64, and under loom and Miri.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(all(target_arch = "x86_64", not(loom), not(miri)))]
    // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 CPU has (it is in the target's
    // baseline features). A prefetch never faults and reads nothing into the program: it only
    // moves a line into the cache, here the line of a live reference.
    #[allow(unsafe_code)]
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(value).cast());
    }
    #[cfg(not(all(target_arch = "x86_64", not(loom), not(miri))))]
    let _ = value;
}
