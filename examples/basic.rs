//! The smallest complete pipeline, to copy and fill in: `cargo run --example basic` (~3 s).
//!
//! A producer `track`s sparse commits (like LSNs) and hands consumers each commit with its
//! `Tracked::previous`; consumers "write + fsync", then report `flushed`. A background scanner
//! publishes the watermark and evicts stuck shapes; the main loop rebuilds (registers again) a
//! shape on `Stalled` or `WriterDown` and prints what it would acknowledge (`wait_watermark`).
//! The `users` consumer gets stuck once, to show an eviction and a rebuild.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use flushwatch::{Config, Error, Event, FlushTracker, Offset, Writer};

type Key = &'static str;
type Tracker = FlushTracker<Key>;
/// Each shape's `(commit, previous)` channel; locked around track + send and register + insert.
type Routes = Arc<Mutex<HashMap<Key, Sender<(Offset, Offset)>>>>;
const SHAPES: [Key; 3] = ["orders", "users", "items"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tracker = FlushTracker::new(
        Config::default()
            .grace(Duration::from_millis(300)) // pending and idle this long: suspected
            .challenge(Duration::from_millis(200)) // then this long without progress: evicted
            .scan_interval(Duration::from_millis(20)),
    )?;
    let _scanner = tracker.spawn_scanner()?; // stops when dropped
    let routes: Routes = Arc::default();
    for key in SHAPES {
        add_consumer(&tracker, &routes, key, key == "users")?;
    }
    let (t, r) = (tracker.clone(), routes.clone());
    let producer = thread::spawn(move || produce(&t, &r));
    let (events, mut acked) = (tracker.events(), 0);
    while !(producer.is_finished() && acked == tracker.last_seen()) {
        for event in events.try_iter() {
            match event {
                // Stalled means evicted under the default `StallPolicy::Evict`.
                Event::Stalled { key, .. } | Event::WriterDown { key, .. } => {
                    println!("{key} is stuck or gone: rebuilding it"); // re-snapshot it, really
                    add_consumer(&tracker, &routes, key, false)?;
                }
                other => println!("{other:?}"),
            }
        }
        let watermark = tracker.wait_watermark(acked + 1, Duration::from_millis(200));
        if watermark > acked {
            println!("acknowledge {watermark} of {}", tracker.last_seen());
            acked = watermark;
            thread::sleep(Duration::from_millis(200)); // a status update 5 times a second
        }
    }
    producer.join().expect("producer panicked")?;
    println!("done: everything up to {acked} is durable in every shape");
    Ok(())
}

/// Two seconds of transactions at random gaps, each touching zero to three shapes.
fn produce(tracker: &Tracker, routes: &Routes) -> Result<(), Error> {
    let (started, random, mut commit) = (Instant::now(), RandomState::new(), 0);
    while started.elapsed() < Duration::from_secs(2) {
        thread::sleep(Duration::from_millis(2));
        let r = random.hash_one(commit);
        commit += 1 + r % 400; // sparse: never compute a position from a commit
        let keys = &SHAPES[..(r >> 62) as usize];
        let routes = routes.lock().unwrap();
        let previous = tracker.track_keys(commit, keys)?.previous; // track first, then send
        for key in keys {
            let _ = routes[key].send((commit, previous));
        }
    }
    Ok(())
}

fn add_consumer(tracker: &Tracker, routes: &Routes, key: Key, stuck: bool) -> Result<(), Error> {
    let (tx, rx) = channel();
    let mut routes = routes.lock().unwrap();
    let writer = tracker.register(key)?; // an evicted or dropped shape's key is free at once
    routes.insert(key, tx); // closes an evicted shape's channel: its consumer ends
    thread::spawn(move || consume(writer, rx, stuck));
    Ok(())
}

fn consume(writer: Writer<Key>, rx: Receiver<(Offset, Offset)>, stuck: bool) {
    for (n, (commit, previous)) in rx.into_iter().enumerate() {
        if stuck && n == 100 {
            thread::sleep(Duration::from_secs(1)); // a deadlock, say: alive, reporting nothing
        }
        // Written and fsynced in two parts: until both are, only what came before is durable.
        thread::sleep(Duration::from_micros(50));
        writer.flushed(previous);
        thread::sleep(Duration::from_micros(50));
        writer.flushed(commit);
    }
}
