//! The durable side: sequenced envelopes, job records, sessions, idempotency keys
//! and outstanding credentials behind one small trait, with SQLite as the embedded
//! default and an in-memory store when asked for.
//!
//! Owns persistence only: it never decides what to send, when, or what to forget
//! (the session decides when a frame may go out, the runtime's sweep decides what
//! retention removes). Writers must never block the async runtime, so every write
//! method hands its write over and returns a [`Ticket`], its place in the store's one
//! write order; [`Store::settled`] says how far that order has been written. The
//! session sends a sequenced envelope only once its ticket has settled
//! (write-before-send), which lets the SQLite store commit many writes per
//! transaction (group commit over WAL) without the sender waiting for each.
//!
//! # Writing another store
//!
//! A store for a multi-node deployment (PostgreSQL, DESIGN.md "scale-out") implements
//! [`Store`] with these promises, which [`conformance`] tests for every store:
//! - Writes are applied in ticket order, and a write that has settled without an
//!   error survives a crash of the process (SQLite: a committed WAL transaction).
//! - [`Store::settled`] only grows; a write that failed still settles (so that
//!   nothing waits for ever), [`Store::outcome`] says it failed, and
//!   [`Store::health`] reports the failure until a later write or [`Store::probe`]
//!   succeeds.
//! - Reads see every write that has settled.
//! - Removals follow the retention rules stated on [`Store::remove_job`] and
//!   [`Store::remove_session`]: a job's history stays readable while the session it
//!   was sent in can still be resumed.

mod memory;
mod sqlite;
mod wal_vfs;

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

/// A place in a store's write order: every write gets the next one. Ticket 0 means
/// "already durable" (the in-memory store's writes).
pub type Ticket = u64;

/// One sequenced envelope as it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The session whose `event_seq` space it is in (shared with the session's
    /// outbox: an event costs no copy of it).
    pub session_id: std::sync::Arc<str>,
    /// Its `event_seq`.
    pub seq: u64,
    /// The job it concerns (shared with the job).
    pub job_id: Option<std::sync::Arc<str>>,
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
    /// RFC 3339 time it ended, once it has (terminal-job retention counts from it).
    pub ended_at: Option<String>,
    /// Sessions subscribed to it while it runs: if the runtime restarts before it
    /// ends, they are sent its terminal message too.
    pub subscribers: Vec<String>,
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
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store could not be opened, read or written; the text says which file and
    /// why (e.g. "database or disk is full").
    #[error("{0}")]
    Io(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Io(format!("sqlite: {e}"))
    }
}

/// Where the runtime keeps what it promised. See the module docs for the contract.
pub trait Store: Send + Sync + 'static {
    /// Records an envelope.
    fn append_event(&self, event: StoredEvent) -> Ticket;
    /// Records (inserts or replaces) a job.
    fn put_job(&self, job: JobRecord) -> Ticket;
    /// Records a job's terminal envelope and its final record as one write, so that
    /// both are kept or neither: a restart never finds a job recorded as ended
    /// without its terminal message, nor a terminal message for a job still
    /// recorded as running. (It also saves ending every job with a write of its
    /// own.)
    fn append_final_event(&self, event: StoredEvent, job: JobRecord) -> Ticket;
    /// Forgets a job (retention): its record, and its envelopes in every session that
    /// can no longer be resumed (has no [`SessionRecord`]). Envelopes in a resumable
    /// session stay until [`Self::remove_session`] removes that session.
    fn remove_job(&self, job_id: &str) -> Ticket;
    /// Records (inserts or replaces) a session.
    fn put_session(&self, session: SessionRecord) -> Ticket;
    /// Forgets a session past its resume window: its record, and its envelopes
    /// except those of jobs it submitted that are still recorded (their history).
    fn remove_session(&self, session_id: &str) -> Ticket;
    /// Records an idempotency key.
    fn put_idempotency(&self, record: IdempotencyRecord) -> Ticket;
    /// Forgets an idempotency key.
    fn remove_idempotency(&self, principal: &str, key: &str) -> Ticket;
    /// Records a minted credential until it is revoked.
    fn put_credential(&self, credential: OutstandingCredential) -> Ticket;
    /// Forgets a revoked credential.
    fn remove_credential(&self, id: &str) -> Ticket;

    /// The highest ticket whose write has been carried out: committed, or failed
    /// (then [`Self::health`] says so). Only grows.
    fn settled(&self) -> tokio::sync::watch::Receiver<Ticket>;
    /// Once `ticket` has settled: `Ok` if its write was committed, otherwise why it
    /// was not. (A store need only remember the outcome of recent writes.)
    fn outcome(&self, ticket: Ticket) -> Result<(), StoreError>;
    /// `Err` while the store cannot write (the last write failed: full disk, I/O
    /// error), with the reason.
    fn health(&self) -> Result<(), StoreError>;
    /// Tries a small write now and returns its result, updating [`Self::health`].
    /// Blocking.
    fn probe(&self) -> Result<(), StoreError>;
    /// Waits until every write handed over so far has settled; `Err` if the last
    /// of them failed. Blocking.
    fn flush(&self) -> Result<(), StoreError>;

    /// Envelopes of `session_id` with `seq > after`, in order.
    fn events_after(&self, session_id: &str, after: u64) -> Result<Vec<StoredEvent>, StoreError>;
    /// Envelopes of `job_id` in `session_id` with `seq > after`, in order.
    fn events_for_job(
        &self,
        session_id: &str,
        job_id: &str,
        after: u64,
    ) -> Result<Vec<StoredEvent>, StoreError>;
    /// The highest stored `event_seq` of a session (0 if none).
    fn last_seq(&self, session_id: &str) -> Result<u64, StoreError>;
    /// One job's record.
    fn job(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError>;
    /// Every job record, by job id.
    fn jobs(&self) -> Result<Vec<JobRecord>, StoreError>;
    /// Every recorded session.
    fn sessions(&self) -> Result<Vec<SessionRecord>, StoreError>;
    /// Every recorded idempotency key.
    fn idempotency_keys(&self) -> Result<Vec<IdempotencyRecord>, StoreError>;
    /// Every credential not yet revoked.
    fn outstanding_credentials(&self) -> Result<Vec<OutstandingCredential>, StoreError>;
    /// Bytes the stored data takes (what the byte cap of retention is compared with).
    fn stored_bytes(&self) -> Result<u64, StoreError>;
}

/// Waits (without blocking a thread) until `ticket` has settled in `store`, and
/// says whether its write was committed.
pub async fn committed(store: &dyn Store, ticket: Ticket) -> Result<(), StoreError> {
    until_settled(store, ticket).await;
    store.outcome(ticket)
}

/// Waits (without blocking a thread) until `ticket` has settled in `store`.
pub async fn until_settled(store: &dyn Store, ticket: Ticket) {
    if ticket == 0 {
        return;
    }
    let mut settled = store.settled();
    // An error means the store is gone (the runtime is shutting down): stop waiting.
    let _ = settled.wait_for(|s| *s >= ticket).await;
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
            ended_at: None,
            subscribers: Vec::new(),
            accepted: "{}".into(),
        }
    }

    fn event(session: &str, seq: u64, job: Option<&str>) -> StoredEvent {
        StoredEvent {
            session_id: session.into(),
            seq,
            job_id: job.map(Into::into),
            frame: format!("{session}/{seq}/{}", "x".repeat(2000)),
        }
    }

    fn session(id: &str) -> SessionRecord {
        SessionRecord {
            session_id: id.into(),
            principal: "alice".into(),
            features: "[]".into(),
            token_hash: "aa".into(),
        }
    }

    fn seqs(store: &dyn Store, session: &str) -> Vec<u64> {
        store
            .events_after(session, 0)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect()
    }

    pub fn tickets_grow_and_settle(store: &dyn Store) {
        let a = store.append_event(event("sess_t", 1, None));
        let b = store.put_job(job("job_t", "running"));
        assert!(a == 0 && b == 0 || b > a, "tickets follow the write order");
        store.flush().unwrap();
        assert!(*store.settled().borrow() >= b);
        assert!(store.health().is_ok());
        store.probe().unwrap();
    }

    pub fn removing_a_job_keeps_its_history_while_its_session_is_resumable(store: &dyn Store) {
        // sess_a submitted job_a and job_b; sess_w subscribed to job_a.
        store.put_session(session("sess_a"));
        store.put_session(session("sess_w"));
        for id in ["job_a", "job_b"] {
            store.put_job(JobRecord {
                session_id: "sess_a".into(),
                ..job(id, "success")
            });
        }
        store.append_event(event("sess_a", 1, Some("job_a")));
        store.append_event(event("sess_a", 2, None));
        store.append_event(event("sess_a", 3, Some("job_b")));
        store.append_event(event("sess_w", 1, Some("job_a")));
        store.append_event(event("sess_w", 2, None));
        store.flush().unwrap();
        let full = store.stored_bytes().unwrap();
        assert!(full > 8000, "{full} bytes for five 2 KB frames");

        // The job goes; both sessions can still be resumed: all envelopes stay.
        store.remove_job("job_a");
        store.flush().unwrap();
        assert_eq!(store.job("job_a").unwrap(), None);
        assert_eq!(seqs(store, "sess_a"), vec![1, 2, 3]);
        assert_eq!(seqs(store, "sess_w"), vec![1, 2]);

        // The watcher's session expires: all of it goes (it submitted nothing).
        store.remove_session("sess_w");
        store.flush().unwrap();
        assert_eq!(seqs(store, "sess_w"), Vec::<u64>::new());
        // The submitter's session expires: what remains is job_b's history.
        store.remove_session("sess_a");
        store.flush().unwrap();
        assert_eq!(seqs(store, "sess_a"), vec![3]);
        assert!(store.sessions().unwrap().is_empty());
        // Then job_b goes, and with it its history.
        store.remove_job("job_b");
        store.flush().unwrap();
        assert_eq!(seqs(store, "sess_a"), Vec::<u64>::new());
        assert!(store.jobs().unwrap().is_empty());
        let after = store.stored_bytes().unwrap();
        assert!(
            after < full,
            "{after} bytes after removing everything, {full} before"
        );
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

    /// Two sessions, two jobs and job-less events interleaved, a long run of one
    /// job, frames holding a newline and empty frames: every read gives exactly
    /// what was appended, from every cursor.
    pub fn events_come_back_exactly_from_every_cursor(store: &dyn Store) {
        let mut sent: Vec<StoredEvent> = Vec::new();
        let mut append = |session: &str, job: Option<&str>, frame: String| {
            let seq = sent.iter().filter(|e| &*e.session_id == session).count() as u64 + 1;
            let e = StoredEvent {
                session_id: session.into(),
                seq,
                job_id: job.map(Into::into),
                frame,
            };
            store.append_event(e.clone());
            sent.push(e);
        };
        for i in 0..300 {
            let session = if i % 3 == 2 { "sess_cy" } else { "sess_cx" };
            let job = match i % 5 {
                0..=2 if (100..200).contains(&i) => Some("job_cp"),
                _ if (100..200).contains(&i) => Some("job_cq"),
                _ => None,
            };
            let frame = match i % 7 {
                3 => format!("{{\"n\":{i}}}\nand a second line"),
                5 => String::new(),
                _ => format!("{{\"n\":{i}}}"),
            };
            append(session, job, frame);
            if i % 40 == 39 {
                store.flush().unwrap();
            }
        }
        for i in 0..400 {
            append("sess_cx", Some("job_cp"), format!("{{\"run\":{i}}}"));
        }
        store.flush().unwrap();
        for session in ["sess_cx", "sess_cy"] {
            let all: Vec<&StoredEvent> =
                sent.iter().filter(|e| &*e.session_id == session).collect();
            let last = all.len() as u64;
            assert_eq!(store.last_seq(session).unwrap(), last);
            for after in 0..=last + 1 {
                let want: Vec<StoredEvent> = all
                    .iter()
                    .filter(|e| e.seq > after)
                    .map(|e| (*e).clone())
                    .collect();
                assert_eq!(
                    store.events_after(session, after).unwrap(),
                    want,
                    "{session} after {after}"
                );
                for job in ["job_cp", "job_cq"] {
                    let want: Vec<StoredEvent> = want
                        .iter()
                        .filter(|e| e.job_id.as_deref() == Some(job))
                        .cloned()
                        .collect();
                    assert_eq!(
                        store.events_for_job(session, job, after).unwrap(),
                        want,
                        "{job} in {session} after {after}"
                    );
                }
            }
        }
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
        store.put_job(JobRecord {
            subscribers: vec!["sess_w1".into(), "sess_w2".into()],
            ..job("job_8", "running")
        });
        store.put_job(JobRecord {
            ended_at: Some("2026-01-01T00:01:00Z".into()),
            ..job("job_9", "success")
        });
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
        let stored = store.jobs().unwrap();
        let j9 = stored.iter().find(|j| j.job_id == "job_9").unwrap();
        assert_eq!(j9.ended_at.as_deref(), Some("2026-01-01T00:01:00Z"));
        let j8 = stored.iter().find(|j| j.job_id == "job_8").unwrap();
        assert_eq!(j8.subscribers, vec!["sess_w1", "sess_w2"]);
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

    pub fn a_final_event_and_its_record_are_kept_together(store: &dyn Store) {
        let sid: std::sync::Arc<str> = "sess_final".into();
        let job_id: std::sync::Arc<str> = "job_final".into();
        let event = |seq: u64, frame: &str| StoredEvent {
            session_id: sid.clone(),
            seq,
            job_id: Some(job_id.clone()),
            frame: frame.into(),
        };
        store.put_job(job("job_final", "running"));
        store.append_event(event(1, "{\"type\":\"job.event\"}"));
        let done = job("job_final", "success");
        let ticket = store.append_final_event(event(2, "{\"type\":\"job.result\"}"), done.clone());
        store.flush().unwrap();
        assert!(*store.settled().borrow() >= ticket);
        store.outcome(ticket).unwrap();
        assert_eq!(store.job("job_final").unwrap(), Some(done));
        let frames: Vec<(u64, String)> = store
            .events_for_job("sess_final", "job_final", 0)
            .unwrap()
            .into_iter()
            .map(|e| (e.seq, e.frame))
            .collect();
        assert_eq!(
            frames,
            vec![
                (1, "{\"type\":\"job.event\"}".to_owned()),
                (2, "{\"type\":\"job.result\"}".to_owned())
            ]
        );
        assert_eq!(store.last_seq("sess_final").unwrap(), 2);
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
