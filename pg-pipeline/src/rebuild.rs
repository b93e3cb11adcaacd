//! Rebuilding a shape from a snapshot, the way Electric does it.
//!
//! A shape whose consumer was evicted (`Stalled { evicted: true }`) or went down
//! (`WriterDown`) has a file that misses what that consumer never wrote. The rebuild:
//!
//! 1. writes the shape's *invalid marker* (`<k>.invalid`, durable) so that a crash before the
//!    rebuild is complete rebuilds it again at the next start;
//! 2. the reader starts buffering the shape's streamed transactions (seeded with its recent
//!    history, so a transaction streamed just before the request but not yet visible to a
//!    snapshot is not missed);
//! 3. here: a `REPEATABLE READ` transaction records `pg_current_snapshot()` and copies the
//!    shape's rows (`key % N = k`) into `<k>.log.rebuild`, `fsync`ed;
//! 4. once the transactions in progress at the snapshot have ended and the stream has passed
//!    the WAL position after that (so every one of them that committed is in the buffer), the
//!    reader keeps, of the buffered transactions, only those the snapshot does not see (by
//!    xid: [`Snapshot::sees`]), registers a new writer (tracked only from now on) and
//!    hands both to a healthy consumer, which appends the catch-up, `fsync`s, renames the file
//!    over `<k>.log` and removes the marker;
//! 5. the snapshot stays on the shape's route as a filter until the stream passes the WAL
//!    insert position read with it: the reader lags the server, so the snapshot may already
//!    hold transactions the stream delivers later, and those are skipped for the shape.
//!
//! Every transaction the snapshot does not see commits after it was taken, so it is either in
//! the buffer or still to come in the stream (the stream is at or before the snapshot's
//! position when the buffering starts): the rebuilt file ends exactly equal to the shape's
//! rows.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use crossbeam_channel::{Receiver, Sender};
use pgwire_replication::Lsn;
use postgres::{Client, NoTls, SimpleQueryMessage};

use crate::shapes::{self, Layout, ShapeKey};

/// A `pg_snapshot`: `xmin:xmax:xip,...` (64-bit xids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// `pg_current_wal_insert_lsn()` right after the snapshot was taken: a transaction whose
    /// commit record ends after it committed after the snapshot (0 when unknown).
    pub lsn: u64,
    pub xmin: u64,
    pub xmax: u64,
    pub xip: HashSet<u64>,
}

impl Snapshot {
    pub fn parse(s: &str) -> Option<Snapshot> {
        let mut it = s.trim().splitn(3, ':');
        let xmin = it.next()?.parse().ok()?;
        let xmax = it.next()?.parse().ok()?;
        let xip = match it.next()? {
            "" => HashSet::new(),
            list => list
                .split(',')
                .map(|x| x.parse().ok())
                .collect::<Option<_>>()?,
        };
        Some(Snapshot {
            lsn: 0,
            xmin,
            xmax,
            xip,
        })
    }

    /// The 64-bit xid of a 32-bit xid from the stream (pgoutput's `Begin` carries 32 bits):
    /// the one nearest to `xmax`.
    pub fn widen(&self, xid: u32) -> u64 {
        let base = self.xmax & !0xFFFF_FFFF;
        let cand = base | u64::from(xid);
        if cand > self.xmax.saturating_add(1 << 31) && cand >= 1 << 32 {
            cand - (1 << 32)
        } else if cand + (1 << 31) < self.xmax {
            cand + (1 << 32)
        } else {
            cand
        }
    }

    /// Whether a committed transaction is visible to the snapshot (committed before it).
    pub fn sees(&self, xid: u32) -> bool {
        let x = self.widen(xid);
        if x < self.xmin {
            return true;
        }
        x < self.xmax && !self.xip.contains(&x)
    }
}

/// A request: rebuild these shapes.
pub struct Request {
    pub keys: Vec<ShapeKey>,
}

/// The answer: the snapshot and, per shape, its snapshot file.
pub struct Done {
    pub snapshot: Snapshot,
    pub files: Vec<(ShapeKey, PathBuf)>,
    pub rows: u64,
    /// The WAL insert position once every transaction in progress at the snapshot had ended
    /// (or 10 s passed): a stream that has passed it delivered all of them.
    pub settled: u64,
}

/// Marks `keys` invalid, durably, before anything else happens to them: every marker is
/// created, then one `syncfs(2)` makes them all durable (their inodes and directory
/// entries), then each directory is synced as well. One sync for the batch, not one per
/// marker: a wedged consumer at 300,000 shapes has thousands evicted at once, and an `fsync`
/// each kept the reader (which marks them before it acknowledges) busy for minutes.
pub fn mark_invalid(layout: &Layout, out: &std::path::Path, keys: &[ShapeKey]) -> Result<()> {
    let mut any = None;
    for &key in keys {
        let marker = layout.invalid_marker(out, key);
        let f = File::create(&marker).with_context(|| format!("marking {}", marker.display()))?;
        any.get_or_insert(f);
    }
    let Some(f) = any else {
        return Ok(());
    };
    crate::files::syncfs(&f, std::iter::empty()).context("syncfs of the markers")?;
    for t in keys.iter().map(|k| k.table).collect::<HashSet<_>>() {
        File::open(layout.dir(out, t))?.sync_all()?;
    }
    Ok(())
}

/// The shapes whose invalid marker exists: one directory listing per table, not a lookup
/// per shape.
pub fn invalid_markers(layout: &Layout, out: &std::path::Path) -> Result<HashSet<ShapeKey>> {
    let mut found = HashSet::new();
    for t in 0..layout.tables.len() as u16 {
        let dir = layout.dir(out, t);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        for e in entries {
            let name = e?.file_name();
            let Some(k) = name.to_str().and_then(|n| n.strip_suffix(".invalid")) else {
                continue;
            };
            if let Ok(k) = k.parse::<u32>() {
                let key = ShapeKey { table: t, k };
                if k < layout.per_table && layout.invalid_marker(out, key).exists() {
                    found.insert(key);
                }
            }
        }
    }
    Ok(found)
}

pub fn tmp_path(layout: &Layout, out: &std::path::Path, key: ShapeKey) -> PathBuf {
    layout
        .dir(out, key.table)
        .join(format!("{}.log.rebuild", key.k))
}

/// The rebuild worker: one snapshot per batch of requests.
pub fn worker(
    conn: String,
    layout: Layout,
    out: PathBuf,
    rx: Receiver<Request>,
    tx: Sender<Result<Done>>,
) {
    let mut client: Option<Client> = None;
    while let Ok(first) = rx.recv() {
        let mut keys = first.keys;
        while let Ok(more) = rx.try_recv() {
            keys.extend(more.keys);
        }
        keys.sort();
        keys.dedup();
        let result = (|| -> Result<Done> {
            if client.as_ref().is_none_or(|c| c.is_closed()) {
                client = Some(Client::connect(&conn, NoTls).context("rebuild: connecting")?);
            }
            snapshot_copy(client.as_mut().expect("connected"), &layout, &out, &keys)
        })();
        if result.is_err() {
            client = None;
        }
        if tx.send(result).is_err() {
            return;
        }
    }
}

fn snapshot_copy(
    client: &mut Client,
    layout: &Layout,
    out: &std::path::Path,
    keys: &[ShapeKey],
) -> Result<Done> {
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    // The snapshot of a REPEATABLE READ transaction is taken at its first query: this one.
    let row = tx.query_one(
        "SELECT pg_current_snapshot()::text, pg_current_wal_insert_lsn()::text",
        &[],
    )?;
    let (snap, lsn): (String, String) = (row.get(0), row.get(1));
    let mut snapshot = Snapshot::parse(&snap).with_context(|| format!("bad snapshot {snap:?}"))?;
    snapshot.lsn = Lsn::parse(&lsn)
        .with_context(|| format!("bad LSN {lsn:?}"))?
        .as_u64();
    let wanted: HashSet<ShapeKey> = keys.iter().copied().collect();
    let mut bufs: HashMap<ShapeKey, Vec<u8>> = keys.iter().map(|k| (*k, Vec::new())).collect();
    let mut rows = 0u64;
    let tables: HashSet<u16> = keys.iter().map(|k| k.table).collect();
    for t in tables {
        let name = &layout.tables[t as usize];
        let ks: Vec<String> = keys
            .iter()
            .filter(|k| k.table == t)
            .map(|k| k.k.to_string())
            .collect();
        // Text format, as pgoutput sends values; one scan per table for all its shapes.
        let sql = format!(
            "SELECT * FROM {} WHERE {} % {} IN ({})",
            shapes::quote_qualified(name),
            shapes::quote_ident(&layout.key_column),
            layout.per_table,
            ks.join(",")
        );
        let mut key_col = None;
        for m in tx.simple_query(&sql)? {
            match m {
                SimpleQueryMessage::RowDescription(cols) => {
                    key_col = cols.iter().position(|c| c.name() == layout.key_column);
                }
                SimpleQueryMessage::Row(row) => {
                    let Some(kc) = key_col else {
                        bail!("{name} has no column {}", layout.key_column);
                    };
                    let key: i64 = row
                        .get(kc)
                        .and_then(|v| v.parse().ok())
                        .with_context(|| format!("{name}: NULL or non-integer key"))?;
                    let shape = layout.shape_of(t, key);
                    if !wanted.contains(&shape) {
                        continue;
                    }
                    let cols: Vec<Option<&[u8]>> = (0..row.len())
                        .filter(|&i| i != kc)
                        .map(|i| row.get(i).map(str::as_bytes))
                        .collect();
                    shapes::push_line(
                        bufs.get_mut(&shape).expect("wanted"),
                        None,
                        b'I',
                        key,
                        &cols,
                    );
                    rows += 1;
                }
                _ => {}
            }
        }
    }
    tx.commit()?;
    let settled = settle(client, &snapshot)?;
    let mut files = Vec::with_capacity(keys.len());
    for (key, buf) in bufs {
        let tmp = tmp_path(layout, out, key);
        let mut f = File::create(&tmp)?;
        f.write_all(&buf)?;
        f.sync_data()?;
        files.push((key, tmp));
    }
    for t in files.iter().map(|(k, _)| k.table).collect::<HashSet<_>>() {
        File::open(layout.dir(out, t))?.sync_all()?;
    }
    Ok(Done {
        snapshot,
        files,
        rows,
        settled,
    })
}

/// Waits (at most 10 s) until every transaction in progress at the snapshot has committed or
/// aborted, then returns the WAL insert position. Once the stream has passed it, the buffer
/// holds every one of them that committed, so the snapshot's visibility (`Snapshot::sees`)
/// decides each; anything committing later is invisible to the snapshot.
fn settle(client: &mut Client, snapshot: &Snapshot) -> Result<u64> {
    if !snapshot.xip.is_empty() {
        let list: Vec<String> = snapshot
            .xip
            .iter()
            .map(|x| format!("('{x}'::xid8)"))
            .collect();
        let sql = format!(
            "SELECT count(*) FROM (VALUES {}) v(x) WHERE pg_xact_status(x) = 'in progress'",
            list.join(",")
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while client.query_one(&sql, &[])?.get::<_, i64>(0) > 0
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    let lsn: String = client
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])?
        .get(0);
    Ok(Lsn::parse(&lsn)
        .with_context(|| format!("bad LSN {lsn:?}"))?
        .as_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_visibility() {
        let s = Snapshot::parse("100:105:101,103").unwrap();
        assert_eq!(s.xip, [101, 103].into_iter().collect());
        assert!(s.sees(99), "below xmin: committed before");
        assert!(s.sees(100));
        assert!(!s.sees(101), "in progress at the snapshot");
        assert!(s.sees(102));
        assert!(!s.sees(103));
        assert!(s.sees(104));
        assert!(!s.sees(105), "at or above xmax: after the snapshot");
        assert!(!s.sees(200));
        let s = Snapshot::parse("7:7:").unwrap();
        assert!(s.xip.is_empty());
        assert!(s.sees(6) && !s.sees(7));
        assert!(Snapshot::parse("x").is_none());
        assert!(Snapshot::parse("1:2:a").is_none());
    }

    #[test]
    fn xids_widen_across_an_epoch() {
        // xmax just past an epoch boundary: a 32-bit xid near u32::MAX is from the epoch
        // before, a small one from this epoch.
        let s = Snapshot::parse(&format!("{}:{}:", (1u64 << 32) - 10, (1u64 << 32) + 5)).unwrap();
        assert_eq!(s.widen(u32::MAX - 2), (1u64 << 32) - 3);
        assert_eq!(s.widen(3), (1u64 << 32) + 3);
        assert!(s.sees(u32::MAX - 20), "older than xmin");
        assert!(!s.sees(6), "after xmax in the new epoch");
        assert!(s.sees(2), "between xmin and xmax, not in progress");
        // In epoch 0 nothing wraps below zero.
        let s = Snapshot::parse("10:20:").unwrap();
        assert_eq!(s.widen(15), 15);
        assert_eq!(s.widen(u32::MAX), u64::from(u32::MAX));
    }
}
