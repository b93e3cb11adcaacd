//! `pg-pipeline verify`: every shape's file against its rows in the table.
//!
//! It shares no routing, value or decoding code with the pipeline, so that a bug there cannot
//! hide itself: the server routes the rows (`key % N` in SQL, the shapes' definition), NULL
//! and escaping are done here, the files are parsed here, and the slot's pending changes are
//! decoded by a decoder of its own.
//!
//! Run while no pipeline runs on the slot (after a kill, say). It reads, in this order:
//! 1. every row of every table, per shape (what is committed now), then flushes the WAL;
//! 2. the transactions the slot will replay (`pg_logical_slot_peek_binary_changes`), then the
//!    slot's `confirmed_flush_lsn`: a transaction whose commit ends after it is
//!    unacknowledged, and the rows it touched are excused (they may be missing or old in the
//!    files: the next start replays them); a `TRUNCATE` excuses its tables;
//! 3. every shape's file, applied line by line (`I`/`U` set the key's row, `D` removes it,
//!    `T` empties the shape), a line repeating a (commit, op, key) already seen being a
//!    replay: its payload must be the same.
//!
//! Per shape, every row must then be in the applied file with its payload, and the file must
//! hold no other row, except for excused keys: a row missing, stale or not deleted was
//! acknowledged without being written (`lost`). With `--caught-up` nothing is excused: each
//! file must equal its rows. A shape with an `.invalid` marker is being rebuilt: after a kill
//! it is skipped (counted), with `--caught-up` it is a failure. When the kill-window fault left
//! `kill-window.txt`, every row of that commit must be as in the table or unacknowledged.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use pgwire_replication::Lsn;
use postgres::{Client, NoTls, SimpleQueryMessage};

use crate::shapes::{self, Layout, ShapeKey};

#[derive(Debug, Clone)]
pub struct VerifyOpts {
    pub conn: String,
    pub slot: String,
    pub publication: String,
    pub out: PathBuf,
    pub layout: Layout,
    pub caught_up: bool,
}

/// What the slot will replay: keys touched and tables truncated by transactions that commit
/// after the confirmed position.
#[derive(Default)]
struct Unacked {
    keys: HashSet<(u16, i64)>,
    truncated: HashSet<u16>,
    txns: u64,
    /// Transactions the peek returned although their commit is at or below the confirmed
    /// position (not excused).
    at_or_below: u64,
}

pub fn run(o: &VerifyOpts) -> Result<()> {
    let l = &o.layout;
    let n = i64::from(l.per_table);
    let mut client = Client::connect(&o.conn, NoTls).context("connecting to PostgreSQL")?;

    // 1. The tables, routed by the server: shape -> key -> payload as the files write it.
    let mut table_rows: HashMap<ShapeKey, HashMap<i64, String>> = HashMap::new();
    let mut unroutable = 0u64;
    for (t, name) in l.tables.iter().enumerate() {
        let key = shapes::quote_ident(&l.key_column);
        let sql = format!(
            "SELECT ({key} % {n})::bigint, * FROM {}",
            shapes::quote_qualified(name)
        );
        let mut kc = None;
        for m in client.simple_query(&sql)? {
            match m {
                SimpleQueryMessage::RowDescription(cols) => {
                    kc = cols
                        .iter()
                        .skip(1)
                        .position(|c| c.name() == l.key_column)
                        .map(|i| i + 1);
                }
                SimpleQueryMessage::Row(row) => {
                    let kc =
                        kc.with_context(|| format!("{name} has no column {}", l.key_column))?;
                    let k: i64 = row.get(0).and_then(|v| v.parse().ok()).context("shape")?;
                    let id: i64 = row.get(kc).and_then(|v| v.parse().ok()).context("key")?;
                    if !(0..n).contains(&k) {
                        unroutable += 1;
                        continue;
                    }
                    let payload: Vec<String> = (1..row.len())
                        .filter(|&i| i != kc)
                        .map(|i| row.get(i).map_or_else(|| "\\N".to_string(), escape))
                        .collect();
                    table_rows
                        .entry(ShapeKey {
                            table: t as u16,
                            k: k as u32,
                        })
                        .or_default()
                        .insert(id, payload.join("\t"));
                }
                _ => {}
            }
        }
    }
    // Logical decoding reads only flushed WAL; a synchronous commit of our own flushes it.
    client.batch_execute(
        "SET synchronous_commit = on; BEGIN; SELECT pg_current_xact_id(); COMMIT;",
    )?;
    // 2. What the slot will replay, by commit position.
    let unacked = if o.caught_up {
        Unacked::default()
    } else {
        unacknowledged(&mut client, o)?
    };
    let excused =
        |t: u16, id: i64| unacked.truncated.contains(&t) || unacked.keys.contains(&(t, id));

    // The kill window's rows, if any: table, shape, op, key.
    let kw_text = fs::read_to_string(o.out.join("kill-window.txt")).ok();
    let mut kw: Vec<(ShapeKey, i64)> = Vec::new();
    for line in kw_text.iter().flat_map(|t| t.lines().skip(1)) {
        let f: Vec<&str> = line.split(' ').collect();
        let [t, k, _op, id] = f[..] else {
            bail!("kill-window.txt: bad line {line:?}")
        };
        kw.push((
            ShapeKey {
                table: t.parse()?,
                k: k.parse()?,
            },
            id.parse()?,
        ));
    }
    let kw_shapes: HashSet<ShapeKey> = kw.iter().map(|(s, _)| *s).collect();
    let mut kw_states: HashMap<ShapeKey, HashMap<i64, String>> = HashMap::new();

    // 3. The files, once the log's durable records are in them (what any reader of the
    // store does first; the pipeline that wrote them is gone).
    crate::wal::recover(l, &o.out)?;
    let mut c = Counts::default();
    let mut examples = Vec::new();
    let empty = HashMap::new();
    for key in l.keys() {
        if l.invalid_marker(&o.out, key).exists() {
            c.invalid += 1;
            continue;
        }
        let path = l.path(&o.out, key);
        let text = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let f = apply(&text).with_context(|| format!("{}", path.display()))?;
        let rows = table_rows.get(&key).unwrap_or(&empty);
        let mut bad = f.conflicts > 0;
        c.duplicates += f.duplicates;
        c.conflicts += f.conflicts;
        for (id, payload) in rows {
            c.rows_checked += 1;
            let ok = f.state.get(id) == Some(payload);
            if ok {
                c.in_files += 1;
            } else if excused(key.table, *id) {
                c.unacked += 1;
            } else {
                bad = true;
                if f.state.contains_key(id) {
                    c.stale += 1;
                } else {
                    c.missing += 1;
                }
                if examples.len() < 5 {
                    examples.push(format!("{key} id={id}"));
                }
            }
        }
        for id in f.state.keys() {
            if !rows.contains_key(id) && !excused(key.table, *id) {
                c.undeleted += 1;
                bad = true;
            }
        }
        c.mismatched += u64::from(bad);
        if kw_shapes.contains(&key) {
            kw_states.insert(key, f.state);
        }
    }
    let (mut kw_rows, mut kw_missing) = (0u64, 0u64);
    for (shape, id) in &kw {
        kw_rows += 1;
        let in_file = kw_states.get(shape).and_then(|s| s.get(id));
        let in_table = table_rows.get(shape).and_then(|r| r.get(id));
        if in_file != in_table && !excused(shape.table, *id) {
            kw_missing += 1;
        }
    }
    let lost = c.missing + c.stale + c.undeleted;
    println!(
        "verify: shapes={} rows_checked={} in_files={} unacked={} lost={lost} missing={} stale={} undeleted={} duplicates={} conflicts={} shapes_mismatched={} invalid={} unroutable={unroutable} unacked_txns={} peeked_at_or_below_confirmed={} kill_window_rows={kw_rows} kill_window_missing={kw_missing}",
        l.count(),
        c.rows_checked,
        c.in_files,
        c.unacked,
        c.missing,
        c.stale,
        c.undeleted,
        c.duplicates,
        c.conflicts,
        c.mismatched,
        c.invalid,
        unacked.txns,
        unacked.at_or_below,
    );
    if lost > 0 {
        bail!("{lost} committed changes are neither in their shape's file nor unacknowledged (e.g. {examples:?}): data loss");
    }
    if kw_missing > 0 {
        bail!("{kw_missing} rows of the kill-window commit are missing");
    }
    if c.mismatched > 0 {
        bail!("{} shapes do not match their rows", c.mismatched);
    }
    if unroutable > 0 {
        bail!("{unroutable} rows belong to no shape (a negative key?)");
    }
    if o.caught_up && c.invalid > 0 {
        bail!("{} shapes are still waiting for their rebuild", c.invalid);
    }
    Ok(())
}

#[derive(Default)]
struct Counts {
    rows_checked: u64,
    in_files: u64,
    unacked: u64,
    missing: u64,
    stale: u64,
    undeleted: u64,
    duplicates: u64,
    conflicts: u64,
    mismatched: u64,
    invalid: u64,
}

/// A file applied in order.
#[derive(Debug, Default, PartialEq)]
struct Applied {
    /// key -> payload
    state: HashMap<i64, String>,
    /// Lines repeating a (commit, op, key) with the same payload: a replay.
    duplicates: u64,
    /// Lines repeating a (commit, op, key) with another payload.
    conflicts: u64,
}

/// Applies a shape file's complete lines (a partial last line, cut short by a crash, is
/// ignored: the pipeline cuts it before appending).
fn apply(text: &[u8]) -> Result<Applied> {
    let text = std::str::from_utf8(text).context("not UTF-8")?;
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    let mut a = Applied::default();
    let mut seen: HashMap<(&str, &str, i64), &str> = HashMap::new();
    for line in complete.lines() {
        let mut f = line.splitn(4, ' ');
        let (Some(commit), Some(op), Some(key), payload) = (f.next(), f.next(), f.next(), f.next())
        else {
            bail!("bad line {line:?}");
        };
        let payload = payload.unwrap_or("");
        let key: i64 = key
            .parse()
            .with_context(|| format!("bad key in {line:?}"))?;
        match seen.get(&(commit, op, key)) {
            Some(p) if *p == payload => a.duplicates += 1,
            Some(_) => a.conflicts += 1,
            None => {
                seen.insert((commit, op, key), payload);
            }
        }
        match op {
            "I" | "U" => {
                a.state.insert(key, payload.to_string());
            }
            "D" => {
                a.state.remove(&key);
            }
            "T" => a.state.clear(),
            _ => bail!("unknown op in {line:?}"),
        }
    }
    Ok(a)
}

/// A value as the files write it: `\`, newline and tab escaped.
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for ch in v.chars() {
        match ch {
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\t' => s.push_str("\\t"),
            c => s.push(c),
        }
    }
    s
}

/// The transactions the slot will replay, decoded here, excused by commit position against
/// the slot's `confirmed_flush_lsn` (read after the peek: the slot is free then, so nothing
/// moves it any more). Retries while the slot is briefly held by a dying walsender.
fn unacknowledged(client: &mut Client, o: &VerifyOpts) -> Result<Unacked> {
    let mut tries = 0;
    let rows = loop {
        match client.query(
            "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL, 'proto_version', '1', 'publication_names', $2)",
            &[&o.slot, &o.publication],
        ) {
            Ok(rows) => break rows,
            Err(e) if tries < 100 && e.to_string().contains("active for PID") => {
                tries += 1;
                thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e).context("peeking the slot"),
        }
    };
    let confirmed: String = client
        .query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&o.slot],
        )?
        .get(0);
    let confirmed = Lsn::parse(&confirmed)
        .context("confirmed_flush_lsn")?
        .as_u64();
    let mut rels: HashMap<u32, Option<(u16, usize)>> = HashMap::new();
    let mut out = Unacked::default();
    let (mut keys, mut truncated) = (Vec::new(), Vec::new());
    for row in rows {
        let data: &[u8] = row.get(0);
        let mut m = Wire(data);
        match m.u8()? {
            b'R' => {
                let id = m.u32()?;
                let (ns, name) = (m.cstr()?, m.cstr()?);
                m.u8()?;
                let cols = m.u16()?;
                let mut kc = None;
                for i in 0..cols {
                    m.u8()?;
                    if m.cstr()? == o.layout.key_column {
                        kc = Some(i as usize);
                    }
                    m.u32()?;
                    m.u32()?;
                }
                let t = o
                    .layout
                    .tables
                    .iter()
                    .position(|t| *t == format!("{ns}.{name}"));
                rels.insert(id, t.zip(kc).map(|(t, kc)| (t as u16, kc)));
            }
            op @ (b'I' | b'U' | b'D') => {
                let rel = m.u32()?;
                let mut tuples = Vec::new();
                loop {
                    match m.u8() {
                        Ok(b'K' | b'O' | b'N') => tuples.push(m.tuple()?),
                        Ok(other) => {
                            bail!("peek: unexpected tuple tag {other:#x} in {}", op as char)
                        }
                        Err(_) => break,
                    }
                }
                if let Some(Some((t, kc))) = rels.get(&rel) {
                    for tuple in tuples {
                        if let Some(id) = tuple
                            .get(*kc)
                            .and_then(|v| v.as_deref())
                            .and_then(|v| v.parse::<i64>().ok())
                        {
                            keys.push((*t, id));
                        }
                    }
                }
            }
            b'T' => {
                let count = m.u32()?;
                m.u8()?;
                for _ in 0..count {
                    if let Some(Some((t, _))) = rels.get(&m.u32()?) {
                        truncated.push(*t);
                    }
                }
            }
            b'C' => {
                m.u8()?;
                let _commit_lsn = m.u64()?;
                let end = m.u64()?;
                if end > confirmed {
                    out.txns += 1;
                    out.keys.extend(keys.drain(..));
                    out.truncated.extend(truncated.drain(..));
                } else {
                    out.at_or_below += 1;
                    keys.clear();
                    truncated.clear();
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Big-endian reads of a pgoutput message (this module's own decoder).
struct Wire<'a>(&'a [u8]);

impl Wire<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if self.0.len() < n {
            bail!("peek: truncated message");
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into()?))
    }
    fn cstr(&mut self) -> Result<String> {
        let end = self
            .0
            .iter()
            .position(|&b| b == 0)
            .context("peek: unterminated string")?;
        let s = String::from_utf8_lossy(&self.0[..end]).into_owned();
        self.0 = &self.0[end + 1..];
        Ok(s)
    }
    /// A tuple's values as text (`None`: NULL, unchanged TOAST or binary).
    fn tuple(&mut self) -> Result<Vec<Option<String>>> {
        let cols = self.u16()?;
        let mut v = Vec::with_capacity(cols as usize);
        for _ in 0..cols {
            v.push(match self.u8()? {
                b't' => {
                    let len = self.u32()? as usize;
                    Some(String::from_utf8_lossy(self.take(len)?).into_owned())
                }
                b'b' => {
                    let len = self.u32()? as usize;
                    self.take(len)?;
                    None
                }
                _ => None,
            });
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_apply_in_order_and_replays_must_repeat_payloads() {
        let f = b"snap I 1 a\n10 I 2 b\n10 I 2 b\n20 U 1 a2\n30 D 2 \n30 D 2 \n40 I 3 c\n40 I 3 x\n50 I 9 part";
        let a = apply(f).unwrap();
        assert_eq!(
            a.state,
            [(1, "a2".to_string()), (3, "x".to_string())]
                .into_iter()
                .collect()
        );
        assert_eq!((a.duplicates, a.conflicts), (2, 1));
        let a = apply(b"10 I 1 a\n20 T 0 \n30 I 2 b\n").unwrap();
        assert_eq!(a.state, [(2, "b".to_string())].into_iter().collect());
        assert!(apply(b"10 X 1 a\n").is_err());
        assert!(apply(b"10 I one a\n").is_err());
    }

    #[test]
    fn escaping_is_the_files() {
        assert_eq!(escape("a\tb\nc\\d"), "a\\tb\\nc\\\\d");
        let mut v = Vec::new();
        shapes::push_line(&mut v, Some(1), b'I', 1, &[Some("a\tb\nc\\d".as_bytes())]);
        assert_eq!(
            String::from_utf8(v).unwrap(),
            format!("1 I 1 {}\n", escape("a\tb\nc\\d"))
        );
    }
}
