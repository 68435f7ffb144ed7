//! `arcp-host new NAME`: writes a new agent crate from the templates in
//! `templates/agent/` (compiled into the binary), wired to the Rust guest SDK of the
//! checkout the binary was built from, with a build script for the guest toolchain.
//!
//! Owns only the files it creates; it never touches `plugins/`, the store or a
//! running host, and never overwrites an existing file.

use std::path::{Path, PathBuf};

/// The template files: (path in the new crate, contents, executable).
const TEMPLATE: &[(&str, &str, bool)] = &[
    (
        "Cargo.toml",
        include_str!("../templates/agent/Cargo.toml.in"),
        false,
    ),
    (
        "src/lib.rs",
        include_str!("../templates/agent/src/lib.rs"),
        false,
    ),
    (
        "build.sh",
        include_str!("../templates/agent/build.sh"),
        true,
    ),
    (
        "README.md",
        include_str!("../templates/agent/README.md"),
        false,
    ),
    (
        ".gitignore",
        include_str!("../templates/agent/gitignore.in"),
        false,
    ),
];

/// Why a scaffold could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name cannot be both a crate name and an agent name.
    #[error(
        "{0:?} is not a usable agent name: use lowercase ASCII letters, digits, '-' and '_', starting with a letter (at most 64 characters)"
    )]
    BadName(String),
    /// The target folder exists and is not empty.
    #[error("{0} already exists and is not empty; choose another name or --dir")]
    Exists(PathBuf),
    /// No guest SDK to point the new crate at.
    #[error(
        "cannot find the Rust guest SDK (sdk/rust of an arcp-host checkout) at {0}; pass --sdk PATH"
    )]
    NoSdk(PathBuf),
    /// Writing a file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Whether `name` works as both the crate's name and the plugin file's agent name
/// (`NAME@VERSION.wasm`, whose rules are stricter about case and first letters).
pub fn valid_agent_crate_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 64
}

/// The SDK this binary was built beside, if that checkout is still there.
pub fn default_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sdk")
        .join("rust")
}

/// Writes the agent crate `name` into `dir`, its `Cargo.toml` naming `sdk` as the
/// `arcp-agent` dependency. Returns the files written, relative to `dir`.
pub fn scaffold(name: &str, dir: &Path, sdk: &Path) -> Result<Vec<PathBuf>, ScaffoldError> {
    if !valid_agent_crate_name(name) {
        return Err(ScaffoldError::BadName(name.to_owned()));
    }
    let sdk = sdk
        .canonicalize()
        .ok()
        .filter(|p| p.join("Cargo.toml").is_file())
        .ok_or_else(|| ScaffoldError::NoSdk(sdk.to_owned()))?;
    let occupied = std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some());
    if occupied {
        return Err(ScaffoldError::Exists(dir.to_owned()));
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ScaffoldError::Io { path, source }
    };
    // TOML basic strings escape backslashes and quotes; a path has no newlines.
    let sdk_toml = sdk
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    let mut written = Vec::new();
    for (rel, text, executable) in TEMPLATE {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let text = text.replace("{{name}}", name).replace("{{sdk}}", &sdk_toml);
        // create_new: never overwrite, even if something appeared meanwhile.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io(&path))?;
        std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io(&path))?;
        if *executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(io(&path))?;
        }
        written.push(PathBuf::from(rel));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_suit_both_cargo_and_the_plugin_folder() {
        for ok in ["hello", "my-agent", "agent_2"] {
            assert!(valid_agent_crate_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Hello",
            "2fast",
            "-x",
            "a.b",
            "a b",
            "../x",
            &"x".repeat(65),
        ] {
            assert!(!valid_agent_crate_name(bad), "{bad}");
        }
    }

    #[test]
    fn scaffold_fills_the_templates_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("hello");
        let files = scaffold("hello", &target, &default_sdk()).unwrap();
        assert_eq!(files.len(), TEMPLATE.len());
        let manifest = std::fs::read_to_string(target.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"hello\""));
        let sdk = default_sdk().canonicalize().unwrap();
        assert!(manifest.contains(&format!("path = \"{}\"", sdk.display())));
        for (rel, _, _) in TEMPLATE {
            let text = std::fs::read_to_string(target.join(rel)).unwrap();
            assert!(!text.contains("{{"), "{rel} keeps a placeholder");
        }
        let again = scaffold("hello", &target, &default_sdk());
        assert!(matches!(again, Err(ScaffoldError::Exists(_))), "{again:?}");
        let no_sdk = scaffold("other", &dir.path().join("other"), dir.path());
        assert!(matches!(no_sdk, Err(ScaffoldError::NoSdk(_))), "{no_sdk:?}");
    }
}
