//! The live view: a progress bar (`indicatif`) with commits/s, flushes/s, the watermark and
//! its lag behind the last commit, and the pending / suspected / stalled / evicted counts;
//! when stdout is not a terminal, one plain line per second instead.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use flushwatch::FlushTracker;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::{Counters, Key};

/// Where lines go: above the progress bar, or straight to stdout.
#[derive(Clone)]
pub enum Ui {
    Bar(ProgressBar),
    Plain,
}

impl Ui {
    /// A progress bar over `duration` when stdout is a terminal, plain lines otherwise.
    pub fn new(duration: Duration) -> Result<Ui, Box<dyn std::error::Error>> {
        if !std::io::stdout().is_terminal() {
            return Ok(Ui::Plain);
        }
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
        Ok(Ui::Bar(bar))
    }

    /// Prints a line, stamped with the time since `started`.
    pub fn line(&self, started: Instant, msg: impl AsRef<str>) {
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

    /// Clears the progress bar, if any.
    pub fn finish(&self) {
        if let Ui::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// Shows the live view until `duration` since `started` is up: samples the tracker every
/// 100 ms (for the largest lag), redraws every 200 ms, or prints one plain line a second.
/// Returns the largest lag seen (`last_seen - watermark`, in log positions).
pub fn run(
    ui: &Ui,
    tracker: &FlushTracker<Key>,
    counters: &Counters,
    started: Instant,
    duration: Duration,
) -> u64 {
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
        // Published values only: `stats` runs no scan.
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
        // Positions are sparse: turn the lag into time with the log's average position rate.
        let lag_ms = if st.last_seen == 0 {
            0.0
        } else {
            lag as f64 * started.elapsed().as_secs_f64() * 1000.0 / st.last_seen as f64
        };
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
        match ui {
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
    max_lag
}
