//! The one place that names flushwatch's clock type: a tracker made with a mock clock keeps
//! the handle that moves it (`Flushwatch.advance/2`).

use std::sync::Arc;
use std::time::Duration;

use flushwatch::Config;

/// Moves the mock clock of one tracker.
pub(crate) struct MockHandle(Arc<flushwatch::MockClock>);

impl MockHandle {
    /// Moves the clock forward.
    pub(crate) fn advance(&self, by: Duration) {
        self.0.increment(by);
    }
}

/// `config` with a fresh mock clock, and the handle that moves it.
pub(crate) fn with_mock(config: Config) -> (Config, MockHandle) {
    let (clock, mock) = flushwatch::Clock::mock();
    (config.clock(clock), MockHandle(mock))
}
