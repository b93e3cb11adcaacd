//! Optional integrations: `tokio` (a watch channel of the watermark, an event stream, a
//! non-blocking `Scanner` drop inside a runtime), `metrics` (every scan recorded through the
//! `metrics` facade) and `serde` (derived on the report types in `report.rs`).
//!
//! The core calls in here through a few one-line hooks; everything else lives in this folder.

use crate::counters::Counters;
use crate::sync::AtomicU64;
use crate::DownCause;

#[cfg(feature = "metrics")]
pub(crate) mod metrics;
#[cfg(all(feature = "tokio", not(loom)))]
pub(crate) mod tokio;

impl Counters {
    /// The per-cause counter of writers that went down (`flushwatch_writer_down_total` is
    /// recorded from it). Incremented by `Writer`'s drop next to `writers_down`.
    pub(crate) fn down(&self, cause: DownCause) -> &AtomicU64 {
        match cause {
            DownCause::Panicked => &self.down_panicked,
            DownCause::DroppedPending => &self.down_dropped_pending,
        }
    }
}

/// Whether a dropped `Scanner` should detach its thread instead of joining it: inside a tokio
/// runtime, joining would block an executor thread for up to one scan (milliseconds for a
/// million shapes), so the drop only signals stop. Always `false` without the `tokio` feature.
pub(crate) fn detach_scanner() -> bool {
    #[cfg(all(feature = "tokio", not(loom)))]
    {
        ::tokio::runtime::Handle::try_current().is_ok()
    }
    #[cfg(not(all(feature = "tokio", not(loom))))]
    {
        false
    }
}
