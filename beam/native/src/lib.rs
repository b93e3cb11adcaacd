//! The NIF library behind the Elixir `Flushwatch` module (`beam/lib/flushwatch.ex`).
//!
//! - `tracker.rs`: the tracker resource and its NIFs; `hub.rs`: its thread (scans, messages).
//! - `writer.rs`: the writer resource (the consumer's hot path) and shape ids; `reaper.rs`:
//!   the thread that drops collected writers, off the schedulers.
//! - `clock.rs`, `queue.rs`, `keys.rs`: the only places that name flushwatch's clock, event
//!   receiver and key lookups.
//! - `term.rs`: encoding reports as maps.
//!
//! Panics never cross into the VM: rustler runs every NIF inside `catch_unwind` and raises
//! an Erlang error instead (`test/native_test.exs` checks it with `debug_panic/0`); resource
//! destructors are wrapped the same way.

mod clock;
mod hub;
mod keys;
mod queue;
mod reaper;
mod term;
mod tracker;
mod writer;

/// A shape's key: an Erlang binary (Electric's shape handles), cheap to clone into events.
pub(crate) type Key = std::sync::Arc<[u8]>;

mod atoms {
    rustler::atoms! {
        ok, error, nil, other,
        flushwatch, watermark, last_seen, pending, registered, suspected, stalled, lagging,
        pinned_by, key, sent, flushed, idle_ms, lag, evicted, writers_down, events_dropped,
        scans, scan_panics, last_scan_us, tracked, skipped, previous,
        writer_down, panicked, dropped_pending, scan_panicked,
        duplicate_shape, offset_regression, zero_commit, invalid_config, zero_scan_interval,
        zero_event_capacity, scanner_running, thread_spawn, no_mock_clock,
        evict, report, large,
    }
}

/// A NIF that panics: proves a panic becomes an Erlang error, not a crashed VM.
#[rustler::nif]
fn debug_panic() -> rustler::types::atom::Atom {
    panic!("flushwatch_nif: deliberate panic (debug_panic/0)")
}

rustler::init!("Elixir.Flushwatch.Native");
