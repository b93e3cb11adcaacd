//! Measurements `scripts/pg-scale` reads from the `done:` line: the acknowledgement lag, the
//! scans' durations, the process's peak memory, and a clean stop on SIGTERM.
//!
//! - **Acknowledgement lag** (`--ack-lag`): for each commit streamed live, the time from the
//!   server's commit timestamp (pgoutput's Commit message) to the moment the slot's
//!   `confirmed_flush_lsn`, polled every 5 ms on a connection of its own, reaches the commit.
//!   Both clocks are the same machine's wall clock; the polling makes each figure up to 5 ms
//!   (plus one query) late, never early.
//! - **Scan durations**: the tracker's `stats()` (its `last_scan`, whenever `scans` moves),
//!   sampled every 2 ms; a scan runs every `scan_interval` (at least a few ms), so each is seen.
//! - **The first eviction** (with a wedge): the same thread watches `stats().evicted` and logs
//!   the moment it first moves (`probe: first eviction`), within 2 ms of the scan that
//!   evicted. The `event:` lines come later: the reader drains events before each
//!   acknowledgement.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, TryRecvError};
use flushwatch::FlushTracker;
use pgwire_replication::Lsn;

use crate::shapes::ShapeKey;

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// A PostgreSQL timestamp (microseconds since 2000-01-01) as Unix microseconds.
pub fn pg_to_unix_us(pg_us: i64) -> i64 {
    pg_us + PG_EPOCH_US
}

pub fn now_unix_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Set by SIGTERM: the reader stops as after `--duration` (last acknowledgement, `done:` line).
pub static TERM: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    // Relaxed: a stop request, polled by the reader's tick.
    TERM.store(true, Ordering::Relaxed);
}

/// Installs the SIGTERM handler.
pub fn stop_on_sigterm() {
    let handler: extern "C" fn(libc::c_int) = on_term;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { libc::signal(libc::SIGTERM, handler as libc::sighandler_t) };
}

/// A live commit, as the reader saw it: end LSN, server commit time and the time the reader
/// received it (Unix microseconds).
pub type Seen = (u64, i64, i64);

/// Each commit's acknowledgement lag, split: the whole (server commit to confirmed), before the
/// reader received it (the server's decoding and sending), and after (the pipeline and the
/// acknowledgement's way back), in microseconds.
#[derive(Default)]
pub struct Lags {
    pub whole: Vec<u64>,
    pub received: Vec<u64>,
    pub after_receipt: Vec<u64>,
}

/// Polls the slot's `confirmed_flush_lsn` and matches it against the commits the reader sends
/// (in LSN order); returns the lags once `stop` is set or the sender is gone and every commit
/// was confirmed (or 5 s passed after `stop`).
pub fn ack_lag(
    conn: String,
    slot: String,
    rx: Receiver<Seen>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Result<Lags>> {
    thread::spawn(move || {
        let mut c = postgres::Client::connect(&conn, postgres::NoTls)
            .context("ack-lag probe: connecting")?;
        let mut waiting: VecDeque<Seen> = VecDeque::new();
        let mut lags = Lags::default();
        let mut closed = false;
        let mut stop_at: Option<std::time::Instant> = None;
        // Each commit's times (LSN, server commit, received, confirmed; Unix microseconds),
        // for finding when a tail happened.
        // A path that cannot be created is an error, not a trace silently missing.
        let mut trace = std::env::var_os("PG_PIPELINE_LAG_TRACE")
            .map(|p| {
                std::fs::File::create(&p)
                    .map(std::io::BufWriter::new)
                    .with_context(|| format!("PG_PIPELINE_LAG_TRACE: creating {p:?}"))
            })
            .transpose()?;
        loop {
            loop {
                match rx.try_recv() {
                    Ok(x) => waiting.push_back(x),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            let s: String = c
                .query_one(
                    "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                    &[&slot],
                )?
                .get(0);
            let confirmed = Lsn::parse(&s).map_or(0, Lsn::as_u64);
            let now = now_unix_us();
            while waiting.front().is_some_and(|(lsn, _, _)| *lsn <= confirmed) {
                let (lsn, t, r) = waiting.pop_front().expect("checked");
                if let Some(f) = trace.as_mut() {
                    writeln!(f, "{lsn} {t} {r} {now}").context("PG_PIPELINE_LAG_TRACE: writing")?;
                }
                lags.whole.push(now.saturating_sub(t).max(0) as u64);
                lags.received.push(r.saturating_sub(t).max(0) as u64);
                lags.after_receipt.push(now.saturating_sub(r).max(0) as u64);
            }
            // Relaxed: a stop request.
            if stop.load(Ordering::Relaxed) || closed {
                let at = *stop_at.get_or_insert_with(std::time::Instant::now);
                if waiting.is_empty() || at.elapsed() > Duration::from_secs(5) {
                    if let Some(f) = trace.as_mut() {
                        f.flush().context("PG_PIPELINE_LAG_TRACE: writing")?;
                    }
                    return Ok(lags);
                }
            }
            thread::sleep(Duration::from_millis(5));
        }
    })
}

/// Samples the tracker's scan durations (nanoseconds) until `stop` is set; with `evictions`,
/// logs when the first shape is evicted.
pub fn scan_sampler(
    tracker: FlushTracker<ShapeKey>,
    evictions: bool,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Vec<u64>> {
    thread::spawn(move || {
        let mut seen = tracker.stats().scans;
        let mut out = Vec::new();
        let mut watch = evictions.then_some(tracker.stats().evicted);
        // Relaxed: a stop request.
        while !stop.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(2));
            let s = tracker.stats();
            if s.scans != seen {
                seen = s.scans;
                out.push(s.last_scan.as_nanos() as u64);
            }
            if watch.is_some_and(|e| s.evicted > e) {
                log!("probe: first eviction ({} shape(s) evicted)", s.evicted);
                watch = None;
            }
        }
        out
    })
}

/// The `q` quantile (0..=1) of `v` (sorted in place), in milliseconds from `unit_ns`-unit
/// values; NaN when empty.
pub fn quantile_ms(v: &mut [u64], q: f64, unit_ns: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i.min(v.len() - 1)] as f64 * unit_ns / 1e6
}

/// The process's peak resident set (`VmHWM`), kilobytes (0 if unknown).
pub fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Raises this process's open-file limit as far as it may go (the soft limit to the hard one,
/// and the hard one up to `want` where the process is allowed to); returns the soft limit now.
pub fn raise_nofile(want: u64) -> u64 {
    // SAFETY: getrlimit/setrlimit fill and read the struct we pass.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        if r.rlim_cur >= want {
            return r.rlim_cur;
        }
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: want.max(r.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            return raised.rlim_cur;
        }
        r.rlim_cur = r.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &r) == 0 {
            return r.rlim_cur;
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_epochs() {
        let mut v = vec![5, 1, 4, 2, 3];
        assert_eq!(quantile_ms(&mut v, 0.5, 1e6), 3.0);
        assert_eq!(quantile_ms(&mut v, 1.0, 1e6), 5.0);
        assert_eq!(quantile_ms(&mut v, 0.0, 1e3), 0.001);
        assert!(quantile_ms(&mut [], 0.5, 1.0).is_nan());
        // 2000-01-01T00:00:00Z.
        assert_eq!(pg_to_unix_us(0), 946_684_800 * 1_000_000);
        assert!(peak_rss_kb() > 0);
    }
}
