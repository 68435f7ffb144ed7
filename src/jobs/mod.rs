//! Jobs: records and lifecycle (spec §7, §8).
//!
//! Owns what happens between `job.submit` and the terminal message: resolving the
//! agent, building the effective lease, idempotency, starting the job's sandbox run,
//! cancellation, `max_runtime_sec` and lease expiry, and the one terminal message
//! (`job.result` or `job.error`) after which no event of the job may follow. Events
//! and terminals go to the submitting session's [`Outbox`]; this module never touches
//! a connection or the wire format beyond building payloads.

mod delegate;
mod signal;
mod terminal;
mod tools;

use crate::config::Config;
use crate::credentials::Provisioner;
use crate::error::{ArcpError, ErrorCode};
use crate::lease::Budget;
use crate::lease::{self, Lease};
use crate::plugins::{Plugin, Registry};
use crate::protocol::{
    AcceptedPayload, CancelPayload, CancelledPayload, Envelope, EventBody, EventPayload,
    JobListEntry, ListJobsPayload, Outbound, SubmitPayload, SubscribePayload, SubscribedPayload,
    UnsubscribePayload, ids, now_rfc3339,
};
use crate::sandbox::MatcherCache;
use crate::sandbox::{
    Authority, JobInfo, JobSink, JobSpec, ModelGateway, NetClient, RecordGate, Sandbox,
};
use crate::session::Outbox;
use crate::store::{JobRecord, OutstandingCredential, Store};
use futures_util::future::OptionFuture;
use serde_json::Value;
use signal::Signal;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument as _;

/// Longest cancel reason echoed in `job.cancelled`, in bytes.
const MAX_CANCEL_REASON_BYTES: usize = 1024;
/// The largest event body: the frame limit less room for the envelope.
const EVENT_BODY_LIMIT: usize = crate::protocol::MAX_OUTBOUND_FRAME - (64 << 10);

/// Job states as the wire names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Accepted, not started.
    Pending,
    /// Running in its sandbox.
    Running,
    /// Ended with a result.
    Success,
    /// Ended with an error.
    Error,
    /// Cancelled by its submitter.
    Cancelled,
    /// Ran past `max_runtime_sec`.
    TimedOut,
}

impl JobStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Success => "success",
            JobStatus::Error => "error",
            JobStatus::Cancelled => "cancelled",
            JobStatus::TimedOut => "timed_out",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<JobStatus> {
        [
            JobStatus::Pending,
            JobStatus::Running,
            JobStatus::Success,
            JobStatus::Error,
            JobStatus::Cancelled,
            JobStatus::TimedOut,
        ]
        .into_iter()
        .find(|j| j.as_str() == s)
    }

    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobStatus::Pending | JobStatus::Running)
    }
}

/// One job.
pub struct Job {
    /// `job_…`, shared with every message of the job (not copied per event).
    pub id: Arc<str>,
    /// The principal that submitted it.
    pub principal: String,
    /// `name@version`.
    pub agent: String,
    /// W3C trace id, shared like `id`.
    pub trace_id: Arc<str>,
    /// Effective lease.
    pub lease: Lease,
    /// The accepted payload as first sent.
    pub accepted: AcceptedPayload,
    /// The submitting session's outbox.
    pub outbox: Arc<Outbox>,
    status: Mutex<JobStatus>,
    last_event_seq: Mutex<Option<u64>>,
    /// Outboxes of sessions subscribed to this job (spec §7.6).
    subscribers: tokio::sync::Mutex<Vec<Arc<Outbox>>>,
    /// How it ended, once it has (a delegating parent waits on this).
    outcome: Signal<Option<terminal::Outcome>>,
    /// Jobs delegated by this one.
    children: Mutex<Vec<String>>,
    /// The lease's expiry, inherited by children.
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Provisioned credentials (id, revocation handle), revoked when it ends.
    credentials: Mutex<Vec<(String, String)>>,
    /// When it ended, once it has (retention counts from it).
    ended_at: Mutex<Option<chrono::DateTime<chrono::Utc>>>,
    /// Why the store stopped recording its events, when it did (it is then stopped).
    store_failure: Mutex<Option<String>>,
    /// When it was accepted (its duration is measured from here).
    started: std::time::Instant,
    /// Its principal's running-job slot, given back when it ends.
    slot: Mutex<Option<RunningSlot>>,
    /// The budget's current remaining amounts (the sandbox updates it).
    budget_view: Arc<std::sync::Mutex<BTreeMap<String, rust_decimal::Decimal>>>,
    /// Set to stop it (its run waits on this beside the guest).
    cancel: Signal<bool>,
    /// Its `job.accepted` while held back (see [`Job::hold_acceptance`]).
    held_acceptance: Mutex<Option<Outbound>>,
    /// The store ticket of its record's first write once queued (`None` before;
    /// an in-memory store's tickets are all 0): what its authority-bearing calls
    /// wait for ([`record_gate`]).
    record_queued: Signal<Option<crate::store::Ticket>>,
}

impl Job {
    /// A pending job; its id, agent and trace id are the accepted payload's.
    fn new(
        principal: &str,
        lease: Lease,
        accepted: AcceptedPayload,
        outbox: Arc<Outbox>,
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Arc<Job> {
        Arc::new(Job {
            id: accepted.job_id.as_str().into(),
            principal: principal.to_owned(),
            agent: accepted.agent.clone(),
            trace_id: accepted.trace_id.as_str().into(),
            lease,
            accepted,
            outbox,
            status: Mutex::new(JobStatus::Pending),
            last_event_seq: Mutex::new(None),
            subscribers: tokio::sync::Mutex::new(Vec::new()),
            outcome: Signal::new(None),
            children: Mutex::new(Vec::new()),
            expires_at,
            budget_view: Default::default(),
            credentials: Mutex::new(Vec::new()),
            ended_at: Mutex::new(None),
            store_failure: Mutex::new(None),
            slot: Mutex::new(None),
            started: std::time::Instant::now(),
            cancel: Signal::new(false),
            held_acceptance: Mutex::new(None),
            record_queued: Signal::new(None),
        })
    }

    /// The budget as of now, in the accepted form (`{"USD": "USD:4.10"}`): the
    /// accepted counters, with every metered currency's remaining amount.
    pub fn current_budget(&self) -> Option<serde_json::Map<String, Value>> {
        let mut budget = self.accepted.budget.clone()?;
        if let Ok(view) = self.budget_view.lock() {
            budget.extend(lease::budget_to_wire(&view));
        }
        Some(budget)
    }

    /// Current status.
    pub fn status(&self) -> JobStatus {
        self.status.lock().map(|s| *s).unwrap_or(JobStatus::Error)
    }

    fn set_status(&self, status: JobStatus) {
        if let Ok(mut s) = self.status.lock() {
            *s = status;
        }
    }

    /// When it ended, if it has.
    pub fn ended_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.ended_at.lock().ok().and_then(|e| *e)
    }

    fn note_seq(&self, seq: u64) {
        if let Ok(mut s) = self.last_event_seq.lock() {
            *s = Some(seq);
        }
    }

    fn list_entry(&self) -> JobListEntry {
        JobListEntry {
            job_id: self.id.to_string(),
            agent: self.agent.clone(),
            status: self.status().as_str().into(),
            lease: self.accepted.lease.clone(),
            parent_job_id: self.accepted.parent_job_id.clone(),
            submitted_at: self.accepted.accepted_at.clone(),
            created_at: self.accepted.accepted_at.clone(),
            trace_id: self.trace_id.to_string(),
            last_event_seq: self.last_event_seq.lock().ok().and_then(|s| *s),
        }
    }

    /// The accepted payload as stored: without provisioned credentials, whose
    /// secrets must never reach the disk (only their revocation handles are kept).
    fn accepted_to_keep(&self) -> AcceptedPayload {
        AcceptedPayload {
            credentials: Vec::new(),
            ..self.accepted.clone()
        }
    }

    /// Its durable record, naming no subscriber.
    fn record(&self) -> JobRecord {
        self.record_with(&[])
    }

    /// Its durable record naming `subscribers` (those a restart must tell if the job
    /// is still running then).
    fn record_with(&self, subscribers: &[Arc<Outbox>]) -> JobRecord {
        JobRecord {
            job_id: self.id.to_string(),
            principal: self.principal.clone(),
            session_id: self.outbox.session_id().to_owned(),
            agent: self.agent.clone(),
            status: self.status().as_str().into(),
            submitted_at: self.accepted.accepted_at.clone(),
            ended_at: self.ended_at().map(|at| at.to_rfc3339()),
            subscribers: subscribers
                .iter()
                .map(|s| s.session_id().to_owned())
                .collect(),
            accepted: serde_json::to_string(&self.accepted_to_keep()).unwrap_or_default(),
        }
    }

    /// Holds `accepted`, this job's `job.accepted`, and its record back until the
    /// job first waits (for anything: a host call's I/O, an epoch slice's turn, a
    /// pool instance), first sends a message, or ends. A job that ends in its first
    /// slice, as most short jobs do, is then recorded, acknowledged and answered
    /// with one store write and one commit, and both frames leave together
    /// (`Outbox::send_accepted_and_final`): half the transactions and a frame
    /// write fewer per echo, whose p99 fell from 0.55-0.72 to 0.37-0.52 ms
    /// (BENCHMARKS.md, 2026-12-06 11:00). A slice ends at the latest at the epoch
    /// deadline, so the hold is bounded by `limits.epoch_tick_ms`.
    fn hold_acceptance(&self, accepted: Outbound) {
        if let Ok(mut held) = self.held_acceptance.lock() {
            *held = Some(accepted);
        }
    }

    fn take_held_acceptance(&self) -> Option<Outbound> {
        self.held_acceptance.lock().ok().and_then(|mut h| h.take())
    }

    /// Sends this job's held `job.accepted` (taken by the caller), after queueing
    /// its record (naming `subscribers`, whose lock the caller holds).
    async fn acknowledge_locked(&self, accepted: Outbound, subscribers: &[Arc<Outbox>]) {
        let ticket = self
            .outbox
            .send_acknowledging(accepted, self.record_with(subscribers))
            .await;
        self.record_queued.replace(Some(ticket));
    }

    /// Sends this job's held `job.accepted`, if it still is.
    async fn acknowledge(&self) {
        let subscribers = self.subscribers.lock().await;
        if let Some(accepted) = self.take_held_acceptance() {
            self.acknowledge_locked(accepted, &subscribers).await;
        }
    }

    /// Sends one sequenced message of this job through its session.
    ///
    /// The subscriber list is locked for the whole send, so a subscription taken at
    /// the same moment sees each event exactly once: in its history or live.
    async fn send_event(&self, payload: EventPayload) -> u64 {
        self.send_ending(Outbound::event(payload), None).await
    }

    /// Sends this job's terminal message: the job is `status` from here on, and its
    /// final record is stored in one write with the message
    /// ([`crate::store::Store::append_final_event`]).
    async fn send_terminal(
        &self,
        kind: &'static str,
        payload: impl serde::Serialize,
        status: JobStatus,
    ) -> u64 {
        self.send_ending(Outbound::new(kind, payload), Some(status))
            .await
    }

    ///
    /// What happens once per job or only with subscribers is boxed: an event's
    /// future is boxed and moved to the heap whole, and it is as large as the largest
    /// of the futures it may hold (3.2 KiB before, most of it never used by events).
    async fn send_ending(&self, msg: Outbound, ending: Option<JobStatus>) -> u64 {
        let msg = msg.for_job(&self.id, &self.trace_id);
        let mut subscribers = self.subscribers.lock().await;
        subscribers.retain(|s| !s.is_retired());
        if ending.is_none()
            && let Some(accepted) = self.take_held_acceptance()
        {
            // The job's `job.accepted` goes before its first event.
            Box::pin(self.acknowledge_locked(accepted, &subscribers)).await;
        }
        if !subscribers.is_empty() {
            Box::pin(async {
                for sub in subscribers.iter() {
                    // Each subscriber gets its own copy, numbered in its own
                    // session's space.
                    sub.send(msg.copy()).await;
                }
            })
            .await;
        }
        let seq = match ending {
            None => self.outbox.send(msg).await,
            Some(status) => {
                // Under the subscribers' lock: a subscribe that records the job as
                // running is then ordered before this final record, never after it.
                if let Ok(mut at) = self.ended_at.lock() {
                    *at = Some(chrono::Utc::now());
                }
                self.set_status(status);
                let record = self.record();
                match self.take_held_acceptance() {
                    Some(accepted) => {
                        Box::pin(self.outbox.send_accepted_and_final(accepted, msg, record)).await
                    }
                    None => Box::pin(self.outbox.send_final(msg, record)).await,
                }
            }
        };
        drop(subscribers);
        if seq > 0 {
            self.note_seq(seq);
        }
        seq
    }

    /// Sends one `job.event`, first waiting while an acknowledging client is too far
    /// behind (and telling it why with a `back_pressure` status event).
    async fn event(&self, kind: Cow<'static, str>, body: EventBody) {
        if let Some(lag) = self.outbox.overrun() {
            let status = EventPayload {
                kind: "status".into(),
                ts: now_rfc3339(),
                body: EventBody::Json(crate::protocol::raw_payload(&serde_json::json!({
                    "phase": "back_pressure",
                    "message": format!("the client is {lag} events behind its acknowledgements; this job waits"),
                }))),
            };
            self.send_event(status).await;
            self.outbox.wait_for_room().await;
        }
        // Bodies carry plugin- and client-controlled text (tool arguments, paths,
        // tool results): no frame may pass the 1 MiB clients enforce. A body's size
        // is bounded without reading it, so only one that may be over the limit is
        // measured, and only one that is over it is cut.
        let mut body = body;
        if body.max_json_len() > EVENT_BODY_LIMIT {
            let mut tree = body.to_value();
            if crate::protocol::fit_within(&mut tree, EVENT_BODY_LIMIT) {
                body = EventBody::Json(crate::protocol::raw_payload(&tree));
                tracing::warn!(job_id = %self.id, %kind, "an event body over the frame limit was cut");
            }
        }
        let payload = EventPayload {
            kind,
            ts: now_rfc3339(),
            body,
        };
        self.send_event(payload).await;
    }
}

/// A job's effective lease: its request restricted to the plugin's allowed
/// namespaces and within its sidecar ceiling (spec §9: request ∩ ceiling).
fn effective_lease(plugin: &Plugin, requested: &Lease) -> Result<Lease, ArcpError> {
    let lease = requested.restricted_to(plugin.manifest.allowed_namespaces.as_deref());
    match plugin.manifest.ceiling_lease()? {
        Some(ceiling) => lease.within(&ceiling),
        None => Ok(lease),
    }
}

/// The gate a job's authority-bearing calls wait at: its idempotency key (write
/// ticket `key`, 0 for none) and its record committed, the record once queued
/// (`record_queued`, which a held acknowledgement sets when it goes: the call's
/// wait is what releases it, see [`Job::hold_acceptance`]).
fn record_gate(store: Arc<dyn Store>, key: crate::store::Ticket, job: Arc<Job>) -> RecordGate {
    use futures_util::FutureExt as _;
    async move {
        let record = job.record_queued.wait_for(|queued| *queued).await;
        for ticket in [key, record] {
            crate::store::committed(store.as_ref(), ticket)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
    .boxed()
    .shared()
}

/// Routes a sandbox's events to the job's session, and stops the job when the store
/// can no longer record them.
struct EventRoute {
    job: Arc<Job>,
    store: Arc<dyn Store>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl JobSink for EventRoute {
    fn emit(
        &self,
        kind: Cow<'static, str>,
        body: EventBody,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            self.job.event(kind, body).await;
            self.metrics.events.inc();
            if let Err(e) = self.store.health()
                && let Ok(mut failure) = self.job.store_failure.lock()
                && failure.is_none()
            {
                *failure = Some(e.to_string());
                self.job.cancel.replace(true);
            }
        })
    }

    fn usage(&self, usage: crate::sandbox::Usage) {
        let agent = crate::metrics::AgentLabels {
            agent: self.job.agent.clone(),
        };
        self.metrics
            .job_memory
            .get_or_create(&agent)
            .observe(usage.memory_bytes as f64);
        if let Some(fuel) = usage.fuel {
            self.metrics.fuel.get_or_create(&agent).inc_by(fuel);
        }
    }
}

/// The fingerprint of a submit for idempotency (spec §7.2): what must be identical
/// for a replay.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Fingerprint {
    agent: String,
    input: Value,
    lease_request: Value,
    lease_constraints: Value,
    max_runtime_sec: Option<u64>,
}

struct IdempotencyEntry {
    fingerprint: Fingerprint,
    job_id: String,
    /// Wall-clock time, so that a key's lifetime runs on across restarts.
    at: chrono::DateTime<chrono::Utc>,
}

impl IdempotencyEntry {
    fn expired(&self, ttl: Duration) -> bool {
        (chrono::Utc::now() - self.at)
            .to_std()
            .is_ok_and(|age| age > ttl)
    }
}

/// Jobs pending or running: per principal (`limits.max_running_jobs_per_principal`),
/// and in all, which every job's end reads (`JobManager::few_running`): kept beside
/// the map rather than summed from it under its lock.
#[derive(Default)]
struct Running {
    by_principal: Mutex<HashMap<String, usize>>,
    total: AtomicUsize,
}

type RunningCounts = Arc<Running>;

/// One principal's claim on one running-job slot, given back when dropped (when
/// the job ends, or when a submit that took it starts no job).
struct RunningSlot {
    counts: RunningCounts,
    principal: String,
}

impl Drop for RunningSlot {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.counts.by_principal.lock()
            && let Some(n) = counts.get_mut(&self.principal)
        {
            *n = n.saturating_sub(1);
            self.counts.total.fetch_sub(1, Ordering::Relaxed);
            if *n == 0 {
                counts.remove(&self.principal);
            }
        }
    }
}

/// All jobs of this runtime.
pub struct JobManager {
    running: RunningCounts,
    metrics: Arc<crate::metrics::Metrics>,
    config: Arc<Config>,
    sandbox: Arc<Sandbox>,
    registry: Arc<Registry>,
    store: Arc<dyn Store>,
    net: Arc<NetClient>,
    models: Option<Arc<ModelGateway>>,
    credentials: Option<Arc<dyn Provisioner>>,
    jobs: Mutex<HashMap<String, Arc<Job>>>,
    /// (principal, key) → what was submitted, the job it started, and when.
    idempotency: Mutex<HashMap<(String, String), IdempotencyEntry>>,
    /// Compiled lease matchers, shared by the jobs that ask for the same lease.
    matchers: MatcherCache,
}

impl JobManager {
    /// A manager over the given parts.
    pub fn new(
        config: Arc<Config>,
        sandbox: Arc<Sandbox>,
        registry: Arc<Registry>,
        store: Arc<dyn Store>,
        net: Arc<NetClient>,
        models: Option<Arc<ModelGateway>>,
        credentials: Option<Arc<dyn Provisioner>>,
    ) -> Self {
        JobManager {
            running: Arc::default(),
            metrics: Arc::new(crate::metrics::Metrics::new(
                sandbox.instantiation_seconds(),
                sandbox.spare_metrics(),
            )),
            config,
            sandbox,
            registry,
            store,
            net,
            models,
            credentials,
            jobs: Mutex::new(HashMap::new()),
            idempotency: Mutex::new(HashMap::new()),
            matchers: MatcherCache::default(),
        }
    }

    /// The runtime's metrics.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// How many jobs are held, by (agent, state).
    pub fn counts(&self) -> HashMap<(String, &'static str), i64> {
        let mut counts = HashMap::new();
        if let Ok(jobs) = self.jobs.lock() {
            for job in jobs.values() {
                *counts
                    .entry((job.agent.clone(), job.status().as_str()))
                    .or_insert(0) += 1;
            }
        }
        counts
    }

    fn register(&self, job: &Arc<Job>) {
        if let Ok(mut m) = self.jobs.lock() {
            m.insert(job.id.to_string(), job.clone());
        }
    }

    /// Forgets idempotency keys older than their lifetime. Returns how many went.
    pub fn sweep_idempotency(&self) -> usize {
        let ttl = Duration::from_secs(self.config.idempotency_ttl_sec);
        let Ok(mut map) = self.idempotency.lock() else {
            return 0;
        };
        let expired: Vec<(String, String)> = map
            .iter()
            .filter(|(_, e)| e.expired(ttl))
            .map(|(slot, _)| slot.clone())
            .collect();
        for (principal, key) in &expired {
            map.remove(&(principal.clone(), key.clone()));
            self.store.remove_idempotency(principal, key);
        }
        expired.len()
    }

    /// Finished jobs that ended before `cutoff`, the one that ended first first.
    pub fn finished_before(&self, cutoff: chrono::DateTime<chrono::Utc>) -> Vec<String> {
        self.finished_where(|j| j.ended_at().is_some_and(|at| at < cutoff))
    }

    /// Finished jobs whose submitting session can no longer be resumed (forgetting
    /// them frees their history), the one that ended first first.
    pub fn finished_unreplayable(&self) -> Vec<String> {
        self.finished_where(|j| j.outbox.is_retired())
    }

    fn finished_where(&self, keep: impl Fn(&Job) -> bool) -> Vec<String> {
        let Ok(jobs) = self.jobs.lock() else {
            return Vec::new();
        };
        let mut ended: Vec<(chrono::DateTime<chrono::Utc>, String)> = jobs
            .values()
            .filter(|j| j.status().is_terminal() && keep(j))
            .filter_map(|j| j.ended_at().map(|at| (at, j.id.to_string())))
            .collect();
        ended.sort();
        ended.into_iter().map(|(_, id)| id).collect()
    }

    /// Forgets finished jobs (retention): from the job table, from the store, and
    /// their idempotency keys (a resubmit with such a key starts a new job).
    pub fn forget(&self, job_ids: &[String]) {
        if let Ok(mut jobs) = self.jobs.lock() {
            for id in job_ids {
                jobs.remove(id);
            }
        }
        if let Ok(mut keys) = self.idempotency.lock() {
            keys.retain(|(principal, key), entry| {
                let gone = job_ids.contains(&entry.job_id);
                if gone {
                    self.store.remove_idempotency(principal, key);
                }
                !gone
            });
        }
        for id in job_ids {
            self.store.remove_job(id);
        }
    }

    /// Forgets the jobs that ended longer than `retention.jobs_sec` ago. Returns how
    /// many went.
    pub fn sweep_finished(&self) -> usize {
        let keep = chrono::Duration::seconds(
            i64::try_from(self.config.retention.jobs_sec).unwrap_or(i64::MAX),
        );
        let Some(cutoff) = chrono::Utc::now().checked_sub_signed(keep) else {
            return 0;
        };
        let expired = self.finished_before(cutoff);
        if !expired.is_empty() {
            tracing::info!(
                jobs = expired.len(),
                "retention: removing finished jobs past their retention"
            );
            self.forget(&expired);
        }
        expired.len()
    }

    /// Restores idempotency keys recorded before a restart (expired ones are
    /// dropped by the next sweep).
    pub fn recover_idempotency(&self, records: Vec<crate::store::IdempotencyRecord>) {
        let Ok(mut map) = self.idempotency.lock() else {
            return;
        };
        for r in records {
            let (Ok(fingerprint), Ok(at)) = (
                serde_json::from_str::<Fingerprint>(&r.fingerprint),
                chrono::DateTime::parse_from_rfc3339(&r.created_at),
            ) else {
                tracing::warn!(key = %r.key, "unreadable stored idempotency key skipped");
                continue;
            };
            map.insert(
                (r.principal, r.key),
                IdempotencyEntry {
                    fingerprint,
                    job_id: r.job_id,
                    at: at.with_timezone(&chrono::Utc),
                },
            );
        }
    }

    /// Restores a job recorded before a restart: listed, subscribable with history,
    /// and, if it was still running when the runtime stopped, ended now with
    /// `job.error INTERNAL_ERROR` (retryable) in its session's event log and in those
    /// of `subscribers` (the sessions subscribed to it at the crash), where a
    /// resuming submitter and its subscribers find it.
    pub async fn recover_job(
        &self,
        record: JobRecord,
        outbox: Arc<Outbox>,
        subscribers: Vec<Arc<Outbox>>,
    ) -> Result<(), ArcpError> {
        let accepted: AcceptedPayload = serde_json::from_str(&record.accepted).map_err(|e| {
            ArcpError::internal(format!(
                "job {}: stored accepted payload: {e}",
                record.job_id
            ))
        })?;
        let lease = Lease::from_request(Some(&accepted.lease))?;
        let expires_at = accepted
            .lease_constraints
            .as_ref()
            .and_then(|c| c.expires_at.as_deref())
            .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
            .map(|at| at.with_timezone(&chrono::Utc));
        let job = Job::new(&record.principal, lease, accepted, outbox, expires_at);
        self.register(&job);
        match JobStatus::parse(&record.status) {
            Some(status) if status.is_terminal() => {
                // A record from before `ended_at` was kept counts from the restart.
                let ended = record
                    .ended_at
                    .as_deref()
                    .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
                    .map_or_else(chrono::Utc::now, |at| at.with_timezone(&chrono::Utc));
                if let Ok(mut at) = job.ended_at.lock() {
                    *at = Some(ended);
                }
                job.set_status(status);
            }
            _ => {
                tracing::warn!(job_id = %job.id, "job was running when the runtime stopped; ending it");
                *job.subscribers.lock().await = subscribers;
                self.conclude(job, terminal::Ending::Restarted, None).await;
            }
        }
        Ok(())
    }

    /// Revokes one credential; on success it leaves the store, on failure it stays
    /// outstanding and [`Self::revoke_outstanding`] tries again.
    async fn revoke(&self, id: String, handle: String) -> bool {
        let Some(provisioner) = &self.credentials else {
            return false;
        };
        match provisioner.revoke(&handle).await {
            Ok(()) => {
                self.store.remove_credential(&id);
                tracing::info!(credential = %id, "credential revoked");
                true
            }
            Err(e) => {
                tracing::warn!(credential = %id, error = %e, "credential revocation failed; will retry");
                false
            }
        }
    }

    /// Revokes every outstanding credential whose job is not running here (at
    /// start-up: all of them, since a restart ended every job; later: those whose
    /// revocation failed). Returns how many were revoked.
    pub async fn revoke_outstanding(&self) -> usize {
        if self.credentials.is_none() {
            return 0;
        }
        let outstanding = match self.store.outstanding_credentials() {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "cannot read outstanding credentials");
                return 0;
            }
        };
        let mut revoked = 0;
        for c in outstanding {
            if self
                .get(&c.job_id)
                .is_some_and(|j| !j.status().is_terminal())
            {
                continue;
            }
            if self.revoke(c.id, c.handle).await {
                revoked += 1;
            }
        }
        revoked
    }

    /// Whether no more jobs hold a running slot (this one included) than the
    /// runtime has worker threads.
    fn few_running(&self) -> bool {
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        self.running.total.load(Ordering::Relaxed) <= workers
    }

    /// Takes one of `principal`'s running-job slots, or refuses with a retryable
    /// `PERMISSION_DENIED` naming the limit.
    fn reserve_slot(&self, principal: &str) -> Result<RunningSlot, ArcpError> {
        let cap = self.config.limits.max_running_jobs_per_principal;
        let mut counts = self
            .running
            .by_principal
            .lock()
            .map_err(|_| ArcpError::internal("job counts unavailable"))?;
        let n = counts.entry(principal.to_owned()).or_insert(0);
        if *n >= cap {
            return Err(ArcpError::new(
                ErrorCode::PermissionDenied,
                format!("principal {principal:?} already has {cap} jobs pending or running, the most this runtime allows (limits.max_running_jobs_per_principal); wait for one to end"),
            )
            .with_retryable(true)
            .with_detail("limit", "max_running_jobs_per_principal")
            .with_detail("max", cap as u64));
        }
        *n += 1;
        self.running.total.fetch_add(1, Ordering::Relaxed);
        Ok(RunningSlot {
            counts: self.running.clone(),
            principal: principal.to_owned(),
        })
    }

    /// `Ok` when the store can record a new job; otherwise a retryable
    /// `INTERNAL_ERROR` naming why. While the store is failing, every call tries a
    /// small write, so that accepting jobs resumes as soon as writing works again.
    async fn writable(&self) -> Result<(), ArcpError> {
        if self.store.health().is_ok() {
            return Ok(());
        }
        let store = self.store.clone();
        let probe = tokio::task::spawn_blocking(move || store.probe())
            .await
            .map_err(|e| ArcpError::internal(format!("store probe: {e}")))?;
        probe.map_err(|e| {
            ArcpError::internal(format!(
                "the runtime cannot record new jobs, so none is accepted: {e}"
            ))
        })
    }

    /// A job by id, whoever owns it.
    pub fn get(&self, job_id: &str) -> Option<Arc<Job>> {
        self.jobs.lock().ok().and_then(|m| m.get(job_id).cloned())
    }

    /// Handles `job.submit`: validates, sends `job.accepted` and starts the job.
    /// Errors are pre-acceptance failures, answered by the session as `session.error`.
    ///
    /// With `with_credentials` (the session negotiated `provisioned_credentials`)
    /// and a provisioner configured, a credential is minted for the job and shown in
    /// its `job.accepted`.
    pub async fn submit(
        self: &Arc<Self>,
        principal: &str,
        outbox: &Arc<Outbox>,
        env: &Envelope,
        with_credentials: bool,
    ) -> Result<(), ArcpError> {
        let req: SubmitPayload = env.payload_as()?;
        self.writable().await?;
        let running_slot = self.reserve_slot(principal)?;
        let plugin = self.registry.resolve_when_loaded(&req.agent).await?;
        let trace_id = match env.trace_id.as_deref() {
            None => ids::trace_id(),
            Some(raw) => ids::normalise_trace_id(raw).ok_or_else(|| {
                ArcpError::invalid(format!(
                    "trace_id {raw:?} must be 32 lowercase hex digits (not all zero) or a W3C traceparent"
                ))
            })?,
        };
        let requested = Lease::from_request(req.lease_request.as_ref())?;
        let lease = effective_lease(&plugin, &requested)?;
        let expires_at = match req
            .lease_constraints
            .as_ref()
            .and_then(|c| c.expires_at.as_deref())
        {
            Some(raw) => Some(lease::parse_expires_at(raw, chrono::Utc::now())?),
            None => None,
        };
        let max_runtime = self.max_runtime(&plugin, req.max_runtime_sec)?;
        if let Some(key) = &req.idempotency_key
            && (key.is_empty() || key.len() > 256)
        {
            return Err(ArcpError::invalid(
                "idempotency_key must be 1 to 256 characters",
            ));
        }
        if let Some(parent) = &req.parent_job_id {
            match self.get(parent) {
                Some(p) if p.principal == principal => {}
                _ => {
                    return Err(ArcpError::new(
                        ErrorCode::JobNotFound,
                        format!("parent job {parent:?} not found"),
                    ));
                }
            }
        }

        let fingerprint = Fingerprint {
            agent: plugin.reference(),
            input: req.input.clone().unwrap_or(Value::Null),
            lease_request: Value::Object(req.lease_request.clone().unwrap_or_default()),
            lease_constraints: serde_json::to_value(&req.lease_constraints).unwrap_or(Value::Null),
            max_runtime_sec: req.max_runtime_sec,
        };
        let job_id = ids::prefixed("job");
        let minted = match (&self.credentials, with_credentials) {
            (Some(provisioner), true) => {
                let expires = req
                    .lease_constraints
                    .as_ref()
                    .and_then(|c| c.expires_at.clone());
                let minted = tokio::time::timeout(
                    Duration::from_secs(10),
                    provisioner.mint(&job_id, &lease, expires.as_deref()),
                )
                .await
                .map_err(|_| ArcpError::internal("provisioning the job's credential timed out"))?
                .map_err(|e| {
                    ArcpError::internal(format!("could not provision the job's credential: {e}"))
                })?;
                self.store.put_credential(OutstandingCredential {
                    id: minted.id.clone(),
                    job_id: job_id.clone(),
                    handle: minted.handle.clone(),
                });
                Some(minted)
            }
            _ => None,
        };
        let budgets = lease.budgets();
        let accepted = AcceptedPayload {
            job_id: job_id.clone(),
            agent: plugin.reference(),
            accepted_at: now_rfc3339(),
            lease: lease.to_wire(),
            lease_constraints: req
                .lease_constraints
                .clone()
                .filter(|c| c.expires_at.is_some()),
            budget: (!budgets.is_empty()).then(|| lease::budget_to_wire(&budgets)),
            trace_id: trace_id.clone(),
            request_id: env.id.clone(),
            parent_job_id: req.parent_job_id.clone(),
            credentials: minted.iter().map(|m| m.wire.clone()).collect(),
        };
        let job = Job::new(
            principal,
            lease,
            accepted.clone(),
            outbox.clone(),
            expires_at,
        );
        if let (Some(m), Ok(mut held)) = (&minted, job.credentials.lock()) {
            held.push((m.id.clone(), m.handle.clone()));
        }
        if let Ok(mut held) = job.slot.lock() {
            *held = Some(running_slot);
        }
        // Register the job and claim its idempotency key under one lock: a concurrent
        // submit with the same key then finds the job and replays instead of starting
        // a second one.
        let mut key_written = 0;
        let replay_of = match &req.idempotency_key {
            None => {
                self.register(&job);
                None
            }
            Some(key) => {
                let mut map = self
                    .idempotency
                    .lock()
                    .map_err(|_| ArcpError::internal("idempotency table unavailable"))?;
                let slot = (principal.to_owned(), key.clone());
                let ttl = Duration::from_secs(self.config.idempotency_ttl_sec);
                // A key whose job is unknown was claimed by a submit that a crash
                // cut short before its job was recorded (so it was never
                // acknowledged): it is free again, like an expired one.
                if map
                    .get(&slot)
                    .is_some_and(|e| e.expired(ttl) || self.get(&e.job_id).is_none())
                {
                    map.remove(&slot);
                    self.store.remove_idempotency(principal, key);
                }
                match map.get(&slot).map(|e| (&e.fingerprint, &e.job_id)) {
                    Some((existing, existing_job)) if *existing != fingerprint => {
                        return Err(ArcpError::new(
                            ErrorCode::DuplicateKey,
                            format!("idempotency_key {key:?} was used for job {existing_job} with other parameters"),
                        )
                        .with_detail("job_id", existing_job.as_str()));
                    }
                    Some((_, existing_job)) => Some(existing_job.clone()),
                    None => {
                        let at = chrono::Utc::now();
                        key_written = self.store.put_idempotency(crate::store::IdempotencyRecord {
                            principal: principal.to_owned(),
                            key: key.clone(),
                            fingerprint: serde_json::to_string(&fingerprint).unwrap_or_default(),
                            job_id: job_id.clone(),
                            created_at: at.to_rfc3339(),
                        });
                        map.insert(
                            slot,
                            IdempotencyEntry {
                                fingerprint,
                                job_id: job_id.clone(),
                                at,
                            },
                        );
                        self.register(&job);
                        None
                    }
                }
            }
        };
        if let Some(existing_job) = replay_of {
            // A replay: the credential minted for it is not needed.
            if let Some(m) = minted {
                self.revoke(m.id, m.handle).await;
            }
            return self.replay_accepted(&existing_job, outbox, env).await;
        }
        // The job's record and key are written before its `job.accepted`, which (like
        // every sequenced frame) leaves only once committed. The job starts at once,
        // with both held back until it first waits, sends or ends (see
        // `Job::hold_acceptance`); it makes no authority-bearing call until its key
        // and record are committed, and ends with INTERNAL_ERROR if they could not
        // be (see `record_gate`).
        let msg = Outbound::new("job.accepted", &accepted).for_job(&job.id, &job.trace_id);
        // Counted and marked running before its `job.accepted` is queued: a client
        // that reads it and then scrapes metrics or lists jobs sees the job as it is
        // (the job starts as soon as it is launched, its record being committed).
        let agent = crate::metrics::AgentLabels {
            agent: job.agent.clone(),
        };
        self.metrics.submitted.get_or_create(&agent).inc();
        job.set_status(JobStatus::Running);
        // Unsequenced, so not stored itself: it waits for the job's record instead.
        job.hold_acceptance(msg);
        let gate = record_gate(self.store.clone(), key_written, job.clone());
        self.launch(
            job,
            plugin,
            req.input.unwrap_or(Value::Null),
            max_runtime,
            Some(gate),
        )?;
        Ok(())
    }

    /// Starts a registered job: builds its authority from its lease and the
    /// runtime's capabilities, and spawns its run. Its authority-bearing calls wait
    /// at `recorded` when given ([`record_gate`]).
    fn launch(
        self: &Arc<Self>,
        job: Arc<Job>,
        plugin: Arc<Plugin>,
        input: Value,
        max_runtime: Duration,
        recorded: Option<RecordGate>,
    ) -> Result<(), ArcpError> {
        let input_json = serde_json::to_string(&input).unwrap_or_else(|_| "null".into());
        let memory_bytes = plugin
            .manifest
            .memory_ceiling(self.config.job_memory_bytes());
        let left = |at: chrono::DateTime<chrono::Utc>| {
            (at - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO)
        };
        let budget = Budget::new(&job.lease);
        if let Ok(mut view) = job.budget_view.lock() {
            view.clone_from(budget.remaining());
        }
        let authority = Authority {
            matcher: self.matchers.get(&job.lease)?,
            budget,
            budget_view: job.budget_view.clone(),
            expires_at: job
                .expires_at
                .map(|at| std::time::Instant::now() + left(at)),
            workspace: self.config.workspace.clone(),
            tools: Some(Arc::new(tools::PluginTools {
                registry: self.registry.clone(),
                sandbox: self.sandbox.clone(),
                tools: self.config.tools.clone(),
                memory_bytes: self.config.job_memory_bytes(),
                job_id: job.id.to_string(),
                trace_id: job.trace_id.to_string(),
            })),
            net: Some(self.net.clone()),
            models: self.models.clone(),
            lease: job.lease.clone(),
            delegator: Some(Arc::new(delegate::ChildJobs {
                manager: Arc::downgrade(self),
                parent: job.clone(),
            })),
            expired_attempt: Default::default(),
            recorded,
        };
        let spec = JobSpec {
            info: JobInfo {
                job_id: job.id.to_string(),
                agent: plugin.reference(),
                trace_id: Some(job.trace_id.to_string()),
                parent_job_id: job.accepted.parent_job_id.clone(),
            },
            input_json,
            memory_bytes,
            authority,
            fuel: job.lease.fuel(),
            waits_for_instance: job.accepted.parent_job_id.is_none(),
        };
        let manager = self.clone();
        // Past `expires_at` every authority-bearing call fails (and the job then ends
        // LEASE_EXPIRED); after the grace the runtime ends the job itself (spec §9.5).
        let grace = Duration::from_secs(self.config.lease_expiry_grace_sec);
        let lease_deadline = job
            .expires_at
            .map(|at| tokio::time::Instant::now() + left(at) + grace);
        // Every log line of the job carries its id and the ARCP trace id.
        let span = crate::telemetry::job_span(&job.id, &job.agent, &job.trace_id);
        tokio::spawn(
            manager
                .drive(job, plugin, spec, max_runtime, lease_deadline)
                .instrument(span),
        );
        Ok(())
    }

    fn max_runtime(&self, plugin: &Plugin, requested: Option<u64>) -> Result<Duration, ArcpError> {
        let cap = plugin
            .manifest
            .max_runtime_sec
            .unwrap_or(u64::MAX)
            .min(self.config.limits.max_runtime_sec);
        match requested {
            Some(0) => Err(ArcpError::invalid("max_runtime_sec must be at least 1")),
            Some(s) if s > self.config.limits.max_runtime_sec => Err(ArcpError::invalid(format!(
                "max_runtime_sec {s} is over this runtime's limit of {}",
                self.config.limits.max_runtime_sec
            ))),
            Some(s) => Ok(Duration::from_secs(s.min(cap))),
            None => Ok(Duration::from_secs(cap)),
        }
    }

    async fn replay_accepted(
        &self,
        job_id: &str,
        outbox: &Arc<Outbox>,
        env: &Envelope,
    ) -> Result<(), ArcpError> {
        let job = self.get(job_id).ok_or_else(|| {
            ArcpError::internal(format!("job {job_id} of this idempotency key is gone"))
        })?;
        // The job's own acknowledgement (and record) first, if still held back.
        job.acknowledge().await;
        let mut accepted = job.accepted.clone();
        accepted.request_id = env.id.clone();
        let msg = Outbound::new("job.accepted", &accepted).for_job(&job.id, &job.trace_id);
        outbox.send(msg).await;
        Ok(())
    }

    /// Runs a job to its one terminal message.
    async fn drive(
        self: Arc<Self>,
        job: Arc<Job>,
        plugin: Arc<Plugin>,
        spec: JobSpec,
        max_runtime: Duration,
        lease_deadline: Option<tokio::time::Instant>,
    ) {
        // The job starts while its record is being committed; nothing it does
        // reaches outside the sandbox before that (see `Authority::recorded`), and
        // if the record cannot be stored the job ends there.
        let gate = spec.authority.recorded.clone();
        let record_failed = {
            let gate = gate.clone();
            async move {
                if let Some(Err(why)) = OptionFuture::from(gate).await {
                    return why;
                }
                std::future::pending().await
            }
        };
        job.set_status(JobStatus::Running);
        let sink: Arc<dyn JobSink> = Arc::new(EventRoute {
            job: job.clone(),
            store: self.store.clone(),
            metrics: self.metrics.clone(),
        });
        // A fuel budget runs the plugin's fuel-metered variant (compiled on first use).
        let fuel_agent = match spec.fuel {
            None => None,
            Some(_) => {
                let (registry, p) = (self.registry.clone(), plugin.clone());
                match tokio::task::spawn_blocking(move || registry.fuel_variant(&p)).await {
                    Ok(Ok(agent)) => Some(agent),
                    Ok(Err(why)) => {
                        let outcome = terminal::Ending::Ran(
                            crate::sandbox::RunOutcome::InstantiationFailed(why),
                        );
                        return self.conclude(job, outcome, None).await;
                    }
                    Err(e) => {
                        let outcome = terminal::Ending::Ran(
                            crate::sandbox::RunOutcome::InstantiationFailed(e.to_string()),
                        );
                        return self.conclude(job, outcome, None).await;
                    }
                }
            }
        };
        let agent = fuel_agent.as_ref().unwrap_or(&plugin.agent);
        let mut finished = None;
        let ending = {
            // The run and its acknowledgement are boxed when they start, as
            // `conclude` boxes itself, rather than held inline: a task is as large
            // as its largest state, so a job waiting for its first turn (thousands
            // at once in a burst) carried all three untouched, 7.1 KiB that a burst
            // page-faults in. Boxed, it is under 2 KiB, and the boxes of the few
            // jobs running at a time are freed and reused (BENCHMARKS.md).
            let mut run = Box::pin(self.sandbox.run_holding(agent, spec, sink));
            // The first slice runs before the job is acknowledged (see
            // `Job::hold_acceptance`); a job that ended in it is acknowledged with
            // its terminal message, one that waits is acknowledged now. The run goes
            // on meanwhile: a slice that stopped in the middle of sending holds the
            // lock the acknowledgement takes. A cancel, an expiry or the runtime
            // limit is heard once the acknowledgement is on its way, so that no
            // terminal message overtakes it.
            let mut ended = match futures_util::poll!(run.as_mut()) {
                std::task::Poll::Ready(ended) => Some(ended),
                std::task::Poll::Pending => None,
            };
            if ended.is_none() {
                let mut acknowledged = Box::pin(job.acknowledge());
                loop {
                    tokio::select! {
                        () = &mut acknowledged => break,
                        end = run.as_mut(), if ended.is_none() => ended = Some(end),
                    }
                }
            }
            let lease_expiry = async {
                match lease_deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                (outcome, spent) = async { match ended {
                    Some(ended) => ended,
                    None => run.await,
                } } => {
                    finished = spent;
                    terminal::Ending::Ran(outcome)
                }
                () = job.cancel.wait_for(|cancelled| cancelled.then_some(())) => {
                    // A delegated child inherits its parent's expiry, and a parent
                    // that ends cancels its children: when both expire at once the
                    // child is cancelled by a parent whose lease expired. Its own
                    // lease has expired too, and that is what it reports.
                    let expired = lease_deadline.is_some_and(|at| tokio::time::Instant::now() >= at);
                    match job.store_failure.lock().ok().and_then(|f| f.clone()) {
                        Some(why) => terminal::Ending::StoreFailed(why),
                        None if expired => terminal::Ending::LeaseExpired,
                        None => terminal::Ending::Cancelled,
                    }
                }
                _ = tokio::time::sleep(max_runtime) => terminal::Ending::TimedOut(max_runtime),
                _ = lease_expiry => terminal::Ending::LeaseExpired,
                why = record_failed => terminal::Ending::StoreFailed(why),
            }
            // The run future is dropped here, and with it the Store of a run that did
            // not finish (a finished one is in `finished`): nothing of the guest runs
            // after this point.
        };
        // A job whose record is known to have failed ends INTERNAL_ERROR however it
        // ran. One that ended before its record's commit settled (a quick job that
        // needed no authority) is not held back for it: its terminal message is
        // stored after the record, and waiting would add a commit to every round
        // trip; if that commit fails (a full disk), the job's result was real but
        // the store refuses the next submits (SECURITY.md, D1).
        let known = gate.and_then(futures_util::FutureExt::now_or_never);
        let ending = match (ending, known) {
            (terminal::Ending::StoreFailed(why), _) | (_, Some(Err(why))) => {
                terminal::Ending::StoreFailed(why)
            }
            (ending, _) => ending,
        };
        self.conclude(job, ending, finished).await;
    }

    /// Sends a job's terminal message and records how it ended. A job that ran to
    /// its end hands over its `finished` instance, released once the terminal
    /// message is on its way rather than before: resetting it would delay the
    /// result, and nothing of the guest runs any more.
    ///
    /// Boxed: held inline, its 3.4 KiB state would make every job's task that
    /// much larger from its spawn on (see `drive`).
    fn conclude(
        &self,
        job: Arc<Job>,
        ending: terminal::Ending,
        finished: Option<crate::sandbox::Finished>,
    ) -> futures_util::future::BoxFuture<'_, ()> {
        Box::pin(self.conclude_inline(job, ending, finished))
    }

    /// [`JobManager::conclude`]'s work, unboxed.
    async fn conclude_inline(
        &self,
        job: Arc<Job>,
        ending: terminal::Ending,
        finished: Option<crate::sandbox::Finished>,
    ) {
        // Sent with the job's final record (`Job::send_terminal`).
        let outcome = terminal::finish(&job, ending).await;
        let few_running = finished.is_some() && self.few_running();
        if few_running {
            // The terminal frame is in the connection's queue: let its writer send
            // it before this task resets the instance and makes the spare
            // (BENCHMARKS.md, 2026-12-05 22:11 and 2026-12-07 08:00).
            // Only when few jobs run: under load, waiting keeps the instance from
            // the jobs queued for one (1,000 sessions × 10 jobs lost 18 % of their
            // jobs/s to a yield here).
            job.outbox.frames_taken().await;
        }
        let refill = finished.and_then(crate::sandbox::Finished::release);
        let status = outcome.status;
        job.outcome.replace(Some(outcome));
        let labels = crate::metrics::JobLabels {
            agent: job.agent.clone(),
            state: status.as_str().into(),
        };
        self.metrics.ended.get_or_create(&labels).inc();
        let agent = crate::metrics::AgentLabels {
            agent: job.agent.clone(),
        };
        self.metrics
            .duration
            .get_or_create(&agent)
            .observe(job.started.elapsed().as_secs_f64());
        // Its principal may start another job.
        drop(job.slot.lock().ok().and_then(|mut s| s.take()));
        // Credentials die with the job, however it ended (spec §9.8.2).
        let held = job
            .credentials
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default();
        for (id, handle) in held {
            self.revoke(id, handle).await;
        }
        // Ending a parent ends its children (spec §10).
        let children = job.children.lock().map(|c| c.clone()).unwrap_or_default();
        for child in children.iter().filter_map(|id| self.get(id)) {
            child.cancel.replace(true);
        }
        tracing::info!(job_id = %job.id, status = status.as_str(), "job ended");
        // Last, with nothing of this job left to do: the plugin's next job starts
        // in an instance made ready now, off its path (`sandbox::spare`). Only when
        // few jobs run: under load, jobs waiting to run take the pool's instances
        // and the workers' time, and a spare would only move an instantiation
        // from one job to another.
        if few_running && let Some(refill) = refill {
            self.sandbox.make_spare(refill).await;
        }
    }

    /// Handles `job.cancel` from `session_id` of `principal`.
    pub async fn cancel(
        &self,
        principal: &str,
        outbox: &Arc<Outbox>,
        env: &Envelope,
    ) -> Result<(), ArcpError> {
        let req: CancelPayload = env.payload_as()?;
        let job_id = env.job_id.clone().or(req.job_id).ok_or_else(|| {
            ArcpError::invalid("job.cancel needs a job_id (on the envelope or in the payload)")
        })?;
        let not_found =
            || ArcpError::new(ErrorCode::JobNotFound, format!("job {job_id:?} not found"));
        let job = self.get(&job_id).ok_or_else(not_found)?;
        if job.principal != principal {
            // Never reveal that another principal's job exists.
            return Err(not_found());
        }
        if job.outbox.session_id() != outbox.session_id() {
            return Err(ArcpError::new(
                ErrorCode::PermissionDenied,
                format!("job {job_id:?} may only be cancelled by the session that submitted it"),
            ));
        }
        if job.status().is_terminal() {
            return Ok(()); // Cancelling a finished job is a no-op (spec §7.4).
        }
        if job.cancel.replace(true) {
            return Ok(()); // Already cancelling.
        }
        // Its `job.accepted` first, if its first slice is still holding it back.
        job.acknowledge().await;
        let ack = CancelledPayload {
            job_id: job_id.clone(),
            // Echoed to the client: cut, so that the reply stays inside a frame.
            reason: req
                .reason
                .map(|r| crate::protocol::cut_noting_length(r, MAX_CANCEL_REASON_BYTES)),
        };
        outbox
            .send(Outbound::new("job.cancelled", ack).for_job(&job.id, &job.trace_id))
            .await;
        Ok(())
    }

    /// Whether `principal` may observe `job` (list, subscribe): its own jobs, and
    /// every job for an observer principal named in the configuration.
    fn may_observe(&self, principal: &str, job: &Job) -> bool {
        job.principal == principal || self.config.observers.iter().any(|o| o == principal)
    }

    /// A job `principal` may observe; `JOB_NOT_FOUND` otherwise, never revealing
    /// whether it exists.
    fn observable(&self, principal: &str, job_id: &str) -> Result<Arc<Job>, ArcpError> {
        self.get(job_id)
            .filter(|j| self.may_observe(principal, j))
            .ok_or_else(|| {
                ArcpError::new(ErrorCode::JobNotFound, format!("job {job_id:?} not found"))
            })
    }

    /// Handles `job.subscribe` (spec §7.6): `job.subscribed` first (the reference
    /// client registers its handle only then), then the history after
    /// `from_event_seq` (the submitter's numbering) if asked for, then live events,
    /// all renumbered into the subscriber's own `event_seq` space.
    pub async fn subscribe(
        &self,
        principal: &str,
        outbox: &Arc<Outbox>,
        env: &Envelope,
    ) -> Result<(), ArcpError> {
        let req: SubscribePayload = env.payload_as()?;
        let job = self.observable(principal, &req.job_id);
        tracing::info!(
            target: "arcp::audit",
            principal,
            session_id = outbox.session_id(),
            job_id = %req.job_id,
            allowed = job.is_ok(),
            "subscribe decision"
        );
        let job = job?;

        let mut subscribers = job.subscribers.lock().await;
        let history = if req.history {
            let store = self.store.clone();
            let (session_id, job_id, after) = (
                job.outbox.session_id().to_owned(),
                job.id.clone(),
                req.from_event_seq.unwrap_or(0),
            );
            tokio::task::spawn_blocking(move || {
                store.flush()?;
                store.events_for_job(&session_id, &job_id, after)
            })
            .await
            .map_err(|e| ArcpError::internal(format!("history read failed: {e}")))?
            .map_err(|e| ArcpError::internal(format!("history read failed: {e}")))?
        } else {
            Vec::new()
        };
        let subscribed = SubscribedPayload {
            request_id: env.id.clone(),
            job_id: job.id.to_string(),
            current_status: job.status().as_str().into(),
            agent: job.agent.clone(),
            lease: job.accepted.lease.clone(),
            lease_constraints: job.accepted.lease_constraints.clone(),
            budget: job.current_budget(),
            parent_job_id: job.accepted.parent_job_id.clone(),
            trace_id: job.trace_id.to_string(),
            subscribed_from: outbox.last_seq() + 1,
            replayed: history.len() as u64,
        };
        outbox
            .send(Outbound::new("job.subscribed", subscribed).for_job(&job.id, &job.trace_id))
            .await;
        for event in history {
            if let Some(msg) = Outbound::from_stored(&event.frame) {
                outbox.send(msg).await;
            }
        }
        subscribers.retain(|s| s.session_id() != outbox.session_id());
        if !job.status().is_terminal() {
            subscribers.push(outbox.clone());
            // Recorded, so that a restart before the job ends still tells them.
            self.store.put_job(job.record_with(&subscribers));
        }
        Ok(())
    }

    /// Handles `job.unsubscribe`. Unsubscribing from a job one is not subscribed to
    /// is a no-op.
    pub async fn unsubscribe(
        &self,
        principal: &str,
        outbox: &Arc<Outbox>,
        env: &Envelope,
    ) -> Result<(), ArcpError> {
        let req: UnsubscribePayload = env.payload_as()?;
        let job = self.observable(principal, &req.job_id)?;
        let mut subscribers = job.subscribers.lock().await;
        subscribers.retain(|s| s.session_id() != outbox.session_id());
        if !job.status().is_terminal() {
            self.store.put_job(job.record_with(&subscribers));
        }
        Ok(())
    }

    /// Handles `session.list_jobs` for `principal`: newest last, keyset-paged by job
    /// id (ULIDs sort by creation time), so a cursor survives its anchor job going.
    pub fn list(
        &self,
        principal: &str,
        req: &ListJobsPayload,
    ) -> Result<(Vec<JobListEntry>, Option<String>), ArcpError> {
        let limit = req.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(ArcpError::invalid("limit must be between 1 and 1000"));
        }
        let filter = req.filter.clone().unwrap_or_default();
        let created_after = match &filter.created_after {
            Some(raw) => Some(
                chrono::DateTime::parse_from_rfc3339(raw)
                    .map_err(|e| ArcpError::invalid(format!("filter.created_after {raw:?}: {e}")))?
                    .with_timezone(&chrono::Utc),
            ),
            None => None,
        };
        let jobs: BTreeMap<String, Arc<Job>> = self
            .jobs
            .lock()
            .map_err(|_| ArcpError::internal("job table unavailable"))?
            .values()
            .filter(|j| self.may_observe(principal, j))
            .map(|j| (j.id.to_string(), j.clone()))
            .collect();
        let mut page = Vec::new();
        let mut next_cursor = None;
        let start = req.cursor.clone().unwrap_or_default();
        let mut page_bytes = 0usize;
        for (id, job) in
            jobs.range::<String, _>((std::ops::Bound::Excluded(start), std::ops::Bound::Unbounded))
        {
            if let Some(statuses) = &filter.status
                && !statuses.iter().any(|s| s == job.status().as_str())
            {
                continue;
            }
            if let Some(agent) = &filter.agent
                && *agent != job.agent
                && job.agent.split('@').next() != Some(agent.as_str())
            {
                continue;
            }
            if let Some(after) = created_after {
                let submitted = chrono::DateTime::parse_from_rfc3339(&job.accepted.accepted_at)
                    .map(|d| d.with_timezone(&chrono::Utc))
                    .ok();
                if submitted.is_none_or(|s| s <= after) {
                    continue;
                }
            }
            let entry = job.list_entry();
            // A page also ends before it would pass what one frame may carry (each
            // entry holds its job's lease, which a client chose): the cursor goes on.
            let entry_bytes = serde_json::to_string(&entry).map_or(0, |t| t.len() + 1);
            if page.len() == limit as usize
                || (!page.is_empty() && page_bytes + entry_bytes > EVENT_BODY_LIMIT)
            {
                next_cursor = page.last().map(|e: &JobListEntry| e.job_id.clone());
                break;
            }
            page_bytes += entry_bytes;
            page.push(entry);
            let _ = id;
        }
        Ok((page, next_cursor))
    }
}
