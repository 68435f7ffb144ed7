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
            ArcpError::invalid(format!(
                "lease_request[{namespace:?}]: pattern {pattern:?} {why}"
            ))
        })?;
        GlobBuilder::new(&normalised)
            .literal_separator(true)
            .build()
    } else {
        GlobBuilder::new(pattern).literal_separator(false).build()
    };
    glob.map_err(|e| {
        ArcpError::invalid(format!(
            "lease_request[{namespace:?}]: malformed pattern {pattern:?}: {e}"
        ))
    })
}

/// A `net.fetch` pattern: `scheme://host[:port][/path-glob]`. The host may use
/// globs (`*.example.com`); without a port only the scheme's default port matches,
/// `:*` matches any port; without a path every path matches.
#[derive(Debug, Clone)]
pub struct UrlPattern {
    scheme: String,
    host: globset::GlobMatcher,
    /// `None` = any port.
    port: Option<u16>,
    path: globset::GlobMatcher,
}

impl UrlPattern {
    /// Parses a pattern; the error says what is wrong.
    pub fn parse(pattern: &str) -> Result<UrlPattern, String> {
        let (scheme, host, port, path) = Self::globs(pattern)?;
        Ok(UrlPattern {
            scheme: scheme.to_owned(),
            host: host.compile_matcher(),
            port,
            path: path.compile_matcher(),
        })
    }

    /// Checks a pattern as [`UrlPattern::parse`] does, without compiling its globs
    /// into matchers (regex work, most of the cost; a submit only validates).
    pub fn check(pattern: &str) -> Result<(), String> {
        Self::globs(pattern).map(|_| ())
    }

    /// A pattern's scheme, host glob, port and path glob.
    fn globs(pattern: &str) -> Result<(&str, Glob, Option<u16>, Glob), String> {
        let (scheme, rest) = pattern
            .split_once("://")
            .ok_or("expected scheme://host[/path]")?;
        if !matches!(scheme, "http" | "https") {
            return Err(format!("scheme {scheme:?} is not http or https"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/**"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err("host must be non-empty and carry no user info".into());
        }
        let default_port = if scheme == "https" { 443 } else { 80 };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, "*")) => (h, None),
            Some((h, p)) if !p.contains(']') => (
                h,
                Some(
                    p.parse::<u16>()
                        .map_err(|_| format!("port {p:?} is not a number"))?,
                ),
            ),
            _ => (authority, Some(default_port)),
        };
        let host = GlobBuilder::new(&host.to_ascii_lowercase())
            .literal_separator(false)
            .build()
            .map_err(|e| e.to_string())?;
        let path = GlobBuilder::new(path)
            .literal_separator(true)
            .build()
            .map_err(|e| e.to_string())?;
        Ok((scheme, host, port, path))
    }

    /// Whether `url` matches.
    pub fn matches(&self, url: &url::Url) -> bool {
        url.scheme() == self.scheme
            && url
                .host_str()
                .is_some_and(|h| self.host.is_match(h.to_ascii_lowercase()))
            && self
                .port
                .is_none_or(|p| url.port_or_known_default() == Some(p))
            && self.path.is_match(url.path())
    }
}

/// The lease's glob namespaces, compiled for matching.
#[derive(Debug, Clone)]
pub struct LeaseMatcher {
    sets: Vec<(String, GlobSet)>,
    urls: Vec<UrlPattern>,
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
        let urls = lease
            .patterns("net.fetch")
            .iter()
            .map(|p| {
                UrlPattern::parse(p).map_err(|why| {
                    ArcpError::invalid(format!(
                        "lease_request[\"net.fetch\"]: pattern {p:?}: {why}"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(LeaseMatcher { sets, urls })
    }

    /// Whether `net.fetch` grants `url` (scheme, host, port and path).
    pub fn allows_url(&self, url: &url::Url) -> bool {
        self.urls.iter().any(|p| p.matches(url))
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
        assert!(
            !m.allows("fs.write", "/data/a.txt"),
            "fs.read grants no writes"
        );
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
    fn urls_match_on_scheme_host_port_and_path() {
        let m = matcher(
            json!({"net.fetch": ["https://api.example.com/v1/**", "http://*.local:8080", "http://127.0.0.1:*/x"]}),
        );
        let ok = |u: &str| m.allows_url(&url::Url::parse(u).unwrap());
        assert!(ok("https://api.example.com/v1/users/1?q=2"));
        assert!(ok("https://API.example.com/v1/a"));
        assert!(!ok("http://api.example.com/v1/a"), "scheme");
        assert!(!ok("https://api.example.com:8443/v1/a"), "port");
        assert!(!ok("https://api.example.com/v2/a"), "path");
        assert!(!ok("https://evil.com/v1/a"), "host");
        assert!(!ok("https://api.example.com.evil.com/v1/a"), "host suffix");
        assert!(ok("http://box.local:8080/anything/at/all"));
        assert!(!ok("http://box.local/anything"), "default port is not 8080");
        assert!(ok("http://127.0.0.1:9999/x"), "any port");
        assert!(!ok("http://127.0.0.1:9999/y"));
        let bad = json!({"net.fetch": ["ftp://x"]});
        assert!(Lease::from_request(Some(bad.as_object().unwrap())).is_err());
        let bad = json!({"net.fetch": ["example.com"]});
        assert!(Lease::from_request(Some(bad.as_object().unwrap())).is_err());
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
