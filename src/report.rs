//! What the tracker reports: events, scan reports, statuses, statistics.

use std::time::Duration;

use crate::Offset;

/// The producer's cheap, `Copy` handle to a registered shape: a slot index and the slot's
/// 64-bit generation at registration.
///
/// An id outlives its shape harmlessly: once the shape is evicted, removed or its writer is
/// dropped, `track` skips the id (counted in [`Tracked::skipped`]), even after the slot has
/// been given to another shape.
///
/// ```
/// use flushwatch::{Config, FlushTracker};
/// let tracker = FlushTracker::<&str>::new(Config::default()).unwrap();
/// let writer = tracker.register("a").unwrap();
/// let id = writer.id();
/// assert_eq!(tracker.id_of(&"a"), Some(id));
/// drop(writer);
/// assert_eq!(tracker.track(1, &[id]).unwrap().skipped, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShapeId {
    pub(crate) index: u32,
    pub(crate) gen: u64,
}

/// What one `track` call did.
///
/// ```
/// use flushwatch::{Config, FlushTracker, Tracked};
/// let tracker = FlushTracker::<&str>::new(Config::default()).unwrap();
/// let a = tracker.register("a").unwrap();
/// let t = tracker.track(1, &[a.id(), a.id()]).unwrap();
/// assert_eq!(t, Tracked { tracked: 1, skipped: 0, previous: 0 }, "an id named twice counts once");
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Tracked {
    /// Live shapes the commit was recorded for (each counted once).
    pub tracked: usize,
    /// Ids (or keys) whose shape is gone or unknown, or ids made by another tracker: a normal
    /// race, not an error. Each distinct id is counted once.
    pub skipped: usize,
    /// The commit tracked just before this one (or `start_at`): what a consumer that durably
    /// wrote everything before this commit, but only part of it, reports to
    /// [`Writer::flushed`](crate::Writer::flushed). Positions are sparse: never compute it.
    pub previous: Offset,
}

/// Why a writer went down without ending its shape deliberately.
///
/// ```
/// use flushwatch::{Config, DownCause, Event, FlushTracker};
/// let tracker = FlushTracker::new(Config::default()).unwrap();
/// let w = tracker.register("orders").unwrap();
/// tracker.track(7, &[w.id()]).unwrap();
/// drop(w); // a consumer that returned early with `?` while commit 7 was not durable
/// assert_eq!(
///     tracker.events().try_recv().unwrap(),
///     Event::WriterDown { key: "orders", cause: DownCause::DroppedPending }
/// );
/// tracker.scan();
/// assert_eq!(tracker.watermark(), 7, "the shape no longer pins the watermark");
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DownCause {
    /// The writer was dropped while its thread was panicking.
    Panicked,
    /// The writer was dropped normally while its shape was pending (a consumer that returned
    /// early, with `?` say). The data sent to it may not be durable: rebuild the shape.
    DroppedPending,
}

/// Something operators and the application need to act on.
///
/// Events form one ordered queue; all receivers from
/// [`FlushTracker::events`](crate::FlushTracker::events) share it, so each event reaches one
/// receiver. **Action** events ([`Stalled`](Event::Stalled), [`WriterDown`](Event::WriterDown))
/// tell the application to act on a shape and are never lost; **informational** ones
/// (`Suspected`, `Lagging`, `ScanPanicked`) are dropped and counted while the queue holds
/// [`Config::event_capacity`](crate::Config::event_capacity) events. Sending never blocks the
/// scanner, a writer's drop or `remove`. Watermark changes are not events.
///
/// A stuck writer is suspected once it has been idle (pending, no progress) for more than
/// `grace`, and stalled once a further `challenge` passes without an answer: with the
/// background scanner, no later than `grace + challenge + 2 * scan_interval + r` (plus one
/// scan's duration) after the later of its last progress and the scanner's first scan, where
/// `r <= scan_interval` is the tick resolution (see the crate docs, "Ticks").
///
/// ```
/// use std::time::Duration;
/// use flushwatch::{Clock, Config, Event, FlushTracker};
///
/// let (clock, mock) = Clock::mock();
/// let tracker = FlushTracker::new(
///     Config::default()
///         .grace(Duration::from_secs(10))
///         .challenge(Duration::from_secs(2))
///         .clock(clock),
/// )
/// .unwrap();
/// let stuck = tracker.register("orders").unwrap();
/// tracker.track(5, &[stuck.id()]).unwrap();
///
/// mock.increment(Duration::from_secs(11));
/// tracker.scan(); // idle 11 s > grace: challenged
/// assert_eq!(tracker.watermark(), 0, "commit 5 pending: durable up to start_at");
/// mock.increment(Duration::from_secs(3));
/// tracker.scan(); // no answer for 3 s > challenge: stalled and evicted
/// assert_eq!(tracker.watermark(), 5, "evicted: it no longer pins the watermark");
///
/// let events: Vec<_> = tracker.events().try_iter().collect();
/// assert!(matches!(
///     events.as_slice(),
///     [
///         Event::Suspected { key: "orders", .. },
///         Event::Stalled { key: "orders", evicted: true, .. },
///     ]
/// ));
/// assert!(stuck.is_evicted());
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<K> {
    /// A pending shape was idle for more than `grace` and is now challenged: its writer's
    /// [`is_suspected`](crate::Writer::is_suspected) turns true until it makes progress or
    /// calls [`defer`](crate::Writer::defer).
    Suspected {
        /// The shape.
        key: K,
        /// Time since its last progress (at the tick resolution; as
        /// [`ShapeStatus::idle`]: a re-arm does not reset it).
        idle: Duration,
    },
    /// A suspected shape did not answer within `challenge`. Under `StallPolicy::Evict` it no
    /// longer counts, its writer is inert and its key is free: rebuild and register it again.
    /// An action event: never dropped; at most one unread per shape.
    Stalled {
        /// The shape.
        key: K,
        /// Time since its last progress (at the tick resolution; as
        /// [`ShapeStatus::idle`]: a re-arm does not reset it).
        idle: Duration,
        /// Its flushed position when it stalled.
        flushed: Offset,
        /// The highest commit tracked for it.
        sent: Offset,
        /// Whether it was evicted (`StallPolicy::Evict`) or only reported.
        evicted: bool,
    },
    /// A writer was dropped while panicking, or dropped normally while pending. Its shape no
    /// longer counts and its key is free: rebuild and register it again. An action event:
    /// never dropped.
    WriterDown {
        /// The shape.
        key: K,
        /// Why.
        cause: DownCause,
    },
    /// A pending shape keeps making progress but falls further behind (see the crate docs,
    /// "Lagging"). Reported once per episode.
    Lagging {
        /// The shape.
        key: K,
        /// How far it is behind `last_seen` when classified: `last_seen - flushed`, in
        /// positions (WAL bytes on Postgres), not commits.
        lag: Offset,
    },
    /// A scan panicked (a key's `Clone` or `Hash` panicked, say). The background scanner keeps
    /// running; this says detection is impaired.
    ScanPanicked {
        /// The panic message, if it was a string.
        message: String,
    },
}

/// The result of one [`FlushTracker::scan`](crate::FlushTracker::scan).
///
/// ```
/// use flushwatch::{Config, FlushTracker};
/// let tracker = FlushTracker::new(Config::default()).unwrap();
/// let (a, b) = (tracker.register("a").unwrap(), tracker.register("b").unwrap());
/// tracker.track(3, &[a.id(), b.id()]).unwrap();
/// tracker.track(8, &[a.id(), b.id()]).unwrap();
/// a.flushed(8);
/// b.flushed(3);
/// let r = tracker.scan();
/// assert_eq!((r.watermark, r.last_seen, r.pending, r.registered), (3, 8, 1, 2));
/// assert_eq!(r.pinned_by, Some("b"), "b holds the watermark at 3");
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScanReport<K> {
    /// The published watermark after this scan (never lower than before it).
    pub watermark: Offset,
    /// The highest commit tracked, as read by this scan.
    pub last_seen: Offset,
    /// Pending shapes after this scan's evictions.
    pub pending: usize,
    /// Keys newly suspected in this scan.
    pub suspected: Vec<K>,
    /// Keys that stalled in this scan (evicted or not, by policy).
    pub stalled: Vec<K>,
    /// Keys newly classified as lagging in this scan.
    pub lagging: Vec<K>,
    /// The pending shape holding the watermark, if any.
    pub pinned_by: Option<K>,
    /// Live (registered) shapes at this scan: a counter, so the scan does not visit them.
    pub registered: usize,
}

/// One shape's state, for operators ([`FlushTracker::status`](crate::FlushTracker::status),
/// [`FlushTracker::pinned_by`](crate::FlushTracker::pinned_by)).
///
/// ```
/// use flushwatch::{Config, FlushTracker};
/// let tracker = FlushTracker::new(Config::default()).unwrap();
/// let w = tracker.register("orders").unwrap();
/// tracker.track(4, &[w.id()]).unwrap();
/// tracker.track(9, &[w.id()]).unwrap();
/// w.flushed(4);
/// let s = tracker.status(&"orders").unwrap();
/// assert_eq!((s.sent, s.flushed, s.pending, s.lag), (9, 4, true, 5));
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShapeStatus<K> {
    /// The shape.
    pub key: K,
    /// The highest commit tracked for it.
    pub sent: Offset,
    /// The highest position known durable for it; never above `sent`.
    pub flushed: Offset,
    /// Whether `flushed < sent`.
    pub pending: bool,
    /// Time since its last progress (it became pending, its position moved, or it deferred);
    /// zero when not pending. Exact on a mock clock. On a real clock it is measured from the
    /// stored tick, the one the scanner published before the progress, so it can overstate
    /// the idle time by up to the time since the previous scan plus the tick resolution;
    /// before the first scan it counts from when the shape became pending (read exactly), not
    /// from the tracker's creation. A stall re-armed under `StallPolicy::Report` does not reset
    /// it: a shape wedged for 30 s reports about 30 s. Stall decisions never use it (they
    /// judge by an upper bound of the progress time, see the crate docs, "Ticks").
    pub idle: Duration,
    /// Whether it is suspected and has not answered.
    pub suspected: bool,
    /// How far it is behind `last_seen`: `last_seen - flushed`, in positions (WAL bytes on
    /// Postgres), not commits; zero when not pending.
    pub lag: Offset,
}

/// A cheap snapshot of the tracker's counters ([`FlushTracker::stats`](crate::FlushTracker::stats)).
///
/// ```
/// use flushwatch::{Config, FlushTracker};
/// let tracker = FlushTracker::new(Config::default()).unwrap();
/// let w = tracker.register("orders").unwrap();
/// tracker.track(1, &[w.id()]).unwrap();
/// tracker.scan();
/// let s = tracker.stats();
/// assert_eq!((s.registered, s.pending, s.scans, s.last_seen, s.watermark), (1, 1, 1, 1, 0));
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Registered shapes now.
    pub registered: usize,
    /// Pending shapes at the last scan.
    pub pending: usize,
    /// Suspected shapes at the last scan.
    pub suspected: usize,
    /// Stalls since the tracker was created (evicted or reported).
    pub stalled: u64,
    /// Evictions since the tracker was created.
    pub evicted: u64,
    /// Writers that went down (`Event::WriterDown`) since the tracker was created.
    pub writers_down: u64,
    /// Events dropped because the queue was full.
    pub events_dropped: u64,
    /// Scans run.
    pub scans: u64,
    /// Scans that panicked.
    pub scan_panics: u64,
    /// How long the last scan took.
    pub last_scan: Duration,
    /// The highest commit tracked.
    pub last_seen: Offset,
    /// The published watermark.
    pub watermark: Offset,
}
