//! The embedded SQLite store (`<data>/arcp.db`, WAL mode).
//!
//! Writes go through a channel to one writer thread, which drains everything queued
//! and commits it in one transaction: many writes per commit under load, one per
//! write when idle (group commit). After each commit it publishes the highest ticket
//! of the batch, which is what lets a session send a frame as soon as its write is
//! durable without waiting for each write in turn. A job's ending that finds the
//! writer with nothing to do is committed by the job's own thread instead, on the
//! same connection (see `SqliteStore::commit_here`). Reads use their own connection,
//! which WAL lets run beside the writer.
//!
//! Sequenced envelopes are stored as runs: the consecutive envelopes of one job in
//! one session that a batch commits become one row, because under a flood a row
//! (and an index entry) per envelope made the b-tree work, not the frames, the cost
//! of each write. A run of one is its frame's text; a longer run is packed, its
//! frames joined by U+001E (which JSON text cannot hold unescaped) and compressed
//! as one LZ4 block, because then the bytes written, logged and checkpointed were
//! the cost. A file written by schema 2 keeps its runs as they were: text, joined
//! by newlines (a frame with a newline was a row of its own).
//!
//! `synchronous = NORMAL` under WAL: a committed transaction survives the process
//! being killed (what the crash tests prove); a power cut may lose the last
//! transactions, never corrupt the file.

use super::{
    IdempotencyRecord, JobRecord, OutstandingCredential, SessionRecord, Store, StoreError,
    StoredEvent, Ticket,
};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// One write for the writer thread. Records larger than an event are boxed: every
/// write is moved into the channel, out of it and through the batch's vectors, and
/// an event flood's writes were 296 bytes each for the sake of the rare job record
/// (the writer's `memcpy`s were 10 % of its time).
enum Write {
    Event(StoredEvent),
    Job(Box<JobRecord>),
    /// A job's terminal envelope and its final record, in one transaction.
    Ended(StoredEvent, Box<JobRecord>),
    JobGone(String),
    Credential(Box<OutstandingCredential>),
    Session(Box<SessionRecord>),
    SessionGone(String),
    Key(Box<IdempotencyRecord>),
    KeyGone(String, String),
    Revoked(String),
    Probe,
    Flush(mpsc::Sender<Result<(), String>>),
}

/// The writer's side of the channel: tickets are handed out under the same lock as
/// the send, so the channel order is the ticket order.
struct Queue {
    next: Ticket,
    tx: mpsc::Sender<(Ticket, Write)>,
}

/// SQLite-backed store.
pub struct SqliteStore {
    /// Tells the checkpointer thread to stop when the store goes.
    stopping: Arc<std::sync::atomic::AtomicBool>,
    path: PathBuf,
    queue: Mutex<Queue>,
    reader: Mutex<Connection>,
    /// The writer's connection: the writer thread's for each batch, or a job's
    /// ending's own when nothing waits for the writer (see [`SqliteStore::commit_here`]).
    committer: Arc<Mutex<Committer>>,
    outcomes: Arc<Outcomes>,
    /// Set while the checkpointer runs a RESTART checkpoint, which holds every
    /// commit until the log starts over: a job's ending then goes to the writer
    /// thread rather than wait on a tokio worker (one whose commit began just
    /// before the checkpoint does wait, for its milliseconds; rare: a RESTART
    /// comes once per 64 MiB of log).
    restarting: Arc<std::sync::atomic::AtomicBool>,
    /// Endings committed by their own thread (for the tests).
    #[cfg(test)]
    committed_here: std::sync::atomic::AtomicU64,
}

/// The connection every write is committed with, and the buffers its batches reuse.
struct Committer {
    conn: Connection,
    run: Run,
}

/// How many failed batches [`SqliteStore::outcome`] remembers.
const FAILED_BATCHES_KEPT: usize = 1024;

/// The schema version this build writes (`PRAGMA user_version`). 3: runs of more
/// than one event are packed (see the module docs); rows written at 2 are read as
/// they are, so nothing is rewritten.
const SCHEMA_VERSION: i64 = 3;

/// Frames past which a run of events starts a new row, so that a replay reads a
/// long history in pieces of about this size.
const RUN_BYTES: usize = 256 << 10;

const SCHEMA: &str = "
    -- 1 KiB pages for a new file (an existing file keeps its own): a job's writes
    -- are a few small rows in five b-trees, and every commit writes each page it
    -- touched to the log whole, which each checkpoint then copies and syncs. With
    -- 4 KiB pages an echo job logged ~28 KiB; the larger checkpoints were the
    -- echo's tail (p999 5-11 ms against 2-4 ms now, p99 a quarter lower) and
    -- the flood was slower (BENCHMARKS.md, 2026-12-06 09:00; 16 KiB was slower
    -- still). Before journal_mode: a file in WAL mode cannot change its page size.
    PRAGMA page_size = 1024;
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    -- A rowid table, not WITHOUT ROWID: a row of frames runs over many pages, and
    -- SQLite compares against such a row in a key b-tree by reading all of it, so
    -- each insert would read rows back; here the key lives in the (small) index.
    CREATE TABLE IF NOT EXISTS events (
        session_id TEXT NOT NULL,
        seq        INTEGER NOT NULL,
        last_seq   INTEGER NOT NULL,
        job_id     TEXT,
        frames     TEXT NOT NULL,
        PRIMARY KEY (session_id, seq)
    );
    CREATE INDEX IF NOT EXISTS events_by_job ON events (job_id, seq);
    CREATE TABLE IF NOT EXISTS sessions (
        session_id TEXT PRIMARY KEY,
        principal  TEXT NOT NULL,
        features   TEXT NOT NULL,
        token_hash TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS idempotency (
        principal   TEXT NOT NULL,
        key         TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        job_id      TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        PRIMARY KEY (principal, key)
    );
    CREATE TABLE IF NOT EXISTS credentials (
        id     TEXT PRIMARY KEY,
        job_id TEXT NOT NULL,
        handle TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS jobs (
        job_id       TEXT PRIMARY KEY,
        principal    TEXT NOT NULL,
        session_id   TEXT NOT NULL,
        agent        TEXT NOT NULL,
        status       TEXT NOT NULL,
        submitted_at TEXT NOT NULL,
        accepted     TEXT NOT NULL,
        ended_at     TEXT,
        subscribers  TEXT NOT NULL DEFAULT '[]'
    );
    CREATE TABLE IF NOT EXISTS meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
";

/// Brings a file written by an older build up to [`SCHEMA_VERSION`], in one
/// transaction. Runs after [`SCHEMA`], which has created any table the file lacked
/// in its current shape, so each step looks at what the file holds rather than
/// trusting its version alone.
fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let txn = conn.transaction()?;
    let conn = &*txn;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < 1 {
        // Version 0 had neither `ended_at` (terminal-job retention counts from it)
        // nor `subscribers`.
        for (column, ddl) in [
            ("ended_at", "ALTER TABLE jobs ADD COLUMN ended_at TEXT"),
            (
                "subscribers",
                "ALTER TABLE jobs ADD COLUMN subscribers TEXT NOT NULL DEFAULT '[]'",
            ),
        ] {
            let present: bool = conn.query_row(
                "SELECT COUNT(*) > 0 FROM pragma_table_info('jobs') WHERE name = ?1",
                [column],
                |r| r.get(0),
            )?;
            if !present {
                conn.execute_batch(ddl)?;
            }
        }
    }
    if version < 2 {
        // Versions 0 and 1 stored one row per event; each becomes a run of one.
        let one_per_row: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('events') WHERE name = 'frame'",
            [],
            |r| r.get(0),
        )?;
        if one_per_row {
            conn.execute_batch(
                "CREATE TABLE events_v2 (
                     session_id TEXT NOT NULL,
                     seq        INTEGER NOT NULL,
                     last_seq   INTEGER NOT NULL,
                     job_id     TEXT,
                     frames     TEXT NOT NULL,
                     PRIMARY KEY (session_id, seq)
                 );
                 INSERT INTO events_v2 (session_id, seq, last_seq, job_id, frames)
                     SELECT session_id, seq, seq, job_id, frame FROM events;
                 DROP INDEX IF EXISTS events_by_job;
                 DROP TABLE events;
                 ALTER TABLE events_v2 RENAME TO events;
                 CREATE INDEX events_by_job ON events (job_id, seq);",
            )?;
        }
    }
    if version < SCHEMA_VERSION {
        conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    }
    txn.commit()
}

impl SqliteStore {
    /// Opens (or creates) `<dir>/arcp.db`. A corrupt or unwritable file is an error
    /// that names it.
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(dir, WAL_RESTART_BYTES)
    }

    /// [`Self::open`], with the log started over past `wal_restart_bytes` (see
    /// `checkpoint_loop`).
    fn open_with(dir: &Path, wal_restart_bytes: u64) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Io(format!("cannot create data folder {}: {e}", dir.display()))
        })?;
        let path = dir.join("arcp.db");
        let named = |e: rusqlite::Error| StoreError::Io(format!("store {}: {e}", path.display()));
        // Every connection goes through the VFS that writes a commit's log frames at
        // once (`wal_vfs`); its files are the default VFS's, so any other connection
        // to the same file (a test's, the sqlite3 shell's) shares their locks.
        let vfs = super::wal_vfs::register().map_err(StoreError::Io)?;
        let connect =
            || Connection::open_with_flags_and_vfs(&path, rusqlite::OpenFlags::default(), vfs);
        let mut writer = connect().map_err(named)?;
        writer.execute_batch(SCHEMA).map_err(named)?;
        migrate(&mut writer).map_err(named)?;
        // Refuse a file that cannot be written now rather than at the first job.
        writer
            .execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('opened_at', ?1)",
                params![chrono::Utc::now().to_rfc3339()],
            )
            .map_err(named)?;
        // Checkpoints copy the log into the database file and sync it: milliseconds
        // that would stall every session's frames if the writer did them inline, so
        // a thread of their own does them (see `checkpoint_loop`).
        // Once the log has been restarted, its file is cut back to this size.
        writer
            .execute_batch("PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864;")
            .map_err(named)?;
        let checkpointer = connect().map_err(named)?;
        checkpointer
            .busy_timeout(std::time::Duration::from_secs(2))
            .map_err(named)?;
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let restarting = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let checkpoints = Checkpoints {
            restart_bytes: wal_restart_bytes,
            stopping: stopping.clone(),
            restarting: restarting.clone(),
        };
        std::thread::Builder::new()
            .name("arcp-store-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, checkpoints))
            .map_err(|e| StoreError::Io(format!("starting the store checkpointer: {e}")))?;
        let reader = connect().map_err(named)?;
        let (tx, rx) = mpsc::channel();
        let outcomes = Arc::new(Outcomes {
            settled: watch::channel(0).0,
            failure: Mutex::new(None),
            failed: Mutex::new(VecDeque::new()),
        });
        let committer = Arc::new(Mutex::new(Committer {
            conn: writer,
            run: Run::default(),
        }));
        let (c, o) = (committer.clone(), outcomes.clone());
        std::thread::Builder::new()
            .name("arcp-store".into())
            .spawn(move || writer_loop(&c, rx, &o))
            .map_err(|e| StoreError::Io(format!("starting the store writer: {e}")))?;
        Ok(SqliteStore {
            stopping,
            path,
            queue: Mutex::new(Queue { next: 1, tx }),
            reader: Mutex::new(reader),
            committer,
            outcomes,
            restarting,
            #[cfg(test)]
            committed_here: Default::default(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send(&self, w: Write) -> Ticket {
        let Ok(mut q) = self.queue.lock() else {
            return 0;
        };
        let ticket = q.next;
        if q.tx.send((ticket, w)).is_err() {
            tracing::error!("store writer has stopped; a write was lost");
            return 0;
        }
        q.next += 1;
        ticket
    }

    /// Commits `write` on the calling thread, when every write handed out so far is
    /// settled (nothing is queued for the writer thread or in its hands) and the
    /// connection is free; otherwise gives it back, to be sent to the writer.
    ///
    /// For a job's ending: a sequential client's echo job is one write (its
    /// record, `job.accepted` and result held until it ends), and the writer
    /// thread's wake-up (~8 µs), then the wake-up of the task that sends the frames
    /// once the store has settled them (15-20 µs), came on top of its commit
    /// (BENCHMARKS.md, 2026-12-07 05:00). Committed here, its frames go straight to
    /// the connection: the echo's p50 fell from 0.170 to 0.155 ms side by side
    /// (2026-12-07 08:00). Under load the writer is never idle and batches as
    /// before; a job's events never come here, since a flood's one commit per event
    /// would undo the batching.
    ///
    /// Ordering: the ticket is taken, and the connection held, under the queue's
    /// lock; a later write waits in the channel, and the writer thread takes the
    /// connection (even for a batch of flush waiters only) only once this commit
    /// has settled its ticket.
    fn commit_here(&self, write: Write) -> Result<Ticket, Write> {
        if self.restarting.load(std::sync::atomic::Ordering::Acquire) {
            return Err(write);
        }
        let Ok(mut queue) = self.queue.lock() else {
            return Err(write);
        };
        if *self.outcomes.settled.borrow() + 1 != queue.next {
            return Err(write);
        }
        let Ok(mut committer) = self.committer.try_lock() else {
            return Err(write);
        };
        let ticket = queue.next;
        queue.next += 1;
        drop(queue);
        let Committer { conn, run } = &mut *committer;
        let result = commit(conn, std::iter::once((ticket, write)), run);
        self.outcomes
            .conclude(ticket, ticket, result.map_err(|e| e.to_string()));
        #[cfg(test)]
        self.committed_here
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(ticket)
    }

    fn reader(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        self.reader
            .lock()
            .map_err(|_| StoreError::Io("store lock poisoned".into()))
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

/// The log size past which a checkpoint makes the writer start the log over.
const WAL_RESTART_BYTES: u64 = 64 << 20;

/// How often the checkpointer copies the log into the database.
///
/// Each checkpoint syncs the log and the database, and on a virtual disk those
/// `fsync`s take milliseconds that the writer's commits feel. Every second instead
/// looked better in short runs only because it moved the work out of them: over
/// 20,000 sequential echo jobs the p99 was within the noise and the p999 worse
/// (BENCHMARKS.md, 2026-12-06). Under `synchronous = NORMAL` the log is synced only
/// here, so this is also about how much a power cut may lose.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Copies the write-ahead log into the database every [`CHECKPOINT_EVERY`], beside
/// the writer.
///
/// A PASSIVE checkpoint never waits for the writer, but under a steady stream of
/// writes the log is never wholly copied when the writer starts its next
/// transaction, so the writer never starts it over and it only grows. Once it holds
/// more than `restart_bytes` ([`WAL_RESTART_BYTES`] but in tests), a RESTART
/// checkpoint follows at once: it waits for the writer's current transaction and
/// holds the next ones until the log can start over, so it runs right after the
/// PASSIVE one has copied nearly everything and is left with the few frames
/// committed in between. (A RESTART instead of that interval's PASSIVE copied all
/// of the interval's frames while it held the writer: the longest of 20,000 echo
/// jobs took 25 ms, against 7-13 ms now.)
fn checkpoint_loop(conn: Connection, settings: Checkpoints) {
    use std::sync::atomic::Ordering;
    let Checkpoints {
        restart_bytes,
        stopping,
        restarting,
    } = settings;
    let frame_bytes = conn
        .query_row("PRAGMA page_size", [], |r| r.get::<_, u64>(0))
        .unwrap_or(4096)
        + 24;
    let checkpoint = |mode: &str| -> Option<u64> {
        // The pragma's row: (busy, frames in the log, frames copied); -1 frames
        // when it could not start (another connection was checkpointing).
        let sql = format!("PRAGMA wal_checkpoint({mode})");
        match conn.query_row(&sql, [], |r| r.get::<_, i64>(1)) {
            Ok(frames) => u64::try_from(frames).ok(),
            Err(e) => {
                tracing::warn!(error = %e, mode, "store checkpoint failed; will retry");
                None
            }
        }
    };
    while !stopping.load(Ordering::Acquire) {
        std::thread::sleep(CHECKPOINT_EVERY);
        let logged = checkpoint("PASSIVE");
        if logged.is_some_and(|frames| frames.saturating_mul(frame_bytes) > restart_bytes) {
            restarting.store(true, Ordering::Release);
            checkpoint("RESTART");
            restarting.store(false, Ordering::Release);
        }
    }
}

/// What the checkpointer is told: when to start the log over, when to stop, and
/// where to say it is starting the log over.
struct Checkpoints {
    restart_bytes: u64,
    stopping: Arc<std::sync::atomic::AtomicBool>,
    restarting: Arc<std::sync::atomic::AtomicBool>,
}

/// Where the commits publish how they went.
struct Outcomes {
    settled: watch::Sender<Ticket>,
    /// The last write's failure, until a later write succeeds.
    failure: Mutex<Option<String>>,
    /// The most recent failed batches: (first ticket, last ticket, why).
    failed: Mutex<VecDeque<(Ticket, Ticket, String)>>,
}

impl Outcomes {
    /// Records how the commit of tickets `first..=last` went and settles `last`.
    fn conclude(&self, first: Ticket, last: Ticket, outcome: Result<(), String>) {
        if let (Err(why), Ok(mut failed)) = (&outcome, self.failed.lock()) {
            if failed.len() == FAILED_BATCHES_KEPT {
                failed.pop_front();
            }
            failed.push_back((first, last, why.clone()));
        }
        if let Ok(mut f) = self.failure.lock() {
            match outcome {
                Ok(()) => {
                    if f.take().is_some() {
                        tracing::info!("the store can be written again");
                    }
                }
                Err(e) => {
                    if f.is_none() {
                        tracing::error!(error = %e, "store write failed");
                    }
                    *f = Some(e);
                }
            }
        }
        self.settle(last);
    }

    /// Publishes `last` as settled: every write up to it is committed (or failed).
    fn settle(&self, last: Ticket) {
        // Tickets settle in order: a commit holds the connection until it has
        // settled its tickets, and a later one needs the connection.
        debug_assert!(
            last >= *self.settled.borrow(),
            "ticket {last} settled after {}",
            *self.settled.borrow()
        );
        self.settled.send_replace(last);
    }
}

/// The most writes one commit takes.
const BATCH_MOST: usize = 4096;

/// A batch of at least this many writes, taken from the queue at once, means that
/// writes are streaming in faster than the writer commits them (an event flood,
/// many sessions' jobs): the writer then waits [`GATHER_FOR`] once for more before
/// it commits. A commit costs its lock calls and every page it touches whatever the
/// number of rows, so without the wait a flood's commits carried a few dozen
/// events each (5,000 commits for 300,000 events), with it a few hundred; the
/// writer's CPU fell by half and the runtime's by a quarter (BENCHMARKS.md,
/// 2026-12-06 15:00). Writes that come one at a time, such as a lone client's
/// echo jobs, never wait.
const GATHER_FROM: usize = 16;

/// How long a streaming batch waits for more writes; its frames wait this much
/// longer for their commit.
const GATHER_FOR: std::time::Duration = std::time::Duration::from_micros(500);

fn writer_loop(committer: &Mutex<Committer>, rx: mpsc::Receiver<(Ticket, Write)>, out: &Outcomes) {
    // Kept from batch to batch: a flood's batches are thousands of writes.
    let mut writes = Vec::new();
    while let Ok((first, w)) = rx.recv() {
        // Flush waiters are set apart as they come, so that they hear the outcome
        // even when a write fails part-way (they were dropped with it, and heard
        // "the writer has stopped" before the failure was set).
        let mut waiters = Vec::new();
        let mut last = first;
        let mut take = |(ticket, w): (Ticket, Write)| {
            last = ticket;
            match w {
                Write::Flush(waiter) => waiters.push(waiter),
                w => writes.push((ticket, w)),
            }
        };
        take((first, w));
        let mut taken = 1;
        let mut gathered = false;
        while taken < BATCH_MOST {
            match rx.try_recv() {
                Ok(more) => {
                    take(more);
                    taken += 1;
                }
                // Writes are streaming in: let them pile up once before the
                // commit (see `GATHER_FROM`).
                Err(mpsc::TryRecvError::Empty) if !gathered && taken >= GATHER_FROM => {
                    gathered = true;
                    std::thread::sleep(GATHER_FOR);
                }
                Err(_) => break,
            }
        }
        // Taken for a batch of flush waiters too: a job's ending being committed by
        // its own thread (`SqliteStore::commit_here`) holds it until its ticket,
        // lower than any taken here, is settled.
        let mut committer = committer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if writes.is_empty() {
            // Only waiters: nothing was written, so nothing is learnt about the
            // file. They get the state as it stands; a failure stays a failure
            // (an empty commit succeeds even on a full disk, and used to clear it).
            let current = out.failure.lock().ok().and_then(|f| f.clone());
            out.settle(last);
            drop(committer);
            for w in waiters {
                let _ = w.send(current.clone().map_or(Ok(()), Err));
            }
            continue;
        }
        let Committer { conn, run } = &mut *committer;
        let outcome = commit(conn, writes.drain(..), run).map_err(|e| e.to_string());
        out.conclude(first, last, outcome.clone());
        drop(committer);
        for w in waiters {
            let _ = w.send(outcome.clone());
        }
    }
}

/// The events of a batch on their way to one row of `events` (see the module docs).
#[derive(Default)]
struct Run {
    events: Vec<StoredEvent>,
    /// Bytes of their frames joined.
    bytes: usize,
    /// The buffers [`pack`] works in, kept from row to row and batch to batch: a
    /// fresh, zeroed 256 KiB output buffer per row was 8 % of the writer's time.
    joined: String,
    packed: Vec<u8>,
}

/// What separates the frames of a packed run: a control character, which JSON text
/// holds only escaped, so that no frame can contain it (a newline can: a plugin's
/// body is passed through as it wrote it).
const FRAME_SEPARATOR: char = '\u{1e}';

impl Run {
    /// Whether `e` can join this run's row.
    fn continues(&self, e: &StoredEvent) -> bool {
        self.events.last().is_some_and(|last| {
            last.seq.checked_add(1) == Some(e.seq)
                && last.session_id == e.session_id
                && last.job_id == e.job_id
                && self.bytes + 1 + e.frame.len() <= RUN_BYTES
        })
    }

    /// Adds `e` to this run, or stores the run and starts the next with it.
    fn add(
        &mut self,
        e: StoredEvent,
        insert: &mut rusqlite::CachedStatement<'_>,
    ) -> rusqlite::Result<()> {
        debug_assert!(!e.frame.contains(FRAME_SEPARATOR), "{}", e.frame);
        if !self.continues(&e) {
            self.store(insert)?;
        }
        self.bytes += usize::from(!self.events.is_empty()) + e.frame.len();
        self.events.push(e);
        Ok(())
    }

    /// Inserts the run as one row (nothing if it is empty) and empties it: a run of
    /// one as its frame's text, a longer one packed (see [`pack`]).
    fn store(&mut self, insert: &mut rusqlite::CachedStatement<'_>) -> rusqlite::Result<()> {
        let (Some(first), Some(last)) = (self.events.first(), self.events.last()) else {
            return Ok(());
        };
        let packed: &[u8];
        let frames: &dyn rusqlite::ToSql = if self.events.len() == 1 {
            &first.frame
        } else {
            let len = pack(&self.events, &mut self.joined, &mut self.packed)?;
            packed = &self.packed[..len];
            &packed
        };
        insert.execute(params![
            first.session_id,
            first.seq as i64,
            last.seq as i64,
            first.job_id,
            frames
        ])?;
        self.events.clear();
        self.bytes = 0;
        Ok(())
    }
}

/// The frames of `events` as a packed run, in `packed` (`joined` is the buffer they
/// are joined in): joined by [`FRAME_SEPARATOR`] and compressed as one LZ4 block,
/// its length first (what `lz4_flex::compress_prepend_size` writes). A run's frames
/// repeat their session, job and trace ids and most of their keys: a flood's runs
/// pack to a tenth or less, and the pages the writer, its log and the checkpoints
/// go through shrink with them.
///
/// Returns the packed run's length in `packed`, which is kept at its largest size.
fn pack(
    events: &[StoredEvent],
    joined: &mut String,
    packed: &mut Vec<u8>,
) -> rusqlite::Result<usize> {
    joined.clear();
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            joined.push(FRAME_SEPARATOR);
        }
        joined.push_str(&e.frame);
    }
    let most = 4 + lz4_flex::block::get_maximum_output_size(joined.len());
    if packed.len() < most {
        packed.resize(most, 0);
    }
    let len = u32::try_from(joined.len()).unwrap_or(u32::MAX);
    packed[..4].copy_from_slice(&len.to_le_bytes());
    // The output has the room the block format's bound asks for.
    let n = lz4_flex::block::compress_into(joined.as_bytes(), &mut packed[4..])
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    Ok(4 + n)
}

/// The frames of a packed run (see [`pack`]), joined. `None` when it is not one.
fn unpack_run(packed: &[u8]) -> Option<String> {
    let (len, block) = packed.split_first_chunk::<4>()?;
    let len = u32::from_le_bytes(*len) as usize;
    // No run is longer (see `Run::continues`): a damaged length must not make
    // this allocate gigabytes.
    if len > RUN_BYTES {
        return None;
    }
    let joined = lz4_flex::decompress(block, len).ok()?;
    String::from_utf8(joined).ok()
}

/// A forgotten job's envelopes, in the sessions that can no longer be resumed
/// (SQLite looks each row's session up in the sessions' key).
const DELETE_JOB_EVENTS: &str = "DELETE FROM events WHERE job_id = ?1
     AND session_id NOT IN (SELECT session_id FROM sessions)";

/// A forgotten session's envelopes, except the history of the jobs it submitted
/// that are still recorded. Each of the session's rows looks its job up by key:
/// `job_id NOT IN (SELECT job_id FROM jobs WHERE session_id = ?1)` read the whole
/// jobs table (nothing indexes it by session) for every session forgotten, and a
/// principal at its session cap forgets one per session it opens, while that
/// session's welcome waits behind the write (1,000 sessions took 4.6-10 s to open
/// instead of 0.2 s once 10,000-30,000 jobs were recorded).
const DELETE_SESSION_EVENTS: &str = "DELETE FROM events WHERE session_id = ?1
     AND (job_id IS NULL OR NOT EXISTS (SELECT 1 FROM jobs
          WHERE jobs.job_id = events.job_id AND jobs.session_id = ?1))";

/// Applies one batch of writes (flush waiters set apart by the caller) in one
/// transaction: all of them or, on any failure, none.
fn commit(
    conn: &Connection,
    batch: impl Iterator<Item = (Ticket, Write)>,
    run: &mut Run,
) -> rusqlite::Result<()> {
    // Whatever a failed batch left in it was rolled back with that batch.
    run.events.clear();
    run.bytes = 0;
    // Cached statements rather than rusqlite's `Transaction`, which runs "BEGIN
    // DEFERRED" and "COMMIT" through `execute_batch` and so parses both again for
    // every batch: a tenth of the writer's samples over sequential echo jobs, on
    // the path of every answer that waits for its commit.
    let applied = exec(conn, "BEGIN", [])
        .and_then(|()| apply(conn, batch, run))
        .and_then(|()| exec(conn, "COMMIT", []));
    // A failed COMMIT may leave the transaction open (SQLITE_BUSY), or SQLite may
    // have rolled it back already (SQLITE_FULL): roll back whatever is still open,
    // so that the next batch's BEGIN finds none.
    if applied.is_err()
        && !conn.is_autocommit()
        && let Err(e) = exec(conn, "ROLLBACK", [])
    {
        tracing::error!(error = %e, "store rollback failed");
    }
    applied
}

/// Runs `sql` once as a cached statement of the writer's connection, which runs the
/// same few statements batch after batch: prepared once, not parsed again for each.
fn exec(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute(params).map(drop)
}

/// The writes of one batch, inside the transaction `commit` opened.
fn apply(
    txn: &Connection,
    batch: impl Iterator<Item = (Ticket, Write)>,
    run: &mut Run,
) -> rusqlite::Result<()> {
    // Plain INSERT: a session's seqs are never reused, so a conflict is a bug
    // to hear about, not a row to replace.
    let mut ev = txn.prepare_cached(
        "INSERT INTO events (session_id, seq, last_seq, job_id, frames) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    // An upsert, not INSERT OR REPLACE: a job's later versions (running, ended)
    // are then updated in place, one page of the table, where a replace deletes
    // the row, inserts it anew and rewrites its entry in the job_id index too.
    let mut job = txn.prepare_cached(
        "INSERT INTO jobs (job_id, principal, session_id, agent, status, submitted_at, accepted, ended_at, subscribers)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (job_id) DO UPDATE SET principal = excluded.principal,
             session_id = excluded.session_id, agent = excluded.agent,
             status = excluded.status, submitted_at = excluded.submitted_at,
             accepted = excluded.accepted, ended_at = excluded.ended_at,
             subscribers = excluded.subscribers",
    )?;
    let mut put_job = |j: Box<JobRecord>| {
        job.execute(params![
            j.job_id,
            j.principal,
            j.session_id,
            j.agent,
            j.status,
            j.submitted_at,
            j.accepted,
            j.ended_at,
            serde_json::to_string(&j.subscribers).unwrap_or_else(|_| "[]".into())
        ])
        .map(drop)
    };
    for (_, w) in batch {
        // Any other write may read or delete events: the run goes in first, so
        // that writes still apply in ticket order. (A job record touches no
        // event, so an ending's event may join the run before it.)
        if !matches!(w, Write::Event(_) | Write::Ended(..)) {
            run.store(&mut ev)?;
        }
        match w {
            Write::Event(e) => run.add(e, &mut ev)?,
            Write::Job(j) => put_job(j)?,
            Write::Ended(e, j) => {
                run.add(e, &mut ev)?;
                put_job(j)?;
            }
            Write::JobGone(id) => {
                exec(txn, "DELETE FROM jobs WHERE job_id = ?1", params![id])?;
                exec(txn, DELETE_JOB_EVENTS, params![id])?;
            }
            Write::Credential(c) => {
                exec(
                    txn,
                    "INSERT OR REPLACE INTO credentials (id, job_id, handle) VALUES (?1, ?2, ?3)",
                    params![c.id, c.job_id, c.handle],
                )?;
            }
            Write::Session(r) => {
                exec(
                    txn,
                    "INSERT OR REPLACE INTO sessions (session_id, principal, features, token_hash) VALUES (?1, ?2, ?3, ?4)",
                    params![r.session_id, r.principal, r.features, r.token_hash],
                )?;
            }
            Write::SessionGone(id) => {
                exec(
                    txn,
                    "DELETE FROM sessions WHERE session_id = ?1",
                    params![id],
                )?;
                exec(txn, DELETE_SESSION_EVENTS, params![id])?;
            }
            Write::Key(k) => {
                exec(
                    txn,
                    "INSERT OR REPLACE INTO idempotency (principal, key, fingerprint, job_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![k.principal, k.key, k.fingerprint, k.job_id, k.created_at],
                )?;
            }
            Write::KeyGone(principal, key) => {
                exec(
                    txn,
                    "DELETE FROM idempotency WHERE principal = ?1 AND key = ?2",
                    params![principal, key],
                )?;
            }
            Write::Revoked(id) => {
                exec(txn, "DELETE FROM credentials WHERE id = ?1", params![id])?;
            }
            Write::Probe => {
                exec(
                    txn,
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('probe', ?1)",
                    params![chrono::Utc::now().to_rfc3339()],
                )?;
            }
            Write::Flush(_) => {} // set apart by the caller
        }
    }
    run.store(&mut ev)?;
    Ok(())
}

/// The events with `seq > after` of rows of `SELECT session_id, seq, last_seq,
/// job_id, frames FROM events`, in order.
fn unpack_all(mut rows: rusqlite::Rows<'_>, after: u64) -> Result<Vec<StoredEvent>, StoreError> {
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        unpack(r, after, &mut out)?;
    }
    Ok(out)
}

/// Appends to `out` the events with `seq > after` of a row of `SELECT session_id,
/// seq, last_seq, job_id, frames FROM events`.
fn unpack(r: &rusqlite::Row<'_>, after: u64, out: &mut Vec<StoredEvent>) -> Result<(), StoreError> {
    let session_id: std::sync::Arc<str> = r.get::<_, String>(0)?.into();
    let seq = r.get::<_, i64>(1)? as u64;
    let last_seq = r.get::<_, i64>(2)? as u64;
    let job_id: Option<std::sync::Arc<str>> = r.get::<_, Option<String>>(3)?.map(Into::into);
    let malformed = || {
        StoreError::Io(format!(
            "events of {session_id} from {seq} to {last_seq}: the row does not hold one frame per seq"
        ))
    };
    let unpacked;
    let (frames, separator) = match r.get_ref(4)? {
        // A packed run.
        rusqlite::types::ValueRef::Blob(packed) => {
            unpacked = unpack_run(packed).ok_or_else(malformed)?;
            (unpacked.as_str(), FRAME_SEPARATOR)
        }
        // One frame, or a run written by schema 2, joined by newlines.
        rusqlite::types::ValueRef::Text(text) => {
            let text = std::str::from_utf8(text)
                .map_err(|e| StoreError::Io(format!("events of {session_id} from {seq}: {e}")))?;
            if seq == last_seq {
                // Never split: it may be a frame with a newline in it.
                if seq > after {
                    out.push(StoredEvent {
                        session_id,
                        seq,
                        job_id,
                        frame: text.to_owned(),
                    });
                }
                return Ok(());
            }
            (text, '\n')
        }
        _ => return Err(malformed()),
    };
    let mut pieces = frames.split(separator);
    for s in seq..=last_seq {
        let frame = pieces.next().ok_or_else(malformed)?;
        if s > after {
            out.push(StoredEvent {
                session_id: session_id.clone(),
                seq: s,
                job_id: job_id.clone(),
                frame: frame.to_owned(),
            });
        }
    }
    if pieces.next().is_some() {
        return Err(malformed());
    }
    Ok(())
}

/// A row of `SELECT job_id, principal, session_id, agent, status, submitted_at,
/// accepted, ended_at, subscribers FROM jobs`.
fn job_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRecord> {
    Ok(JobRecord {
        job_id: r.get(0)?,
        principal: r.get(1)?,
        session_id: r.get(2)?,
        agent: r.get(3)?,
        status: r.get(4)?,
        submitted_at: r.get(5)?,
        accepted: r.get(6)?,
        ended_at: r.get(7)?,
        // Unreadable lists (never written by this code) count as no subscribers.
        subscribers: serde_json::from_str(&r.get::<_, String>(8)?).unwrap_or_default(),
    })
}

impl Store for SqliteStore {
    fn append_event(&self, event: StoredEvent) -> Ticket {
        self.send(Write::Event(event))
    }

    fn put_job(&self, job: JobRecord) -> Ticket {
        self.send(Write::Job(Box::new(job)))
    }

    fn append_final_event(&self, event: StoredEvent, job: JobRecord) -> Ticket {
        match self.commit_here(Write::Ended(event, Box::new(job))) {
            Ok(ticket) => ticket,
            Err(write) => self.send(write),
        }
    }

    fn remove_job(&self, job_id: &str) -> Ticket {
        self.send(Write::JobGone(job_id.to_owned()))
    }

    fn remove_session(&self, session_id: &str) -> Ticket {
        self.send(Write::SessionGone(session_id.to_owned()))
    }

    fn settled(&self) -> watch::Receiver<Ticket> {
        self.outcomes.settled.subscribe()
    }

    fn outcome(&self, ticket: Ticket) -> Result<(), StoreError> {
        let failed = self
            .outcomes
            .failed
            .lock()
            .map_err(|_| StoreError::Io("store lock poisoned".into()))?;
        match failed
            .iter()
            .rev()
            .find(|(first, last, _)| (*first..=*last).contains(&ticket))
        {
            None => Ok(()),
            Some((_, _, why)) => Err(StoreError::Io(format!(
                "store {}: {why}",
                self.path.display()
            ))),
        }
    }

    fn health(&self) -> Result<(), StoreError> {
        match self.outcomes.failure.lock().map(|f| f.clone()) {
            Ok(None) => Ok(()),
            Ok(Some(why)) => Err(StoreError::Io(format!(
                "store {}: {why}",
                self.path.display()
            ))),
            Err(_) => Err(StoreError::Io("store lock poisoned".into())),
        }
    }

    fn probe(&self) -> Result<(), StoreError> {
        self.send(Write::Probe);
        self.flush()
    }

    fn stored_bytes(&self) -> Result<u64, StoreError> {
        let conn = self.reader()?;
        let bytes: i64 = conn.query_row(
            "SELECT (p.page_count - f.freelist_count) * s.page_size
             FROM pragma_page_count() p, pragma_freelist_count() f, pragma_page_size() s",
            [],
            |r| r.get(0),
        )?;
        Ok(bytes.max(0) as u64)
    }

    fn events_after(&self, session_id: &str, after: u64) -> Result<Vec<StoredEvent>, StoreError> {
        let conn = self.reader()?;
        // `seq >=` the start of the row holding `after` keeps this a range of the
        // primary key, not a scan of the session's whole history.
        let mut stmt = conn.prepare_cached(
            "SELECT session_id, seq, last_seq, job_id, frames FROM events
             WHERE session_id = ?1 AND last_seq > ?2
               AND seq >= COALESCE((SELECT MAX(seq) FROM events WHERE session_id = ?1 AND seq <= ?2), 0)
             ORDER BY seq",
        )?;
        unpack_all(stmt.query(params![session_id, after as i64])?, after)
    }

    fn events_for_job(
        &self,
        session_id: &str,
        job_id: &str,
        after: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let conn = self.reader()?;
        // The lower bound on seq as in `events_after`: the session's rows never
        // overlap, so none after the cursor starts before the row holding it.
        let mut stmt = conn.prepare_cached(
            "SELECT session_id, seq, last_seq, job_id, frames FROM events
             WHERE job_id = ?1 AND session_id = ?2 AND last_seq > ?3
               AND seq >= COALESCE((SELECT MAX(seq) FROM events WHERE session_id = ?2 AND seq <= ?3), 0)
             ORDER BY seq",
        )?;
        unpack_all(
            stmt.query(params![job_id, session_id, after as i64])?,
            after,
        )
    }

    fn job(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(
            "SELECT job_id, principal, session_id, agent, status, submitted_at, accepted, ended_at, subscribers FROM jobs WHERE job_id = ?1",
        )?;
        Ok(stmt.query_row(params![job_id], job_record).optional()?)
    }

    fn jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(
            "SELECT job_id, principal, session_id, agent, status, submitted_at, accepted, ended_at, subscribers FROM jobs ORDER BY job_id",
        )?;
        let rows = stmt.query_map([], job_record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn last_seq(&self, session_id: &str) -> Result<u64, StoreError> {
        let conn = self.reader()?;
        // The session's rows never overlap, so the last one ends highest; found by
        // the primary key, where MAX(last_seq) would read every row.
        let seq: Option<i64> = conn
            .query_row(
                "SELECT last_seq FROM events WHERE session_id = ?1 ORDER BY seq DESC LIMIT 1",
                params![session_id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(seq.unwrap_or(0) as u64)
    }

    fn put_session(&self, session: SessionRecord) -> Ticket {
        self.send(Write::Session(Box::new(session)))
    }

    fn sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare_cached("SELECT session_id, principal, features, token_hash FROM sessions")?;
        let rows = stmt.query_map([], |r| {
            Ok(SessionRecord {
                session_id: r.get(0)?,
                principal: r.get(1)?,
                features: r.get(2)?,
                token_hash: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn put_idempotency(&self, record: IdempotencyRecord) -> Ticket {
        self.send(Write::Key(Box::new(record)))
    }

    fn remove_idempotency(&self, principal: &str, key: &str) -> Ticket {
        self.send(Write::KeyGone(principal.to_owned(), key.to_owned()))
    }

    fn idempotency_keys(&self) -> Result<Vec<IdempotencyRecord>, StoreError> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(
            "SELECT principal, key, fingerprint, job_id, created_at FROM idempotency ORDER BY key",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(IdempotencyRecord {
                principal: r.get(0)?,
                key: r.get(1)?,
                fingerprint: r.get(2)?,
                job_id: r.get(3)?,
                created_at: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn put_credential(&self, credential: OutstandingCredential) -> Ticket {
        self.send(Write::Credential(Box::new(credential)))
    }

    fn remove_credential(&self, id: &str) -> Ticket {
        self.send(Write::Revoked(id.to_owned()))
    }

    fn outstanding_credentials(&self) -> Result<Vec<OutstandingCredential>, StoreError> {
        let conn = self.reader()?;
        let mut stmt =
            conn.prepare_cached("SELECT id, job_id, handle FROM credentials ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok(OutstandingCredential {
                id: r.get(0)?,
                job_id: r.get(1)?,
                handle: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::channel();
        if self.send(Write::Flush(tx)) == 0 {
            return Err(StoreError::Io("store writer has stopped".into()));
        }
        rx.recv()
            .map_err(|_| StoreError::Io("store writer has stopped".into()))?
            .map_err(StoreError::Io)
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance;
    use super::*;

    #[test]
    fn passes_the_store_conformance_tests() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        conformance::events_come_back_in_order_after_a_cursor(&store);
        conformance::a_job_record_is_replaced_by_its_latest_version(&store);
        conformance::a_final_event_and_its_record_are_kept_together(&store);
        conformance::credentials_are_outstanding_until_removed(&store);
        conformance::sessions_jobs_and_seqs_are_recoverable(&store);
        conformance::idempotency_keys_are_kept_until_removed(&store);
        conformance::tickets_grow_and_settle(&store);
        let dir = tempfile::tempdir().unwrap();
        conformance::events_come_back_exactly_from_every_cursor(
            &SqliteStore::open(dir.path()).unwrap(),
        );
        let dir = tempfile::tempdir().unwrap();
        conformance::removing_a_job_keeps_its_history_while_its_session_is_resumable(
            &SqliteStore::open(dir.path()).unwrap(),
        );
    }

    /// The log is started over again and again once it passes its limit, although a
    /// steady stream of commits never lets the writer find it wholly copied (and
    /// start it over itself); without that it grows by everything written.
    #[test]
    fn the_log_is_started_over_under_a_steady_stream_of_writes() {
        let dir = tempfile::tempdir().unwrap();
        let limit: u64 = 1 << 20;
        let store = SqliteStore::open_with(dir.path(), limit).unwrap();
        let frame = format!("{{\"pad\":\"{}\"}}", "x".repeat(512));
        // One commit after another for 3 s, with nothing in between for a checkpoint
        // to finish in.
        let started = std::time::Instant::now();
        let mut seq = 0;
        while started.elapsed() < std::time::Duration::from_secs(3) {
            seq += 1;
            store.append_event(StoredEvent {
                session_id: "sess_log".into(),
                seq,
                job_id: None,
                frame: frame.clone(),
            });
            store.flush().unwrap();
        }
        // The log's header counts the times it was started over (its checkpoint
        // sequence number, big-endian at byte 12).
        let mut header = [0u8; 16];
        std::io::Read::read_exact(
            &mut std::fs::File::open(dir.path().join("arcp.db-wal")).unwrap(),
            &mut header,
        )
        .unwrap();
        let restarts = u32::from_be_bytes([header[12], header[13], header[14], header[15]]);
        let written = seq * frame.len() as u64;
        assert!(
            restarts >= 3,
            "the log was started over {restarts} times in 3 s ({written} bytes of frames, limit {limit})"
        );
    }

    /// Regressions (found by CI: `store_failure` accepted a job on a full disk): a
    /// batch holding only flush waiters commits an empty transaction, which succeeds
    /// on a full disk too, and it cleared the store's failure; and a flush batched
    /// after a failing write was dropped unanswered.
    #[test]
    fn a_failure_stays_until_a_real_write_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        // Make every probe write fail, as a full disk would.
        let side = Connection::open(dir.path().join("arcp.db")).unwrap();
        side.execute_batch(
            "CREATE TRIGGER full_disk BEFORE INSERT ON meta
             BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
        )
        .unwrap();
        // The probe hears the write's own error (its flush was dropped with the
        // failed write and heard "the store writer has stopped").
        let probe = store.probe().unwrap_err().to_string();
        assert!(probe.contains("disk is full"), "{probe}");
        assert!(store.health().is_err());
        // Waiting on nothing new says how things stand: still failing.
        for _ in 0..3 {
            assert!(store.flush().is_err(), "a flush alone reported success");
            assert!(store.health().is_err(), "a flush alone cleared the failure");
        }
        // A write that lands clears it.
        side.execute_batch("DROP TRIGGER full_disk").unwrap();
        assert!(store.probe().is_ok());
        assert!(store.health().is_ok());
    }

    /// Endings committed by their own thread (`commit_here`) and the writer
    /// thread's batches settle in ticket order: the settled ticket never goes
    /// back, and a write is readable once its ticket is settled. Threads write
    /// endings, events and flushes at once, so that endings find the writer idle,
    /// busy, and holding a batch of flush waiters only (which must wait for an
    /// ending being committed, or it settles a later ticket before it).
    #[test]
    fn endings_committed_in_place_settle_in_ticket_order() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let done = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (mut settled, done) = (store.settled(), done.clone());
            std::thread::spawn(move || {
                let mut last = 0;
                while !done.load(Ordering::Acquire) {
                    let now = *settled.borrow_and_update();
                    assert!(
                        now >= last,
                        "the settled ticket went back from {last} to {now}"
                    );
                    last = now;
                    std::hint::spin_loop();
                }
            })
        };
        let writers: Vec<_> = (0..3)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let session = format!("sess_{t}");
                    for seq in 1..=1500 {
                        let e = event(&session, seq, Some("job"));
                        let ticket = match seq % 3 {
                            0 => store.append_final_event(e, conformance::job("job", "success")),
                            1 => store.append_event(e),
                            _ => {
                                store.append_event(e);
                                store.flush().unwrap();
                                continue;
                            }
                        };
                        let mut settled = store.settled();
                        let deadline =
                            std::time::Instant::now() + std::time::Duration::from_secs(10);
                        while *settled.borrow_and_update() < ticket {
                            assert!(
                                std::time::Instant::now() < deadline,
                                "{session} {seq}: ticket {ticket} never settled"
                            );
                            std::thread::yield_now();
                        }
                        let read = store.events_after(&session, seq - 1).unwrap();
                        assert_eq!(read.len(), 1, "{session} {seq}: settled, not readable");
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Release);
        watcher.join().unwrap();
        let here = store.committed_here.load(Ordering::Relaxed);
        assert!(here > 0, "no ending was committed in place");
        for t in 0..3 {
            assert_eq!(
                store.events_after(&format!("sess_{t}"), 0).unwrap().len(),
                1500
            );
        }
    }

    /// A flush (a batch of waiters only, nothing to write) waits while an ending
    /// is being committed in place, whose ticket is lower: settling the flush's
    /// ticket first would publish a commit that has not happened yet.
    #[test]
    fn a_flush_waits_for_an_ending_being_committed_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        store.append_event(event("sess_a", 1, None));
        store.flush().unwrap();
        // Held as `commit_here` holds it while it commits.
        let in_place = store.committer.lock().unwrap();
        let flushing = std::thread::spawn({
            let store = store.clone();
            move || store.flush()
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(
            !flushing.is_finished(),
            "the flush settled before the commit"
        );
        drop(in_place);
        flushing.join().unwrap().unwrap();
    }

    /// Regression: a transaction left open (by a failed COMMIT whose ROLLBACK failed
    /// too) made every later batch's BEGIN fail, so the store never wrote again. A
    /// batch whose BEGIN fails rolls back what is open; the next batch commits.
    #[test]
    fn a_transaction_left_open_is_rolled_back_and_the_next_batch_commits() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("arcp.db")).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        migrate(&mut conn).unwrap();
        conn.execute_batch("BEGIN").unwrap();
        let batch = |seq| [(0, Write::Event(event("sess_x", seq, None)))].into_iter();
        let mut run = Run::default();
        assert!(commit(&conn, batch(1), &mut run).is_err());
        assert!(conn.is_autocommit(), "the open transaction was left open");
        commit(&conn, batch(2), &mut run).unwrap();
        let stored: i64 = conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, 1);
    }

    /// Regression: forgetting a session read every recorded job, so that a
    /// principal at its session cap, which forgets one detached session per
    /// session it opens, took seconds to open a thousand once tens of thousands of
    /// jobs were recorded. Each delete must find its rows through keys, never by
    /// reading a whole table.
    #[test]
    fn forgetting_a_session_or_a_job_reads_no_whole_table() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let conn = Connection::open(store.path()).unwrap();
        for sql in [DELETE_SESSION_EVENTS, DELETE_JOB_EVENTS] {
            let mut plan = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let steps: Vec<String> = plan
                .query_map(["x"], |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                steps.iter().all(|s| !s.starts_with("SCAN")),
                "{sql}: {steps:?}"
            );
            assert!(
                steps.iter().any(|s| s.starts_with("SEARCH events")),
                "{steps:?}"
            );
        }
    }

    /// A new file gets 1 KiB pages; a file written with another page size keeps
    /// it (SQLite ignores the pragma for a file that has tables) and is used as it
    /// is.
    #[test]
    fn a_new_file_has_small_pages_and_an_old_one_keeps_its_own() {
        let page_size = |dir: &Path| -> i64 {
            Connection::open(dir.join("arcp.db"))
                .unwrap()
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .unwrap()
        };
        let new = tempfile::tempdir().unwrap();
        drop(SqliteStore::open(new.path()).unwrap());
        assert_eq!(page_size(new.path()), 1024);

        let old = tempfile::tempdir().unwrap();
        Connection::open(old.path().join("arcp.db"))
            .unwrap()
            .execute_batch("PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE t (x)")
            .unwrap();
        let store = SqliteStore::open(old.path()).unwrap();
        store.put_job(conformance::job("job_a", "running"));
        store.flush().unwrap();
        assert_eq!(store.job("job_a").unwrap().unwrap().status, "running");
        drop(store);
        assert_eq!(page_size(old.path()), 4096);
    }

    #[test]
    fn records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SqliteStore::open(dir.path()).unwrap();
            store.put_job(conformance::job("job_9", "success"));
            store.flush().unwrap();
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(store.job("job_9").unwrap().unwrap().status, "success");
    }

    #[test]
    fn a_file_of_schema_version_0_is_migrated_and_keeps_its_jobs() {
        let dir = tempfile::tempdir().unwrap();
        {
            let old = Connection::open(dir.path().join("arcp.db")).unwrap();
            old.execute_batch(
                "CREATE TABLE jobs (job_id TEXT PRIMARY KEY, principal TEXT NOT NULL,
                   session_id TEXT NOT NULL, agent TEXT NOT NULL, status TEXT NOT NULL,
                   submitted_at TEXT NOT NULL, accepted TEXT NOT NULL);
                 INSERT INTO jobs VALUES ('job_0', 'alice', 'sess_1', 'echo@1.0.0', 'success',
                   '2026-01-01T00:00:00Z', '{}');",
            )
            .unwrap();
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        let kept = store.job("job_0").unwrap().unwrap();
        assert_eq!((kept.status.as_str(), kept.ended_at), ("success", None));
        store.put_job(JobRecord {
            ended_at: Some("2026-01-01T00:00:01Z".into()),
            ..conformance::job("job_1", "success")
        });
        store.flush().unwrap();
        assert!(store.job("job_1").unwrap().unwrap().ended_at.is_some());
    }

    /// Commits `writes` as one batch, as the writer does with what it finds queued;
    /// called directly because what the writer finds queued depends on timing.
    fn commit_one_batch(dir: &Path, writes: Vec<Write>) {
        let mut conn = Connection::open(dir.join("arcp.db")).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        migrate(&mut conn).unwrap();
        commit(
            &conn,
            writes.into_iter().map(|w| (0, w)),
            &mut Run::default(),
        )
        .unwrap();
    }

    /// Runs `sql` on the store's file: rows as another build wrote them.
    fn insert_rows(dir: &Path, sql: &str) {
        Connection::open(dir.join("arcp.db"))
            .unwrap()
            .execute_batch(sql)
            .unwrap();
    }

    /// The rows of `events`: (session, first seq, last seq, job).
    fn rows(dir: &Path) -> Vec<(String, u64, u64, Option<String>)> {
        let conn = Connection::open(dir.join("arcp.db")).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT session_id, seq, last_seq, job_id FROM events ORDER BY session_id, seq",
            )
            .unwrap();
        stmt.query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, i64>(2)? as u64,
                r.get(3)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    fn row(
        session: &str,
        seq: u64,
        last: u64,
        job: Option<&str>,
    ) -> (String, u64, u64, Option<String>) {
        (session.into(), seq, last, job.map(Into::into))
    }

    /// A `job.event` frame of exactly 250 bytes.
    fn event(session: &str, seq: u64, job: Option<&str>) -> StoredEvent {
        let head = format!("{{\"session_id\":\"{session}\",\"event_seq\":{seq},\"pad\":\"");
        let frame = format!("{head}{}\"}}", "x".repeat(250 - head.len() - 2));
        assert_eq!(frame.len(), 250);
        StoredEvent {
            session_id: session.into(),
            seq,
            job_id: job.map(Into::into),
            frame,
        }
    }

    fn after(
        events: &[StoredEvent],
        session: &str,
        job: Option<&str>,
        after: u64,
    ) -> Vec<StoredEvent> {
        events
            .iter()
            .filter(|e| &*e.session_id == session && e.seq > after)
            .filter(|e| job.is_none() || e.job_id.as_deref() == job)
            .cloned()
            .collect()
    }

    #[test]
    fn a_batch_of_one_jobs_events_is_a_few_rows_read_back_from_any_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let flood: Vec<StoredEvent> = (1..=3000)
            .map(|seq| event("sess_f", seq, Some("job_f")))
            .collect();
        let short: Vec<StoredEvent> = (1..=40)
            .map(|seq| StoredEvent {
                frame: format!("{{\"n\":{seq}}}"),
                ..event("sess_s", seq, Some("job_s"))
            })
            .collect();
        let batch = flood
            .iter()
            .chain(&short)
            .cloned()
            .map(Write::Event)
            .collect();
        commit_one_batch(dir.path(), batch);
        // 1044 frames of 250 bytes and their separators fill 256 KiB.
        assert_eq!(
            rows(dir.path()),
            vec![
                row("sess_f", 1, 1044, Some("job_f")),
                row("sess_f", 1045, 2088, Some("job_f")),
                row("sess_f", 2089, 3000, Some("job_f")),
                row("sess_s", 1, 40, Some("job_s")),
            ]
        );
        let longest: i64 = Connection::open(dir.path().join("arcp.db"))
            .unwrap()
            .query_row("SELECT MAX(LENGTH(frames)) FROM events", [], |r| r.get(0))
            .unwrap();
        assert!(longest as usize <= RUN_BYTES, "{longest}");
        // Packed: its frames differ in a few bytes each.
        let stored: i64 = Connection::open(dir.path().join("arcp.db"))
            .unwrap()
            .query_row("SELECT SUM(LENGTH(frames)) FROM events", [], |r| r.get(0))
            .unwrap();
        assert!(stored < 3000 * 250 / 8, "{stored} bytes stored");

        for cursor in [
            0, 1, 2, 500, 1043, 1044, 1045, 1046, 2088, 2500, 2999, 3000, 3001,
        ] {
            assert_eq!(
                store.events_after("sess_f", cursor).unwrap(),
                after(&flood, "sess_f", None, cursor),
                "after {cursor}"
            );
            assert_eq!(
                store.events_for_job("sess_f", "job_f", cursor).unwrap(),
                after(&flood, "sess_f", None, cursor),
                "job_f after {cursor}"
            );
        }
        for cursor in 0..=41 {
            assert_eq!(
                store.events_after("sess_s", cursor).unwrap(),
                after(&short, "sess_s", None, cursor),
                "after {cursor}"
            );
        }
        assert_eq!(store.events_for_job("sess_s", "job_f", 0).unwrap(), vec![]);
        assert_eq!(store.last_seq("sess_f").unwrap(), 3000);
        assert_eq!(store.last_seq("sess_s").unwrap(), 40);
    }

    #[test]
    fn interleaved_jobs_and_sessions_are_rows_apart_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let (a, b) = (Some("job_a"), Some("job_b"));
        let sent: Vec<StoredEvent> = [
            ("sess_1", 1, a),
            ("sess_1", 2, a),
            ("sess_2", 1, a),
            ("sess_2", 2, a),
            ("sess_1", 3, b),
            ("sess_1", 4, b),
            ("sess_2", 3, None),
            ("sess_1", 5, a),
            ("sess_1", 6, None),
            ("sess_1", 7, None),
            ("sess_2", 4, None),
            ("sess_1", 8, a),
            ("sess_1", 9, a),
            ("sess_1", 10, a),
            ("sess_1", 12, a),
        ]
        .into_iter()
        .map(|(s, seq, job)| event(s, seq, job))
        .collect();
        commit_one_batch(dir.path(), sent.iter().cloned().map(Write::Event).collect());
        assert_eq!(
            rows(dir.path()),
            vec![
                row("sess_1", 1, 2, a),
                row("sess_1", 3, 4, b),
                row("sess_1", 5, 5, a),
                row("sess_1", 6, 7, None),
                row("sess_1", 8, 10, a),
                row("sess_1", 12, 12, a),
                row("sess_2", 1, 2, a),
                row("sess_2", 3, 3, None),
                row("sess_2", 4, 4, None),
            ]
        );
        for session in ["sess_1", "sess_2"] {
            for cursor in 0..=13 {
                assert_eq!(
                    store.events_after(session, cursor).unwrap(),
                    after(&sent, session, None, cursor),
                    "{session} after {cursor}"
                );
                for job in [a, b] {
                    assert_eq!(
                        store.events_for_job(session, job.unwrap(), cursor).unwrap(),
                        after(&sent, session, job, cursor),
                        "{job:?} in {session} after {cursor}"
                    );
                }
            }
        }
        assert_eq!(store.last_seq("sess_1").unwrap(), 12);
        assert_eq!(store.last_seq("sess_2").unwrap(), 4);
    }

    /// Frames with newlines (a plugin's body is passed through as written) join
    /// runs like any other, and every frame comes back byte for byte.
    #[test]
    fn frames_with_newlines_join_a_run_and_come_back_intact() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let sent: Vec<StoredEvent> = ["a", "b\nc", "d", "e\n", "", "f", "\n", "g"]
            .into_iter()
            .zip(1..)
            .map(|(frame, seq)| StoredEvent {
                frame: frame.into(),
                ..event("sess_n", seq, Some("job_n"))
            })
            .collect();
        commit_one_batch(dir.path(), sent.iter().cloned().map(Write::Event).collect());
        assert_eq!(rows(dir.path()), vec![row("sess_n", 1, 8, Some("job_n"))]);
        for cursor in 0..=9 {
            assert_eq!(
                store.events_after("sess_n", cursor).unwrap(),
                after(&sent, "sess_n", None, cursor),
                "after {cursor}"
            );
        }
        // And through the writer, however it batches.
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        for e in &sent {
            store.append_event(e.clone());
        }
        store.flush().unwrap();
        assert_eq!(store.events_after("sess_n", 0).unwrap(), sent);
    }

    /// Schema 2 joined a run's frames by newlines, as text, and gave a frame with a
    /// newline a row of its own: such a file is read as it is, and new runs go in
    /// packed beside its rows.
    #[test]
    fn a_file_of_schema_version_2_keeps_its_runs_of_text() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        insert_rows(
            dir.path(),
            "INSERT INTO events VALUES ('sess_2', 1, 3, 'job_2', 'one\ntwo\nthree');
             INSERT INTO events VALUES ('sess_2', 4, 4, 'job_2', 'four\nstill four');
             INSERT INTO events VALUES ('sess_2', 5, 6, 'job_2', 'five\nsix');",
        );
        let ev = |seq: u64, frame: &str| StoredEvent {
            frame: frame.into(),
            ..event("sess_2", seq, Some("job_2"))
        };
        let more = vec![
            ev(
                7, "seven
",
            ),
            ev(8, "eight"),
        ];
        commit_one_batch(dir.path(), more.iter().cloned().map(Write::Event).collect());
        let frames = ["one", "two", "three", "four\nstill four", "five", "six"];
        let mut all: Vec<StoredEvent> = frames.iter().zip(1..).map(|(f, seq)| ev(seq, f)).collect();
        all.extend(more);
        for cursor in 0..=8 {
            assert_eq!(
                store.events_after("sess_2", cursor).unwrap(),
                all[cursor as usize..],
                "after {cursor}"
            );
        }
        assert_eq!(store.last_seq("sess_2").unwrap(), 8);
    }

    #[test]
    fn a_row_that_does_not_split_into_its_seqs_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        insert_rows(
            dir.path(),
            "INSERT INTO events VALUES ('sess_1', 1, 3, NULL, 'one\ntwo');
             INSERT INTO events VALUES ('sess_2', 1, 2, NULL, 'one\ntwo\nthree');
             INSERT INTO events VALUES ('sess_3', 1, 2, NULL, x'0800000000');
             INSERT INTO events VALUES ('sess_4', 1, 2, NULL, x'ffffffff0011');
             INSERT INTO events VALUES ('sess_5', 1, 2, NULL, x'01');
             INSERT INTO events VALUES ('sess_6', 1, 2, NULL, 2);",
        );
        // Packed, but of three frames for two seqs.
        let three: Vec<StoredEvent> = (1..=3).map(|seq| event("sess_7", seq, None)).collect();
        let mut packed = Vec::new();
        let len = pack(&three, &mut String::new(), &mut packed).unwrap();
        packed.truncate(len);
        Connection::open(dir.path().join("arcp.db"))
            .unwrap()
            .execute(
                "INSERT INTO events VALUES ('sess_7', 1, 2, NULL, ?1)",
                [&packed],
            )
            .unwrap();
        for session in [
            "sess_1", "sess_2", "sess_3", "sess_4", "sess_5", "sess_6", "sess_7",
        ] {
            let err = store.events_after(session, 0).unwrap_err().to_string();
            assert!(err.contains("one frame per seq"), "{err}");
        }
    }

    #[test]
    fn removals_keep_the_retention_rules_with_runs_in_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let session = |id: &str| SessionRecord {
            session_id: id.into(),
            principal: "alice".into(),
            features: "[]".into(),
            token_hash: "aa".into(),
        };
        let (a, b) = (Some("job_a"), Some("job_b"));
        // sess_a submitted job_a and job_b; sess_w subscribed to job_a.
        let mut batch = vec![
            Write::Session(Box::new(session("sess_a"))),
            Write::Session(Box::new(session("sess_w"))),
        ];
        for id in ["job_a", "job_b"] {
            batch.push(Write::Job(Box::new(JobRecord {
                session_id: "sess_a".into(),
                ..conformance::job(id, "success")
            })));
        }
        let events = (1..=10)
            .map(|seq| event("sess_a", seq, a))
            .chain((11..=12).map(|seq| event("sess_a", seq, None)))
            .chain((13..=20).map(|seq| event("sess_a", seq, b)))
            .chain((1..=5).map(|seq| event("sess_w", seq, a)))
            .chain((6..=7).map(|seq| event("sess_w", seq, None)));
        batch.extend(events.map(Write::Event));
        commit_one_batch(dir.path(), batch);
        assert_eq!(rows(dir.path()).len(), 5);
        let seqs = |session: &str| -> Vec<u64> {
            let got = store.events_after(session, 0).unwrap();
            got.iter().map(|e| e.seq).collect()
        };

        // The job goes; both sessions can still be resumed: all envelopes stay.
        store.remove_job("job_a");
        store.flush().unwrap();
        assert_eq!(seqs("sess_a"), (1..=20).collect::<Vec<_>>());
        assert_eq!(seqs("sess_w"), (1..=7).collect::<Vec<_>>());
        // The watcher's session expires: all of it goes (it submitted nothing).
        store.remove_session("sess_w");
        store.flush().unwrap();
        assert_eq!(seqs("sess_w"), Vec::<u64>::new());
        // The submitter's session expires: what remains is job_b's history.
        store.remove_session("sess_a");
        store.flush().unwrap();
        assert_eq!(seqs("sess_a"), (13..=20).collect::<Vec<_>>());
        assert_eq!(
            store.events_for_job("sess_a", "job_b", 15).unwrap(),
            (16..=20)
                .map(|seq| event("sess_a", seq, b))
                .collect::<Vec<_>>()
        );
        assert_eq!(store.last_seq("sess_a").unwrap(), 20);
        // Then job_b goes, and with it its history.
        store.remove_job("job_b");
        store.flush().unwrap();
        assert_eq!(seqs("sess_a"), Vec::<u64>::new());
        assert_eq!(rows(dir.path()), vec![]);

        // A removal applies between the events batched before it and those after.
        commit_one_batch(
            dir.path(),
            vec![
                Write::Event(event("sess_x", 1, None)),
                Write::Event(event("sess_x", 2, None)),
                Write::SessionGone("sess_x".into()),
                Write::Event(event("sess_x", 3, None)),
                Write::Event(event("sess_x", 4, None)),
            ],
        );
        assert_eq!(seqs("sess_x"), vec![3, 4]);
    }

    #[test]
    fn a_file_of_schema_version_1_is_migrated_and_keeps_its_events() {
        let old_events = "
            CREATE TABLE events (
                session_id TEXT NOT NULL,
                seq        INTEGER NOT NULL,
                job_id     TEXT,
                frame      TEXT NOT NULL,
                PRIMARY KEY (session_id, seq)
            ) WITHOUT ROWID;
            CREATE INDEX events_by_job ON events (job_id, seq);
            INSERT INTO events VALUES ('sess_a', 1, 'job_a', 'a1');
            INSERT INTO events VALUES ('sess_a', 2, 'job_a', 'a2');
            INSERT INTO events VALUES ('sess_b', 1, 'job_a', 'b1');
            INSERT INTO events VALUES ('sess_a', 3, NULL, 'a3');
            INSERT INTO events VALUES ('sess_a', 4, 'job_a', 'a4
still a4');
            INSERT INTO events VALUES ('sess_a', 5, 'job_a', 'a5');";
        let ev = |session: &str, seq: u64, job: Option<&str>, frame: &str| StoredEvent {
            session_id: session.into(),
            seq,
            job_id: job.map(Into::into),
            frame: frame.into(),
        };
        let a = Some("job_a");
        let sess_a = vec![
            ev("sess_a", 1, a, "a1"),
            ev("sess_a", 2, a, "a2"),
            ev("sess_a", 3, None, "a3"),
            ev("sess_a", 4, a, "a4\nstill a4"),
            ev("sess_a", 5, a, "a5"),
        ];
        // Version 0 had the same events table (only jobs changed).
        for version in [0, 1] {
            let dir = tempfile::tempdir().unwrap();
            Connection::open(dir.path().join("arcp.db"))
                .unwrap()
                .execute_batch(&format!("{old_events} PRAGMA user_version = {version};"))
                .unwrap();
            let store = SqliteStore::open(dir.path()).unwrap();
            assert_eq!(store.events_after("sess_a", 0).unwrap(), sess_a);
            assert_eq!(store.events_after("sess_a", 3).unwrap(), sess_a[3..]);
            assert_eq!(
                store.events_for_job("sess_a", "job_a", 0).unwrap(),
                after(&sess_a, "sess_a", a, 0)
            );
            assert_eq!(
                store.events_for_job("sess_b", "job_a", 0).unwrap(),
                vec![ev("sess_b", 1, a, "b1")]
            );
            assert_eq!(store.events_after("sess_b", 1).unwrap(), vec![]);
            assert_eq!(store.last_seq("sess_a").unwrap(), 5);
            assert_eq!(store.last_seq("sess_b").unwrap(), 1);
            assert_eq!(
                rows(dir.path()),
                vec![
                    row("sess_a", 1, 1, a),
                    row("sess_a", 2, 2, a),
                    row("sess_a", 3, 3, None),
                    row("sess_a", 4, 4, a),
                    row("sess_a", 5, 5, a),
                    row("sess_b", 1, 1, a),
                ]
            );
            let conn = Connection::open(dir.path().join("arcp.db")).unwrap();
            let (user_version, tables, indexes): (i64, i64, i64) = conn
                .query_row(
                    "SELECT (SELECT user_version FROM pragma_user_version),
                       (SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name LIKE 'events%'),
                       (SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'events_by_job')",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .unwrap();
            assert_eq!((user_version, tables, indexes), (SCHEMA_VERSION, 1, 1));
            // New events go in as runs beside the old ones.
            let more = vec![ev("sess_a", 6, a, "a6"), ev("sess_a", 7, a, "a7")];
            commit_one_batch(dir.path(), more.iter().cloned().map(Write::Event).collect());
            assert_eq!(store.events_after("sess_a", 4).unwrap()[1..], more);
            assert_eq!(store.last_seq("sess_a").unwrap(), 7);
            drop(store);
            // Reopening a migrated file changes nothing.
            let store = SqliteStore::open(dir.path()).unwrap();
            assert_eq!(store.events_after("sess_a", 5).unwrap(), more);
        }
        // A new file is created at the current version, never migrated.
        let dir = tempfile::tempdir().unwrap();
        let _store = SqliteStore::open(dir.path()).unwrap();
        let version: i64 = Connection::open(dir.path().join("arcp.db"))
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("arcp.db"), vec![0x42u8; 8192]).unwrap();
        let err = SqliteStore::open(dir.path())
            .err()
            .expect("corrupt file must fail");
        assert!(err.to_string().contains("arcp.db"), "{err}");
    }
}
