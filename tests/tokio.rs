//! Feature `tokio`: `watch_watermark`, `event_stream` and the non-blocking `Scanner` drop, on
//! real runtimes (current-thread and multi-thread).
#![cfg(feature = "tokio")]

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flushwatch::Clock;
use flushwatch::{Config, DownCause, Error, Event, FlushTracker};
use futures_core::Stream;

/// The next item of a stream.
async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

/// Manual scans: a receiver sees exactly the published values, only when one is published.
async fn watch_sees_every_publication_and_nothing_else() {
    let tracker = FlushTracker::new(Config::default().start_at(100)).unwrap();
    let mut early = tracker.watch_watermark();
    assert_eq!(*early.borrow(), 100, "starts at the current watermark");
    assert!(!early.has_changed().unwrap());

    let (a, b) = (
        tracker.register("a").unwrap(),
        tracker.register("b").unwrap(),
    );
    tracker.track(0x1A0, &[a.id(), b.id()]).unwrap();
    tracker.track(0x1F8, &[a.id()]).unwrap();
    tracker.scan();
    assert!(
        !early.has_changed().unwrap(),
        "no publication: no notification"
    );

    let mut waiting = early.clone();
    let waiter = tokio::spawn(async move {
        waiting.changed().await.unwrap();
        *waiting.borrow_and_update()
    });
    tokio::task::yield_now().await;
    a.flushed(0x1A0);
    b.flushed(0x1A0);
    assert_eq!(tracker.scan().watermark, 0x1A0);
    assert_eq!(waiter.await.unwrap(), 0x1A0, "a waiting task is woken");

    let mut late = tracker.watch_watermark();
    assert_eq!(
        *late.borrow(),
        0x1A0,
        "a late receiver starts at the current value"
    );
    assert!(!late.has_changed().unwrap());

    a.flushed(0x1F8);
    tracker.scan();
    tracker.scan(); // no change: no second notification
    for rx in [&mut early, &mut late] {
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 0x1F8);
        assert!(!rx.has_changed().unwrap());
    }
}

#[tokio::test(flavor = "current_thread")]
async fn watch_current_thread() {
    watch_sees_every_publication_and_nothing_else().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_multi_thread() {
    watch_sees_every_publication_and_nothing_else().await;
}

/// With the background scanner, consumers as tasks and the acknowledger on `changed()`: the
/// values seen strictly increase, are commits, and end at the last commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_acknowledges_a_running_pipeline() {
    let tracker =
        FlushTracker::new(Config::default().scan_interval(Duration::from_millis(1))).unwrap();
    let _scanner = tracker.spawn_scanner().unwrap();
    let mut rx = tracker.watch_watermark();
    let acker = tokio::spawn(async move {
        let mut seen = vec![];
        while rx.changed().await.is_ok() {
            let w = *rx.borrow_and_update();
            seen.push(w);
            if w == 3000 {
                break;
            }
        }
        seen
    });
    let writers: Vec<_> = (0..4).map(|k| tracker.register(k).unwrap()).collect();
    let ids: Vec<_> = writers.iter().map(|w| w.id()).collect();
    let mut consumers = vec![];
    let (tx, _) = tokio::sync::broadcast::channel::<u64>(4096);
    for w in writers {
        let mut commits = tx.subscribe();
        consumers.push(tokio::spawn(async move {
            while let Ok(c) = commits.recv().await {
                w.flushed(c);
                if c == 3000 {
                    break;
                }
            }
            w
        }));
    }
    for c in (10..=3000).step_by(10) {
        tracker.track(c, &ids).unwrap();
        tx.send(c).unwrap();
        if c % 500 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let seen = tokio::time::timeout(Duration::from_secs(20), acker)
        .await
        .unwrap()
        .unwrap();
    assert!(seen.windows(2).all(|p| p[0] < p[1]), "{seen:?}");
    assert!(seen.iter().all(|w| w % 10 == 0), "only commits: {seen:?}");
    assert_eq!(seen.last(), Some(&3000));
    for c in consumers {
        drop(c.await.unwrap());
    }
}

/// Exact events, in order, through one stream; the stream and `events()` share the queue.
async fn stream_yields_the_queue_in_order() {
    let (clock, mock) = Clock::mock();
    let tracker = FlushTracker::new(
        Config::default()
            .grace(Duration::from_secs(10))
            .challenge(Duration::from_secs(2))
            .clock(clock),
    )
    .unwrap();
    let mut stream = tracker.event_stream();
    let receiver = tracker.events();
    let (stuck, quitter, crasher) = (
        tracker.register("stuck").unwrap(),
        tracker.register("quitter").unwrap(),
        tracker.register("crasher").unwrap(),
    );
    tracker
        .track(5, &[stuck.id(), quitter.id(), crasher.id()])
        .unwrap();
    tokio::spawn(async move { drop(quitter) }).await.unwrap();
    let panicked = tokio::spawn(async move {
        let _w = crasher;
        panic!("consumer task fails");
    })
    .await;
    assert!(panicked.unwrap_err().is_panic());
    mock.increment(Duration::from_secs(11));
    tracker.scan();
    mock.increment(Duration::from_secs(3));
    tracker.scan();

    assert_eq!(
        next(&mut stream).await,
        Some(Event::WriterDown {
            key: "quitter",
            cause: DownCause::DroppedPending
        })
    );
    assert_eq!(
        receiver.try_recv().unwrap(),
        Event::WriterDown {
            key: "crasher",
            cause: DownCause::Panicked
        },
        "one queue: the receiver takes the next one"
    );
    assert_eq!(
        next(&mut stream).await,
        Some(Event::Suspected {
            key: "stuck",
            idle: Duration::from_secs(11)
        })
    );
    assert_eq!(
        next(&mut stream).await,
        Some(Event::Stalled {
            key: "stuck",
            idle: Duration::from_secs(14),
            flushed: 0,
            sent: 5,
            evicted: true
        })
    );
    assert!(receiver.is_empty());

    // Nothing queued: the stream is pending (it does not end while the tracker lives).
    let pending = tokio::time::timeout(Duration::from_millis(20), next(&mut stream)).await;
    assert!(pending.is_err());

    // Once the tracker, its writers and its scanner are gone, what is left, then the end.
    let last = tracker.register("last").unwrap();
    tracker.track(6, &[last.id()]).unwrap();
    drop((tracker, receiver));
    let waiter = tokio::spawn(async move {
        let mut got = vec![];
        while let Some(e) = next(&mut stream).await {
            got.push(e);
        }
        got
    });
    tokio::task::yield_now().await;
    drop(last); // the last strong reference: WriterDown, then the stream ends
    drop(stuck);
    let got = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got,
        vec![Event::WriterDown {
            key: "last",
            cause: DownCause::DroppedPending
        }]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn stream_current_thread() {
    stream_yields_the_queue_in_order().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_multi_thread() {
    stream_yields_the_queue_in_order().await;
}

/// Several parked streams and a blocking receiver take from one queue filled by another thread:
/// every event arrives exactly once, none is lost to a wake-up race.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_receivers_share_one_queue_without_losing_a_wakeup() {
    const N: u32 = 3000;
    let tracker = FlushTracker::new(Config::default()).unwrap();
    let writers: Vec<_> = (0..N).map(|k| tracker.register(k).unwrap()).collect();
    let ids: Vec<_> = writers.iter().map(|w| w.id()).collect();
    tracker.track(1, &ids).unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut takers = vec![];
    for _ in 0..3 {
        let mut stream = tracker.event_stream();
        let (done, stop) = (done.clone(), stop.clone());
        takers.push(tokio::spawn(async move {
            let mut keys = vec![];
            loop {
                tokio::select! {
                    e = next(&mut stream) => match e {
                        Some(Event::WriterDown { key, .. }) => {
                            keys.push(key);
                            done.fetch_add(1, Ordering::SeqCst);
                        }
                        other => panic!("unexpected {other:?}"),
                    },
                    _ = tokio::time::sleep(Duration::from_millis(5)) => {
                        if stop.load(Ordering::SeqCst) {
                            return keys;
                        }
                    }
                }
            }
        }));
    }
    let receiver = tracker.events();
    let blocking = {
        let (done, stop) = (done.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut keys = vec![];
            while !stop.load(Ordering::SeqCst) {
                if let Ok(Event::WriterDown { key, .. }) =
                    receiver.recv_timeout(Duration::from_millis(5))
                {
                    keys.push(key);
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }
            keys
        })
    };
    let dropper = std::thread::spawn(move || {
        for (i, w) in writers.into_iter().enumerate() {
            drop(w); // pending: WriterDown
            if i % 64 == 0 {
                std::thread::yield_now();
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while done.load(Ordering::SeqCst) < N as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stop.store(true, Ordering::SeqCst);
    dropper.join().unwrap();
    let mut all = blocking.join().unwrap();
    for t in takers {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all.len(), N as usize, "each event exactly once");
    assert_eq!(all.into_iter().collect::<BTreeSet<_>>().len(), N as usize);
}

/// Outside a runtime the drop joins: the scanner can be started again at once.
#[test]
fn a_scanner_dropped_outside_a_runtime_is_joined() {
    let tracker = FlushTracker::<u8>::new(Config::default()).unwrap();
    for _ in 0..3 {
        drop(tracker.spawn_scanner().unwrap());
        // Joined: the thread has exited.
    }
    assert!(tracker.spawn_scanner().is_ok());
}

/// What one drop of a `Scanner` in the middle of a scan cost the executor.
#[derive(Debug)]
struct DropCost {
    /// The longest gap between two ticks of the 1 ms ticker around the drop (from the last tick
    /// before it to the first tick after the scan in flight ended).
    gap: Duration,
    /// How long `drop(scanner)` took.
    drop_took: Duration,
    /// From the drop to the end of the scan in flight: what a join would have blocked for.
    in_flight: Duration,
    /// Whether `spawn_scanner` said `ScannerRunning` right after the drop.
    still_running: bool,
}

/// On a current-thread runtime with a 1 ms ticker task: waits until a scan has just started
/// (scans run back to back), drops `scanner` from the runtime, and measures.
fn drop_mid_scan<K>(tracker: &FlushTracker<K>, scanner: flushwatch::Scanner) -> DropCost
where
    K: std::hash::Hash + Eq + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut ticks = vec![Instant::now()];
                while !stop.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    ticks.push(Instant::now());
                }
                ticks
            }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        // Scans run back to back (each is longer than the interval): right after the count
        // moves, the next scan has just started.
        let scans = tracker.stats().scans;
        while tracker.stats().scans == scans {
            tokio::task::yield_now().await;
        }
        // The count moves just before the thread leaves its scan: give it time to start the
        // next one.
        tokio::time::sleep(Duration::from_millis(3)).await;
        let dropped = Instant::now();
        drop(scanner);
        let drop_took = dropped.elapsed();
        let still_running = tracker.spawn_scanner().err() == Some(Error::ScannerRunning);
        let scans = tracker.stats().scans;
        let deadline = Instant::now() + Duration::from_secs(10);
        while still_running && tracker.stats().scans == scans && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await; // ticking all along
        }
        let ended = Instant::now();
        tokio::time::sleep(Duration::from_millis(5)).await;
        stop.store(true, Ordering::SeqCst);
        let ticks = ticker.await.unwrap();
        let gap = ticks
            .windows(2)
            .filter(|w| w[1] >= dropped && w[0] <= ended)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap();
        DropCost {
            gap,
            drop_took,
            in_flight: ended - dropped,
            still_running,
        }
    })
}

/// The executor-blocking test. A current-thread runtime runs a task that ticks every 1 ms and
/// records the gaps between ticks, while a `Scanner` is dropped from that runtime right as a
/// large scan starts. A join would stall the only executor thread until the scan in flight
/// ends (the ticker's gap would be the whole `in_flight` time); the drop must only signal stop.
///
/// Measured here (2 cores shared with other builds, load ~6): scans of 130-400 ms (262,144
/// suspected shapes in debug, 131,072-524,288 in release); the drop takes 5-17 µs and the
/// longest tick gap is 17-33 ms, all of it scheduler noise (the same gaps appear with no drop
/// at all), against 120-400 ms that a join would have blocked. Under such noise one attempt
/// may see a gap near half a scan, so the test allows three attempts: a join fails them all.
#[test]
fn dropping_a_scanner_inside_a_runtime_does_not_block_the_executor() {
    let (clock, mock) = Clock::mock();
    let tracker = FlushTracker::new(
        Config::default()
            .grace(Duration::ZERO)
            .challenge(Duration::from_secs(3600))
            .scan_interval(Duration::from_millis(1))
            .event_capacity(1)
            .clock(clock),
    )
    .unwrap();
    // Grow the tracker until one scan takes >= 150 ms. Every shape is pending and suspected
    // (idle > grace 0, the challenge an hour away), so each scan looks its challenge up.
    let mut writers = vec![];
    let mut commit = 0;
    while tracker.stats().last_scan < Duration::from_millis(150) && writers.len() < 1 << 21 {
        let more = writers.len().max(1 << 16);
        let start = writers.len();
        writers.extend((start..start + more).map(|k| tracker.register(k).unwrap()));
        let ids: Vec<_> = writers[start..].iter().map(|w| w.id()).collect();
        commit += 1;
        tracker.track(commit, &ids).unwrap();
        mock.increment(Duration::from_millis(1));
        tracker.scan(); // suspects the new ones
        tracker.scan();
    }
    let shapes = writers.len();

    let mut scanner = tracker.spawn_scanner().unwrap();
    let mut attempts = vec![];
    for _ in 0..3 {
        let cost = drop_mid_scan(&tracker, scanner);
        eprintln!("{shapes} shapes: {cost:?}");
        let ok = cost.still_running
            && cost.drop_took < Duration::from_millis(5)
            && cost.gap < cost.in_flight / 2;
        attempts.push(cost);
        if ok {
            break;
        }
        // The thread exits after its scan: then the scanner can be started again.
        let deadline = Instant::now() + Duration::from_secs(10);
        scanner = loop {
            match tracker.spawn_scanner() {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => panic!("{e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        };
    }
    let last = attempts.last().unwrap();
    assert!(
        last.still_running,
        "the drop returned while the thread was scanning: {attempts:?}"
    );
    assert!(last.drop_took < Duration::from_millis(5), "{attempts:?}");
    assert!(last.gap < last.in_flight / 2, "{attempts:?}");
}
