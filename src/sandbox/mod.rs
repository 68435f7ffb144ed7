//! The WebAssembly sandbox: one wasmtime [`Engine`] per process, compiled and
//! validated plugin components, and one [`Store`] per job.
//!
//! Owns everything wasmtime: engine configuration (pooling allocator with an
//! on-demand fallback, epoch interruption driven by one ticker thread), the linker
//! with the host side of the WIT world (`events`, `result-stream`) and WASI that
//! inherits nothing from the host, the per-job memory limiter, and the call of a
//! plugin's `run` export. It must not know about sessions, the wire or the plugin
//! folder: jobs hand it a component and a [`JobSink`] and get a [`RunOutcome`] back.
//! Time limits and cancellation are the caller's: dropping the future returned by
//! [`Sandbox::run`] stops the guest at its next epoch tick and drops its `Store`.

mod capabilities;
mod fairness;
mod host;
mod limits;
mod model;
mod net;
mod spare;
mod ticker;

pub use capabilities::{
    Authority, Delegator, MAX_READ_BYTES, MatcherCache, RecordGate, ToolRunner,
};
pub use host::{DiscardEvents, JobSink, StreamSummary, Usage};
pub use limits::JobLimiter;
pub use model::{ModelGateway, ModelPrice};
pub use net::{BodyError, NetClient, NetPolicy, is_public, read_body_within};
pub use spare::{Refill, runs_code_when_instantiated};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline,
};

wasmtime::component::bindgen!({
    path: "wit",
    world: "agent",
    imports: { default: async },
    exports: { default: async },
});

/// The WIT package versions this host accepts from plugins.
pub const ACCEPTED_WIT_VERSIONS: &[&str] = &["arcp:agent@1.0.0", "arcp:agent@1.1.0"];

/// How the sandbox is set up; derived from the runtime configuration.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Epoch tick period; a cancelled or timed-out guest stops within about one tick.
    pub epoch_tick: Duration,
    /// Default per-job memory ceiling in bytes (summed over all memories).
    pub job_memory_bytes: u64,
    /// Component instances to reserve in the pooling allocator (0 = on-demand only).
    pub pool_instances: u32,
    /// Cap on a streamed result's total size.
    pub max_result_bytes: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            epoch_tick: Duration::from_millis(2),
            job_memory_bytes: 256 << 20,
            pool_instances: 1000,
            max_result_bytes: 256 << 20,
        }
    }
}

/// A compiled, validated plugin ready to instantiate: the component's imports are
/// resolved against the host linker and its `run` export type-checked.
#[derive(Clone)]
pub struct PreparedAgent {
    pre: AgentPre<host::JobState>,
    flavor: Flavor,
    /// Where its spare instance waits, for a plugin that may have one (see
    /// [`PreparedAgent::with_spares`]); shared by its clones.
    spare: Option<Arc<spare::SpareSlot>>,
}

impl PreparedAgent {
    /// Lets this plugin's jobs start in an instance made ready before they came
    /// (`spare`'s module docs say when that is invisible). Only for a component
    /// for which [`runs_code_when_instantiated`] is false, and only jobs without a
    /// fuel budget (which run a [`Flavor::Fuel`] variant) use it.
    pub fn with_spares(mut self) -> PreparedAgent {
        if self.flavor == Flavor::Plain {
            self.spare = Some(Arc::default());
        }
        self
    }

    /// Drops this plugin's spare instance if no job took it for `idle`. Whether
    /// one was dropped.
    pub fn drop_idle_spare(&self, idle: Duration) -> bool {
        let Some(cutoff) = std::time::Instant::now().checked_sub(idle) else {
            return false;
        };
        self.spare
            .as_ref()
            .is_some_and(|s| s.drop_made_before(cutoff))
    }

    /// Whether a spare instance of this plugin is ready now.
    pub fn has_spare(&self) -> bool {
        self.spare.as_ref().is_some_and(|s| s.holds_one())
    }
}

/// Which engine compiled code is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Epoch interruption only: every job that does not budget fuel.
    Plain,
    /// Fuel metering as well, for jobs with a `fuel:N` budget.
    Fuel,
}

impl std::fmt::Debug for PreparedAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreparedAgent")
    }
}

/// How a job's `run` call ended, short of cancellation (which drops the future).
#[derive(Debug)]
pub enum RunOutcome {
    /// `run` returned Ok with this JSON text; `stream` is set when the plugin wrote a
    /// streamed result.
    Success {
        /// The returned JSON text.
        output: String,
        /// The streamed result, if any.
        stream: Option<StreamSummary>,
    },
    /// `run` returned Err.
    Failed(Failure),
    /// The guest trapped or hit a limit; the message says which.
    Trapped(String),
    /// The host could not instantiate the plugin.
    InstantiationFailed(String),
}

/// What the sandbox needs to run one job.
pub struct JobSpec {
    /// Passed to the plugin's `run`.
    pub info: JobInfo,
    /// The job's input as JSON text.
    pub input_json: String,
    /// Per-job memory ceiling in bytes.
    pub memory_bytes: u64,
    /// What the job may do outside the sandbox.
    pub authority: Authority,
    /// A fuel budget: the job must then run a [`Flavor::Fuel`] agent.
    pub fuel: Option<u64>,
    /// Wait for a free instance of the pool rather than fail when every one is in
    /// use: true for jobs clients submitted; false for runs on behalf of a running
    /// job (tools, delegated children), which take from a reserve instead, so that
    /// jobs waiting for their children cannot hold every instance.
    pub waits_for_instance: bool,
}

/// The process-wide engine, linker and epoch ticker.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<host::JobState>,
    /// A second engine with fuel metering, for jobs whose lease budgets fuel: fuel
    /// changes the generated code and slows every guest, so only those jobs pay it.
    fuel_engine: Engine,
    fuel_linker: Linker<host::JobState>,
    config: SandboxConfig,
    pooling: bool,
    ticker: Arc<ticker::Ticker>,
    /// Slots for CPU-bound slices (one fewer than the machine's cores, at least
    /// one): see [`Self::new_store`].
    cpu_slots: fairness::CpuSlots,
    /// With the pooling allocator: instances submitted jobs may take, all but a
    /// reserve kept for tools and delegated children; past them a job waits.
    queued_instances: Option<Arc<tokio::sync::Semaphore>>,
    /// Seconds each job's instantiation took (exported as a metric).
    instantiations: prometheus_client::metrics::histogram::Histogram,
    /// Jobs that started in a spare instance (exported as a metric).
    spares_taken: prometheus_client::metrics::counter::Counter,
    /// Spare instances held now (exported as a metric).
    spares_held: prometheus_client::metrics::gauge::Gauge,
}

impl Sandbox {
    /// Builds the engine (pooling allocator, falling back to on-demand allocation when
    /// the address-space reservation fails), the linker, and starts the epoch ticker.
    pub fn new(config: SandboxConfig) -> anyhow::Result<Sandbox> {
        let (engine, pooling) = match config.pool_instances {
            0 => (Engine::new(&base_config())?, false),
            n => match Engine::new(&pooling_config(n, config.job_memory_bytes)) {
                Ok(engine) => (engine, true),
                Err(e) => {
                    tracing::warn!(error = %e, "pooling allocator unavailable; using on-demand allocation");
                    (Engine::new(&base_config())?, false)
                }
            },
        };
        let linker = host_linker(&engine)?;
        let mut fuel_config = base_config();
        fuel_config.consume_fuel(true);
        let fuel_engine = Engine::new(&fuel_config)?;
        let fuel_linker = host_linker(&fuel_engine)?;

        let ticker =
            ticker::Ticker::start(vec![engine.clone(), fuel_engine.clone()], config.epoch_tick)?;
        let hold_slot_for = config.epoch_tick * 2;
        let queued_instances = pooling.then(|| {
            let n = config.pool_instances as usize;
            Arc::new(tokio::sync::Semaphore::new(n - n / 10))
        });
        Ok(Sandbox {
            engine,
            linker,
            fuel_engine,
            fuel_linker,
            config,
            pooling,
            ticker,
            // A slot goes back two ticks after it was last asked for: past the
            // job's next deadline, so a job still computing keeps it.
            cpu_slots: fairness::CpuSlots::new(
                std::thread::available_parallelism()
                    .map_or(1, |n| n.get())
                    .saturating_sub(1),
                hold_slot_for,
            ),
            queued_instances,
            // 5 µs to ~160 ms.
            instantiations: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(5e-6, 2.0, 16),
            ),
            spares_taken: Default::default(),
            spares_held: Default::default(),
        })
    }

    /// The histogram of instantiation times (seconds), for the metrics registry.
    pub fn instantiation_seconds(&self) -> prometheus_client::metrics::histogram::Histogram {
        self.instantiations.clone()
    }

    /// The count of jobs that started in a spare instance, and the gauge of spare
    /// instances held now, for the metrics registry.
    pub fn spare_metrics(
        &self,
    ) -> (
        prometheus_client::metrics::counter::Counter,
        prometheus_client::metrics::gauge::Gauge,
    ) {
        (self.spares_taken.clone(), self.spares_held.clone())
    }

    /// Whether the pooling allocator is in use.
    pub fn is_pooling(&self) -> bool {
        self.pooling
    }

    /// The engine (shared by every plugin).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A hash of everything that makes compiled code from an engine loadable:
    /// wasmtime's version and the compilation settings (fuel included).
    pub fn engine_hash(&self, flavor: Flavor) -> String {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine_for(flavor)
            .precompile_compatibility_hash()
            .hash(&mut h);
        format!("{:016x}", h.finish())
    }

    fn engine_for(&self, flavor: Flavor) -> &Engine {
        match flavor {
            Flavor::Plain => &self.engine,
            Flavor::Fuel => &self.fuel_engine,
        }
    }

    /// Compiles `bytes` or loads the cached compiled code for them from `cache_dir`,
    /// keyed by the bytes' sha256 and [`Self::engine_hash`]. Returns the component and
    /// whether it came from the cache.
    pub fn load_component(
        &self,
        bytes: &[u8],
        cache_dir: Option<&Path>,
        flavor: Flavor,
    ) -> anyhow::Result<(Component, bool)> {
        let engine = self.engine_for(flavor);
        let Some(cache_dir) = cache_dir else {
            return Ok((Component::new(engine, bytes)?, false));
        };
        let key = format!(
            "{}-{}.cwasm",
            hex::encode(Sha256::digest(bytes)),
            self.engine_hash(flavor)
        );
        let path: PathBuf = cache_dir.join(key);
        if path.exists() {
            // SAFETY: the file is one this host wrote with `precompile_component` into
            // its own cache folder, named by the sha256 of the source and the engine's
            // compatibility hash; wasmtime re-checks the header and the engine settings.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => return Ok((c, true)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding unusable cache entry")
                }
            }
        }
        let compiled = engine.precompile_component(bytes)?;
        if let Err(e) =
            std::fs::create_dir_all(cache_dir).and_then(|()| write_atomically(&path, &compiled))
        {
            tracing::warn!(path = %path.display(), error = %e, "could not write the compiled-code cache");
        }
        // SAFETY: `compiled` was produced by `precompile_component` on this engine just now.
        let component = unsafe { Component::deserialize(engine, &compiled)? };
        Ok((component, false))
    }

    /// Resolves a component's imports against the host and checks its exports. The
    /// error names the missing import or export.
    pub fn prepare(&self, component: &Component, flavor: Flavor) -> anyhow::Result<PreparedAgent> {
        let linker = match flavor {
            Flavor::Plain => &self.linker,
            Flavor::Fuel => &self.fuel_linker,
        };
        let instance_pre = linker.instantiate_pre(component)?;
        let pre = AgentPre::new(instance_pre)?;
        Ok(PreparedAgent {
            pre,
            flavor,
            spare: None,
        })
    }

    /// Runs one job to completion in a fresh `Store`. Dropping the returned future
    /// stops the guest (at its next epoch tick) and drops the store.
    pub async fn run(
        &self,
        agent: &PreparedAgent,
        spec: JobSpec,
        sink: Arc<dyn JobSink>,
    ) -> RunOutcome {
        self.run_holding(agent, spec, sink).await.0
    }

    /// Like [`Self::run`], but hands the finished job's store and pool instance
    /// back instead of releasing them, for a caller with something more urgent to do
    /// first (sending the job's result): releasing them resets the instance's memory.
    pub async fn run_holding(
        &self,
        agent: &PreparedAgent,
        spec: JobSpec,
        sink: Arc<dyn JobSink>,
    ) -> (RunOutcome, Option<Finished>) {
        let fuel = spec.fuel.filter(|_| agent.flavor == Flavor::Fuel);
        if spec.fuel.is_some() && fuel.is_none() {
            return (
                RunOutcome::InstantiationFailed(
                    "a fuel budget needs the plugin compiled with fuel metering".into(),
                ),
                None,
            );
        }
        let spare = match (&agent.spare, fuel) {
            (Some(slot), None) => slot.take(spec.memory_bytes),
            _ => None,
        };
        let refill = agent.spare.is_some().then(|| spare::Refill {
            agent: agent.clone(),
            memory_bytes: spec.memory_bytes,
        });
        // Held until the run ends (declared before the store, so dropped after it).
        let _instance;
        let mut store;
        let instance;
        match spare {
            Some(spare) => {
                self.spares_taken.inc();
                _instance = spare.permit;
                store = spare.store;
                store
                    .data_mut()
                    .start_job(sink.clone(), spec.authority, self.ticker.awake());
                // Its deadline counts from now, not from when it was made.
                store.set_epoch_deadline(1);
                instance = Some(spare.instance);
            }
            None => {
                _instance = match &self.queued_instances {
                    Some(slots) if spec.waits_for_instance && agent.flavor == Flavor::Plain => {
                        slots.clone().acquire_owned().await.ok()
                    }
                    _ => None,
                };
                store = self.new_store(
                    agent.flavor,
                    sink.clone(),
                    spec.memory_bytes,
                    spec.authority,
                );
                instance = None;
            }
        }
        if let Some(f) = fuel
            && let Err(e) = store.set_fuel(f)
        {
            return (
                RunOutcome::InstantiationFailed(format!("setting fuel: {e}")),
                None,
            );
        }
        let mut outcome = Self::call(
            &mut store,
            agent,
            instance,
            &spec.info,
            &spec.input_json,
            &self.instantiations,
        )
        .await;
        // The cap holds for a result returned whole as for one streamed: the host
        // would otherwise stream an oversized returned result itself.
        if let RunOutcome::Success { output, .. } = &outcome
            && output.len() as u64 > self.config.max_result_bytes
        {
            outcome = RunOutcome::Trapped(format!(
                "the plugin's result is {} bytes, over this runtime's result cap of {} MiB",
                output.len(),
                self.config.max_result_bytes >> 20
            ));
        }
        if store
            .data()
            .authority
            .expired_attempt
            .load(Ordering::Acquire)
        {
            outcome = RunOutcome::Failed(Failure {
                code: "LEASE_EXPIRED".into(),
                message: "the job attempted an authority-bearing operation after its lease expired"
                    .into(),
                retryable: false,
            });
        }
        let memory_bytes = store.data().limiter.in_use();
        let Some(budget) = fuel else {
            sink.usage(Usage {
                memory_bytes,
                fuel: None,
            });
            return (
                outcome,
                Some(Finished {
                    _store: store,
                    _instance,
                    refill,
                }),
            );
        };
        // Report what the job burnt (spec §9.6: fuel as a runtime-defined currency),
        // and turn running out into BUDGET_EXHAUSTED.
        let left = store.get_fuel().unwrap_or(0);
        let burnt = budget.saturating_sub(left);
        sink.usage(Usage {
            memory_bytes,
            fuel: Some(burnt),
        });
        let metric = |name: &str, value: u64| {
            crate::protocol::EventBody::Json(crate::protocol::raw_payload(
                &serde_json::json!({"name": name, "value": value, "unit": "fuel"}),
            ))
        };
        sink.emit("metric".into(), metric("cost.fuel", burnt)).await;
        sink.emit("metric".into(), metric("cost.budget.remaining", left))
            .await;
        let outcome = match outcome {
            RunOutcome::Trapped(msg) if left == 0 => RunOutcome::Failed(Failure {
                code: "BUDGET_EXHAUSTED".into(),
                message: format!("the job's fuel budget of {budget} is spent ({msg})"),
                retryable: false,
            }),
            other => other,
        };
        (
            outcome,
            Some(Finished {
                _store: store,
                _instance,
                refill,
            }),
        )
    }

    /// Instantiates `agent` in `store` (unless given its `ready` spare instance)
    /// and calls its `run`.
    async fn call(
        store: &mut Store<host::JobState>,
        agent: &PreparedAgent,
        ready: Option<Agent>,
        info: &JobInfo,
        input_json: &str,
        instantiations: &prometheus_client::metrics::histogram::Histogram,
    ) -> RunOutcome {
        let mut store = store;
        let instance = match ready {
            Some(instance) => instance,
            None => {
                let started = std::time::Instant::now();
                match agent.pre.instantiate_async(&mut store).await {
                    Ok(i) => {
                        instantiations.observe(started.elapsed().as_secs_f64());
                        i
                    }
                    Err(e) => {
                        return match store.data().limiter.exceeded() {
                            Some(msg) => RunOutcome::Trapped(msg),
                            None => RunOutcome::InstantiationFailed(format!("{e:#}")),
                        };
                    }
                }
            }
        };
        let result = instance.call_run(&mut store, info, input_json).await;
        let stream = store.data_mut().take_stream();
        match result {
            Ok(Ok(output)) => RunOutcome::Success { output, stream },
            Ok(Err(failure)) => RunOutcome::Failed(failure),
            Err(e) => RunOutcome::Trapped(match store.data().limiter.exceeded() {
                Some(msg) => msg,
                None => trap_message(&e),
            }),
        }
    }
}

/// A finished job's store and the pool instance it held; dropping it resets the
/// instance (its dirty memory pages found and cleared, ~9 µs for an echo job) and
/// returns it to the pool.
pub struct Finished {
    // Fields drop in this order: the store before the permit that let it take an
    // instance.
    _store: Store<host::JobState>,
    _instance: Option<tokio::sync::OwnedSemaphorePermit>,
    /// For a plugin that may have a spare instance: what to make the next from.
    refill: Option<Refill>,
}

impl Finished {
    /// Releases the store and its instance (resetting the instance), and returns
    /// what [`Sandbox::make_spare`] needs to make the plugin's next instance ready,
    /// for a plugin that may have one.
    pub fn release(self) -> Option<Refill> {
        self.refill
    }
}

impl Sandbox {
    /// Makes a spare instance of `refill`'s plugin, unless it has one, was refused
    /// one, or no pool instance is free at once (see `spare`'s module docs). A
    /// spare that cannot be made (its memory over the ceiling, say) stops the
    /// plugin's spares: its jobs then instantiate, and fail, as they come; a pool
    /// with every instance in use only skips this one.
    pub async fn make_spare(&self, refill: Refill) {
        let Refill {
            agent,
            memory_bytes,
        } = refill;
        let Some(slot) = agent.spare.as_ref().filter(|s| s.wants_one()) else {
            return;
        };
        let permit = match &self.queued_instances {
            Some(slots) => match slots.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => return,
            },
            None => None,
        };
        let state = host::JobState::new(
            // Nothing reaches it (a spare runs no code); were something to, it
            // would go nowhere rather than to some job.
            Arc::new(DiscardEvents),
            JobLimiter::new(memory_bytes),
            self.config.max_result_bytes,
            Authority::none(),
            None,
        );
        let mut store = self.store_with(agent.flavor, state);
        let started = std::time::Instant::now();
        match agent.pre.instantiate_async(&mut store).await {
            Ok(instance) => {
                self.instantiations.observe(started.elapsed().as_secs_f64());
                slot.put(spare::Spare {
                    store,
                    instance,
                    permit,
                    memory_bytes,
                    _counted: spare::Counted::new(&self.spares_held),
                    made: std::time::Instant::now(),
                });
            }
            // Every pool instance in use (delegated children past the reserve):
            // a passing state, tried again after the next job.
            Err(e) if e.is::<wasmtime::PoolConcurrencyLimitError>() => {}
            Err(e) => {
                tracing::debug!(error = %e, "no spare instance for this plugin: instantiating it failed");
                slot.refuse();
            }
        }
    }

    /// A fresh store for one job: its limiter, WASI context and epoch deadline.
    fn new_store(
        &self,
        flavor: Flavor,
        sink: Arc<dyn JobSink>,
        memory_bytes: u64,
        authority: Authority,
    ) -> Store<host::JobState> {
        let state = host::JobState::new(
            sink,
            JobLimiter::new(memory_bytes),
            self.config.max_result_bytes,
            authority,
            Some(self.ticker.awake()),
        );
        self.store_with(flavor, state)
    }

    /// A store holding `state`, with its limiter and epoch deadline set.
    fn store_with(&self, flavor: Flavor, state: host::JobState) -> Store<host::JobState> {
        let mut store = Store::new(self.engine_for(flavor), state);
        store.limiter(|s| &mut s.limiter);
        // Yield to the executor at every epoch tick: that is where cancellation and
        // timeouts (which drop this future) take effect for a guest that never calls
        // the host.
        //
        // Fairness (see `fairness`): a job that keeps reaching deadlines is
        // CPU-bound, and past a few ticks each further slice of it needs one of
        // `cpu_slots`. CPU-bound jobs thus share fewer workers than there are, round
        // robin, and a new or short job, which needs no slot, always finds a worker:
        // 100 spinners cannot starve an echo job.
        store.set_epoch_deadline(1);
        let slots = self.cpu_slots.clone();
        store.epoch_deadline_callback(move |mut ctx| {
            const FREE_YIELDS: u32 = 4;
            let state = ctx.data_mut();
            state.epoch_yields = state.epoch_yields.saturating_add(1);
            if state.epoch_yields <= FREE_YIELDS {
                return Ok(UpdateDeadline::Yield(1));
            }
            Ok(match slots.next_slice(&state.cpu_turn) {
                None => UpdateDeadline::Yield(1),
                Some(wait) => UpdateDeadline::YieldCustom(1, wait),
            })
        });
        store
    }

    /// Creates a job's store and instantiates `agent` in it without calling `run`:
    /// the per-job set-up cost, for benchmarks. Returns the time it took.
    pub async fn instantiate_only(
        &self,
        agent: &PreparedAgent,
        sink: Arc<dyn JobSink>,
    ) -> anyhow::Result<Duration> {
        let started = std::time::Instant::now();
        let mut store = self.new_store(
            agent.flavor,
            sink,
            self.config.job_memory_bytes,
            Authority::none(),
        );
        if agent.flavor == Flavor::Fuel {
            store.set_fuel(u64::MAX)?;
        }
        agent.pre.instantiate_async(&mut store).await?;
        Ok(started.elapsed())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.ticker.stop();
    }
}

/// A linker with WASI (inheriting nothing) and the host side of the WIT world.
fn host_linker(engine: &Engine) -> anyhow::Result<Linker<host::JobState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .map_err(anyhow::Error::from)
        .context("linking WASI")?;
    Agent::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
        .map_err(anyhow::Error::from)
        .context("linking host world")?;
    Ok(linker)
}

fn base_config() -> Config {
    let mut c = Config::new();
    c.wasm_component_model(true);
    c.epoch_interruption(true);
    c
}

/// Bytes of each pooled linear memory kept resident between jobs (a Rust guest's
/// stack and statics live in its first MiB). At most this much per slot stays in
/// memory after a burst, and only the pages jobs touched.
const KEEP_RESIDENT_BYTES: usize = 1 << 20;
/// The same for each pooled table.
const KEEP_RESIDENT_TABLE_BYTES: usize = 64 << 10;

/// Address space the pool's linear memories may reserve. Each slot reserves
/// wasmtime's default 4 GiB plus a 32 MiB guard (so compiled code needs no bounds
/// checks); a pool of 11,000 instances with two slots each (88 TiB) could not be
/// mapped in the 128 TiB of a process, one of 64 TiB can.
const POOL_ADDRESS_SPACE: u64 = 64 << 40;
const MEMORY_SLOT_BYTES: u64 = (4 << 30) + (32 << 20);
const _: () = assert!(
    POOL_ADDRESS_SPACE <= 1 << 47,
    "within a process's 128 TiB of address space"
);

/// Linear-memory slots for a pool of `instances`: two per instance (a component
/// may have more than one memory) as far as [`POOL_ADDRESS_SPACE`] allows, and at
/// least one per instance past that.
fn pooled_memories(instances: u32) -> u32 {
    let fit = u32::try_from(POOL_ADDRESS_SPACE / MEMORY_SLOT_BYTES).unwrap_or(u32::MAX);
    instances.saturating_mul(2).min(fit.max(instances))
}

fn pooling_config(instances: u32, job_memory_bytes: u64) -> Config {
    let mut c = base_config();
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(8))
        .total_memories(pooled_memories(instances))
        .total_tables(instances.saturating_mul(4))
        .total_stacks(instances)
        .max_core_instances_per_component(64)
        .max_memories_per_component(8)
        .max_tables_per_component(32)
        .max_core_instance_size(4 << 20)
        .max_component_instance_size(4 << 20)
        .table_elements(100_000)
        .max_memory_size(usize::try_from(job_memory_bytes).unwrap_or(usize::MAX))
        // A slot's memory is handed back to the kernel after every job by default
        // (madvise): the next job of the slot page-faults it all in again, and each
        // madvise flushes the TLB of every core. Most jobs are short, so instead the
        // low part of each slot stays resident and only the pages the job dirtied
        // are reset (found with the PAGEMAP_SCAN ioctl on Linux 6.7+; older kernels
        // reset this whole part with memset). Measured in BENCHMARKS.md.
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_TABLE_BYTES)
        .pagemap_scan(wasmtime::Enabled::Auto);
    c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    c
}

/// The message of a guest trap: wasmtime's trap code and the guest backtrace when
/// there is one.
fn trap_message(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!("plugin trapped: {trap}"),
        None => format!("plugin failed: {e:#}"),
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a pool of 11,000 instances asked for 22,000 memory slots (88 TiB
    /// of address space), could not be mapped, and the host fell back to on-demand
    /// allocation, which `vm.max_map_count` caps below 10,000 concurrent jobs.
    #[test]
    fn a_pool_for_ten_thousand_jobs_fits_the_address_space() {
        assert_eq!(pooled_memories(1000), 2000, "two slots each while they fit");
        let big = 11_112;
        let slots = u64::from(pooled_memories(big));
        assert!(slots >= u64::from(big), "at least one slot per instance");
        assert!(slots * MEMORY_SLOT_BYTES <= POOL_ADDRESS_SPACE);
    }
}
