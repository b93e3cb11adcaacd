//! `pg-pipeline run`: a logical slot streamed with `pgoutput`, fanned out to many shapes,
//! acknowledged with the tracker's watermark in standby status updates.
//!
//! Who owns what:
//! - the **reader** (a tokio task on a current-thread runtime) owns the replication connection
//!   (`pgwire-replication`), the routing table and every `register` / `track` call. It decodes
//!   each transaction, `track`s its commit (the commit record's end LSN, `end_lsn`) for the
//!   shapes it touches, hands each consumer its lines, and every `ack_interval` hands the
//!   tracker's watermark to the replication client, which sends it as write / flush / apply
//!   position in a standby status update (at once when a keepalive asks for a reply).
//!   Keepalives outside a transaction and transactions touching no shape are `track(pos, &[])`,
//!   so an idle or filtered source still moves the slot.
//! - **consumers** (threads) own the shapes' `Writer`s and files (`consumer.rs`);
//! - the reader also drains the tracker's events (in `settle`, before each acknowledgement),
//!   logs them and rebuilds the shapes that were evicted or whose writer went down; the
//!   **rebuild worker** copies snapshots (`rebuild.rs`);
//! - the tracker's scanner thread.
//!
//! On a broken stream (walsender terminated, server restarted) the reader reconnects with
//! backoff and resumes from the slot; commits at or below `last_seen` were already handed to
//! consumers by this process and are skipped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use crossbeam_channel::{self as channel, Receiver, Sender};
use flushwatch::Events;
use flushwatch::{Config, Error as FwError, Event, FlushTracker, ShapeId, StallPolicy, TrackHint};
use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, ReplicationEvent};

use crate::consumer::{Consumer, Counters, Dead, Msg, Rebuilt, Wedge};
use crate::cpu::{cpu_interval, process_cpu_ns, scanner_cpu_ns, thread_cpu_ns};
use crate::files;
use crate::pgoutput::{self, Message, Value};
use crate::rebuild::{self, Snapshot};
use crate::shapes::{Layout, ShapeKey};

/// Options of `pg-pipeline run` (parsed in `main.rs`).
#[derive(Debug, Clone)]
pub struct RunOpts {
    pub conn: String,
    pub slot: String,
    pub publication: String,
    pub create_slot: bool,
    pub out: PathBuf,
    pub layout: Layout,
    pub consumers: usize,
    pub policy: StallPolicy,
    pub grace: Duration,
    pub challenge: Duration,
    pub scan_interval: Duration,
    pub fsync_interval: Duration,
    pub sync: crate::consumer::SyncMode,
    pub ack_interval: Duration,
    pub wedge_shape: Option<ShapeKey>,
    pub wedge_after: Duration,
    /// The wedge stops its consumer once any of its shapes is dirty (`Wedge::any`).
    pub wedge_any: bool,
    pub duration: Option<Duration>,
    /// Stop once every commit up to this position is durable and acknowledged.
    pub until: Option<u64>,
    pub status_interval: Duration,
    /// A fault to inject (`PG_PIPELINE_FAULT`), see [`Fault`].
    pub fault: Fault,
    /// A fault fires only after this many commits streamed live (after the start-up replay).
    pub fault_after_commits: u64,
    /// Measure the acknowledgement lag of live commits (`probe.rs`).
    pub ack_lag: bool,
}

/// The faults `scripts/pg-e2e` injects (`PG_PIPELINE_FAULT`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    None,
    /// `kill-window`: abort right after the server confirmed a watermark while a caught-up
    /// shape's newest commit (streamed live, not replayed) is not yet `fsync`ed.
    KillWindow,
    /// `marker-window`: abort right after the first acknowledgement that passes an evicted
    /// shape (the server confirmed it), before its rebuild starts.
    MarkerWindow,
    /// `power-loss` with `PG_PIPELINE_FAULT_AT_MS`: lose what was not synced, this long
    /// after the stream started.
    PowerLossAt(Duration),
    /// `power-loss-after-ack`: lose what was not synced, right after an acknowledgement the
    /// server confirmed.
    PowerLossAfterAck,
    /// `io-error`: the sync of consumer 1's 20th round fails.
    IoError,
}

impl Fault {
    /// From `PG_PIPELINE_FAULT` and `PG_PIPELINE_FAULT_AT_MS`.
    pub fn from_env() -> Result<Fault> {
        let at_ms = std::env::var("PG_PIPELINE_FAULT_AT_MS").ok();
        Ok(match std::env::var("PG_PIPELINE_FAULT").unwrap_or_default().as_str() {
            "" => Fault::None,
            "kill-window" => Fault::KillWindow,
            "marker-window" => Fault::MarkerWindow,
            "power-loss" => {
                let ms: u64 = at_ms
                    .context("PG_PIPELINE_FAULT=power-loss needs PG_PIPELINE_FAULT_AT_MS")?
                    .parse()
                    .context("PG_PIPELINE_FAULT_AT_MS")?;
                Fault::PowerLossAt(Duration::from_millis(ms))
            }
            "power-loss-after-ack" => Fault::PowerLossAfterAck,
            "io-error" => Fault::IoError,
            other => bail!(
                "PG_PIPELINE_FAULT={other}: expected kill-window, marker-window, power-loss, power-loss-after-ack or io-error"
            ),
        })
    }
    fn power_loss(self) -> bool {
        matches!(self, Fault::PowerLossAt(_) | Fault::PowerLossAfterAck)
    }
}

/// What the replication client needs of a connection string (libpq `key=value` or a
/// `postgresql://` URI, as `postgres::Config` parses them: quoted values, URIs, defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnParts {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub dbname: String,
}

pub fn parse_conn(conn: &str) -> Result<ConnParts> {
    let c: postgres::Config = conn.parse().context("connection string")?;
    let host = match c.get_hosts().first() {
        None => "localhost".to_string(),
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(postgres::config::Host::Unix(p)) => {
            bail!(
                "connection string: host {} is a Unix socket; the replication client needs TCP",
                p.display()
            )
        }
    };
    let user = match c.get_user() {
        Some(u) => u.to_string(),
        None => std::env::var("USER").unwrap_or_else(|_| "postgres".into()),
    };
    let password = match c.get_password() {
        Some(p) => {
            String::from_utf8(p.to_vec()).context("connection string: password is not UTF-8")?
        }
        None => String::new(),
    };
    Ok(ConnParts {
        host,
        port: c.get_ports().first().copied().unwrap_or(5432),
        dbname: c.get_dbname().map_or_else(|| user.clone(), str::to_string),
        user,
        password,
    })
}

/// One decoded transaction: its xid, commit, and lines per shape.
struct Txn {
    xid: u32,
    commit: u64,
    items: Vec<(ShapeKey, Bytes)>,
}

enum Route {
    Live {
        /// The shape's id, and its slot to prefetch when a row for it arrives: `track` finds
        /// the line (last written by the shape's consumer, on another core) already here.
        hint: TrackHint,
        consumer: usize,
        /// A rebuilt shape's snapshot, until the stream passes it: a transaction the snapshot
        /// already saw is skipped for this shape (the reader lags the server, so the snapshot
        /// can see transactions the stream has not delivered yet).
        filter: Option<Arc<Snapshot>>,
    },
    /// Waiting for its snapshot; streamed transactions that touch it are kept here.
    Rebuilding { buffer: Vec<Arc<Txn>> },
}

/// Statistics of the reader. `Relaxed`: they publish nothing.
#[derive(Default)]
struct ReaderStats {
    commits: AtomicU64,
    track_ns: AtomicU64,
    replayed: AtomicU64,
    reconnects: AtomicU64,
    keepalive_tracks: AtomicU64,
    /// Shape parts of transactions skipped because the shape's rebuild snapshot saw them.
    filtered: AtomicU64,
    /// Commits that waited for the consumers (`Reader::backpressure`).
    backpressure_waits: AtomicU64,
    hist: [AtomicU64; 4],
    hist_ns: [AtomicU64; 4],
}

const HISTORY: usize = 4096;

/// Shapes pending (not suspected) beyond which the reader waits for the consumers
/// (`Reader::backpressure`).
const MAX_IN_FLIGHT: usize = 4096;

/// A transaction's lines per shape, in first-touched order.
type ShapeLines = Vec<(ShapeKey, Vec<u8>)>;

/// The open transaction's lines, per shape in first-touched order, with an index: a
/// `TRUNCATE` touches every shape of its table (75,000 at 300,000 shapes), where a search of
/// the list for each shape would be quadratic.
#[derive(Default)]
struct OpenLines {
    items: ShapeLines,
    at: HashMap<ShapeKey, usize>,
}

struct Reader {
    o: RunOpts,
    tracker: FlushTracker<ShapeKey>,
    txs: Vec<Sender<Msg>>,
    healthy: Vec<bool>,
    next_consumer: usize,
    routes: Vec<Route>,
    /// Recent transactions, newest last (seeds a rebuild's buffer).
    history: VecDeque<Arc<Txn>>,
    /// relation id -> (table index, key column index), `None` for tables without shapes.
    relations: HashMap<u32, Option<(u16, usize)>>,
    /// The tracker's event queue, read only by `settle` (see there why not by a thread).
    events: Events<ShapeKey>,
    rebuild_tx: Sender<rebuild::Request>,
    rebuild_done: Receiver<Result<rebuild::Done>>,
    stats: Arc<ReaderStats>,
    counters: Arc<Counters>,
    /// The watermark last handed to the replication client.
    acked: u64,
    /// The open transaction: (xid, lines per shape in first-touched order).
    open: Option<(u32, OpenLines)>,
    fault_fired: bool,
    /// The server's WAL position when this process started: commits above it are streamed
    /// live, not replayed from before the start.
    live_from: u64,
    /// Commits above `live_from` so far.
    live_commits: u64,
    /// Death notices of consumers (`consumer.rs`).
    dead: Receiver<Dead>,
    /// `last_seen` when a shape was first evicted or went down: an acknowledgement at or past
    /// it passed that shape (for the marker-window fault).
    passed_evicted: Option<u64>,
    /// How many rebuild snapshots had transactions in progress.
    in_progress_snapshots: u64,
    dead_consumers: Vec<bool>,
    /// Snapshots copied, waiting for the stream to pass their `settled` position.
    settling: Vec<rebuild::Done>,
    /// A fault `ack` decided to fire (see `after_ack`), with the acknowledged watermark.
    fire_after_ack: Option<u64>,
    /// Live commits for the acknowledgement-lag probe.
    lag_tx: Option<Sender<crate::probe::Seen>>,
    /// Commits received after this are not measured (the wedge is near).
    lag_until: Option<Instant>,
    clock: quanta::Clock,
}

/// See `timed_track`.
const TRACK_CAP_NS: u64 = 20_000;

fn index(layout: &Layout, key: ShapeKey) -> usize {
    key.table as usize * layout.per_table as usize + key.k as usize
}

pub fn run(o: RunOpts) -> Result<()> {
    if o.consumers == 0 {
        bail!("--consumers must be at least 1");
    }
    cpu_interval(thread_cpu_ns()); // calibrate the CPU clock before the stream starts
    let layout = o.layout.clone();
    for t in 0..layout.tables.len() {
        fs::create_dir_all(layout.dir(&o.out, t as u16))?;
    }
    // Slot and publication, and where to resume: the slot's confirmed position.
    let mut sql =
        postgres::Client::connect(&o.conn, postgres::NoTls).context("connecting to PostgreSQL")?;
    ensure_slot(&mut sql, &o.slot, &o.publication, o.create_slot)?;
    let start: u64 = {
        let row = sql.query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&o.slot],
        )?;
        let s: String = row.get(0);
        Lsn::parse(&s).context("confirmed_flush_lsn")?.as_u64()
    };
    let live_from: u64 = {
        let s: String = sql
            .query_one("SELECT pg_current_wal_lsn()::text", &[])?
            .get(0);
        Lsn::parse(&s).context("pg_current_wal_lsn")?.as_u64()
    };
    drop(sql);
    if o.fault.power_loss() {
        files::simulate_power_loss();
    }
    // What an earlier process's log made durable goes to the shape files before anything
    // reads them (and before the markers are read: recovery may add one).
    crate::wal::recover(&layout, &o.out)?;
    if o.sync == crate::consumer::SyncMode::Log {
        if !crate::wal::probe_xattrs(&o.out)? {
            log!("start: {} keeps no extended attributes: consumers create shape files at their first change", o.out.display());
        }
        crate::wal::prepare_spares(&o.out, 2 * o.consumers)?;
    }

    let tracker: FlushTracker<ShapeKey> = FlushTracker::new(
        Config::default()
            .start_at(start)
            .grace(o.grace)
            .challenge(o.challenge)
            .scan_interval(o.scan_interval)
            .stall_policy(o.policy),
    )?;

    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let wedge = Arc::new(Wedge {
        shape: o.wedge_shape,
        any: o.wedge_any,
        at: OnceLock::new(),
        fired: AtomicBool::new(false),
    });
    // One descriptor per shape file where the process may have that many (1,024 kept for
    // everything else); the consumers share them.
    let nofile = crate::probe::raise_nofile(layout.count() as u64 + 4096);
    let fd_budget = (nofile.saturating_sub(1024) as usize) / o.consumers;
    if fd_budget * o.consumers < layout.count() {
        log!(
            "start: RLIMIT_NOFILE is {nofile}: {} files kept open, the others opened per round",
            fd_budget * o.consumers
        );
    }
    let mut txs = Vec::with_capacity(o.consumers);
    let mut consumers = Vec::with_capacity(o.consumers);
    let (dead_tx, dead_rx) = channel::unbounded();
    let (behind_tx, behind) = if o.sync == crate::consumer::SyncMode::Log {
        let (b, h) = crate::wal::spawn_writer(layout.clone(), o.out.clone())?;
        (Some(b), Some(h))
    } else {
        (None, None)
    };
    for i in 0..o.consumers {
        let (tx, rx) = channel::unbounded();
        txs.push(tx);
        let c = Consumer {
            index: i,
            rx,
            fsync_interval: o.fsync_interval,
            sync: o.sync,
            wedge: wedge.clone(),
            stop: stop.clone(),
            counters: counters.clone(),
            layout: layout.clone(),
            out: o.out.clone(),
            dead: dead_tx.clone(),
            fail_at_round: (o.fault == Fault::IoError && i == 1).then_some(20),
            fd_budget,
            behind: behind_tx.clone(),
        };
        consumers.push(
            thread::Builder::new()
                .name(format!("consumer-{i}"))
                .spawn(move || c.run())?,
        );
    }
    drop(dead_tx);
    drop(behind_tx);

    // Every shape is registered up front, except those whose marker says "rebuild me".
    let mut routes = Vec::with_capacity(layout.count());
    let mut invalid = Vec::new();
    let marked = rebuild::invalid_markers(&layout, &o.out)?;
    for (n, key) in layout.keys().enumerate() {
        if marked.contains(&key) {
            invalid.push(key);
            routes.push(Route::Rebuilding { buffer: Vec::new() });
            continue;
        }
        let consumer = n % o.consumers;
        let writer = tracker.register(key)?;
        let hint = writer.track_hint();
        txs[consumer]
            .send(Msg::Adopt {
                key,
                writer,
                path: layout.path(&o.out, key),
                rebuild: None,
            })
            .map_err(|_| anyhow::anyhow!("consumer {consumer} is gone"))?;
        routes.push(Route::Live {
            hint,
            consumer,
            filter: None,
        });
    }
    // Every consumer has its files open before the stream starts.
    let (ready_tx, ready_rx) = channel::bounded(o.consumers);
    for tx in &txs {
        let _ = tx.send(Msg::Ready(ready_tx.clone()));
    }
    for _ in 0..o.consumers {
        ready_rx
            .recv_timeout(Duration::from_secs(300))
            .context("waiting for the consumers to open their files")?;
    }
    let scanner = tracker.spawn_scanner()?;
    log!(
        "start: slot={} publication={} resuming after {} shapes={} ({} tables x {}) consumers={} policy={:?} grace={:?} challenge={:?}{}",
        o.slot,
        o.publication,
        Lsn(start),
        layout.count(),
        layout.tables.len(),
        layout.per_table,
        o.consumers,
        o.policy,
        o.grace,
        o.challenge,
        if invalid.is_empty() { String::new() } else { format!(" rebuilding {} invalid shape(s)", invalid.len()) }
    );

    let (rb_tx, rb_rx) = channel::unbounded();
    let (done_tx, done_rx) = channel::unbounded();
    {
        let (conn, layout, out) = (o.conn.clone(), layout.clone(), o.out.clone());
        thread::Builder::new()
            .name("rebuild".into())
            .spawn(move || rebuild::worker(conn, layout, out, rb_rx, done_tx))?;
    }
    if !invalid.is_empty() {
        let _ = rb_tx.send(rebuild::Request {
            keys: invalid.clone(),
        });
    }

    let stats = Arc::new(ReaderStats::default());
    let mut reader = Reader {
        o: o.clone(),
        tracker: tracker.clone(),
        healthy: vec![true; o.consumers],
        next_consumer: 0,
        txs,
        routes,
        history: VecDeque::with_capacity(HISTORY),
        relations: HashMap::new(),
        events: tracker.events(),
        rebuild_tx: rb_tx,
        rebuild_done: done_rx,
        stats: stats.clone(),
        counters: counters.clone(),
        acked: start,
        open: None,
        fault_fired: false,
        live_from,
        live_commits: 0,
        dead: dead_rx,
        passed_evicted: None,
        in_progress_snapshots: 0,
        dead_consumers: vec![false; o.consumers],
        settling: Vec::new(),
        fire_after_ack: None,
        lag_tx: None,
        lag_until: None,
        clock: quanta::Clock::new(),
    };
    if let Some(n) = (!invalid.is_empty()).then_some(invalid.len()) {
        // Shapes whose rebuild a crash interrupted are rebuilt before the stream starts: the
        // stream then starts behind their snapshots, and the filter skips what they saw.
        let done = reader
            .rebuild_done
            .recv_timeout(Duration::from_secs(300))
            .context("waiting for the start-up rebuilds")??;
        log!("start: {n} shape(s) rebuilt from a snapshot before streaming");
        reader.finish_rebuild(done)?;
    }
    if let Fault::PowerLossAt(after) = o.fault {
        // Counted from here: the start-up (files opened, interrupted rebuilds done) is over.
        thread::Builder::new()
            .name("power-loss".into())
            .spawn(move || {
                thread::sleep(after);
                files::power_loss(&format!(
                    "{} ms after the stream started",
                    after.as_millis()
                ));
            })?;
    }
    // Start-up is over: the wedge counts from here, and so does the lag measurement.
    let stream_start = Instant::now();
    // The CPU the start-up took (opening every file) is no part of the stream's, nor are the
    // scans made meanwhile: the tracker's share is over the same interval as the stream's CPU.
    let cpu_at_start = process_cpu_ns();
    let scanner_at_start = scanner_cpu_ns();
    let _ = wedge.at.set(stream_start + o.wedge_after);
    if o.wedge_shape.is_some() {
        // Commits received later than 1 s before the wedge may wait for its eviction: their
        // lag measures detection, not the pipeline.
        reader.lag_until = (stream_start + o.wedge_after).checked_sub(Duration::from_secs(1));
    }
    crate::probe::stop_on_sigterm();
    let probes_stop = Arc::new(AtomicBool::new(false));
    let sampler = crate::probe::scan_sampler(
        tracker.clone(),
        o.wedge_shape.is_some(),
        probes_stop.clone(),
    );
    let lag_probe = o.ack_lag.then(|| {
        let (tx, rx) = channel::unbounded();
        reader.lag_tx = Some(tx);
        crate::probe::ack_lag(o.conn.clone(), o.slot.clone(), rx, probes_stop.clone())
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let result = rt.block_on(reader.stream(start));
    let elapsed = started.elapsed();
    reader.lag_tx = None;
    probes_stop.store(true, Ordering::Relaxed); // Relaxed: a stop request; the joins synchronize.
    let mut scans = sampler.join().unwrap_or_default();
    let mut lags = match lag_probe.map(|h| h.join()) {
        None => Default::default(),
        Some(Ok(Ok(v))) => v,
        Some(Ok(Err(e))) => {
            log!("ack-lag probe failed: {e:#}");
            Default::default()
        }
        Some(Err(_)) => Default::default(),
    };
    let q = crate::probe::quantile_ms;
    log!(
        "measured: ack_lag_n={} ack_lag_p50_ms={:.2} ack_lag_p99_ms={:.2} ack_lag_max_ms={:.2} received_p50_ms={:.2} received_p99_ms={:.2} after_receipt_p50_ms={:.2} after_receipt_p99_ms={:.2} scan_n={} scan_p50_ms={:.3} scan_p99_ms={:.3} scan_max_ms={:.3} rss_hwm_kb={} shapes={}",
        lags.whole.len(),
        q(&mut lags.whole, 0.5, 1e3),
        q(&mut lags.whole, 0.99, 1e3),
        q(&mut lags.whole, 1.0, 1e3),
        q(&mut lags.received, 0.5, 1e3),
        q(&mut lags.received, 0.99, 1e3),
        q(&mut lags.after_receipt, 0.5, 1e3),
        q(&mut lags.after_receipt, 0.99, 1e3),
        scans.len(),
        q(&mut scans, 0.5, 1.0),
        q(&mut scans, 0.99, 1.0),
        q(&mut scans, 1.0, 1.0),
        crate::probe::peak_rss_kb(),
        layout.count(),
    );

    // Shut down: consumers drain and flush, then report.
    stop.store(true, Ordering::Relaxed); // Relaxed: a stop request; the joins synchronize.
    drop(reader.txs);
    for c in consumers {
        let _ = c.join();
    }
    // The stream's CPU: what the write-behind does after it (below) is not part of it.
    let cpu = process_cpu_ns();
    let scanner_ns = scanner_cpu_ns().saturating_sub(scanner_at_start);
    if let Some(h) = behind {
        // The consumers handed over their last segments: the shape files catch up with the
        // log before the process ends (a crash instead would leave it to the next recovery).
        let t = Instant::now();
        match h.join() {
            Ok(a) => log!(
                "write-behind: {} segment(s), {} record(s) ({} bytes) written to shape files, {} stale; drained {:.3}s after the consumers stopped",
                a.segments,
                a.written,
                a.bytes,
                a.stale,
                t.elapsed().as_secs_f64()
            ),
            Err(_) => log!("write-behind: the thread panicked; its segments stay for the next recovery"),
        }
    }
    drop(scanner);
    let (track_ns, flushed_ns) = (
        stats.track_ns.load(Ordering::Relaxed),
        counters.flushed_ns.load(Ordering::Relaxed),
    );
    log!(
        "track calls by duration (<0.5us, <2us, <20us, longer, counted as 20us): {:?} calls, {:?} ns",
        stats.hist,
        stats.hist_ns
    );
    log!(
        "done: commits={} filtered={} backpressure_waits={} secs={:.3} track_ns={} flushed_ns={} scanner_ns={} process_cpu_ns={} stream_cpu_ns={} reconnects={} replayed={} fsyncs={} rounds={} rebuilt={} rows={} scanner_startup_ns={}",
        stats.commits.load(Ordering::Relaxed),
        stats.filtered.load(Ordering::Relaxed),
        stats.backpressure_waits.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
        track_ns,
        flushed_ns,
        scanner_ns,
        cpu,
        cpu.saturating_sub(cpu_at_start),
        stats.reconnects.load(Ordering::Relaxed),
        stats.replayed.load(Ordering::Relaxed),
        counters.fsyncs.load(Ordering::Relaxed),
        counters.rounds.load(Ordering::Relaxed),
        counters.rebuilt.load(Ordering::Relaxed),
        counters.rows.load(Ordering::Relaxed),
        scanner_at_start,
    );
    result
}

/// Checks that `slot` is a logical `pgoutput` slot and that the publication exists.
fn ensure_slot(
    client: &mut postgres::Client,
    slot: &str,
    publication: &str,
    create: bool,
) -> Result<()> {
    if client
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )?
        .is_none()
    {
        bail!("no publication {publication}: CREATE PUBLICATION {publication} FOR TABLE ...");
    }
    let row = client.query_opt(
        "SELECT plugin::text FROM pg_replication_slots WHERE slot_name = $1",
        &[&slot],
    )?;
    match row {
        Some(row) => {
            let plugin: Option<String> = row.get(0);
            if plugin.as_deref() != Some("pgoutput") {
                bail!("slot {slot} uses plugin {plugin:?}; pg-pipeline streams pgoutput");
            }
            Ok(())
        }
        None if create => {
            client.query_one(
                "SELECT 1 FROM pg_create_logical_replication_slot($1, 'pgoutput')",
                &[&slot],
            )?;
            log!("start: created slot {slot} (pgoutput)");
            Ok(())
        }
        None => bail!("no replication slot {slot}; create it or pass --create-slot"),
    }
}

impl Reader {
    async fn stream(&mut self, start: u64) -> Result<()> {
        let parts = parse_conn(&self.o.conn)?;
        let started = Instant::now();
        let mut backoff = Duration::from_millis(100);
        let mut last_status = Instant::now();
        let mut first_event: Option<Instant> = None;
        loop {
            let cfg = ReplicationConfig::new(
                parts.host.clone(),
                parts.user.clone(),
                parts.password.clone(),
                parts.dbname.clone(),
                self.o.slot.clone(),
                self.o.publication.clone(),
            )
            .with_port(parts.port)
            // The server resumes from the slot's confirmed position whatever we ask for.
            .with_start_lsn(Lsn::from_u64(self.acked.max(start)))
            .with_ack_lsn(Lsn::from_u64(self.acked))
            .with_status_interval(self.o.ack_interval)
            .with_wakeup_interval(Duration::from_secs(1))
            .with_application_name(format!("pg-pipeline-{}", self.o.slot));
            let mut client = match ReplicationClient::connect(cfg).await {
                Ok(c) => c,
                Err(e) => {
                    self.reconnect_wait(&format!("connect: {e}"), &mut backoff)
                        .await;
                    continue;
                }
            };
            if let Err(e) = client.wait_started().await {
                self.reconnect_wait(&format!("start: {e}"), &mut backoff)
                    .await;
                continue;
            }
            log!("stream: started at {}", Lsn(self.acked.max(start)));
            let mut tick = tokio::time::interval(self.o.ack_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let outcome: Result<bool> = loop {
                tokio::select! {
                    biased;
                    _ = tick.tick() => {
                        self.housekeeping(&client)?;
                        if let Some(w) = self.fire_after_ack.take() {
                            self.after_ack(w).await?;
                        }
                        if last_status.elapsed() >= self.o.status_interval {
                            last_status = Instant::now();
                            self.log_status();
                        }
                        // Relaxed: a stop request (SIGTERM).
                        if self.o.duration.is_some_and(|d| started.elapsed() >= d)
                            || crate::probe::TERM.load(Ordering::Relaxed)
                        {
                            break Ok(true);
                        }
                        if let Some(until) = self.o.until {
                            if self.tracker.watermark() >= until {
                                let secs = first_event.map_or(0.0, |t| t.elapsed().as_secs_f64());
                                log!("until: every commit up to {} durable and acknowledged, {secs:.3}s after the first event", Lsn(until));
                                break Ok(true);
                            }
                        }
                    }
                    ev = client.recv() => match ev {
                        Ok(Some(ev)) => {
                            first_event.get_or_insert_with(Instant::now);
                            if let Err(e) = self.event(ev, &client).await {
                                break Err(e);
                            }
                        }
                        Ok(None) => break Ok(false),
                        Err(e) => {
                            log!("stream: {e}");
                            break Ok(false);
                        }
                    }
                }
            };
            match outcome {
                Ok(true) => {
                    // Stop: let the consumers' last round land, acknowledge, then close.
                    let (tracker, target) = (self.tracker.clone(), self.tracker.last_seen());
                    let w = tokio::task::spawn_blocking(move || {
                        tracker.wait_watermark(target, Duration::from_secs(2))
                    })
                    .await?;
                    self.settle()?;
                    self.ack(w, &client);
                    tokio::time::sleep(self.o.ack_interval * 2).await;
                    log!("ack: final {}", Lsn(w));
                    let _ = client.shutdown().await;
                    return Ok(());
                }
                Ok(false) => {
                    self.open = None;
                    client.abort();
                    self.reconnect_wait("stream ended", &mut backoff).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn reconnect_wait(&mut self, why: &str, backoff: &mut Duration) {
        let n = self.stats.reconnects.fetch_add(1, Ordering::Relaxed) + 1;
        log!("reconnect: #{n} in {:?} ({why})", *backoff);
        tokio::time::sleep(*backoff).await;
        *backoff = (*backoff * 2).min(Duration::from_secs(2));
    }

    /// Periodic work: acknowledge (after `settle`), start and finish rebuilds.
    fn housekeeping(&mut self, client: &ReplicationClient) -> Result<()> {
        let w = self.tracker.watermark();
        self.settle()?;
        self.ack(w, client);
        if self.o.fault == Fault::MarkerWindow {
            // The fault crashes after an acknowledgement passes an ended shape and before its
            // rebuild: none completes meanwhile.
            return Ok(());
        }
        while let Ok(done) = self.rebuild_done.try_recv() {
            match done {
                Ok(done) => self.settling.push(done),
                Err(e) => {
                    // Ask again; the shape keeps buffering meanwhile.
                    log!("rebuild: failed, retrying: {e:#}");
                    let keys: Vec<ShapeKey> = self
                        .o
                        .layout
                        .keys()
                        .filter(|k| {
                            matches!(
                                self.routes[index(&self.o.layout, *k)],
                                Route::Rebuilding { .. }
                            )
                        })
                        .collect();
                    let _ = self.rebuild_tx.send(rebuild::Request { keys });
                }
            }
        }
        // A snapshot's rebuild completes once the stream has passed the position where its
        // transactions in progress had ended: the buffer then holds every one of them.
        let last_seen = self.tracker.last_seen();
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.settling)
            .into_iter()
            .partition(|d| last_seen >= d.settled);
        self.settling = waiting;
        for done in ready {
            self.finish_rebuild(done)?;
        }
        Ok(())
    }

    /// Hands `w` (read *before* the `settle` that preceded this call) to the replication
    /// client.
    fn ack(&mut self, w: u64, client: &ReplicationClient) {
        if w <= self.acked {
            return;
        }
        client.update_applied_lsn(Lsn::from_u64(w));
        self.acked = w;
        let fire = match self.o.fault {
            _ if self.fault_fired => false,
            Fault::MarkerWindow => self.passed_evicted.is_some_and(|p| w >= p),
            Fault::PowerLossAfterAck => self.live_commits > self.o.fault_after_commits,
            _ => false,
        };
        if fire {
            self.fault_fired = true;
            self.fire_after_ack = Some(w);
        }
    }

    /// Takes every shape that no longer counts in the watermark out of its route, its rebuild
    /// marker durable, and asks for its rebuild. Called between reading a watermark and
    /// acknowledging it, so no acknowledgement passes a shape that ended before its marker is
    /// durable. In this pipeline a shape ends in one of two ways, and both are seen here
    /// without looking at the shapes that did not change:
    /// - **eviction**: the scan queues `Stalled { evicted: true }` before it publishes the
    ///   watermark that leaves the shape out (both inside one scan: the event is pushed to the
    ///   tracker's channel, then the watermark is stored with `Release`; `watermark()` loads
    ///   it with `Acquire`). So the events drained below hold the eviction of every shape the
    ///   watermark read before this call has passed. That is why this queue is read here, on
    ///   the reader, and by nothing else: a thread forwarding the events could still hold one.
    /// - **its consumer died**: it marks its shapes, sends its death notice and only then lets
    ///   its writers go, so the notice is in `dead` before any watermark passes them.
    ///
    /// (This used to sweep every route asking `tracker.id_of` for each: O(shapes) on every
    /// acknowledgement, every 20-100 ms; `tracker-mem` times that sweep at 16-69 ms at 100,000
    /// shapes and 115-406 ms at 300,000 on a loaded 2-core machine. Now the cost is
    /// O(events), and a sweep of the routes runs only once per consumer death.)
    fn settle(&mut self) -> Result<()> {
        let layout = self.o.layout.clone();
        let mut ended: Vec<ShapeKey> = Vec::new();
        let mut marked: HashSet<ShapeKey> = HashSet::new();
        let mut newly_dead = Vec::new();
        while let Ok(d) = self.dead.try_recv() {
            if !self.dead_consumers[d.consumer] {
                log!(
                    "rebuild: consumer {} is dead; its shapes are rebuilt elsewhere",
                    d.consumer
                );
                newly_dead.push(d.consumer);
            }
            self.healthy[d.consumer] = false;
            self.dead_consumers[d.consumer] = true;
            marked.extend(d.marked);
        }
        while let Ok(event) = self.events.try_recv() {
            if let Some(key) = log_event(event) {
                ended.push(key);
            }
        }
        if !newly_dead.is_empty() {
            for (i, key) in layout.keys().enumerate() {
                if let Route::Live { consumer, .. } = &self.routes[i] {
                    if newly_dead.contains(consumer) {
                        ended.push(key);
                    }
                }
            }
        }
        // Shapes handed to a consumer after its death come back in `marked` (it marks and
        // drops them); they are routed to it, so they end here too.
        ended.extend(marked.iter().copied().filter(|k| {
            matches!(self.routes[index(&layout, *k)], Route::Live { consumer, .. } if self.dead_consumers[consumer])
        }));
        ended.sort_unstable();
        ended.dedup();
        ended.retain(|k| matches!(self.routes[index(&layout, *k)], Route::Live { .. }));
        if ended.is_empty() {
            return Ok(());
        }
        let unmarked: Vec<ShapeKey> = ended
            .iter()
            .filter(|k| !marked.contains(k))
            .copied()
            .collect();
        rebuild::mark_invalid(&layout, &self.o.out, &unmarked)?;
        // Each of them was sent nothing beyond what `track` has seen so far.
        self.passed_evicted.get_or_insert(self.tracker.last_seen());
        // Their recent transactions, in one pass over the history (not one per shape).
        let wanted: HashSet<ShapeKey> = ended.iter().copied().collect();
        let mut recent: HashMap<ShapeKey, Vec<Arc<Txn>>> = HashMap::new();
        for t in &self.history {
            for (k, _) in &t.items {
                if wanted.contains(k) {
                    let v = recent.entry(*k).or_default();
                    // A transaction's items name each shape once.
                    v.push(t.clone());
                }
            }
        }
        for key in &ended {
            self.start_rebuild(*key, recent.remove(key).unwrap_or_default());
        }
        log!(
            "rebuild: {} shape(s) marked ({} by their dead consumer); snapshot requested",
            ended.len(),
            ended.len() - unmarked.len()
        );
        let _ = self.rebuild_tx.send(rebuild::Request { keys: ended });
        Ok(())
    }

    /// Moves a shape whose marker is durable to `Rebuilding`, its buffer seeded with its
    /// `recent` transactions (from the history, oldest first).
    fn start_rebuild(&mut self, key: ShapeKey, recent: Vec<Arc<Txn>>) {
        let i = index(&self.o.layout, key);
        let Route::Live { consumer, .. } = self.routes[i] else {
            return; // already rebuilding
        };
        // Presumed wedged (or gone): give it nothing new.
        self.healthy[consumer] = false;
        let buffer = recent;
        log!(
            "rebuild: {key} leaves consumer {consumer} ({} recent transactions kept)",
            buffer.len()
        );
        self.routes[i] = Route::Rebuilding { buffer };
    }

    /// The faults that fire right after an acknowledgement (`ack` decided), once the server
    /// has it as the slot's `confirmed_flush_lsn`.
    // The power-loss gate is held across the wait on purpose: the consumers (threads, not
    // tasks) must stay stopped until the cut; nothing on this runtime takes it.
    #[allow(clippy::await_holding_lock)]
    async fn after_ack(&mut self, w: u64) -> Result<()> {
        match self.o.fault {
            Fault::MarkerWindow => {
                let confirmed = self.wait_confirmed(w).await?;
                log!(
                    "fault: marker window: acknowledged {} (server confirmed_flush_lsn {}), past the shape(s) that ended at or before {}; aborting before their rebuild",
                    Lsn(w),
                    Lsn(confirmed),
                    Lsn(self.passed_evicted.unwrap_or(0))
                );
                std::process::abort();
            }
            Fault::PowerLossAfterAck => {
                // The power goes now; the acknowledgement is already on its way.
                let gate = files::freeze();
                let confirmed = self.wait_confirmed(w).await?;
                files::power_loss_frozen(
                    gate,
                    &format!(
                        "right after acknowledging {} (server confirmed_flush_lsn {})",
                        Lsn(w),
                        Lsn(confirmed)
                    ),
                );
            }
            _ => Ok(()),
        }
    }

    /// Waits (up to 20 s) until the server has at least `w` as the slot's
    /// `confirmed_flush_lsn`; returns what it has.
    async fn wait_confirmed(&self, w: u64) -> Result<u64> {
        let (conn, slot) = (self.o.conn.clone(), self.o.slot.clone());
        tokio::task::spawn_blocking(move || -> Result<u64> {
            let mut c = postgres::Client::connect(&conn, postgres::NoTls)?;
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let s: String = c
                    .query_one("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", &[&slot])?
                    .get(0);
                let got = Lsn::parse(&s).map_or(0, Lsn::as_u64);
                if got >= w || Instant::now() >= deadline {
                    return Ok(got);
                }
                thread::sleep(Duration::from_millis(10));
            }
        })
        .await?
    }

    fn finish_rebuild(&mut self, done: rebuild::Done) -> Result<()> {
        let snap: Arc<Snapshot> = Arc::new(done.snapshot);
        if !snap.xip.is_empty() {
            self.in_progress_snapshots += 1;
        }
        let mut xip: Vec<u64> = snap.xip.iter().copied().collect();
        xip.sort_unstable();
        log!(
            "rebuild: snapshot xmin={} xmax={} in-progress={} {xip:?} copied {} row(s) for {} shape(s)",
            snap.xmin,
            snap.xmax,
            xip.len(),
            done.rows,
            done.files.len()
        );
        for (key, tmp) in done.files {
            let i = index(&self.o.layout, key);
            let Route::Rebuilding { buffer } = &self.routes[i] else {
                continue;
            };
            let mut catch_up = Vec::new();
            let (mut applied, mut seen) = (0, 0);
            for t in buffer {
                if snap.sees(t.xid) {
                    seen += 1;
                    continue;
                }
                applied += 1;
                for (k, lines) in &t.items {
                    if *k == key {
                        catch_up.extend_from_slice(lines);
                    }
                }
            }
            let Some(consumer) = self.pick_consumer() else {
                bail!("no healthy consumer left");
            };
            // The evicted key is free once the eviction is complete.
            let mut tries = 0;
            let writer = loop {
                match self.tracker.register(key) {
                    Ok(w) => break w,
                    Err(FwError::DuplicateShape) if tries < 1000 => {
                        tries += 1;
                        thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => return Err(e).with_context(|| format!("registering {key}")),
                }
            };
            let hint = writer.track_hint();
            self.txs[consumer]
                .send(Msg::Adopt {
                    key,
                    writer,
                    path: self.o.layout.path(&self.o.out, key),
                    rebuild: Some(Rebuilt {
                        tmp,
                        marker: self.o.layout.invalid_marker(&self.o.out, key),
                        catch_up,
                    }),
                })
                .map_err(|_| anyhow::anyhow!("consumer {consumer} is gone"))?;
            self.routes[i] = Route::Live {
                hint,
                consumer,
                // Transactions committing after the snapshot's WAL position are invisible to
                // it by construction; the filter is needed only up to there.
                filter: Some(snap.clone()),
            };
            self.counters.rebuilt.fetch_add(1, Ordering::Relaxed);
            log!(
                "rebuild: done {key} on consumer {consumer}: snapshot xmin={} xmax={} in-progress={}, {applied} streamed transaction(s) applied, {seen} seen by the snapshot",
                snap.xmin,
                snap.xmax,
                snap.xip.len()
            );
        }
        Ok(())
    }

    fn pick_consumer(&mut self) -> Option<usize> {
        let n = self.healthy.len();
        let c = (0..n)
            .map(|k| (self.next_consumer + k) % n)
            .find(|&c| self.healthy[c])?;
        self.next_consumer = (c + 1) % n;
        Some(c)
    }

    async fn event(&mut self, ev: ReplicationEvent, client: &ReplicationClient) -> Result<()> {
        match ev {
            ReplicationEvent::Begin { xid, .. } => self.open = Some((xid, OpenLines::default())),
            ReplicationEvent::XLogData { data, .. } => self.xlog(&data)?,
            ReplicationEvent::Commit {
                end_lsn,
                commit_time_micros,
                ..
            } => {
                let commit = end_lsn.as_u64();
                let Some((xid, OpenLines { items, .. })) = self.open.take() else {
                    bail!("commit {} without begin", Lsn(commit));
                };
                if let Some(tx) = &self.lag_tx {
                    if commit > self.live_from
                        && commit > self.tracker.last_seen()
                        && self.lag_until.is_none_or(|u| Instant::now() < u)
                    {
                        let _ = tx.send((
                            commit,
                            crate::probe::pg_to_unix_us(commit_time_micros),
                            crate::probe::now_unix_us(),
                        ));
                    }
                }
                self.commit(xid, commit, items, client).await?;
            }
            ReplicationEvent::KeepAlive {
                wal_end,
                reply_requested,
                ..
            } => {
                // Outside a transaction, everything before wal_end has been sent: a position
                // with nothing (more) for any shape.
                let pos = wal_end.as_u64();
                if self.open.is_none() && pos > self.tracker.last_seen() {
                    self.timed_track(pos, &[])?;
                    self.stats.keepalive_tracks.fetch_add(1, Ordering::Relaxed);
                }
                if reply_requested {
                    self.housekeeping(client)?;
                }
            }
            // Logical messages and the end of a bounded replay: nothing to route.
            _ => {}
        }
        Ok(())
    }

    fn xlog(&mut self, data: &[u8]) -> Result<()> {
        let msg = pgoutput::decode(data)?;
        match msg {
            Message::Relation(r) => {
                let route = self.o.layout.table_index(&r.qualified()).map(|t| {
                    let kc = r
                        .columns
                        .iter()
                        .position(|c| *c == self.o.layout.key_column);
                    (t, kc)
                });
                let entry = match route {
                    Some((t, Some(kc))) => Some((t, kc)),
                    Some((_, None)) => bail!(
                        "{} has no column {}",
                        r.qualified(),
                        self.o.layout.key_column
                    ),
                    None => None,
                };
                self.relations.insert(r.id, entry);
                Ok(())
            }
            Message::Insert { rel, new } => self.change(rel, b'I', &new),
            Message::Update { rel, old, new } => {
                // A key that changed moves the row to another shape: gone from the old one.
                if let (Some(old), Some(Some((_, kc)))) = (&old, self.relations.get(&rel)) {
                    let (a, b) = (
                        old.get(*kc).and_then(pgoutput::int_value),
                        new.get(*kc).and_then(pgoutput::int_value),
                    );
                    if a.is_some() && a != b {
                        self.change(rel, b'D', old)?;
                    }
                }
                self.change(rel, b'U', &new)
            }
            Message::Delete { rel, old } => self.change(rel, b'D', &old),
            Message::Truncate { rels } => {
                // Every shape of each truncated table loses all its rows: one `T` line each.
                for rel in rels {
                    let Some(route) = self.relations.get(&rel) else {
                        bail!("truncate of relation {rel} before its Relation message");
                    };
                    let Some((table, _)) = *route else { continue };
                    let Some((_, items)) = self.open.as_mut() else {
                        bail!("truncate outside a transaction");
                    };
                    for k in 0..self.o.layout.per_table {
                        let shape = ShapeKey { table, k };
                        let buf = shape_lines(items, shape);
                        crate::shapes::push_line(buf, Some(PLACEHOLDER), b'T', 0, &[]);
                    }
                    log!(
                        "stream: TRUNCATE of {} ({} shapes emptied)",
                        self.o.layout.tables[table as usize],
                        self.o.layout.per_table
                    );
                }
                Ok(())
            }
            Message::Other(_) => Ok(()),
        }
    }

    /// One row change (`I`, `U`, `D`) into its shape's lines of the open transaction.
    fn change(&mut self, rel: u32, op: u8, tuple: &[Value<'_>]) -> Result<()> {
        let Some(route) = self.relations.get(&rel) else {
            bail!("change for relation {rel} before its Relation message");
        };
        let Some((table, kc)) = *route else {
            return Ok(()); // a published table without shapes
        };
        let Some(key) = tuple.get(kc).and_then(pgoutput::int_value) else {
            bail!("row without an integer {}", self.o.layout.key_column);
        };
        let shape = self.o.layout.shape_of(table, key);
        if let Route::Live { hint, .. } = &self.routes[index(&self.o.layout, shape)] {
            hint.prefetch();
        }
        // A delete carries only the key (replica identity): no payload.
        let mut cols: Vec<Option<&[u8]>> = Vec::with_capacity(tuple.len());
        if op != b'D' {
            for (i, v) in tuple.iter().enumerate() {
                if i == kc {
                    continue;
                }
                cols.push(match v {
                    Value::Text(t) | Value::Binary(t) => Some(*t),
                    Value::Null => None,
                    // The value is not in the message: writing anything would be a guess.
                    Value::Unchanged => bail!(
                        "{}: an update left a TOASTed column unchanged and pgoutput did not send it; pg-pipeline writes whole rows and cannot complete it",
                        self.o.layout.tables[table as usize]
                    ),
                });
            }
        }
        let Some((_, items)) = self.open.as_mut() else {
            bail!("change outside a transaction");
        };
        // The commit position is not known before the Commit message: a placeholder the
        // commit fills in (16 hex digits, rewritten in place).
        crate::shapes::push_line(shape_lines(items, shape), Some(PLACEHOLDER), op, key, &cols);
        self.counters.rows.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// `track`, timed; returns the commit tracked just before (`Tracked::previous`).
    fn timed_track(&self, commit: u64, ids: &[ShapeId]) -> Result<u64> {
        // Wall time inside the call, each call counted at most TRACK_CAP: a longer one was
        // preempted (off the CPU), which a CPU share must not count. (A per-thread CPU clock
        // is a system call here, dearer than `track` itself, and it also charges the
        // interrupts that hit the thread meanwhile.)
        // The TSC through quanta (the clock flushwatch itself uses): a few ns per read.
        let t = self.clock.raw();
        let r = self.tracker.track(commit, ids);
        let raw = self.clock.delta_as_nanos(t, self.clock.raw());
        let spent = raw.min(TRACK_CAP_NS);
        self.stats.track_ns.fetch_add(spent, Ordering::Relaxed);
        let b = match raw {
            0..=499 => 0,
            500..=1999 => 1,
            2000..=19999 => 2,
            _ => 3,
        };
        self.stats.hist[b].fetch_add(1, Ordering::Relaxed);
        self.stats.hist_ns[b].fetch_add(spent, Ordering::Relaxed);
        let tracked = r.with_context(|| format!("tracking {}", Lsn(commit)))?;
        Ok(tracked.previous)
    }

    async fn commit(
        &mut self,
        xid: u32,
        commit: u64,
        items: Vec<(ShapeKey, Vec<u8>)>,
        client: &ReplicationClient,
    ) -> Result<()> {
        if commit <= self.tracker.last_seen() {
            // Replayed after a reconnect: already handed to the consumers by this process.
            self.stats.replayed.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        if !items.is_empty() {
            self.backpressure(client).await?;
        }
        let items = items
            .into_iter()
            .map(|(k, mut lines)| {
                fill_commit(&mut lines, commit);
                (k, Bytes::from(lines))
            })
            .collect();
        let txn = Arc::new(Txn { xid, commit, items });
        let mut ids = Vec::with_capacity(txn.items.len());
        let mut caught_up_shape = None;
        // Per item: the consumer to send it to (None: rebuilding, or seen by its snapshot).
        let mut to = Vec::with_capacity(txn.items.len());
        for (key, _) in &txn.items {
            let mut dest = None;
            match &mut self.routes[index(&self.o.layout, *key)] {
                Route::Live {
                    hint,
                    consumer,
                    filter,
                } => {
                    if let Some(f) = filter {
                        if commit > f.lsn {
                            *filter = None;
                        } else if f.sees(xid) {
                            self.stats.filtered.fetch_add(1, Ordering::Relaxed);
                            to.push(None);
                            continue;
                        }
                    }
                    dest = Some(*consumer);
                    ids.push(hint.id());
                    if self.o.fault == Fault::KillWindow
                        && !self.fault_fired
                        && caught_up_shape.is_none()
                        && self.tracker.status(key).is_some_and(|s| !s.pending)
                    {
                        caught_up_shape = Some(*key);
                    }
                }
                Route::Rebuilding { buffer } => buffer.push(txn.clone()),
            }
            to.push(dest);
        }
        // `track` first, so that a consumer never reports a commit the tracker has not seen.
        // The commit tracked just before: what a consumer that wrote only part of this one
        // would report (never computed from `commit`: positions are sparse).
        let previous = self.timed_track(commit, &ids)?;
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        if commit > self.live_from {
            self.live_commits += 1;
        }
        // The kill window: only live (the start-up replay is over), and only where the
        // acknowledgement to come (`previous`) is ahead of the last one, so that the server's
        // position shows whether it was sent.
        let hold = self.o.fault == Fault::KillWindow
            && !self.fault_fired
            && caught_up_shape.is_some()
            && self.live_commits > self.o.fault_after_commits
            && previous > self.acked;
        let mut per: Vec<Vec<(ShapeKey, Bytes)>> = vec![Vec::new(); self.txs.len()];
        for ((key, lines), dest) in txn.items.iter().zip(&to) {
            if let Some(c) = dest {
                per[*c].push((*key, lines.clone()));
            }
        }
        for (c, items) in per.into_iter().enumerate() {
            if !items.is_empty()
                && self.txs[c]
                    .send(Msg::Txn {
                        commit,
                        previous,
                        hold,
                        items,
                    })
                    .is_err()
            {
                self.healthy[c] = false;
            }
        }
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(txn.clone());
        if hold {
            self.fault_fired = true;
            self.kill_window(&txn, previous, caught_up_shape.expect("checked"), client)
                .await?;
        }
        Ok(())
    }

    /// Waits while the consumers are far behind: more than `MAX_IN_FLIGHT` shapes pending
    /// and not suspected (as of the tracker's last scan), acknowledging meanwhile.
    ///
    /// Without it the reader, which decodes far faster than 300,000 shapes' files can be
    /// written, queued a whole backlog to the consumers at once: shapes then stayed pending
    /// for the whole drain, longer than grace + challenge, and healthy shapes were evicted by
    /// the tens of thousands. With it a shape waits behind a bounded queue. Suspected shapes
    /// do not count, so a wedged consumer (whose shapes are suspected after `grace`) stops the
    /// stream for no longer than that.
    async fn backpressure(&mut self, client: &ReplicationClient) -> Result<()> {
        let mut waited = false;
        loop {
            let s = self.tracker.stats();
            if s.pending.saturating_sub(s.suspected) <= MAX_IN_FLIGHT {
                break;
            }
            if !waited {
                waited = true;
                self.stats
                    .backpressure_waits
                    .fetch_add(1, Ordering::Relaxed);
            }
            self.housekeeping(client)?;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// The kill window of issue 9: commit `txn` is the newest, its lines are held unwritten
    /// by the consumers, one of its shapes was caught up before it. Wait for the tracker to
    /// publish the highest safe watermark, acknowledge it, wait until the server has it as
    /// the slot's `confirmed_flush_lsn`, record the commit's rows, and die.
    async fn kill_window(
        &mut self,
        txn: &Txn,
        previous: u64,
        shape: ShapeKey,
        client: &ReplicationClient,
    ) -> Result<()> {
        log!("fault: kill window at commit {} (previous {}), caught-up shape {shape}; its lines are held", Lsn(txn.commit), Lsn(previous));
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut w = self.tracker.watermark();
        while w < previous && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
            w = self.tracker.watermark();
        }
        // Let a few more scans pass: a watermark that would go past `previous` (into the
        // unflushed commit) shows up now.
        tokio::time::sleep(self.o.scan_interval * 4).await;
        w = self.tracker.watermark();
        self.settle()?;
        self.ack(w, client);
        // Wait for the server to have it.
        let confirmed = self.wait_confirmed(w).await?;
        let mut rec = format!(
            "commit={:x} previous={:x} acked={:x} confirmed={:x}\n",
            txn.commit, previous, w, confirmed
        );
        for (key, lines) in &txn.items {
            for line in String::from_utf8_lossy(lines).lines() {
                let mut f = line.split(' ');
                let (op, id) = (f.nth(1).unwrap_or(""), f.next().unwrap_or(""));
                rec.push_str(&format!("{} {} {op} {id}\n", key.table, key.k));
            }
        }
        let path = self.o.out.join("kill-window.txt");
        fs::write(&path, rec)?;
        fs::File::open(&path)?.sync_all()?;
        log!(
            "fault: acknowledged {} (server confirmed_flush_lsn {}); commit {} not fsynced; aborting",
            Lsn(w),
            Lsn(confirmed),
            Lsn(txn.commit)
        );
        std::process::abort();
    }

    fn log_status(&self) {
        let s = self.tracker.stats();
        let c = &self.counters;
        log!(
            "status: last_seen={} watermark={} acked={} pending={} suspected={} stalled={} evicted={} commits={} rows={} fsyncs={} rounds={} keepalive_tracks={} filtered={}",
            Lsn(s.last_seen),
            Lsn(s.watermark),
            Lsn(self.acked),
            s.pending,
            s.suspected,
            s.stalled,
            s.evicted,
            self.stats.commits.load(Ordering::Relaxed),
            c.rows.load(Ordering::Relaxed),
            c.fsyncs.load(Ordering::Relaxed),
            c.rounds.load(Ordering::Relaxed),
            self.stats.keepalive_tracks.load(Ordering::Relaxed),
            self.stats.filtered.load(Ordering::Relaxed),
        );
    }
}

/// The open transaction's lines for `shape`, created empty on its first change.
fn shape_lines(open: &mut OpenLines, shape: ShapeKey) -> &mut Vec<u8> {
    let items = &mut open.items;
    let at = *open.at.entry(shape).or_insert_with(|| {
        items.push((shape, Vec::new()));
        items.len() - 1
    });
    &mut items[at].1
}

/// A commit position of 16 hex digits, replaced in place once the commit is known.
const PLACEHOLDER: u64 = u64::MAX;

/// Rewrites the placeholder commit at the start of each line with `commit`, padded to the
/// placeholder's 16 digits with leading zeros (so the line keeps its length).
fn fill_commit(lines: &mut [u8], commit: u64) {
    let digits = format!("{commit:016x}");
    let mut at = 0;
    while at + 16 <= lines.len() {
        lines[at..at + 16].copy_from_slice(digits.as_bytes());
        match lines[at..].iter().position(|&b| b == b'\n') {
            Some(nl) => at += nl + 1,
            None => break,
        }
    }
}

/// Logs one of the tracker's events; returns the shape to rebuild if it ended abnormally.
fn log_event(event: Event<ShapeKey>) -> Option<ShapeKey> {
    match event {
        Event::Suspected { key, idle } => {
            log!("event: suspected {key} idle={:.3}s", idle.as_secs_f64());
            None
        }
        Event::Stalled {
            key,
            idle,
            flushed,
            sent,
            evicted,
        } => {
            log!(
                "event: stalled {key} idle={:.3}s flushed={} sent={} evicted={evicted}",
                idle.as_secs_f64(),
                Lsn(flushed),
                Lsn(sent)
            );
            evicted.then_some(key)
        }
        Event::WriterDown { key, cause } => {
            log!("event: writer-down {key} cause={cause:?}");
            Some(key)
        }
        // Informational events (lagging, and whatever a newer flushwatch adds).
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_strings() {
        let p = parse_conn("host=127.0.0.1 port=5433 user=postgres dbname=app sslmode=disable")
            .unwrap();
        assert_eq!(
            p,
            ConnParts {
                host: "127.0.0.1".into(),
                port: 5433,
                user: "postgres".into(),
                password: String::new(),
                dbname: "app".into()
            }
        );
        // Quoted values with spaces and escaped quotes, as libpq takes them.
        let p = parse_conn("host=db user=u password='a b\\'c' dbname = 'my db'").unwrap();
        assert_eq!((p.password.as_str(), p.dbname.as_str()), ("a b'c", "my db"));
        // URIs, with percent-encoding.
        let p = parse_conn("postgresql://app:s%40cret@db.example:6543/orders").unwrap();
        assert_eq!(
            p,
            ConnParts {
                host: "db.example".into(),
                port: 6543,
                user: "app".into(),
                password: "s@cret".into(),
                dbname: "orders".into()
            }
        );
        assert!(parse_conn("host").is_err());
        assert!(
            parse_conn("host=/var/run/postgresql user=u").is_err(),
            "Unix sockets: a clear error"
        );
        assert_eq!(parse_conn("user=u").unwrap().dbname, "u");
    }

    #[test]
    fn placeholders_are_filled() {
        let mut v = Vec::new();
        crate::shapes::push_line(&mut v, Some(PLACEHOLDER), b'I', 1, &[Some(b"a")]);
        crate::shapes::push_line(&mut v, Some(PLACEHOLDER), b'I', 2, &[Some(b"b")]);
        fill_commit(&mut v, 0x1_6B37_4D48);
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "000000016b374d48 I 1 a\n000000016b374d48 I 2 b\n"
        );
    }
}
