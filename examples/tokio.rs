//! A tokio pipeline: consumers as tasks, the watermark acknowledged from `watch_watermark()`,
//! events handled from `event_stream()`, metrics exported to Prometheus on a local port and
//! printed once from its own HTTP endpoint at the end. Exits by itself in about 3 seconds.
//!
//!     cargo run --example tokio --features tokio,metrics
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::time::{Duration, Instant};

use flushwatch::{Config, Event, FlushTracker, Offset};
use futures_core::Stream;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const SHAPES: usize = 4;
const WEDGED: usize = 3; // this consumer stops reporting after a second: stalled, evicted

/// A xorshift generator: sparse positions and write latencies without a `rand` dependency.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The next item of a stream (what `StreamExt::next` does, without another dependency).
async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Metrics: a Prometheus endpoint on a free local port (found by binding port 0).
    let addr: SocketAddr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()?;

    let tracker = FlushTracker::new(
        Config::default()
            .scan_interval(Duration::from_millis(20))
            .grace(Duration::from_millis(400))
            .challenge(Duration::from_millis(200)),
    )?;
    let scanner = tracker.spawn_scanner()?;

    // Events: the application acts on the ones that need action.
    let mut events = tracker.event_stream();
    tokio::spawn(async move {
        while let Some(event) = next(&mut events).await {
            match event {
                Event::Stalled {
                    key,
                    evicted: true,
                    flushed,
                    sent,
                    ..
                } => println!(
                    "event: {key} stalled at {flushed:#x} (sent {sent:#x}), evicted: rebuild it"
                ),
                Event::WriterDown { key, cause } => println!("event: {key} down ({cause:?})"),
                other => println!("event: {other:?}"),
            }
        }
    });

    // The acknowledger: what a replication client sends upstream as its flushed position.
    let mut watermark = tracker.watch_watermark();
    let acker = tokio::spawn(async move {
        let mut acks = 0u64;
        while watermark.changed().await.is_ok() {
            let w = *watermark.borrow_and_update();
            acks += 1;
            if acks % 20 == 0 {
                println!("ack {w:#x} (acknowledgement #{acks})");
            }
        }
    });

    // Consumers: one task per shape, writing with random latency, sometimes in two steps.
    let (mut senders, mut ids, mut consumers) = (vec![], vec![], vec![]);
    for shape in 0..SHAPES {
        let writer = tracker.register(format!("shape-{shape}"))?;
        let (tx, mut rx) = mpsc::unbounded_channel::<(Offset, Offset)>();
        senders.push(tx);
        ids.push(writer.id());
        consumers.push(tokio::spawn(async move {
            let (mut rng, started) = (Rng(0x9E37_79B9 + shape as u64), Instant::now());
            // A transaction: its commit position and the commit tracked before it.
            while let Some((commit, previous)) = rx.recv().await {
                if shape == WEDGED && started.elapsed() > Duration::from_secs(1) {
                    while !writer.is_evicted() {
                        tokio::time::sleep(Duration::from_millis(10)).await; // stuck
                    }
                    return; // its writer is inert: dropping it does nothing more
                }
                if rng.below(3) == 0 {
                    // Partly written: everything before this transaction is durable.
                    writer.flushed(previous);
                    tokio::time::sleep(Duration::from_micros(rng.below(2000))).await;
                }
                tokio::time::sleep(Duration::from_micros(rng.below(1500))).await;
                writer.flushed(commit);
            }
        }));
    }

    // The producer: sparse commit positions, each touching a random subset (maybe none).
    let (mut rng, mut position, started) = (Rng(42), 0x1_0000u64, Instant::now());
    while started.elapsed() < Duration::from_millis(2500) {
        position += 1 + rng.below(300);
        let touched: Vec<usize> = (0..SHAPES).filter(|_| rng.below(2) == 0).collect();
        let shapes: Vec<_> = touched.iter().map(|&s| ids[s]).collect();
        let tracked = tracker.track(position, &shapes)?;
        for s in touched {
            let _ = senders[s].send((position, tracked.previous));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    drop(senders); // the healthy consumers drain their queues and return
    for consumer in consumers {
        consumer.await?;
    }
    let mut last = tracker.watch_watermark();
    let acked = tokio::time::timeout(Duration::from_secs(2), last.wait_for(|&w| w >= position))
        .await
        .map(|w| *w.expect("the tracker is alive"))
        .unwrap_or(tracker.watermark());
    let stats = tracker.stats();
    println!("last commit {position:#x}, acknowledged {acked:#x}; {stats:?}");
    acker.abort();
    drop(scanner); // inside the runtime: signals stop and returns at once

    // The exposition, fetched from the exporter's own endpoint with a raw HTTP GET.
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or(&*response, |(_, body)| body);
    println!("\n--- GET http://{addr}/metrics ---\n{body}");
    Ok(())
}
