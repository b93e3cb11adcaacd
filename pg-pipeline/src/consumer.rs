//! Consumer threads: each owns some shapes' `Writer`s and files, appends their changes, makes
//! them durable with one group `fsync` round, and only then reports `flushed`.
//!
//! A consumer that fails (an I/O error, a panic) takes its shapes with it, in this order: it
//! marks every shape it owns for rebuild (the `.invalid` marker, durable), tells the reader
//! (which rebuilds them like evicted shapes and routes nothing more to it), and only then lets
//! its writers go. From then on it marks and drops every shape still handed to it. So the
//! watermark never moves past a row it never wrote without a durable marker saying so; if
//! even the markers cannot be written, the process aborts before anything more is
//! acknowledged.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use flushwatch::Writer;

use crate::files;
use crate::rebuild;
use crate::shapes::{Layout, ShapeKey};

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
    /// Answer once every earlier message is handled (start-up: files open and synced).
    Ready(Sender<()>),
}

/// A consumer's death notice: it failed, and these shapes are marked for rebuild (durably)
/// and their writers dropped or about to be.
pub struct Dead {
    pub consumer: usize,
    pub marked: Vec<ShapeKey>,
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

/// The one-shot wedge: the consumer owning `shape` stops after `at`, which is set once the
/// start-up (every file open) is over, so that it counts from the stream's start whatever the
/// number of shapes.
pub struct Wedge {
    pub shape: Option<ShapeKey>,
    /// Stop as soon as any shape of that consumer has unflushed lines, not only `shape` (at
    /// 300,000 shapes one shape gets a row every few minutes).
    pub any: bool,
    pub at: std::sync::OnceLock<Instant>,
    pub fired: AtomicBool,
}

struct Shape {
    writer: Writer<ShapeKey>,
    /// The open file, while the consumer's descriptor budget allows; otherwise each round
    /// opens, appends and closes it (`syncfs` covers closed files as well).
    file: Option<File>,
    path: PathBuf,
    /// The file's length once `pending` is written; `None` until its first write in this
    /// process opens it. Files are opened (and created) at their first write, not at start-up:
    /// creating 300,000 files up front took minutes, and most shapes get a row rarely.
    len: Option<u64>,
    pending: Vec<u8>,
    /// The highest commit whose lines are in `pending` or the file.
    received: u64,
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
    pub layout: Layout,
    pub out: PathBuf,
    pub dead: Sender<Dead>,
    /// Fault injection (`io-error`): this consumer's sync of round N fails.
    pub fail_at_round: Option<u64>,
    /// How many shape files this consumer keeps open. At 300,000 shapes one descriptor per
    /// shape is more than a process gets by default (`run` raises RLIMIT_NOFILE as far as
    /// it may and shares what it got); shapes beyond the budget are opened per round.
    pub fd_budget: usize,
}

/// What a consumer holds; outside the unwinding part, so that a failure can still mark it.
#[derive(Default)]
struct State {
    shapes: HashMap<ShapeKey, Shape>,
    /// Writers received but not yet in `shapes` (their file failed to open).
    orphans: Vec<Writer<ShapeKey>>,
    dirty: Vec<ShapeKey>,
    rounds: u64,
    /// Shape files held open (at most `fd_budget`).
    open_files: usize,
    /// The output directory, for `syncfs` (any descriptor on the file system will do).
    dir: Option<File>,
}

impl Consumer {
    /// Serves until the reader hangs up; on a failure, takes its shapes with it (module docs).
    pub fn run(self) {
        let mut st = State::default();
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| self.serve(&mut st)));
        let why = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(e)) => format!("{e:#}"),
            Err(p) => p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into()),
        };
        self.die(st, &why);
    }

    fn die(&self, st: State, why: &str) {
        let i = self.index;
        let keys: Vec<ShapeKey> = st
            .shapes
            .iter()
            .filter(|(_, s)| !s.writer.is_evicted())
            .map(|(k, _)| *k)
            .chain(st.orphans.iter().map(|w| *w.key()))
            .collect();
        log!(
            "consumer {i}: failed: {why}; marking its {} shape(s) for rebuild before its writers go",
            keys.len()
        );
        self.mark_or_abort(&keys);
        let _ = self.dead.send(Dead {
            consumer: i,
            marked: keys,
        });
        // The writers end here (`WriterDown` for the pending ones), after their markers are
        // durable and the reader is told.
        drop(st);
        while let Ok(msg) = self.rx.recv() {
            match msg {
                Msg::Adopt { key, writer, .. } => {
                    self.mark_or_abort(&[key]);
                    let _ = self.dead.send(Dead {
                        consumer: i,
                        marked: vec![key],
                    });
                    drop(writer);
                }
                Msg::Ready(tx) => {
                    let _ = tx.send(());
                }
                Msg::Txn { .. } => {}
            }
        }
    }

    fn mark_or_abort(&self, keys: &[ShapeKey]) {
        if let Err(e) = rebuild::mark_invalid(&self.layout, &self.out, keys) {
            log!(
                "consumer {}: cannot mark its shapes for rebuild ({e:#}): aborting before anything more is acknowledged",
                self.index
            );
            std::process::abort();
        }
    }

    fn serve(&self, st: &mut State) -> Result<()> {
        let i = self.index;
        let mut held: Vec<bytes::Bytes> = Vec::new();
        let mut deadline: Option<Instant> = None;
        loop {
            let first = match deadline {
                Some(d) => self.rx.recv_deadline(d),
                None => self.rx.recv_timeout(Duration::from_millis(100)),
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
                        let (file, len) = match rebuild {
                            // Opened at its first write (`flush`).
                            None => (None, None),
                            Some(r) => {
                                let done = finish_rebuild(&path, r).and_then(|f| {
                                    let len = f.metadata().context("stat")?.len();
                                    Ok((f, len))
                                });
                                let (file, len) = match done {
                                    Ok(x) => x,
                                    Err(e) => {
                                        st.orphans.push(writer);
                                        return Err(e);
                                    }
                                };
                                // A rebuilt file was synced: all it holds is durable.
                                files::synced(&path, len);
                                (Some(file), Some(len))
                            }
                        };
                        let file = file.filter(|_| st.open_files < self.fd_budget);
                        st.open_files += usize::from(file.is_some());
                        if let Some(old) = st.shapes.get(&key) {
                            st.open_files -= usize::from(old.file.is_some());
                        }
                        st.shapes.insert(
                            key,
                            Shape {
                                writer,
                                file,
                                path,
                                len,
                                pending: Vec::new(),
                                received: 0,
                            },
                        );
                    }
                    Msg::Ready(tx) => {
                        // Whatever an earlier process left in the page cache is made durable
                        // before anything is streamed.
                        if !st.shapes.is_empty() {
                            let _g = files::io_gate();
                            files::syncfs(self.dir(&mut st.dir)?, std::iter::empty())
                                .context("syncfs at start-up")?;
                        }
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
                            let Some(s) = st.shapes.get_mut(&key) else {
                                continue;
                            };
                            if s.pending.is_empty() {
                                st.dirty.push(key);
                            }
                            s.pending.extend_from_slice(&lines);
                            s.received = commit;
                        }
                        if !st.dirty.is_empty() {
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
                let dirty = if self.wedge.any {
                    st.shapes.contains_key(w) && !st.dirty.is_empty()
                } else {
                    st.shapes.get(w).is_some_and(|s| !s.pending.is_empty())
                };
                if self.wedge.at.get().is_some_and(|at| Instant::now() >= *at)
                    && dirty
                    // Relaxed: only the swap's atomicity matters (one consumer wedges, once).
                    && !self.wedge.fired.swap(true, Ordering::Relaxed)
                {
                    log!(
                        "wedge: consumer {i} (owner of {w}) stops, holding {} shapes ({} with unflushed changes)",
                        st.shapes.len(),
                        st.dirty.len()
                    );
                    // Stuck as in a deadlock: alive, holding its writers, reporting nothing.
                    // Relaxed: a stop request.
                    while !self.stop.load(Ordering::Relaxed) {
                        thread::sleep(Duration::from_millis(50));
                    }
                    let evicted = st.shapes.values().filter(|s| s.writer.is_evicted()).count();
                    log!("wedge: consumer {i} unwedged; {evicted} of its shapes were evicted");
                    // Its writers go with it (evicted ones are inert); its unflushed lines are
                    // dropped unwritten, as a crash would.
                    return Ok(());
                }
            }
            if disconnected || deadline.is_some_and(|d| Instant::now() >= d) {
                self.flush(st)?;
                deadline = None;
            }
            if disconnected {
                return Ok(());
            }
        }
    }

    /// One group-commit round: write every dirty shape, make them durable, then report each.
    fn flush(&self, st: &mut State) -> Result<()> {
        if st.dirty.is_empty() {
            return Ok(());
        }
        let c = &self.counters;
        st.rounds += 1;
        let State {
            shapes,
            dirty,
            rounds,
            dir,
            open_files,
            ..
        } = st;
        let mut written = Vec::with_capacity(dirty.len());
        for key in dirty.drain(..) {
            let s = shapes.get_mut(&key).expect("dirty shapes are owned");
            if s.writer.is_evicted() {
                // Its rebuild will write the file anew; writing here would race it.
                s.pending.clear();
                continue;
            }
            // A shape over the descriptor budget is opened for this round only.
            let mut this_round = None;
            if s.file.is_none() {
                let f = match s.len {
                    Some(_) => OpenOptions::new().append(true).open(&s.path),
                    None => {
                        // Its first write in this process: create the file, or cut a partial
                        // last line a crash left. What it holds now is durable (`Ready`
                        // synced whatever an earlier process left).
                        let created = !s.path.exists();
                        let f = files::open_append(&s.path)?;
                        let len = f.metadata()?.len();
                        files::synced(&s.path, len);
                        s.len = Some(len);
                        if created && self.sync == SyncMode::Fdatasync {
                            // fdatasync does not cover the new directory entry.
                            let dir = s.path.parent().expect("shape files live in a directory");
                            File::open(dir)?.sync_all()?;
                        }
                        Ok(f)
                    }
                }
                .with_context(|| format!("opening {}", s.path.display()))?;
                if *open_files < self.fd_budget {
                    *open_files += 1;
                    s.file = Some(f);
                } else {
                    this_round = Some(f);
                }
            }
            let file = s.file.as_ref().or(this_round.as_ref()).expect("opened");
            {
                let _g = files::io_gate();
                (&*file).write_all(&s.pending)?;
            }
            *s.len.get_or_insert(0) += s.pending.len() as u64;
            s.pending.clear();
            written.push(key);
            if self.sync == SyncMode::Fdatasync {
                let _g = files::io_gate();
                self.injected_fault(*rounds)?;
                files::sync_data(file, &s.path, s.len.unwrap_or(0))?;
                c.fsyncs.fetch_add(1, Ordering::Relaxed);
            }
        }
        if self.sync == SyncMode::Syncfs && !written.is_empty() {
            let dir = self.dir(dir)?;
            {
                let _g = files::io_gate();
                self.injected_fault(*rounds)?;
                let shapes = &*shapes;
                files::syncfs(
                    dir,
                    written
                        .iter()
                        .map(|k| (shapes[k].path.as_path(), shapes[k].len.unwrap_or(0))),
                )
                .context("syncfs")?;
                c.fsyncs.fetch_add(1, Ordering::Relaxed);
            }
        }
        // This thread's CPU time across the reports (the loop does nothing else).
        let t = crate::stream::thread_cpu_ns();
        for key in &written {
            let s = &shapes[key];
            // Only now is every commit up to `received` durable for this shape.
            s.writer.flushed(s.received);
        }
        c.flushed_ns
            .fetch_add(crate::stream::cpu_interval(t), Ordering::Relaxed);
        shapes.retain(|_, s| {
            let keep = !s.writer.is_evicted();
            if !keep {
                *open_files -= usize::from(s.file.is_some());
            }
            keep
        });
        c.rounds.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The output directory, opened once (for `syncfs`).
    fn dir<'a>(&self, dir: &'a mut Option<File>) -> Result<&'a File> {
        if dir.is_none() {
            *dir = Some(
                File::open(&self.out).with_context(|| format!("opening {}", self.out.display()))?,
            );
        }
        Ok(dir.as_ref().expect("just opened"))
    }

    /// `PG_PIPELINE_FAULT=io-error`: the sync of this consumer's round N fails, after its
    /// files were written (the page cache has lines that are not durable).
    fn injected_fault(&self, round: u64) -> std::io::Result<()> {
        if self.fail_at_round.is_some_and(|n| round >= n) {
            return Err(std::io::Error::other(format!(
                "injected fsync error at round {round} (PG_PIPELINE_FAULT=io-error)"
            )));
        }
        Ok(())
    }
}

/// Completes a rebuilt shape: append the catch-up to the snapshot file, make it durable, put
/// it in place of the old file, and only then drop the marker that says "rebuild me".
fn finish_rebuild(path: &Path, r: Rebuilt) -> Result<File> {
    let mut f =
        files::open_append(&r.tmp).with_context(|| format!("opening {}", r.tmp.display()))?;
    f.write_all(&r.catch_up)?;
    f.sync_data()?;
    fs::rename(&r.tmp, path)?;
    let dir = path.parent().expect("shape files live in a directory");
    File::open(dir)?.sync_all()?;
    fs::remove_file(&r.marker)?;
    File::open(dir)?.sync_all()?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flushwatch::{Config, FlushTracker};

    /// A consumer whose sync fails marks every shape it owns for rebuild, durably, and tells
    /// the reader, before its writers go; a shape handed to it afterwards gets the same.
    #[test]
    fn a_failing_consumer_marks_its_shapes_before_its_writers_go() {
        let out = std::env::temp_dir().join(format!("pgp-consumer-{}", std::process::id()));
        let layout = Layout {
            tables: vec!["public.t0".into()],
            per_table: 4,
            key_column: "id".into(),
        };
        fs::create_dir_all(layout.dir(&out, 0)).unwrap();
        let tracker: FlushTracker<ShapeKey> = FlushTracker::new(Config::default()).unwrap();
        let key = |k| ShapeKey { table: 0, k };
        let (tx, rx) = crossbeam_channel::unbounded();
        let (dead_tx, dead_rx) = crossbeam_channel::unbounded();
        let c = Consumer {
            index: 3,
            sync: SyncMode::Syncfs,
            rx,
            fsync_interval: Duration::from_millis(1),
            wedge: Arc::new(Wedge {
                shape: None,
                any: false,
                at: std::sync::OnceLock::new(),
                fired: AtomicBool::new(false),
            }),
            stop: Arc::new(AtomicBool::new(false)),
            counters: Arc::new(Counters::default()),
            layout: layout.clone(),
            out: out.clone(),
            dead: dead_tx,
            fail_at_round: Some(1),
            fd_budget: 1,
        };
        let thread = thread::spawn(move || c.run());
        let mut ids = Vec::new();
        for k in 0..2 {
            let writer = tracker.register(key(k)).unwrap();
            ids.push(writer.id());
            let path = layout.path(&out, key(k));
            tx.send(Msg::Adopt {
                key: key(k),
                writer,
                path,
                rebuild: None,
            })
            .unwrap();
        }
        tracker.track(10, &ids).unwrap();
        let lines = |k: u32| (key(k), bytes::Bytes::from(format!("a I {k} x\n")));
        tx.send(Msg::Txn {
            commit: 10,
            previous: 0,
            hold: false,
            items: vec![lines(0), lines(1)],
        })
        .unwrap();
        let dead = dead_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a death notice");
        assert_eq!(dead.consumer, 3);
        let mut marked = dead.marked.clone();
        marked.sort();
        assert_eq!(marked, vec![key(0), key(1)]);
        for k in 0..2 {
            assert!(
                layout.invalid_marker(&out, key(k)).exists(),
                "marked before the notice"
            );
        }
        // Dead: a shape handed to it now is marked and let go too.
        let writer = tracker.register(key(2)).unwrap();
        let path = layout.path(&out, key(2));
        tx.send(Msg::Adopt {
            key: key(2),
            writer,
            path,
            rebuild: None,
        })
        .unwrap();
        let dead = dead_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a second notice");
        assert_eq!(dead.marked, vec![key(2)]);
        assert!(layout.invalid_marker(&out, key(2)).exists());
        drop(tx);
        thread.join().unwrap();
        for k in 0..3 {
            assert!(tracker.id_of(&key(k)).is_none(), "its writers are gone");
        }
        tracker.scan();
        assert_eq!(
            tracker.watermark(),
            10,
            "they no longer pin the watermark: the markers say rebuild"
        );
        fs::remove_dir_all(&out).unwrap();
    }
}
