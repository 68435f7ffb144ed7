//! Matching operations against a lease: glob sets per namespace and path
//! normalisation. Pure: resolving symlinks on disk is the caller's (the sandbox's)
//! job, done before the resolved path is matched here again.

use super::Lease;
use crate::error::ArcpError;
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// Namespaces whose patterns are path globs (`*` stays within one segment, `**`
/// crosses segments).
pub const PATH_NAMESPACES: [&str; 2] = ["fs.read", "fs.write"];
/// Namespaces whose patterns are name globs.
pub const NAME_NAMESPACES: [&str; 3] = ["tool.call", "agent.delegate", "model.use"];

/// Compiles one pattern of `namespace`; the error names it.
pub fn compile_pattern(namespace: &str, pattern: &str) -> Result<Glob, ArcpError> {
    let glob = if PATH_NAMESPACES.contains(&namespace) {
        let normalised = normalise_path(pattern).map_err(|why| {
            ArcpError::invalid(format!("lease_request[{namespace:?}]: pattern {pattern:?} {why}"))
        })?;
        GlobBuilder::new(&normalised).literal_separator(true).build()
    } else {
        GlobBuilder::new(pattern).literal_separator(false).build()
    };
    glob.map_err(|e| ArcpError::invalid(format!("lease_request[{namespace:?}]: malformed pattern {pattern:?}: {e}")))
}

/// The lease's glob namespaces, compiled for matching.
#[derive(Debug, Clone)]
pub struct LeaseMatcher {
    sets: Vec<(String, GlobSet)>,
}

impl LeaseMatcher {
    /// Compiles every glob namespace of `lease` (validated at submit, so this
    /// cannot fail on a lease that was accepted).
    pub fn new(lease: &Lease) -> Result<LeaseMatcher, ArcpError> {
        let mut sets = Vec::new();
        for ns in PATH_NAMESPACES.iter().chain(NAME_NAMESPACES.iter()) {
            let mut b = GlobSetBuilder::new();
            for p in lease.patterns(ns) {
                b.add(compile_pattern(ns, p)?);
            }
            let set = b
                .build()
                .map_err(|e| ArcpError::invalid(format!("lease_request[{ns:?}]: {e}")))?;
            sets.push(((*ns).to_owned(), set));
        }
        Ok(LeaseMatcher { sets })
    }

    /// Whether `candidate` is granted in `namespace`. Paths must already be
    /// normalised ([`normalise_path`]); an unknown namespace grants nothing.
    pub fn allows(&self, namespace: &str, candidate: &str) -> bool {
        self.sets
            .iter()
            .find(|(ns, _)| ns == namespace)
            .is_some_and(|(_, set)| set.is_match(candidate))
    }
}

/// Normalises a job-visible path lexically: always absolute (`/`-rooted), `.` and
/// repeated slashes removed, `..` resolved. A `..` that would climb above the root,
/// a NUL byte or a backslash is refused.
pub fn normalise_path(path: &str) -> Result<String, &'static str> {
    if path.contains('\0') {
        return Err("contains a NUL byte");
    }
    if path.contains('\\') {
        return Err("contains a backslash");
    }
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err("climbs above the workspace root");
                }
            }
            s => parts.push(s),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn matcher(v: serde_json::Value) -> LeaseMatcher {
        let lease = Lease::from_request(Some(v.as_object().unwrap())).unwrap();
        LeaseMatcher::new(&lease).unwrap()
    }

    #[test]
    fn paths_are_normalised_and_never_climb_out() {
        assert_eq!(normalise_path("a//b/./c").unwrap(), "/a/b/c");
        assert_eq!(normalise_path("/a/b/../c").unwrap(), "/a/c");
        assert_eq!(normalise_path("").unwrap(), "/");
        assert!(normalise_path("../etc/passwd").is_err());
        assert!(normalise_path("/a/../../etc").is_err());
        assert!(normalise_path("a\0b").is_err());
    }

    #[test]
    fn star_stays_in_a_segment_and_double_star_crosses() {
        let m = matcher(json!({"fs.read": ["/data/*.txt", "/docs/**"]}));
        assert!(m.allows("fs.read", "/data/a.txt"));
        assert!(!m.allows("fs.read", "/data/sub/a.txt"));
        assert!(m.allows("fs.read", "/docs/x/y/z.md"));
        assert!(!m.allows("fs.read", "/etc/passwd"));
        assert!(!m.allows("fs.write", "/data/a.txt"), "fs.read grants no writes");
    }

    #[test]
    fn name_globs_match_tools_and_models() {
        let m = matcher(json!({"tool.call": ["search.*"], "model.use": ["tier-fast/*"]}));
        assert!(m.allows("tool.call", "search.web"));
        assert!(!m.allows("tool.call", "shell"));
        assert!(m.allows("model.use", "tier-fast/small"));
        assert!(!m.allows("model.use", "tier-slow/big"));
    }

    #[test]
    fn malformed_globs_and_escaping_patterns_are_named() {
        let bad = json!({"fs.read": ["/a/[unclosed"]});
        let err = Lease::from_request(Some(bad.as_object().unwrap())).unwrap_err();
        assert!(err.message.contains("[unclosed"), "{}", err.message);
        let bad = json!({"fs.write": ["../**"]});
        let err = Lease::from_request(Some(bad.as_object().unwrap())).unwrap_err();
        assert!(err.message.contains("climbs"), "{}", err.message);
    }
}
