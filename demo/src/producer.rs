//! The producer: generates transactions at the target rate, `track`s each commit, then sends
//! the changes to the consumers that own the shapes it touches.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use flushwatch::FlushTracker;

use crate::consumers::Msg;
use crate::oracle::{Incarnation, Oracle};
use crate::{nanos, Counters, Key};

/// Commit positions are sparse, like LSNs: each is the previous one plus a random gap in
/// `1..=MAX_GAP`. Nothing may compute a position from a commit (no `c - 1`).
pub const MAX_GAP: u64 = 400;

/// The producer's route to a shape.
#[derive(Clone)]
pub struct Route {
    pub inc: Arc<Incarnation>,
    pub consumer: usize,
}

/// What the producer generated.
pub struct Produced {
    /// The last commit position.
    pub last_commit: u64,
    /// How many commits.
    pub commits: u64,
}

pub struct Producer {
    pub tracker: FlushTracker<Key>,
    pub routes: Vec<Route>,
    /// New routes from the supervisor (rebuilt shapes).
    pub ctl: Receiver<(Key, Route)>,
    pub txs: Vec<Sender<Msg>>,
    pub oracle: Arc<Oracle>,
    pub rate: u64,
    pub shapes: u32,
    pub max_per_commit: u32,
    pub seed: u64,
    pub counters: Arc<Counters>,
    pub stop: Arc<AtomicBool>,
    pub started: Instant,
}

impl Producer {
    /// Generates commits at `rate` until stopped.
    pub fn run(mut self) -> Result<Produced, String> {
        let mut rng = self.seed.max(1);
        let mut commit = 0u64;
        let mut count = 0u64;
        let mut picked: Vec<Key> = Vec::with_capacity(self.max_per_commit as usize);
        let mut ids = Vec::with_capacity(self.max_per_commit as usize);
        let mut batches: Vec<Vec<(Key, u64)>> = vec![Vec::new(); self.txs.len()];
        let burst = (self.rate / 200).max(1);
        // Relaxed: a stop request; nothing is published through it.
        while !self.stop.load(Ordering::Relaxed) {
            while let Ok((key, route)) = self.ctl.try_recv() {
                self.routes[key as usize] = route;
            }
            let due = (self.started.elapsed().as_secs_f64() * self.rate as f64) as u64;
            let n = due.saturating_sub(count).min(burst);
            if n == 0 {
                thread::sleep(Duration::from_micros(500));
                continue;
            }
            let now = nanos(self.started);
            for _ in 0..n {
                commit += 1 + xorshift(&mut rng) % MAX_GAP;
                count += 1;
                let k = 1 + xorshift(&mut rng) % u64::from(self.max_per_commit);
                picked.clear();
                while (picked.len() as u64) < k {
                    let s = (xorshift(&mut rng) % u64::from(self.shapes)) as Key;
                    if !picked.contains(&s) {
                        picked.push(s);
                    }
                }
                ids.clear();
                for &s in &picked {
                    let route = &self.routes[s as usize];
                    // The oracle learns of the commit before the tracker does.
                    route.inc.sent.lock().unwrap().push_back((commit, now));
                    ids.push(route.inc.id);
                }
                self.oracle.tracking(commit);
                // track first, then send: a consumer never reports a commit not yet tracked.
                // Each change is the shape's whole share of the commit, so a consumer always
                // reports a commit it received and never needs `Tracked::previous`.
                self.tracker
                    .track(commit, &ids)
                    .map_err(|e| format!("track({commit}): {e}"))?;
                for &s in &picked {
                    batches[self.routes[s as usize].consumer].push((s, commit));
                }
                // Relaxed: statistics.
                self.counters
                    .changes
                    .fetch_add(picked.len() as u64, Ordering::Relaxed);
            }
            for (tx, batch) in self.txs.iter().zip(batches.iter_mut()) {
                if !batch.is_empty() {
                    let _ = tx.send(Msg::Changes(std::mem::take(batch)));
                }
            }
            self.counters.commits.store(count, Ordering::Relaxed); // Relaxed: statistics.
        }
        Ok(Produced {
            last_commit: commit,
            commits: count,
        })
    }
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}
