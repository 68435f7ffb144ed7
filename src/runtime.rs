//! The composition root: one [`Runtime`] holds the sandbox, the plugin registry, the
//! store, the job manager and the live sessions, and is shared by every connection.

use crate::config::Config;
use crate::jobs::JobManager;
use crate::plugins::Registry;
use crate::sandbox::{ModelGateway, ModelPrice, NetClient, NetPolicy, Sandbox, SandboxConfig};
use crate::session::{Outbox, SessionState};
use crate::store::{MemoryStore, SqliteStore, Store};
use anyhow::Context as _;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The runtime's name in `session.welcome`.
pub const RUNTIME_NAME: &str = "arcp-host";

/// Everything a session needs.
pub struct Runtime {
    /// Operator configuration.
    pub config: Arc<Config>,
    /// The wasm engine.
    pub sandbox: Arc<Sandbox>,
    /// The agents.
    pub registry: Arc<Registry>,
    /// Events and job records.
    pub store: Arc<dyn Store>,
    /// Jobs.
    pub jobs: Arc<JobManager>,
    /// The HTTP client of `net.fetch`.
    pub net: Arc<NetClient>,
    sessions: Mutex<SessionTable>,
}

/// The live sessions, by id and by principal.
///
/// A hello checks its principal's cap of sessions, and that used to go through
/// every session of every principal, three times, under this table's lock: with
/// many principals each hello cost in proportion to all the sessions held. Now it
/// looks at its principal's sessions only, at most about the cap of them.
#[derive(Default)]
struct SessionTable {
    by_id: HashMap<String, Arc<SessionState>>,
    /// Each principal's sessions, by id: the same sessions as `by_id`.
    by_principal: HashMap<String, HashMap<String, Arc<SessionState>>>,
}

impl SessionTable {
    fn insert(&mut self, session: Arc<SessionState>) {
        if let Some(replaced) = self.by_id.insert(session.id.clone(), session.clone()) {
            self.unindex(&replaced);
        }
        self.by_principal
            .entry(session.principal.clone())
            .or_default()
            .insert(session.id.clone(), session);
    }

    fn remove(&mut self, id: &str) -> Option<Arc<SessionState>> {
        let session = self.by_id.remove(id)?;
        self.unindex(&session);
        Some(session)
    }

    fn unindex(&mut self, session: &SessionState) {
        if let Some(of) = self.by_principal.get_mut(&session.principal) {
            of.remove(&session.id);
            if of.is_empty() {
                self.by_principal.remove(&session.principal);
            }
        }
    }

    fn get(&self, id: &str) -> Option<&Arc<SessionState>> {
        self.by_id.get(id)
    }

    /// `principal`'s sessions.
    fn of(&self, principal: &str) -> impl Iterator<Item = &Arc<SessionState>> {
        self.by_principal
            .get(principal)
            .into_iter()
            .flat_map(HashMap::values)
    }

    fn len(&self) -> usize {
        self.by_id.len()
    }

    fn values(&self) -> impl Iterator<Item = &Arc<SessionState>> {
        self.by_id.values()
    }
}

impl Runtime {
    /// Builds the runtime and scans the plugin folder once. Blocking (it compiles
    /// plugins not yet in the cache).
    pub fn start(config: Config) -> anyhow::Result<Arc<Runtime>> {
        config.validate()?;
        let mut config = config;
        if let Some(ws) = &config.workspace {
            std::fs::create_dir_all(ws)
                .with_context(|| format!("creating workspace {}", ws.display()))?;
            // Canonical, so that resolved paths can be compared with it.
            config.workspace = Some(
                ws.canonicalize()
                    .with_context(|| format!("workspace {}", ws.display()))?,
            );
        }
        let config = Arc::new(config);
        let sandbox = Arc::new(Sandbox::new(sandbox_config(&config))?);
        let store: Arc<dyn Store> = if config.in_memory {
            Arc::new(MemoryStore::new())
        } else {
            Arc::new(SqliteStore::open(&config.data).context("opening the store")?)
        };
        let cache_dir = Some(config.data.join("cache"));
        let registry = Arc::new(Registry::new(
            sandbox.clone(),
            config.plugins.clone(),
            cache_dir,
        ));
        registry.rescan();
        let net = NetClient::new(NetPolicy {
            allow_private: config.net.allow_private,
            max_response_bytes: config.net.max_response_mib.saturating_mul(1 << 20),
            timeout: Duration::from_secs(config.net.timeout_sec),
            max_redirects: 5,
        })?;
        let jobs = Arc::new(JobManager::new(
            config.clone(),
            sandbox.clone(),
            registry.clone(),
            store.clone(),
            net.clone(),
            model_gateway(&config)?,
            provisioner(&config)?,
        ));
        Ok(Arc::new(Runtime {
            config,
            sandbox,
            registry,
            store,
            jobs,
            net,
            sessions: Mutex::new(SessionTable::default()),
        }))
    }

    /// Restores what an earlier run left in the store: sessions (resumable for one
    /// window from now), idempotency keys, and jobs (listed; those that were running
    /// are ended with `INTERNAL_ERROR`). Call once, before serving. Returns the number of jobs.
    pub async fn recover(self: &Arc<Self>) -> anyhow::Result<usize> {
        let store = self.store.clone();
        let (sessions, jobs, keys) =
            tokio::task::spawn_blocking(move || -> Result<_, crate::store::StoreError> {
                Ok((store.sessions()?, store.jobs()?, store.idempotency_keys()?))
            })
            .await??;
        self.jobs.recover_idempotency(keys);
        let mut outboxes: HashMap<String, Arc<Outbox>> = HashMap::new();
        let max_lag = self.config.limits.max_unacked_events;
        let mut outbox_for = |id: &str| -> anyhow::Result<Arc<Outbox>> {
            if let Some(o) = outboxes.get(id) {
                return Ok(o.clone());
            }
            let last = self.store.last_seq(id)?;
            let o = Arc::new(Outbox::restored(
                id.to_owned(),
                self.store.clone(),
                max_lag,
                last,
            ));
            outboxes.insert(id.to_owned(), o.clone());
            Ok(o)
        };
        for record in &sessions {
            let outbox = outbox_for(&record.session_id)?;
            self.register_session(Arc::new(SessionState::restore(record, outbox)));
        }
        let count = jobs.len();
        for record in jobs {
            let outbox = outbox_for(&record.session_id)?;
            if !sessions.iter().any(|s| s.session_id == record.session_id) {
                // Its session was past its window before the restart: nothing is
                // sent to it and retention may remove its history.
                outbox.retire();
            }
            let mut subscribers = Vec::new();
            for id in &record.subscribers {
                // Only sessions that can still be resumed are told.
                if sessions.iter().any(|s| s.session_id == *id) {
                    subscribers.push(outbox_for(id)?);
                }
            }
            if let Err(e) = self.jobs.recover_job(record, outbox, subscribers).await {
                tracing::error!(error = %e, "a stored job could not be restored");
            }
        }
        if count > 0 || !sessions.is_empty() {
            tracing::info!(
                sessions = sessions.len(),
                jobs = count,
                "restored from the store"
            );
        }
        Ok(count)
    }

    /// The principal a bearer token maps to.
    pub fn principal_for(&self, token: &str) -> Option<String> {
        // Compare in constant time so that response timing reveals nothing of the
        // configured tokens.
        use subtle::ConstantTimeEq;
        let mut found = None;
        for (known, principal) in &self.config.tokens {
            if bool::from(known.as_bytes().ct_eq(token.as_bytes())) {
                found = Some(principal.clone());
            }
        }
        found.or_else(|| self.config.anonymous_principal.clone())
    }

    pub(crate) fn register_session(&self, session: Arc<SessionState>) {
        if let Ok(mut m) = self.sessions.lock() {
            m.insert(session);
        }
    }

    /// Registers a new session unless its principal already holds
    /// `limits.max_sessions_per_principal` connected sessions (checked and
    /// registered under one lock, so a burst of hellos cannot overshoot).
    ///
    /// Sessions waiting to be resumed count too: when the principal is at the cap,
    /// its longest-detached session is forgotten to make room (as if its resume
    /// window had passed; its jobs go on). Otherwise a client could hold unbounded
    /// state by opening sessions and dropping their connections.
    pub(crate) fn admit_session(
        &self,
        session: Arc<SessionState>,
    ) -> Result<(), crate::error::ArcpError> {
        let mut m = self
            .sessions
            .lock()
            .map_err(|_| crate::error::ArcpError::internal("session table unavailable"))?;
        self.check_session_cap(&m, &session.principal, None)?;
        let cap = self.config.limits.max_sessions_per_principal;
        let held = m.of(&session.principal).count();
        if held >= cap {
            let oldest = m
                .of(&session.principal)
                .filter_map(|s| s.detached_since().map(|at| (at, s.id.clone())))
                .min();
            if let Some((_, id)) = oldest
                && let Some(evicted) = m.remove(&id)
            {
                evicted.outbox.retire();
                self.store.remove_session(&id);
                tracing::info!(session_id = %id, principal = %session.principal, "detached session forgotten: its principal opened a new one at the cap");
            }
        }
        m.insert(session);
        Ok(())
    }

    /// Claims `session` for a resume of `principal`'s: refused past the principal's
    /// cap of connected sessions (the session itself does not count), else the
    /// session counts as connected from now on. The check and the claim are one step
    /// under the session table's lock, and both come before the welcome is sent: a
    /// hello that arrives just after that welcome must see the session connected,
    /// not detached and free to be forgotten to make room.
    pub(crate) fn claim_for_resume(
        &self,
        principal: &str,
        session: &crate::session::SessionState,
    ) -> Result<(), crate::error::ArcpError> {
        let m = self
            .sessions
            .lock()
            .map_err(|_| crate::error::ArcpError::internal("session table unavailable"))?;
        self.check_session_cap(&m, principal, Some(&session.id))?;
        session.mark_attached();
        Ok(())
    }

    fn check_session_cap(
        &self,
        sessions: &SessionTable,
        principal: &str,
        except: Option<&str>,
    ) -> Result<(), crate::error::ArcpError> {
        let cap = self.config.limits.max_sessions_per_principal;
        let connected = sessions
            .of(principal)
            .filter(|s| s.is_attached() && Some(s.id.as_str()) != except)
            .count();
        if connected >= cap {
            return Err(crate::error::ArcpError::new(
                crate::error::ErrorCode::PermissionDenied,
                format!("principal {principal:?} already has {connected} connected sessions, the most this runtime allows (limits.max_sessions_per_principal); close one or try later"),
            )
            .with_retryable(true)
            .with_detail("limit", "max_sessions_per_principal")
            .with_detail("max", cap as u64));
        }
        Ok(())
    }

    /// Forgets sessions that have had no connection for longer than the resume
    /// window, here and in the store (their envelopes go, except the history of
    /// jobs they submitted that are still kept). Returns how many went.
    pub fn sweep_sessions(&self) -> usize {
        let window = Duration::from_secs(self.config.resume_window_sec);
        let Ok(mut m) = self.sessions.lock() else {
            return 0;
        };
        let expired: Vec<String> = m
            .values()
            .filter(|s| s.expired(window))
            .map(|s| s.id.clone())
            .collect();
        for id in &expired {
            if let Some(s) = m.remove(id) {
                s.outbox.retire();
                self.store.remove_session(id);
            }
        }
        expired.len()
    }

    /// Runs the retention rules of `[retention]` once (see [`crate::config::Retention`]):
    /// expired sessions, finished jobs past their retention, expired idempotency
    /// keys, then the byte cap. Also retries revoking credentials left outstanding.
    pub async fn sweep(&self) -> SweepReport {
        let mut report = SweepReport {
            sessions: self.sweep_sessions(),
            jobs: self.jobs.sweep_finished(),
            keys: self.jobs.sweep_idempotency(),
            ..SweepReport::default()
        };
        let cap = self.config.retention.max_store_mib.saturating_mul(1 << 20);
        if cap > 0 {
            match self.enforce_byte_cap(cap).await {
                Ok(n) => report.jobs_over_cap = n,
                Err(e) => tracing::error!(error = %e, "retention: cannot measure the store"),
            }
        }
        self.jobs.revoke_outstanding().await;
        let idle = Duration::from_secs(self.config.retention.sweep_interval_sec);
        let spares = self.drop_idle_spares(idle);
        if spares > 0 {
            tracing::debug!(spares, "dropped spare instances no job took");
        }
        report
    }

    /// Drops the spare instances (`sandbox::spare`) no job took for `idle`: with
    /// the sweep's interval, a spare lives at most two intervals untaken. Returns
    /// how many went.
    pub fn drop_idle_spares(&self, idle: Duration) -> usize {
        let inventory = self.registry.inventory();
        inventory
            .plugins()
            .filter(|p| p.agent.drop_idle_spare(idle))
            .count()
    }

    /// While the store holds more than `cap` bytes, forgets finished jobs whose
    /// session can no longer be resumed, the one that ended first first, one at a
    /// time and measuring again after each (so that no more goes than the cap asks
    /// for). At most `MAX_PER_SWEEP` per sweep; the next sweep goes on. Returns how
    /// many went.
    async fn enforce_byte_cap(&self, cap: u64) -> Result<usize, crate::store::StoreError> {
        const MAX_PER_SWEEP: usize = 1000;
        let mut removed = 0;
        let mut candidates = self.jobs.finished_unreplayable().into_iter();
        while removed < MAX_PER_SWEEP {
            let store = self.store.clone();
            let bytes = tokio::task::spawn_blocking(move || {
                store.flush()?;
                store.stored_bytes()
            })
            .await
            .map_err(|e| crate::store::StoreError::Io(e.to_string()))??;
            if bytes <= cap {
                break;
            }
            let Some(oldest) = candidates.next() else {
                tracing::warn!(
                    bytes,
                    cap,
                    "store is over its cap, but all it holds is running jobs and what resumable sessions may replay"
                );
                break;
            };
            if removed == 0 {
                tracing::info!(
                    bytes,
                    cap,
                    "retention: store over its cap; removing the oldest finished jobs"
                );
            }
            self.jobs.forget(std::slice::from_ref(&oldest));
            removed += 1;
        }
        Ok(removed)
    }

    /// Runs [`Self::sweep`] every `retention.sweep_interval_sec` for as long as the
    /// runtime lives, the first time at once (credentials a crash left live are
    /// revoked at start-up).
    pub fn spawn_sweeper(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let period = Duration::from_secs(self.config.retention.sweep_interval_sec);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let Some(rt) = weak.upgrade() else { return };
                let report = rt.sweep().await;
                if report != SweepReport::default() {
                    tracing::info!(
                        sessions = report.sessions,
                        jobs = report.jobs,
                        keys = report.keys,
                        jobs_over_cap = report.jobs_over_cap,
                        "retention sweep"
                    );
                }
            }
        });
    }

    /// The metrics in Prometheus text format, with the current-state gauges read
    /// now (served at `GET /metrics`).
    pub fn render_metrics(&self) -> String {
        let m = self.jobs.metrics();
        m.jobs.clear();
        for ((agent, state), n) in self.jobs.counts() {
            let labels = crate::metrics::JobLabels {
                agent,
                state: state.into(),
            };
            m.jobs.get_or_create(&labels).set(n);
        }
        if let Ok(sessions) = self.sessions.lock() {
            m.sessions.set(sessions.len() as i64);
            let connected = sessions.values().filter(|s| s.is_attached()).count();
            m.sessions_connected.set(connected as i64);
        }
        m.plugins_loaded
            .set(self.registry.inventory().plugins().count() as i64);
        m.plugin_load_errors
            .set(self.registry.errors().len() as i64);
        m.resident_bytes
            .set(i64::try_from(crate::metrics::resident_bytes()).unwrap_or(i64::MAX));
        m.encode()
    }

    pub(crate) fn session(&self, id: &str) -> Option<Arc<SessionState>> {
        self.sessions.lock().ok().and_then(|m| m.get(id).cloned())
    }
}

/// The sandbox settings an operator's configuration asks for.
pub fn sandbox_config(config: &Config) -> SandboxConfig {
    SandboxConfig {
        epoch_tick: Duration::from_millis(config.limits.epoch_tick_ms),
        job_memory_bytes: config.job_memory_bytes(),
        pool_instances: config.limits.pool_instances,
        max_result_bytes: config.limits.max_result_mib.saturating_mul(1 << 20),
    }
}

/// What one retention sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Sessions past their resume window.
    pub sessions: usize,
    /// Finished jobs past `retention.jobs_sec`.
    pub jobs: usize,
    /// Idempotency keys past their lifetime.
    pub keys: usize,
    /// Finished jobs removed to bring the store under `retention.max_store_mib`.
    pub jobs_over_cap: usize,
}

/// Builds the model gateway from `[models]`, if configured.
fn model_gateway(config: &Config) -> anyhow::Result<Option<Arc<ModelGateway>>> {
    let Some(m) = &config.models else {
        return Ok(None);
    };
    let key = match &m.key_env {
        Some(var) => Some(
            std::env::var(var).with_context(|| format!("[models] key_env: ${var} is not set"))?,
        ),
        None => None,
    };
    let mut prices = std::collections::BTreeMap::new();
    for (model, p) in &m.prices {
        let parse = |s: &str| {
            s.parse::<rust_decimal::Decimal>()
                .with_context(|| format!("[models.prices.{model:?}]: {s:?} is not a decimal"))
        };
        prices.insert(
            model.clone(),
            ModelPrice {
                input_per_1k: parse(&p.input_per_1k)?,
                output_per_1k: parse(&p.output_per_1k)?,
            },
        );
    }
    let gateway = ModelGateway::new(
        m.url.clone(),
        key,
        m.currency.clone(),
        prices,
        Duration::from_secs(m.timeout_sec),
    )?;
    Ok(Some(Arc::new(gateway)))
}

/// Builds the credential provisioner from `[credentials]`, if configured.
fn provisioner(
    config: &Config,
) -> anyhow::Result<Option<Arc<dyn crate::credentials::Provisioner>>> {
    let Some(c) = &config.credentials else {
        return Ok(None);
    };
    let key = match &c.admin_key_env {
        Some(var) => Some(
            std::env::var(var)
                .with_context(|| format!("[credentials] admin_key_env: ${var} is not set"))?,
        ),
        None => None,
    };
    let p = crate::credentials::LiteLlm::new(
        c.admin_url.clone(),
        key,
        c.endpoint.clone(),
        c.profile.clone(),
        c.currency.clone(),
    )?;
    Ok(Some(Arc::new(p)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SessionRecord;

    fn session(id: &str, principal: &str) -> Arc<SessionState> {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let record = SessionRecord {
            session_id: id.into(),
            principal: principal.into(),
            features: "[]".into(),
            token_hash: String::new(),
        };
        Arc::new(SessionState::restore(
            &record,
            Arc::new(Outbox::new(id.into(), store, 16)),
        ))
    }

    fn ids_of(table: &SessionTable, principal: &str) -> Vec<String> {
        let mut ids: Vec<String> = table.of(principal).map(|s| s.id.clone()).collect();
        ids.sort();
        ids
    }

    /// The index by principal holds exactly the sessions held by id, through
    /// inserts, removals and a session registered again under its id.
    #[test]
    fn the_session_table_indexes_each_session_under_its_principal() {
        let mut table = SessionTable::default();
        table.insert(session("s1", "alice"));
        table.insert(session("s2", "alice"));
        table.insert(session("s3", "bob"));
        assert_eq!(ids_of(&table, "alice"), ["s1", "s2"]);
        assert_eq!(ids_of(&table, "bob"), ["s3"]);
        assert!(ids_of(&table, "carol").is_empty());
        assert_eq!(table.len(), 3);

        // The same id again (a restored session registered anew) replaces it.
        table.insert(session("s2", "bob"));
        assert_eq!(ids_of(&table, "alice"), ["s1"]);
        assert_eq!(ids_of(&table, "bob"), ["s2", "s3"]);
        assert_eq!(table.len(), 3);

        assert!(table.remove("s1").is_some());
        assert!(table.remove("s1").is_none());
        assert!(ids_of(&table, "alice").is_empty());
        assert!(
            !table.by_principal.contains_key("alice"),
            "no empty entry left"
        );
        assert_eq!(table.get("s3").map(|s| s.principal.as_str()), Some("bob"));
        assert_eq!(table.values().count(), 2);
    }
}
