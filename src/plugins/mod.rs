//! The plugin folder and the agent registry.
//!
//! Owns the mapping from `name@version` to a prepared component: scanning
//! `plugins/` for `name@version.wasm` files and their optional `name@version.toml`
//! sidecars, loading each through the sandbox (compiled-code cache included),
//! choosing default versions, resolving a client's agent reference, and watching the
//! folder so that new files appear in the next session's inventory. A bad file is
//! reported with its path and reason and never stops the others from loading. It must
//! not run plugins or know about sessions.

mod manifest;

pub use manifest::Manifest;

use crate::error::{ArcpError, ErrorCode};
use crate::protocol::AgentEntry;
use crate::sandbox::{Flavor, PreparedAgent, Sandbox};
use anyhow::Context as _;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use wasmtime::component::Component;

/// Largest plugin file the registry will read.
pub const MAX_PLUGIN_BYTES: u64 = 256 << 20;

/// One loaded `name@version`.
#[derive(Debug)]
pub struct Plugin {
    /// Agent name.
    pub name: String,
    /// Agent version.
    pub version: String,
    /// The `.wasm` file.
    pub path: PathBuf,
    /// The sidecar manifest (defaults when there is none).
    pub manifest: Manifest,
    /// The prepared component.
    pub agent: PreparedAgent,
    /// sha256 of the file, hex.
    pub sha256: String,
    /// Whether the compiled code came from the on-disk cache.
    pub from_cache: bool,
    /// How long loading took (compile or cache load, plus validation).
    pub load_time: Duration,
    /// The fuel-metered variant, compiled on first use.
    fuel_agent: std::sync::OnceLock<Result<PreparedAgent, String>>,
}

impl Plugin {
    /// `name@version`.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// A file that could not be loaded, and why.
#[derive(Debug, Clone)]
pub struct LoadError {
    /// The offending file.
    pub path: PathBuf,
    /// Why it was refused.
    pub reason: String,
}

/// An immutable snapshot of the registry: what a session's welcome advertises and
/// what its submits resolve against.
#[derive(Debug, Default)]
pub struct Inventory {
    agents: BTreeMap<String, AgentVersions>,
}

#[derive(Debug)]
struct AgentVersions {
    /// Ascending by version order.
    versions: Vec<Arc<Plugin>>,
    default: String,
}

impl Inventory {
    /// The welcome's `agents` list.
    pub fn entries(&self) -> Vec<AgentEntry> {
        self.agents
            .iter()
            .map(|(name, v)| AgentEntry {
                name: name.clone(),
                versions: v.versions.iter().map(|p| p.version.clone()).collect(),
                default: Some(v.default.clone()),
            })
            .collect()
    }

    /// Every loaded plugin.
    pub fn plugins(&self) -> impl Iterator<Item = &Arc<Plugin>> {
        self.agents.values().flat_map(|v| v.versions.iter())
    }

    /// Resolves `name` or `name@version` (spec §7.5).
    pub fn resolve(&self, reference: &str) -> Result<Arc<Plugin>, ArcpError> {
        let (name, version) = parse_agent_ref(reference)?;
        let Some(agent) = self.agents.get(name) else {
            return Err(ArcpError::new(
                ErrorCode::AgentNotAvailable,
                format!("agent {name:?} is not registered"),
            )
            .with_detail("agent", name));
        };
        let wanted = version.unwrap_or(&agent.default);
        agent
            .versions
            .iter()
            .find(|p| p.version == wanted)
            .cloned()
            .ok_or_else(|| {
                ArcpError::new(
                    ErrorCode::AgentVersionNotAvailable,
                    format!("agent {name:?} has no version {wanted:?}"),
                )
                .with_detail("agent", name)
                .with_detail(
                    "available_versions",
                    agent
                        .versions
                        .iter()
                        .map(|p| p.version.clone())
                        .collect::<Vec<_>>(),
                )
            })
    }
}

fn check_size(size: u64) -> anyhow::Result<()> {
    anyhow::ensure!(
        size <= MAX_PLUGIN_BYTES,
        "file is {size} bytes, over the {MAX_PLUGIN_BYTES}-byte limit"
    );
    Ok(())
}

fn check_header(bytes: &[u8]) -> anyhow::Result<()> {
    anyhow::ensure!(
        bytes.starts_with(b"\0asm"),
        "not a WebAssembly file (bad magic number)"
    );
    anyhow::ensure!(
        bytes.get(4..8) != Some(&[1, 0, 0, 0]),
        "a core WebAssembly module, not a component: build it as a component (wasm32-wasip2, or `wasm-tools component new`)"
    );
    Ok(())
}

/// The `arcp:agent` package versions a component imports (e.g. `1.1.0`).
fn arcp_versions(sandbox: &Sandbox, component: &Component) -> Vec<String> {
    let mut versions: Vec<String> = component
        .component_type()
        .imports(sandbox.engine())
        .filter_map(|(name, _)| name.strip_prefix("arcp:agent/"))
        .filter_map(|rest| rest.split_once('@').map(|(_, v)| v.to_owned()))
        .collect();
    versions.sort();
    versions.dedup();
    versions
}

/// Refuses a component built against an `arcp:agent` version this host does not
/// accept, naming the versions it does (clearer than the unresolved import).
fn check_wit_version(sandbox: &Sandbox, component: &Component) -> anyhow::Result<()> {
    for version in arcp_versions(sandbox, component) {
        let package = format!("arcp:agent@{version}");
        anyhow::ensure!(
            crate::sandbox::ACCEPTED_WIT_VERSIONS.contains(&package.as_str()),
            "built against {package}; this host accepts {}",
            crate::sandbox::ACCEPTED_WIT_VERSIONS.join(", ")
        );
    }
    Ok(())
}

/// What `arcp-host check` found in a plugin file that would load.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// `name@version` from the file name, when it follows the folder's convention.
    pub reference: Option<String>,
    /// The `arcp:agent` versions it is built against.
    pub wit_versions: Vec<String>,
    /// Every import, by name.
    pub imports: Vec<String>,
    /// Every export, by name.
    pub exports: Vec<String>,
    /// Whether a sidecar manifest sits beside it (and parses).
    pub has_manifest: bool,
}

/// Runs every check the plugin folder applies to one file (size, WebAssembly
/// component rather than core module, compilation, the WIT package version, every
/// import provided by this host, the `run` export, a sidecar manifest that parses),
/// without touching the compiled-code cache. The error says why it would not load.
pub fn check_file(sandbox: &Sandbox, path: &Path) -> anyhow::Result<CheckReport> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    check_size(size)?;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    check_header(&bytes)?;
    let (component, _) = sandbox
        .load_component(&bytes, None, Flavor::Plain)
        .context("compiling component")?;
    check_wit_version(sandbox, &component)?;
    sandbox
        .prepare(&component, Flavor::Plain)
        .context("validating component")?;
    let manifest = Manifest::for_plugin(path)?;
    let ty = component.component_type();
    let reference = path
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|stem| stem.split_once('@'))
        .filter(|(name, version)| valid_name(name) && valid_version(version))
        .map(|(name, version)| format!("{name}@{version}"));
    Ok(CheckReport {
        reference,
        wit_versions: arcp_versions(sandbox, &component),
        imports: ty
            .imports(sandbox.engine())
            .map(|(n, _)| n.to_owned())
            .collect(),
        exports: ty
            .exports(sandbox.engine())
            .map(|(n, _)| n.to_owned())
            .collect(),
        has_manifest: manifest != Manifest::default(),
    })
}

/// Checks an agent reference against the spec grammar (§7.5):
/// `name ::= [a-z0-9][a-z0-9._-]*`, `version ::= [a-zA-Z0-9.+_-]+`.
pub fn parse_agent_ref(reference: &str) -> Result<(&str, Option<&str>), ArcpError> {
    let (name, version) = match reference.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (reference, None),
    };
    if !valid_name(name) {
        return Err(ArcpError::invalid(format!(
            "agent {reference:?}: name must match [a-z0-9][a-z0-9._-]*"
        )));
    }
    if let Some(v) = version
        && !valid_version(v)
    {
        return Err(ArcpError::invalid(format!(
            "agent {reference:?}: version must match [a-zA-Z0-9.+_-]+"
        )));
    }
    Ok((name, version))
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        && name.len() <= 128
}

fn valid_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '_' | '-'))
}

/// Version order: SemVer where both sides parse, plain text otherwise.
fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    match (semver::Version::parse(a), semver::Version::parse(b)) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => std::cmp::Ordering::Greater,
        (Err(_), Ok(_)) => std::cmp::Ordering::Less,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

/// The live registry: the plugin folder, the current inventory and the load errors.
pub struct Registry {
    sandbox: Arc<Sandbox>,
    dir: PathBuf,
    cache_dir: Option<PathBuf>,
    current: RwLock<Arc<Inventory>>,
    errors: RwLock<Vec<LoadError>>,
    /// Loaded plugins by file, with the sha256 they were loaded from, so that a
    /// rescan reloads only files whose bytes changed.
    loaded: Mutex<HashMap<PathBuf, Arc<Plugin>>>,
    /// Changes the watcher has seen in the folder, counted as they arrive.
    changes_seen: Arc<std::sync::atomic::AtomicU64>,
    /// Of those, how many the inventory reflects (set after each rescan).
    changes_loaded: tokio::sync::watch::Sender<u64>,
}

/// How long a submit naming an unknown agent waits for a rescan already under way
/// (a file just dropped into the folder) before answering `AGENT_NOT_AVAILABLE`.
const PENDING_RESCAN_WAIT: Duration = Duration::from_secs(10);

impl Registry {
    /// A registry over `dir`; compiled code is cached in `cache_dir` when given.
    pub fn new(sandbox: Arc<Sandbox>, dir: PathBuf, cache_dir: Option<PathBuf>) -> Registry {
        Registry {
            sandbox,
            dir,
            cache_dir,
            current: RwLock::new(Arc::new(Inventory::default())),
            errors: RwLock::new(Vec::new()),
            loaded: Mutex::new(HashMap::new()),
            changes_seen: Default::default(),
            changes_loaded: tokio::sync::watch::channel(0).0,
        }
    }

    /// Resolves `reference` like [`Inventory::resolve`], except that when it names
    /// an agent or version not loaded yet while the watcher has seen folder changes
    /// that are not loaded yet, it waits (at most [`PENDING_RESCAN_WAIT`]) for them
    /// first: "copy into `plugins/`, then submit" works without a sleep between.
    pub async fn resolve_when_loaded(&self, reference: &str) -> Result<Arc<Plugin>, ArcpError> {
        use std::sync::atomic::Ordering;
        let err = match self.inventory().resolve(reference) {
            Ok(plugin) => return Ok(plugin),
            Err(e) => e,
        };
        let missing = matches!(
            err.code,
            ErrorCode::AgentNotAvailable | ErrorCode::AgentVersionNotAvailable
        );
        let seen = self.changes_seen.load(Ordering::SeqCst);
        if !missing || *self.changes_loaded.borrow() >= seen {
            return Err(err);
        }
        let mut loaded = self.changes_loaded.subscribe();
        let _ = tokio::time::timeout(PENDING_RESCAN_WAIT, loaded.wait_for(|n| *n >= seen)).await;
        self.inventory().resolve(reference)
    }

    /// The plugin folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current inventory snapshot.
    pub fn inventory(&self) -> Arc<Inventory> {
        self.current.read().map(|g| g.clone()).unwrap_or_default()
    }

    /// Files that failed to load in the last scan.
    pub fn errors(&self) -> Vec<LoadError> {
        self.errors.read().map(|g| g.clone()).unwrap_or_default()
    }

    /// Rescans the folder and swaps in the new inventory. Blocking (it may compile):
    /// call from a blocking thread. Returns the new inventory.
    pub fn rescan(&self) -> Arc<Inventory> {
        let started = Instant::now();
        let mut errors = Vec::new();
        let mut found: Vec<(String, String, PathBuf)> = Vec::new();
        match std::fs::read_dir(&self.dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
                        continue;
                    }
                    let stem = path
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .unwrap_or_default();
                    match stem.split_once('@') {
                        Some((name, version)) if valid_name(name) && valid_version(version) => {
                            found.push((name.to_owned(), version.to_owned(), path));
                        }
                        _ => errors.push(LoadError {
                            path,
                            reason:
                                "file name must be NAME@VERSION.wasm (name [a-z0-9][a-z0-9._-]*)"
                                    .into(),
                        }),
                    }
                }
            }
            Err(e) => errors.push(LoadError {
                path: self.dir.clone(),
                reason: format!("cannot read plugin folder: {e}"),
            }),
        }

        let previous = self.loaded.lock().map(|g| g.clone()).unwrap_or_default();
        let mut loaded = HashMap::new();
        for (name, version, path) in found {
            match self.load_one(&name, &version, &path, previous.get(&path)) {
                Ok(plugin) => {
                    loaded.insert(path, plugin);
                }
                Err(e) => errors.push(LoadError {
                    path,
                    reason: format!("{e:#}"),
                }),
            }
        }

        let mut agents: BTreeMap<String, Vec<Arc<Plugin>>> = BTreeMap::new();
        for plugin in loaded.values() {
            agents
                .entry(plugin.name.clone())
                .or_default()
                .push(plugin.clone());
        }
        let agents = agents
            .into_iter()
            .map(|(name, mut versions)| {
                versions.sort_by(|a, b| version_cmp(&a.version, &b.version));
                let default = versions
                    .iter()
                    .rev()
                    .find(|p| p.manifest.default)
                    .or(versions.last())
                    .map(|p| p.version.clone())
                    .unwrap_or_default();
                (name, AgentVersions { versions, default })
            })
            .collect();
        let inventory = Arc::new(Inventory { agents });

        for e in &errors {
            tracing::warn!(path = %e.path.display(), reason = %e.reason, "plugin not loaded");
        }
        tracing::info!(
            plugins = loaded.len(),
            failed = errors.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "plugin folder scanned"
        );
        if let Ok(mut g) = self.loaded.lock() {
            *g = loaded;
        }
        if let Ok(mut g) = self.errors.write() {
            *g = errors;
        }
        if let Ok(mut g) = self.current.write() {
            *g = inventory.clone();
        }
        inventory
    }

    fn load_one(
        &self,
        name: &str,
        version: &str,
        path: &Path,
        previous: Option<&Arc<Plugin>>,
    ) -> anyhow::Result<Arc<Plugin>> {
        let started = Instant::now();
        let size = std::fs::metadata(path)?.len();
        check_size(size)?;
        let bytes = std::fs::read(path)?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let manifest = Manifest::for_plugin(path)?;
        if let Some(prev) = previous
            && prev.sha256 == sha256
            && prev.manifest == manifest
        {
            return Ok(prev.clone());
        }
        check_header(&bytes)?;
        let (component, from_cache) = self
            .sandbox
            .load_component(&bytes, self.cache_dir.as_deref(), Flavor::Plain)
            .context("compiling component")?;
        check_wit_version(&self.sandbox, &component)?;
        let agent = self
            .sandbox
            .prepare(&component, Flavor::Plain)
            .context("validating component")?;
        // A component whose instantiation runs none of its code may have its next
        // instance made ready before its job comes (`sandbox::spare`).
        let agent = match crate::sandbox::runs_code_when_instantiated(&bytes) {
            true => agent,
            false => agent.with_spares(),
        };
        let plugin = Plugin {
            name: name.to_owned(),
            version: version.to_owned(),
            path: path.to_owned(),
            manifest,
            agent,
            sha256,
            from_cache,
            load_time: started.elapsed(),
            fuel_agent: std::sync::OnceLock::new(),
        };
        tracing::info!(
            plugin = %plugin.reference(),
            cached = from_cache,
            ms = plugin.load_time.as_secs_f64() * 1e3,
            "plugin loaded"
        );
        Ok(Arc::new(plugin))
    }

    /// The fuel-metered variant of `plugin` (for jobs with a fuel budget), compiled
    /// (or loaded from the cache) on first use from the same file, whose bytes must
    /// still be the ones loaded. Blocking.
    pub fn fuel_variant(&self, plugin: &Plugin) -> Result<PreparedAgent, String> {
        plugin
            .fuel_agent
            .get_or_init(|| {
                let bytes = std::fs::read(&plugin.path)
                    .map_err(|e| format!("{}: {e}", plugin.path.display()))?;
                if hex::encode(Sha256::digest(&bytes)) != plugin.sha256 {
                    return Err(format!(
                        "{} changed since it was loaded",
                        plugin.path.display()
                    ));
                }
                let (component, _) = self
                    .sandbox
                    .load_component(&bytes, self.cache_dir.as_deref(), Flavor::Fuel)
                    .map_err(|e| format!("compiling with fuel: {e:#}"))?;
                self.sandbox
                    .prepare(&component, Flavor::Fuel)
                    .map_err(|e| format!("validating with fuel: {e:#}"))
            })
            .clone()
    }

    /// Watches the plugin folder and rescans (debounced) on every change, until the
    /// returned watcher is dropped.
    pub fn watch(self: &Arc<Self>) -> anyhow::Result<notify::RecommendedWatcher> {
        use notify::Watcher as _;
        use std::sync::atomic::Ordering;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let seen = Arc::clone(&self.changes_seen);
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if res.is_ok() {
                    // Counted here, on the watcher's thread, as soon as the kernel
                    // reports the change: a submit arriving during the debounce
                    // below knows to wait for the rescan.
                    seen.fetch_add(1, Ordering::SeqCst);
                    let _ = tx.send(());
                }
            })?;
        watcher
            .watch(&self.dir, notify::RecursiveMode::NonRecursive)
            .with_context(|| format!("watching {}", self.dir.display()))?;
        let registry = Arc::clone(self);
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Debounce: a copy into the folder is several events.
                tokio::time::sleep(Duration::from_millis(150)).await;
                while rx.try_recv().is_ok() {}
                let covered = registry.changes_seen.load(Ordering::SeqCst);
                let r = registry.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || r.rescan()).await {
                    tracing::error!(error = %e, "plugin rescan panicked");
                }
                registry.changes_loaded.send_replace(covered);
            }
        });
        Ok(watcher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_references_follow_the_spec_grammar() {
        assert_eq!(parse_agent_ref("echo").unwrap(), ("echo", None));
        assert_eq!(
            parse_agent_ref("echo@1.0.0").unwrap(),
            ("echo", Some("1.0.0"))
        );
        assert_eq!(
            parse_agent_ref("a.b-c_d@1.0.0+build").unwrap().1,
            Some("1.0.0+build")
        );
        for bad in ["", "Echo", "-x", "echo@", "echo@1 0", "echo@@1", "e/cho"] {
            let err = parse_agent_ref(bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidRequest, "{bad}");
        }
    }

    #[test]
    fn versions_order_by_semver_then_text() {
        use std::cmp::Ordering::*;
        assert_eq!(version_cmp("1.10.0", "1.9.0"), Greater);
        assert_eq!(version_cmp("2.0.0-rc.1", "2.0.0"), Less);
        assert_eq!(version_cmp("1.0.0", "latest"), Greater);
    }
}
