//! A change-data-capture pipeline in one process, with a consumer that gets stuck.
//!
//! ```text
//! cargo run --release --example pipeline                  # ~20 s, nothing to install
//! cargo run --release --example pipeline -- --help        # shapes, consumers, rate, policy...
//! cargo run --release --example pipeline -- --policy report   # what happens without eviction
//! ```
//!
//! - A **producer** generates transactions (commit positions 1, 2, 3, ...), each touching one
//!   to three of `--shapes` shapes. For each commit it calls `track` first, then sends the
//!   changes to the consumers that own those shapes.
//! - `--consumers` **consumer** threads own the shapes' `Writer`s. Each appends its shapes'
//!   changes to one file per shape in a temporary directory, `fsync`s in batches
//!   (`--fsync-ms`), and only then reports `flushed`.
//! - After `--wedge-after` seconds consumer 0 **wedges**: alive, holding its writers and
//!   unflushed data, reporting nothing, as in a deadlock. The tracker's scanner suspects its
//!   shapes after `--grace`, stalls them after a further `--challenge`, and (with the default
//!   `--policy evict`) evicts them: the watermark moves on. A **supervisor** thread reads the
//!   tracker's events and rebuilds each evicted shape on a healthy consumer (its key is free
//!   again).
//! - An **oracle** checks every published watermark against what the consumers have really
//!   `fsync`ed: the watermark must never pass a commit that some live shape has not made
//!   durable. The program exits non-zero on any violation, if the wedged consumer is not
//!   evicted (with `--policy evict`), if a healthy consumer is, if detection takes longer than
//!   the documented bound `grace + challenge + 2 * scan_interval` (plus `--latency-slack-ms`),
//!   or if the watermark does not reach the last commit at the end.
//!
//! The live view (`indicatif`) shows commits/s, flushes/s, the watermark and its lag behind
//! the last commit, and the pending / suspected / stalled / evicted counts; when stdout is not
//! a terminal it prints one plain line per second instead.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File};
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use flushwatch::crossbeam_channel::{self as channel, Receiver, RecvTimeoutError, Sender};
use flushwatch::{Config, Error, Event, FlushTracker, ShapeId, StallPolicy, Writer};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A shape's key: its number.
type Key = u32;

#[derive(Parser, Debug, Clone)]
#[command(about = "flushwatch demo: a CDC pipeline whose consumer wedges; the scanner evicts it")]
struct Args {
    /// Number of shapes (consumers' units of storage).
    #[arg(long, default_value_t = 32)]
    shapes: u32,
    /// Number of consumer threads; shapes are assigned round robin.
    #[arg(long, default_value_t = 4)]
    consumers: usize,
    /// Target commits per second.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Seconds to run.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Seconds a pending shape may go without progress before it is challenged.
    #[arg(long, default_value_t = 2.0)]
    grace: f64,
    /// Seconds a challenged shape has to answer before it is stalled.
    #[arg(long, default_value_t = 0.5)]
    challenge: f64,
    /// Scanner period in milliseconds.
    #[arg(long, default_value_t = 50)]
    scan_interval_ms: u64,
    /// What the scanner does with a stalled shape.
    #[arg(long, value_enum, default_value_t = Policy::Evict)]
    policy: Policy,
    /// Do not wedge any consumer (then no shape may stall).
    #[arg(long)]
    no_wedge: bool,
    /// Seconds after the start at which consumer 0 wedges (default: 30% of the duration,
    /// at most 6 s).
    #[arg(long)]
    wedge_after: Option<f64>,
    /// Consumers fsync (then report) at most this often, in milliseconds.
    #[arg(long, default_value_t = 25)]
    fsync_ms: u64,
    /// At most this many shapes per transaction.
    #[arg(long, default_value_t = 3)]
    max_shapes_per_commit: u32,
    /// Directory for the shape files (default: a new directory under the system temp dir,
    /// removed at the end).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Seed of the transaction generator.
    #[arg(long, default_value_t = 0x5eed)]
    seed: u64,
    /// Tolerance on the detection bound, for a loaded machine, in milliseconds.
    #[arg(long, default_value_t = 500)]
    latency_slack_ms: u64,
    /// Self-test of the oracle: consumers report `flushed` *before* they fsync, which is the
    /// bug the tracker cannot protect against. The oracle must catch it (exit status 1).
    #[arg(long, hide = true)]
    report_before_fsync: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Policy {
    /// Evict a stalled shape: the watermark moves on; the shape is rebuilt.
    Evict,
    /// Only report it: the watermark stays pinned (what happens without stall detection).
    Report,
}

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

/// One incarnation of a shape (a registration), as the oracle sees it.
struct Incarnation {
    key: Key,
    id: ShapeId,
    consumer: usize,
    /// Commits tracked for it and not yet known durable, with the time they were tracked
    /// (nanoseconds since the start). Pushed by the producer before `track`.
    sent: Mutex<VecDeque<(u64, u64)>>,
    /// Everything tracked for it up to here is fsynced. Stored by the consumer before it
    /// reports `flushed`.
    durable: AtomicU64,
    /// When the consumer last reported progress (nanoseconds since the start).
    last_flush: AtomicU64,
}

impl Incarnation {
    fn new(key: Key, id: ShapeId, consumer: usize) -> Arc<Self> {
        Arc::new(Incarnation {
            key,
            id,
            consumer,
            sent: Mutex::new(VecDeque::new()),
            durable: AtomicU64::new(0),
            last_flush: AtomicU64::new(0),
        })
    }

    /// Drops the commits known durable; returns the first one that is not, with its time.
    fn first_undurable(&self) -> Option<(u64, u64)> {
        // Acquire: pairs with the consumer's Release store after its fsync.
        let durable = self.durable.load(Ordering::Acquire);
        let mut sent = self.sent.lock().unwrap();
        while sent.front().is_some_and(|&(c, _)| c <= durable) {
            sent.pop_front();
        }
        sent.front().copied()
    }
}

/// What the producer and the supervisor send a consumer.
enum Msg {
    /// Own this shape from now on.
    Adopt {
        writer: Writer<Key>,
        inc: Arc<Incarnation>,
        path: PathBuf,
    },
    /// Changes: (shape, commit), in commit order.
    Changes(Vec<(Key, u64)>),
    /// Flush everything and stop.
    Finish,
}

/// The producer's route to a shape.
#[derive(Clone)]
struct Route {
    inc: Arc<Incarnation>,
    consumer: usize,
}

/// Where lines go: above the progress bar, or straight to stdout.
#[derive(Clone)]
enum Ui {
    Bar(ProgressBar),
    Plain,
}

impl Ui {
    fn line(&self, started: Instant, msg: impl AsRef<str>) {
        let line = format!(
            "[{:6.2}s] {}",
            started.elapsed().as_secs_f64(),
            msg.as_ref()
        );
        match self {
            Ui::Bar(bar) => bar.println(line),
            Ui::Plain => println!("{line}"),
        }
    }
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

/// Everything the run measured, for the summary and the verdict.
struct Outcome {
    elapsed: Duration,
    last_commit: u64,
    final_watermark: u64,
    max_lag: u64,
    wedged_at: Option<Duration>,
    wedged_shapes: usize,
    wedged_saw_evicted: usize,
    events_dropped: u64,
    counters: Arc<Counters>,
    supervisor: SupervisorReport,
}

fn run(args: Args) -> Result<bool, Box<dyn std::error::Error>> {
    if args.shapes == 0 || args.consumers == 0 || args.rate == 0 || args.max_shapes_per_commit == 0
    {
        return Err(
            "--shapes, --consumers, --rate and --max-shapes-per-commit must be positive".into(),
        );
    }
    if !args.no_wedge && args.consumers < 2 {
        return Err("wedging needs at least 2 consumers (one to wedge, one to rebuild on)".into());
    }
    let duration = secs(args.duration);
    let grace = secs(args.grace);
    let challenge = secs(args.challenge);
    let scan_interval = Duration::from_millis(args.scan_interval_ms.max(1));
    let bound = grace + challenge + 2 * scan_interval;
    let wedge_after = secs(
        args.wedge_after
            .unwrap_or_else(|| (args.duration * 0.3).min(6.0)),
    );
    if !args.no_wedge && wedge_after + bound + Duration::from_millis(500) > duration {
        return Err(format!(
            "--duration {:.1}s is too short to see the wedge at {:.1}s detected within {:.2}s",
            duration.as_secs_f64(),
            wedge_after.as_secs_f64(),
            bound.as_secs_f64()
        )
        .into());
    }
    let policy = match args.policy {
        Policy::Evict => StallPolicy::Evict,
        Policy::Report => StallPolicy::Report,
    };

    let (dir, remove_dir) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("flushwatch-pipeline-{}", std::process::id())),
            true,
        ),
    };
    fs::create_dir_all(&dir)?;
    let plan = Plan {
        policy,
        duration,
        wedge_after,
        bound,
        scan_interval,
    };
    let result = pipeline(&args, &dir, &plan);
    if remove_dir {
        let _ = fs::remove_dir_all(&dir);
    }
    let outcome = result?;
    Ok(verdict(&args, &outcome, &plan))
}

/// The run's settings, derived from the arguments.
struct Plan {
    policy: StallPolicy,
    duration: Duration,
    wedge_after: Duration,
    /// The documented detection bound, `grace + challenge + 2 * scan_interval`.
    bound: Duration,
    scan_interval: Duration,
}

fn pipeline(args: &Args, dir: &Path, plan: &Plan) -> Result<Outcome, Box<dyn std::error::Error>> {
    let &Plan {
        policy,
        duration,
        wedge_after,
        bound,
        scan_interval,
    } = plan;
    let tracker: FlushTracker<Key> = FlushTracker::new(
        Config::default()
            .grace(secs(args.grace))
            .challenge(secs(args.challenge))
            .scan_interval(scan_interval)
            .stall_policy(policy),
    )?;
    let counters = Arc::new(Counters::default());
    let started = Instant::now();

    let ui = if std::io::stdout().is_terminal() {
        let bar = ProgressBar::with_draw_target(
            Some(duration.as_millis() as u64),
            ProgressDrawTarget::stdout(),
        );
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner:.green} {elapsed_precise} [{bar:40.cyan/blue}] {percent:>3}%\n{msg}",
            )?
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        Ui::Bar(bar)
    } else {
        Ui::Plain
    };
    ui.line(
        started,
        format!(
            "{} shapes over {} consumers, {} commits/s for {:.0} s; files in {}",
            args.shapes,
            args.consumers,
            args.rate,
            duration.as_secs_f64(),
            dir.display()
        ),
    );
    ui.line(
        started,
        format!(
            "policy {:?}, grace {:?}, challenge {:?}, scan every {:?}: detection bound {:?}{}",
            policy,
            secs(args.grace),
            secs(args.challenge),
            scan_interval,
            bound,
            if args.no_wedge {
                String::new()
            } else {
                format!("; consumer 0 wedges at {:.1} s", wedge_after.as_secs_f64())
            }
        ),
    );

    // Consumers and the initial shapes.
    let mut txs = Vec::new();
    let mut rxs = Vec::new();
    for _ in 0..args.consumers {
        let (tx, rx) = channel::unbounded();
        txs.push(tx);
        rxs.push(rx);
    }
    let mut routes = Vec::new();
    let mut live = HashMap::new();
    for key in 0..args.shapes {
        let consumer = key as usize % args.consumers;
        let writer = tracker.register(key)?;
        let inc = Incarnation::new(key, writer.id(), consumer);
        txs[consumer].send(Msg::Adopt {
            writer,
            inc: inc.clone(),
            path: dir.join(format!("shape-{key:03}.log")),
        })?;
        live.insert(key, inc.clone());
        routes.push(Route { inc, consumer });
    }
    let unwedge = Arc::new(AtomicBool::new(false));
    let wedged_at = Arc::new(AtomicU64::new(0));
    let mut consumers = Vec::new();
    for (i, rx) in rxs.into_iter().enumerate() {
        let wedge = (!args.no_wedge && i == 0).then_some(started + wedge_after);
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

    let scanner = tracker.spawn_scanner()?;

    // The supervisor: events, rebuilds, the oracle.
    let (ctl_tx, ctl_rx) = channel::unbounded::<(Key, Route)>();
    let stop_supervisor = Arc::new(AtomicBool::new(false));
    let supervisor = {
        let s = Supervisor {
            tracker: tracker.clone(),
            events: tracker.events(),
            txs: txs.clone(),
            ctl: ctl_tx,
            healthy: vec![true; args.consumers],
            next: 1 % args.consumers,
            rebuilds: HashMap::new(),
            dir: dir.to_path_buf(),
            counters: counters.clone(),
            ui: ui.clone(),
            started,
            stop: stop_supervisor.clone(),
            notes: Vec::new(),
            report: SupervisorReport {
                live,
                ..SupervisorReport::default()
            },
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

    // The live view, until the duration is up: sampled every 100 ms (for the largest lag),
    // redrawn every 200 ms, or one plain line a second.
    let mut max_lag = 0;
    let mut last = (Instant::now(), 0u64, 0u64);
    let mut rates = (0.0, 0.0);
    let period = match ui {
        Ui::Bar(_) => Duration::from_millis(200),
        Ui::Plain => Duration::from_secs(1),
    };
    let mut next_draw = started + period;
    while started.elapsed() < duration {
        thread::sleep(Duration::from_millis(100).min(duration.saturating_sub(started.elapsed())));
        let st = tracker.stats();
        max_lag = max_lag.max(st.last_seen.saturating_sub(st.watermark));
        if Instant::now() < next_draw && started.elapsed() < duration {
            continue;
        }
        next_draw += period;
        // Relaxed (both): statistics.
        let commits = counters.commits.load(Ordering::Relaxed);
        let flushes = counters.flushes.load(Ordering::Relaxed);
        let dt = last.0.elapsed().as_secs_f64();
        if dt >= 0.9 * period.as_secs_f64() {
            rates = (
                (commits - last.1) as f64 / dt,
                (flushes - last.2) as f64 / dt,
            );
            last = (Instant::now(), commits, flushes);
        }
        let lag = st.last_seen.saturating_sub(st.watermark);
        let lag_ms = lag as f64 * 1000.0 / args.rate as f64;
        let pinned = tracker
            .pinned_by()
            .filter(|p| p.idle > Duration::from_millis(200))
            .map(|p| {
                format!(
                    "   pinned by shape-{:03} (idle {:.1} s)",
                    p.key,
                    p.idle.as_secs_f64()
                )
            })
            .unwrap_or_default();
        match &ui {
            Ui::Bar(bar) => {
                bar.set_position(started.elapsed().as_millis() as u64);
                bar.set_message(format!(
                    "  commits {:>9.0}/s   flushes {:>7.0}/s\n  \
                     watermark {:>10}   last commit {:>10}   lag {:>8} ({:.0} ms){}\n  \
                     pending {:>3}   suspected {:>3}   stalled {:>3}   evicted {:>3}",
                    rates.0,
                    rates.1,
                    st.watermark,
                    st.last_seen,
                    lag,
                    lag_ms,
                    pinned,
                    st.pending,
                    st.suspected,
                    st.stalled,
                    st.evicted,
                ));
            }
            Ui::Plain => println!(
                "t={:.1}s commits/s={:.0} flushes/s={:.0} watermark={} last={} lag={} pending={} suspected={} stalled={} evicted={}",
                started.elapsed().as_secs_f64(),
                rates.0,
                rates.1,
                st.watermark,
                st.last_seen,
                lag,
                st.pending,
                st.suspected,
                st.stalled,
                st.evicted
            ),
        }
    }

    // Shut down: the producer stops; the healthy consumers flush what they have and stop; a
    // final scan must then bring the watermark to the last commit (unless a stuck shape pins
    // it, under --policy report). The wedged consumer is released last, after the verdict's
    // measurements, so that its writers going away cannot change them.
    stop_producer.store(true, Ordering::Relaxed); // Relaxed: a request; the join synchronizes.
    let last_commit = producer.join().map_err(|_| "producer panicked")??;
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
    let final_watermark = tracker.scan().watermark;
    // Let the supervisor check the last Advanced event, then stop it.
    thread::sleep(2 * scan_interval);
    stop_supervisor.store(true, Ordering::Relaxed); // Relaxed: a request; the join synchronizes.
    let mut report = supervisor.join().map_err(|_| "supervisor panicked")?;
    report.check(&tracker, final_watermark, &counters);
    let (mut wedged_shapes, mut wedged_saw_evicted) = (0, 0);
    if let Some(c) = wedged {
        unwedge.store(true, Ordering::Relaxed); // Relaxed: a request; the join synchronizes.
        let r = c.join().map_err(|_| "consumer panicked")?;
        (wedged_shapes, wedged_saw_evicted) = (r.shapes, r.evicted);
    }
    drop(scanner);
    if let Ui::Bar(bar) = &ui {
        bar.finish_and_clear();
    }
    // Relaxed: read after the consumer's join.
    let wedged_at = match wedged_at.load(Ordering::Relaxed) {
        0 => None,
        n => Some(Duration::from_nanos(n)),
    };
    Ok(Outcome {
        elapsed,
        last_commit,
        final_watermark,
        max_lag,
        wedged_at,
        wedged_shapes,
        wedged_saw_evicted,
        events_dropped: tracker.events_dropped(),
        counters,
        supervisor: report,
    })
}

// ---------------------------------------------------------------------------------------------
// Producer
// ---------------------------------------------------------------------------------------------

struct Producer {
    tracker: FlushTracker<Key>,
    routes: Vec<Route>,
    ctl: Receiver<(Key, Route)>,
    txs: Vec<Sender<Msg>>,
    rate: u64,
    shapes: u32,
    max_per_commit: u32,
    seed: u64,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    started: Instant,
}

impl Producer {
    /// Generates commits at `rate` until stopped; returns the last commit position.
    fn run(mut self) -> Result<u64, String> {
        let mut rng = self.seed.max(1);
        let mut commit = 0u64;
        let mut picked: Vec<Key> = Vec::with_capacity(self.max_per_commit as usize);
        let mut ids = Vec::with_capacity(self.max_per_commit as usize);
        let mut batches: Vec<Vec<(Key, u64)>> = vec![Vec::new(); self.txs.len()];
        let burst = (self.rate / 200).max(1);
        // Relaxed: a stop request; nothing is published through it.
        while !self.stop.load(Ordering::Relaxed) {
            while let Ok((key, route)) = self.ctl.try_recv() {
                self.routes[key as usize] = route;
            }
            let due = (self.started.elapsed().as_secs_f64() * self.rate as f64) as u64;
            let n = due.saturating_sub(commit).min(burst);
            if n == 0 {
                thread::sleep(Duration::from_micros(500));
                continue;
            }
            let now = nanos(self.started);
            for _ in 0..n {
                commit += 1;
                let k = 1 + xorshift(&mut rng) % u64::from(self.max_per_commit);
                picked.clear();
                while (picked.len() as u64) < k {
                    let s = (xorshift(&mut rng) % u64::from(self.shapes)) as Key;
                    if !picked.contains(&s) {
                        picked.push(s);
                    }
                }
                ids.clear();
                for &s in &picked {
                    let route = &self.routes[s as usize];
                    // The oracle learns of the commit before the tracker does.
                    route.inc.sent.lock().unwrap().push_back((commit, now));
                    ids.push(route.inc.id);
                }
                // track first, then send: a consumer never reports a commit not yet tracked.
                self.tracker
                    .track(commit, &ids)
                    .map_err(|e| format!("track({commit}): {e}"))?;
                for &s in &picked {
                    batches[self.routes[s as usize].consumer].push((s, commit));
                }
                // Relaxed: statistics.
                self.counters
                    .changes
                    .fetch_add(picked.len() as u64, Ordering::Relaxed);
            }
            for (tx, batch) in self.txs.iter().zip(batches.iter_mut()) {
                if !batch.is_empty() {
                    let _ = tx.send(Msg::Changes(std::mem::take(batch)));
                }
            }
            self.counters.commits.store(commit, Ordering::Relaxed); // Relaxed: statistics.
        }
        Ok(commit)
    }
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

// ---------------------------------------------------------------------------------------------
// Consumers
// ---------------------------------------------------------------------------------------------

struct ConsumerCtx {
    index: usize,
    every: Duration,
    /// When this consumer wedges, if it is the one.
    wedge: Option<Instant>,
    unwedge: Arc<AtomicBool>,
    wedged_at: Arc<AtomicU64>,
    /// The oracle's self-test: report before the data is durable (wrong on purpose).
    report_before_fsync: bool,
    counters: Arc<Counters>,
    ui: Ui,
    started: Instant,
}

struct ShapeFile {
    writer: Writer<Key>,
    inc: Arc<Incarnation>,
    file: BufWriter<File>,
    /// The highest commit received (and written).
    received: u64,
    dirty: bool,
}

struct ConsumerReport {
    shapes: usize,
    evicted: usize,
}

impl ConsumerCtx {
    fn run(self, rx: Receiver<Msg>) -> ConsumerReport {
        let mut shapes: HashMap<Key, ShapeFile> = HashMap::new();
        let mut deadline: Option<Instant> = None;
        let payload = "x".repeat(48);
        loop {
            let msg = match deadline {
                Some(d) => rx.recv_deadline(d),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match msg {
                Ok(Msg::Adopt { writer, inc, path }) => match File::create(&path) {
                    Ok(file) => {
                        shapes.insert(
                            inc.key,
                            ShapeFile {
                                writer,
                                inc,
                                file: BufWriter::with_capacity(64 * 1024, file),
                                received: 0,
                                dirty: false,
                            },
                        );
                    }
                    Err(e) => self.io_error(&path.display().to_string(), e),
                },
                Ok(Msg::Changes(changes)) => {
                    for (key, commit) in changes {
                        if let Some(s) = shapes.get_mut(&key) {
                            if let Err(e) = writeln!(s.file, "{commit} {key} {payload}") {
                                self.io_error("write", e);
                            }
                            s.received = commit;
                            s.dirty = true;
                        }
                    }
                    deadline.get_or_insert_with(|| Instant::now() + self.every);
                }
                Ok(Msg::Finish) | Err(RecvTimeoutError::Disconnected) => {
                    self.flush(&mut shapes);
                    return ConsumerReport {
                        shapes: shapes.len(),
                        evicted: 0,
                    };
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if self.wedge.is_some_and(|w| Instant::now() >= w) {
                return self.wedged(&shapes);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.flush(&mut shapes);
                deadline = None;
            }
        }
    }

    /// fsync every dirty shape, then report it; forget shapes that were evicted.
    fn flush(&self, shapes: &mut HashMap<Key, ShapeFile>) {
        if self.report_before_fsync {
            // Wrong on purpose: the reports go out long before the data is durable.
            for s in shapes.values().filter(|s| s.dirty) {
                s.writer.flushed(s.received);
            }
            thread::sleep(self.every);
        }
        shapes.retain(|key, s| {
            if s.dirty {
                if let Err(e) = s.file.flush().and_then(|()| s.file.get_ref().sync_data()) {
                    self.io_error(&format!("fsync shape-{key:03}"), e);
                    return true;
                }
                // Relaxed: statistics.
                self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
                // Release: pairs with the oracle's Acquire load; set before the report, so a
                // watermark that counts this report finds it.
                s.inc.durable.store(s.received, Ordering::Release);
                // Release: pairs with the supervisor's Acquire load (latency measurement).
                s.inc
                    .last_flush
                    .store(nanos(self.started), Ordering::Release);
                s.writer.flushed(s.received);
                self.counters.flushes.fetch_add(1, Ordering::Relaxed); // Relaxed: statistics.
                s.dirty = false;
            }
            !s.writer.is_evicted()
        });
    }

    /// Stuck, as in a deadlock: holds its writers and its unflushed data, reports nothing.
    fn wedged(&self, shapes: &HashMap<Key, ShapeFile>) -> ConsumerReport {
        // Relaxed: main polls only the value; it reads it again after joining this thread.
        self.wedged_at.store(nanos(self.started), Ordering::Relaxed);
        self.ui.line(
            self.started,
            format!(
                "consumer {} wedges, holding {} shapes ({} with unflushed changes)",
                self.index,
                shapes.len(),
                shapes.values().filter(|s| s.dirty).count()
            ),
        );
        // Relaxed: a request; nothing is published through it.
        while !self.unwedge.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(20));
        }
        ConsumerReport {
            shapes: shapes.len(),
            evicted: shapes.values().filter(|s| s.writer.is_evicted()).count(),
        }
    }

    fn io_error(&self, what: &str, e: std::io::Error) {
        self.counters.io_errors.fetch_add(1, Ordering::Relaxed); // Relaxed: statistics.
        self.ui.line(
            self.started,
            format!("consumer {}: {what}: {e}", self.index),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Supervisor: events, rebuilds, oracle
// ---------------------------------------------------------------------------------------------

struct Supervisor {
    tracker: FlushTracker<Key>,
    events: Receiver<Event<Key>>,
    txs: Vec<Sender<Msg>>,
    ctl: Sender<(Key, Route)>,
    healthy: Vec<bool>,
    next: usize,
    rebuilds: HashMap<Key, u32>,
    dir: PathBuf,
    counters: Arc<Counters>,
    ui: Ui,
    started: Instant,
    stop: Arc<AtomicBool>,
    /// Lines about shapes, grouped until the event queue is momentarily empty (one scan
    /// suspects or stalls a wedged consumer's shapes together).
    notes: Vec<(Note, Key, Duration)>,
    report: SupervisorReport,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Note {
    Suspected,
    Evicted,
    Stalled,
}

/// A stall, measured.
struct Detection {
    key: Key,
    consumer: usize,
    /// From the shape's last progress (as seen by the oracle) to the event's arrival.
    latency: Duration,
    /// The tracker's own idle time in the event.
    idle: Duration,
    /// The shape's flushed position when it stalled.
    flushed: u64,
    evicted: bool,
}

#[derive(Default)]
struct SupervisorReport {
    detections: Vec<Detection>,
    suspected: usize,
    rebuilt: usize,
    writers_down: usize,
    checks: u64,
    first_violation: Option<String>,
    /// The live incarnation of every shape.
    live: HashMap<Key, Arc<Incarnation>>,
}

impl SupervisorReport {
    /// Checks a published watermark against what is durable in every live incarnation.
    fn check(&mut self, tracker: &FlushTracker<Key>, watermark: u64, counters: &Counters) {
        self.checks += 1;
        for inc in self.live.values() {
            if let Some((first, _)) = inc.first_undurable() {
                // A violation only if the incarnation is still registered: one that was
                // evicted or removed by the scan that published this watermark no longer
                // counts.
                let registered = tracker.id_of(&inc.key) == Some(inc.id);
                if first <= watermark && registered {
                    counters.violations.fetch_add(1, Ordering::Relaxed); // Relaxed: statistics.
                    self.first_violation.get_or_insert_with(|| {
                        format!(
                            "watermark {watermark} passed commit {first} of shape-{:03}, which is not durable (durable up to {})",
                            inc.key,
                            // Acquire: pairs with the consumer's Release store.
                            inc.durable.load(Ordering::Acquire)
                        )
                    });
                }
            }
        }
    }
}

impl Supervisor {
    fn run(mut self) -> SupervisorReport {
        loop {
            let event = match self.events.recv_timeout(Duration::from_millis(20)) {
                Ok(e) => e,
                Err(RecvTimeoutError::Timeout) => {
                    // Relaxed: a request; the join synchronizes.
                    if self.stop.load(Ordering::Relaxed) {
                        return self.report;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return self.report,
            };
            match event {
                Event::Advanced { watermark } => {
                    self.report.check(&self.tracker, watermark, &self.counters)
                }
                Event::Suspected { key, idle } => {
                    self.report.suspected += 1;
                    self.notes.push((Note::Suspected, key, idle));
                }
                Event::Stalled {
                    key,
                    idle,
                    flushed,
                    evicted,
                    ..
                } => self.stalled(key, idle, flushed, evicted),
                Event::WriterDown { key, cause } => {
                    self.report.writers_down += 1;
                    self.ui.line(
                        self.started,
                        format!("writer of shape-{key:03} down ({cause:?}); rebuilding"),
                    );
                    if let Some(inc) = self.report.live.remove(&key) {
                        self.healthy[inc.consumer] = false;
                    }
                    self.rebuild(key);
                }
                _ => {}
            }
            if self.events.is_empty() {
                self.flush_notes();
            }
        }
    }

    /// Prints the grouped notes: one line per kind, listing the shapes.
    fn flush_notes(&mut self) {
        for kind in [Note::Suspected, Note::Evicted, Note::Stalled] {
            let group: Vec<(Key, Duration)> = self
                .notes
                .iter()
                .filter(|n| n.0 == kind)
                .map(|n| (n.1, n.2))
                .collect();
            if group.is_empty() {
                continue;
            }
            let names: Vec<String> = group.iter().map(|(k, _)| format!("shape-{k:03}")).collect();
            let lo = group
                .iter()
                .map(|g| g.1)
                .min()
                .unwrap_or_default()
                .as_secs_f64();
            let hi = group
                .iter()
                .map(|g| g.1)
                .max()
                .unwrap_or_default()
                .as_secs_f64();
            let range = if hi - lo < 0.0005 {
                format!("{lo:.3} s")
            } else {
                format!("{lo:.3}-{hi:.3} s")
            };
            let line = match kind {
                Note::Suspected => format!("suspected {} (idle {range})", names.join(" ")),
                Note::Evicted => format!(
                    "evicted {}, {range} after their last progress; rebuilt on healthy consumers",
                    names.join(" ")
                ),
                Note::Stalled => format!(
                    "stalled {}, {range} after their last progress (reported only: they keep pinning the watermark)",
                    names.join(" ")
                ),
            };
            self.ui.line(self.started, line);
        }
        self.notes.clear();
    }

    fn stalled(&mut self, key: Key, idle: Duration, flushed: u64, evicted: bool) {
        let arrived = nanos(self.started);
        let Some(inc) = self.report.live.get(&key).cloned() else {
            return;
        };
        // The shape's last progress: its last report, or the first commit tracked after it
        // (which made it pending), whichever is later.
        // Acquire: pairs with the consumer's Release store.
        let last_flush = inc.last_flush.load(Ordering::Acquire);
        let pending_since = inc.first_undurable().map_or(0, |(_, t)| t);
        let latency = Duration::from_nanos(arrived.saturating_sub(last_flush.max(pending_since)));
        self.report.detections.push(Detection {
            key,
            consumer: inc.consumer,
            latency,
            idle,
            flushed,
            evicted,
        });
        if !evicted {
            self.notes.push((Note::Stalled, key, latency));
            return;
        }
        self.notes.push((Note::Evicted, key, latency));
        self.report.live.remove(&key);
        self.healthy[inc.consumer] = false;
        self.rebuild(key);
    }

    /// Registers `key` again and hands it to a healthy consumer; the producer routes to it
    /// from its next burst on.
    fn rebuild(&mut self, key: Key) {
        let n = self.healthy.len();
        let Some(consumer) = (0..n)
            .map(|k| (self.next + k) % n)
            .find(|&c| self.healthy[c])
        else {
            self.ui.line(self.started, "no healthy consumer left");
            return;
        };
        self.next = (consumer + 1) % n;
        // The eviction frees the key; its event may arrive a moment before that completes.
        let mut tries = 0;
        let writer = loop {
            match self.tracker.register(key) {
                Ok(w) => break w,
                Err(Error::DuplicateShape) if tries < 1000 => {
                    tries += 1;
                    thread::sleep(Duration::from_millis(1));
                }
                Err(e) => {
                    self.ui
                        .line(self.started, format!("re-registering shape-{key:03}: {e}"));
                    return;
                }
            }
        };
        let inc = Incarnation::new(key, writer.id(), consumer);
        let generation = self.rebuilds.entry(key).or_insert(0);
        *generation += 1;
        let path = self
            .dir
            .join(format!("shape-{key:03}.rebuilt-{generation}.log"));
        if self.txs[consumer]
            .send(Msg::Adopt {
                writer,
                inc: inc.clone(),
                path,
            })
            .is_err()
        {
            return;
        }
        self.report.live.insert(key, inc.clone());
        self.report.rebuilt += 1;
        let _ = self.ctl.send((key, Route { inc, consumer }));
    }
}

// ---------------------------------------------------------------------------------------------
// Summary and verdict
// ---------------------------------------------------------------------------------------------

fn verdict(args: &Args, o: &Outcome, plan: &Plan) -> bool {
    let &Plan {
        policy,
        wedge_after,
        bound,
        ..
    } = plan;
    let r = &o.supervisor;
    // Relaxed: every counter is read after the joins.
    let read = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let run_s = o.elapsed.as_secs_f64();
    let rate = o.last_commit as f64 / run_s;
    let wedging = !args.no_wedge;
    let slack = Duration::from_millis(args.latency_slack_ms);
    let mut failures: Vec<String> = Vec::new();

    println!();
    println!(
        "flushwatch pipeline: {} shapes over {} consumers, policy {:?}, {:.1} s",
        args.shapes, args.consumers, policy, run_s
    );
    println!(
        "  throughput   {} commits ({:.0}/s, target {}/s), {} changes; {} fsyncs ({:.0}/s), each then reported with flushed()",
        o.last_commit,
        rate,
        args.rate,
        read(&o.counters.changes),
        read(&o.counters.fsyncs),
        read(&o.counters.fsyncs) as f64 / run_s,
    );
    println!(
        "  watermark    final {} (last commit {}); largest lag seen {} commits (~{:.2} s of traffic)",
        o.final_watermark,
        o.last_commit,
        o.max_lag,
        o.max_lag as f64 / rate.max(1.0)
    );

    // The wedge and its detection.
    let mut first: Vec<&Detection> = Vec::new();
    for d in &r.detections {
        if !first.iter().any(|f| f.key == d.key) {
            first.push(d);
        }
    }
    let (of_wedged, false_positives): (Vec<&Detection>, Vec<&Detection>) = first
        .iter()
        .partition(|d| wedging && d.consumer == 0 && o.wedged_at.is_some());
    match o.wedged_at {
        Some(at) => println!(
            "  wedge        consumer 0 wedged at {:.2} s holding {} shapes",
            at.as_secs_f64(),
            o.wedged_shapes
        ),
        None if wedging => failures.push(format!(
            "consumer 0 never wedged (at {:.1} s)",
            wedge_after.as_secs_f64()
        )),
        None => println!("  wedge        none (--no-wedge)"),
    }
    if !of_wedged.is_empty() {
        let min = of_wedged
            .iter()
            .map(|d| d.latency)
            .min()
            .unwrap_or_default();
        let max = of_wedged
            .iter()
            .map(|d| d.latency)
            .max()
            .unwrap_or_default();
        let idle = of_wedged.iter().map(|d| d.idle).max().unwrap_or_default();
        println!(
            "  detection    {} shapes stalled {:.3}-{:.3} s after their last progress (tracker's own idle: at most {:.3} s);",
            of_wedged.len(),
            min.as_secs_f64(),
            max.as_secs_f64(),
            idle.as_secs_f64()
        );
        println!(
            "               documented bound grace + challenge + 2 x scan_interval = {:.3} s",
            bound.as_secs_f64()
        );
        if max > bound + slack {
            failures.push(format!(
                "detection took {:.3} s, more than the bound {:.3} s (+{} ms slack)",
                max.as_secs_f64(),
                bound.as_secs_f64(),
                slack.as_millis()
            ));
        }
    }
    if wedging && o.wedged_at.is_some() {
        let evicted = of_wedged.iter().filter(|d| d.evicted).count();
        match policy {
            StallPolicy::Report => {
                if of_wedged.is_empty() {
                    failures
                        .push("the wedged consumer's shapes were never reported stalled".into());
                }
                if evicted > 0 {
                    failures.push("--policy report evicted a shape".into());
                }
            }
            _ => {
                if evicted < o.wedged_shapes || o.wedged_saw_evicted < o.wedged_shapes {
                    failures.push(format!(
                        "only {evicted} of the wedged consumer's {} shapes were evicted ({} of its writers saw it)",
                        o.wedged_shapes, o.wedged_saw_evicted
                    ));
                }
            }
        }
        // Where the acknowledged position would be without stall detection: pinned at the
        // lowest flushed position among the stuck shapes, for ever.
        if let Some(pinned) = of_wedged.iter().map(|d| d.flushed).min() {
            let behind = o.last_commit.saturating_sub(pinned);
            if policy == StallPolicy::Report {
                println!(
                    "  pinned       the acknowledged position is stuck at commit {pinned}: {behind} commits (~{:.1} s of traffic) behind, and growing; --policy evict would move it on",
                    behind as f64 / rate.max(1.0)
                );
            } else {
                println!(
                    "  without it   the acknowledged position would have stayed at commit {pinned}: {behind} commits (~{:.1} s of traffic) behind at the end, growing by {:.0}/s; with it the final lag is {}",
                    behind as f64 / rate.max(1.0),
                    rate,
                    o.last_commit.saturating_sub(o.final_watermark)
                );
            }
        }
    }
    for d in &false_positives {
        failures.push(format!(
            "shape-{:03} of healthy consumer {} stalled (idle {:.3} s)",
            d.key,
            d.consumer,
            d.idle.as_secs_f64()
        ));
    }

    // Safety and liveness.
    println!(
        "  oracle       {} published watermarks checked against fsynced data: {} violations; {} shapes rebuilt on healthy consumers",
        r.checks,
        read(&o.counters.violations),
        r.rebuilt
    );
    if let Some(v) = &r.first_violation {
        failures.push(format!("safety violated: {v}"));
    }
    let pinned_by_design = wedging && policy == StallPolicy::Report;
    if !pinned_by_design && o.final_watermark != o.last_commit {
        failures.push(format!(
            "after the final flush the watermark is {} instead of the last commit {}",
            o.final_watermark, o.last_commit
        ));
    }
    if read(&o.counters.io_errors) > 0 {
        failures.push(format!("{} I/O errors", read(&o.counters.io_errors)));
    }
    if r.writers_down > 0 {
        failures.push(format!("{} writers went down", r.writers_down));
    }
    let expected_suspicions = if wedging { o.wedged_shapes } else { 0 };
    if policy != StallPolicy::Report && r.suspected > expected_suspicions {
        println!(
            "  note         {} suspicions in all, {} beyond the wedged consumer's shapes (answered in time)",
            r.suspected,
            r.suspected - expected_suspicions
        );
    }
    if o.events_dropped > 0 {
        println!(
            "  note         {} events were dropped (queue full)",
            o.events_dropped
        );
    }
    if rate < 0.5 * args.rate as f64 {
        println!(
            "  note         the machine sustained only {rate:.0} of {} commits/s",
            args.rate
        );
    }
    if failures.is_empty() {
        println!("result: OK");
        true
    } else {
        for f in &failures {
            println!("FAILED: {f}");
        }
        false
    }
}
