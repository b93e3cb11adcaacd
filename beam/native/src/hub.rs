//! The tracker's own thread: it scans at a fixed rate (unless the tracker runs on a mock
//! clock, where `Flushwatch.scan/1` decides when time has passed) and delivers events and
//! watermark changes to the subscribed processes as `{:flushwatch, tag, event}` messages.
//!
//! # Ground rules
//!
//! - The thread holds a `FlushTracker` handle and the [`Hub`], never the tracker *resource*:
//!   so the resource can be collected, and its destructor stops the thread ([`Hub::stop`]).
//!   The destructor does not join (it may run on a scheduler thread); the thread exits after
//!   the scan in flight.
//! - Events are taken from the queue only while someone is subscribed, and an event no live
//!   subscriber accepted is kept for the next round: action events are never lost to a
//!   subscriber that died.
//! - [`Hub::running`] says whether the thread runs (tests watch it stop when a tracker is
//!   collected).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustler::{Encoder, Env, LocalPid, OwnedEnv, Term};

use flushwatch::{Event, FlushTracker};

use crate::{atoms, queue, Key};

/// What the tracker resource and its thread share.
pub(crate) struct Hub {
    state: Mutex<State>,
    wake: Condvar,
    /// Whether the thread runs (cleared as it exits): what `Flushwatch.Native.probe/1` shows.
    running: AtomicBool,
}

#[derive(Default)]
struct State {
    stop: bool,
    poke: bool,
    subscribers: Vec<LocalPid>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Hub {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            running: AtomicBool::new(true),
        })
    }

    /// Stops the thread (the tracker resource's destructor calls it).
    pub(crate) fn stop(&self) {
        lock(&self.state).stop = true;
        self.wake.notify_all();
    }

    /// Asks the thread to deliver now (after a manual scan, a subscription).
    pub(crate) fn poke(&self) {
        lock(&self.state).poke = true;
        self.wake.notify_all();
    }

    pub(crate) fn subscribe(&self, pid: LocalPid) {
        {
            let mut s = lock(&self.state);
            if !s.subscribers.contains(&pid) {
                s.subscribers.push(pid);
            }
            s.poke = true;
        }
        self.wake.notify_all();
    }

    pub(crate) fn unsubscribe(&self, pid: &LocalPid) {
        lock(&self.state).subscribers.retain(|p| p != pid);
    }

    /// Waits until `deadline`, a poke or a stop; `None` when stopped, else the subscribers.
    fn wait(&self, deadline: Instant) -> Option<Vec<LocalPid>> {
        let mut s = lock(&self.state);
        loop {
            if s.stop {
                return None;
            }
            let now = Instant::now();
            if s.poke || now >= deadline {
                s.poke = false;
                return Some(s.subscribers.clone());
            }
            s = match self.wake.wait_timeout(s, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// Whether the thread still runs.
    pub(crate) fn running(&self) -> bool {
        // Acquire: pairs with the Release store as the thread exits (a test reads it).
        self.running.load(Ordering::Acquire)
    }

    fn forget(&self, dead: &[LocalPid]) {
        lock(&self.state).subscribers.retain(|p| !dead.contains(p));
    }
}

/// What the thread needs to know.
pub(crate) struct Plan {
    pub(crate) tracker: FlushTracker<Key>,
    pub(crate) hub: Arc<Hub>,
    /// The tracker's tag (an Erlang reference) in the external term format.
    pub(crate) tag: Vec<u8>,
    pub(crate) interval: Duration,
    /// Scan on the interval (false on a mock clock: the test scans).
    pub(crate) auto_scan: bool,
}

/// Clears [`Hub::running`] however the thread ends.
struct Exit(Arc<Hub>);

impl Drop for Exit {
    fn drop(&mut self) {
        // Release: pairs with the Acquire load in `running`.
        self.0.running.store(false, Ordering::Release);
    }
}

/// Starts the thread.
pub(crate) fn spawn(plan: Plan) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("flushwatch-beam".into())
        .spawn(move || {
            let _exit = Exit(plan.hub.clone());
            run(plan);
        })
        .map(drop)
}

fn run(plan: Plan) {
    let events = queue::of(&plan.tracker);
    let mut env = OwnedEnv::new();
    let mut backlog: VecDeque<Event<Key>> = VecDeque::new();
    let mut told = plan.tracker.watermark();
    // The scan schedule: the grid `start + k * interval`, as the crate's own scanner. A scan
    // that overruns delays the next one without shifting the grid; missed points are skipped.
    let mut next = Instant::now();
    while let Some(subscribers) = plan.hub.wait(next) {
        let now = Instant::now();
        if now >= next {
            if plan.auto_scan {
                // A panic inside a scan (none is known for byte keys) must not end delivery.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    plan.tracker.scan();
                }));
            }
            next = next_point(next, plan.interval, Instant::now());
        }
        if subscribers.is_empty() {
            continue;
        }
        backlog.extend(queue::take(&events));
        let mut dead = Vec::new();
        while let Some(event) = backlog.pop_front() {
            let delivered = send_all(&mut env, &subscribers, &mut dead, &plan.tag, |e| {
                queue::encode(e, &event)
            });
            if !delivered {
                backlog.push_front(event);
                break;
            }
        }
        let watermark = plan.tracker.watermark();
        if watermark != told
            && send_all(&mut env, &subscribers, &mut dead, &plan.tag, |e| {
                (atoms::watermark(), watermark).encode(e)
            })
        {
            told = watermark;
        }
        if !dead.is_empty() {
            plan.hub.forget(&dead);
        }
    }
}

/// The next point of the grid after a scan that ended at `now`.
fn next_point(next: Instant, interval: Duration, now: Instant) -> Instant {
    let Some(mut next) = next.checked_add(interval) else {
        return now + Duration::from_secs(u64::from(u32::MAX));
    };
    if next < now {
        let missed = (now - next).as_nanos() / interval.as_nanos().max(1);
        next += interval.saturating_mul(u32::try_from(missed).unwrap_or(u32::MAX));
    }
    next
}

/// Sends `{:flushwatch, tag, event}` to every live subscriber; records the dead ones.
/// Whether at least one subscriber accepted it.
fn send_all(
    env: &mut OwnedEnv,
    subscribers: &[LocalPid],
    dead: &mut Vec<LocalPid>,
    tag: &[u8],
    event: impl for<'a> Fn(Env<'a>) -> Term<'a>,
) -> bool {
    let mut delivered = false;
    for pid in subscribers {
        if dead.contains(pid) {
            continue;
        }
        let sent = env.send_and_clear(pid, |e| {
            let tag = e
                .binary_to_term(tag)
                .map_or_else(|| atoms::nil().encode(e), |(t, _)| t);
            (atoms::flushwatch(), tag, event(e)).encode(e)
        });
        match sent {
            Ok(()) => delivered = true,
            Err(_) => dead.push(*pid),
        }
    }
    delivered
}
