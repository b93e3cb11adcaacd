//! `pg-pipeline`: flushwatch against a real PostgreSQL, over streaming logical replication.
//!
//! ```text
//! pg-pipeline setup    --conn ... --tables public.t0,public.t1 --publication fw_pub
//! pg-pipeline run      --conn "host=127.0.0.1 user=app dbname=app" --slot fw --publication fw_pub \
//!                      --tables public.t0,public.t1 --shapes-per-table 512 --create-slot
//! pg-pipeline workload --conn ... --tables ... --rate 200 --duration 30
//! pg-pipeline backlog  --conn ... --tables ... --transactions 200000
//! pg-pipeline verify   --conn ... --slot fw --publication fw_pub --out out --tables ... --shapes-per-table 512
//! ```
//!
//! See `docs/pipeline.md` for the design and `scripts/pg-e2e` for the end-to-end proof.

/// `eprintln!` with the seconds since the process started, so that logs of several processes
/// can be lined up.
macro_rules! log {
    ($($t:tt)*) => {
        eprintln!("[{:9.3}] {}", $crate::uptime(), format_args!($($t)*))
    };
}

mod consumer;
mod cpu;
mod files;
mod pgoutput;
mod probe;
mod rebuild;
mod shapes;
mod stream;
mod verify;
mod wal;
mod workload;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use flushwatch::StallPolicy;

use crate::shapes::{Layout, ShapeKey};

#[derive(Parser)]
#[command(
    version,
    about = "flushwatch against a real PostgreSQL, over streaming logical replication (pgoutput)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Sync {
    /// Append the round to the consumer's log segment and fdatasync it; shape files are
    /// written behind.
    Log,
    /// One syncfs(2) for every shape file the round wrote.
    Syncfs,
    /// An fdatasync of every shape file the round wrote.
    Fdatasync,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Policy {
    /// Evict a stalled shape: the watermark moves on, the shape is rebuilt from a snapshot.
    Evict,
    /// Only report it: the watermark (and PostgreSQL's WAL) stays pinned.
    Report,
}

/// Which tables, and how they are cut into shapes.
#[derive(Args, Clone, Debug)]
struct LayoutArgs {
    /// Comma-separated qualified table names (each needs an integer key column).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "public.t0,public.t1,public.t2,public.t3"
    )]
    tables: Vec<String>,
    /// Shapes per table: shape k holds the rows with key % N = k.
    #[arg(long, default_value_t = 512)]
    shapes_per_table: u32,
    /// The integer column the row filter uses.
    #[arg(long, default_value = "id")]
    key_column: String,
}

impl LayoutArgs {
    fn layout(&self) -> Layout {
        Layout {
            tables: self.tables.clone(),
            per_table: self.shapes_per_table.max(1),
            key_column: self.key_column.clone(),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Stream the slot, fan out to the shapes' files, acknowledge the safe watermark.
    Run {
        /// libpq-style key=value connection string (the user needs REPLICATION, and SELECT on
        /// the tables for rebuilds).
        #[arg(long, env = "PG_PIPELINE_CONN")]
        conn: String,
        /// The logical slot (plugin pgoutput).
        #[arg(long, default_value = "flushwatch")]
        slot: String,
        /// The publication to stream.
        #[arg(long, default_value = "flushwatch")]
        publication: String,
        /// Create the slot if it does not exist (it then starts at the current WAL position).
        #[arg(long)]
        create_slot: bool,
        /// Directory for the shapes' files (<out>/<table>/<k>.log).
        #[arg(long, default_value = "pg-pipeline-out")]
        out: PathBuf,
        #[command(flatten)]
        layout: LayoutArgs,
        /// Consumer threads; shapes are assigned to them round robin.
        #[arg(long, default_value_t = 8)]
        consumers: usize,
        /// What to do with a consumer that stays stuck.
        #[arg(long, value_enum, default_value_t = Policy::Evict)]
        policy: Policy,
        /// Seconds a pending shape may go without progress before it is challenged.
        #[arg(long, default_value_t = 10.0)]
        grace: f64,
        /// Seconds a challenged shape has to answer before it is stalled.
        #[arg(long, default_value_t = 2.0)]
        challenge: f64,
        /// Scanner period, milliseconds.
        #[arg(long, default_value_t = 100)]
        scan_interval_ms: u64,
        /// A consumer's group fsync round starts at most this long after its first unflushed
        /// change, milliseconds.
        #[arg(long, default_value_t = 10)]
        fsync_interval_ms: u64,
        /// How a consumer's round is made durable: one append and fdatasync of its log segment
        /// (the shape files written behind), one syncfs(2) for all its dirty files, or an
        /// fdatasync of each.
        #[arg(long, value_enum, default_value_t = Sync::Log)]
        sync: Sync,
        /// Hand the watermark to the replication client (and send standby status updates) this
        /// often, milliseconds.
        #[arg(long, default_value_t = 100)]
        ack_interval_ms: u64,
        /// Wedge the consumer that owns this shape (e.g. 0:0 = table 0, k = 0), as in a deadlock.
        #[arg(long, value_parser = parse_shape)]
        wedge_shape: Option<ShapeKey>,
        /// Seconds after the start-up (every shape's file open) at which that consumer wedges
        /// (once that shape has unflushed changes).
        #[arg(long, default_value_t = 5.0)]
        wedge_after: f64,
        /// Wedge once any shape of that consumer has unflushed changes, not only that one.
        #[arg(long)]
        wedge_any: bool,
        /// Stop (cleanly, with a last acknowledgement) after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
        /// Stop once every commit up to this LSN (e.g. 0/3000060) is durable and acknowledged.
        #[arg(long)]
        until_lsn: Option<String>,
        /// Seconds between status lines on stderr.
        #[arg(long, default_value_t = 1.0)]
        status_interval: f64,
        /// Measure the time from each live commit to the slot's confirmed_flush_lsn reaching
        /// it (a second connection polls the slot every 5 ms); percentiles in the last lines.
        #[arg(long)]
        ack_lag: bool,
    },
    /// Drop and create test tables (id identity primary key, payload text) and a publication
    /// for them.
    Setup {
        #[arg(long, env = "PG_PIPELINE_CONN")]
        conn: String,
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "public.t0,public.t1,public.t2,public.t3"
        )]
        tables: Vec<String>,
        #[arg(long, default_value = "flushwatch")]
        publication: String,
    },
    /// Insert into the test tables at a steady rate, in multi-table transactions; survives a
    /// server restart (reconnects).
    Workload {
        #[arg(long, env = "PG_PIPELINE_CONN")]
        conn: String,
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "public.t0,public.t1,public.t2,public.t3"
        )]
        tables: Vec<String>,
        /// Transactions per second.
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
        /// Seconds.
        #[arg(long, default_value_t = 30.0)]
        duration: f64,
        /// Bytes of payload per row.
        #[arg(long, default_value_t = 100)]
        payload: usize,
        /// Roll back every Nth transaction (0: never).
        #[arg(long, default_value_t = 17)]
        rollback_every: u64,
        #[arg(long, default_value_t = 0x5eed)]
        seed: u64,
        /// Connections: one keeps long transactions open, the others share --rate.
        #[arg(long, default_value_t = 3)]
        connections: usize,
        /// TRUNCATE the last table once, this many seconds in.
        #[arg(long)]
        truncate_at: Option<f64>,
    },
    /// Commit N small transactions as fast as the server takes them (one DO block), for the
    /// throughput measurement; prints the WAL position after the last one.
    Backlog {
        #[arg(long, env = "PG_PIPELINE_CONN")]
        conn: String,
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "public.t0,public.t1,public.t2,public.t3"
        )]
        tables: Vec<String>,
        #[arg(long, default_value_t = 200_000)]
        transactions: u64,
        #[arg(long, default_value_t = 60)]
        payload: usize,
    },
    /// Check every shape's file against its rows in the table.
    Verify {
        #[arg(long, env = "PG_PIPELINE_CONN")]
        conn: String,
        #[arg(long, default_value = "flushwatch")]
        slot: String,
        #[arg(long, default_value = "flushwatch")]
        publication: String,
        #[arg(long, default_value = "pg-pipeline-out")]
        out: PathBuf,
        #[command(flatten)]
        layout: LayoutArgs,
        /// Require every committed row to be in the files (the pipeline caught up): each
        /// shape's file must equal its rows. Without it, a row may instead still be
        /// unacknowledged by the slot (after a kill).
        #[arg(long)]
        caught_up: bool,
    },
}

fn parse_shape(s: &str) -> Result<ShapeKey, String> {
    let (t, k) = s.split_once(':').ok_or("expected TABLE_INDEX:K")?;
    Ok(ShapeKey {
        table: t.parse().map_err(|e| format!("{e}"))?,
        k: k.parse().map_err(|e| format!("{e}"))?,
    })
}

static STARTED: OnceLock<Instant> = OnceLock::new();

/// Seconds since the process started (since `main` first called this).
fn uptime() -> f64 {
    STARTED.get_or_init(Instant::now).elapsed().as_secs_f64()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn main() -> Result<()> {
    uptime();
    match Cli::parse().command {
        Command::Run {
            conn,
            slot,
            publication,
            create_slot,
            out,
            layout,
            consumers,
            policy,
            grace,
            challenge,
            scan_interval_ms,
            fsync_interval_ms,
            sync,
            ack_interval_ms,
            wedge_shape,
            wedge_after,
            wedge_any,
            duration,
            until_lsn,
            status_interval,
            ack_lag,
        } => {
            let fault = stream::Fault::from_env()?;
            let until = until_lsn
                .map(|s| {
                    pgwire_replication::Lsn::parse(&s)
                        .map(|l| l.as_u64())
                        .with_context(|| format!("--until-lsn {s}"))
                })
                .transpose()?;
            stream::run(stream::RunOpts {
                conn,
                slot,
                publication,
                create_slot,
                out,
                layout: layout.layout(),
                consumers,
                policy: match policy {
                    Policy::Evict => StallPolicy::Evict,
                    Policy::Report => StallPolicy::Report,
                },
                grace: secs(grace),
                challenge: secs(challenge),
                scan_interval: Duration::from_millis(scan_interval_ms),
                fsync_interval: Duration::from_millis(fsync_interval_ms),
                sync: match sync {
                    Sync::Log => consumer::SyncMode::Log,
                    Sync::Syncfs => consumer::SyncMode::Syncfs,
                    Sync::Fdatasync => consumer::SyncMode::Fdatasync,
                },
                ack_interval: Duration::from_millis(ack_interval_ms),
                wedge_shape,
                wedge_after: secs(wedge_after),
                wedge_any,
                duration: duration.map(secs),
                until,
                status_interval: secs(status_interval),
                fault,
                fault_after_commits: std::env::var("PG_PIPELINE_FAULT_AFTER")
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(200),
                ack_lag,
            })
        }
        Command::Setup {
            conn,
            tables,
            publication,
        } => workload::setup(&conn, &tables, &publication),
        Command::Workload {
            conn,
            tables,
            rate,
            duration,
            payload,
            rollback_every,
            seed,
            connections,
            truncate_at,
        } => workload::run(&workload::WorkloadOpts {
            conn,
            tables,
            rate,
            duration: secs(duration),
            payload,
            rollback_every,
            seed,
            connections,
            truncate_at: truncate_at.map(secs),
        }),
        Command::Backlog {
            conn,
            tables,
            transactions,
            payload,
        } => workload::backlog(&conn, &tables, transactions, payload),
        Command::Verify {
            conn,
            slot,
            publication,
            out,
            layout,
            caught_up,
        } => verify::run(&verify::VerifyOpts {
            conn,
            slot,
            publication,
            out,
            layout: layout.layout(),
            caught_up,
        }),
    }
}
