//! The embedded SQLite store (`<data>/arcp.db`, WAL mode).
//!
//! Writes go through a channel to one writer thread, which drains everything queued
//! and commits it in one transaction: many writes per commit under load, one per
//! write when idle (group commit). After each commit it publishes the highest ticket
//! of the batch, which is what lets a session send a frame as soon as its write is
//! durable without waiting for each write in turn. Reads use their own connection,
//! which WAL lets run beside the writer.
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

enum Write {
    Event(StoredEvent),
    Job(JobRecord),
    JobGone(String),
    Credential(OutstandingCredential),
    Session(SessionRecord),
    SessionGone(String),
    Key(IdempotencyRecord),
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
    settled: watch::Sender<Ticket>,
    /// The last write's failure, until a later write succeeds.
    failure: Arc<Mutex<Option<String>>>,
    /// The most recent failed batches: (first ticket, last ticket, why).
    failed: Arc<Mutex<VecDeque<(Ticket, Ticket, String)>>>,
}

/// How many failed batches [`SqliteStore::outcome`] remembers.
const FAILED_BATCHES_KEPT: usize = 1024;

/// The schema version this build writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    CREATE TABLE IF NOT EXISTS events (
        session_id TEXT NOT NULL,
        seq        INTEGER NOT NULL,
        job_id     TEXT,
        frame      TEXT NOT NULL,
        PRIMARY KEY (session_id, seq)
    ) WITHOUT ROWID;
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

/// Brings a file written by an older build up to [`SCHEMA_VERSION`].
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
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
    if version < SCHEMA_VERSION {
        conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (or creates) `<dir>/arcp.db`. A corrupt or unwritable file is an error
    /// that names it.
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Io(format!("cannot create data folder {}: {e}", dir.display()))
        })?;
        let path = dir.join("arcp.db");
        let named = |e: rusqlite::Error| StoreError::Io(format!("store {}: {e}", path.display()));
        let writer = Connection::open(&path).map_err(named)?;
        writer.execute_batch(SCHEMA).map_err(named)?;
        migrate(&writer).map_err(named)?;
        // Refuse a file that cannot be written now rather than at the first job.
        writer
            .execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('opened_at', ?1)",
                params![chrono::Utc::now().to_rfc3339()],
            )
            .map_err(named)?;
        // Checkpoints copy the log into the database file and sync it: milliseconds
        // that would stall every session's frames if the writer did them inline, so
        // a thread of their own does them (PASSIVE: never blocking the writer).
        // Once the log has been restarted, its file is cut back to this size.
        writer
            .execute_batch("PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864;")
            .map_err(named)?;
        let checkpointer = Connection::open(&path).map_err(named)?;
        checkpointer
            .busy_timeout(std::time::Duration::from_secs(2))
            .map_err(named)?;
        let wal = dir.join("arcp.db-wal");
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = stopping.clone();
        std::thread::Builder::new()
            .name("arcp-store-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, &wal, stop))
            .map_err(|e| StoreError::Io(format!("starting the store checkpointer: {e}")))?;
        let reader = Connection::open(&path).map_err(named)?;
        let (tx, rx) = mpsc::channel();
        let settled = watch::channel(0).0;
        let failure = Arc::new(Mutex::new(None));
        let failed = Arc::new(Mutex::new(VecDeque::new()));
        let outcomes = Outcomes {
            settled: settled.clone(),
            failure: failure.clone(),
            failed: failed.clone(),
        };
        std::thread::Builder::new()
            .name("arcp-store".into())
            .spawn(move || writer_loop(writer, rx, outcomes))
            .map_err(|e| StoreError::Io(format!("starting the store writer: {e}")))?;
        Ok(SqliteStore {
            stopping,
            path,
            queue: Mutex::new(Queue { next: 1, tx }),
            reader: Mutex::new(reader),
            settled,
            failure,
            failed,
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

/// Copies the write-ahead log into the database every 100 ms, beside the writer.
///
/// A PASSIVE checkpoint never waits for the writer, but under a steady stream of
/// writes it never catches up with it either, and the log only grows; past
/// [`WAL_RESTART_BYTES`] a RESTART checkpoint waits for the writer's current
/// transaction once so that the next one starts the log over.
fn checkpoint_loop(conn: Connection, wal: &Path, stopping: Arc<std::sync::atomic::AtomicBool>) {
    while !stopping.load(std::sync::atomic::Ordering::Acquire) {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let large = std::fs::metadata(wal).is_ok_and(|m| m.len() > WAL_RESTART_BYTES);
        let mode = if large { "RESTART" } else { "PASSIVE" };
        let sql = format!("PRAGMA wal_checkpoint({mode})");
        if let Err(e) = conn.query_row(&sql, [], |_| Ok(())) {
            tracing::warn!(error = %e, "store checkpoint failed; will retry");
        }
    }
}

/// Where the writer publishes how its batches went.
struct Outcomes {
    settled: watch::Sender<Ticket>,
    failure: Arc<Mutex<Option<String>>>,
    failed: Arc<Mutex<VecDeque<(Ticket, Ticket, String)>>>,
}

fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<(Ticket, Write)>, out: Outcomes) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
            if batch.len() >= 4096 {
                break;
            }
        }
        let first = batch.first().map(|(t, _)| *t).unwrap_or(0);
        let last = batch.last().map(|(t, _)| *t).unwrap_or(0);
        // Flush waiters are set apart first, so that they hear the outcome even when
        // a write fails part-way (they were dropped with it, and heard "the writer
        // has stopped" before the failure was set).
        let mut waiters = Vec::new();
        let mut writes = Vec::with_capacity(batch.len());
        for (ticket, w) in batch {
            match w {
                Write::Flush(waiter) => waiters.push(waiter),
                w => writes.push((ticket, w)),
            }
        }
        if writes.is_empty() {
            // Only waiters: nothing was written, so nothing is learnt about the
            // file. They get the state as it stands; a failure stays a failure
            // (an empty commit succeeds even on a full disk, and used to clear it).
            let current = out.failure.lock().ok().and_then(|f| f.clone());
            out.settled.send_replace(last);
            for w in waiters {
                let _ = w.send(current.clone().map_or(Ok(()), Err));
            }
            continue;
        }
        let result = commit(&mut conn, writes);
        let outcome = result.as_ref().map(|_| ()).map_err(|e| e.to_string());
        if let (Err(why), Ok(mut failed)) = (&outcome, out.failed.lock()) {
            if failed.len() == FAILED_BATCHES_KEPT {
                failed.pop_front();
            }
            failed.push_back((first, last, why.clone()));
        }
        if let Ok(mut f) = out.failure.lock() {
            match &outcome {
                Ok(()) => {
                    if f.take().is_some() {
                        tracing::info!("the store can be written again");
                    }
                }
                Err(e) => {
                    if f.is_none() {
                        tracing::error!(error = %e, "store write failed");
                    }
                    *f = Some(e.clone());
                }
            }
        }
        out.settled.send_replace(last);
        for w in waiters {
            let _ = w.send(outcome.clone());
        }
    }
}

/// Applies one batch of writes (flush waiters set apart by the caller) in one
/// transaction.
fn commit(conn: &mut Connection, batch: Vec<(Ticket, Write)>) -> rusqlite::Result<()> {
    let txn = conn.transaction()?;
    {
        let mut ev = txn.prepare_cached(
            "INSERT OR REPLACE INTO events (session_id, seq, job_id, frame) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut job = txn.prepare_cached(
            "INSERT OR REPLACE INTO jobs (job_id, principal, session_id, agent, status, submitted_at, accepted, ended_at, subscribers)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for (_, w) in batch {
            match w {
                Write::Event(e) => {
                    ev.execute(params![e.session_id, e.seq as i64, e.job_id, e.frame])?;
                }
                Write::Job(j) => {
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
                    ])?;
                }
                Write::JobGone(id) => {
                    txn.execute("DELETE FROM jobs WHERE job_id = ?1", params![id])?;
                    txn.execute(
                        "DELETE FROM events WHERE job_id = ?1
                         AND session_id NOT IN (SELECT session_id FROM sessions)",
                        params![id],
                    )?;
                }
                Write::Credential(c) => {
                    txn.execute(
                        "INSERT OR REPLACE INTO credentials (id, job_id, handle) VALUES (?1, ?2, ?3)",
                        params![c.id, c.job_id, c.handle],
                    )?;
                }
                Write::Session(r) => {
                    txn.execute(
                        "INSERT OR REPLACE INTO sessions (session_id, principal, features, token_hash) VALUES (?1, ?2, ?3, ?4)",
                        params![r.session_id, r.principal, r.features, r.token_hash],
                    )?;
                }
                Write::SessionGone(id) => {
                    txn.execute("DELETE FROM sessions WHERE session_id = ?1", params![id])?;
                    txn.execute(
                        "DELETE FROM events WHERE session_id = ?1
                         AND (job_id IS NULL OR job_id NOT IN (SELECT job_id FROM jobs WHERE session_id = ?1))",
                        params![id],
                    )?;
                }
                Write::Key(k) => {
                    txn.execute(
                        "INSERT OR REPLACE INTO idempotency (principal, key, fingerprint, job_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![k.principal, k.key, k.fingerprint, k.job_id, k.created_at],
                    )?;
                }
                Write::KeyGone(principal, key) => {
                    txn.execute(
                        "DELETE FROM idempotency WHERE principal = ?1 AND key = ?2",
                        params![principal, key],
                    )?;
                }
                Write::Revoked(id) => {
                    txn.execute("DELETE FROM credentials WHERE id = ?1", params![id])?;
                }
                Write::Probe => {
                    txn.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES ('probe', ?1)",
                        params![chrono::Utc::now().to_rfc3339()],
                    )?;
                }
                Write::Flush(_) => {} // set apart by the caller
            }
        }
    }
    txn.commit()
}

/// A row of `SELECT session_id, seq, job_id, frame FROM events`.
fn stored_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        session_id: r.get(0)?,
        seq: r.get::<_, i64>(1)? as u64,
        job_id: r.get(2)?,
        frame: r.get(3)?,
    })
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
        self.send(Write::Job(job))
    }

    fn remove_job(&self, job_id: &str) -> Ticket {
        self.send(Write::JobGone(job_id.to_owned()))
    }

    fn remove_session(&self, session_id: &str) -> Ticket {
        self.send(Write::SessionGone(session_id.to_owned()))
    }

    fn settled(&self) -> watch::Receiver<Ticket> {
        self.settled.subscribe()
    }

    fn outcome(&self, ticket: Ticket) -> Result<(), StoreError> {
        let failed = self
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
        match self.failure.lock().map(|f| f.clone()) {
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
        let mut stmt = conn.prepare_cached(
            "SELECT session_id, seq, job_id, frame FROM events WHERE session_id = ?1 AND seq > ?2 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![session_id, after as i64], stored_event)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn events_for_job(
        &self,
        session_id: &str,
        job_id: &str,
        after: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(
            "SELECT session_id, seq, job_id, frame FROM events WHERE job_id = ?1 AND session_id = ?2 AND seq > ?3 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![job_id, session_id, after as i64], stored_event)?;
        Ok(rows.collect::<Result<_, _>>()?)
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
        let seq: Option<i64> = conn.query_row(
            "SELECT MAX(seq) FROM events WHERE session_id = ?1",
            params![session_id],
            |r| r.get(0),
        )?;
        Ok(seq.unwrap_or(0) as u64)
    }

    fn put_session(&self, session: SessionRecord) -> Ticket {
        self.send(Write::Session(session))
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
        self.send(Write::Key(record))
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
        self.send(Write::Credential(credential))
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
        conformance::credentials_are_outstanding_until_removed(&store);
        conformance::sessions_jobs_and_seqs_are_recoverable(&store);
        conformance::idempotency_keys_are_kept_until_removed(&store);
        conformance::tickets_grow_and_settle(&store);
        let dir = tempfile::tempdir().unwrap();
        conformance::removing_a_job_keeps_its_history_while_its_session_is_resumable(
            &SqliteStore::open(dir.path()).unwrap(),
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
