//! Configuration.

use std::time::Duration;

use crate::{Clock, ConfigError, Offset};

/// What the scanner does with a shape that stays stuck through its challenge.
///
/// ```
/// use flushwatch::{Config, StallPolicy};
/// let config = Config::default().stall_policy(StallPolicy::Report);
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum StallPolicy {
    /// The shape stops counting at once (the scan that stalls it already computes the watermark
    /// without it), its writer becomes inert and its key is free to register again.
    #[default]
    Evict,
    /// The shape keeps pinning the watermark; [`Event::Stalled`](crate::Event::Stalled) is the
    /// only action. The detector re-arms: the shape is suspected again after `grace` and
    /// stalled again after a further `challenge`, never an event every scan.
    Report,
}

/// Tracker configuration: `Default` plus builder-style setters, validated by
/// [`FlushTracker::new`](crate::FlushTracker::new).
///
/// | setter | default | meaning |
/// | --- | --- | --- |
/// | [`grace`](Config::grace) | 60 s | a pending shape idle strictly longer than this is overdue |
/// | [`challenge`](Config::challenge) | 5 s | how long a suspected shape has to answer before it stalls |
/// | [`scan_interval`](Config::scan_interval) | 100 ms | period of the background scanner; also the tick resolution |
/// | [`start_at`](Config::start_at) | 0 | initial `last_seen` and published watermark |
/// | [`stall_policy`](Config::stall_policy) | `Evict` | what a stall does |
/// | [`event_capacity`](Config::event_capacity) | 4096 | queue length at which new informational events are dropped and counted (action events are always queued) |
/// | [`lag_window`](Config::lag_window) | 50 scans | window of the lagging classifier; 0 turns it off |
/// | [`clock`](Config::clock) | [`Clock::new()`] | the time source; tests pass [`Clock::mock()`] |
///
/// A stuck writer is stalled no later than `grace + challenge + 2 * scan_interval + r` (plus
/// one scan's duration) after the later of its last progress and the scanner's first scan,
/// where `r <= scan_interval` is the tick resolution.
///
/// ```
/// use std::time::Duration;
/// use flushwatch::{Config, FlushTracker, StallPolicy};
///
/// let config = Config::default()
///     .grace(Duration::from_secs(30))
///     .challenge(Duration::from_secs(2))
///     .scan_interval(Duration::from_millis(50))
///     .start_at(1_000)
///     .stall_policy(StallPolicy::Evict)
///     .event_capacity(1024);
/// let tracker = FlushTracker::<u32>::new(config).unwrap();
/// assert_eq!(tracker.watermark(), 1_000);
///
/// // Zero grace and challenge are valid; a zero scan interval is not.
/// assert!(FlushTracker::<u32>::new(Config::default().grace(Duration::ZERO)).is_ok());
/// assert!(FlushTracker::<u32>::new(Config::default().scan_interval(Duration::ZERO)).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) grace: Duration,
    pub(crate) challenge: Duration,
    pub(crate) scan_interval: Duration,
    pub(crate) start_at: Offset,
    pub(crate) stall_policy: StallPolicy,
    pub(crate) event_capacity: usize,
    pub(crate) lag_window: u32,
    pub(crate) clock: Option<Clock>,
    pub(crate) coarse_ticks: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            grace: Duration::from_secs(60),
            challenge: Duration::from_secs(5),
            scan_interval: Duration::from_millis(100),
            start_at: 0,
            stall_policy: StallPolicy::Evict,
            event_capacity: 4096,
            lag_window: 50,
            clock: None,
            coarse_ticks: false,
        }
    }
}

impl Config {
    /// How long a pending shape may go without progress before it is overdue (strictly more
    /// than this). Zero is valid: any pending shape idle for any time at all is overdue.
    #[must_use = "a setter returns the changed Config"]
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// How long a suspected shape has to answer (progress or `defer()`) before it is stalled
    /// (strictly more than this, and never in the scan that suspected it). Zero is valid.
    #[must_use = "a setter returns the changed Config"]
    pub fn challenge(mut self, challenge: Duration) -> Self {
        self.challenge = challenge;
        self
    }

    /// Period of the background scanner. Must be greater than zero. With the background
    /// scanner it is also the resolution `r` of progress on a real clock (see the crate docs,
    /// "Ticks").
    #[must_use = "a setter returns the changed Config"]
    pub fn scan_interval(mut self, interval: Duration) -> Self {
        self.scan_interval = interval;
        self
    }

    /// Initial `last_seen` and published watermark. `0` and `u64::MAX` are legal.
    #[must_use = "a setter returns the changed Config"]
    pub fn start_at(mut self, offset: Offset) -> Self {
        self.start_at = offset;
        self
    }

    /// What a stall does; see [`StallPolicy`].
    #[must_use = "a setter returns the changed Config"]
    pub fn stall_policy(mut self, policy: StallPolicy) -> Self {
        self.stall_policy = policy;
        self
    }

    /// Queue length at which new *informational* events (`Suspected`, `Lagging`,
    /// `ScanPanicked`) are dropped and counted in
    /// [`FlushTracker::events_dropped`](crate::FlushTracker::events_dropped). Must be greater
    /// than zero. *Action* events (`Stalled`, `WriterDown`) are queued beyond it and never
    /// lost; they are bounded by the shapes that ended or stalled (at most one unread
    /// `Stalled` per shape). The queue grows on demand: any capacity, `usize::MAX` included,
    /// allocates nothing up front.
    #[must_use = "a setter returns the changed Config"]
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity;
        self
    }

    /// Number of consecutive scans over which a pending shape that progresses while its lag
    /// grows is classified as lagging ([`Event::Lagging`](crate::Event::Lagging)). `0` turns
    /// the classifier off.
    #[must_use = "a setter returns the changed Config"]
    pub fn lag_window(mut self, scans: u32) -> Self {
        self.lag_window = scans;
        self
    }

    /// The time source; [`Clock::new()`] by default. [`Clock::mock()`] gives deterministic
    /// tests: with a mock clock every tick is read exactly (see the crate docs, "Ticks").
    ///
    /// ```
    /// use std::time::Duration;
    /// use flushwatch::{Clock, Config, FlushTracker};
    /// let (clock, mock) = Clock::mock();
    /// let tracker = FlushTracker::<u32>::new(Config::default().clock(clock))?;
    /// mock.increment(Duration::from_secs(1)); // moves this tracker's time
    /// # let _ = tracker;
    /// # Ok::<(), flushwatch::Error>(())
    /// ```
    #[must_use = "a setter returns the changed Config"]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Test hook: treat a mock clock like a real one (coarse ticks published by scans, idleness
    /// judged from what scans saw), so the real-clock rules can be tested deterministically.
    /// Hidden: not part of the semver-bound API.
    #[doc(hidden)]
    #[must_use = "a setter returns the changed Config"]
    pub fn coarse_ticks(mut self, coarse: bool) -> Self {
        self.coarse_ticks = coarse;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.scan_interval.is_zero() {
            return Err(ConfigError::ZeroScanInterval);
        }
        if self.event_capacity == 0 {
            return Err(ConfigError::ZeroEventCapacity);
        }
        Ok(())
    }
}
