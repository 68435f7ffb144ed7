//! Prometheus metrics, served as text at `GET /metrics` on the WebSocket port.
//!
//! Owns the registry and the counters and histograms that the parts doing the work
//! update (jobs submitted and ended, events, job durations, instantiation times).
//! Gauges of current state (jobs by state and agent, sessions, plugins, memory) are
//! read from the runtime when scraped, by [`crate::runtime::Runtime::render_metrics`].
//! Decides nothing and stores nothing.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels naming an agent (`name@version`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentLabels {
    /// `name@version`.
    pub agent: String,
}

/// Labels of a job count: its agent and state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// `name@version`.
    pub agent: String,
    /// `pending`, `running`, `success`, `error`, `cancelled`, `timed_out`.
    pub state: String,
}

/// Every metric the runtime exports.
pub struct Metrics {
    registry: Registry,
    /// Jobs held now, by state and agent (set at each scrape).
    pub jobs: Family<JobLabels, Gauge>,
    /// Jobs accepted, by agent.
    pub submitted: Family<AgentLabels, Counter>,
    /// Jobs ended, by agent and final state.
    pub ended: Family<JobLabels, Counter>,
    /// Seconds from acceptance to the terminal message, by agent.
    pub duration: Family<AgentLabels, Histogram>,
    /// Linear memory a job's sandbox reserved at its peak, by agent.
    pub job_memory: Family<AgentLabels, Histogram>,
    /// Fuel burnt by fuel-metered jobs, by agent.
    pub fuel: Family<AgentLabels, Counter>,
    /// `job.event`s sent (to submitters; subscribers' copies not counted).
    pub events: Counter,
    /// Sessions with a connection attached (set at each scrape).
    pub sessions_connected: Gauge,
    /// Sessions known, including detached ones still resumable (set at each scrape).
    pub sessions: Gauge,
    /// Plugins loaded (set at each scrape).
    pub plugins_loaded: Gauge,
    /// Plugin files that failed to load (set at each scrape).
    pub plugin_load_errors: Gauge,
    /// The process's resident memory in bytes (set at each scrape).
    pub resident_bytes: Gauge,
}

impl Metrics {
    /// The registry with every metric, including the sandbox's histogram of
    /// instantiation times, its count of jobs started in spare instances and its
    /// gauge of spares held.
    pub fn new(
        instantiation_seconds: Histogram,
        (spares_taken, spares_held): (Counter, Gauge),
    ) -> Metrics {
        let mut registry = Registry::with_prefix("arcp");
        let m = Metrics {
            jobs: Family::default(),
            submitted: Family::default(),
            ended: Family::default(),
            // 1 ms to ~4.7 h (1 ms × 2^24).
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(1e-3, 2.0, 25))
            }),
            // 64 KiB (one wasm page) to 4 GiB.
            job_memory: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(65536.0, 2.0, 17))
            }),
            fuel: Family::default(),
            events: Counter::default(),
            sessions_connected: Gauge::default(),
            sessions: Gauge::default(),
            plugins_loaded: Gauge::default(),
            plugin_load_errors: Gauge::default(),
            resident_bytes: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("jobs", "Jobs held, by state and agent", m.jobs.clone());
        registry.register(
            "jobs_submitted",
            "Jobs accepted, by agent",
            m.submitted.clone(),
        );
        registry.register(
            "jobs_ended",
            "Jobs ended, by agent and final state",
            m.ended.clone(),
        );
        registry.register(
            "job_duration_seconds",
            "Seconds from acceptance to the terminal message, by agent",
            m.duration.clone(),
        );
        registry.register(
            "instantiation_seconds",
            "Seconds to instantiate a job's sandbox (or a spare instance)",
            instantiation_seconds,
        );
        registry.register(
            "spare_instances_taken",
            "Jobs that started in an instance of their plugin made ready before they came",
            spares_taken,
        );
        registry.register(
            "spare_instances",
            "Instances made ready for their plugin's next job, held now",
            spares_held,
        );
        registry.register(
            "job_memory_bytes",
            "Linear memory a job's sandbox reserved at its peak, by agent",
            m.job_memory.clone(),
        );
        registry.register(
            "fuel_consumed",
            "Fuel burnt by fuel-metered jobs, by agent",
            m.fuel.clone(),
        );
        registry.register("events", "Job events sent", m.events.clone());
        registry.register(
            "sessions_connected",
            "Sessions with a connection",
            m.sessions_connected.clone(),
        );
        registry.register(
            "sessions",
            "Sessions known, including detached ones still resumable",
            m.sessions.clone(),
        );
        registry.register("plugins_loaded", "Plugins loaded", m.plugins_loaded.clone());
        registry.register(
            "plugin_load_errors",
            "Plugin files that failed to load",
            m.plugin_load_errors.clone(),
        );
        registry.register(
            "process_resident_bytes",
            "Resident memory of the process",
            m.resident_bytes.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// The process's resident memory, from `/proc/self/statm` (0 where there is none).
pub fn resident_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf only reads a configuration value.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages.saturating_mul(u64::try_from(page).unwrap_or(4096))
}
