//! CPU clocks for the tracker's share: the process's (`getrusage`), a thread's
//! (`CLOCK_THREAD_CPUTIME_ID`, calibrated), and the scanner thread's (`/proc`), used by the
//! reader (`stream.rs`) and the consumers (`consumer.rs`).

use std::fs;
use std::sync::OnceLock;

/// CPU time (user + system) of this process, nanoseconds.
pub fn process_cpu_ns() -> u64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0;
    }
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The CPU time of this thread since `start` (a `thread_cpu_ns()`), minus the calibrated cost
/// of the two clock reads.
pub fn cpu_interval(start: u64) -> u64 {
    static CALIBRATION: OnceLock<u64> = OnceLock::new();
    let overhead = *CALIBRATION.get_or_init(|| {
        let mut v: Vec<u64> = (0..2001)
            .map(|_| {
                let a = thread_cpu_ns();
                thread_cpu_ns().saturating_sub(a)
            })
            .collect();
        v.sort_unstable();
        v[v.len() / 2]
    });
    thread_cpu_ns()
        .saturating_sub(start)
        .saturating_sub(overhead)
}

/// CPU time of the calling thread, nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    // SAFETY: clock_gettime fills the struct we pass.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time of the tracker's scanner thread, nanoseconds (0 if not found).
pub fn scanner_cpu_ns() -> u64 {
    let Ok(dir) = fs::read_dir("/proc/self/task") else {
        return 0;
    };
    for e in dir.flatten() {
        let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.trim_end().starts_with("flushwatch-scan") {
            // schedstat: nanoseconds on the CPU first.
            if let Some(ns) = fs::read_to_string(e.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split(' ').next()?.parse().ok())
            {
                return ns;
            }
            return stat_cpu_ns(&e.path().join("stat").to_string_lossy()).unwrap_or(0);
        }
    }
    0
}

fn stat_cpu_ns(path: &str) -> Option<u64> {
    let s = fs::read_to_string(path).ok()?;
    // Fields after the command (which is in parentheses and may hold spaces).
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(ticks * 10_000_000)
}
