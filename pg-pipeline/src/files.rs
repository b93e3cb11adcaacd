//! The per-shape output files: one line per change, `<commit lsn> <test_decoding row>`.
//!
//! A consumer killed in the middle of a `write` can leave a partial last line. Opening a file
//! for append first cuts it back to its last complete line: that change was never reported as
//! durable, so the slot replays it.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use crate::decode;

/// Opens `path` for appending, creating it, after cutting a partial last line.
pub fn open_append(path: &Path) -> io::Result<File> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    let len = file.metadata()?.len();
    let keep = complete_len(&mut file, len)?;
    if keep < len {
        file.set_len(keep)?;
        file.sync_all()?;
    }
    Ok(file)
}

/// The length of the prefix of `file` that ends with a newline (0 if none).
fn complete_len(file: &mut File, len: u64) -> io::Result<u64> {
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = usize::try_from(end - start).expect("chunk fits in memory");
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// One line of a shape file for a change of the transaction that committed at `commit`.
/// Backslashes and newlines in the row are escaped so that a line is one change.
pub fn line(commit: u64, data: &str) -> String {
    let mut s = format!("{} ", decode::Lsn(commit));
    for c in data.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s.push('\n');
    s
}

/// Every inserted row found in the `*.log` files of `dir`: table -> id -> times seen.
/// A partial last line (a writer killed mid-write) is ignored.
pub fn inserted_rows(
    dir: &Path,
    id_column: &str,
) -> io::Result<HashMap<String, HashMap<i64, u32>>> {
    let mut rows: HashMap<String, HashMap<i64, u32>> = HashMap::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("log") {
            continue;
        }
        let mut reader = BufReader::new(File::open(&path)?);
        let mut buf = String::new();
        loop {
            buf.clear();
            if reader.read_line(&mut buf)? == 0 || !buf.ends_with('\n') {
                break;
            }
            let Some((_lsn, data)) = buf.trim_end_matches('\n').split_once(' ') else {
                continue;
            };
            if let Some((table, id)) = decode::insert_id(data, id_column) {
                *rows.entry(table).or_default().entry(id).or_default() += 1;
            }
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn partial_last_line_is_cut_and_ignored() {
        let dir = std::env::temp_dir().join(format!("pgp-files-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("public.t.log");
        fs::write(
            &path,
            format!(
                "{}{}table public.t: INSERT: id[bigint]:3",
                line(10, "table public.t: INSERT: id[bigint]:1 p[text]:'a'"),
                line(12, "table public.t: INSERT: id[bigint]:2 p[text]:'b'"),
            ),
        )
        .unwrap();
        let rows = inserted_rows(&dir, "id").unwrap();
        assert_eq!(rows["public.t"].len(), 2, "the partial line is not a row");
        let mut f = open_append(&path).unwrap();
        f.write_all(line(14, "table public.t: INSERT: id[bigint]:1 p[text]:'a'").as_bytes())
            .unwrap();
        let rows = inserted_rows(&dir, "id").unwrap();
        assert_eq!(rows["public.t"][&1], 2);
        assert_eq!(rows["public.t"][&2], 1);
        assert!(fs::read_to_string(&path).unwrap().ends_with("'a'\n"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lines_escape_newlines() {
        assert_eq!(line(0x1_0000_0002, "a\nb\\c"), "1/2 a\\nb\\\\c\n");
    }
}
