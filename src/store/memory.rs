//! The in-memory store: for `--in-memory` and tests. Nothing survives a restart.
//! Every write is applied at once, so every ticket is 0 ("already settled").

use super::{
    IdempotencyRecord, JobRecord, OutstandingCredential, SessionRecord, Store, StoreError,
    StoredEvent, Ticket,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Every session's envelopes, and where each job's are.
#[derive(Default)]
struct Logs {
    /// Session → its envelopes by `event_seq`.
    by_session: HashMap<Arc<str>, BTreeMap<u64, StoredEvent>>,
    /// Job → the sessions whose logs hold envelopes of it (its own, its
    /// subscribers'): forgetting a job looks at those logs only. Without it, the
    /// retention sweep went through every envelope for each job it forgot, holding
    /// the lock every session's sends take (6.2 ms a job among 100,000 envelopes,
    /// against 2.5 µs with it: `hot_paths`' retention bench).
    sessions_of_job: HashMap<Arc<str>, HashSet<Arc<str>>>,
}

/// Keeps everything in process memory.
#[derive(Default)]
pub struct MemoryStore {
    events: Mutex<Logs>,
    jobs: Mutex<HashMap<String, JobRecord>>,
    credentials: Mutex<BTreeMap<String, OutstandingCredential>>,
    sessions: Mutex<BTreeMap<String, SessionRecord>>,
    keys: Mutex<BTreeMap<(String, String), IdempotencyRecord>>,
    settled: tokio::sync::watch::Sender<Ticket>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl Store for MemoryStore {
    fn append_event(&self, event: StoredEvent) -> Ticket {
        if let Ok(mut logs) = self.events.lock() {
            if let Some(job) = &event.job_id {
                logs.sessions_of_job
                    .entry(job.clone())
                    .or_default()
                    .insert(event.session_id.clone());
            }
            logs.by_session
                .entry(event.session_id.clone())
                .or_default()
                .insert(event.seq, event);
        }
        0
    }

    fn put_job(&self, job: JobRecord) -> Ticket {
        if let Ok(mut m) = self.jobs.lock() {
            m.insert(job.job_id.clone(), job);
        }
        0
    }

    fn append_final_event(&self, event: StoredEvent, job: JobRecord) -> Ticket {
        // Nothing outlives the process here, so two steps are as good as one.
        self.append_event(event);
        self.put_job(job)
    }

    fn events_after(&self, session_id: &str, after: u64) -> Result<Vec<StoredEvent>, StoreError> {
        let m = self
            .events
            .lock()
            .map_err(|_| StoreError::Io("store lock poisoned".into()))?;
        Ok(m.by_session
            .get(session_id)
            .map(|s| {
                s.range(after.saturating_add(1)..)
                    .map(|(_, e)| e.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    fn events_for_job(
        &self,
        session_id: &str,
        job_id: &str,
        after: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        Ok(self
            .events_after(session_id, after)?
            .into_iter()
            .filter(|e| e.job_id.as_deref() == Some(job_id))
            .collect())
    }

    fn job(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        let m = self
            .jobs
            .lock()
            .map_err(|_| StoreError::Io("store lock poisoned".into()))?;
        Ok(m.get(job_id).cloned())
    }

    fn jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        let m = self
            .jobs
            .lock()
            .map_err(|_| StoreError::Io("store lock poisoned".into()))?;
        let mut jobs: Vec<JobRecord> = m.values().cloned().collect();
        jobs.sort_by(|a, b| a.job_id.cmp(&b.job_id));
        Ok(jobs)
    }

    fn last_seq(&self, session_id: &str) -> Result<u64, StoreError> {
        let m = self
            .events
            .lock()
            .map_err(|_| StoreError::Io("store lock poisoned".into()))?;
        Ok(m.by_session
            .get(session_id)
            .and_then(|s| s.keys().next_back().copied())
            .unwrap_or(0))
    }

    fn put_session(&self, session: SessionRecord) -> Ticket {
        if let Ok(mut m) = self.sessions.lock() {
            m.insert(session.session_id.clone(), session);
        }
        0
    }

    fn sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        let m = self
            .sessions
            .lock()
            .map_err(|_| StoreError::Io("store lock poisoned".into()))?;
        Ok(m.values().cloned().collect())
    }

    fn put_idempotency(&self, record: IdempotencyRecord) -> Ticket {
        if let Ok(mut m) = self.keys.lock() {
            m.insert((record.principal.clone(), record.key.clone()), record);
        }
        0
    }

    fn remove_idempotency(&self, principal: &str, key: &str) -> Ticket {
        if let Ok(mut m) = self.keys.lock() {
            m.remove(&(principal.to_owned(), key.to_owned()));
        }
        0
    }

    fn idempotency_keys(&self) -> Result<Vec<IdempotencyRecord>, StoreError> {
        let m = self
            .keys
            .lock()
            .map_err(|_| StoreError::Io("store lock poisoned".into()))?;
        Ok(m.values().cloned().collect())
    }

    fn put_credential(&self, credential: OutstandingCredential) -> Ticket {
        if let Ok(mut m) = self.credentials.lock() {
            m.insert(credential.id.clone(), credential);
        }
        0
    }

    fn remove_credential(&self, id: &str) -> Ticket {
        if let Ok(mut m) = self.credentials.lock() {
            m.remove(id);
        }
        0
    }

    fn outstanding_credentials(&self) -> Result<Vec<OutstandingCredential>, StoreError> {
        let m = self
            .credentials
            .lock()
            .map_err(|_| StoreError::Io("store lock poisoned".into()))?;
        Ok(m.values().cloned().collect())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn remove_job(&self, job_id: &str) -> Ticket {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.remove(job_id);
        }
        // Events, then sessions: nothing takes them the other way round.
        let (Ok(mut logs), Ok(resumable)) = (self.events.lock(), self.sessions.lock()) else {
            return 0;
        };
        let Logs {
            by_session,
            sessions_of_job,
        } = &mut *logs;
        let Some(holders) = sessions_of_job.get_mut(job_id) else {
            return 0;
        };
        // A resumable session keeps the job's envelopes (its replay needs them);
        // they go with the session (`remove_session`).
        holders.retain(|session| {
            if resumable.contains_key(&**session) {
                return true;
            }
            if let Some(log) = by_session.get_mut(session) {
                log.retain(|_, e| e.job_id.as_deref() != Some(job_id));
                if log.is_empty() {
                    by_session.remove(session);
                }
            }
            false
        });
        if holders.is_empty() {
            sessions_of_job.remove(job_id);
        }
        0
    }

    fn remove_session(&self, session_id: &str) -> Ticket {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.remove(session_id);
        }
        // Only this session's envelopes are looked at, each job they name looked up
        // by key: a session forgotten at its principal's cap (one per new session
        // there) used to go through every job and every session's log. Events
        // before jobs: the order `stored_bytes` holds them in.
        let (Ok(mut logs), Ok(jobs)) = (self.events.lock(), self.jobs.lock()) else {
            return 0;
        };
        let Logs {
            by_session,
            sessions_of_job,
        } = &mut *logs;
        if let Some(log) = by_session.get_mut(session_id) {
            // Its history stays: envelopes of jobs it submitted that are still recorded.
            log.retain(|_, e| {
                let Some(j) = &e.job_id else { return false };
                let keep = jobs
                    .get(&**j)
                    .is_some_and(|record| record.session_id == session_id);
                if !keep && let Some(holders) = sessions_of_job.get_mut(j) {
                    // All of a job's envelopes here go, or none: its index entry
                    // no longer names this session.
                    holders.remove(session_id);
                    if holders.is_empty() {
                        sessions_of_job.remove(j);
                    }
                }
                keep
            });
            if log.is_empty() {
                by_session.remove(session_id);
            }
        }
        0
    }

    fn settled(&self) -> tokio::sync::watch::Receiver<Ticket> {
        self.settled.subscribe()
    }

    fn outcome(&self, _ticket: Ticket) -> Result<(), StoreError> {
        Ok(())
    }

    fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn probe(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn stored_bytes(&self) -> Result<u64, StoreError> {
        let events = self
            .events
            .lock()
            .map_err(|_| StoreError::Io("store lock poisoned".into()))?;
        let frames: usize = events
            .by_session
            .values()
            .flat_map(|log| log.values())
            .map(|e| e.frame.len())
            .sum();
        let jobs: usize = self
            .jobs
            .lock()
            .map(|j| j.values().map(|r| r.accepted.len()).sum())
            .unwrap_or(0);
        Ok((frames + jobs) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance;
    use super::*;

    #[test]
    fn passes_the_store_conformance_tests() {
        conformance::events_come_back_exactly_from_every_cursor(&MemoryStore::new());
        conformance::events_come_back_in_order_after_a_cursor(&MemoryStore::new());
        conformance::a_job_record_is_replaced_by_its_latest_version(&MemoryStore::new());
        conformance::a_final_event_and_its_record_are_kept_together(&MemoryStore::new());
        conformance::credentials_are_outstanding_until_removed(&MemoryStore::new());
        conformance::sessions_jobs_and_seqs_are_recoverable(&MemoryStore::new());
        conformance::idempotency_keys_are_kept_until_removed(&MemoryStore::new());
        conformance::tickets_grow_and_settle(&MemoryStore::new());
        conformance::removing_a_job_keeps_its_history_while_its_session_is_resumable(
            &MemoryStore::new(),
        );
    }

    /// The sessions each job's index entry names: exactly those whose logs hold
    /// envelopes of it.
    fn index_agrees(store: &MemoryStore) {
        let logs = store.events.lock().unwrap();
        let mut seen: HashMap<Arc<str>, HashSet<Arc<str>>> = HashMap::new();
        for (session, log) in &logs.by_session {
            for e in log.values() {
                if let Some(j) = &e.job_id {
                    seen.entry(j.clone()).or_default().insert(session.clone());
                }
            }
        }
        assert_eq!(logs.sessions_of_job, seen);
    }

    /// Forgetting a job went through every envelope of every session (6.2 ms a
    /// job among 100,000 envelopes, under the lock every send takes; `cargo bench
    /// --bench hot_paths -- retention` measures it). It now looks only at the logs
    /// its index names, so the index must stay exact through appends, forgotten
    /// jobs (resumable holders or not) and forgotten sessions.
    #[test]
    fn the_job_index_names_exactly_the_logs_that_hold_a_jobs_envelopes() {
        let store = MemoryStore::new();
        let event = |session: &str, seq, job: Option<&str>| StoredEvent {
            session_id: session.into(),
            seq,
            job_id: job.map(Into::into),
            frame: format!("{session}/{seq}"),
        };
        let record = |job: &str, session: &str| JobRecord {
            session_id: session.into(),
            ..conformance::job(job, "success")
        };
        store.put_job(record("j1", "s1"));
        store.put_job(record("j2", "s2"));
        store.append_event(event("s1", 1, Some("j1")));
        store.append_event(event("s1", 2, None));
        store.append_event(event("s2", 1, Some("j2")));
        // s3 subscribed to both: its own copies, numbered in its space.
        store.append_event(event("s3", 1, Some("j1")));
        store.append_event(event("s3", 2, Some("j2")));
        index_agrees(&store);

        // s3 is resumable: its copies of j1 stay with it; s1's go.
        store.put_session(SessionRecord {
            session_id: "s3".into(),
            principal: "alice".into(),
            features: "[]".into(),
            token_hash: String::new(),
        });
        store.remove_job("j1");
        assert_eq!(store.events_after("s1", 0).unwrap().len(), 1);
        assert_eq!(store.events_for_job("s3", "j1", 0).unwrap().len(), 1);
        index_agrees(&store);

        // s3 forgotten: it held no job of its own, so all of it goes, and j2's
        // entry names s2 only.
        store.remove_session("s3");
        assert!(store.events_after("s3", 0).unwrap().is_empty());
        index_agrees(&store);
        store.remove_job("j2");
        assert!(store.events_after("s2", 0).unwrap().is_empty());
        index_agrees(&store);
        assert_eq!(
            store.events.lock().unwrap().by_session.len(),
            1,
            "s1's job-less envelope"
        );
    }
}
