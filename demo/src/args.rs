//! The command line, and the run's settings derived from it.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use flushwatch::StallPolicy;

use crate::secs;

#[derive(Parser, Debug, Clone)]
#[command(about = "flushwatch demo: a CDC pipeline whose consumer wedges; the scanner evicts it")]
pub struct Args {
    /// Number of shapes (consumers' units of storage).
    #[arg(long, default_value_t = 32)]
    pub shapes: u32,
    /// Number of consumer threads; shapes are assigned round robin.
    #[arg(long, default_value_t = 4)]
    pub consumers: usize,
    /// Target commits per second.
    #[arg(long, default_value_t = 20_000)]
    pub rate: u64,
    /// Seconds to run.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Seconds a pending shape may go without progress before it is challenged.
    #[arg(long, default_value_t = 2.0)]
    pub grace: f64,
    /// Seconds a challenged shape has to answer before it is stalled.
    #[arg(long, default_value_t = 0.5)]
    pub challenge: f64,
    /// Scanner period in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub scan_interval_ms: u64,
    /// What the scanner does with a stalled shape.
    #[arg(long, value_enum, default_value_t = Policy::Evict)]
    pub policy: Policy,
    /// Do not wedge any consumer (then no shape may stall).
    #[arg(long)]
    pub no_wedge: bool,
    /// Seconds after the start at which consumer 0 wedges (default: 30% of the duration,
    /// at most 6 s).
    #[arg(long)]
    pub wedge_after: Option<f64>,
    /// Consumers fsync (then report) at most this often, in milliseconds.
    #[arg(long, default_value_t = 25)]
    pub fsync_ms: u64,
    /// At most this many shapes per transaction.
    #[arg(long, default_value_t = 3)]
    pub max_shapes_per_commit: u32,
    /// Directory for the shape files (default: a new directory under the system temp dir,
    /// removed at the end).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Seed of the transaction generator.
    #[arg(long, default_value_t = 0x5eed)]
    pub seed: u64,
    /// Tolerance on the detection bound, for a loaded machine, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub latency_slack_ms: u64,
    /// Self-test of the oracle: consumers report `flushed` *before* they fsync, which is the
    /// bug the tracker cannot protect against. The oracle must catch it (exit status 1).
    #[arg(long, hide = true)]
    pub report_before_fsync: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Policy {
    /// Evict a stalled shape: the watermark moves on; the shape is rebuilt.
    Evict,
    /// Only report it: the watermark stays pinned (what happens without stall detection).
    Report,
}

/// The run's settings, derived from the arguments.
pub struct Plan {
    pub policy: StallPolicy,
    pub duration: Duration,
    pub grace: Duration,
    pub challenge: Duration,
    pub wedge_after: Duration,
    /// The documented detection bound, `grace + challenge + 2 * scan_interval + r`, with the
    /// tick resolution `r` one scan interval on a real clock.
    pub bound: Duration,
    pub scan_interval: Duration,
}

impl Plan {
    /// Validates the arguments and derives the settings.
    pub fn new(args: &Args) -> Result<Plan, String> {
        if args.shapes == 0
            || args.consumers == 0
            || args.rate == 0
            || args.max_shapes_per_commit == 0
        {
            return Err(
                "--shapes, --consumers, --rate and --max-shapes-per-commit must be positive".into(),
            );
        }
        if !args.no_wedge && args.consumers < 2 {
            return Err(
                "wedging needs at least 2 consumers (one to wedge, one to rebuild on)".into(),
            );
        }
        let duration = secs(args.duration);
        let grace = secs(args.grace);
        let challenge = secs(args.challenge);
        let scan_interval = Duration::from_millis(args.scan_interval_ms.max(1));
        let bound = grace + challenge + 3 * scan_interval;
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
            ));
        }
        let policy = match args.policy {
            Policy::Evict => StallPolicy::Evict,
            Policy::Report => StallPolicy::Report,
        };
        Ok(Plan {
            policy,
            duration,
            grace,
            challenge,
            wedge_after,
            bound,
            scan_interval,
        })
    }
}
