//! Consumer threads: each owns some shapes' `Writer`s and files, appends their changes, makes
//! them durable with one group `fsync` round, and only then reports `flushed`. By default
//! (`SyncMode::Log`) a round appends the changes to the consumer's log segment and syncs that
//! one file; the shape files are written behind (`wal.rs`).
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
use crate::wal;

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
    /// `SyncMode::Log`: the file the log's records are written against (set with `len`).
    ident: Option<wal::Ident>,
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
    /// Append the round to the consumer's log segment and `fdatasync` it: one sequential
    /// write per round, whatever the number of shapes; the shape files are written behind
    /// (`wal.rs`).
    Log,
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
    /// `SyncMode::Log`: where full segments go (the write-behind thread).
    pub behind: Option<wal::Behind>,
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
    /// `SyncMode::Log`: the open segment, and the next one's sequence number.
    seg: Option<wal::Segment>,
    seq: u64,
    /// When evicted shapes were last let go (see `report`).
    swept: Option<Instant>,
}

impl Consumer {
    /// Serves until the reader hangs up; on a failure, takes its shapes with it (module docs).
    pub fn run(self) {
        let mut st = State::default();
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| self.serve(&mut st)));
        // Whatever its segment holds that a sync covered is the write-behind's to apply (a
        // dead consumer's shapes are marked: their records end stale or applied to a file a
        // rebuild replaces, either way harmless).
        if let (Some(seg), Some(b)) = (st.seg.take(), &self.behind) {
            let _ = b.hand_over(seg);
        }
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
                        let ident = match (&file, self.sync) {
                            (Some(f), SyncMode::Log) => {
                                Some(wal::Ident::of(f).context("the rebuilt file's identity")?)
                            }
                            _ => None,
                        };
                        // Under the log, consumers never write shape files: no descriptor.
                        let file = file.filter(|_| self.sync != SyncMode::Log);
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
                                ident,
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
            // An idle consumer hands over its segment once it is old, so that the shape
            // files do not wait for its next round.
            self.retire_if_full(st)?;
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
        if self.sync == SyncMode::Log {
            return self.flush_to_log(st);
        }
        let c = &self.counters;
        st.rounds += 1;
        let State {
            shapes,
            dirty,
            rounds,
            dir,
            open_files,
            swept,
            ..
        } = st;
        let mut written = Vec::with_capacity(dirty.len());
        for key in dirty.drain(..) {
            let Some(s) = live_dirty(shapes, key) else {
                continue;
            };
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
        self.report(shapes, &written, open_files, swept);
        Ok(())
    }

    /// A round under `SyncMode::Log`: one record per dirty shape in the segment, one
    /// `fdatasync`, then the reports; the segment goes to the write-behind once full.
    fn flush_to_log(&self, st: &mut State) -> Result<()> {
        let State {
            shapes,
            dirty,
            rounds,
            open_files,
            seg,
            seq,
            swept,
            ..
        } = st;
        *rounds += 1;
        if seg.is_none() {
            *seg =
                Some(wal::Segment::create(&self.out, self.index, *seq).context("new log segment")?);
            *seq += 1;
        }
        let segment = seg.as_mut().expect("just created");
        let mut written = Vec::with_capacity(dirty.len());
        for key in dirty.drain(..) {
            let Some(s) = live_dirty(shapes, key) else {
                continue;
            };
            let (ident, len) = match (s.ident, s.len) {
                (Some(i), Some(l)) => (i, l),
                _ => match wal::fresh_ident(&s.path) {
                    // No file yet: the write-behind creates it (`wal.rs`, "New files").
                    Some(i) => {
                        s.ident = Some(i);
                        (i, 0)
                    }
                    None => {
                        // Its first write in this process: open (or create) the file, and cut
                        // a partial last line. What it holds now is durable (recovery applied
                        // the log and synced, `Ready` synced what an earlier process left).
                        let f = files::open_append(&s.path)
                            .with_context(|| format!("opening {}", s.path.display()))?;
                        let len = f.metadata()?.len();
                        files::synced(&s.path, len);
                        let i = wal::Ident::of(&f)?;
                        s.ident = Some(i);
                        (i, len)
                    }
                },
            };
            segment.append(key, ident, len, &s.pending);
            s.len = Some(len + s.pending.len() as u64);
            s.pending.clear();
            written.push(key);
        }
        let round = *rounds;
        let appended = segment
            .commit(|| self.injected_fault(round))
            .context("appending to the log")?;
        if let Some(b) = &self.behind {
            b.logged(appended);
        }
        self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.report(shapes, &written, open_files, swept);
        self.retire_if_full(st)
    }

    /// Hands the segment to the write-behind once it is full or old.
    fn retire_if_full(&self, st: &mut State) -> Result<()> {
        if !st
            .seg
            .as_ref()
            .is_some_and(|s| s.full(self.behind.as_ref()))
        {
            return Ok(());
        }
        let done = st.seg.take().expect("open");
        match &self.behind {
            // Waits while the write-behind is `QUEUED_BYTES` behind: backpressure.
            Some(b) => b.hand_over(done),
            None => Ok(()),
        }
    }

    /// After a round is durable: report every shape written, and let evicted shapes go (at
    /// most once a second: that sweep reads every shape the consumer owns, 37,500 at 300,000
    /// shapes, and on every 10 ms round it took most of a drain's CPU).
    fn report(
        &self,
        shapes: &mut HashMap<ShapeKey, Shape>,
        written: &[ShapeKey],
        open_files: &mut usize,
        swept: &mut Option<Instant>,
    ) {
        let c = &self.counters;
        // The writers first, so that the timed loop below holds the `flushed` calls and
        // nothing of this consumer's own bookkeeping (its map lookups).
        let reports: Vec<(&Writer<ShapeKey>, u64)> = written
            .iter()
            .map(|key| {
                let s = &shapes[key];
                (&s.writer, s.received)
            })
            .collect();
        // This thread's CPU time across the reports (the loop does nothing else).
        let t = crate::cpu::thread_cpu_ns();
        for (writer, received) in &reports {
            // Only now is every commit up to `received` durable for this shape.
            writer.flushed(*received);
        }
        c.flushed_ns
            .fetch_add(crate::cpu::cpu_interval(t), Ordering::Relaxed);
        drop(reports);
        c.rounds.fetch_add(1, Ordering::Relaxed);
        if swept.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        *swept = Some(Instant::now());
        shapes.retain(|_, s| {
            let keep = !s.writer.is_evicted();
            if !keep {
                *open_files -= usize::from(s.file.is_some());
            }
            keep
        });
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

/// A dirty shape of a round, unless it was evicted: then its lines are dropped, since its
/// rebuild writes the file anew (writing here would race it).
fn live_dirty(shapes: &mut HashMap<ShapeKey, Shape>, key: ShapeKey) -> Option<&mut Shape> {
    let s = shapes.get_mut(&key).expect("dirty shapes are owned");
    if s.writer.is_evicted() {
        s.pending.clear();
        return None;
    }
    Some(s)
}

/// Completes a rebuilt shape: append the catch-up to the snapshot file, make it durable, put
/// it in place of the old file, and only then drop the marker that says "rebuild me".
fn finish_rebuild(path: &Path, r: Rebuilt) -> Result<File> {
    let mut f =
        files::open_append(&r.tmp).with_context(|| format!("opening {}", r.tmp.display()))?;
    f.write_all(&r.catch_up)?;
    // Its own identity: the log's records for the file it replaces are stale from here on.
    wal::stamp(&f)?;
    f.sync_all()?;
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

    fn key(k: u32) -> ShapeKey {
        ShapeKey { table: 0, k }
    }

    /// A consumer on a fresh output directory, its thread, and what the test talks to it with.
    struct Rig {
        out: PathBuf,
        layout: Layout,
        tracker: FlushTracker<ShapeKey>,
        tx: Sender<Msg>,
        dead: Receiver<Dead>,
        thread: thread::JoinHandle<()>,
    }

    fn rig(
        name: &str,
        sync: SyncMode,
        fail_at_round: Option<u64>,
    ) -> (Rig, Option<thread::JoinHandle<wal::Applied>>) {
        let (layout, out) = crate::shapes::test_dir(&format!("consumer-{name}"));
        let tracker: FlushTracker<ShapeKey> = FlushTracker::new(Config::default()).unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let (dead_tx, dead_rx) = crossbeam_channel::unbounded();
        let (behind, writer) = match sync {
            SyncMode::Log => {
                let (b, h) = wal::spawn_writer(layout.clone(), out.clone()).unwrap();
                (Some(b), Some(h))
            }
            _ => (None, None),
        };
        let c = Consumer {
            index: 3,
            sync,
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
            fail_at_round,
            fd_budget: 1,
            behind,
        };
        let thread = thread::spawn(move || c.run());
        let rig = Rig {
            out,
            layout,
            tracker,
            tx,
            dead: dead_rx,
            thread,
        };
        (rig, writer)
    }

    impl Rig {
        /// Registers shape `k` and hands it to the consumer.
        fn adopt(&self, k: u32) -> flushwatch::ShapeId {
            let writer = self.tracker.register(key(k)).unwrap();
            let id = writer.id();
            self.tx
                .send(Msg::Adopt {
                    key: key(k),
                    writer,
                    path: self.layout.path(&self.out, key(k)),
                    rebuild: None,
                })
                .unwrap();
            id
        }

        /// Commit `commit` with one line for each of `ks`.
        fn txn(&self, commit: u64, ks: &[u32]) {
            let ids: Vec<_> = ks
                .iter()
                .map(|&k| self.tracker.id_of(&key(k)).unwrap())
                .collect();
            self.tracker.track(commit, &ids).unwrap();
            let items = ks
                .iter()
                .map(|&k| (key(k), bytes::Bytes::from(format!("{commit:x} I {k} x\n"))))
                .collect();
            self.tx
                .send(Msg::Txn {
                    commit,
                    previous: 0,
                    hold: false,
                    items,
                })
                .unwrap();
        }
    }

    /// A consumer whose sync fails marks every shape it owns for rebuild, durably, and tells
    /// the reader, before its writers go; a shape handed to it afterwards gets the same. Under
    /// each way of syncing.
    #[test]
    fn a_failing_consumer_marks_its_shapes_before_its_writers_go() {
        for (name, sync) in [
            ("fail-syncfs", SyncMode::Syncfs),
            ("fail-log", SyncMode::Log),
        ] {
            let (r, _behind) = rig(name, sync, Some(1));
            for k in 0..2 {
                r.adopt(k);
            }
            r.txn(10, &[0, 1]);
            let dead = r
                .dead
                .recv_timeout(Duration::from_secs(10))
                .expect("a death notice");
            assert_eq!(dead.consumer, 3);
            let mut marked = dead.marked.clone();
            marked.sort();
            assert_eq!(marked, vec![key(0), key(1)], "{sync:?}");
            for k in 0..2 {
                assert!(
                    r.layout.invalid_marker(&r.out, key(k)).exists(),
                    "marked before the notice ({sync:?})"
                );
            }
            // Dead: a shape handed to it now is marked and let go too.
            r.adopt(2);
            let dead = r
                .dead
                .recv_timeout(Duration::from_secs(10))
                .expect("a second notice");
            assert_eq!(dead.marked, vec![key(2)]);
            assert!(r.layout.invalid_marker(&r.out, key(2)).exists());
            drop(r.tx);
            r.thread.join().unwrap();
            for k in 0..3 {
                assert!(r.tracker.id_of(&key(k)).is_none(), "its writers are gone");
            }
            r.tracker.scan();
            assert_eq!(
                r.tracker.watermark(),
                10,
                "they no longer pin the watermark: the markers say rebuild ({sync:?})"
            );
            fs::remove_dir_all(&r.out).unwrap();
        }
    }

    /// Under the log, a round is reported once its segment is synced, the consumer writes no
    /// shape file itself, and the write-behind puts every line in its file once the consumer
    /// hands its segment over (here: at its end).
    #[test]
    fn under_the_log_the_files_are_written_behind() {
        let (r, writer) = rig("log", SyncMode::Log, None);
        let writer = writer.expect("log mode");
        for k in 0..3 {
            r.adopt(k);
        }
        r.txn(0x10, &[0, 1]);
        r.txn(0x20, &[1, 2]);
        r.tracker.scan();
        let deadline = Instant::now() + Duration::from_secs(10);
        while r.tracker.watermark() < 0x20 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
            r.tracker.scan();
        }
        assert_eq!(r.tracker.watermark(), 0x20, "reported after the log's sync");
        let segs: Vec<_> = fs::read_dir(wal::dir(&r.out)).unwrap().collect();
        assert_eq!(segs.len(), 1, "one segment, not yet handed over");
        for k in 0..3 {
            let len = fs::metadata(r.layout.path(&r.out, key(k))).map_or(0, |m| m.len());
            assert_eq!(len, 0, "the consumer wrote no shape file (shape {k})");
        }
        drop(r.tx);
        r.thread.join().unwrap();
        let applied = writer.join().unwrap();
        // One record per shape and round: 3 or 4, as the two commits fell into rounds.
        assert_eq!(
            applied.segments, 1,
            "the last segment is handed over at the end"
        );
        assert_eq!(applied.written, applied.records, "every record written");
        let left: Vec<PathBuf> = fs::read_dir(wal::dir(&r.out))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        assert!(left.is_empty(), "and retired: {left:?}");
        let read = |k| fs::read_to_string(r.layout.path(&r.out, key(k))).unwrap();
        assert_eq!(read(0), "10 I 0 x\n");
        assert_eq!(read(1), "10 I 1 x\n20 I 1 x\n");
        assert_eq!(read(2), "20 I 2 x\n");
        fs::remove_dir_all(&r.out).unwrap();
    }
}
