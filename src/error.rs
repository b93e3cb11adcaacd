//! Error types.

use std::fmt;

use crate::Offset;

/// What can go wrong on the setup and producer paths.
///
/// The hot path ([`Writer::flushed`](crate::Writer::flushed)) never fails: a report below the
/// shape's flushed position is ignored, one beyond what was sent counts as caught up to what
/// was sent, and reports from an ended shape are ignored (see the crate docs, "Bad input").
/// Every error leaves the tracker's state exactly as it was.
///
/// [`InvalidConfig`](Error::InvalidConfig) and [`ScannerSpawn`](Error::ScannerSpawn) carry
/// their cause as [`source`](std::error::Error::source). Their `Display` names the cause too,
/// so that a plain `{err}` is readable on its own.
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
    ScannerSpawn(SpawnError),
}

/// Why the operating system refused to start the scanner thread: the `std::io::Error` of
/// [`std::thread::Builder::spawn`], shared so that [`Error`] stays `Clone`.
///
/// It is transparent: its `Display` and [`source`](std::error::Error::source) are those of the
/// `io::Error`. Two `SpawnError`s are equal when their [`kind`](SpawnError::kind) and message are.
#[derive(Debug, Clone)]
pub struct SpawnError(std::sync::Arc<std::io::Error>);

impl SpawnError {
    pub(crate) fn new(e: std::io::Error) -> Self {
        SpawnError(std::sync::Arc::new(e))
    }

    /// The kind of the underlying `io::Error`.
    pub fn kind(&self) -> std::io::ErrorKind {
        self.0.kind()
    }
}

impl PartialEq for SpawnError {
    fn eq(&self, other: &Self) -> bool {
        self.kind() == other.kind() && self.0.to_string() == other.0.to_string()
    }
}

impl Eq for SpawnError {}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for SpawnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Why a [`Config`](crate::Config) was rejected.
///
/// ```
/// use flushwatch::{Config, ConfigError, Error, FlushTracker};
/// use std::time::Duration;
/// let err = FlushTracker::<u8>::new(Config::default().scan_interval(Duration::ZERO)).unwrap_err();
/// assert_eq!(err, Error::InvalidConfig(ConfigError::ZeroScanInterval));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// ```
/// use std::error::Error as _;
/// use flushwatch::{Config, ConfigError, FlushTracker};
/// let err = FlushTracker::<u8>::new(Config::default().event_capacity(0)).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "invalid configuration: event_capacity must be greater than zero"
/// );
/// let cause = err.source().unwrap();
/// assert_eq!(cause.to_string(), ConfigError::ZeroEventCapacity.to_string());
/// ```
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::InvalidConfig(e) => Some(e),
            Error::ScannerSpawn(e) => Some(&*e.0),
            _ => None,
        }
    }
}
impl std::error::Error for ConfigError {}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::error::Error as _;
    use std::io;

    #[test]
    fn a_spawn_error_keeps_its_io_error_as_source_and_compares_by_kind_and_message() {
        let spawn = |kind, msg| Error::ScannerSpawn(SpawnError::new(io::Error::new(kind, msg)));
        let e = spawn(io::ErrorKind::OutOfMemory, "no threads left");
        assert_eq!(
            e.to_string(),
            "could not start the scanner thread: no threads left"
        );
        let source = e.source().expect("the io::Error");
        assert_eq!(source.to_string(), "no threads left");
        assert!(source.downcast_ref::<io::Error>().is_some());
        assert_eq!(e, e.clone());
        assert_eq!(e, spawn(io::ErrorKind::OutOfMemory, "no threads left"));
        assert_ne!(e, spawn(io::ErrorKind::Other, "no threads left"));
        assert_ne!(e, spawn(io::ErrorKind::OutOfMemory, "another message"));
        let Error::ScannerSpawn(inner) = &e else {
            unreachable!()
        };
        assert_eq!(inner.kind(), io::ErrorKind::OutOfMemory);
    }

    /// What an `io::Error` wraps, with its own cause.
    #[derive(Debug)]
    struct Wrapped(io::Error);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapped")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_spawn_error_is_transparent() {
        let cause = io::Error::other("the cause");
        let io = io::Error::new(io::ErrorKind::OutOfMemory, Wrapped(cause));
        let spawn = SpawnError::new(io);
        assert_eq!(spawn.to_string(), "wrapped", "the io::Error's message");
        let source = spawn.source().expect("the io::Error's source");
        assert_eq!(source.to_string(), "the cause");
        // An OS error (what spawning a thread returns) has no source: neither has its wrapper.
        assert!(SpawnError::new(io::Error::from_raw_os_error(11))
            .source()
            .is_none());
    }
}
