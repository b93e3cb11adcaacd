//! The consumers' write-ahead log (`--sync log`, the default): a round is made durable by one
//! append and one `fdatasync` of the consumer's log segment, not by writing and syncing every
//! shape file it touched. The shape files are written behind, off the acknowledgement path.
//!
//! Why: at 20,000 shapes and more a round touches as many files as it has rows, and making
//! each durable cost 5-7 KiB of disk writes per row (a data page, an inode, the journal): the
//! pipeline drained a backlog at 0.13-0.19x `pg_recvlogical`. The log writes each row once,
//! sequentially, with a 56-byte header.
//!
//! **Segments.** Each consumer appends to `<out>/wal/c<consumer>-<seq>.seg`; after
//! [`SEGMENT_BYTES`] or [`SEGMENT_AGE`] it hands the segment to the write-behind thread
//! ([`spawn_writer`]) and starts the next. The writer applies the segments' records to the
//! shape files, makes them durable with one `syncfs(2)`, and only then deletes the segments.
//! The writer stands aside while the log grows faster than [`BUSY_BYTES_PER_S`] (a backlog
//! draining) unless [`DEFER_BYTES`] are waiting:
//! creating and writing 100,000s of shape files beside the stream slowed the log's syncs and
//! took the CPU the stream needed. Up to [`QUEUED_BYTES`] of segments may wait, then a
//! consumer's hand-over waits (the disk does not fill).
//!
//! **A record** names its shape, the shape file's identity (device, inode, birth time) and
//! the offset in that file where its lines start, which the consumer knows because it owns
//! the file's length. Applying a record is idempotent and safe to repeat after any crash
//! ([`apply_segments`]):
//! - a file whose identity differs was replaced by a rebuild after the record was written:
//!   the record is stale, skipped (the rebuild's snapshot holds its rows);
//! - a file at least `offset + len` long has it already: skipped;
//! - a file between `offset` and `offset + len` long has part of it: cut back to `offset`,
//!   written again;
//! - a file shorter than `offset` lost bytes an earlier round made durable: the shape is
//!   marked for rebuild (never seen; it would take a failing disk);
//! - a missing file is created when the record starts at offset 0: a shape's first lines
//!   (see below), or a file whose directory entry never reached the disk (later records for
//!   the lost identity follow the new file).
//!
//! **New files.** A consumer does not create a shape file at its first change: creating
//! 100,000s of files on the acknowledgement path cost more than the log saved. It gives the
//! file-to-be a fresh identity (a nonce), and the write-behind creates the file with the nonce
//! in an extended attribute (`user.flushwatch.file`). A rebuild's file gets a nonce of its own
//! ([`stamp`]), so a record for the file-to-be that a rebuild overtook is stale, as above; and
//! so an empty file without the attribute can only be a creation the write-behind did not
//! finish, which a record with a nonce adopts. Where the file system has no extended
//! attributes, the consumer creates the file at its first change instead.
//!
//! **Recovery** ([`recover`]) applies every segment left on disk before the pipeline starts
//! (and before `verify` reads the files): what the log made durable, and so was reported
//! flushed, is in the shape files before anything reads them.

use std::collections::{HashMap, VecDeque};
use std::ffi::CStr;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossbeam_channel::{RecvTimeoutError, Sender};

use crate::files;
use crate::rebuild;
use crate::shapes::{Layout, ShapeKey};

/// A segment is handed to the writer once it holds this many bytes...
pub const SEGMENT_BYTES: u64 = 8 << 20;
/// ...or is this old.
pub const SEGMENT_AGE: Duration = Duration::from_secs(1);
/// Bytes of segments handed over and not yet applied, at most (then a consumer's hand-over
/// waits). Disk, not memory: the writer reads at most [`BATCH`] segments at a time.
pub const QUEUED_BYTES: u64 = 1 << 30;
/// Segments the writer applies (and reads into memory) at once, at most.
const BATCH: usize = 8;
/// The writer stands aside while more than this much log arrived in the last second...
pub const BUSY_BYTES_PER_S: u64 = 256 << 10;
/// ...unless this much is waiting.
pub const DEFER_BYTES: u64 = 256 << 20;

const MAGIC: u32 = 0x3152_5746; // "FWR1", little-endian
const HEADER: usize = 56;

/// Which file a record was written against: a rebuild replaces the file, so a record of the
/// old file is recognised as stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ident {
    /// A file without the nonce attribute: its inode, and its birth time against a reused
    /// inode number (0 where the file system does not report one).
    Inode { dev: u64, ino: u64, btime: u64 },
    /// A file the write-behind created (or will create) with this nonce in its attribute.
    Nonce(u64),
}

/// The attribute holding a file's nonce.
const XATTR: &CStr = c"user.flushwatch.file";
/// Whether the output's file system keeps extended attributes ([`probe_xattrs`]). Relaxed:
/// set once at start-up, before the consumers are spawned (the spawn synchronizes).
static XATTRS: AtomicBool = AtomicBool::new(false);

impl Ident {
    fn inode(meta: &Metadata) -> Ident {
        let btime = meta
            .created()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64);
        Ident::Inode {
            dev: meta.dev(),
            ino: meta.ino(),
            btime,
        }
    }

    /// An open file's identity: its nonce if it has one, else its inode.
    pub fn of(f: &File) -> io::Result<Ident> {
        let mut v = [0u8; 8];
        // SAFETY: reads at most 8 bytes into `v`, on a descriptor borrowed for the call.
        let n = unsafe {
            libc::fgetxattr(
                f.as_raw_fd(),
                XATTR.as_ptr(),
                v.as_mut_ptr().cast(),
                v.len(),
            )
        };
        if n == 8 {
            return Ok(Ident::Nonce(u64::from_le_bytes(v)));
        }
        if n >= 0 {
            return Err(io::Error::other(
                "a malformed user.flushwatch.file attribute",
            ));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => Ok(Ident::inode(&f.metadata()?)),
            _ => Err(e),
        }
    }

    /// `(dev, ino, btime)` as a record stores them; a nonce is `(u64::MAX, nonce, 0)`.
    fn words(self) -> [u64; 3] {
        match self {
            Ident::Inode { dev, ino, btime } => [dev, ino, btime],
            Ident::Nonce(n) => [u64::MAX, n, 0],
        }
    }

    fn from_words([dev, ino, btime]: [u64; 3]) -> Ident {
        if dev == u64::MAX {
            Ident::Nonce(ino)
        } else {
            Ident::Inode { dev, ino, btime }
        }
    }
}

/// Checks once, in `out`, whether new files can carry the nonce attribute.
pub fn probe_xattrs(out: &Path) -> io::Result<bool> {
    let p = out.join(".xattr-probe");
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)?;
    let ok = set_nonce(&f, 0).is_ok();
    drop(f);
    fs::remove_file(&p)?;
    XATTRS.store(ok, Ordering::Relaxed); // Relaxed: see XATTRS
    Ok(ok)
}

fn set_nonce(f: &File, nonce: u64) -> io::Result<()> {
    let v = nonce.to_le_bytes();
    // SAFETY: passes 8 readable bytes, on a descriptor borrowed for the call.
    let r =
        unsafe { libc::fsetxattr(f.as_raw_fd(), XATTR.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// For a shape file that does not exist yet: a fresh identity, for the write-behind to create
/// it with. `None` when the file exists, or when the file system keeps no attributes (the
/// caller then opens or creates it).
pub fn fresh_ident(path: &Path) -> Option<Ident> {
    // Relaxed: see XATTRS.
    if !XATTRS.load(Ordering::Relaxed) {
        return None;
    }
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Some(Ident::Nonce(next_nonce())),
        _ => None,
    }
}

/// Unique across processes: this process's start in nanoseconds plus a counter (a later
/// process starts seconds later, far beyond any count of shapes).
fn next_nonce() -> u64 {
    static BASE: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = *BASE.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    // Relaxed: only the increment's atomicity matters (each nonce handed out once).
    base.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) & (u64::MAX >> 1)
}

/// Creates `path` holding `nonce`. If a file appeared there meanwhile (a rebuild), that file
/// is returned. A crash between the creation and the attribute leaves an empty file without
/// one, which the record adopts when it is applied again (module docs).
fn create_with_nonce(path: &Path, nonce: u64) -> io::Result<File> {
    match OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(f) => {
            set_nonce(&f, nonce)?;
            Ok(f)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            OpenOptions::new().read(true).write(true).open(path)
        }
        Err(e) => Err(e),
    }
}

/// Gives a file that replaces a shape file (a rebuild's) a fresh nonce, where the file system
/// keeps attributes; see the module docs. Made durable by the caller's `fsync`.
pub fn stamp(f: &File) -> io::Result<()> {
    // Relaxed: see XATTRS.
    if XATTRS.load(Ordering::Relaxed) {
        set_nonce(f, next_nonce())?;
    }
    Ok(())
}

/// The directory of the segments.
pub fn dir(out: &Path) -> PathBuf {
    out.join("wal")
}

/// One consumer's open segment.
pub struct Segment {
    file: File,
    path: PathBuf,
    /// Bytes written (and, after [`commit`](Self::commit), durable).
    len: u64,
    opened: Instant,
    buf: Vec<u8>,
}

impl Segment {
    /// Creates segment `seq` of consumer `consumer` (its directory entry made durable).
    pub fn create(out: &Path, consumer: usize, seq: u64) -> io::Result<Segment> {
        let d = dir(out);
        fs::create_dir_all(&d)?;
        let path = d.join(format!("c{consumer:04}-{seq:012}.seg"));
        // An applied segment, renamed into place and emptied (should the process die before
        // `set_len`, its old records are applied again, which changes nothing); a new file if
        // there is no spare or it has gone.
        let reused = take_spare(&d).and_then(|spare| {
            fs::rename(&spare, &path).ok()?;
            let f = OpenOptions::new().write(true).open(&path).ok()?;
            f.set_len(0).ok()?;
            Some(f)
        });
        let file = match reused {
            Some(f) => f,
            None => OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)?,
        };
        File::open(&d)?.sync_all()?;
        files::synced(&path, 0);
        Ok(Segment {
            file,
            path,
            len: 0,
            opened: Instant::now(),
            buf: Vec::new(),
        })
    }

    /// Adds a record: `lines` go to `key`'s file `ident` at `offset`. Buffered until
    /// [`commit`](Self::commit).
    pub fn append(&mut self, key: ShapeKey, ident: Ident, offset: u64, lines: &[u8]) {
        let start = self.buf.len();
        let b = &mut self.buf;
        b.extend_from_slice(&MAGIC.to_le_bytes());
        b.extend_from_slice(&key.table.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&key.k.to_le_bytes());
        b.extend_from_slice(&(lines.len() as u32).to_le_bytes());
        for w in ident.words() {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.extend_from_slice(&offset.to_le_bytes());
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(lines);
        let sum = checksum(&b[start..start + HEADER - 8], lines);
        b[start + HEADER - 8..start + HEADER].copy_from_slice(&sum.to_le_bytes());
    }

    /// Writes the buffered records and makes them durable (`fdatasync`); `before_sync` runs
    /// between the two (fault injection). Returns the bytes it wrote.
    pub fn commit(&mut self, before_sync: impl FnOnce() -> io::Result<()>) -> io::Result<u64> {
        let _g = files::io_gate();
        self.file.write_all(&self.buf)?;
        let n = self.buf.len() as u64;
        self.len += n;
        self.buf.clear();
        before_sync()?;
        files::sync_data(&self.file, &self.path, self.len)?;
        Ok(n)
    }

    /// Whether it is time to hand it over: at [`SEGMENT_BYTES`], or at [`SEGMENT_AGE`] if the
    /// writer has applied everything handed to it (while it stands aside for a drain, handing
    /// over more would only start more segment files).
    pub fn full(&self, behind: Option<&Behind>) -> bool {
        self.len >= SEGMENT_BYTES
            || (self.opened.elapsed() >= SEGMENT_AGE && behind.is_none_or(Behind::idle))
    }
}

/// A consumer's side of the write-behind: where full segments go.
#[derive(Clone)]
pub struct Behind {
    tx: Sender<(PathBuf, u64)>,
    /// Bytes handed over and not yet applied. Relaxed: a budget, it publishes nothing (the
    /// channel carries the segments).
    queued: std::sync::Arc<AtomicU64>,
    /// Bytes appended to any consumer's log so far: the writer reads the log's growth from it.
    /// Relaxed: a statistic, it publishes nothing.
    appended: std::sync::Arc<AtomicU64>,
}

impl Behind {
    /// Counts `n` bytes a consumer's round appended to its log.
    pub fn logged(&self, n: u64) {
        self.appended.fetch_add(n, Ordering::Relaxed); // Relaxed: see `appended`
    }

    /// Whether everything handed over is applied.
    pub fn idle(&self) -> bool {
        self.queued.load(Ordering::Relaxed) == 0 // Relaxed: see `queued`
    }

    /// Hands `seg` over; waits while [`QUEUED_BYTES`] are queued. Fails if the writer is gone.
    pub fn hand_over(&self, seg: Segment) -> Result<()> {
        // Relaxed: see `queued`.
        while self.queued.load(Ordering::Relaxed) > QUEUED_BYTES {
            thread::sleep(Duration::from_millis(5));
        }
        self.queued.fetch_add(seg.len, Ordering::Relaxed); // Relaxed: see `queued`
        self.tx
            .send((seg.path, seg.len))
            .map_err(|_| anyhow::anyhow!("the write-behind thread is gone"))
    }
}

/// FNV-1a, 64 bits, over a record's header (checksum excluded) and lines: enough to find a
/// torn tail, which is all it is for.
fn checksum(header: &[u8], lines: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in header.iter().chain(lines) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// A record read back.
struct Record<'a> {
    key: ShapeKey,
    ident: Ident,
    offset: u64,
    lines: &'a [u8],
}

/// The records of a segment, up to the first that is torn or corrupt (a crash mid-append:
/// never synced, so never reported).
fn records(mut buf: &[u8]) -> impl Iterator<Item = Record<'_>> {
    std::iter::from_fn(move || {
        if buf.len() < HEADER {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes(buf[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(buf[i..i + 8].try_into().expect("8 bytes"));
        if u32_at(0) != MAGIC {
            return None;
        }
        let n = u32_at(12) as usize;
        if buf.len() < HEADER + n {
            return None;
        }
        let lines = &buf[HEADER..HEADER + n];
        if checksum(&buf[..HEADER - 8], lines) != u64_at(HEADER - 8) {
            return None;
        }
        let r = Record {
            key: ShapeKey {
                table: u16::from_le_bytes([buf[4], buf[5]]),
                k: u32_at(8),
            },
            ident: Ident::from_words([u64_at(16), u64_at(24), u64_at(32)]),
            offset: u64_at(40),
            lines,
        };
        buf = &buf[HEADER + n..];
        Some(r)
    })
}

/// What applying segments did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub segments: u64,
    pub records: u64,
    /// Records written to a shape file (the rest were there already, or stale).
    pub written: u64,
    pub stale: u64,
    /// Shapes marked for rebuild: their file lost bytes the log had made durable.
    pub marked: u64,
    pub bytes: u64,
}

impl std::ops::AddAssign for Applied {
    fn add_assign(&mut self, o: Applied) {
        self.segments += o.segments;
        self.records += o.records;
        self.written += o.written;
        self.stale += o.stale;
        self.marked += o.marked;
        self.bytes += o.bytes;
    }
}

/// Applies `segments` (in order: a consumer's segments by sequence number) to the shape
/// files, makes the files durable with one `syncfs(2)`, then deletes the segments.
pub fn apply_segments(layout: &Layout, out: &Path, segments: &[PathBuf]) -> Result<Applied> {
    let mut a = Applied::default();
    let texts: Vec<Vec<u8>> = segments
        .iter()
        .map(|p| fs::read(p).with_context(|| format!("reading {}", p.display())))
        .collect::<Result<_>>()?;
    // Per shape, its records in log order; shapes in order of first appearance.
    let mut by_shape: HashMap<ShapeKey, Vec<Record<'_>>> = HashMap::new();
    let mut order = Vec::new();
    for t in &texts {
        a.segments += 1;
        for r in records(t) {
            a.records += 1;
            let v = by_shape.entry(r.key).or_default();
            if v.is_empty() {
                order.push(r.key);
            }
            v.push(r);
        }
    }
    let mut touched = Vec::new();
    let mut lost = Vec::new();
    for key in order {
        let path = layout.path(out, key);
        match apply_shape(&path, &by_shape[&key], &mut a)
            .with_context(|| format!("applying the log to {}", path.display()))?
        {
            Outcome::Written(len) => touched.push((path, len)),
            Outcome::Unchanged => {}
            Outcome::Lost => lost.push(key),
        }
    }
    if !lost.is_empty() {
        log!(
            "wal: {} shape file(s) are shorter than the log says they were: marked for rebuild ({})",
            lost.len(),
            lost.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(" ")
        );
        rebuild::mark_invalid(layout, out, &lost)?;
        a.marked += lost.len() as u64;
    }
    if !touched.is_empty() {
        let _g = files::io_gate();
        let d = File::open(out).with_context(|| format!("opening {}", out.display()))?;
        files::syncfs(&d, touched.iter().map(|(p, l)| (p.as_path(), *l)))
            .context("syncfs of the written-behind files")?;
    }
    for p in segments {
        recycle(p).with_context(|| format!("retiring {}", p.display()))?;
    }
    Ok(a)
}

/// Applied segments kept for reuse, per log directory, at most [`SPARES`] each: a consumer
/// starting a segment renames one instead of creating a file. Creating files allocates inodes,
/// which on ext4 after 100,000s of deletions took a consumer's round tens of milliseconds
/// (`recently_deleted` in a profile); a rename allocates nothing.
static SPARE: std::sync::Mutex<Option<HashMap<PathBuf, Vec<PathBuf>>>> =
    std::sync::Mutex::new(None);
const SPARES: usize = 32;

/// Creates empty spares in `out`'s log directory until it has `n` (start-up: so that the
/// first segments of a drain, while the writer stands aside, need no new file).
pub fn prepare_spares(out: &Path, n: usize) -> io::Result<()> {
    let d = dir(out);
    fs::create_dir_all(&d)?;
    let mut g = SPARE.lock().unwrap_or_else(|e| e.into_inner());
    let pool = g
        .get_or_insert_with(HashMap::new)
        .entry(d.clone())
        .or_default();
    while pool.len() < n.min(SPARES) {
        let p = d.join(format!("spare-{:x}.free", next_nonce()));
        File::create(&p)?;
        pool.push(p);
    }
    Ok(())
}

fn take_spare(d: &Path) -> Option<PathBuf> {
    let mut g = SPARE.lock().unwrap_or_else(|e| e.into_inner());
    g.as_mut()?.get_mut(d)?.pop()
}

/// An applied segment becomes a spare (`spare-<n>.free`), or is deleted if there are enough.
fn recycle(p: &Path) -> io::Result<()> {
    let Some(d) = p.parent() else {
        return fs::remove_file(p);
    };
    let mut g = SPARE.lock().unwrap_or_else(|e| e.into_inner());
    let pool = g
        .get_or_insert_with(HashMap::new)
        .entry(d.to_path_buf())
        .or_default();
    let r = if pool.len() < SPARES {
        let spare = d.join(format!("spare-{:x}.free", next_nonce()));
        fs::rename(p, &spare).map(|()| pool.push(spare))
    } else {
        fs::remove_file(p)
    };
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

enum Outcome {
    /// Written; the file's length now.
    Written(u64),
    Unchanged,
    /// Shorter than a record's offset: bytes the log made durable are gone.
    Lost,
}

/// Applies one shape's records (module docs for the rules).
fn apply_shape(path: &Path, recs: &[Record<'_>], a: &mut Applied) -> io::Result<Outcome> {
    // The file, the identity records must carry to apply, and its length.
    let mut cur: Option<(File, Ident, u64)> =
        match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => {
                let (id, len) = (Ident::of(&f)?, f.metadata()?.len());
                Some((f, id, len))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
    // A lost file recreated: records of the lost identity now go to the new one.
    let mut alias: Option<Ident> = None;
    let mut wrote = false;
    for r in recs {
        if cur.is_none() {
            if r.offset != 0 {
                return Ok(Outcome::Lost);
            }
            let f = match r.ident {
                Ident::Nonce(n) => create_with_nonce(path, n)?,
                Ident::Inode { .. } => match OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(path)
                {
                    Ok(f) => {
                        alias = Some(r.ident);
                        f
                    }
                    // Someone else's file appeared meanwhile: its identity decides.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        OpenOptions::new().read(true).write(true).open(path)?
                    }
                    Err(e) => return Err(e),
                },
            };
            let (id, len) = (Ident::of(&f)?, f.metadata()?.len());
            files::durable_now(path, len);
            cur = Some((f, id, len));
        }
        let (f, ident, len) = cur.as_mut().expect("opened or created above");
        let n = r.lines.len() as u64;
        if let (Ident::Nonce(want), Ident::Inode { .. }, 0) = (r.ident, *ident, *len) {
            // An empty file without a nonce: the write-behind's creation, cut short.
            set_nonce(f, want)?;
            *ident = r.ident;
        }
        if r.ident != *ident && alias != Some(r.ident) {
            a.stale += 1;
            continue;
        }
        if *len >= r.offset + n {
            continue;
        }
        if *len < r.offset {
            return Ok(Outcome::Lost);
        }
        write_at(f, path, len, r, a)?;
        wrote = true;
    }
    Ok(match cur {
        Some((_, _, len)) if wrote => Outcome::Written(len),
        _ => Outcome::Unchanged,
    })
}

/// Writes a record at its offset, cutting a partial copy of it first.
fn write_at(
    f: &File,
    path: &Path,
    len: &mut u64,
    r: &Record<'_>,
    a: &mut Applied,
) -> io::Result<()> {
    // What the file holds now is durable (recovery synced it at start-up, and every write
    // behind was synced before its segment went): the power-loss ledger may cut back to it.
    files::durable_now(path, *len);
    let _g = files::io_gate();
    if *len > r.offset {
        f.set_len(r.offset)?;
    }
    f.write_all_at(r.lines, r.offset)?;
    *len = r.offset + r.lines.len() as u64;
    a.written += 1;
    a.bytes += r.lines.len() as u64;
    Ok(())
}

/// The segments left on disk, in an order that applies each consumer's in sequence.
fn segments_on_disk(out: &Path) -> Result<Vec<PathBuf>> {
    let d = dir(out);
    let mut v: Vec<PathBuf> = match fs::read_dir(&d) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", d.display())),
    };
    // `c<consumer:04>-<seq:012>.seg`: the name's order is the sequence order.
    v.sort();
    Ok(v)
}

/// Applies every segment left by an earlier process (see the module docs).
pub fn recover(layout: &Layout, out: &Path) -> Result<Applied> {
    // An earlier process's spares: reused, or deleted beyond what the pool keeps.
    if let Ok(entries) = fs::read_dir(dir(out)) {
        for p in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            if p.extension().is_some_and(|x| x == "free") {
                let mut g = SPARE.lock().unwrap_or_else(|e| e.into_inner());
                let pool = g
                    .get_or_insert_with(HashMap::new)
                    .entry(dir(out))
                    .or_default();
                if pool.len() < SPARES && !pool.contains(&p) {
                    pool.push(p);
                } else if !pool.contains(&p) {
                    let _ = fs::remove_file(&p);
                }
            }
        }
    }
    let segs = segments_on_disk(out)?;
    if segs.is_empty() {
        return Ok(Applied::default());
    }
    // In batches, as the writer does: the segments may hold up to `QUEUED_BYTES`, and a
    // batch is read into memory. Applying batch after batch keeps each shape's order.
    let mut a = Applied::default();
    for batch in segs.chunks(BATCH) {
        a += apply_segments(layout, out, batch)?;
    }
    log!(
        "wal: recovered {} segment(s): {} record(s), {} written to their files, {} stale, {} shape(s) marked",
        a.segments,
        a.records,
        a.written,
        a.stale,
        a.marked
    );
    Ok(a)
}

/// The write-behind thread: applies the segments the consumers hand over, in batches, until
/// every [`Behind`] is gone and the queue is empty. A failing batch is retried (its segments
/// stay on disk, so nothing is lost if the process ends first); the totals are returned.
pub fn spawn_writer(
    layout: Layout,
    out: PathBuf,
) -> io::Result<(Behind, thread::JoinHandle<Applied>)> {
    let (tx, rx) = crossbeam_channel::unbounded::<(PathBuf, u64)>();
    let queued = std::sync::Arc::new(AtomicU64::new(0));
    let appended = std::sync::Arc::new(AtomicU64::new(0));
    let behind = Behind {
        tx,
        queued: queued.clone(),
        appended: appended.clone(),
    };
    let h = thread::Builder::new()
        .name("write-behind".into())
        .spawn(move || {
            let mut total = Applied::default();
            let mut queue: VecDeque<(PathBuf, u64)> = VecDeque::new();
            let mut waiting = 0u64;
            // (when, bytes appended to the logs by then), over the last second.
            let mut growth: VecDeque<(Instant, u64)> =
                VecDeque::from([(Instant::now(), appended.load(Ordering::Relaxed))]); // Relaxed: see `Behind::appended`
            let mut open = true;
            loop {
                let mut arrive = |(p, n): (PathBuf, u64)| {
                    waiting += n;
                    queue.push_back((p, n));
                };
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(x) => arrive(x),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => open = false,
                }
                rx.try_iter().for_each(&mut arrive);
                // Relaxed: see `Behind::appended`.
                growth.push_back((Instant::now(), appended.load(Ordering::Relaxed)));
                while growth.len() > 1
                    && growth
                        .front()
                        .is_some_and(|(t, _)| t.elapsed() > Duration::from_secs(1))
                {
                    growth.pop_front();
                }
                if queue.is_empty() {
                    if open {
                        continue;
                    }
                    break;
                }
                // The log's growth over (about) the last second.
                let rate = match (growth.front(), growth.back()) {
                    (Some(a), Some(b)) => b.1 - a.1,
                    _ => 0,
                };
                if open && rate > BUSY_BYTES_PER_S && waiting < DEFER_BYTES {
                    continue;
                }
                let n = queue.len().min(BATCH);
                let paths: Vec<PathBuf> = queue.iter().take(n).map(|(p, _)| p.clone()).collect();
                match apply_segments(&layout, &out, &paths) {
                    Ok(a) => {
                        total += a;
                        let bytes: u64 = queue.drain(..n).map(|(_, b)| b).sum();
                        waiting -= bytes;
                        queued.fetch_sub(bytes, Ordering::Relaxed); // Relaxed: see `Behind::queued`
                    }
                    Err(e) => {
                        log!("write-behind: {e:#}; retrying (the segments stay on disk)");
                        thread::sleep(Duration::from_millis(500));
                    }
                }
            }
            total
        })?;
    Ok((behind, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(name: &str) -> (Layout, PathBuf) {
        crate::shapes::test_dir(&format!("wal-{name}"))
    }

    fn key(k: u32) -> ShapeKey {
        ShapeKey { table: 0, k }
    }

    /// The shape file's identity and length, creating it (what a consumer's first touch does).
    fn touch(layout: &Layout, out: &Path, k: u32) -> (Ident, u64) {
        let f = files::open_append(&layout.path(out, key(k))).unwrap();
        (Ident::of(&f).unwrap(), f.metadata().unwrap().len())
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_ends_them() {
        let (_layout, out) = setup("torn");
        let mut s = Segment::create(&out, 0, 0).unwrap();
        let id = Ident::Inode {
            dev: 1,
            ino: 2,
            btime: 3,
        };
        s.append(key(1), id, 0, b"a I 1 x\n");
        s.append(key(2), id, 9, b"b I 2 y\nb I 6 z\n");
        s.append(key(3), Ident::Nonce(77), 0, b"c I 3 w\n");
        s.commit(|| Ok(())).unwrap();
        let text = fs::read(&s.path).unwrap();
        let got: Vec<_> = records(&text)
            .map(|r| (r.key, r.ident, r.offset, r.lines.to_vec()))
            .collect();
        assert_eq!(
            got,
            vec![
                (key(1), id, 0, b"a I 1 x\n".to_vec()),
                (key(2), id, 9, b"b I 2 y\nb I 6 z\n".to_vec()),
                (key(3), Ident::Nonce(77), 0, b"c I 3 w\n".to_vec())
            ]
        );
        // Cut inside the last record, or a flipped byte in it: only the others are read.
        assert_eq!(records(&text[..text.len() - 3]).count(), 2);
        let mut bad = text.clone();
        let last = bad.len() - 2;
        bad[last] ^= 1;
        assert_eq!(records(&bad).count(), 2);
        fs::remove_dir_all(&out).unwrap();
    }

    /// Applying is idempotent: a record applied twice, a partial copy, a stale identity (the
    /// file replaced by a rebuild), a lost file and a file shorter than the log say.
    #[test]
    fn apply_is_idempotent_and_skips_what_a_rebuild_replaced() {
        let (layout, out) = setup("apply");
        let (i0, l0) = touch(&layout, &out, 0);
        let (i1, _) = touch(&layout, &out, 1);
        let (i2, _) = touch(&layout, &out, 2);
        let mut s = Segment::create(&out, 0, 0).unwrap();
        s.append(key(0), i0, l0, b"10 I 4 a\n");
        s.append(key(0), i0, l0 + 9, b"12 I 8 b\n12 U 4 c\n");
        s.append(key(1), i1, 0, b"10 I 1 x\n");
        s.append(key(2), i2, 0, b"10 I 2 y\n");
        s.append(key(3), i2, 0, b"14 I 3 z\n"); // shape 3's file never existed
        s.commit(|| Ok(())).unwrap();
        let seg = s.path.clone();
        let copy = out.join("copy.seg");
        fs::copy(&seg, &copy).unwrap();
        // Shape 0 has a partial copy of its second record (a crash mid write-behind).
        fs::write(layout.path(&out, key(0)), "10 I 4 a\n12 I 8").unwrap();
        // Shape 1 was rebuilt: a new file (new inode) holds its snapshot.
        let p1 = layout.path(&out, key(1));
        let tmp = out.join("rebuilt.tmp");
        fs::write(&tmp, "snap I 1 x\n").unwrap();
        fs::rename(&tmp, &p1).unwrap();
        // Shape 2's file lost its directory entry.
        fs::remove_file(layout.path(&out, key(2))).unwrap();

        let a = apply_segments(&layout, &out, std::slice::from_ref(&seg)).unwrap();
        assert!(!seg.exists(), "an applied segment is retired");
        let read = |k| fs::read_to_string(layout.path(&out, key(k))).unwrap();
        assert_eq!(read(0), "10 I 4 a\n12 I 8 b\n12 U 4 c\n");
        assert_eq!(
            read(1),
            "snap I 1 x\n",
            "a stale record leaves the rebuilt file alone"
        );
        assert_eq!(
            read(2),
            "10 I 2 y\n",
            "a lost file starting at 0 is recreated"
        );
        assert_eq!(read(3), "14 I 3 z\n");
        assert_eq!((a.records, a.written, a.stale, a.marked), (5, 3, 1, 0));
        // Everything again (a crash after the sync, before the segment was deleted): nothing
        // changes. The recreated files have new identities, so their records are stale now.
        let a = apply_segments(&layout, &out, std::slice::from_ref(&copy)).unwrap();
        assert_eq!((a.records, a.written, a.stale, a.marked), (5, 0, 3, 0));
        assert_eq!(read(0), "10 I 4 a\n12 I 8 b\n12 U 4 c\n");
        assert_eq!(read(2), "10 I 2 y\n");

        // A file shorter than a record's offset lost durable bytes: marked for rebuild.
        let (i0, _) = touch(&layout, &out, 0);
        let mut s = Segment::create(&out, 0, 1).unwrap();
        s.append(key(0), i0, 100, b"20 I 4 d\n");
        s.commit(|| Ok(())).unwrap();
        let a = recover(&layout, &out).unwrap();
        assert_eq!((a.written, a.marked), (0, 1));
        assert!(layout.invalid_marker(&out, key(0)).exists());
        assert_eq!(read(0), "10 I 4 a\n12 I 8 b\n12 U 4 c\n", "left as it was");
        fs::remove_dir_all(&out).unwrap();
    }

    /// A shape's first lines name a file-to-be (a nonce): the write-behind creates it with the
    /// nonce, applies the next records to it, and ignores the nonce once a rebuild put its own
    /// file there first.
    #[test]
    fn a_new_file_is_created_with_its_nonce_and_a_rebuild_overtakes_it() {
        let (layout, out) = setup("nonce");
        if !probe_xattrs(&out).unwrap() {
            eprintln!("skipped: {} keeps no extended attributes", out.display());
            return;
        }
        assert!(
            fresh_ident(&layout.path(&out, key(3))).is_some(),
            "no file yet"
        );
        let (n0, n1) = (Ident::Nonce(next_nonce()), Ident::Nonce(next_nonce()));
        assert_ne!(n0, n1);
        let mut s = Segment::create(&out, 1, 0).unwrap();
        s.append(key(0), n0, 0, b"10 I 4 a\n");
        s.append(key(0), n0, 9, b"12 I 8 b\n");
        s.append(key(1), n1, 0, b"10 I 1 x\n");
        s.commit(|| Ok(())).unwrap();
        let seg = s.path.clone();
        let copy = out.join("copy.seg");
        fs::copy(&seg, &copy).unwrap();
        // Shape 1 was evicted and rebuilt (to an empty snapshot) before the write-behind came
        // to it.
        let p1 = layout.path(&out, key(1));
        stamp(&File::create(&p1).unwrap()).unwrap();
        let a = apply_segments(&layout, &out, &[seg]).unwrap();
        let read = |k| fs::read_to_string(layout.path(&out, key(k))).unwrap();
        assert_eq!(read(0), "10 I 4 a\n12 I 8 b\n");
        assert_eq!(read(1), "", "the rebuild's file is left alone");
        assert_eq!((a.written, a.stale), (2, 1));
        let f0 = File::open(layout.path(&out, key(0))).unwrap();
        assert_eq!(Ident::of(&f0).unwrap(), n0, "created with its nonce");
        assert!(
            fresh_ident(&layout.path(&out, key(0))).is_none(),
            "it exists now"
        );
        // Again (a crash before the segment was deleted): nothing changes.
        let again = out.join("again.seg");
        fs::copy(&copy, &again).unwrap();
        let a = apply_segments(&layout, &out, &[again]).unwrap();
        assert_eq!((a.written, a.stale), (0, 1));
        assert_eq!(read(0), "10 I 4 a\n12 I 8 b\n");
        // A creation cut short before its attribute (an empty file without one) is adopted.
        fs::remove_file(layout.path(&out, key(0))).unwrap();
        File::create(layout.path(&out, key(0))).unwrap();
        let a = apply_segments(&layout, &out, &[copy]).unwrap();
        assert_eq!((a.written, a.stale), (2, 1));
        assert_eq!(read(0), "10 I 4 a\n12 I 8 b\n");
        let f0 = File::open(layout.path(&out, key(0))).unwrap();
        assert_eq!(Ident::of(&f0).unwrap(), n0, "adopted with its nonce");
        // A file that appears while the write-behind creates its own: the other one stays.
        let p2 = layout.path(&out, key(2));
        fs::write(&p2, "snap I 2 z\n").unwrap();
        let f = create_with_nonce(&p2, 5).unwrap();
        assert!(matches!(Ident::of(&f).unwrap(), Ident::Inode { .. }));
        assert_eq!(read(2), "snap I 2 z\n");
        fs::remove_dir_all(&out).unwrap();
    }

    /// The writer stands aside while the logs grow faster than `BUSY_BYTES_PER_S`, and applies
    /// what waits once they slow down; at the end it applies everything.
    #[test]
    fn the_writer_stands_aside_while_the_log_grows_fast() {
        let (layout, out) = setup("busy");
        let (i0, _) = touch(&layout, &out, 0);
        let (b, h) = spawn_writer(layout.clone(), out.clone()).unwrap();
        let mut s = Segment::create(&out, 0, 0).unwrap();
        s.append(key(0), i0, 0, b"10 I 4 a\n");
        s.commit(|| Ok(())).unwrap();
        let seg = s.path.clone();
        let busy_until = Instant::now() + Duration::from_millis(800);
        b.logged(BUSY_BYTES_PER_S * 2);
        b.hand_over(s).unwrap();
        while Instant::now() < busy_until {
            b.logged(BUSY_BYTES_PER_S / 2);
            thread::sleep(Duration::from_millis(50));
            assert!(seg.exists(), "applied while the log grew fast");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while seg.exists() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        assert!(!seg.exists(), "applied once the log slowed down");
        assert!(b.idle());
        drop(b);
        assert_eq!(h.join().unwrap().written, 1);
        let text = fs::read_to_string(layout.path(&out, key(0))).unwrap();
        assert_eq!(text, "10 I 4 a\n");
        fs::remove_dir_all(&out).unwrap();
    }

    /// Recovery applies a consumer's segments in sequence order, whatever the listing's.
    #[test]
    fn recovery_applies_segments_in_sequence() {
        let (layout, out) = setup("order");
        let (i0, _) = touch(&layout, &out, 0);
        let mut off = 0;
        for seq in 0..12u64 {
            let mut s = Segment::create(&out, 3, seq).unwrap();
            let line = format!("{seq:x} I {} v\n", 4 * seq);
            s.append(key(0), i0, off, line.as_bytes());
            off += line.len() as u64;
            s.commit(|| Ok(())).unwrap();
        }
        let a = recover(&layout, &out).unwrap();
        assert_eq!((a.segments, a.written), (12, 12));
        let text = fs::read_to_string(layout.path(&out, key(0))).unwrap();
        let firsts: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
        let want: Vec<String> = (0..12u64).map(|s| format!("{s:x}")).collect();
        assert_eq!(firsts, want);
        assert!(segments_on_disk(&out).unwrap().is_empty());
        // The next segment is a retired one, renamed and emptied: no new inode.
        let spares: Vec<u64> = fs::read_dir(dir(&out))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().ino())
            .collect();
        assert!(!spares.is_empty(), "applied segments are kept as spares");
        let s = Segment::create(&out, 3, 12).unwrap();
        let m = fs::metadata(&s.path).unwrap();
        assert!(spares.contains(&m.ino()), "a spare reused");
        assert_eq!(m.len(), 0, "and emptied");
        fs::remove_dir_all(&out).unwrap();
    }
}
