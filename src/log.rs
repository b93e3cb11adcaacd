//! Rate-limited warn-level logging of stalls (feature `tracing`).
//!
//! At most [`BURST`] warnings per [`WINDOW`]; what is suppressed is counted and summarised in
//! the next warning, so one shape stuck under `StallPolicy::Report` (or a storm of evictions)
//! cannot flood the log. Lives in the scanner's private state: no atomics.

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// Warnings allowed per window.
const BURST: u32 = 10;
/// The window.
const WINDOW: Duration = Duration::from_secs(60);

/// The limiter (scanner-private).
#[derive(Default)]
pub(crate) struct Limiter {
    window_start: Option<Instant>,
    sent: u32,
    suppressed: u64,
}

impl Limiter {
    fn allow(&mut self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    /// [`allow`](Self::allow) at `now`: windows are half-open, `[start, start + WINDOW)`.
    fn allow_at(&mut self, now: Instant) -> Option<u64> {
        match self.window_start {
            Some(start) if now.duration_since(start) < WINDOW => {}
            _ => {
                self.window_start = Some(now);
                self.sent = 0;
            }
        }
        if self.sent < BURST {
            self.sent += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }

    /// Logs a stall (and eviction) if the budget allows.
    pub(crate) fn stalled<K: Debug>(
        &mut self,
        key: &K,
        idle: u64,
        flushed: u64,
        sent: u64,
        evicted: bool,
    ) {
        if let Some(suppressed) = self.allow() {
            tracing::warn!(
                shape = ?key,
                idle = ?Duration::from_nanos(idle),
                flushed,
                sent,
                evicted,
                suppressed,
                "flushwatch: shape stalled{}",
                if evicted { " and was evicted" } else { "" }
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_is_bounded_and_suppressions_are_counted() {
        let mut l = Limiter::default();
        let allowed = (0..100).filter(|_| l.allow().is_some()).count();
        assert_eq!(allowed, BURST as usize);
        assert_eq!(l.suppressed, 100 - u64::from(BURST));
    }

    #[test]
    fn a_window_ends_after_window_and_the_next_warning_counts_what_was_suppressed() {
        let mut l = Limiter::default();
        let start = Instant::now();
        let allowed = (0..15).filter(|_| l.allow_at(start).is_some()).count();
        assert_eq!(allowed, BURST as usize);
        let last = start + WINDOW - Duration::from_nanos(1);
        assert_eq!(l.allow_at(last), None, "still the first window");
        assert_eq!(
            l.allow_at(start + WINDOW),
            Some(6),
            "a new window, 6 suppressed"
        );
        let allowed = (1..15)
            .filter(|_| l.allow_at(start + WINDOW).is_some())
            .count();
        assert_eq!(allowed, BURST as usize - 1);
        assert_eq!(l.allow_at(start + 3 * WINDOW), Some(5));
    }
}
