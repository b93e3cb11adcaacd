//! The tracker's counters ([`FlushTracker::stats`](crate::FlushTracker::stats), and the
//! metrics of feature `metrics`): a module of their own, so that what reads them (the scan,
//! the metrics, `stats`) and what writes them need not depend on each other.
//!
//! # Ground rules
//!
//! - Every counter is a statistic (`Relaxed`): none publishes anything. `live` is exact when
//!   nothing races.

use crate::sync::{AtomicU64, AtomicUsize};

/// Counters behind [`FlushTracker::stats`](crate::FlushTracker::stats). All `Relaxed`: they
/// publish nothing.
#[derive(Default)]
pub(crate) struct Counters {
    /// Live shapes: +1 when `register` gives a slot, -1 when a live shape ends (the drop's
    /// swap, `remove`'s CAS or the scanner's evicting CAS: exactly one of them ends it).
    pub(crate) live: AtomicUsize,
    pub(crate) stalled: AtomicU64,
    pub(crate) evicted: AtomicU64,
    pub(crate) writers_down: AtomicU64,
    /// `writers_down` by cause (see `Counters::down` in `features/mod.rs`).
    pub(crate) down_panicked: AtomicU64,
    pub(crate) down_dropped_pending: AtomicU64,
    pub(crate) scans: AtomicU64,
    pub(crate) scan_panics: AtomicU64,
    pub(crate) last_scan_nanos: AtomicU64,
    pub(crate) pending: AtomicUsize,
    pub(crate) suspected: AtomicUsize,
}
