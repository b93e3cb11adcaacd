//! The lagging classifier (Burrow's WARN status for Kafka consumers): a pending shape whose lag
//! (`last_seen - flushed`) never decreased over more than `lag_window` consecutive scans, ended
//! strictly higher, and whose flushed position advanced meanwhile, is slow rather than stuck.
//!
//! Scanner-private (scan lock held); no atomics. It only reads what the scan already loaded.

use super::Rec;

/// The lag grew during the run.
const GREW: u32 = 1;
/// The flushed position moved during the run.
const PROGRESSED: u32 = 2;
/// The run was reported as lagging (once per episode).
const LAGGING: u32 = 4;

/// Feeds one scan's sample of a pending shape into its record (`fresh`: the previous scan did
/// not see it pending, so a run starts). Returns the lag when the shape is newly lagging.
#[inline]
pub(super) fn classify(
    rec: &mut Rec,
    fresh: bool,
    lag: u64,
    flushed: u64,
    window: u32,
) -> Option<u64> {
    if !fresh && lag >= rec.lag_prev {
        rec.run = rec.run.saturating_add(1);
        rec.flags |= (GREW * u32::from(lag > rec.lag_prev))
            | (PROGRESSED * u32::from(flushed > rec.flushed_prev));
    } else {
        rec.run = 1;
        rec.flags = 0;
    }
    rec.lag_prev = lag;
    (rec.flags == GREW | PROGRESSED && rec.run > window).then_some(lag)
}

/// Marks the episode reported, so it is reported once.
#[inline]
pub(super) fn reported(rec: &mut Rec) {
    rec.flags |= LAGGING;
}
