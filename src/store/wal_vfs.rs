//! A SQLite VFS that writes a WAL transaction's frames to the log in one system call.
//!
//! SQLite writes each frame of its write-ahead log with two `pwrite`s, the frame's
//! 24-byte header and then its page, so an echo job's commit (~8 pages of five
//! b-trees) was ~16 system calls, and a flood's commit of hundreds of pages hundreds
//! more. On ext4 each of those takes the file's write path for a few bytes: `perf
//! record` of sequential echo jobs put 36 % of the store writer's samples under
//! `pwrite64`, ~31 µs a commit (BENCHMARKS.md, 2026-12-06 20:00).
//!
//! This module registers `arcp-wal`, a shim over the platform's default VFS that
//! changes one thing: the log's appends are gathered in memory and written as one
//! `pwrite` when the transaction's commit frame is complete. Everything else goes
//! through unchanged, and before any other operation on the log (a read, a sync, its
//! size, a truncation, a file control, closing it) what is gathered is written
//! first, so SQLite never sees a log different from the one it wrote.
//!
//! Why this keeps SQLite's promises:
//! - A commit is written before SQLite publishes it. SQLite marks the last frame of
//!   a transaction in its header (the database size after the commit, zero for
//!   other frames) and makes a transaction visible to readers, and to recovery, only
//!   after `xWrite` has returned for that frame's page: that is the write that sends
//!   out the gathered frames, and its result is the commit's.
//! - Only appends are gathered: a run starts with the log's header (offset 0) or a
//!   frame header that is not a commit's, and grows only by writes that follow it
//!   exactly. Anything else (a frame rewritten in place within a large transaction,
//!   a checksum rewritten after one) first writes out what is gathered and then goes
//!   through as it came, so that a commit frame's header is never left gathered
//!   without its page.
//! - What is gathered and not yet written belongs to a transaction that has not
//!   committed: losing it in a crash loses nothing SQLite promised. When the
//!   connection lets go of the log's write lock (after a commit, which wrote all it
//!   had gathered, or a rollback), anything still gathered is dropped: frames of a
//!   transaction that rolled back after spilling must not be written later, over
//!   frames another connection has committed in the same place since.
//!
//! Owns this I/O shim only; what the store writes, and when, is `sqlite`'s.

use rusqlite::ffi;
use std::ffi::{CStr, c_int, c_void};
use std::sync::OnceLock;

/// The name connections open the store with.
pub const NAME: &CStr = c"arcp-wal";

/// Past this much gathered, a run is written out at once even without its commit
/// frame (a flood's large transactions), so the buffer stays bounded.
const MAX_GATHERED: usize = 64 << 10;

/// The most one write hands the default VFS: the unix VFS writes at most 128 KiB
/// less one byte per call (its `seekAndWrite` masks the length to 17 bits).
const MAX_WRITE: usize = 64 << 10;

/// A WAL file starts with a 32-byte header; each frame starts with a 24-byte one.
const WAL_HEADER: usize = 32;
const FRAME_HEADER: usize = 24;

/// The log's appends not yet written: `bytes` go at `offset`.
#[derive(Default)]
struct Gathered {
    offset: i64,
    bytes: Vec<u8>,
    /// The last frame header gathered was a commit's: its page ends the transaction.
    commit_next: bool,
    /// Writes that reached the file (for the tests).
    #[cfg(test)]
    written: u64,
}

/// Our `sqlite3_file`: SQLite allocates `szOsFile` bytes for it, this struct first
/// and the default VFS's own file after it, at `inner`.
#[repr(C)]
struct ShimFile {
    base: ffi::sqlite3_file,
    inner: *mut ffi::sqlite3_file,
    /// `Some` for a write-ahead log; every other file is passed straight through.
    log: Option<Box<Gathered>>,
    /// For a log, its database file; for a database file, its open log (whose
    /// gathered frames its write lock's release drops); else null. Each clears the
    /// other's pointer when it closes.
    peer: *mut ShimFile,
}

/// Where the default VFS's file lives inside ours (8-byte aligned, as SQLite
/// aligns the allocation).
const INNER_AT: usize = std::mem::size_of::<ShimFile>().next_multiple_of(8);

/// The default VFS this shim wraps, as an address (a raw pointer is not `Sync`).
static BASE: OnceLock<usize> = OnceLock::new();

/// Registers the VFS (once per process) and returns its name, or why it could not.
pub fn register() -> Result<&'static CStr, String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            // SAFETY: sqlite3_vfs_find and sqlite3_vfs_register are thread-safe in
            // the bundled (serialized) SQLite. The VFS object is leaked: SQLite keeps
            // the pointer for the life of the process.
            unsafe {
                if ffi::sqlite3_initialize() != ffi::SQLITE_OK {
                    return Err("SQLite could not be initialised".into());
                }
                let base = ffi::sqlite3_vfs_find(std::ptr::null());
                if base.is_null() {
                    return Err("SQLite has no default VFS".into());
                }
                let mut vfs = *base;
                let Ok(inner_size) = usize::try_from(vfs.szOsFile) else {
                    return Err("the default VFS reports a negative file size".into());
                };
                let Ok(size) = c_int::try_from(INNER_AT + inner_size) else {
                    return Err("the default VFS's file is too large".into());
                };
                vfs.szOsFile = size;
                vfs.zName = NAME.as_ptr();
                vfs.pNext = std::ptr::null_mut();
                vfs.xOpen = Some(open);
                let _ = BASE.set(base as usize);
                let leaked = Box::leak(Box::new(vfs));
                match ffi::sqlite3_vfs_register(leaked, 0) {
                    ffi::SQLITE_OK => Ok(()),
                    rc => Err(format!("registering the {NAME:?} VFS failed ({rc})")),
                }
            }
        })
        .clone()
        .map(|()| NAME)
}

/// The methods of every file this VFS opens.
static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite hands us `szOsFile` bytes at `file`, which `register` sized
    // for a ShimFile followed by the default VFS's file at INNER_AT.
    unsafe {
        let shim = file.cast::<ShimFile>();
        (*shim).base.pMethods = std::ptr::null();
        let Some(base) = BASE.get().map(|&b| b as *mut ffi::sqlite3_vfs) else {
            return ffi::SQLITE_ERROR;
        };
        let Some(base_open) = (*base).xOpen else {
            return ffi::SQLITE_ERROR;
        };
        let inner = file.cast::<u8>().add(INNER_AT).cast::<ffi::sqlite3_file>();
        let rc = base_open(base, name, inner, flags, out_flags);
        if rc != ffi::SQLITE_OK || (*inner).pMethods.is_null() {
            // SQLite calls no method of a file whose open failed (pMethods NULL).
            return rc;
        }
        let is_log = flags & ffi::SQLITE_OPEN_WAL != 0;
        std::ptr::addr_of_mut!((*shim).inner).write(inner);
        std::ptr::addr_of_mut!((*shim).log).write(is_log.then(Box::<Gathered>::default));
        std::ptr::addr_of_mut!((*shim).peer).write(std::ptr::null_mut());
        (*shim).base.pMethods = &METHODS;
        if is_log && !name.is_null() {
            // The pager opened its database file through this VFS too, so it is
            // one of ours.
            let db = ffi::sqlite3_database_file_object(name).cast::<ShimFile>();
            if !db.is_null() && std::ptr::eq((*db).base.pMethods, &METHODS) {
                (*db).peer = shim;
                (*shim).peer = db;
            }
        }
        rc
    }
}

/// The file behind ours and its methods.
///
/// # Safety
/// `file` is a ShimFile that `open` set up.
unsafe fn parts<'a>(
    file: *mut ffi::sqlite3_file,
) -> (
    &'a mut ShimFile,
    *mut ffi::sqlite3_file,
    &'a ffi::sqlite3_io_methods,
) {
    // SAFETY: per the contract, and the inner file's methods are set (open checked).
    unsafe {
        let shim = &mut *file.cast::<ShimFile>();
        let inner = shim.inner;
        (shim, inner, &*(*inner).pMethods)
    }
}

/// The default VFS's write method.
type InnerWrite = unsafe extern "C" fn(*mut ffi::sqlite3_file, *const c_void, c_int, i64) -> c_int;

impl Gathered {
    /// Writes what is gathered, if anything, through `inner_write` to `inner`, and
    /// forgets it whatever the outcome.
    ///
    /// # Safety
    /// `inner` is the log's file in the default VFS and `inner_write` its write
    /// method.
    unsafe fn write_out(
        &mut self,
        inner: *mut ffi::sqlite3_file,
        inner_write: InnerWrite,
    ) -> c_int {
        let mut rc = ffi::SQLITE_OK;
        let mut at = self.offset;
        for piece in self.bytes.chunks(MAX_WRITE) {
            // A piece is at most MAX_WRITE bytes: both casts are exact.
            // SAFETY: per the contract, `piece.len()` readable bytes.
            rc = unsafe { inner_write(inner, piece.as_ptr().cast(), piece.len() as c_int, at) };
            #[cfg(test)]
            {
                self.written += 1;
            }
            if rc != ffi::SQLITE_OK {
                break;
            }
            at += piece.len() as i64;
        }
        self.bytes.clear();
        self.commit_next = false;
        rc
    }
}

/// Writes what the log `file` has gathered, if anything (see [`Gathered::write_out`]).
///
/// # Safety
/// As [`parts`].
unsafe fn write_gathered(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: per the contract.
    unsafe {
        let (shim, inner, methods) = parts(file);
        match (shim.log.as_deref_mut(), methods.xWrite) {
            (Some(log), _) if log.bytes.is_empty() => ffi::SQLITE_OK,
            (Some(log), Some(inner_write)) => log.write_out(inner, inner_write),
            (Some(_), None) => ffi::SQLITE_IOERR_WRITE,
            (None, _) => ffi::SQLITE_OK,
        }
    }
}

/// The "database size after commit" field of a frame header: non-zero only for a
/// transaction's last frame.
fn is_commit_frame(header: &[u8]) -> bool {
    header.get(4..8).is_some_and(|size| size != [0; 4])
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: SQLite calls this with a file `open` set up and `amount` readable
    // bytes at `data`.
    unsafe {
        let (shim, inner, methods) = parts(file);
        let Some(inner_write) = methods.xWrite else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let (Some(log), Ok(len)) = (shim.log.as_deref_mut(), usize::try_from(amount)) else {
            return inner_write(inner, data, amount, offset);
        };
        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), len);
        let follows = i64::try_from(log.bytes.len()).is_ok_and(|n| log.offset + n == offset);
        if !log.bytes.is_empty() && !follows {
            let rc = log.write_out(inner, inner_write);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        let frame_header = len == FRAME_HEADER;
        if log.bytes.is_empty() {
            let starts_run =
                (offset == 0 && len == WAL_HEADER) || (frame_header && !is_commit_frame(bytes));
            if !starts_run {
                return inner_write(inner, data, amount, offset);
            }
            log.offset = offset;
        }
        log.bytes.extend_from_slice(bytes);
        if frame_header {
            log.commit_next = is_commit_frame(bytes);
            return ffi::SQLITE_OK;
        }
        if log.commit_next || log.bytes.len() >= MAX_GATHERED {
            return log.write_out(inner, inner_write);
        }
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes a file `open` set up, once.
    unsafe {
        let written = write_gathered(file);
        let (shim, inner, methods) = parts(file);
        let closed = methods.xClose.map_or(ffi::SQLITE_OK, |f| f(inner));
        drop(shim.log.take());
        if !shim.peer.is_null() {
            (*shim.peer).peer = std::ptr::null_mut();
            shim.peer = std::ptr::null_mut();
        }
        shim.base.pMethods = std::ptr::null();
        if written != ffi::SQLITE_OK {
            written
        } else {
            closed
        }
    }
}

/// Defines a method that writes what is gathered, then passes the call on.
macro_rules! after_gathered {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            // SAFETY: SQLite calls this with a file `open` set up.
            unsafe {
                let rc = write_gathered(file);
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                let (_, inner, methods) = parts(file);
                match methods.$method {
                    Some(f) => f(inner $(, $arg)*),
                    None => ffi::SQLITE_IOERR,
                }
            }
        }
    };
}

/// Defines a method that passes the call on as it is.
macro_rules! passed_on {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty, $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> $ret {
            // SAFETY: SQLite calls this with a file `open` set up.
            unsafe {
                let (_, inner, methods) = parts(file);
                match methods.$method {
                    Some(f) => f(inner $(, $arg)*),
                    None => $missing,
                }
            }
        }
    };
}

after_gathered!(read, xRead, (data: *mut c_void, amount: c_int, offset: i64));
after_gathered!(truncate, xTruncate, (size: i64));
after_gathered!(sync, xSync, (flags: c_int));
after_gathered!(file_size, xFileSize, (size: *mut i64));
after_gathered!(file_control, xFileControl, (op: c_int, arg: *mut c_void));

passed_on!(lock, xLock, (level: c_int) -> c_int, ffi::SQLITE_IOERR_LOCK);
passed_on!(unlock, xUnlock, (level: c_int) -> c_int, ffi::SQLITE_IOERR_UNLOCK);
passed_on!(check_reserved_lock, xCheckReservedLock, (out: *mut c_int) -> c_int, ffi::SQLITE_IOERR);
passed_on!(sector_size, xSectorSize, () -> c_int, 4096);
passed_on!(device_characteristics, xDeviceCharacteristics, () -> c_int, 0);
passed_on!(
    shm_map,
    xShmMap,
    (region: c_int, size: c_int, extend: c_int, out: *mut *mut c_void) -> c_int,
    ffi::SQLITE_IOERR_SHMMAP
);

/// SQLite's lock on writing the log: the first of the shared-memory locks.
const WAL_WRITE_LOCK: c_int = 0;

unsafe extern "C" fn shm_lock(
    file: *mut ffi::sqlite3_file,
    at: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    // SAFETY: SQLite calls this with a database file `open` set up; its peer, if
    // set, is its open log.
    unsafe {
        let (shim, inner, methods) = parts(file);
        let releasing_write = flags == ffi::SQLITE_SHM_UNLOCK | ffi::SQLITE_SHM_EXCLUSIVE
            && at == WAL_WRITE_LOCK
            && n >= 1;
        if releasing_write && !shim.peer.is_null() {
            // A commit wrote everything it gathered; what is left is frames of a
            // transaction that rolled back. Another connection may write there next.
            if let Some(log) = (*shim.peer).log.as_deref_mut() {
                log.bytes.clear();
                log.commit_next = false;
            }
        }
        match methods.xShmLock {
            Some(f) => f(inner, at, n, flags),
            None => ffi::SQLITE_IOERR_SHMLOCK,
        }
    }
}
passed_on!(shm_unmap, xShmUnmap, (delete: c_int) -> c_int, ffi::SQLITE_OK);
passed_on!(fetch, xFetch, (offset: i64, amount: c_int, out: *mut *mut c_void) -> c_int, {
    // SAFETY: SQLite passes somewhere to put the mapping; none means "read it".
    *out = std::ptr::null_mut();
    ffi::SQLITE_OK
});
passed_on!(unfetch, xUnfetch, (offset: i64, page: *mut c_void) -> c_int, ffi::SQLITE_OK);

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: SQLite calls this with a file `open` set up.
    unsafe {
        let (_, inner, methods) = parts(file);
        if let Some(f) = methods.xShmBarrier {
            f(inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{Connection, OpenFlags};
    use std::path::Path;

    fn open(path: &Path) -> Connection {
        let name = register().unwrap().to_str().unwrap();
        let conn = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), name).unwrap();
        conn.execute_batch(
            "PRAGMA page_size = 1024; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS t_by_v ON t (v);",
        )
        .unwrap();
        conn
    }

    /// The writes of the log of `conn` that reached the file.
    fn log_writes(conn: &Connection) -> u64 {
        // SAFETY: the WAL's sqlite3_file, owned by `conn`, was opened by our VFS.
        unsafe {
            let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
            let rc = ffi::sqlite3_file_control(
                conn.handle(),
                c"main".as_ptr(),
                ffi::SQLITE_FCNTL_JOURNAL_POINTER,
                (&raw mut file).cast(),
            );
            assert_eq!(rc, ffi::SQLITE_OK);
            assert!(!file.is_null());
            let shim = &*file.cast::<ShimFile>();
            shim.log.as_ref().expect("the log is ours").written
        }
    }

    /// Rows `from..from + rows` with values of about `len` bytes, in the open
    /// transaction of `conn` (or one of their own).
    fn add_rows(conn: &Connection, from: i64, rows: i64, len: usize) {
        for k in from..from + rows {
            conn.execute(
                "INSERT INTO t (k, v) VALUES (?1, ?2)",
                rusqlite::params![k, format!("{k:08}{}", "x".repeat(len))],
            )
            .unwrap();
        }
    }

    fn insert(conn: &Connection, from: i64, rows: i64, len: usize) {
        let txn = conn.unchecked_transaction().unwrap();
        add_rows(&txn, from, rows, len);
        txn.commit().unwrap();
    }

    fn assert_intact(conn: &Connection) {
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    /// A copy of the database and its log as they are on disk now, opened the way
    /// recovery after a crash would (the original connection stays open).
    fn as_after_a_crash(dir: &Path) -> Connection {
        let copy = dir.join("copy");
        std::fs::create_dir_all(&copy).unwrap();
        std::fs::copy(dir.join("t.db"), copy.join("t.db")).unwrap();
        std::fs::copy(dir.join("t.db-wal"), copy.join("t.db-wal")).unwrap();
        let _ = std::fs::remove_file(copy.join("t.db-shm"));
        Connection::open(copy.join("t.db")).unwrap()
    }

    fn rows(conn: &Connection) -> i64 {
        conn.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_transactions_frames_reach_the_log_in_one_write() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("t.db"));
        insert(&conn, 0, 1, 10);
        let before = log_writes(&conn);
        // 20 rows of ~300 bytes: over 10 pages of 1 KiB in the table and its index,
        // under MAX_GATHERED.
        let log_size = || {
            std::fs::metadata(dir.path().join("t.db-wal"))
                .unwrap()
                .len()
        };
        let size_before = log_size();
        insert(&conn, 1, 20, 300);
        assert_eq!(log_writes(&conn) - before, 1);
        let frames = (log_size() - size_before) / (1024 + 24);
        assert!(frames > 10, "{frames} frames");
    }

    #[test]
    fn a_committed_transaction_is_in_the_files_when_its_commit_returns() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("t.db"));
        // A small one, one of many times MAX_GATHERED, and many.
        insert(&conn, 0, 3, 10);
        insert(&conn, 3, 2_000, 700);
        for k in 0..50 {
            insert(&conn, 10_000 + k * 5, 5, 100);
        }
        let copy = as_after_a_crash(dir.path());
        assert_eq!(rows(&copy), 3 + 2_000 + 250);
        assert_intact(&copy);
    }

    #[test]
    fn a_transaction_that_spills_and_rewrites_its_frames_commits_whole() {
        // A page cache of 10 pages makes a large transaction write frames before its
        // commit, then write some of them again in place (SQLite then rewrites the
        // checksums of the frames after them): the paths that are not appends.
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("t.db"));
        conn.execute_batch("PRAGMA cache_size = 10").unwrap();
        insert(&conn, 0, 500, 200);
        let txn = conn.unchecked_transaction().unwrap();
        for k in 0..500 {
            txn.execute(
                "UPDATE t SET v = ?2 WHERE k = ?1",
                rusqlite::params![(k * 7) % 500, format!("{k:08}{}", "y".repeat(150))],
            )
            .unwrap();
        }
        txn.commit().unwrap();
        // One that rolls back after spilling, then one more.
        let txn = conn.unchecked_transaction().unwrap();
        add_rows(&txn, 1_000, 300, 300);
        txn.rollback().unwrap();
        insert(&conn, 2_000, 20, 50);

        let copy = as_after_a_crash(dir.path());
        assert_eq!(rows(&copy), 520);
        let updated: i64 = copy
            .query_row("SELECT COUNT(*) FROM t WHERE v LIKE '%y'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(updated, 500);
        assert_intact(&copy);
    }

    #[test]
    fn frames_of_a_rolled_back_transaction_are_never_written_over_a_later_commit() {
        // A spills ~20 frames of a transaction (under MAX_GATHERED, so all of them
        // stay gathered) and rolls back; B then commits frames in the same place of
        // the log; then A reads. Were A's frames still gathered, that read would
        // write them over B's commit. The log starts empty, so that A's rollback
        // reloads its pages from the database file, not from the log (a read of the
        // log would write the frames out while A still held the write lock).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let a = open(&path);
        let b = open(&path);
        insert(&a, 0, 10, 10);
        a.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        a.execute_batch("PRAGMA cache_size = 5").unwrap();
        let txn = a.unchecked_transaction().unwrap();
        add_rows(&txn, 100, 60, 200);
        txn.rollback().unwrap();
        insert(&b, 1_000, 60, 200);
        assert_eq!(rows(&a), 70);
        let copy = as_after_a_crash(dir.path());
        assert_eq!(rows(&copy), 70);
        assert_intact(&copy);
    }

    #[test]
    fn a_reader_and_a_checkpointer_on_other_connections_see_every_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = open(&path);
        let reader = open(&path);
        for round in 0..20 {
            insert(&conn, round * 10, 10, 300);
            assert_eq!(rows(&reader), (round + 1) * 10);
            if round % 5 == 4 {
                reader
                    .query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
                    .unwrap();
            }
        }
        drop(conn);
        drop(reader);
        assert_eq!(rows(&open(&path)), 200);
    }
}
