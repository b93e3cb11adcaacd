//! Ticks: nanoseconds since the tracker was created, read from the configured `quanta::Clock`.
//!
//! Ground rules:
//! - [`Ticker::now`] reads the clock exactly. Only the cold paths call it: every scan, `status`.
//! - [`Ticker::recent`] is what the hot path reads. On a real clock it is the value the last
//!   scan published (one `Relaxed` load of a cache line that is written once per scan), so
//!   a progress tick has the resolution of one `scan_interval`: it may be up to one interval
//!   older than the progress it stamps, never newer. On a mock clock (`quanta::Clock::mock()`)
//!   it reads the clock exactly, so deterministic tests see exact ticks.
//! - Elapsed time is always `now.saturating_sub(tick)`: a tick from the future counts as zero.
//!
//! A process-global `quanta::Upkeep` is deliberately not used: a library cannot assume it owns
//! the one upkeep thread a process may run.

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicU64, Ordering};

/// What the hot path reads, alone in its cache line: nothing written on every `track` or
/// every lock acquisition may share it.
struct Hot {
    /// Whether the clock is a `quanta` mock: then `recent` reads it exactly. Never changes.
    exact: bool,
    /// The tick the last scan published. Written only by `publish` (once per scan), read by
    /// the flush and track paths.
    coarse: AtomicU64,
}

/// The tracker's time source.
pub(crate) struct Ticker {
    hot: CachePadded<Hot>,
    clock: quanta::Clock,
    epoch: quanta::Instant,
}

impl Ticker {
    /// `coarse`: treat even a mock clock as coarse (a test hook, see `Config::coarse_ticks`).
    pub(crate) fn new(clock: quanta::Clock, coarse: bool) -> Self {
        let exact = is_mock(&clock) && !coarse;
        let epoch = clock.now();
        Ticker {
            hot: CachePadded::new(Hot {
                exact,
                coarse: AtomicU64::new(0),
            }),
            clock,
            epoch,
        }
    }

    /// The exact current tick.
    pub(crate) fn now(&self) -> u64 {
        let d = self.clock.now().saturating_duration_since(self.epoch);
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }

    /// The tick for the hot path: exact on a mock clock, else the last published one.
    #[inline]
    pub(crate) fn recent(&self) -> u64 {
        if self.hot.exact {
            self.now()
        } else {
            // Relaxed: a lone timestamp; nothing else is published through it.
            self.hot.coarse.load(Ordering::Relaxed)
        }
    }

    /// The tick a shape becomes pending at (`track`, not the hot path): [`Ticker::recent`],
    /// or the exact clock while no scan has published a tick, so that before the first scan
    /// a shape's idle time counts from when it became pending, not from the tracker's creation.
    pub(crate) fn pending_tick(&self) -> u64 {
        match self.recent() {
            0 => self.now(),
            recent => recent,
        }
    }

    /// Publishes `tick` for `recent` (the scanner calls it at the start of every scan).
    pub(crate) fn publish(&self, tick: u64) {
        // Relaxed: a lone timestamp; `fetch_max` keeps it monotone if scans ever race.
        self.hot.coarse.fetch_max(tick, Ordering::Relaxed);
    }

    /// Whether ticks are exact (mock clock).
    #[inline]
    pub(crate) fn is_exact(&self) -> bool {
        self.hot.exact
    }
}

/// Whether `clock` is a `quanta` mock clock.
///
/// `quanta` exposes no accessor for this, so the `Debug` form is read once at construction
/// (`Clock { inner: Mock(..) }`). A test in this module pins the format, so a `quanta` upgrade
/// that changes it fails loudly instead of silently making mock ticks coarse.
fn is_mock(clock: &quanta::Clock) -> bool {
    format!("{clock:?}").contains("Mock(")
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn mock_clocks_are_detected_and_real_ones_are_not() {
        let (mock, _) = quanta::Clock::mock();
        assert!(is_mock(&mock));
        assert!(!is_mock(&quanta::Clock::new()));
    }

    #[test]
    fn mock_ticks_are_exact_and_saturate_before_the_epoch() {
        let (clock, mock) = quanta::Clock::mock();
        mock.increment(Duration::from_secs(5));
        let t = Ticker::new(clock, false);
        assert_eq!(t.now(), 0);
        mock.increment(Duration::from_nanos(7));
        assert_eq!(t.now(), 7);
        assert_eq!(t.recent(), 7, "mock ticks are read exactly");
        mock.decrement(Duration::from_secs(1));
        assert_eq!(t.now(), 0, "a clock before the epoch saturates to zero");
    }

    #[test]
    fn real_clock_recent_is_the_published_tick() {
        let t = Ticker::new(quanta::Clock::new(), false);
        assert!(!t.is_exact());
        assert_eq!(t.recent(), 0);
        t.publish(42);
        assert_eq!(t.recent(), 42);
        t.publish(41);
        assert_eq!(t.recent(), 42, "publication never goes back");
    }

    #[test]
    fn a_coarse_pending_tick_is_exact_only_before_the_first_scan() {
        let (clock, mock) = quanta::Clock::mock();
        let t = Ticker::new(clock, true);
        mock.increment(Duration::from_nanos(800));
        assert_eq!((t.recent(), t.pending_tick()), (0, 800));
        t.publish(700);
        mock.increment(Duration::from_nanos(50));
        assert_eq!(t.pending_tick(), 700, "the published tick once a scan ran");
    }
}
