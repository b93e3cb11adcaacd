//! The consumers: each owns some shapes' `Writer`s, appends their changes to one file per
//! shape, `fsync`s in batches and only then reports `flushed`. Consumer 0 may wedge.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use flushwatch::Writer;

use crate::oracle::Incarnation;
use crate::view::Ui;
use crate::{nanos, Counters, Key};

/// What the producer and the supervisor send a consumer.
pub enum Msg {
    /// Own this shape from now on.
    Adopt {
        writer: Writer<Key>,
        inc: Arc<Incarnation>,
        path: PathBuf,
    },
    /// Changes: (shape, commit), in commit order.
    Changes(Vec<(Key, u64)>),
    /// Flush everything and stop.
    Finish,
}

pub struct ConsumerCtx {
    pub index: usize,
    pub every: Duration,
    /// When this consumer wedges, if it is the one.
    pub wedge: Option<Instant>,
    pub unwedge: Arc<AtomicBool>,
    pub wedged_at: Arc<AtomicU64>,
    /// The oracle's self-test: report before the data is durable (wrong on purpose).
    pub report_before_fsync: bool,
    pub counters: Arc<Counters>,
    pub ui: Ui,
    pub started: Instant,
}

struct ShapeFile {
    writer: Writer<Key>,
    inc: Arc<Incarnation>,
    file: BufWriter<File>,
    /// The highest commit received (and written).
    received: u64,
    dirty: bool,
}

pub struct ConsumerReport {
    pub shapes: usize,
    pub evicted: usize,
}

impl ConsumerCtx {
    pub fn run(self, rx: Receiver<Msg>) -> ConsumerReport {
        let mut shapes: HashMap<Key, ShapeFile> = HashMap::new();
        let mut deadline: Option<Instant> = None;
        let payload = "x".repeat(48);
        loop {
            let msg = match deadline {
                Some(d) => rx.recv_deadline(d),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match msg {
                Ok(Msg::Adopt { writer, inc, path }) => match File::create(&path) {
                    Ok(file) => {
                        shapes.insert(
                            inc.key,
                            ShapeFile {
                                writer,
                                inc,
                                file: BufWriter::with_capacity(64 * 1024, file),
                                received: 0,
                                dirty: false,
                            },
                        );
                    }
                    Err(e) => self.io_error(&path.display().to_string(), e),
                },
                Ok(Msg::Changes(changes)) => {
                    for (key, commit) in changes {
                        if let Some(s) = shapes.get_mut(&key) {
                            if let Err(e) = writeln!(s.file, "{commit} {key} {payload}") {
                                self.io_error("write", e);
                            }
                            s.received = commit;
                            s.dirty = true;
                        }
                    }
                    deadline.get_or_insert_with(|| Instant::now() + self.every);
                }
                Ok(Msg::Finish) | Err(RecvTimeoutError::Disconnected) => {
                    self.flush(&mut shapes);
                    return ConsumerReport {
                        shapes: shapes.len(),
                        evicted: 0,
                    };
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if self.wedge.is_some_and(|w| Instant::now() >= w) {
                return self.wedged(&shapes);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.flush(&mut shapes);
                deadline = None;
            }
        }
    }

    /// fsync every dirty shape, then report it; forget shapes that were evicted.
    fn flush(&self, shapes: &mut HashMap<Key, ShapeFile>) {
        if self.report_before_fsync {
            // Wrong on purpose: the reports go out long before the data is durable.
            for s in shapes.values().filter(|s| s.dirty) {
                s.writer.flushed(s.received);
            }
            thread::sleep(self.every);
        }
        shapes.retain(|key, s| {
            if s.dirty {
                if let Err(e) = s.file.flush().and_then(|()| s.file.get_ref().sync_data()) {
                    self.io_error(&format!("fsync shape-{key:03}"), e);
                    return true;
                }
                // Relaxed: statistics.
                self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
                // Release: pairs with the oracle's Acquire load; set before the report, so a
                // watermark that counts this report finds it.
                s.inc.durable.store(s.received, Ordering::Release);
                // Release: pairs with the supervisor's Acquire load (latency measurement).
                s.inc
                    .last_flush
                    .store(nanos(self.started), Ordering::Release);
                // Every commit received is written and fsynced: report the last one.
                s.writer.flushed(s.received);
                self.counters.flushes.fetch_add(1, Ordering::Relaxed); // Relaxed: statistics.
                s.dirty = false;
            }
            !s.writer.is_evicted()
        });
    }

    /// Stuck, as in a deadlock: holds its writers and its unflushed data, reports nothing.
    fn wedged(&self, shapes: &HashMap<Key, ShapeFile>) -> ConsumerReport {
        // Relaxed: main polls only the value; it reads it again after joining this thread.
        self.wedged_at.store(nanos(self.started), Ordering::Relaxed);
        self.ui.line(
            self.started,
            format!(
                "consumer {} wedges, holding {} shapes ({} with unflushed changes)",
                self.index,
                shapes.len(),
                shapes.values().filter(|s| s.dirty).count()
            ),
        );
        // Relaxed: a request; nothing is published through it.
        while !self.unwedge.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(20));
        }
        ConsumerReport {
            shapes: shapes.len(),
            evicted: shapes.values().filter(|s| s.writer.is_evicted()).count(),
        }
    }

    fn io_error(&self, what: &str, e: std::io::Error) {
        self.counters.io_errors.fetch_add(1, Ordering::Relaxed); // Relaxed: statistics.
        self.ui.line(
            self.started,
            format!("consumer {}: {what}: {e}", self.index),
        );
    }
}
