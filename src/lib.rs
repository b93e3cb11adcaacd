//! # flushwatch
//!
//! Lock-free flush tracking for change-data-capture pipelines: the position a pipeline may
//! safely acknowledge to its source, and progress-based detection of consumers that are alive
//! but stuck.
//!
//! A replication pipeline reads one ordered log (Postgres logical replication, say) and fans
//! each transaction out to the consumers ("shapes") it affects; each consumer flushes to its own
//! storage on its own cadence. The pipeline may acknowledge a log position only when every
//! consumer that was sent a transaction at or before it has made it durable. Acknowledge too
//! much and a crash loses data; acknowledge too little and the source retains its log (WAL)
//! forever. A consumer that is alive but stuck never reports a flush and pins the
//! acknowledgement forever; only progress-based detection catches it.
//!
//! ```
//! use std::time::Duration;
//! use flushwatch::{Config, Event, FlushTracker};
//!
//! let tracker = FlushTracker::new(
//!     Config::default()
//!         .grace(Duration::from_secs(30))
//!         .challenge(Duration::from_secs(5)),
//! )?;
//! let orders = tracker.register("orders")?; // one Writer per consumer
//! let users = tracker.register("users")?;
//! let _scanner = tracker.spawn_scanner()?; // watermark + stall detection in the background
//!
//! // Producer: commit 100 touches both shapes, commit 101 only `orders`.
//! tracker.track(100, &[orders.id(), users.id()])?;
//! tracker.track(101, &[orders.id()])?;
//!
//! // Consumers, after fsync: the hot path, no lock.
//! users.flushed(100);
//! orders.flushed(101);
//!
//! assert_eq!(tracker.scan().watermark, 101); // safe to acknowledge 101
//! # Ok::<(), flushwatch::Error>(())
//! ```
//!
//! # Design
//!
//! - **Slots.** Each shape has a 64-byte, cache-line-aligned slot of atomics (`src/slot.rs`).
//!   Every field has one writer: the producer writes `sent` and the `c - 1` raise, the shape's
//!   [`Writer`] writes its reported position and its progress tick, the scanner writes only on
//!   a state change. The flushed position is `max(reported, raise)`, so the producer and the
//!   writer can never lose each other's update.
//! - **The hot path** ([`Writer::flushed`]) is a few loads and, when the report is progress,
//!   two plain stores (`Relaxed` tick, `Release` position) to the shape's own cache line: no
//!   lock, no read-modify-write, no allocation, no hash lookup, no syscall. See
//!   `BENCHMARKS.md` for its measured cost next to the two-store floor.
//! - **Ownership instead of generations on the hot path.** A slot belongs to its writer until
//!   the writer is dropped; only then can it be reused. A stale writer therefore always writes
//!   its own (dead) slot, and a stale [`ShapeId`] fails a 64-bit generation check in `track`,
//!   the only place slots are reassigned.
//! - **The producer** ([`FlushTracker::track`]) serialises on a lock; it makes every shape's
//!   new `sent` visible (`Release`) before it publishes the commit as `last_seen` (`Release`).
//! - **The scan** ([`FlushTracker::scan`]) reads `last_seen` (`Acquire`) before any slot, so
//!   it can never combine a new `last_seen` with old slots. It computes
//!   `min(last_seen, min flushed over pending shapes)` and publishes it if higher. Its
//!   bookkeeping (suspicion snapshots, lag windows) is private, behind the scan lock: healthy
//!   slots are only read.
//! - **Stall decisions are compare-and-swaps** of the slot's state word from exactly the word
//!   the scan saw. A writer answering a challenge (progress or [`Writer::defer`]) changes that
//!   word, so exactly one of "answered" and "stalled" wins, and an eviction is one atomic step.
//! - **The key → id map** is a `DashMap` used on cold paths only (`register`, `remove`,
//!   `id_of`, `status`, `track_keys`).
//!
//! # Guarantees
//!
//! - **Safety.** The published watermark never exceeds the largest `P` such that every
//!   transaction with commit `<= P` is durable in every live shape it was tracked for
//!   (evicted, removed and dropped shapes no longer count), provided each consumer reports only
//!   positions up to the highest commit it has received.
//! - **Monotonicity.** The published watermark starts at `start_at`, changes only in `scan`,
//!   and never decreases.
//! - **Exactness.** On sequential input the tracker computes exactly what the reference model
//!   ([`model`]) computes. When a `flushed` races the `track` that makes its shape pending, the
//!   watermark may be lower until the next report, never higher.
//! - **Liveness.** A stuck writer is stalled no later than `grace + challenge + 2 *
//!   scan_interval` (plus one scan's duration) after its last progress.
//!
//! # Ticks
//!
//! Progress is stamped with a tick from [`Config::clock`]. With a real clock, the tick the hot
//! path stores is the one the last scan published: resolution one `scan_interval`, so a tick
//! may be up to one interval older than the progress it stamps, never newer. (Reading the
//! clock on every flush would cost ~10 ns, several times the rest of the hot path, and
//! `quanta`'s process-global `Upkeep` is not a library's to own.) With `quanta::Clock::mock()`
//! every tick is read exactly, so tests are deterministic. Elapsed time saturates: a tick from
//! the future counts as zero.
//!
//! # Stall detection
//!
//! A pending shape idle strictly longer than `grace` is **suspected** ([`Event::Suspected`],
//! [`Writer::is_suspected`]); a healthy consumer in a legitimate pause answers with
//! [`Writer::defer`], and any progress answers too. A shape still suspected and overdue
//! strictly more than `challenge` after its suspicion, at a later scan, is **stalled**
//! ([`Event::Stalled`]): under [`StallPolicy::Evict`] (default) it stops counting in that same
//! scan, its writer turns inert and its key is free; under [`StallPolicy::Report`] it stays
//! pinned and the detector re-arms (suspected again after `grace`, stalled again after a
//! further `challenge`). A new transaction is not progress; neither is a repeated or lower
//! report. A writer dropped while pending or panicking emits [`Event::WriterDown`].
//!
//! # Lagging
//!
//! Borrowing Burrow's WARN status for Kafka consumers: a pending shape is **lagging** when, over
//! `lag_window` consecutive scan-to-scan steps, its lag (`last_seen - flushed`) never
//! decreased, ended strictly higher than it started, and its flushed position advanced (it is
//! slow, not stuck). [`Event::Lagging`] is emitted once per episode; the episode ends when the
//! lag decreases or the shape catches up.
//!
//! # How it is verified
//!
//! - `tests/differential.rs`: random operation sequences (proptest, a few hundred fixed seeds,
//!   and the saved fuzz corpus) through the tracker and the model, compared after every step.
//! - `tests/stress.rs`: a producer, consumers and a scanning thread with an oracle checking
//!   every published watermark.
//! - `loom-tests/`: a loom model of every race window.
//! - `fuzz/`: cargo-fuzz targets, differential against the model.
//! - `tests/alloc.rs`: a counting allocator proves the hot path allocates nothing.
//!
//! # Features
//!
//! - `tracing`: logs stalls and evictions at warn level, rate-limited.
//! - `tokio`: `FlushTracker::watch_watermark`, a `tokio::sync::watch` receiver notified of
//!   every published watermark, and `FlushTracker::event_stream`, a `Stream` over the same
//!   queue as `events()`. Nothing blocks an executor thread for longer than one short lock:
//!   a [`Scanner`] dropped inside a runtime signals stop and returns at once (the thread exits
//!   after the scan in flight). Without the feature the crate does not depend on tokio.
//! - `metrics`: every scan (background or [`FlushTracker::scan`]) records, through the
//!   `metrics` facade (no exporter, no recorder installed), the gauges `flushwatch_watermark`,
//!   `flushwatch_lag` (`last_seen` minus the watermark; offsets above 2^53 lose precision as
//!   `f64`) and `flushwatch_pending_shapes`; the counters `flushwatch_suspected_total`,
//!   `flushwatch_stalled_total`, `flushwatch_writer_down_total` (label `cause` = `panicked` |
//!   `dropped_pending`) and `flushwatch_events_dropped_total`; the histogram
//!   `flushwatch_scan_seconds`. Described (units, help) at `FlushTracker::new` and at the
//!   first scan. Never on the hot path: [`Writer::flushed`] records nothing.
//! - `serde`: `Serialize` for [`Stats`], [`ShapeStatus`], [`ScanReport`], [`Event`],
//!   [`DownCause`] and [`Tracked`] (serde's defaults: externally tagged enums, `Duration` as
//!   `{secs, nanos}`).
//!
//! Under `RUSTFLAGS="--cfg loom"` every atomic, lock and thread comes from `loom`, so the
//! public API works inside a downstream `loom::model` (see `loom-tests/`).
//!
//! # Caveats
//!
//! - Ticks on a real clock have the resolution of one scan interval (see "Ticks").
//! - A slot is reused only after its writer is dropped: a leaked writer leaks one slot.
//! - `track` and `scan` serialise internally (they are not the hot path); a scan of a million
//!   shapes holds the scan lock for its duration (see `BENCHMARKS.md`), not the producer lock.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

mod clock;
mod config;
mod error;
mod events;
mod features;
#[cfg(feature = "tracing")]
mod log;
pub mod model;
mod registry;
mod report;
mod scan;
mod slot;
mod sync;
mod tracker;
mod watermark;

pub use crossbeam_channel;
pub use quanta;

pub use config::{Config, StallPolicy};
pub use error::{ConfigError, Error};
pub use report::{DownCause, Event, ScanReport, ShapeId, ShapeStatus, Stats, Tracked};
pub use tracker::{FlushTracker, Scanner, Writer};

/// A position in the source log (for Postgres, an LSN as a `u64`).
pub type Offset = u64;

/// The README's code blocks, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
