//! The in-memory store: for `--in-memory` and tests. Nothing survives a restart.
//! Every write is applied at once, so every ticket is 0 ("already settled").

use super::{
    IdempotencyRecord, JobRecord, OutstandingCredential, SessionRecord, Store, StoreError,
    StoredEvent, Ticket,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Keeps everything in process memory.
#[derive(Default)]
pub struct MemoryStore {
    events: Mutex<HashMap<std::sync::Arc<str>, BTreeMap<u64, StoredEvent>>>,
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
        if let Ok(mut m) = self.events.lock() {
            m.entry(event.session_id.clone())
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
        Ok(m.get(session_id)
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
        Ok(m.get(session_id)
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
        // A set, not a list searched per session: retention forgets jobs one by one,
        // and each looked every session up in a list of every session.
        let resumable: std::collections::HashSet<String> = self
            .sessions
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        if let Ok(mut events) = self.events.lock() {
            events.retain(|session, log| {
                if !resumable.contains(&**session) {
                    log.retain(|_, e| e.job_id.as_deref() != Some(job_id));
                }
                !log.is_empty()
            });
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
        let (Ok(mut events), Ok(jobs)) = (self.events.lock(), self.jobs.lock()) else {
            return 0;
        };
        if let Some(log) = events.get_mut(session_id) {
            // Its history stays: envelopes of jobs it submitted that are still recorded.
            log.retain(|_, e| {
                e.job_id.as_ref().is_some_and(|j| {
                    jobs.get(&**j)
                        .is_some_and(|record| record.session_id == session_id)
                })
            });
            if log.is_empty() {
                events.remove(session_id);
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
}
