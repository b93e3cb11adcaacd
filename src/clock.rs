//! The tracker's time: the public [`Clock`] and [`MockClock`], and the private [`Ticker`]
//! (nanoseconds since the tracker was created).
//!
//! Ground rules:
//! - [`Ticker::now`] reads the clock exactly. Only the cold paths call it: every scan, `status`.
//! - [`Ticker::recent`] is what the hot path reads. On a real clock it is the value the last
//!   scan published (one `Relaxed` load of a cache line that is written once per scan), so
//!   a progress tick has the resolution of one `scan_interval`: it may be up to one interval
//!   older than the progress it stamps, never newer. On a mock clock ([`Clock::mock`]) it
//!   reads the clock exactly, so deterministic tests see exact ticks.
//! - Elapsed time is always `now.saturating_sub(tick)`: a tick from the future counts as zero.
//! - A real clock is a private `quanta::Clock` (the TSC where it is invariant); no `quanta`
//!   type is public. A process-global `quanta::Upkeep` is deliberately not used: a library
//!   cannot assume it owns the one upkeep thread a process may run.
//! - A mock clock's time is a std atomic even under loom (as `quanta`'s mock was): a model
//!   moves it only between its threads' steps, and it orders nothing the model checks.

use std::fmt;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicU64, Ordering, StdArc, UnmodelledU64};

/// The time source of a tracker ([`Config::clock`](crate::Config::clock)).
///
/// [`Clock::new`] (the default) is the cheap monotonic clock: the CPU's time-stamp counter
/// where it is invariant, the operating system's monotonic clock elsewhere. [`Clock::mock`]
/// is a clock that moves only when a test moves it, for deterministic tests: with it every
/// progress tick is read exactly (see the crate docs, "Ticks").
///
/// Cloning is cheap; clones of a mock clock all follow its [`MockClock`].
///
/// ```
/// use std::time::Duration;
/// use flushwatch::{Clock, Config, FlushTracker};
///
/// let (clock, mock) = Clock::mock();
/// let tracker = FlushTracker::new(
///     Config::default().grace(Duration::from_secs(10)).clock(clock),
/// )?;
/// let w = tracker.register("orders")?;
/// tracker.track(1, &[w.id()])?;
/// mock.increment(Duration::from_secs(4));
/// assert_eq!(tracker.status("orders").unwrap().idle, Duration::from_secs(4));
/// # Ok::<(), flushwatch::Error>(())
/// ```
#[derive(Clone)]
pub struct Clock {
    source: Source,
}

#[derive(Clone)]
enum Source {
    Real(quanta::Clock),
    Mock(StdArc<MockClock>),
}

impl Clock {
    /// The cheap monotonic clock (the default): the CPU's time-stamp counter where it is
    /// invariant (about 10 ns a read), the operating system's monotonic clock elsewhere.
    /// The first call in a process calibrates the counter against the OS clock.
    pub fn new() -> Self {
        Clock {
            source: Source::Real(quanta::Clock::new()),
        }
    }

    /// A clock that stands still until its [`MockClock`] moves it, and the handle that moves
    /// it. Every clone of the clock follows the same handle.
    ///
    /// ```
    /// use std::time::Duration;
    /// use flushwatch::Clock;
    /// let (clock, mock) = Clock::mock();
    /// let again = clock.clone(); // follows the same mock
    /// mock.increment(Duration::from_secs(1));
    /// # let _ = again;
    /// ```
    #[must_use]
    pub fn mock() -> (Clock, StdArc<MockClock>) {
        let mock = StdArc::new(MockClock {
            nanos: UnmodelledU64::new(0),
        });
        let clock = Clock {
            source: Source::Mock(mock.clone()),
        };
        (clock, mock)
    }

    /// Whether this is a mock clock.
    pub(crate) fn is_mock(&self) -> bool {
        matches!(self.source, Source::Mock(_))
    }
}

impl Default for Clock {
    /// [`Clock::new`].
    fn default() -> Self {
        Clock::new()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Real(_) => f.write_str("Clock::Real"),
            Source::Mock(m) => f.debug_tuple("Clock::Mock").field(m).finish(),
        }
    }
}

/// The handle that moves a mock clock ([`Clock::mock`]): every [`Clock`] made with it moves
/// with it, and so does every tracker using one of them.
///
/// A mock clock starts at zero and saturates: it neither wraps past the largest time nor
/// goes below zero.
///
/// ```
/// use std::time::Duration;
/// use flushwatch::{Clock, Config, FlushTracker};
///
/// let (clock, mock) = Clock::mock();
/// let tracker = FlushTracker::new(
///     Config::default()
///         .grace(Duration::from_secs(10))
///         .challenge(Duration::from_secs(2))
///         .clock(clock),
/// )?;
/// let w = tracker.register("orders")?;
/// tracker.track(1, &[w.id()])?;
/// mock.increment(Duration::from_secs(11));
/// assert_eq!(tracker.scan().suspected, ["orders"]);
/// # Ok::<(), flushwatch::Error>(())
/// ```
pub struct MockClock {
    /// Nanoseconds since the mock was made.
    nanos: UnmodelledU64,
}

impl MockClock {
    /// Moves the clock forward by `by` (saturating at the largest time).
    pub fn increment(&self, by: Duration) {
        self.shift(|t| t.saturating_add(nanos(by)));
    }

    /// Moves the clock back by `by` (saturating at zero). Trackers treat a tick from the
    /// future as no time elapsed, so moving back never makes anything overdue.
    pub fn decrement(&self, by: Duration) {
        self.shift(|t| t.saturating_sub(nanos(by)));
    }

    fn shift(&self, to: impl Fn(u64) -> u64) {
        // Release: pairs with `now`'s Acquire load, so a reader that sees the new time also
        // sees what the mover did before moving it (what quanta's SeqCst mock gave).
        let _ = self
            .nanos
            .fetch_update(Ordering::Release, Ordering::Relaxed, |t| Some(to(t)));
    }

    /// The mock time, in nanoseconds since the mock was made.
    fn now(&self) -> u64 {
        // Acquire: pairs with the Release of `increment` and `decrement`.
        self.nanos.load(Ordering::Acquire)
    }
}

impl fmt::Debug for MockClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockClock")
            .field("elapsed", &Duration::from_nanos(self.now()))
            .finish()
    }
}

/// `d` in nanoseconds, saturating: the crate's one conversion of a `Duration` to ticks.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What the hot path reads, alone in its cache line: nothing written on every `track` or
/// every lock acquisition may share it.
struct Hot {
    /// Whether the clock is a mock: then `recent` reads it exactly. Never changes.
    exact: bool,
    /// The tick the last scan published. Written only by `publish` (once per scan), read by
    /// the flush and track paths.
    coarse: AtomicU64,
}

/// The tracker's time source: the clock and its reading when the tracker was made.
pub(crate) struct Ticker {
    hot: CachePadded<Hot>,
    epoch: Epoch,
}

/// A clock and its reading at the tracker's creation.
enum Epoch {
    Real(quanta::Clock, quanta::Instant),
    Mock(StdArc<MockClock>, u64),
}

impl Ticker {
    /// `coarse`: treat even a mock clock as coarse (a test hook, see `Config::coarse_ticks`).
    pub(crate) fn new(clock: Clock, coarse: bool) -> Self {
        let exact = clock.is_mock() && !coarse;
        let epoch = match clock.source {
            Source::Real(c) => {
                let at = c.now();
                Epoch::Real(c, at)
            }
            Source::Mock(m) => {
                let at = m.now();
                Epoch::Mock(m, at)
            }
        };
        Ticker {
            hot: CachePadded::new(Hot {
                exact,
                coarse: AtomicU64::new(0),
            }),
            epoch,
        }
    }

    /// The exact current tick.
    pub(crate) fn now(&self) -> u64 {
        match &self.epoch {
            Epoch::Real(c, at) => nanos(c.now().saturating_duration_since(*at)),
            Epoch::Mock(m, at) => m.now().saturating_sub(*at),
        }
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn mock_clocks_are_exact_and_real_ones_are_not() {
        let (mock, _) = Clock::mock();
        assert!(Ticker::new(mock.clone(), false).is_exact());
        assert!(!Ticker::new(mock, true).is_exact(), "coarse_ticks");
        assert!(!Ticker::new(Clock::new(), false).is_exact());
    }

    #[test]
    fn mock_ticks_are_exact_and_saturate_before_the_epoch() {
        let (clock, mock) = Clock::mock();
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
        let t = Ticker::new(Clock::new(), false);
        assert!(!t.is_exact());
        assert_eq!(t.recent(), 0);
        t.publish(42);
        assert_eq!(t.recent(), 42);
        t.publish(41);
        assert_eq!(t.recent(), 42, "publication never goes back");
    }

    #[test]
    fn a_coarse_pending_tick_is_exact_only_before_the_first_scan() {
        let (clock, mock) = Clock::mock();
        let t = Ticker::new(clock, true);
        mock.increment(Duration::from_nanos(800));
        assert_eq!((t.recent(), t.pending_tick()), (0, 800));
        t.publish(700);
        mock.increment(Duration::from_nanos(50));
        assert_eq!(t.pending_tick(), 700, "the published tick once a scan ran");
    }
}
