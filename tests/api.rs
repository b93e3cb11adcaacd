//! The 1.0 public surface: flushwatch's own `Clock`/`MockClock` and `Events` (no 0.x crate's
//! type in the API), borrowed-key lookups, keys without `Debug`, the common traits of every
//! public type, `Error::source`, and (feature `tokio`) the nameable `EventStream`.
//!
//! `#[must_use]` on `Writer` and the deprecation warnings of the old re-exports are compile-time
//! properties: they are checked by `compile_fail` doc tests (on `Writer`, and in the crate root).

use std::error::Error as _;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use flushwatch::{
    Clock, Config, ConfigError, DownCause, Error, Event, Events, FlushTracker, MockClock,
    RecvError, RecvTimeoutError, ScanReport, ShapeStatus, StallPolicy, Stats, TrackHint, Tracked,
    TryRecvError, Writer,
};

const SEC: Duration = Duration::from_secs(1);

/// A tracker on a mock clock: grace 10 s, challenge 2 s.
fn mocked<K: flushwatch::ShapeKey>() -> (FlushTracker<K>, Arc<MockClock>) {
    let (clock, mock) = Clock::mock();
    let config = Config::default()
        .grace(10 * SEC)
        .challenge(2 * SEC)
        .clock(clock);
    (FlushTracker::new(config).unwrap(), mock)
}

/// Queues one `WriterDown` for `key` (a writer dropped while pending).
fn writer_down(tracker: &FlushTracker<&'static str>, key: &'static str, commit: u64) {
    let w = tracker.register(key).unwrap();
    tracker.track(commit, &[w.id()]).unwrap();
    drop(w);
}

/// Runs `f` (a call that blocks until something happens) on its own thread, and fails the
/// test if it has not returned within `limit`: a broken build fails instead of hanging.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || tx.send(f()));
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("still blocked after {limit:?}"))
}

fn down(key: &'static str) -> Event<&'static str> {
    Event::WriterDown {
        key,
        cause: DownCause::DroppedPending,
    }
}

// --- the common traits ---------------------------------------------------------------------------

#[test]
fn the_public_types_have_the_common_traits() {
    fn send_sync<T: Send + Sync + 'static>() {}
    fn clone_debug<T: Clone + Debug>() {}
    fn value<T: Debug + Clone + PartialEq + Eq>() {}
    fn error<T: std::error::Error + Send + Sync + Clone + Copy + Eq + Hash + 'static>() {}

    send_sync::<Clock>();
    clone_debug::<Clock>();
    let _: Clock = Clock::default();
    send_sync::<MockClock>();
    send_sync::<Events<String>>();
    clone_debug::<Events<String>>();
    send_sync::<Error>();
    send_sync::<flushwatch::SpawnError>();
    error::<RecvError>();
    error::<TryRecvError>();
    error::<RecvTimeoutError>();
    value::<Tracked>();
    value::<ScanReport<String>>();
    value::<ShapeStatus<String>>();
    value::<Stats>();
    value::<Event<String>>();
    value::<DownCause>();
    value::<Error>();
    value::<ConfigError>();
    value::<StallPolicy>();
    send_sync::<flushwatch::Iter<'static, String>>();
    send_sync::<flushwatch::TryIter<'static, String>>();
    send_sync::<flushwatch::IntoIter<String>>();
    fn debug<T: Debug>() {}
    debug::<flushwatch::Iter<'static, String>>();
    debug::<flushwatch::TryIter<'static, String>>();
    debug::<flushwatch::IntoIter<String>>();
    debug::<Config>();
    send_sync::<TrackHint>();
    clone_debug::<TrackHint>();
}

#[test]
fn debug_output_says_what_it_is() {
    let (clock, mock) = Clock::mock();
    mock.increment(3 * SEC);
    assert_eq!(
        format!("{clock:?}"),
        "Clock::Mock(MockClock { elapsed: 3s })"
    );
    assert_eq!(format!("{:?}", Clock::new()), "Clock::Real");
    let tracker = FlushTracker::<&str>::new(Config::default()).unwrap();
    writer_down(&tracker, "a", 1);
    assert_eq!(
        format!("{:?}", tracker.events()),
        "Events { queued: 1, .. }"
    );
    assert_eq!(
        format!("{tracker:?}"),
        "FlushTracker { last_seen: 1, watermark: 0, registered: 0, .. }"
    );
    let w = tracker.register("w").unwrap();
    let shown = format!("{w:?}");
    assert!(
        shown.starts_with(r#"Writer { key: "w", id: "#) && shown.ends_with(", .. }"),
        "{shown}"
    );
    drop(w);
    let events = tracker.events();
    assert_eq!(format!("{:?}", events.iter()), "Iter { .. }");
    assert_eq!(format!("{:?}", events.try_iter()), "TryIter { .. }");
    assert_eq!(
        format!("{:?}", tracker.events().into_iter()),
        "IntoIter { .. }"
    );
    let scanner = tracker.spawn_scanner().unwrap();
    assert_eq!(format!("{scanner:?}"), "Scanner { .. }");
}

// --- Track hints ----------------------------------------------------------------------------------

#[test]
fn a_track_hint_names_only_its_own_live_shape() {
    let tracker = FlushTracker::<&str>::new(Config::default()).unwrap();
    let other = FlushTracker::<&str>::new(Config::default()).unwrap();
    let a = tracker.register("a").unwrap();
    let id = a.id();
    let hint = a.track_hint();
    assert_eq!(hint.id(), id);
    assert_eq!(tracker.track_hint(id).map(|h| h.id()), Some(id));
    assert!(other.track_hint(id).is_none(), "another tracker's id");
    #[cfg(target_pointer_width = "64")]
    assert_eq!(std::mem::size_of::<TrackHint>(), 24);
    assert_eq!(format!("{hint:?}"), format!("TrackHint {{ id: {id:?} }}"));

    // The shape ends; its slot goes to the next shape. The old hint stays harmless, the
    // tracker gives none for the old id, and a new one for the new shape.
    drop(a);
    assert!(tracker.track_hint(id).is_none(), "a dropped shape");
    let b = tracker.register("b").unwrap();
    assert!(
        tracker.track_hint(id).is_none(),
        "the slot's previous shape"
    );
    let fresh = tracker.track_hint(b.id()).unwrap();
    assert_eq!(fresh.id(), b.id());
    hint.prefetch();
    fresh.prefetch();
    let t = tracker.track(5, &[hint.id(), fresh.id()]).unwrap();
    assert_eq!((t.tracked, t.skipped), (1, 1));
    assert_eq!(tracker.status("b").unwrap().sent, 5);

    // A removed shape's writer still gives a hint; `track` skips its id.
    assert!(tracker.remove("b"));
    let late = b.track_hint();
    assert_eq!(late.id(), fresh.id());
    assert!(tracker.track_hint(late.id()).is_none());
    let t = tracker.track(6, &[late.id()]).unwrap();
    assert_eq!((t.tracked, t.skipped), (0, 1));
}

#[test]
fn track_hints_from_ids_past_the_first_page() {
    let tracker = FlushTracker::<u64>::new(Config::default()).unwrap();
    let writers: Vec<Writer<u64>> = (0..2500).map(|k| tracker.register(k).unwrap()).collect();
    for w in &writers {
        assert_eq!(tracker.track_hint(w.id()).unwrap().id(), w.id());
        w.track_hint().prefetch();
    }
    // A hint's id tracks like the writer's own.
    let ids: Vec<_> = writers.iter().map(|w| w.track_hint().id()).collect();
    assert_eq!(tracker.track(9, &ids).unwrap().tracked, 2500);
    assert_eq!(tracker.status(&2499).unwrap().sent, 9);
}

// --- Events ---------------------------------------------------------------------------------------

#[test]
fn receivers_share_one_queue_in_order_and_each_event_reaches_one() {
    let tracker = FlushTracker::new(Config::default()).unwrap();
    let first = tracker.events();
    let second = first.clone();
    assert!(first.is_empty());
    assert_eq!(first.try_recv(), Err(TryRecvError::Empty));
    for (i, key) in ["a", "b", "c", "d"].into_iter().enumerate() {
        writer_down(&tracker, key, i as u64 + 1);
    }
    assert_eq!((first.len(), second.len()), (4, 4), "one queue");
    assert!(!second.is_empty());
    assert_eq!(first.try_recv(), Ok(down("a")));
    assert_eq!(second.recv(), Ok(down("b")), "the clone takes the next one");
    assert_eq!(tracker.events().recv_timeout(SEC), Ok(down("c")));
    let rest: Vec<_> = second.try_iter().collect();
    assert_eq!(rest, [down("d")]);
    assert_eq!(
        first.try_iter().next(),
        None,
        "each event reached one receiver"
    );
    assert!(first.is_empty());
}

#[test]
fn recv_timeout_times_out_while_the_tracker_lives() {
    let tracker = FlushTracker::<u32>::new(Config::default()).unwrap();
    let events = tracker.events();
    let started = Instant::now();
    assert_eq!(
        events.recv_timeout(Duration::from_millis(30)),
        Err(RecvTimeoutError::Timeout)
    );
    assert!(started.elapsed() >= Duration::from_millis(30), "it waited");
    assert_eq!(events.try_recv(), Err(TryRecvError::Empty));
}

#[test]
fn a_receiver_waits_for_an_event_from_another_thread() {
    let tracker = FlushTracker::new(Config::default()).unwrap();
    let events = tracker.events();
    let w = tracker.register("orders").unwrap();
    tracker.track(1, &[w.id()]).unwrap();
    let gone = thread::spawn(move || drop(w));
    // Duration::MAX does not overflow: it waits as long as it takes.
    let (events, got) = within(10 * SEC, move || {
        let got = events.recv_timeout(Duration::MAX);
        (events, got)
    });
    assert_eq!(got, Ok(down("orders")));
    gone.join().unwrap();
    let w = tracker.register("users").unwrap();
    tracker.track(2, &[w.id()]).unwrap();
    let gone = thread::spawn(move || drop(w));
    assert_eq!(within(10 * SEC, move || events.recv()), Ok(down("users")));
    gone.join().unwrap();
}

#[test]
fn wait_watermark_returns_once_reached_or_at_its_timeout() {
    let (tracker, _mock) = mocked::<&str>();
    let w = tracker.register("a").unwrap();
    tracker.track(10, &[w.id()]).unwrap();
    let waiter = tracker.clone();
    assert_eq!(
        within(10 * SEC, move || waiter.wait_watermark(0, Duration::MAX)),
        0,
        "reached: at once"
    );
    let started = Instant::now();
    assert_eq!(
        tracker.wait_watermark(10, Duration::from_millis(30)),
        0,
        "not reached: the watermark as it is at the timeout"
    );
    assert!(started.elapsed() >= Duration::from_millis(30), "it waited");
    // A scan on another thread publishes 10 and wakes the waiter, whichever runs first.
    w.flushed(10);
    let waiter = tracker.clone();
    let waiting =
        thread::spawn(move || within(10 * SEC, move || waiter.wait_watermark(10, Duration::MAX)));
    tracker.scan();
    assert_eq!(waiting.join().unwrap(), 10);
}

/// Disconnected happens exactly when nothing can emit any more: every tracker handle, writer
/// and scanner gone, and the queue drained; never while any of them lives.
#[test]
fn disconnected_only_once_the_tracker_its_writers_and_scanner_are_gone() {
    let tracker =
        FlushTracker::new(Config::default().scan_interval(Duration::from_millis(1))).unwrap();
    let events = tracker.events();
    writer_down(&tracker, "a", 1);
    let kept: Writer<&str> = tracker.register("kept").unwrap();
    let scanner = tracker.spawn_scanner().unwrap();
    let clone = tracker.clone();
    drop(tracker);
    assert_eq!(
        events.recv_timeout(Duration::from_millis(5)),
        Ok(down("a")),
        "queued events are delivered"
    );
    assert_eq!(
        events.recv_timeout(Duration::from_millis(5)),
        Err(RecvTimeoutError::Timeout),
        "a handle lives"
    );
    drop(clone);
    assert_eq!(
        events.recv_timeout(Duration::from_millis(5)),
        Err(RecvTimeoutError::Timeout),
        "the writer and the scanner live"
    );
    drop(scanner); // joins the thread
    assert_eq!(
        events.try_recv(),
        Err(TryRecvError::Empty),
        "the writer lives"
    );
    drop(kept); // caught up: a quiet end, and the last holder of the queue
    assert_eq!(events.try_recv(), Err(TryRecvError::Disconnected));
    let events = within(10 * SEC, move || {
        assert_eq!(events.recv(), Err(RecvError));
        assert_eq!(
            events.recv_timeout(SEC),
            Err(RecvTimeoutError::Disconnected)
        );
        assert_eq!(events.iter().next(), None, "the blocking iterator ends");
        events
    });
    drop(events);
}

#[test]
fn the_blocking_iterators_yield_everything_then_end_when_the_tracker_is_gone() {
    for owned in [false, true] {
        let tracker = FlushTracker::new(Config::default()).unwrap();
        let events = tracker.events();
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            tx.send(if owned {
                events.into_iter().collect::<Vec<_>>()
            } else {
                (&events).into_iter().collect::<Vec<_>>()
            })
        });
        writer_down(&tracker, "a", 1);
        writer_down(&tracker, "b", 2);
        drop(tracker); // nothing can emit any more: the reader drains the queue and stops
        assert_eq!(
            rx.recv_timeout(10 * SEC).expect("the iterator ended"),
            [down("a"), down("b")],
            "owned: {owned}"
        );
    }
}

// --- Clock and MockClock ---------------------------------------------------------------------------

/// One `MockClock` moves every clock made with it (clones included), so every tracker on them.
#[test]
fn a_mock_clock_moves_every_clock_made_with_it() {
    let (clock, mock) = Clock::mock();
    let trackers: Vec<FlushTracker<&str>> = (0..2)
        .map(|_| FlushTracker::new(Config::default().clock(clock.clone())).unwrap())
        .collect();
    let writers: Vec<_> = trackers
        .iter()
        .map(|t| {
            let w = t.register("a").unwrap();
            t.track(1, &[w.id()]).unwrap();
            w
        })
        .collect();
    mock.increment(7 * SEC);
    for t in &trackers {
        assert_eq!(t.status("a").unwrap().idle, 7 * SEC);
    }
    mock.decrement(3 * SEC);
    for t in &trackers {
        assert_eq!(t.status("a").unwrap().idle, 4 * SEC, "moved back");
    }
    drop(writers);
}

#[test]
fn a_mock_clock_drives_stall_detection_exactly() {
    let (tracker, mock) = mocked::<&str>();
    let w = tracker.register("orders").unwrap();
    tracker.track(5, &[w.id()]).unwrap();
    mock.increment(10 * SEC);
    assert!(
        tracker.scan().suspected.is_empty(),
        "exactly grace: not overdue"
    );
    mock.increment(Duration::from_nanos(1));
    assert_eq!(
        tracker.scan().suspected,
        ["orders"],
        "one nanosecond more: overdue"
    );
    mock.increment(2 * SEC);
    assert!(
        tracker.scan().stalled.is_empty(),
        "exactly the challenge: not stalled"
    );
    mock.increment(Duration::from_nanos(1));
    assert_eq!(tracker.scan().stalled, ["orders"]);
    assert!(w.is_evicted());
}

/// Moving a mock back before the tracker's creation, or past the largest time, saturates:
/// nothing wraps, nothing panics, and a tick from the future counts as no time elapsed.
#[test]
fn a_mock_clock_saturates_both_ways() {
    let (clock, mock) = Clock::mock();
    mock.increment(5 * SEC);
    let tracker = FlushTracker::new(Config::default().clock(clock)).unwrap();
    let w = tracker.register("a").unwrap();
    tracker.track(1, &[w.id()]).unwrap();
    mock.decrement(Duration::MAX); // to zero, before the tracker's creation
    assert_eq!(tracker.status("a").unwrap().idle, Duration::ZERO);
    assert!(tracker.scan().suspected.is_empty());
    mock.increment(Duration::MAX);
    mock.increment(Duration::MAX); // saturates, does not wrap to a small time
    let centuries = Duration::from_secs(500 * 365 * 24 * 3600);
    assert!(
        tracker.status("a").unwrap().idle > centuries,
        "u64::MAX ns is 584 years"
    );
    assert_eq!(tracker.scan().suspected, ["a"]);
}

#[test]
fn a_real_clock_can_be_passed_explicitly() {
    let tracker = FlushTracker::new(Config::default().clock(Clock::new())).unwrap();
    let w = tracker.register(1u32).unwrap();
    tracker.track(3, &[w.id()]).unwrap();
    w.flushed(3);
    assert_eq!(tracker.scan().watermark, 3);
}

// --- borrowed lookups ------------------------------------------------------------------------------

#[test]
fn string_keys_are_looked_up_by_str() {
    let tracker = FlushTracker::<String>::new(Config::default()).unwrap();
    let orders = tracker.register("orders".to_string()).unwrap();
    let users = tracker.register("users".to_string()).unwrap();
    assert_eq!(tracker.id_of("orders"), Some(orders.id()));
    assert_eq!(
        tracker.id_of(&"users".to_string()),
        Some(users.id()),
        "by &K too"
    );
    assert_eq!(tracker.id_of("nobody"), None);

    let t = tracker
        .track_keys(5, ["orders", "users", "orders", "nobody"])
        .unwrap();
    assert_eq!(
        (t.tracked, t.skipped),
        (2, 1),
        "a key named twice counts once"
    );
    let owned = vec!["users".to_string()];
    assert_eq!(
        tracker.track_keys(6, &owned).unwrap().tracked,
        1,
        "by &K too"
    );

    let s = tracker.status("orders").unwrap();
    assert_eq!(s.key, "orders", "the status holds the registered key");
    assert_eq!((s.sent, s.flushed, s.pending), (5, 0, true));
    assert!(tracker.status("nobody").is_none());

    assert!(tracker.remove("orders"));
    assert!(!tracker.remove("orders"));
    assert!(orders.is_evicted());
    assert_eq!(tracker.id_of("orders"), None);
    assert!(tracker.register("orders".into()).is_ok(), "the key is free");
}

#[test]
fn byte_vector_keys_are_looked_up_by_slice() {
    let tracker = FlushTracker::<Vec<u8>>::new(Config::default()).unwrap();
    let w = tracker.register(b"shape".to_vec()).unwrap();
    let key: &[u8] = b"shape";
    assert_eq!(tracker.id_of(key), Some(w.id()));
    assert_eq!(tracker.track_keys(1, [key]).unwrap().tracked, 1);
    assert_eq!(tracker.status(key).unwrap().sent, 1);
    assert!(tracker.remove(key));
}

// --- keys without Debug ------------------------------------------------------------------------------

/// A key with every bound a key needs, and no `Debug`.
#[cfg(not(feature = "tracing"))]
#[derive(Clone, PartialEq, Eq, Hash)]
struct Opaque(u32);

/// Everything works with a key that is not `Debug` (without the `tracing` feature, whose
/// warnings name the shape).
#[cfg(not(feature = "tracing"))]
#[test]
fn a_key_without_debug_works_end_to_end() {
    let (tracker, mock) = mocked::<Opaque>();
    let _ = format!("{tracker:?}"); // the tracker is Debug whatever the key
    let (a, b) = (
        tracker.register(Opaque(1)).unwrap(),
        tracker.register(Opaque(2)).unwrap(),
    );
    assert!(matches!(
        tracker.register(Opaque(1)),
        Err(Error::DuplicateShape)
    ));
    tracker.track(4, &[a.id(), b.id()]).unwrap();
    tracker.track_keys(9, [&Opaque(1)]).unwrap();
    a.flushed(9);
    assert_eq!(tracker.status(&Opaque(2)).map(|s| s.flushed), Some(0));
    mock.increment(11 * SEC);
    let r = tracker.scan();
    assert!(r.suspected == [Opaque(2)] && r.watermark == 0);
    mock.increment(3 * SEC);
    let r = tracker.scan();
    assert!(r.stalled == [Opaque(2)] && r.watermark == 9, "b evicted");
    let events: Vec<Event<Opaque>> = tracker.events().try_iter().collect();
    assert!(matches!(
        events.as_slice(),
        [
            Event::Suspected { key: Opaque(2), .. },
            Event::Stalled {
                key: Opaque(2),
                evicted: true,
                ..
            },
        ]
    ));
    assert!(tracker.pinned_by().is_none());
    assert_eq!(tracker.stats().evicted, 1);
    assert!(tracker.remove(&Opaque(1)));
    let scanner = tracker.spawn_scanner().unwrap();
    drop(scanner);
}

// --- errors --------------------------------------------------------------------------------------------

#[test]
fn an_invalid_config_has_its_cause_as_source() {
    for (config, cause) in [
        (
            Config::default().scan_interval(Duration::ZERO),
            ConfigError::ZeroScanInterval,
        ),
        (
            Config::default().event_capacity(0),
            ConfigError::ZeroEventCapacity,
        ),
    ] {
        let err = FlushTracker::<u8>::new(config).unwrap_err();
        assert_eq!(err, Error::InvalidConfig(cause));
        let source = err.source().expect("a source");
        assert_eq!(source.to_string(), cause.to_string());
        assert!(
            err.to_string().contains(&cause.to_string()),
            "readable on its own: {err}"
        );
    }
    assert!(Error::DuplicateShape.source().is_none());
    assert!(Error::ZeroCommit.source().is_none());
}

#[test]
fn receive_errors_display_what_happened() {
    assert_eq!(TryRecvError::Empty.to_string(), "no event is queued");
    assert_eq!(
        RecvTimeoutError::Timeout.to_string(),
        "no event came within the timeout"
    );
    let gone = RecvError.to_string();
    assert_eq!(gone, "the event queue is empty and its tracker is gone");
    assert_eq!(TryRecvError::Disconnected.to_string(), gone);
    assert_eq!(RecvTimeoutError::Disconnected.to_string(), gone);
    assert_eq!(TryRecvError::from(RecvError), TryRecvError::Disconnected);
    assert_eq!(
        RecvTimeoutError::from(RecvError),
        RecvTimeoutError::Disconnected
    );
}

// --- the deprecated re-exports still work for one release ----------------------------------------------

#[test]
#[allow(deprecated)]
fn the_deprecated_reexports_still_resolve() {
    let (clock, mock): (_, Arc<flushwatch::quanta::Mock>) = flushwatch::quanta::Clock::mock();
    let before: flushwatch::quanta::Instant = clock.now();
    mock.increment(Duration::from_nanos(5));
    assert_eq!(clock.now() - before, Duration::from_nanos(5));
    let (tx, rx) = flushwatch::crossbeam_channel::unbounded::<u8>();
    tx.send(1).unwrap();
    let rx: flushwatch::crossbeam_channel::Receiver<u8> = rx;
    assert_eq!(rx.try_recv(), Ok(1));
    assert_eq!(
        rx.try_recv(),
        Err(flushwatch::crossbeam_channel::TryRecvError::Empty)
    );
}

// --- feature tokio: EventStream ------------------------------------------------------------------------

#[cfg(feature = "tokio")]
mod stream {
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    use flushwatch::EventStream;
    use futures_core::Stream;

    use super::*;

    fn poll(s: &mut EventStream<&'static str>) -> Poll<Option<Event<&'static str>>> {
        Pin::new(s).poll_next(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn the_stream_is_a_nameable_send_unpin_static_debug_type() {
        fn bounds<T: Stream<Item = Event<String>> + Send + Unpin + Debug + 'static>(_: &T) {}
        let tracker = FlushTracker::<String>::new(Config::default()).unwrap();
        let stream: EventStream<String> = tracker.event_stream();
        bounds(&stream);
        assert_eq!(format!("{stream:?}"), "EventStream { queued: 0, .. }");
    }

    /// The stream and `events()` take from one queue: each event reaches one of them, in order;
    /// the stream ends only once the tracker is gone and the queue is drained.
    #[test]
    fn the_stream_shares_the_queue_and_ends_after_the_tracker() {
        let tracker = FlushTracker::new(Config::default()).unwrap();
        let mut stream = tracker.event_stream();
        let events = tracker.events();
        assert_eq!(poll(&mut stream), Poll::Pending);
        for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
            writer_down(&tracker, key, i as u64 + 1);
        }
        assert_eq!(poll(&mut stream), Poll::Ready(Some(down("a"))));
        assert_eq!(events.try_recv(), Ok(down("b")));
        drop(tracker);
        assert_eq!(poll(&mut stream), Poll::Ready(Some(down("c"))));
        assert_eq!(poll(&mut stream), Poll::Ready(None));
        assert_eq!(events.try_recv(), Err(TryRecvError::Disconnected));
    }
}
