//! `pg-pipeline verify`: every shape's file against its rows in the table.
//!
//! Run while no pipeline runs (after a kill, say). It reads, in this order:
//! 1. every row of every table (what is committed now), then flushes the WAL;
//! 2. the rows of the transactions the slot has not acknowledged yet
//!    (`pg_logical_slot_peek_binary_changes` with `pgoutput`, decoded with our decoder: what a
//!    restarted pipeline will replay);
//! 3. every shape's file, deduplicated by (commit, key).
//!
//! Per shape, a row of the table that is in neither the file nor the unacknowledged tail was
//! acknowledged without being written: lost. A row in the file that is not in the table, a
//! payload that differs, or a key under two different commits (a rebuild that applied a
//! transaction its snapshot already had) makes the shape mismatched. With `--caught-up` the
//! file must equal the rows exactly. A shape with an `.invalid` marker is being rebuilt: after
//! a kill it is skipped (counted), with `--caught-up` it is a failure. When the kill-window
//! fault left `kill-window.txt`, every row of that commit must be in its file (with
//! `--caught-up`) or unacknowledged.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use postgres::{Client, NoTls, SimpleQueryMessage};

use crate::pgoutput::{self, Message};
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

pub fn run(o: &VerifyOpts) -> Result<()> {
    let l = &o.layout;
    let mut client = Client::connect(&o.conn, NoTls).context("connecting to PostgreSQL")?;

    // 1. The tables, per shape: key -> escaped payload.
    let mut table_rows: HashMap<ShapeKey, HashMap<i64, String>> = HashMap::new();
    for (t, name) in l.tables.iter().enumerate() {
        let sql = format!("SELECT * FROM {}", shapes::quote_qualified(name));
        let mut kc = None;
        for m in client.simple_query(&sql)? {
            match m {
                SimpleQueryMessage::RowDescription(cols) => {
                    kc = cols.iter().position(|c| c.name() == l.key_column);
                }
                SimpleQueryMessage::Row(row) => {
                    let kc = kc.with_context(|| format!("{name} has no column {}", l.key_column))?;
                    let key: i64 = row.get(kc).and_then(|v| v.parse().ok()).context("key")?;
                    let payload: Vec<String> = (0..row.len())
                        .filter(|&i| i != kc)
                        .map(|i| shapes::escape(row.get(i).unwrap_or("")))
                        .collect();
                    table_rows
                        .entry(l.shape_of(t as u16, key))
                        .or_default()
                        .insert(key, payload.join("\t"));
                }
                _ => {}
            }
        }
    }
    // Logical decoding reads only flushed WAL; a synchronous commit of our own flushes it.
    client.batch_execute("SET synchronous_commit = on; BEGIN; SELECT pg_current_xact_id(); COMMIT;")?;
    // 2. What the slot will replay.
    let unacked = unacknowledged(&mut client, o)?;

    // 3. The files.
    let (mut rows_checked, mut in_files, mut pending, mut lost, mut extra) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut duplicates, mut conflicts, mut wrong_payload, mut mismatched, mut invalid) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut examples = Vec::new();
    let mut file_keys: HashMap<ShapeKey, HashSet<i64>> = HashMap::new();
    for key in l.keys() {
        if l.invalid_marker(&o.out, key).exists() {
            invalid += 1;
            continue;
        }
        let f = shapes::read_file(&l.path(&o.out, key))?;
        let empty = HashMap::new();
        let rows = table_rows.get(&key).unwrap_or(&empty);
        let mut bad = f.conflicts > 0 || f.other_ops > 0;
        duplicates += f.duplicates;
        conflicts += f.conflicts;
        for (id, payload) in rows {
            rows_checked += 1;
            match f.rows.get(id) {
                Some((_, p)) if p == payload => in_files += 1,
                Some(_) => {
                    wrong_payload += 1;
                    bad = true;
                }
                None if !o.caught_up && unacked.contains(&(key.table, *id)) => pending += 1,
                None => {
                    lost += 1;
                    bad = true;
                    if examples.len() < 5 {
                        examples.push(format!("{key} id={id}"));
                    }
                }
            }
        }
        for id in f.rows.keys() {
            if !rows.contains_key(id) {
                extra += 1;
                bad = true;
            }
        }
        mismatched += u64::from(bad);
        file_keys.insert(key, f.rows.keys().copied().collect());
    }

    // The kill window's commit.
    let (mut kw_rows, mut kw_missing) = (0u64, 0u64);
    let kw = o.out.join("kill-window.txt");
    if let Ok(text) = fs::read_to_string(&kw) {
        for line in text.lines().skip(1) {
            let mut it = line.split(' ');
            let (Some(t), Some(k), Some(id)) = (it.next(), it.next(), it.next()) else { continue };
            let key = ShapeKey { table: t.parse()?, k: k.parse()? };
            let id: i64 = id.parse()?;
            kw_rows += 1;
            let in_file = file_keys.get(&key).is_some_and(|s| s.contains(&id));
            let replayable = !o.caught_up && unacked.contains(&(key.table, id));
            if !in_file && !replayable {
                kw_missing += 1;
            }
        }
    }

    println!(
        "verify: shapes={} rows_checked={rows_checked} in_files={in_files} unacked={pending} lost={lost} extra={extra} wrong_payload={wrong_payload} duplicates={duplicates} conflicts={conflicts} shapes_mismatched={mismatched} invalid={invalid} kill_window_rows={kw_rows} kill_window_missing={kw_missing}",
        l.count()
    );
    if lost > 0 {
        bail!("{lost} committed rows are neither in their shape's file nor unacknowledged (e.g. {examples:?}): data loss");
    }
    if kw_missing > 0 {
        bail!("{kw_missing} rows of the kill-window commit are missing");
    }
    if mismatched > 0 {
        bail!("{mismatched} shapes do not match their rows");
    }
    if o.caught_up && invalid > 0 {
        bail!("{invalid} shapes are still waiting for their rebuild");
    }
    Ok(())
}

/// (table index, key) of the rows inserted by transactions after the slot's confirmed
/// position. Retries while the slot is briefly held by a dying walsender.
fn unacknowledged(client: &mut Client, o: &VerifyOpts) -> Result<HashSet<(u16, i64)>> {
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
    let mut rels: HashMap<u32, Option<(u16, usize)>> = HashMap::new();
    let mut out = HashSet::new();
    for row in rows {
        let data: &[u8] = row.get(0);
        match pgoutput::decode(data)? {
            Message::Relation(r) => {
                let e = o.layout.table_index(&r.qualified()).and_then(|t| {
                    r.columns.iter().position(|c| *c == o.layout.key_column).map(|kc| (t, kc))
                });
                rels.insert(r.id, e);
            }
            Message::Insert { rel, new } => {
                if let Some(Some((t, kc))) = rels.get(&rel) {
                    if let Some(id) = new.get(*kc).and_then(pgoutput::int_value) {
                        out.insert((*t, id));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}
