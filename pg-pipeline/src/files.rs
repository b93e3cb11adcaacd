//! Opening the per-shape output files (see `shapes.rs` for their lines).
//!
//! A consumer killed in the middle of a `write` can leave a partial last line. Opening a file
//! for append first cuts it back to its last complete line: that change was never reported as
//! durable, so the slot replays it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Write;

    #[test]
    fn partial_last_line_is_cut() {
        let dir = std::env::temp_dir().join(format!("pgp-files-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("0.log");
        fs::write(&path, "10 I 1 a\n12 I 2 b\n14 I 3 par").unwrap();
        let mut f = open_append(&path).unwrap();
        f.write_all(b"16 I 3 c\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "10 I 1 a\n12 I 2 b\n16 I 3 c\n");
        fs::write(&path, "no newline at all").unwrap();
        drop(open_append(&path).unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), "");
        fs::remove_dir_all(&dir).unwrap();
    }
}
