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
//! // Producer: commit 100 touches both shapes, commit 164 only `orders` (positions are
//! // sparse: for Postgres, commit end LSNs).
//! tracker.track(100, &[orders.id(), users.id()])?;
//! let t = tracker.track(164, &[orders.id()])?;
//! assert_eq!(t.previous, 100); // handed to the consumers with the transaction
//!
//! // Consumers, after fsync: the hot path, no lock.
//! users.flushed(100);
//! orders.flushed(164);
//!
//! // The scanner publishes the safe position: wait for it (or read `watermark()`).
//! assert_eq!(tracker.wait_watermark(164, Duration::from_secs(5)), 164);
//! # Ok::<(), flushwatch::Error>(())
//! ```
//!
//! # Design
//!
//! - **Slots.** Each shape has a 64-byte, cache-line-aligned slot of atomics. Every field has one writer: the producer writes `sent` and the raise (to the previous
//!   commit, never `c - 1`: positions are sparse), the shape's
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
//! - **A scan costs what the pending shapes cost.** `track` lists every slot it makes pending
//!   (a flag and a push under the producer lock it already holds); the scan visits only its
//!   pending set, and drops a slot from it only under the producer lock, after proving there
//!   that the slot is caught up, so a concurrent `track` re-lists it (checked by a loom
//!   model). A million registered shapes of which 1% are pending cost a scan the
//!   1%; see `BENCHMARKS.md`.
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
//!   (evicted, removed and dropped shapes no longer count), provided each consumer follows the
//!   reporting contract: it reports only commits it received, or [`Tracked::previous`] of one.
//! - **Whole transactions.** The published watermark is always `start_at` or a commit handed to
//!   `track`, never a position between two commits, so acknowledging it acknowledges whole
//!   transactions under any LSN convention (start or end of the commit record).
//! - **Monotonicity.** The published watermark starts at `start_at`, changes only in `scan`,
//!   and never decreases.
//! - **Exactness.** On sequential input the tracker computes exactly what a sequential
//!   reference model of these rules computes (the differential tests compare them after every
//!   step). When a `flushed` races the `track` that makes its shape pending, the watermark may
//!   be lower until the next report, never higher.
//! - **Liveness.** A stuck writer is stalled no later than `grace + challenge + 2 *
//!   scan_interval + r` (plus one scan's duration) after the later of its last progress and
//!   the scanner's first scan; `r <= scan_interval` is the tick resolution (see "Ticks").
//! - **No false suspicion.** A shape whose last progress (becoming pending, a higher flushed
//!   position, a `defer`) was `grace` or less before a scan is never overdue in that scan,
//!   whatever the cadence: manual scans hours apart, the first scan after a backfill, a paused
//!   VM.
//!
//! # Ticks
//!
//! Progress is stamped with a tick from [`Config::clock`]. With a real clock, the tick the hot
//! path stores is the one the last scan published (one `Relaxed` load; reading the clock on
//! every flush would cost ~10 ns, several times the rest of the hot path, and a background
//! clock-updating thread is not a library's to own). Such a tick is only a *lower* bound of
//! the progress time, so the scan never judges idleness by it: it remembers, per pending shape,
//! the flushed position and the state word it saw (every `defer` sets a bit there that the
//! scan clears, so no number of defers can go unseen), and a change first seen by a scan is
//! dated by the *end* of that scan, an upper bound of the progress time. A shape is therefore
//! never judged idle for longer than it was; the price is the resolution `r`, the time between
//! two scans (one `scan_interval` with the background scanner), by which detection can come
//! later. With [`Clock::mock()`] every tick is read exactly and used as is, so tests are
//! deterministic. Elapsed time saturates: a tick from the future counts as zero.
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
//! # Writer liveness
//!
//! A consumer owns its [`Writer`], so ownership says when a shape ends; no timeout is needed.
//! Whenever a shape ends it stops counting at once, its key is free at once, and the next scan's
//! watermark reflects it. A writer dropped while its thread panics, or dropped normally while
//! its shape is pending (a consumer that returned early with `?`), emits [`Event::WriterDown`]
//! ([`DownCause::Panicked`], [`DownCause::DroppedPending`]): the application must rebuild the
//! shape. A writer dropped while caught up, or [`Writer::retire`], ends the shape quietly.
//! [`FlushTracker::remove`] ends a shape from the producer's side. A writer whose shape was
//! evicted or removed is inert ([`Writer::is_evicted`]); a stale [`ShapeId`], or one made by
//! another tracker, never changes any shape's state (`track` skips it).
//!
//! # Events
//!
//! Events form one ordered queue, read through [`Events`] (and, with `tokio`, an
//! `EventStream`): each event reaches one receiver. **Action** events ([`Event::Stalled`],
//! [`Event::WriterDown`]) tell the application to act on a shape and are never lost, however
//! small [`Config::event_capacity`] is; a shape has at most one unread `Stalled` (a re-armed
//! shape that stalls again while its previous one is unread is counted and listed in
//! [`ScanReport::stalled`], not queued again). **Informational** events (`Suspected`,
//! `Lagging`, `ScanPanicked`) are dropped and counted ([`FlushTracker::events_dropped`]) while
//! the queue holds `event_capacity` events. Emitting never blocks the scanner, a writer's drop
//! or `remove`. Watermark changes are not events: read [`FlushTracker::watermark`], wait with
//! [`FlushTracker::wait_watermark`], or (with `tokio`) watch `watch_watermark`.
//!
//! # Keys
//!
//! A shape's key is any `Hash + Eq + Clone + Send + Sync + 'static` type ([`ShapeKey`]); it
//! needs `Debug` only with the `tracing` feature. Lookups ([`FlushTracker::id_of`],
//! [`status`](FlushTracker::status), [`remove`](FlushTracker::remove),
//! [`track_keys`](FlushTracker::track_keys)) take a borrowed form of the key, as
//! `HashMap::get` does: a `FlushTracker<String>` answers `id_of("orders")`.
//!
//! # Bad input
//!
//! Bad input gets a clear error or a documented, harmless outcome; nothing is lost, and every
//! error leaves the tracker as it was.
//!
//! | input | outcome |
//! | --- | --- |
//! | `track(c, ..)` with `c == 0` or `c <= last_seen` | [`Error::ZeroCommit`] / [`Error::OffsetRegression`] |
//! | `track` naming an ended shape's id, or another tracker's | skipped, counted in [`Tracked::skipped`] |
//! | `register` of a registered key | [`Error::DuplicateShape`]; the existing shape untouched |
//! | `flushed(p)` below the shape's flushed position | ignored |
//! | `flushed(p)` beyond what was sent to the shape | caught up to what was sent, never more |
//! | reports from an evicted, removed or retired writer | ignored |
//! | zero `scan_interval` or `event_capacity` | [`Error::InvalidConfig`] from [`FlushTracker::new`] |
//! | nobody reading events | nothing blocks; informational events dropped and counted |
//! | `track_keys` with many unknown or repeated keys | linear time |
//! | a key whose `Clone`, `Hash` or `Eq` panics | the panic reaches the caller or is caught by the scanner; the tracker stays consistent, and an ended shape still gets its action event |
//! | a second `spawn_scanner` while one runs | [`Error::ScannerRunning`] |
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
//! - `tracing`: logs stalls and evictions at warn level, rate-limited. The warnings name the
//!   shape, so with this feature a key must also be `Debug` (see [`ShapeKey`]).
//! - `tokio`: `FlushTracker::watch_watermark`, a `tokio::sync::watch` receiver notified of
//!   every published watermark, and `FlushTracker::event_stream`, an `EventStream`
//!   (a `futures_core::Stream`) over the same queue as `events()`. Nothing blocks an executor thread for longer than one short lock:
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
//! # Loom
//!
//! Under `RUSTFLAGS="--cfg loom"` every atomic, lock and thread comes from `loom`, so the
//! public API works inside a downstream `loom::model` (the repository's `loom-tests` crate
//! models every race window this way).
//!
//! # Caveats
//!
//! - On a real clock, idleness has the resolution of the time between two scans (see "Ticks"):
//!   detection can come up to one scan interval later than on an exact clock, never earlier.
//! - A slot is reused only after its writer is dropped: a leaked writer leaks one slot.
//! - `track` and `scan` serialise internally (they are not the hot path); a scan holds the scan
//!   lock for its duration, and the producer lock twice briefly, for work proportional to the
//!   shapes that became pending or caught up since the previous scan.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// One `unsafe` block, allowed where it is: the scan's prefetch hint (`sync::prefetch`).
#![deny(unsafe_code)]

mod clock;
mod config;
mod core;
mod counters;
mod error;
mod events;
mod features;
mod hint;
mod inspect;
mod key;
#[cfg(feature = "tracing")]
mod log;
// The sequential reference model. Public only so that the differential tests (`tests/`) and
// the fuzz targets (`fuzz/`, a separate crate) can drive it; hidden because it is test
// scaffolding, not part of the semver-bound API.
#[doc(hidden)]
pub mod model;
mod pending;
mod receiver;
mod registry;
mod report;
mod scan;
mod scanner;
mod slot;
mod sync;
mod tracker;
mod watermark;
mod writer;

pub use clock::{Clock, MockClock};
pub use config::{Config, StallPolicy};
pub use error::{ConfigError, Error, SpawnError};
#[cfg(all(feature = "tokio", not(loom)))]
pub use features::tokio::EventStream;
pub use hint::TrackHint;
pub use key::ShapeKey;
pub use receiver::{Events, IntoIter, Iter, RecvError, RecvTimeoutError, TryIter, TryRecvError};
pub use report::{DownCause, Event, ScanReport, ShapeId, ShapeStatus, Stats, Tracked};
pub use scanner::Scanner;
pub use tracker::FlushTracker;
pub use writer::Writer;

/// A position in the source log (for Postgres, an LSN as a `u64`).
pub type Offset = u64;

/// The `quanta` crate, re-exported before 1.0 for `Config::clock`. **Deprecated**: use
/// [`Clock`] and [`Clock::mock`]. It will be removed: do not build on it.
///
/// `#[deprecated]` on a `pub use` does not warn its users, so this is a module of deprecated
/// aliases (`Clock`, `Mock`, `Instant`, which warn) over a glob re-export of the rest.
#[deprecated(
    since = "1.0.0",
    note = "use flushwatch::Clock (Clock::mock for tests)"
)]
pub mod quanta {
    pub use ::quanta::*;

    /// Deprecated: use [`crate::Clock`].
    #[deprecated(since = "1.0.0", note = "use flushwatch::Clock")]
    pub type Clock = ::quanta::Clock;
    /// Deprecated: use [`crate::MockClock`] (from [`crate::Clock::mock`]).
    #[deprecated(since = "1.0.0", note = "use flushwatch::MockClock")]
    pub type Mock = ::quanta::Mock;
    /// Deprecated: flushwatch no longer uses it in its API.
    #[deprecated(since = "1.0.0", note = "depend on quanta directly")]
    pub type Instant = ::quanta::Instant;
}

/// The `crossbeam-channel` crate, re-exported before 1.0 for `FlushTracker::events`.
/// **Deprecated**: `events()` returns [`Events`]; depend on `crossbeam-channel` directly for
/// channels of your own. It will be removed; do not build on it.
///
/// `#[deprecated]` on a `pub use` does not warn its users, so this is a module of deprecated
/// aliases (the channel constructors, `Sender`, `Receiver` and the receive errors, which warn)
/// over a glob re-export of the rest.
#[deprecated(
    since = "1.0.0",
    note = "events() returns flushwatch::Events; depend on crossbeam-channel directly"
)]
pub mod crossbeam_channel {
    pub use ::crossbeam_channel::*;

    /// Deprecated: depend on `crossbeam-channel` directly.
    #[deprecated(since = "1.0.0", note = "depend on crossbeam-channel directly")]
    pub type Sender<T> = ::crossbeam_channel::Sender<T>;
    /// Deprecated: [`FlushTracker::events`](crate::FlushTracker::events) returns
    /// [`Events`](crate::Events).
    #[deprecated(since = "1.0.0", note = "use flushwatch::Events")]
    pub type Receiver<T> = ::crossbeam_channel::Receiver<T>;
    /// Deprecated: use [`crate::RecvError`].
    #[deprecated(since = "1.0.0", note = "use flushwatch::RecvError")]
    pub type RecvError = ::crossbeam_channel::RecvError;
    /// Deprecated: use [`crate::TryRecvError`].
    #[deprecated(since = "1.0.0", note = "use flushwatch::TryRecvError")]
    pub type TryRecvError = ::crossbeam_channel::TryRecvError;
    /// Deprecated: use [`crate::RecvTimeoutError`].
    #[deprecated(since = "1.0.0", note = "use flushwatch::RecvTimeoutError")]
    pub type RecvTimeoutError = ::crossbeam_channel::RecvTimeoutError;

    /// Deprecated: depend on `crossbeam-channel` directly.
    #[deprecated(since = "1.0.0", note = "depend on crossbeam-channel directly")]
    pub fn unbounded<T>() -> (
        ::crossbeam_channel::Sender<T>,
        ::crossbeam_channel::Receiver<T>,
    ) {
        ::crossbeam_channel::unbounded()
    }

    /// Deprecated: depend on `crossbeam-channel` directly.
    #[deprecated(since = "1.0.0", note = "depend on crossbeam-channel directly")]
    pub fn bounded<T>(
        cap: usize,
    ) -> (
        ::crossbeam_channel::Sender<T>,
        ::crossbeam_channel::Receiver<T>,
    ) {
        ::crossbeam_channel::bounded(cap)
    }
}

/// The deprecated re-exports warn their users. Under `#![deny(deprecated)]` neither of these
/// compiles:
///
/// ```compile_fail
/// #![deny(deprecated)]
/// let (_clock, _mock) = flushwatch::quanta::Clock::mock();
/// ```
///
/// ```compile_fail
/// #![deny(deprecated)]
/// let (_tx, _rx) = flushwatch::crossbeam_channel::unbounded::<u8>();
/// ```
///
/// while flushwatch's own types do:
///
/// ```
/// #![deny(deprecated)]
/// let (_clock, _mock) = flushwatch::Clock::mock();
/// let _events: flushwatch::Events<u8> =
///     flushwatch::FlushTracker::new(flushwatch::Config::default()).unwrap().events();
/// ```
#[cfg(doctest)]
pub struct DeprecatedReexportsWarn;

/// The README's code blocks, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
