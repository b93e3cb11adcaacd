//! The summary and the verdict: what the run measured, and whether it passed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flushwatch::StallPolicy;

use crate::args::{Args, Plan};
use crate::oracle::Findings;
use crate::supervisor::{Detection, SupervisorReport};
use crate::Counters;

/// Everything the run measured, for the summary and the verdict.
pub struct Outcome {
    pub elapsed: Duration,
    /// How many commits the producer generated.
    pub commits: u64,
    /// The last commit's position (positions are sparse).
    pub last_commit: u64,
    pub final_watermark: u64,
    /// The largest `last_seen - watermark` seen, in log positions.
    pub max_lag: u64,
    pub wedged_at: Option<Duration>,
    pub wedged_shapes: usize,
    pub wedged_saw_evicted: usize,
    pub events_dropped: u64,
    pub counters: Arc<Counters>,
    pub supervisor: SupervisorReport,
    pub oracle: Findings,
}

/// Prints the summary; true if the run passed.
pub fn verdict(args: &Args, o: &Outcome, plan: &Plan) -> bool {
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
    let rate = o.commits as f64 / run_s;
    // Positions are sparse: lags in positions are turned into time at this rate.
    let position_rate = (o.last_commit as f64 / run_s).max(1.0);
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
        o.commits,
        rate,
        args.rate,
        read(&o.counters.changes),
        read(&o.counters.fsyncs),
        read(&o.counters.fsyncs) as f64 / run_s,
    );
    println!(
        "  watermark    final {} (last commit {}); largest lag seen {} positions (~{:.2} s of traffic)",
        o.final_watermark,
        o.last_commit,
        o.max_lag,
        o.max_lag as f64 / position_rate
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
            "               documented bound grace + challenge + 2 x scan_interval + r = {:.3} s",
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
                    "  pinned       the acknowledged position is stuck at {pinned}: {behind} positions (~{:.1} s of traffic) behind, and growing; --policy evict would move it on",
                    behind as f64 / position_rate
                );
            } else {
                println!(
                    "  without it   the acknowledged position would have stayed at {pinned}: {behind} positions (~{:.1} s of traffic) behind at the end, growing by {:.0} commits/s; with it the final lag is {}",
                    behind as f64 / position_rate,
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
        "  oracle       {} published watermarks checked against fsynced data and tracked commits: {} violations; {} shapes rebuilt on healthy consumers",
        o.oracle.checks,
        read(&o.counters.violations),
        r.rebuilt
    );
    if let Some(v) = &o.oracle.first_violation {
        failures.push(v.clone());
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
