//! A change-data-capture pipeline in one process, with a consumer that gets stuck.
//!
//! ```text
//! cargo run --release -p flushwatch-demo                  # ~20 s, nothing to install
//! cargo run --release -p flushwatch-demo -- --help        # shapes, consumers, rate, policy...
//! cargo run --release -p flushwatch-demo -- --policy report  # what happens without eviction
//! ```
//!
//! - A **producer** ([`producer`]) generates transactions, each touching one to three of
//!   `--shapes` shapes. Commit positions are sparse, like LSNs: each is the previous one plus
//!   a random gap. For each commit it calls `track` first, then sends the changes to the
//!   consumers that own those shapes.
//! - `--consumers` **consumer** threads ([`consumers`]) own the shapes' `Writer`s. Each
//!   appends its shapes' changes to one file per shape in a temporary directory, `fsync`s in
//!   batches (`--fsync-ms`), and only then reports `flushed`.
//! - After `--wedge-after` seconds consumer 0 **wedges**: alive, holding its writers and
//!   unflushed data, reporting nothing, as in a deadlock. The tracker's scanner suspects its
//!   shapes after `--grace`, stalls them after a further `--challenge`, and (with the default
//!   `--policy evict`) evicts them: the watermark moves on. A **supervisor** thread
//!   ([`supervisor`]) reads the tracker's events and rebuilds each evicted shape on a healthy
//!   consumer (its key is free again).
//! - An **oracle** thread ([`oracle`]) waits for each published watermark
//!   (`wait_watermark`) and checks it against what the consumers have really `fsync`ed (the
//!   watermark must never pass a commit that some live shape has not made durable) and
//!   against the commits handed to `track` (it must be `start_at` or one of them). The
//!   program exits with status 1 on any violation, if the wedged consumer is not evicted
//!   (with `--policy evict`), if a healthy consumer is, if detection takes longer than the
//!   documented bound `grace + challenge + 2 * scan_interval + r` (r = one scan interval; plus `--latency-slack-ms`), or
//!   if the watermark does not reach the last commit at the end ([`verdict`]); with status 2
//!   on bad arguments or a setup error.
//!
//! The live view ([`view`], `indicatif`) shows commits/s, flushes/s, the watermark and its
//! lag behind the last commit, and the pending / suspected / stalled / evicted counts; when
//! stdout is not a terminal it prints one plain line per second instead.

mod args;
mod consumers;
mod oracle;
mod producer;
mod supervisor;
mod verdict;
mod view;

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use clap::Parser;
use crossbeam_channel::{self as channel, Sender};
use flushwatch::{Config, FlushTracker};

use args::{Args, Plan};
use consumers::{ConsumerCtx, ConsumerReport, Msg};
use oracle::{Incarnation, Oracle};
use producer::{Producer, Route};
use supervisor::{Supervisor, SupervisorReport};
use verdict::Outcome;
use view::Ui;

/// A shape's key: its number.
type Key = u32;

/// Where the tracker starts; the oracle accepts it as a watermark.
const START_AT: u64 = 0;

/// Counters shared by all threads. Every access is `Relaxed`: they are statistics (or, for
/// the flags, requests), and nothing else is published through them.
#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    changes: AtomicU64,
    fsyncs: AtomicU64,
    flushes: AtomicU64,
    io_errors: AtomicU64,
    violations: AtomicU64,
}

/// Nanoseconds since `started`.
fn nanos(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("pipeline: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<bool, Box<dyn std::error::Error>> {
    let plan = Plan::new(&args)?;
    let (dir, remove_dir) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("flushwatch-pipeline-{}", std::process::id())),
            true,
        ),
    };
    fs::create_dir_all(&dir)?;
    let result = pipeline(&args, &dir, &plan);
    if remove_dir {
        let _ = fs::remove_dir_all(&dir);
    }
    let outcome = result?;
    Ok(verdict::verdict(&args, &outcome, &plan))
}

/// The threads of a running pipeline, and what main needs to stop them.
struct Running {
    txs: Vec<Sender<Msg>>,
    consumers: Vec<JoinHandle<ConsumerReport>>,
    unwedge: Arc<AtomicBool>,
    wedged_at: Arc<AtomicU64>,
    producer: JoinHandle<Result<producer::Produced, String>>,
    stop_producer: Arc<AtomicBool>,
    supervisor: JoinHandle<SupervisorReport>,
    oracle_thread: JoinHandle<()>,
    stop_watchers: Arc<AtomicBool>,
}

fn pipeline(args: &Args, dir: &Path, plan: &Plan) -> Result<Outcome, Box<dyn std::error::Error>> {
    let tracker: FlushTracker<Key> = FlushTracker::new(
        Config::default()
            .grace(plan.grace)
            .challenge(plan.challenge)
            .scan_interval(plan.scan_interval)
            .start_at(START_AT)
            .stall_policy(plan.policy),
    )?;
    let counters = Arc::new(Counters::default());
    let oracle = Oracle::new(START_AT, counters.clone());
    let started = Instant::now();
    let ui = Ui::new(plan.duration)?;
    ui.line(
        started,
        format!(
            "{} shapes over {} consumers, {} commits/s for {:.0} s; files in {}",
            args.shapes,
            args.consumers,
            args.rate,
            plan.duration.as_secs_f64(),
            dir.display()
        ),
    );
    ui.line(
        started,
        format!(
            "policy {:?}, grace {:?}, challenge {:?}, scan every {:?}: detection bound {:?}{}",
            plan.policy,
            plan.grace,
            plan.challenge,
            plan.scan_interval,
            plan.bound,
            if args.no_wedge {
                String::new()
            } else {
                format!(
                    "; consumer 0 wedges at {:.1} s",
                    plan.wedge_after.as_secs_f64()
                )
            }
        ),
    );

    let scanner = tracker.spawn_scanner()?;
    let running = start(args, dir, plan, &tracker, &oracle, &counters, &ui, started)?;
    let max_lag = view::run(&ui, &tracker, &counters, started, plan.duration);

    // Shut down: the producer stops; the healthy consumers flush what they have and stop; the
    // scanner must then bring the watermark to the last commit (unless a stuck shape pins
    // it, under --policy report). The wedged consumer is released last, after the verdict's
    // measurements, so that its writers going away cannot change them.
    let Running {
        txs,
        consumers,
        unwedge,
        wedged_at,
        producer,
        stop_producer,
        supervisor,
        oracle_thread,
        stop_watchers,
    } = running;
    stop_producer.store(true, Ordering::Relaxed); // Relaxed: a request; the join synchronizes.
    let produced = producer.join().map_err(|_| "producer panicked")??;
    let elapsed = started.elapsed();
    for tx in &txs {
        let _ = tx.send(Msg::Finish);
    }
    drop(txs);
    let mut wedged = None;
    for (i, c) in consumers.into_iter().enumerate() {
        if i == 0 && !args.no_wedge {
            // Consumer 0 either finishes or wedges (it may do so while draining its queue).
            // Relaxed: only the value matters; nothing is published through it.
            while !c.is_finished() && wedged_at.load(Ordering::Relaxed) == 0 {
                thread::sleep(Duration::from_millis(5));
            }
            if !c.is_finished() {
                wedged = Some(c);
                continue;
            }
        }
        c.join().map_err(|_| "consumer panicked")?;
    }
    // Everything is flushed: the next scans publish the last commit, unless the wedged
    // shapes pin the watermark by design (then do not wait long for what cannot come).
    let pinned_by_design = !args.no_wedge && plan.policy == flushwatch::StallPolicy::Report;
    let patience = if pinned_by_design {
        2 * plan.scan_interval
    } else {
        (20 * plan.scan_interval).max(Duration::from_secs(2))
    };
    let final_watermark = tracker.wait_watermark(produced.last_commit, patience);
    // Let the oracle see the last publication, then stop it and the supervisor.
    thread::sleep(2 * plan.scan_interval);
    stop_watchers.store(true, Ordering::Relaxed); // Relaxed: a request; the joins synchronize.
    let report = supervisor.join().map_err(|_| "supervisor panicked")?;
    oracle_thread.join().map_err(|_| "oracle panicked")?;
    oracle.check(&tracker, final_watermark);
    let (mut wedged_shapes, mut wedged_saw_evicted) = (0, 0);
    if let Some(c) = wedged {
        unwedge.store(true, Ordering::Relaxed); // Relaxed: a request; the join synchronizes.
        let r = c.join().map_err(|_| "consumer panicked")?;
        (wedged_shapes, wedged_saw_evicted) = (r.shapes, r.evicted);
    }
    drop(scanner);
    ui.finish();
    // Relaxed: read after the consumer's join.
    let wedged_at = match wedged_at.load(Ordering::Relaxed) {
        0 => None,
        n => Some(Duration::from_nanos(n)),
    };
    Ok(Outcome {
        elapsed,
        commits: produced.commits,
        last_commit: produced.last_commit,
        final_watermark,
        max_lag,
        wedged_at,
        wedged_shapes,
        wedged_saw_evicted,
        events_dropped: tracker.events_dropped(),
        counters,
        supervisor: report,
        oracle: oracle.findings(),
    })
}

/// Registers the shapes and starts the consumers, the oracle, the supervisor and the
/// producer.
#[allow(clippy::too_many_arguments)]
fn start(
    args: &Args,
    dir: &Path,
    plan: &Plan,
    tracker: &FlushTracker<Key>,
    oracle: &Arc<Oracle>,
    counters: &Arc<Counters>,
    ui: &Ui,
    started: Instant,
) -> Result<Running, Box<dyn std::error::Error>> {
    // Consumers and the initial shapes.
    let mut txs = Vec::new();
    let mut rxs = Vec::new();
    for _ in 0..args.consumers {
        let (tx, rx) = channel::unbounded();
        txs.push(tx);
        rxs.push(rx);
    }
    let mut routes = Vec::new();
    for key in 0..args.shapes {
        let consumer = key as usize % args.consumers;
        let writer = tracker.register(key)?;
        let inc = Incarnation::new(key, writer.id(), consumer);
        txs[consumer].send(Msg::Adopt {
            writer,
            inc: inc.clone(),
            path: dir.join(format!("shape-{key:03}.log")),
        })?;
        oracle.adopt(inc.clone());
        routes.push(Route { inc, consumer });
    }
    let unwedge = Arc::new(AtomicBool::new(false));
    let wedged_at = Arc::new(AtomicU64::new(0));
    let mut consumers = Vec::new();
    for (i, rx) in rxs.into_iter().enumerate() {
        let wedge = (!args.no_wedge && i == 0).then_some(started + plan.wedge_after);
        let c = ConsumerCtx {
            index: i,
            every: Duration::from_millis(args.fsync_ms),
            wedge,
            unwedge: unwedge.clone(),
            wedged_at: wedged_at.clone(),
            report_before_fsync: args.report_before_fsync,
            counters: counters.clone(),
            ui: ui.clone(),
            started,
        };
        consumers.push(
            thread::Builder::new()
                .name(format!("consumer-{i}"))
                .spawn(move || c.run(rx))?,
        );
    }

    // The oracle: every published watermark.
    let stop_watchers = Arc::new(AtomicBool::new(false));
    let oracle_thread = {
        let (oracle, tracker, stop) = (oracle.clone(), tracker.clone(), stop_watchers.clone());
        thread::Builder::new()
            .name("oracle".into())
            .spawn(move || oracle.watch(&tracker, &stop))?
    };

    // The supervisor: events and rebuilds.
    let (ctl_tx, ctl_rx) = channel::unbounded::<(Key, Route)>();
    let supervisor = {
        let s = Supervisor {
            tracker: tracker.clone(),
            txs: txs.clone(),
            ctl: ctl_tx,
            oracle: oracle.clone(),
            healthy: vec![true; args.consumers],
            next: 1 % args.consumers,
            rebuilds: HashMap::new(),
            dir: dir.to_path_buf(),
            ui: ui.clone(),
            started,
            stop: stop_watchers.clone(),
            notes: Vec::new(),
            report: SupervisorReport::default(),
        };
        thread::Builder::new()
            .name("supervisor".into())
            .spawn(move || s.run())?
    };

    // The producer.
    let stop_producer = Arc::new(AtomicBool::new(false));
    let producer = {
        let p = Producer {
            tracker: tracker.clone(),
            routes,
            ctl: ctl_rx,
            txs: txs.clone(),
            oracle: oracle.clone(),
            rate: args.rate,
            shapes: args.shapes,
            max_per_commit: args.max_shapes_per_commit.min(args.shapes),
            seed: args.seed,
            counters: counters.clone(),
            stop: stop_producer.clone(),
            started,
        };
        thread::Builder::new()
            .name("producer".into())
            .spawn(move || p.run())?
    };
    Ok(Running {
        txs,
        consumers,
        unwedge,
        wedged_at,
        producer,
        stop_producer,
        supervisor,
        oracle_thread,
        stop_watchers,
    })
}
