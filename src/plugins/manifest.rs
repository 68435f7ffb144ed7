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
    /// The lease namespaces this plugin may ever be granted; absent means no
    /// restriction by namespace.
    pub allowed_namespaces: Option<Vec<String>>,
    /// `[ceiling]`: the most authority this plugin may ever be granted, as a lease
    /// (`"fs.read" = ["/docs/**"]`, `"cost.budget" = ["USD:1.00"]`); a job's effective
    /// lease is its request within it. Absent: no ceiling.
    pub ceiling: Option<std::collections::BTreeMap<String, Vec<String>>>,
}

impl Manifest {
    /// The memory ceiling of one job (or tool call) of this plugin: the runtime's
    /// `host_max_bytes`, lowered by `memory_mib` when the sidecar sets it.
    pub fn memory_ceiling(&self, host_max_bytes: u64) -> u64 {
        self.memory_mib
            .map(|m| m.saturating_mul(1 << 20))
            .unwrap_or(u64::MAX)
            .min(host_max_bytes)
    }

    /// The ceiling as a validated lease (the error names the bad entry).
    pub fn ceiling_lease(&self) -> Result<Option<crate::lease::Lease>, crate::error::ArcpError> {
        let Some(c) = &self.ceiling else {
            return Ok(None);
        };
        let map: serde_json::Map<String, serde_json::Value> = c
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
            .collect();
        crate::lease::Lease::from_request(Some(&map)).map(Some)
    }
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
        let manifest: Manifest = toml::from_str(&text)
            .with_context(|| format!("parsing sidecar {}", sidecar.display()))?;
        manifest.ceiling_lease().map_err(|e| {
            anyhow::anyhow!("sidecar {}: [ceiling]: {}", sidecar.display(), e.message)
        })?;
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sidecar_lowers_the_memory_ceiling_but_never_raises_it() {
        let none = Manifest::default();
        assert_eq!(none.memory_ceiling(64 << 20), 64 << 20);
        let lower = Manifest {
            memory_mib: Some(16),
            ..Manifest::default()
        };
        assert_eq!(lower.memory_ceiling(64 << 20), 16 << 20);
        let higher = Manifest {
            memory_mib: Some(1 << 50),
            ..Manifest::default()
        };
        assert_eq!(higher.memory_ceiling(64 << 20), 64 << 20);
    }
}
