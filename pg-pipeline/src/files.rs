//! Opening the per-shape output files (see `shapes.rs` for their lines), and the durability
//! ledger of the power-loss fault.
//!
//! A consumer killed in the middle of a `write` can leave a partial last line. Opening a file
//! for append first cuts it back to its last complete line: that change was never reported as
//! durable, so the slot replays it.
//!
//! **Power loss** (`PG_PIPELINE_FAULT=power-loss...`, enabled by [`simulate_power_loss`]): a
//! SIGKILL keeps the page cache, so it never loses what was written but not `fsync`ed. The
//! ledger records, per file, the length that an `fsync` (or `syncfs`) covered; when the fault
//! fires, [`power_loss`] stops every write (the I/O gate), cuts each file back to its recorded
//! length (what a machine losing power would find after a reboot, at worst) and aborts.
//! Files are recorded only after a sync call returned success, so a build that skips the
//! sync, or reports before writing, loses what it acknowledged.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Whether the ledger is kept. Relaxed: set once before any consumer starts (the spawn
/// synchronizes).
static SIMULATE: AtomicBool = AtomicBool::new(false);
/// Path -> length covered by a successful sync.
static LEDGER: Mutex<Option<HashMap<PathBuf, u64>>> = Mutex::new(None);
/// Writers and syncs hold it shared; the power loss takes it exclusively and never gives it
/// back, so nothing is written or synced after the cut.
static GATE: RwLock<()> = RwLock::new(());

/// Turns the ledger on (before any file is opened).
pub fn simulate_power_loss() {
    *LEDGER.lock().unwrap_or_else(|e| e.into_inner()) = Some(HashMap::new());
    SIMULATE.store(true, Ordering::Relaxed); // Relaxed: see SIMULATE
}

/// Held around each `write` and each sync-and-record: a power loss happens between them,
/// never inside one.
pub fn io_gate() -> RwLockReadGuard<'static, ()> {
    GATE.read().unwrap_or_else(|e| e.into_inner())
}

/// Records that a sync call covering `path` up to `len` bytes returned success.
pub fn synced(path: &Path, len: u64) {
    if !SIMULATE.load(Ordering::Relaxed) {
        // Relaxed: see SIMULATE
        return;
    }
    if let Some(m) = LEDGER.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        m.insert(path.to_path_buf(), len);
    }
}

/// Records `path` as durable up to `len` unless the ledger has it already: for a file whose
/// present length a sync covered, before the first write of this process to it.
pub fn durable_now(path: &Path, len: u64) {
    if !SIMULATE.load(Ordering::Relaxed) {
        // Relaxed: see SIMULATE
        return;
    }
    if let Some(m) = LEDGER.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        m.entry(path.to_path_buf()).or_insert(len);
    }
}

/// `fdatasync`, recorded in the ledger.
pub fn sync_data(file: &File, path: &Path, len: u64) -> io::Result<()> {
    file.sync_data()?;
    synced(path, len);
    Ok(())
}

/// One `syncfs(2)` for the file system `file` is on; on success every `(path, len)` of
/// `written` is recorded durable.
pub fn syncfs<'a>(file: &File, written: impl Iterator<Item = (&'a Path, u64)>) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a file descriptor borrowed for the duration of the call.
    if unsafe { libc::syncfs(file.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    for (path, len) in written {
        synced(path, len);
    }
    Ok(())
}

/// Stops every write and sync (they wait for ever): the moment of the power loss.
pub fn freeze() -> RwLockWriteGuard<'static, ()> {
    GATE.write().unwrap_or_else(|e| e.into_inner())
}

/// The power loss: every file in the ledger cut back to its synced length, then abort.
pub fn power_loss(why: &str) -> ! {
    power_loss_frozen(freeze(), why)
}

/// [`power_loss`] once [`freeze`] has stopped the I/O.
pub fn power_loss_frozen(gate: RwLockWriteGuard<'static, ()>, why: &str) -> ! {
    let (files, dropped) = cut_to_synced();
    log!("fault: power loss ({why}): {files} file(s) cut back to their fsynced length, {dropped} unsynced byte(s) gone; aborting");
    // The gate stays taken: nothing is written after the cut.
    let _keep = gate;
    std::process::abort();
}

/// Cuts every file in the ledger back to its synced length; returns (files cut, bytes gone).
fn cut_to_synced() -> (u64, u64) {
    let ledger = LEDGER.lock().unwrap_or_else(|e| e.into_inner());
    let (mut files, mut dropped) = (0u64, 0u64);
    for (path, &len) in ledger.iter().flatten() {
        let Ok(f) = OpenOptions::new().write(true).open(path) else {
            continue;
        };
        let now = f.metadata().map(|m| m.len()).unwrap_or(len);
        if now > len && f.set_len(len).is_ok() {
            files += 1;
            dropped += now - len;
        }
    }
    (files, dropped)
}

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
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "10 I 1 a\n12 I 2 b\n16 I 3 c\n"
        );
        fs::write(&path, "no newline at all").unwrap();
        drop(open_append(&path).unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), "");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn power_loss_keeps_only_what_a_sync_covered() {
        let dir = std::env::temp_dir().join(format!("pgp-power-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.log"), dir.join("b.log"));
        simulate_power_loss();
        let mut fa = open_append(&a).unwrap();
        let mut fb = open_append(&b).unwrap();
        fa.write_all(b"1 I 1 x\n").unwrap();
        sync_data(&fa, &a, 8).unwrap();
        fa.write_all(b"2 I 2 y\n").unwrap(); // written, never synced
        fb.write_all(b"1 I 3 z\n").unwrap();
        syncfs(&fb, [(b.as_path(), 8)].into_iter()).unwrap();
        fb.write_all(b"3 I 4 w\n").unwrap();
        // The ledger is global: another test running meanwhile may have files in it too.
        let (files, dropped) = cut_to_synced();
        assert!(
            files >= 2 && dropped >= 16,
            "{files} files, {dropped} bytes cut"
        );
        assert_eq!(fs::read_to_string(&a).unwrap(), "1 I 1 x\n");
        assert_eq!(fs::read_to_string(&b).unwrap(), "1 I 3 z\n");
        fs::remove_dir_all(&dir).unwrap();
    }
}
