//! The writer resource and the NIFs on it: the consumer's hot path.
//!
//! A writer is a resource held by the consumer process. When every term referring to it is
//! gone (the process exited and its heap was freed, say) the BEAM collects it and the
//! `Writer` drops (on the reaper thread, `reaper.rs`): the shape ends, with
//! `WriterDown { cause: DroppedPending }` when it was pending. No monitor is needed.
//!
//! The `Writer` sits behind a `Mutex`: a resource must be `Sync`, and a `Writer` is meant to
//! be owned by one consumer, not shared (it need not be `Sync`). The lock is uncontended in
//! the intended use (one consumer process per writer), one compare-and-swap and one store;
//! `scripts/beam-bench` measures a whole `flushed/2` call with it. `Option` because
//! `retire/1` consumes the writer: later calls find `None` and do nothing.

use std::sync::{Mutex, MutexGuard};

use rustler::types::atom::Atom;
use rustler::{Encoder, Env, Resource, ResourceArc, Term};

use flushwatch::{ShapeId, Writer};

use crate::{atoms, term, Key};

/// A writer, as the BEAM holds it.
pub struct WriterRes {
    /// The shape's id as registered (an evicted shape's id is stale: `track` skips it).
    pub(crate) id: ShapeId,
    key: Key,
    writer: Mutex<Option<Writer<Key>>>,
}

#[rustler::resource_impl]
impl Resource for WriterRes {}

impl WriterRes {
    pub(crate) fn new(id: ShapeId, key: Key, writer: Writer<Key>) -> Self {
        WriterRes {
            id,
            key,
            writer: Mutex::new(Some(writer)),
        }
    }

    fn writer(&self) -> MutexGuard<'_, Option<Writer<Key>>> {
        // No code under this lock panics (the writer's calls never do); recover anyway.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for WriterRes {
    fn drop(&mut self) {
        // The resource was collected: end the shape off the scheduler (see `reaper.rs`).
        let taken = self
            .writer
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(w) = taken {
            crate::reaper::hand_over(w);
        }
    }
}

/// A shape id, for `track` from a producer that holds no writer.
pub struct IdRes {
    pub(crate) id: ShapeId,
}

#[rustler::resource_impl]
impl Resource for IdRes {}

/// The hot path: a plain NIF, no allocation beyond rustler's argument vector.
#[rustler::nif]
fn flushed(w: ResourceArc<WriterRes>, position: u64) -> Atom {
    if let Some(w) = w.writer().as_ref() {
        w.flushed(position);
    }
    atoms::ok()
}

#[rustler::nif]
fn defer(w: ResourceArc<WriterRes>) -> Atom {
    if let Some(w) = w.writer().as_ref() {
        w.defer();
    }
    atoms::ok()
}

#[rustler::nif]
fn suspected(w: ResourceArc<WriterRes>) -> bool {
    w.writer().as_ref().is_some_and(|w| w.is_suspected())
}

/// Whether the shape was evicted or removed (a retired writer counts as ended too).
#[rustler::nif]
fn evicted(w: ResourceArc<WriterRes>) -> bool {
    w.writer().as_ref().is_none_or(|w| w.is_evicted())
}

/// Ends the shape quietly, even when pending.
#[rustler::nif]
fn retire(w: ResourceArc<WriterRes>) -> Atom {
    let taken = w.writer().take();
    if let Some(w) = taken {
        w.retire();
    }
    atoms::ok()
}

#[rustler::nif]
fn writer_key<'a>(env: Env<'a>, w: ResourceArc<WriterRes>) -> Term<'a> {
    term::bin(env, &w.key)
}

#[rustler::nif]
fn writer_id<'a>(env: Env<'a>, w: ResourceArc<WriterRes>) -> Term<'a> {
    ResourceArc::new(IdRes { id: w.id }).encode(env)
}

/// What the writer's lock costs: reports taking the lock each time, and reports under one
/// lock, alternating in batches of 1,000 (so drift and preemption hit both alike);
/// nanoseconds per report for each (`scripts/beam-bench`). Dirty: it loops.
#[rustler::nif(schedule = "DirtyCpu")]
fn debug_lock_cost(w: ResourceArc<WriterRes>, from: u64, n: u64) -> (f64, f64) {
    const BATCH: u64 = 1_000;
    let (mut locked, mut unlocked) = (0u128, 0u128);
    let mut position = from;
    for _ in 0..n.div_ceil(BATCH) {
        let t = std::time::Instant::now();
        for _ in 0..BATCH {
            position += 1;
            if let Some(w) = w.writer().as_ref() {
                w.flushed(position);
            }
        }
        locked += t.elapsed().as_nanos();
        let guard = w.writer();
        let t = std::time::Instant::now();
        if let Some(w) = guard.as_ref() {
            for _ in 0..BATCH {
                position += 1;
                w.flushed(position);
            }
        }
        unlocked += t.elapsed().as_nanos();
    }
    let reports = (n.div_ceil(BATCH) * BATCH).max(1) as f64;
    (locked as f64 / reports, unlocked as f64 / reports)
}
