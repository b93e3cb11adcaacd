//! The lagging classifier (Burrow's WARN status for Kafka consumers): a pending shape whose lag
//! (`last_seen - flushed`) never decreased over more than `lag_window` consecutive scans, ended
//! strictly higher, and whose flushed position advanced meanwhile, is slow rather than stuck.
//!
//! Scanner-private (scan lock held); no atomics. It only reads what the scan already loaded.

use super::{Cold, Rec};

/// The lag grew during the run.
pub(super) const GREW: u32 = 1;
/// The flushed position moved during the run.
const PROGRESSED: u32 = 2;
/// The run was reported as lagging (once per episode).
const LAGGING: u32 = 4;

/// Feeds scan `epoch`'s sample of a pending shape that the previous scan also saw pending
/// (with lag `lag_prev`) into its record; a shape first seen pending starts a run of one scan
/// (its record is reset then). Returns the lag when the shape is newly lagging, and whether
/// the run is *armed*: grown and progressed but not reported, so that a later scan may report
/// it with nothing else changed (the scan visits an armed shape in full every time). Writes
/// the record only when something changed.
#[inline]
pub(super) fn classify(
    rec: &mut Rec,
    cold: &mut Cold,
    lag_prev: u64,
    lag: u64,
    flushed: u64,
    epoch: u32,
    window: u32,
) -> (Option<u64>, bool) {
    let old = rec.flags();
    let flags = if lag < lag_prev {
        // The run ends: a new one starts with this sample.
        cold.run_start = epoch;
        0
    } else {
        old | (GREW * u32::from(lag > lag_prev))
            | (PROGRESSED * u32::from(flushed > rec.flushed_prev))
    };
    if flags != old {
        rec.set_flags(flags);
    }
    // Scans in the run, this one included.
    let run = epoch.wrapping_sub(cold.run_start).saturating_add(1);
    let armed = flags == GREW | PROGRESSED;
    ((armed && run > window).then_some(lag), armed)
}

/// Marks the episode reported, so it is reported once.
#[inline]
pub(super) fn reported(rec: &mut Rec) {
    rec.set_flags(rec.flags() | LAGGING);
}
