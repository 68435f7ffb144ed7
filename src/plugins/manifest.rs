//! The optional sidecar manifest `name@version.toml` beside a plugin.

use anyhow::Context as _;
use serde::Deserialize;
use std::path::Path;

/// What an operator may say about one plugin version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Manifest {
    /// Shown in `arcp-host agents`.
    pub description: Option<String>,
    /// Marks the version a bare name resolves to.
    pub default: bool,
    /// Lowers the runtime's per-job memory ceiling for this plugin (MiB).
    pub memory_mib: Option<u64>,
    /// Lowers the longest run time of this plugin's jobs (seconds).
    pub max_runtime_sec: Option<u64>,
    /// The lease namespaces this plugin may ever be granted (its ceiling); absent
    /// means no ceiling beyond the client's lease.
    pub allowed_namespaces: Option<Vec<String>>,
}

impl Manifest {
    /// Reads the sidecar of `wasm_path` if there is one.
    pub fn for_plugin(wasm_path: &Path) -> anyhow::Result<Manifest> {
        let sidecar = wasm_path.with_extension("toml");
        if !sidecar.exists() {
            return Ok(Manifest::default());
        }
        let text = std::fs::read_to_string(&sidecar)
            .with_context(|| format!("reading sidecar {}", sidecar.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing sidecar {}", sidecar.display()))
    }
}
