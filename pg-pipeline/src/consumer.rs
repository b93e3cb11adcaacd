//! Consumer threads: each owns some shapes' `Writer`s and files, appends their changes, makes
//! them durable with one group `fsync` round, and only then reports `flushed`.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use flushwatch::Writer;

use crate::files;
use crate::shapes::ShapeKey;

/// What the reader sends a consumer.
pub enum Msg {
    /// Own this shape from now on. For a rebuilt shape, `rebuild` holds the snapshot file to
    /// complete with the catch-up lines, then rename over `path`.
    Adopt {
        key: ShapeKey,
        writer: Writer<ShapeKey>,
        path: PathBuf,
        rebuild: Option<Rebuilt>,
    },
    /// One transaction's lines for some of this consumer's shapes.
    Txn {
        commit: u64,
        /// The commit tracked just before `commit`: what a shape that wrote only part of this
        /// transaction may report (we always write a transaction's lines for a shape in one
        /// piece, so it is carried for the contract, not needed).
        #[allow(dead_code)]
        previous: u64,
        /// Fault injection (kill window): keep these lines in memory, never write them.
        hold: bool,
        items: Vec<(ShapeKey, bytes::Bytes)>,
    },
    /// Answer once every earlier message is handled (start-up: files open).
    Ready(crossbeam_channel::Sender<()>),
}

/// A rebuilt shape's snapshot, waiting for its catch-up and its rename.
pub struct Rebuilt {
    pub tmp: PathBuf,
    pub marker: PathBuf,
    pub catch_up: Vec<u8>,
}

/// Counters shared by the consumers. `Relaxed`: statistics, they publish nothing.
#[derive(Default)]
pub struct Counters {
    pub rows: AtomicU64,
    pub fsyncs: AtomicU64,
    pub rounds: AtomicU64,
    /// Nanoseconds spent inside `Writer::flushed`.
    pub flushed_ns: AtomicU64,
    pub rebuilt: AtomicU64,
}

/// The one-shot wedge: the consumer owning `shape` stops after `at`.
pub struct Wedge {
    pub shape: Option<ShapeKey>,
    pub at: Instant,
    pub fired: AtomicBool,
}

struct Shape {
    writer: Writer<ShapeKey>,
    file: File,
    pending: Vec<u8>,
    /// The highest commit whose lines are in `pending` or the file.
    received: u64,
    /// Written in this round, to be reported once it is durable.
    report: bool,
}

/// How a consumer makes one round durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// `fdatasync` each dirty file.
    Fdatasync,
    /// Write every dirty file, then one `syncfs(2)` for the file system they are on. Linux
    /// waits for the I/O, so this gives the guarantee of an `fsync` of every file on it
    /// (syncfs(2), NOTES), in one call: one journal commit for the whole round.
    Syncfs,
}

pub struct Consumer {
    pub index: usize,
    pub sync: SyncMode,
    pub rx: Receiver<Msg>,
    pub fsync_interval: Duration,
    pub wedge: Arc<Wedge>,
    pub stop: Arc<AtomicBool>,
    pub counters: Arc<Counters>,
}

impl Consumer {
    pub fn run(self) -> Result<()> {
        let i = self.index;
        let mut shapes: HashMap<ShapeKey, Shape> = HashMap::new();
        let mut dirty: Vec<ShapeKey> = Vec::new();
        let mut held: Vec<bytes::Bytes> = Vec::new();
        let mut deadline: Option<Instant> = None;
        loop {
            let first = match deadline {
                Some(d) => self.rx.recv_deadline(d),
                None => self
                    .rx
                    .recv_timeout(Duration::from_millis(100)),
            };
            let mut disconnected = false;
            let mut next = match first {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    disconnected = true;
                    None
                }
            };
            let mut handled = 0;
            while let Some(msg) = next.take() {
                handled += 1;
                match msg {
                    Msg::Adopt {
                        key,
                        writer,
                        path,
                        rebuild,
                    } => {
                        let file = match rebuild {
                            None => files::open_append(&path)
                                .with_context(|| format!("opening {}", path.display()))?,
                            Some(r) => finish_rebuild(&path, r)?,
                        };
                        shapes.insert(
                            key,
                            Shape {
                                writer,
                                file,
                                pending: Vec::new(),
                                received: 0,
                                report: false,
                            },
                        );
                    }
                    Msg::Ready(tx) => {
                        let _ = tx.send(());
                    }
                    Msg::Txn {
                        commit,
                        hold,
                        items,
                        ..
                    } => {
                        for (key, lines) in items {
                            if hold {
                                held.push(lines);
                                continue;
                            }
                            let Some(s) = shapes.get_mut(&key) else {
                                continue;
                            };
                            if s.pending.is_empty() {
                                dirty.push(key);
                            }
                            s.pending.extend_from_slice(&lines);
                            s.received = commit;
                        }
                        if !dirty.is_empty() {
                            deadline.get_or_insert_with(|| Instant::now() + self.fsync_interval);
                        }
                    }
                }
                if handled < 4096 {
                    next = self.rx.try_recv().ok();
                }
            }
            if let Some(w) = &self.wedge.shape {
                // Only while that shape has unflushed lines: then it is pending from the
                // wedge on, and the time to its eviction is the detection time.
                if Instant::now() >= self.wedge.at
                    && shapes.get(w).is_some_and(|s| !s.pending.is_empty())
                    // Relaxed: only the swap's atomicity matters (one consumer wedges, once).
                    && !self.wedge.fired.swap(true, Ordering::Relaxed)
                {
                    log!(
                        "wedge: consumer {i} (owner of {w}) stops, holding {} shapes ({} with unflushed changes)",
                        shapes.len(),
                        dirty.len()
                    );
                    // Stuck as in a deadlock: alive, holding its writers, reporting nothing.
                    // Relaxed: a stop request.
                    while !self.stop.load(Ordering::Relaxed) {
                        thread::sleep(Duration::from_millis(50));
                    }
                    let evicted = shapes.values().filter(|s| s.writer.is_evicted()).count();
                    log!("wedge: consumer {i} unwedged; {evicted} of its shapes were evicted");
                    // Its writers go with it (evicted ones are inert); its unflushed lines are
                    // dropped unwritten, as a crash would.
                    return Ok(());
                }
            }
            if disconnected || deadline.is_some_and(|d| Instant::now() >= d) {
                self.flush(&mut shapes, &mut dirty)?;
                deadline = None;
            }
            if disconnected {
                let _ = held;
                return Ok(());
            }
        }
    }

    /// One group-commit round: write every dirty shape, `fsync` each, then report each.
    fn flush(&self, shapes: &mut HashMap<ShapeKey, Shape>, dirty: &mut Vec<ShapeKey>) -> Result<()> {
        if dirty.is_empty() {
            return Ok(());
        }
        let c = &self.counters;
        let mut any: Option<&File> = None;
        for key in dirty.iter() {
            let s = shapes.get_mut(key).expect("dirty shapes are owned");
            if s.writer.is_evicted() {
                // Its rebuild will write the file anew; writing here would race it.
                s.pending.clear();
                continue;
            }
            s.file.write_all(&s.pending)?;
            s.pending.clear();
            s.report = true;
            if self.sync == SyncMode::Fdatasync {
                s.file.sync_data()?;
                c.fsyncs.fetch_add(1, Ordering::Relaxed);
            }
        }
        if self.sync == SyncMode::Syncfs {
            if let Some(key) = dirty.first() {
                any = shapes.get(key).map(|s| &s.file);
            }
        }
        if let Some(f) = any {
            use std::os::fd::AsRawFd;
            // SAFETY: a plain syscall on a file descriptor we own for the duration of the call.
            if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
                return Err(std::io::Error::last_os_error()).context("syncfs");
            }
            c.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        // This thread's CPU time across the reports (the loop does nothing else).
        dirty.clear();
        let t = crate::stream::thread_cpu_ns();
        for s in shapes.values_mut() {
            if s.report {
                // Only now is every commit up to `received` durable for this shape.
                s.writer.flushed(s.received);
                s.report = false;
            }
        }
        c.flushed_ns
            .fetch_add(crate::stream::cpu_interval(t), Ordering::Relaxed);
        shapes.retain(|_, s| !s.writer.is_evicted());
        c.rounds.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Completes a rebuilt shape: append the catch-up to the snapshot file, make it durable, put
/// it in place of the old file, and only then drop the marker that says "rebuild me".
fn finish_rebuild(path: &PathBuf, r: Rebuilt) -> Result<File> {
    let mut f = files::open_append(&r.tmp).with_context(|| format!("opening {}", r.tmp.display()))?;
    f.write_all(&r.catch_up)?;
    f.sync_data()?;
    fs::rename(&r.tmp, path)?;
    let dir = path.parent().expect("shape files live in a directory");
    File::open(dir)?.sync_all()?;
    fs::remove_file(&r.marker)?;
    File::open(dir)?.sync_all()?;
    Ok(f)
}
