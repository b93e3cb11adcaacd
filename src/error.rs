//! Error types.

use std::fmt;

use crate::Offset;

/// What can go wrong on the setup and producer paths.
///
/// The hot path ([`Writer::flushed`](crate::Writer::flushed)) never fails: bad reports are
/// ignored or clamped as SPEC.md's bad-input table says. Every error leaves the tracker's state
/// exactly as it was.
///
/// ```
/// use flushwatch::{Config, Error, FlushTracker};
///
/// let tracker = FlushTracker::<&str>::new(Config::default()).unwrap();
/// let _w = tracker.register("orders").unwrap();
/// assert_eq!(tracker.register("orders").unwrap_err(), Error::DuplicateShape);
/// assert_eq!(tracker.track(0, &[]).unwrap_err(), Error::ZeroCommit);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// `register` was called with a key that is registered; the existing shape is untouched.
    DuplicateShape,
    /// `track` was called with a commit position not above the highest one tracked so far.
    OffsetRegression {
        /// The highest commit tracked so far (or `start_at`).
        last_seen: Offset,
        /// The position passed to `track`.
        got: Offset,
    },
    /// `track` was called with commit position 0, which cannot name a transaction.
    ZeroCommit,
    /// [`FlushTracker::new`](crate::FlushTracker::new) rejected the configuration.
    InvalidConfig(ConfigError),
    /// `spawn_scanner` was called while a scanner thread of this tracker runs.
    ScannerRunning,
    /// The operating system refused to start the scanner thread.
    ScannerSpawn(String),
}

/// Why a [`Config`](crate::Config) was rejected.
///
/// ```
/// use flushwatch::{Config, ConfigError, Error, FlushTracker};
/// use std::time::Duration;
/// let err = FlushTracker::<u8>::new(Config::default().scan_interval(Duration::ZERO)).unwrap_err();
/// assert_eq!(err, Error::InvalidConfig(ConfigError::ZeroScanInterval));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `scan_interval` was zero: the scanner would spin.
    ZeroScanInterval,
    /// `event_capacity` was zero: no event could ever be delivered.
    ZeroEventCapacity,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ZeroScanInterval => f.write_str("scan_interval must be greater than zero"),
            ConfigError::ZeroEventCapacity => {
                f.write_str("event_capacity must be greater than zero")
            }
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::DuplicateShape => f.write_str("a shape with this key is already registered"),
            Error::OffsetRegression { last_seen, got } => write!(
                f,
                "commit {got} does not advance past the last tracked commit {last_seen}"
            ),
            Error::ZeroCommit => f.write_str("commit position 0 cannot name a transaction"),
            Error::InvalidConfig(e) => write!(f, "invalid configuration: {e}"),
            Error::ScannerRunning => f.write_str("a scanner thread is already running"),
            Error::ScannerSpawn(e) => write!(f, "could not start the scanner thread: {e}"),
        }
    }
}

impl std::error::Error for Error {}
impl std::error::Error for ConfigError {}
