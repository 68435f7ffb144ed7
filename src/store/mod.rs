//! The durable side: sequenced envelopes and job records behind one small trait,
//! with SQLite as the embedded default and an in-memory store when asked for.
//!
//! Owns persistence only: it never decides what to send or when. Writers call
//! [`Store::append_event`] and [`Store::put_job`], which must not block the async
//! runtime; the SQLite store hands writes to one writer thread that commits them in
//! batches (group commit over WAL).

mod memory;
mod sqlite;

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

/// One sequenced envelope as it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The session whose `event_seq` space it is in.
    pub session_id: String,
    /// Its `event_seq`.
    pub seq: u64,
    /// The job it concerns.
    pub job_id: Option<String>,
    /// The exact text sent.
    pub frame: String,
}

/// A job's durable record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    /// Job id.
    pub job_id: String,
    /// Owning principal.
    pub principal: String,
    /// Submitting session.
    pub session_id: String,
    /// Resolved `name@version`.
    pub agent: String,
    /// Current status (`pending`, `running`, `success`, …).
    pub status: String,
    /// RFC 3339 submission time.
    pub submitted_at: String,
    /// The `job.accepted` payload, as JSON text.
    pub accepted: String,
}

/// What it takes to resume a session after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// `sess_…`.
    pub session_id: String,
    /// Its principal.
    pub principal: String,
    /// Negotiated features, as a JSON list.
    pub features: String,
    /// sha256 (hex) of the current resume token: the token itself is never stored.
    pub token_hash: String,
}

/// An idempotency key (spec §7.2), kept for its lifetime across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// The submitting principal.
    pub principal: String,
    /// The client's key.
    pub key: String,
    /// What was submitted, as JSON.
    pub fingerprint: String,
    /// The job it started.
    pub job_id: String,
    /// When, RFC 3339.
    pub created_at: String,
}

/// A provisioned credential not yet revoked (spec §9.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutstandingCredential {
    /// The credential's `id`.
    pub id: String,
    /// The job it was minted for.
    pub job_id: String,
    /// The provisioner's revocation handle.
    pub handle: String,
}

/// Errors from a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused an operation.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The store could not be opened or written.
    #[error("{0}")]
    Io(String),
}

/// Where sequenced envelopes and job records are kept.
pub trait Store: Send + Sync + 'static {
    /// Records an envelope. Must not block on disk.
    fn append_event(&self, event: StoredEvent);
    /// Records (inserts or replaces) a job. Must not block on disk.
    fn put_job(&self, job: JobRecord);
    /// Envelopes of `session_id` with `seq > after`, in order.
    fn events_after(&self, session_id: &str, after: u64) -> Result<Vec<StoredEvent>, StoreError>;
    /// Envelopes of `job_id` in `session_id` with `seq > after`, in order.
    fn events_for_job(
        &self,
        session_id: &str,
        job_id: &str,
        after: u64,
    ) -> Result<Vec<StoredEvent>, StoreError>;
    /// One job's record.
    fn job(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError>;
    /// Every job record.
    fn jobs(&self) -> Result<Vec<JobRecord>, StoreError>;
    /// The highest stored `event_seq` of a session (0 if none).
    fn last_seq(&self, session_id: &str) -> Result<u64, StoreError>;
    /// Records (inserts or replaces) a session.
    fn put_session(&self, session: SessionRecord);
    /// Every recorded session.
    fn sessions(&self) -> Result<Vec<SessionRecord>, StoreError>;
    /// Records an idempotency key.
    fn put_idempotency(&self, record: IdempotencyRecord);
    /// Forgets an expired idempotency key.
    fn remove_idempotency(&self, principal: &str, key: &str);
    /// Every recorded idempotency key.
    fn idempotency_keys(&self) -> Result<Vec<IdempotencyRecord>, StoreError>;
    /// Records a minted credential until it is revoked.
    fn put_credential(&self, credential: OutstandingCredential);
    /// Forgets a revoked credential.
    fn remove_credential(&self, id: &str);
    /// Every credential not yet revoked.
    fn outstanding_credentials(&self) -> Result<Vec<OutstandingCredential>, StoreError>;
    /// Waits until every write handed over so far is durable.
    fn flush(&self) -> Result<(), StoreError>;
}

#[cfg(test)]
pub(crate) mod conformance {
    //! Tests every store must pass.
    use super::*;

    pub fn job(id: &str, status: &str) -> JobRecord {
        JobRecord {
            job_id: id.into(),
            principal: "alice".into(),
            session_id: "sess_1".into(),
            agent: "echo@1.0.0".into(),
            status: status.into(),
            submitted_at: "2026-01-01T00:00:00Z".into(),
            accepted: "{}".into(),
        }
    }

    pub fn events_come_back_in_order_after_a_cursor(store: &dyn Store) {
        for seq in 1..=5 {
            store.append_event(StoredEvent {
                session_id: "sess_1".into(),
                seq,
                job_id: Some("job_1".into()),
                frame: format!("frame {seq}"),
            });
        }
        store.append_event(StoredEvent {
            session_id: "sess_2".into(),
            seq: 1,
            job_id: None,
            frame: "other".into(),
        });
        store.flush().unwrap();
        store.append_event(StoredEvent {
            session_id: "sess_1".into(),
            seq: 6,
            job_id: Some("job_2".into()),
            frame: "frame 6".into(),
        });
        store.flush().unwrap();
        let for_job = store.events_for_job("sess_1", "job_1", 3).unwrap();
        assert_eq!(
            for_job.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![4, 5]
        );
        let got = store.events_after("sess_1", 2).unwrap();
        assert_eq!(
            got.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![3, 4, 5, 6]
        );
        assert_eq!(got[0].frame, "frame 3");
    }

    pub fn sessions_jobs_and_seqs_are_recoverable(store: &dyn Store) {
        let s = SessionRecord {
            session_id: "sess_9".into(),
            principal: "alice".into(),
            features: "[\"ack\"]".into(),
            token_hash: "aa".into(),
        };
        store.put_session(s.clone());
        store.put_session(SessionRecord {
            token_hash: "bb".into(),
            ..s.clone()
        });
        store.put_job(job("job_9", "running"));
        for seq in [1, 2, 7] {
            store.append_event(StoredEvent {
                session_id: "sess_9".into(),
                seq,
                job_id: None,
                frame: String::new(),
            });
        }
        store.flush().unwrap();
        assert_eq!(
            store.sessions().unwrap(),
            vec![SessionRecord {
                token_hash: "bb".into(),
                ..s
            }]
        );
        assert!(store.jobs().unwrap().iter().any(|j| j.job_id == "job_9"));
        assert_eq!(store.last_seq("sess_9").unwrap(), 7);
        assert_eq!(store.last_seq("sess_none").unwrap(), 0);
    }

    pub fn idempotency_keys_are_kept_until_removed(store: &dyn Store) {
        let r = |key: &str| IdempotencyRecord {
            principal: "alice".into(),
            key: key.into(),
            fingerprint: "{}".into(),
            job_id: "job_1".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
        };
        store.put_idempotency(r("k1"));
        store.put_idempotency(r("k2"));
        store.remove_idempotency("alice", "k1");
        store.flush().unwrap();
        assert_eq!(store.idempotency_keys().unwrap(), vec![r("k2")]);
    }

    pub fn credentials_are_outstanding_until_removed(store: &dyn Store) {
        let c = |id: &str| OutstandingCredential {
            id: id.into(),
            job_id: "job_1".into(),
            handle: format!("h-{id}"),
        };
        store.put_credential(c("cred_1"));
        store.put_credential(c("cred_2"));
        store.remove_credential("cred_1");
        store.flush().unwrap();
        assert_eq!(store.outstanding_credentials().unwrap(), vec![c("cred_2")]);
    }

    pub fn a_job_record_is_replaced_by_its_latest_version(store: &dyn Store) {
        store.put_job(job("job_1", "running"));
        let done = job("job_1", "success");
        store.put_job(done.clone());
        store.flush().unwrap();
        assert_eq!(store.job("job_1").unwrap(), Some(done));
        assert_eq!(store.job("job_404").unwrap(), None);
    }
}
