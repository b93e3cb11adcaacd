//! `pg-pipeline run`: a logical replication slot, fanned out per table, acknowledged safely.
//!
//! Threads and who owns what:
//! - the **reader** (the calling thread) owns the PostgreSQL connection, the routing table and
//!   every `register`/`track` call: it decodes whole transactions from a temporary copy of the
//!   slot, tracks each commit for the tables it touched, sends each table's rows to that
//!   table's consumer, and every `ack_interval` advances the slot to the tracker's watermark;
//! - **consumers** (`--consumers` threads) own the shapes' `Writer`s and files: append, `fsync`
//!   in batches, and only then `flushed`;
//! - the **event watcher** logs the tracker's events and asks the reader to rebuild a shape
//!   that was evicted or whose writer went down;
//! - the tracker's **scanner** thread (`spawn_scanner`).
//!
//! Why two slots: `pg_logical_slot_peek_changes` always starts at the slot's confirmed
//! position, so a pipeline that acknowledges only what is durable would decode the same
//! unacknowledged changes again on every poll, and `pg_logical_slot_get_changes` confirms what
//! it returns, before anything is durable. So the slot you name (`--slot`, the *ack slot*) is
//! moved only by `pg_replication_slot_advance(slot, watermark)`, and at start-up the reader
//! copies it into a temporary *cursor slot* (`pg_copy_logical_replication_slot`), which it
//! consumes with `pg_logical_slot_get_changes`. A crash drops the cursor with the session; the
//! next start copies the ack slot again and replays everything after the acknowledged
//! position: at-least-once delivery, duplicates only from that replay window.

use std::collections::HashMap;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use flushwatch::crossbeam_channel::{self as channel, Receiver, RecvTimeoutError, Sender};
use flushwatch::{Config, Error as FwError, Event, FlushTracker, ShapeId, StallPolicy, Writer};
use postgres::types::PgLsn;
use postgres::{Client, NoTls};

use crate::decode::{self, Lsn, Row};
use crate::files;

/// A shape's key: the table's qualified name as `test_decoding` prints it.
type Key = Arc<str>;

/// Options of `pg-pipeline run` (parsed in `main.rs`).
#[derive(Debug, Clone)]
pub struct RunOpts {
    pub conn: String,
    pub slot: String,
    pub create_slot: bool,
    pub out: PathBuf,
    pub consumers: usize,
    pub policy: StallPolicy,
    pub grace: Duration,
    pub challenge: Duration,
    pub scan_interval: Duration,
    pub fsync_interval: Duration,
    pub ack_interval: Duration,
    pub poll_interval: Duration,
    pub batch: i32,
    pub wedge_table: Option<String>,
    pub wedge_after: Duration,
    pub duration: Option<Duration>,
    pub status_interval: Duration,
}

/// What the reader sends a consumer.
enum Msg {
    /// Own this shape from now on, appending to `path`.
    Adopt {
        key: Key,
        writer: Writer<Key>,
        path: PathBuf,
    },
    /// The rows of one transaction for one shape, already formatted as file lines.
    Rows { key: Key, commit: u64, text: String },
}

/// The reader's route for a table.
struct Route {
    id: ShapeId,
    consumer: usize,
}

/// Counters for the status line. Every access is `Relaxed`: they are statistics and publish
/// nothing.
#[derive(Default)]
struct Counters {
    rows: AtomicU64,
    fsyncs: AtomicU64,
    flushes: AtomicU64,
}

/// The one-shot wedge: the consumer owning `table` stops after `after`.
struct Wedge {
    table: Option<String>,
    at: Instant,
    fired: AtomicBool,
}

pub fn run(o: RunOpts) -> Result<()> {
    if o.consumers == 0 {
        bail!("--consumers must be at least 1");
    }
    fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    let started = Instant::now();
    let mut client = Client::connect(&o.conn, NoTls).context("connecting to PostgreSQL")?;
    ensure_slot(&mut client, &o.slot, o.create_slot)?;

    // The cursor: a temporary copy of the ack slot, dropped by the server with this session.
    let cursor = format!("{}_cursor_{}", o.slot, std::process::id());
    client
        .query_one(
            "SELECT 1 FROM pg_copy_logical_replication_slot($1, $2, true)",
            &[&o.slot, &cursor],
        )
        .with_context(|| format!("copying slot {} to a temporary cursor slot", o.slot))?;
    let start: PgLsn = client
        .query_one(
            "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1",
            &[&cursor],
        )?
        .get(0);
    let start = u64::from(start);
    log!(
        "start: slot={} cursor={} resuming after {} policy={:?} grace={:?} challenge={:?}",
        o.slot,
        cursor,
        Lsn(start),
        o.policy,
        o.grace,
        o.challenge
    );

    let tracker: FlushTracker<Key> = FlushTracker::new(
        Config::default()
            .start_at(start)
            .grace(o.grace)
            .challenge(o.challenge)
            .scan_interval(o.scan_interval)
            .stall_policy(o.policy),
    )?;
    let scanner = tracker.spawn_scanner()?;

    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let wedge = Arc::new(Wedge {
        table: o.wedge_table.clone(),
        at: started + o.wedge_after,
        fired: AtomicBool::new(false),
    });

    let mut txs = Vec::with_capacity(o.consumers);
    let mut consumers = Vec::with_capacity(o.consumers);
    for i in 0..o.consumers {
        let (tx, rx) = channel::unbounded();
        txs.push(tx);
        let (every, wedge, stop, counters) = (
            o.fsync_interval,
            wedge.clone(),
            stop.clone(),
            counters.clone(),
        );
        consumers.push(
            thread::Builder::new()
                .name(format!("consumer-{i}"))
                .spawn(move || {
                    if let Err(e) = consume(i, rx, every, &wedge, &stop, &counters) {
                        log!("consumer {i}: failed: {e:#}");
                    }
                })?,
        );
    }

    let (ctl_tx, ctl_rx) = channel::unbounded();
    let watcher = {
        let (events, stop) = (tracker.events(), stop.clone());
        thread::Builder::new()
            .name("events".into())
            .spawn(move || watch_events(events, ctl_tx, &stop))?
    };

    let mut reader = Reader {
        tracker: tracker.clone(),
        out: o.out.clone(),
        txs,
        healthy: vec![true; o.consumers],
        next_consumer: 0,
        routes: HashMap::new(),
        rebuilds: HashMap::new(),
        ctl: ctl_rx,
        commits: 0,
    };
    let result = reader.read(&mut client, &o, &cursor, start, started, &counters);

    // Shut down: consumers drain and flush, the watermark catches up, one last ack.
    stop.store(true, Ordering::Relaxed); // Relaxed: a stop request; the joins below synchronize.
    drop(reader.txs);
    for c in consumers {
        let _ = c.join();
    }
    if result.is_ok() {
        let w = tracker.scan().watermark;
        if w > start {
            match advance(&mut client, &o.slot, w) {
                Ok(()) => log!("ack: final {}", Lsn(w)),
                Err(e) => log!("ack: final advance failed: {e:#}"),
            }
        }
    }
    drop(scanner);
    let _ = watcher.join();
    result
}

/// Checks that `slot` is a logical slot of `test_decoding`, creating it if allowed.
fn ensure_slot(client: &mut Client, slot: &str, create: bool) -> Result<()> {
    let row = client.query_opt(
        "SELECT plugin::text, slot_type FROM pg_replication_slots WHERE slot_name = $1",
        &[&slot],
    )?;
    match row {
        Some(row) => {
            let plugin: Option<String> = row.get(0);
            if plugin.as_deref() != Some("test_decoding") {
                bail!("slot {slot} uses plugin {plugin:?}; pg-pipeline reads test_decoding output");
            }
            Ok(())
        }
        None if create => {
            client.query_one(
                "SELECT 1 FROM pg_create_logical_replication_slot($1, 'test_decoding')",
                &[&slot],
            )?;
            log!("start: created slot {slot} (test_decoding)");
            Ok(())
        }
        None => bail!("no replication slot {slot}; create it or pass --create-slot"),
    }
}

/// Acknowledges `position` to PostgreSQL: the slot's `confirmed_flush_lsn` becomes it.
fn advance(client: &mut Client, slot: &str, position: u64) -> Result<()> {
    client.query_one(
        "SELECT end_lsn FROM pg_replication_slot_advance($1, $2)",
        &[&slot, &PgLsn::from(position)],
    )?;
    Ok(())
}

struct Reader {
    tracker: FlushTracker<Key>,
    out: PathBuf,
    txs: Vec<Sender<Msg>>,
    /// Consumers that may be given shapes (not wedged, not dead).
    healthy: Vec<bool>,
    next_consumer: usize,
    routes: HashMap<Key, Route>,
    /// Rebuilds per table in this process, for the output file name.
    rebuilds: HashMap<Key, u32>,
    ctl: Receiver<Key>,
    commits: u64,
}

impl Reader {
    fn read(
        &mut self,
        client: &mut Client,
        o: &RunOpts,
        cursor: &str,
        start: u64,
        started: Instant,
        counters: &Counters,
    ) -> Result<()> {
        let get = client.prepare(
            "SELECT lsn, data FROM pg_logical_slot_get_changes($1, NULL, $2, 'skip-empty-xacts', '1')",
        )?;
        // The open transaction: its rows per table, tables in first-touched order.
        let mut txn: Vec<(Key, Vec<String>)> = Vec::new();
        let mut acked = start;
        let mut last_ack = Instant::now();
        let mut last_status = Instant::now();
        loop {
            if o.duration.is_some_and(|d| started.elapsed() >= d) {
                return Ok(());
            }
            let rows = client
                .query(&get, &[&cursor, &o.batch])
                .context("reading the cursor slot")?;
            for row in &rows {
                let lsn: PgLsn = row.get(0);
                let data: &str = row.get(1);
                match decode::parse(data) {
                    Row::Begin => txn.clear(),
                    Row::Change { table, .. } => {
                        counters.rows.fetch_add(1, Ordering::Relaxed); // Relaxed: statistics.
                        match txn.iter_mut().find(|(k, _)| &**k == table) {
                            Some((_, rows)) => rows.push(data.to_owned()),
                            None => txn.push((Arc::from(table), vec![data.to_owned()])),
                        }
                    }
                    Row::Commit => self.commit(u64::from(lsn), &mut txn)?,
                    Row::Other => {}
                }
            }
            if last_ack.elapsed() >= o.ack_interval {
                last_ack = Instant::now();
                let w = self.tracker.watermark();
                if w > acked {
                    match advance(client, &o.slot, w) {
                        Ok(()) => acked = w,
                        Err(e) => log!("ack: advance to {} failed, will retry: {e:#}", Lsn(w)),
                    }
                }
            }
            if last_status.elapsed() >= o.status_interval {
                last_status = Instant::now();
                let s = self.tracker.stats();
                log!(
                    "status: last_seen={} watermark={} acked={} pending={} suspected={} stalled={} evicted={} commits={} rows={} fsyncs={} flushes={}",
                    Lsn(s.last_seen),
                    Lsn(s.watermark),
                    Lsn(acked),
                    s.pending,
                    s.suspected,
                    s.stalled,
                    s.evicted,
                    self.commits,
                    counters.rows.load(Ordering::Relaxed), // Relaxed: statistics.
                    counters.fsyncs.load(Ordering::Relaxed), // Relaxed: statistics.
                    counters.flushes.load(Ordering::Relaxed), // Relaxed: statistics.
                );
            }
            if rows.is_empty() {
                thread::sleep(o.poll_interval);
            }
        }
    }

    /// One decoded transaction, committed at `commit` (the end of its commit record): route
    /// it, track it, then send each table its rows. `track` comes first so that a consumer
    /// never reports a commit the tracker has not seen.
    fn commit(&mut self, commit: u64, txn: &mut Vec<(Key, Vec<String>)>) -> Result<()> {
        while let Ok(key) = self.ctl.try_recv() {
            if let Some(route) = self.routes.remove(&key) {
                log!(
                    "rebuild: {key} leaves consumer {} (presumed wedged); rebuilding it from the stream",
                    route.consumer
                );
                self.healthy[route.consumer] = false;
            }
        }
        let mut ids = Vec::with_capacity(txn.len());
        for (key, _) in txn.iter() {
            ids.push(self.route(key)?);
        }
        self.tracker
            .track(commit, &ids)
            .with_context(|| format!("tracking commit {}", Lsn(commit)))?;
        self.commits += 1;
        for (key, rows) in txn.drain(..) {
            let consumer = self.routes[&key].consumer;
            let text: String = rows.iter().map(|data| files::line(commit, data)).collect();
            if self.txs[consumer]
                .send(Msg::Rows { key, commit, text })
                .is_err()
            {
                self.healthy[consumer] = false;
            }
        }
        Ok(())
    }

    /// The id of `key`'s shape, registering it with a healthy consumer if it has none.
    fn route(&mut self, key: &Key) -> Result<ShapeId> {
        if let Some(r) = self.routes.get(key) {
            return Ok(r.id);
        }
        let n = self.healthy.len();
        let Some(consumer) = (0..n)
            .map(|k| (self.next_consumer + k) % n)
            .find(|&c| self.healthy[c])
        else {
            bail!("no healthy consumer left");
        };
        self.next_consumer = (consumer + 1) % n;
        // The key is free once the eviction is complete; the event can arrive a moment before.
        let mut tries = 0;
        let writer = loop {
            match self.tracker.register(key.clone()) {
                Ok(w) => break w,
                Err(FwError::DuplicateShape) if tries < 1000 => {
                    tries += 1;
                    thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(e).with_context(|| format!("registering {key}")),
            }
        };
        let rebuild = self.rebuilds.entry(key.clone()).or_insert(0);
        let stem = decode::file_stem(key);
        let path = if *rebuild == 0 {
            self.out.join(format!("{stem}.log"))
        } else {
            self.out.join(format!("{stem}.r{rebuild}.log"))
        };
        *rebuild += 1;
        let id = writer.id();
        self.txs[consumer]
            .send(Msg::Adopt {
                key: key.clone(),
                writer,
                path,
            })
            .map_err(|_| anyhow::anyhow!("consumer {consumer} is gone"))?;
        self.routes.insert(key.clone(), Route { id, consumer });
        Ok(id)
    }
}

/// Logs the tracker's events; asks the reader to rebuild shapes that ended abnormally.
fn watch_events(events: Receiver<Event<Key>>, ctl: Sender<Key>, stop: &AtomicBool) {
    // Relaxed: a stop request; nothing is published through it.
    while !stop.load(Ordering::Relaxed) {
        let event = match events.recv_timeout(Duration::from_millis(100)) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        match event {
            Event::Suspected { key, idle } => {
                log!("event: suspected {key} idle={:.3}s", idle.as_secs_f64())
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
                if evicted {
                    let _ = ctl.send(key);
                }
            }
            Event::WriterDown { key, cause } => {
                log!("event: writer-down {key} cause={cause:?}");
                let _ = ctl.send(key);
            }
            Event::Lagging { key, lag } => log!("event: lagging {key} lag={lag} bytes"),
            other => log!("event: {other:?}"),
        }
    }
}

/// A consumer's state for one shape.
struct Shape {
    writer: Writer<Key>,
    file: BufWriter<fs::File>,
    /// The highest commit received (and written to `file`).
    received: u64,
    dirty: bool,
}

/// One consumer thread: append, fsync every `every`, then report.
fn consume(
    i: usize,
    rx: Receiver<Msg>,
    every: Duration,
    wedge: &Wedge,
    stop: &AtomicBool,
    counters: &Counters,
) -> Result<()> {
    let mut shapes: HashMap<Key, Shape> = HashMap::new();
    let mut deadline: Option<Instant> = None;
    loop {
        let msg = match deadline {
            Some(d) => rx.recv_deadline(d),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match msg {
            Ok(Msg::Adopt { key, writer, path }) => {
                let file = files::open_append(&path)
                    .with_context(|| format!("opening {}", path.display()))?;
                log!("consumer {i}: owns {key} -> {}", path.display());
                shapes.insert(
                    key,
                    Shape {
                        writer,
                        file: BufWriter::with_capacity(256 * 1024, file),
                        received: 0,
                        dirty: false,
                    },
                );
            }
            Ok(Msg::Rows { key, commit, text }) => {
                if let Some(s) = shapes.get_mut(&key) {
                    if s.writer.is_evicted() {
                        log!("consumer {i}: {key} was evicted; dropping it");
                        shapes.remove(&key);
                        continue;
                    }
                    s.file.write_all(text.as_bytes())?;
                    s.received = commit;
                    s.dirty = true;
                    deadline.get_or_insert_with(|| Instant::now() + every);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return flush_all(&mut shapes, counters),
        }
        if let Some(table) = &wedge.table {
            if Instant::now() >= wedge.at
                && shapes.keys().any(|k| &**k == table)
                // Relaxed: only the swap's atomicity matters (one consumer wedges, once).
                && !wedge.fired.swap(true, Ordering::Relaxed)
            {
                log!(
                    "wedge: consumer {i} (owner of {table}) stops, holding {} unflushed shape(s)",
                    shapes.values().filter(|s| s.dirty).count()
                );
                // Stuck as in a deadlock: alive, holding its writers, reporting nothing.
                // Relaxed: a stop request; nothing is published through it.
                while !stop.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(50));
                }
                let evicted = shapes.values().filter(|s| s.writer.is_evicted()).count();
                log!("wedge: consumer {i} unwedged; {evicted} of its shapes were evicted");
                return Ok(());
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            flush_all(&mut shapes, counters)?;
            deadline = None;
        }
    }
}

/// Makes every dirty shape durable, then reports it.
fn flush_all(shapes: &mut HashMap<Key, Shape>, counters: &Counters) -> Result<()> {
    for s in shapes.values_mut().filter(|s| s.dirty) {
        s.file.flush()?;
        s.file.get_ref().sync_data()?;
        // Relaxed: statistics.
        counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        // Only now is every commit up to `received` durable for this shape.
        s.writer.flushed(s.received);
        counters.flushes.fetch_add(1, Ordering::Relaxed); // Relaxed: statistics.
        s.dirty = false;
    }
    Ok(())
}
