//! `pg-pipeline`: flushwatch against a real PostgreSQL logical replication slot.
//!
//! ```text
//! pg-pipeline run --conn "host=127.0.0.1 user=app dbname=app" --slot flushwatch --create-slot
//! pg-pipeline setup --conn ... --tables 4          # test tables public.t0..t3
//! pg-pipeline workload --conn ... --tables 4 --rate 200 --duration 30
//! pg-pipeline verify --conn ... --slot flushwatch --out out --tables 4
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

mod decode;
mod files;
mod pipeline;
mod verify;
mod workload;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use flushwatch::StallPolicy;

#[derive(Parser)]
#[command(
    version,
    about = "flushwatch against a real PostgreSQL logical replication slot"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Policy {
    /// Evict a stalled shape: the watermark moves on, the shape is rebuilt.
    Evict,
    /// Only report it: the watermark (and PostgreSQL's WAL) stays pinned.
    Report,
}

#[derive(Subcommand)]
enum Command {
    /// Read the slot, fan out per table to files, acknowledge the safe watermark.
    Run {
        /// libpq-style connection string (the user needs the REPLICATION attribute or superuser).
        #[arg(long, env = "PG_PIPELINE_CONN")]
        conn: String,
        /// The logical slot to acknowledge (plugin test_decoding).
        #[arg(long, default_value = "flushwatch")]
        slot: String,
        /// Create the slot if it does not exist (it then starts at the current WAL position).
        #[arg(long)]
        create_slot: bool,
        /// Directory for the per-table files.
        #[arg(long, default_value = "pg-pipeline-out")]
        out: PathBuf,
        /// Consumer threads; tables are assigned to them round robin.
        #[arg(long, default_value_t = 4)]
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
        /// Consumers fsync and report at most this often, milliseconds.
        #[arg(long, default_value_t = 20)]
        fsync_interval_ms: u64,
        /// Acknowledge (pg_replication_slot_advance) at most this often, milliseconds.
        #[arg(long, default_value_t = 200)]
        ack_interval_ms: u64,
        /// Sleep between polls of an idle slot, milliseconds.
        #[arg(long, default_value_t = 50)]
        poll_interval_ms: u64,
        /// Rows per pg_logical_slot_get_changes call (whole transactions are always returned).
        #[arg(long, default_value_t = 5000)]
        batch: i32,
        /// Wedge the consumer that owns this table (e.g. public.t0), as in a deadlock.
        #[arg(long)]
        wedge_table: Option<String>,
        /// Seconds after start at which that consumer wedges.
        #[arg(long, default_value_t = 5.0)]
        wedge_after: f64,
        /// Stop (cleanly, with a last acknowledgement) after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
        /// Seconds between status lines on stderr.
        #[arg(long, default_value_t = 1.0)]
        status_interval: f64,
    },
    /// Drop and create the test tables public.t0 .. public.t{N-1}.
    Setup {
        #[arg(long, env = "PG_PIPELINE_CONN")]
        conn: String,
        #[arg(long, default_value_t = 4)]
        tables: usize,
    },
    /// Insert into the test tables at a steady rate, in multi-table transactions.
    Workload {
        #[arg(long, env = "PG_PIPELINE_CONN")]
        conn: String,
        #[arg(long, default_value_t = 4)]
        tables: usize,
        /// Transactions per second.
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
        /// Seconds.
        #[arg(long, default_value_t = 30.0)]
        duration: f64,
        /// Bytes of payload per row.
        #[arg(long, default_value_t = 400)]
        payload: usize,
        /// Roll back every Nth transaction (0: never).
        #[arg(long, default_value_t = 17)]
        rollback_every: u64,
        #[arg(long, default_value_t = 0x5eed)]
        seed: u64,
    },
    /// Check that every committed row is in the files or still unacknowledged.
    Verify {
        #[arg(long, env = "PG_PIPELINE_CONN")]
        conn: String,
        #[arg(long, default_value = "flushwatch")]
        slot: String,
        #[arg(long, default_value = "pg-pipeline-out")]
        out: PathBuf,
        #[arg(long, default_value_t = 4)]
        tables: usize,
        /// Also require every committed row to be acknowledged (and so in the files).
        #[arg(long)]
        caught_up: bool,
    },
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
            create_slot,
            out,
            consumers,
            policy,
            grace,
            challenge,
            scan_interval_ms,
            fsync_interval_ms,
            ack_interval_ms,
            poll_interval_ms,
            batch,
            wedge_table,
            wedge_after,
            duration,
            status_interval,
        } => pipeline::run(pipeline::RunOpts {
            conn,
            slot,
            create_slot,
            out,
            consumers,
            policy: match policy {
                Policy::Evict => StallPolicy::Evict,
                Policy::Report => StallPolicy::Report,
            },
            grace: secs(grace),
            challenge: secs(challenge),
            scan_interval: Duration::from_millis(scan_interval_ms),
            fsync_interval: Duration::from_millis(fsync_interval_ms),
            ack_interval: Duration::from_millis(ack_interval_ms),
            poll_interval: Duration::from_millis(poll_interval_ms),
            batch,
            wedge_table,
            wedge_after: secs(wedge_after),
            duration: duration.map(secs),
            status_interval: secs(status_interval),
        }),
        Command::Setup { conn, tables } => workload::setup(&conn, tables),
        Command::Workload {
            conn,
            tables,
            rate,
            duration,
            payload,
            rollback_every,
            seed,
        } => workload::run(&workload::WorkloadOpts {
            conn,
            tables,
            rate,
            duration: secs(duration),
            payload,
            rollback_every,
            seed,
        }),
        Command::Verify {
            conn,
            slot,
            out,
            tables,
            caught_up,
        } => verify::run(&verify::VerifyOpts {
            conn,
            slot,
            out,
            tables,
            caught_up,
        }),
    }
}
