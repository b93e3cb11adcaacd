//! Feature `metrics`: every scan (the background scanner's or a `scan()` call) records the
//! tracker's metrics through the `metrics` facade, to whatever recorder is current on the
//! scanning thread. The crate installs no recorder and depends on no exporter.
//!
//! # Ground rules
//!
//! - Recorded only here, at the end of a scan with the scan lock held: never on the hot path
//!   (`Writer::flushed` records nothing), never by `track`, a writer's drop or `remove`.
//! - Counters are recorded as deltas of the tracker's own cumulative counters since the
//!   previous scan (`Recorded`, read and written under the scan lock), so their totals equal
//!   [`Stats`](crate::Stats) and nothing is lost or counted twice when a scan panics: the next
//!   scan records what it missed. (`flushwatch_suspected_total` counts the scan report's new
//!   suspicions: a scan that panics records nothing, so its suspicions are not counted.)
//! - Descriptions (`describe_*`, with units) are sent when the tracker is created and again at
//!   its first scan, so they reach a recorder installed after `FlushTracker::new` too.

use std::time::Duration;

use metrics::Unit;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

use crate::counters::Counters;
use crate::events::Queue;
use crate::sync::{lock, Mutex, Ordering};
use crate::ScanReport;

/// The published watermark (gauge).
pub(crate) const WATERMARK: &str = "flushwatch_watermark";
/// `last_seen` minus the published watermark (gauge).
pub(crate) const LAG: &str = "flushwatch_lag";
/// Pending shapes after the scan's evictions (gauge).
pub(crate) const PENDING: &str = "flushwatch_pending_shapes";
/// Shapes newly suspected (counter).
pub(crate) const SUSPECTED: &str = "flushwatch_suspected_total";
/// Stalls, evicted or reported (counter).
pub(crate) const STALLED: &str = "flushwatch_stalled_total";
/// Writers that went down, by `cause` (counter).
pub(crate) const WRITER_DOWN: &str = "flushwatch_writer_down_total";
/// Informational events dropped at capacity (counter).
pub(crate) const EVENTS_DROPPED: &str = "flushwatch_events_dropped_total";
/// How long each scan took (histogram, seconds).
pub(crate) const SCAN_SECONDS: &str = "flushwatch_scan_seconds";

/// The cumulative counters as of the last recorded scan.
#[derive(Default)]
pub(crate) struct Recorded {
    described: bool,
    stalled: u64,
    panicked: u64,
    dropped_pending: u64,
    events_dropped: u64,
}

/// What a tracker keeps for its metrics (a field of `Shared`).
pub(crate) struct State {
    /// Locked only by a scan, which holds the scan lock: never contended.
    recorded: Mutex<Recorded>,
}

impl State {
    /// Describes the metrics to the current recorder (at `FlushTracker::new`).
    pub(crate) fn new() -> Self {
        describe();
        State {
            recorded: Mutex::new(Recorded::default()),
        }
    }
}

/// Describes every metric (units and help texts) to the current recorder.
pub(crate) fn describe() {
    describe_gauge!(
        WATERMARK,
        Unit::Count,
        "The published flushwatch watermark: the log position safe to acknowledge (f64: exact up to 2^53)."
    );
    describe_gauge!(
        LAG,
        Unit::Count,
        "Highest commit tracked (last_seen) minus the published watermark, in log positions."
    );
    describe_gauge!(
        PENDING,
        Unit::Count,
        "Shapes with data sent but not yet durable, after the last scan's evictions."
    );
    describe_counter!(
        SUSPECTED,
        Unit::Count,
        "Pending shapes found idle for longer than grace and challenged."
    );
    describe_counter!(
        STALLED,
        Unit::Count,
        "Suspected shapes that did not answer within challenge (evicted or reported)."
    );
    describe_counter!(
        WRITER_DOWN,
        Unit::Count,
        "Writers dropped while panicking (cause=panicked) or while pending (cause=dropped_pending)."
    );
    describe_counter!(
        EVENTS_DROPPED,
        Unit::Count,
        "Informational events dropped because the event queue was full."
    );
    describe_histogram!(
        SCAN_SECONDS,
        Unit::Seconds,
        "Duration of one flushwatch scan (watermark and stall detection)."
    );
}

/// Records one scan (called at the end of `scan`, scan lock held): the gauges as of `report`,
/// the counters' increments since the previous scan, and the scan's duration.
/// It is handed what it reads (not the tracker's shared state), so this module depends on
/// no part of the tracker but the counters and the event queue.
pub(crate) fn record_scan<K>(
    state: &State,
    counters: &Counters,
    events: &Queue<K>,
    report: &ScanReport<K>,
    took: Duration,
) {
    let c = counters;
    let mut rec = lock(&state.recorded);
    if !rec.described {
        rec.described = true;
        describe();
    }
    // Relaxed (all): statistics; the scan lock orders these reads between scans, so the
    // deltas add up to the totals.
    let stalled = c.stalled.load(Ordering::Relaxed);
    let panicked = c.down_panicked.load(Ordering::Relaxed);
    let dropped_pending = c.down_dropped_pending.load(Ordering::Relaxed);
    let events_dropped = events.dropped.load(Ordering::Relaxed);

    gauge!(WATERMARK).set(report.watermark as f64);
    gauge!(LAG).set(report.last_seen.saturating_sub(report.watermark) as f64);
    gauge!(PENDING).set(report.pending as f64);
    counter!(SUSPECTED).increment(report.suspected.len() as u64);
    counter!(STALLED).increment(stalled.saturating_sub(rec.stalled));
    counter!(WRITER_DOWN, "cause" => "panicked").increment(panicked.saturating_sub(rec.panicked));
    counter!(WRITER_DOWN, "cause" => "dropped_pending")
        .increment(dropped_pending.saturating_sub(rec.dropped_pending));
    counter!(EVENTS_DROPPED).increment(events_dropped.saturating_sub(rec.events_dropped));
    histogram!(SCAN_SECONDS).record(took.as_secs_f64());

    *rec = Recorded {
        described: true,
        stalled,
        panicked,
        dropped_pending,
        events_dropped,
    };
}
