//! The background scanner: a thread that runs [`scan`] at a fixed rate, and the [`Scanner`]
//! guard that stops it.
//!
//! # Ground rules
//!
//! - The thread owns clones of the tracker's shared state and scan state; it takes the scan
//!   lock only inside [`scan`], and nothing else of the tracker.
//! - It stops when told through [`StopSignal`] (a `Mutex<bool>` + `Condvar`: no spin loop),
//!   by the guard's drop or by the last tracker handle going away; it stores
//!   `scanner_running = false` (`Release`) as it exits, so a new scanner can start.
//! - A panic inside a scan is caught, counted and reported; scanning goes on.

use std::fmt;
use std::time::{Duration, Instant};

use crate::core::Shared;
use crate::scan::{scan, ScanState};
use crate::sync::{lock, thread, Arc, Condvar, Mutex, Ordering};
use crate::Event;

/// The guard of the background scanner thread: dropping it stops and joins the thread.
///
/// With the `tokio` feature, a guard dropped inside a tokio runtime only signals stop and
/// returns at once: the thread exits after the scan in flight, and
/// [`spawn_scanner`](crate::FlushTracker::spawn_scanner) returns
/// [`Error::ScannerRunning`](crate::Error::ScannerRunning) until then.
#[must_use = "dropping the guard stops the scanner"]
pub struct Scanner {
    pub(crate) stop: Arc<StopSignal>,
    pub(crate) join: Option<thread::JoinHandle<()>>,
}

impl fmt::Debug for Scanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scanner").finish_non_exhaustive()
    }
}

impl Scanner {
    /// Stops the scanner thread and waits for it (what dropping the guard does; inside a tokio
    /// runtime, with the `tokio` feature, it does not wait).
    pub fn stop(self) {}
}

impl Drop for Scanner {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(join) = self.join.take() {
            if crate::features::detach_scanner() {
                return; // inside a tokio runtime: detach, never block an executor thread
            }
            // A scan panic is caught inside the thread; a join error can only come from a
            // panic in the loop itself, which there is nobody to report to here.
            let _ = join.join();
        }
    }
}

pub(crate) struct StopSignal {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl StopSignal {
    pub(crate) fn new() -> Self {
        StopSignal {
            stopped: Mutex::new(false),
            wake: Condvar::new(),
        }
    }

    pub(crate) fn stop(&self) {
        *lock(&self.stopped) = true;
        self.wake.notify_all();
    }

    /// Sleeps until `deadline` or a stop; returns whether stopped. (Under loom, timeouts are
    /// not modelled: it waits for the stop.)
    fn wait_until(&self, deadline: Instant) -> bool {
        let mut stopped = lock(&self.stopped);
        loop {
            if *stopped {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            stopped = match self.wake.wait_timeout(stopped, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }
}

/// Starts the scanner thread.
pub(crate) fn spawn<K>(
    shared: Arc<Shared<K>>,
    state: Arc<Mutex<ScanState<K>>>,
    stop: Arc<StopSignal>,
) -> std::io::Result<thread::JoinHandle<()>>
where
    K: crate::ShapeKey,
{
    thread::Builder::new()
        .name("flushwatch-scanner".into())
        .spawn(move || run(&shared, &state, &stop))
}

/// The scanner loop: fixed rate on the grid `start + k * scan_interval`. A scan that overruns
/// delays the next one (which then starts at once) without shifting the grid; grid points
/// missed entirely are skipped rather than run in a burst.
fn run<K>(shared: &Shared<K>, state: &Mutex<ScanState<K>>, stop: &StopSignal)
where
    K: crate::ShapeKey,
{
    let interval = shared.scan_interval;
    let mut next = Instant::now();
    while !stop.wait_until(next) {
        scan_catching(shared, state);
        // An interval beyond `Instant`'s range means "never again until stopped".
        next = next
            .checked_add(interval)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(u64::from(u32::MAX)));
        let now = Instant::now();
        if next < now {
            let missed = (now - next).as_nanos() / interval.as_nanos();
            let missed = u32::try_from(missed).unwrap_or(u32::MAX);
            next += interval.saturating_mul(missed);
        }
    }
    // Release: pairs with spawn_scanner's AcqRel CAS.
    shared.scanner_running.store(false, Ordering::Release);
}

/// One scan; a panic inside it is caught, counted and reported.
fn scan_catching<K>(shared: &Shared<K>, state: &Mutex<ScanState<K>>)
where
    K: crate::ShapeKey,
{
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scan(shared, state)));
    if let Err(payload) = result {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        // Relaxed: a statistic.
        shared.counters.scan_panics.fetch_add(1, Ordering::Relaxed);
        shared.events.info(Event::ScanPanicked { message });
    }
}
