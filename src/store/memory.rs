//! The in-memory store: for `--in-memory` and tests. Nothing survives a restart.

use super::{
    IdempotencyRecord, JobRecord, OutstandingCredential, SessionRecord, Store, StoreError,
    StoredEvent,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Keeps everything in process memory.
#[derive(Default)]
pub struct MemoryStore {
    events: Mutex<HashMap<String, BTreeMap<u64, StoredEvent>>>,
    jobs: Mutex<HashMap<String, JobRecord>>,
    credentials: Mutex<BTreeMap<String, OutstandingCredential>>,
    sessions: Mutex<BTreeMap<String, SessionRecord>>,
    keys: Mutex<BTreeMap<(String, String), IdempotencyRecord>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl Store for MemoryStore {
    fn append_event(&self, event: StoredEvent) {
        if let Ok(mut m) = self.events.lock() {
            m.entry(event.session_id.clone())
                .or_default()
                .insert(event.seq, event);
        }
    }

    fn put_job(&self, job: JobRecord) {
        if let Ok(mut m) = self.jobs.lock() {
            m.insert(job.job_id.clone(), job);
        }
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
        Ok(m.values().cloned().collect())
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

    fn put_session(&self, session: SessionRecord) {
        if let Ok(mut m) = self.sessions.lock() {
            m.insert(session.session_id.clone(), session);
        }
    }

    fn sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        let m = self
            .sessions
            .lock()
            .map_err(|_| StoreError::Io("store lock poisoned".into()))?;
        Ok(m.values().cloned().collect())
    }

    fn put_idempotency(&self, record: IdempotencyRecord) {
        if let Ok(mut m) = self.keys.lock() {
            m.insert((record.principal.clone(), record.key.clone()), record);
        }
    }

    fn remove_idempotency(&self, principal: &str, key: &str) {
        if let Ok(mut m) = self.keys.lock() {
            m.remove(&(principal.to_owned(), key.to_owned()));
        }
    }

    fn idempotency_keys(&self) -> Result<Vec<IdempotencyRecord>, StoreError> {
        let m = self
            .keys
            .lock()
            .map_err(|_| StoreError::Io("store lock poisoned".into()))?;
        Ok(m.values().cloned().collect())
    }

    fn put_credential(&self, credential: OutstandingCredential) {
        if let Ok(mut m) = self.credentials.lock() {
            m.insert(credential.id.clone(), credential);
        }
    }

    fn remove_credential(&self, id: &str) {
        if let Ok(mut m) = self.credentials.lock() {
            m.remove(id);
        }
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
}

#[cfg(test)]
mod tests {
    use super::super::conformance;
    use super::*;

    #[test]
    fn passes_the_store_conformance_tests() {
        conformance::events_come_back_in_order_after_a_cursor(&MemoryStore::new());
        conformance::a_job_record_is_replaced_by_its_latest_version(&MemoryStore::new());
        conformance::credentials_are_outstanding_until_removed(&MemoryStore::new());
        conformance::sessions_jobs_and_seqs_are_recoverable(&MemoryStore::new());
        conformance::idempotency_keys_are_kept_until_removed(&MemoryStore::new());
    }
}
