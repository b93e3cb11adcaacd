//! The tracker resource and the NIFs on it.
//!
//! Scheduling: every NIF here is a plain NIF doing bounded work (a map lookup, a counter
//! snapshot, one `track` of at most `Flushwatch`'s small-track limit of shapes), except
//! `scan` and `track_dirty`, which run on dirty CPU schedulers: their work grows with the
//! number of shapes.

use std::collections::HashSet;
use std::time::Duration;

use rustler::types::atom::Atom;
use rustler::{Binary, Encoder, Env, LocalPid, NifResult, Resource, ResourceArc, Term};

use flushwatch::{Config, ConfigError, Error, FlushTracker, ShapeId, StallPolicy};

use crate::clock::{self, MockHandle};
use crate::hub::{self, Hub};
use crate::writer::{IdRes, WriterRes};
use crate::{atoms, keys, queue, term, Key};

/// A tracker, as the BEAM holds it.
pub struct TrackerRes {
    pub(crate) tracker: FlushTracker<Key>,
    mock: Option<MockHandle>,
    hub: std::sync::Arc<Hub>,
    events: queue::Queue,
}

#[rustler::resource_impl]
impl Resource for TrackerRes {}

impl Drop for TrackerRes {
    fn drop(&mut self) {
        // The resource was collected: stop the hub thread (it holds no reference to us).
        self.hub.stop();
    }
}

fn error_term<'a>(env: Env<'a>, e: &Error) -> Term<'a> {
    let reason = match e {
        Error::DuplicateShape => atoms::duplicate_shape().encode(env),
        Error::OffsetRegression { last_seen, got } => {
            (atoms::offset_regression(), *last_seen, *got).encode(env)
        }
        Error::ZeroCommit => atoms::zero_commit().encode(env),
        Error::InvalidConfig(c) => {
            let which = match c {
                ConfigError::ZeroScanInterval => atoms::zero_scan_interval(),
                ConfigError::ZeroEventCapacity => atoms::zero_event_capacity(),
                _ => atoms::other(),
            };
            (atoms::invalid_config(), which).encode(env)
        }
        Error::ScannerRunning => atoms::scanner_running().encode(env),
        other => (atoms::other(), other.to_string()).encode(env),
    };
    (atoms::error(), reason).encode(env)
}

/// Makes a tracker and starts its hub thread. Durations in milliseconds; `policy` is
/// `:evict` or `:report`; the options were validated by `Flushwatch.new/1`.
#[rustler::nif]
#[allow(clippy::too_many_arguments)]
fn new<'a>(
    env: Env<'a>,
    tag: Binary,
    grace_ms: u64,
    challenge_ms: u64,
    scan_interval_ms: u64,
    start_at: u64,
    policy: Atom,
    event_capacity: usize,
    lag_window: u32,
    mock: bool,
    auto_scan: bool,
) -> NifResult<Term<'a>> {
    let policy = if policy == atoms::evict() {
        StallPolicy::Evict
    } else if policy == atoms::report() {
        StallPolicy::Report
    } else {
        return Err(rustler::Error::BadArg);
    };
    let interval = Duration::from_millis(scan_interval_ms);
    let config = Config::default()
        .grace(Duration::from_millis(grace_ms))
        .challenge(Duration::from_millis(challenge_ms))
        .scan_interval(interval)
        .start_at(start_at)
        .stall_policy(policy)
        .event_capacity(event_capacity)
        .lag_window(lag_window);
    let (config, mock) = if mock {
        let (config, handle) = clock::with_mock(config);
        (config, Some(handle))
    } else {
        (config, None)
    };
    let tracker = match FlushTracker::new(config) {
        Ok(t) => t,
        Err(e) => return Ok(error_term(env, &e)),
    };
    let hub = Hub::new();
    let plan = hub::Plan {
        tracker: tracker.clone(),
        hub: hub.clone(),
        tag: tag.as_slice().to_vec(),
        interval,
        auto_scan: auto_scan && mock.is_none(),
    };
    if let Err(e) = hub::spawn(plan) {
        return Ok((atoms::error(), (atoms::thread_spawn(), e.to_string())).encode(env));
    }
    let events = queue::of(&tracker);
    let res = ResourceArc::new(TrackerRes {
        tracker,
        mock,
        hub,
        events,
    });
    Ok((atoms::ok(), res).encode(env))
}

#[rustler::nif]
fn register<'a>(env: Env<'a>, t: ResourceArc<TrackerRes>, key: Binary) -> Term<'a> {
    let key: Key = key.as_slice().into();
    match t.tracker.register(key.clone()) {
        Ok(w) => {
            let id = w.id();
            (atoms::ok(), ResourceArc::new(WriterRes::new(id, key, w))).encode(env)
        }
        Err(e) => error_term(env, &e),
    }
}

#[rustler::nif]
fn id_of<'a>(env: Env<'a>, t: ResourceArc<TrackerRes>, key: Binary) -> Term<'a> {
    match keys::id_of(&t.tracker, key.as_slice()) {
        Some(id) => ResourceArc::new(IdRes { id }).encode(env),
        None => atoms::nil().encode(env),
    }
}

/// One element of a `track` list: a writer, an id, or a key (a binary).
fn resolve(
    t: &TrackerRes,
    item: Term,
    ids: &mut Vec<ShapeId>,
    unknown: &mut Vec<Key>,
) -> NifResult<()> {
    if let Ok(w) = item.decode::<ResourceArc<WriterRes>>() {
        ids.push(w.id);
    } else if let Ok(i) = item.decode::<ResourceArc<IdRes>>() {
        ids.push(i.id);
    } else {
        let key: Binary = item.decode()?;
        match keys::id_of(&t.tracker, key.as_slice()) {
            Some(id) => ids.push(id),
            None => unknown.push(key.as_slice().into()),
        }
    }
    Ok(())
}

/// `track` for both schedulers: decodes every element before changing anything, so a bad
/// element (`ArgumentError`) loses nothing.
fn track_any<'a>(
    env: Env<'a>,
    t: &TrackerRes,
    commit: u64,
    shapes: Term<'a>,
) -> NifResult<Term<'a>> {
    // The length check also rejects an improper list (the iterator would stop at its tail).
    let mut ids = Vec::with_capacity(shapes.list_length()?);
    let mut unknown = Vec::new();
    for item in shapes.decode::<rustler::ListIterator>()? {
        resolve(t, item, &mut ids, &mut unknown)?;
    }
    // Unknown keys count as skipped, each distinct key once (as an id named twice).
    let extra = if unknown.len() > 1 {
        unknown.iter().collect::<HashSet<_>>().len()
    } else {
        unknown.len()
    };
    Ok(match t.tracker.track(commit, &ids) {
        Ok(tracked) => (atoms::ok(), term::tracked(env, &tracked, extra)).encode(env),
        Err(e) => error_term(env, &e),
    })
}

#[rustler::nif]
fn track<'a>(
    env: Env<'a>,
    t: ResourceArc<TrackerRes>,
    commit: u64,
    shapes: Term<'a>,
) -> NifResult<Term<'a>> {
    track_any(env, &t, commit, shapes)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn track_dirty<'a>(
    env: Env<'a>,
    t: ResourceArc<TrackerRes>,
    commit: u64,
    shapes: Term<'a>,
) -> NifResult<Term<'a>> {
    track_any(env, &t, commit, shapes)
}

#[rustler::nif]
fn remove(t: ResourceArc<TrackerRes>, key: Binary) -> bool {
    keys::remove(&t.tracker, key.as_slice())
}

#[rustler::nif]
fn watermark(t: ResourceArc<TrackerRes>) -> u64 {
    t.tracker.watermark()
}

#[rustler::nif]
fn last_seen(t: ResourceArc<TrackerRes>) -> u64 {
    t.tracker.last_seen()
}

#[rustler::nif]
fn status<'a>(env: Env<'a>, t: ResourceArc<TrackerRes>, key: Binary) -> Term<'a> {
    term::status(env, keys::status(&t.tracker, key.as_slice()).as_ref())
}

#[rustler::nif]
fn pinned_by<'a>(env: Env<'a>, t: ResourceArc<TrackerRes>) -> Term<'a> {
    term::status(env, t.tracker.pinned_by().as_ref())
}

#[rustler::nif]
fn stats<'a>(env: Env<'a>, t: ResourceArc<TrackerRes>) -> Term<'a> {
    term::stats(env, &t.tracker.stats())
}

/// Registered shapes up to which `scan_small` scans on a normal scheduler: a scan's work is
/// bounded by the registered shapes (`scripts/beam-bench`, `nif_scan_1024_shapes_ns`).
const SMALL_SCAN: usize = 1024;

fn scan_now<'a>(env: Env<'a>, t: &TrackerRes) -> Term<'a> {
    let report = t.tracker.scan();
    t.hub.poke();
    term::report(env, &report)
}

/// One scan now, on a dirty CPU scheduler; the hub then delivers what it produced.
#[rustler::nif(schedule = "DirtyCpu")]
fn scan<'a>(env: Env<'a>, t: ResourceArc<TrackerRes>) -> Term<'a> {
    scan_now(env, &t)
}

/// One scan now on this (normal) scheduler when at most `SMALL_SCAN` shapes are registered,
/// else `:large` (the caller then uses `scan`): a dirty call's round trip costs more than a
/// small scan.
#[rustler::nif]
fn scan_small<'a>(env: Env<'a>, t: ResourceArc<TrackerRes>) -> Term<'a> {
    if t.tracker.stats().registered <= SMALL_SCAN {
        scan_now(env, &t)
    } else {
        atoms::large().encode(env)
    }
}

#[rustler::nif]
fn subscribe(t: ResourceArc<TrackerRes>, pid: LocalPid) -> Atom {
    t.hub.subscribe(pid);
    atoms::ok()
}

#[rustler::nif]
fn unsubscribe(t: ResourceArc<TrackerRes>, pid: LocalPid) -> Atom {
    t.hub.unsubscribe(&pid);
    atoms::ok()
}

/// Takes the queued events (what a subscriber would have been sent), oldest first.
#[rustler::nif]
fn take_events<'a>(env: Env<'a>, t: ResourceArc<TrackerRes>) -> Term<'a> {
    queue::take(&t.events)
        .iter()
        .map(|e| queue::encode(env, e))
        .collect::<Vec<_>>()
        .encode(env)
}

/// Moves a mock clock forward; `{:error, :no_mock_clock}` on a real clock.
#[rustler::nif]
fn advance<'a>(env: Env<'a>, t: ResourceArc<TrackerRes>, ms: u64) -> Term<'a> {
    match &t.mock {
        Some(m) => {
            m.advance(Duration::from_millis(ms));
            atoms::ok().encode(env)
        }
        None => (atoms::error(), atoms::no_mock_clock()).encode(env),
    }
}

/// A handle on a tracker's thread that does not keep the tracker alive (for tests of its
/// collection).
pub struct ProbeRes(std::sync::Arc<Hub>);

#[rustler::resource_impl]
impl Resource for ProbeRes {}

#[rustler::nif]
fn probe(t: ResourceArc<TrackerRes>) -> ResourceArc<ProbeRes> {
    ResourceArc::new(ProbeRes(t.hub.clone()))
}

/// Whether the probed tracker's thread still runs.
#[rustler::nif]
fn probe_running(p: ResourceArc<ProbeRes>) -> bool {
    p.0.running()
}
