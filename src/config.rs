//! Runtime configuration: a TOML file (`--config FILE`) overlaid by command-line
//! flags. Owns defaults and validation of operator settings; holds no live state.

use anyhow::Context;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Everything an operator can set. Field docs give the TOML key and default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `listen`: WebSocket address (default `127.0.0.1:7777`).
    pub listen: SocketAddr,
    /// `plugins`: the plugin folder (default `plugins`).
    pub plugins: PathBuf,
    /// `data`: the data folder for the SQLite store and the compiled-code cache
    /// (default `data`).
    pub data: PathBuf,
    /// `in_memory`: keep events and jobs in memory only (default false).
    pub in_memory: bool,
    /// `metrics`: serve Prometheus metrics at `GET /metrics` on the WebSocket port,
    /// without authentication (default true).
    pub metrics: bool,
    /// `[tokens]`: bearer token → principal.
    pub tokens: BTreeMap<String, String>,
    /// `observers`: principals that may list and subscribe to every principal's jobs
    /// (never cancel them). Default: none; each principal sees its own jobs only.
    pub observers: Vec<String>,
    /// `heartbeat_interval_sec`: how often the runtime pings (default 30).
    pub heartbeat_interval_sec: u64,
    /// `resume_window_sec`: advertised resume window (default 600).
    pub resume_window_sec: u64,
    /// `idempotency_ttl_sec`: how long an idempotency key is remembered (default
    /// 86400).
    pub idempotency_ttl_sec: u64,
    /// `lease_expiry_grace_sec`: how long after its lease's `expires_at` a job that
    /// makes no authority-bearing call may run on before the runtime ends it
    /// (default 0: at once).
    pub lease_expiry_grace_sec: u64,
    /// `workspace`: the folder `fs.*` capabilities work in (jobs see paths relative to
    /// it). Absent: no file access for any job.
    pub workspace: Option<PathBuf>,
    /// `[tools.NAME]`: tools plugins may call through `tool.call`.
    pub tools: BTreeMap<String, ToolConfig>,
    /// `[net]`: outgoing HTTP for `net.fetch`.
    pub net: NetConfig,
    /// `[models]`: the model gateway for `model.use`; absent, no model calls.
    pub models: Option<ModelsConfig>,
    /// `[credentials]`: a provisioner of per-job credentials (spec §9.8); absent,
    /// `provisioned_credentials` is not offered.
    pub credentials: Option<CredentialsConfig>,
    /// `[limits]`.
    pub limits: Limits,
    /// `[retention]`: how long finished jobs are kept and how large the store may
    /// grow (the resume window and idempotency-key lifetime are the top-level
    /// `resume_window_sec` and `idempotency_ttl_sec`).
    pub retention: Retention,
    /// The principal of a peer whose token matches none (only for stdio with no
    /// tokens configured, where the peer is the parent process). Not settable from
    /// the file.
    #[serde(skip)]
    pub anonymous_principal: Option<String>,
}

/// Outgoing HTTP (`[net]` table).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetConfig {
    /// `allow_private`: let jobs reach loopback, private and link-local addresses
    /// (default false).
    pub allow_private: bool,
    /// `max_response_mib`: cap on a response body (default 8).
    pub max_response_mib: usize,
    /// `timeout_sec`: per request (default 30).
    pub timeout_sec: u64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            allow_private: false,
            max_response_mib: 8,
            timeout_sec: 30,
        }
    }
}

/// The model gateway (`[models]` table).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    /// `url`: an OpenAI-compatible base URL (`…/v1`); requests go to
    /// `{url}/chat/completions`.
    pub url: String,
    /// `key_env`: the environment variable holding the API key (the key never
    /// enters a sandbox and never appears in events).
    #[serde(default)]
    pub key_env: Option<String>,
    /// `currency` prices are in (default `USD`).
    #[serde(default = "default_currency")]
    pub currency: String,
    /// `timeout_sec` per call (default 120).
    #[serde(default = "default_model_timeout")]
    pub timeout_sec: u64,
    /// `[models.prices."NAME"]`: the models offered and their price per 1,000
    /// tokens, as decimal strings: `input_per_1k = "0.0005"`, `output_per_1k = "0.0015"`.
    pub prices: BTreeMap<String, PriceConfig>,
}

fn default_currency() -> String {
    "USD".into()
}

fn default_model_timeout() -> u64 {
    120
}

/// The credential provisioner (`[credentials]` table): a LiteLLM proxy's key API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsConfig {
    /// `admin_url`: the proxy's base URL (`/key/generate`, `/key/delete` below it).
    pub admin_url: String,
    /// `admin_key_env`: the environment variable holding the proxy's master key.
    #[serde(default)]
    pub admin_key_env: Option<String>,
    /// `endpoint`: where the minted keys are valid (shown to the client).
    pub endpoint: String,
    /// `profile`: the API the endpoint speaks (default `openai`).
    #[serde(default = "default_profile")]
    pub profile: String,
    /// `currency` of the proxy's spend caps (default `USD`).
    #[serde(default = "default_currency")]
    pub currency: String,
}

fn default_profile() -> String {
    "openai".into()
}

/// One model's price.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    /// Per 1,000 prompt tokens, a decimal string.
    pub input_per_1k: String,
    /// Per 1,000 completion tokens, a decimal string.
    pub output_per_1k: String,
}

/// One operator-registered tool (`[tools.NAME]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolConfig {
    /// `plugin`: the component that implements it, `name` or `name@version`; it is
    /// run like an agent (its `run` export) with the call's arguments as input and
    /// no authority of its own.
    pub plugin: String,
}

/// What the store keeps and for how long (`[retention]` table). A sweep enforces it
/// every `sweep_interval_sec`; it removes exactly this, nothing else:
/// - sessions without a connection for longer than `resume_window_sec`, with their
///   envelopes except the history of jobs they submitted that are still kept;
/// - finished jobs that ended more than `jobs_sec` ago, with their history (once no
///   session that saw it can still be resumed) and their idempotency keys;
/// - idempotency keys older than `idempotency_ttl_sec`;
/// - while the store holds more than `max_store_mib`, finished jobs whose session
///   can no longer be resumed, the one that ended first first, until it holds less
///   (running jobs and what a resumable session may still replay are never
///   removed for the cap).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// `jobs_sec`: how long a finished job (its record, events and result) is kept
    /// after it ended (default 604800: 7 days).
    pub jobs_sec: u64,
    /// `max_store_mib`: cap on the store's size (default 4096; 0: no cap).
    pub max_store_mib: u64,
    /// `sweep_interval_sec`: how often the sweep runs (default 60).
    pub sweep_interval_sec: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            jobs_sec: 7 * 86_400,
            max_store_mib: 4096,
            sweep_interval_sec: 60,
        }
    }
}

/// Resource limits (`[limits]` table).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// `job_memory_mib`: per-job ceiling over all of a job's linear memories
    /// (default 256); a plugin sidecar may lower it.
    pub job_memory_mib: u64,
    /// `max_runtime_sec`: the longest `max_runtime_sec` a client may ask for, and the
    /// limit of jobs that ask for none (default 86400).
    pub max_runtime_sec: u64,
    /// `max_inbound_frame_kib`: inbound frames above this are refused and the
    /// connection closed with 1009 (default 1024).
    pub max_inbound_frame_kib: usize,
    /// `max_result_mib`: cap on a streamed result's total size (default 256).
    pub max_result_mib: u64,
    /// `epoch_tick_ms`: the epoch ticker's period; bounds cancel latency (default 2).
    pub epoch_tick_ms: u64,
    /// `outbound_queue`: frames buffered per connection before a job's event
    /// emission waits (default 1024).
    pub outbound_queue: usize,
    /// `max_unacked_events`: how far a client that acknowledges may fall behind
    /// before its session's jobs wait for it (default 10000).
    pub max_unacked_events: u64,
    /// `pool_instances`: component instances the pooling allocator reserves for
    /// (default 1000; 0 disables pooling).
    pub pool_instances: u32,
    /// `max_sessions_per_principal`: connected sessions one principal may hold at
    /// once; a `session.hello` past it is refused (default 1024).
    pub max_sessions_per_principal: usize,
    /// `max_running_jobs_per_principal`: jobs one principal may have pending or
    /// running at once; a `job.submit` past it is refused (default 10000).
    pub max_running_jobs_per_principal: usize,
    /// `slow_client_timeout_sec`: a client that has read nothing while its queue
    /// stayed full for this long is disconnected; its jobs go on and it may resume
    /// (default 30).
    pub slow_client_timeout_sec: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7777)),
            plugins: PathBuf::from("plugins"),
            data: PathBuf::from("data"),
            in_memory: false,
            metrics: true,
            tokens: BTreeMap::new(),
            observers: Vec::new(),
            heartbeat_interval_sec: 30,
            resume_window_sec: 600,
            idempotency_ttl_sec: 86_400,
            lease_expiry_grace_sec: 0,
            workspace: None,
            tools: BTreeMap::new(),
            net: NetConfig::default(),
            models: None,
            credentials: None,
            limits: Limits::default(),
            retention: Retention::default(),
            anonymous_principal: None,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            job_memory_mib: 256,
            max_runtime_sec: 86_400,
            max_inbound_frame_kib: 1024,
            max_result_mib: 256,
            epoch_tick_ms: 2,
            outbound_queue: 1024,
            max_unacked_events: 10_000,
            pool_instances: 1000,
            max_sessions_per_principal: 1024,
            max_running_jobs_per_principal: 10_000,
            slow_client_timeout_sec: 30,
        }
    }
}

impl Config {
    /// Reads a TOML file; relative paths in it are taken relative to the file.
    pub fn from_file(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let mut cfg: Config = toml::from_str(&text)
            .with_context(|| format!("parsing config file {}", path.display()))?;
        if let Some(base) = path.parent() {
            for p in [&mut cfg.plugins, &mut cfg.data]
                .into_iter()
                .chain(cfg.workspace.as_mut())
            {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks operator settings for values that cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.heartbeat_interval_sec >= 1,
            "heartbeat_interval_sec must be at least 1"
        );
        anyhow::ensure!(
            self.limits.job_memory_mib >= 1,
            "limits.job_memory_mib must be at least 1"
        );
        anyhow::ensure!(
            self.limits.epoch_tick_ms >= 1,
            "limits.epoch_tick_ms must be at least 1"
        );
        anyhow::ensure!(
            self.limits.outbound_queue >= 1,
            "limits.outbound_queue must be at least 1"
        );
        anyhow::ensure!(
            self.limits.max_inbound_frame_kib >= 1,
            "limits.max_inbound_frame_kib must be at least 1"
        );
        anyhow::ensure!(
            self.retention.sweep_interval_sec >= 1,
            "retention.sweep_interval_sec must be at least 1"
        );
        for (token, principal) in &self.tokens {
            anyhow::ensure!(!token.is_empty(), "a token may not be empty");
            anyhow::ensure!(!principal.is_empty(), "token maps to an empty principal");
        }
        Ok(())
    }

    /// Adds `TOKEN=PRINCIPAL` pairs from the command line.
    pub fn add_token_flags(&mut self, flags: &[String]) -> anyhow::Result<()> {
        for flag in flags {
            let (token, principal) = flag
                .split_once('=')
                .with_context(|| format!("--token {flag:?}: expected TOKEN=PRINCIPAL"))?;
            anyhow::ensure!(
                !token.is_empty() && !principal.is_empty(),
                "--token {flag:?}: token and principal must be non-empty"
            );
            self.tokens.insert(token.to_owned(), principal.to_owned());
        }
        Ok(())
    }

    /// Per-job memory ceiling in bytes.
    pub fn job_memory_bytes(&self) -> u64 {
        self.limits.job_memory_mib.saturating_mul(1 << 20)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_file_overrides_defaults_and_resolves_paths() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("arcp.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nplugins = \"p\"\n[tokens]\nsecret = \"alice\"\n[limits]\njob_memory_mib = 64\n",
        )
        .unwrap();
        let cfg = Config::from_file(&file).unwrap();
        assert_eq!(cfg.listen.port(), 9000);
        assert_eq!(cfg.plugins, dir.path().join("p"));
        assert_eq!(cfg.tokens["secret"], "alice");
        assert_eq!(cfg.job_memory_bytes(), 64 << 20);
    }

    #[test]
    fn unknown_keys_and_bad_tokens_are_refused() {
        assert!(toml::from_str::<Config>("nope = 1").is_err());
        let mut cfg = Config::default();
        assert!(cfg.add_token_flags(&["novalue".into()]).is_err());
        assert!(cfg.add_token_flags(&["=p".into()]).is_err());
        cfg.add_token_flags(&["t=p".into()]).unwrap();
        assert_eq!(cfg.tokens["t"], "p");
    }
}
