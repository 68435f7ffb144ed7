//! The README's quick start, followed literally: the fenced block after
//! `<!-- quickstart -->` is run by bash, line by line as written, against a real host
//! serving the folder's `plugins/`, with `arcp-host` on `PATH` and `ARCP_TOKEN` set as
//! the README's lines above it say. It scaffolds an agent, builds it with the guest
//! toolchain, drops it in and submits a job to it.

mod common;

use common::{Host, TOKEN};
use std::path::Path;
use std::process::Command;

/// The README's quick-start block.
fn quickstart_block() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let after = readme
        .split("<!-- quickstart -->")
        .nth(1)
        .expect("README.md has a <!-- quickstart --> block");
    let body = after
        .trim_start()
        .strip_prefix("```sh\n")
        .expect("the quick start is a ```sh block");
    body[..body.find("```").expect("the block ends")].to_owned()
}

#[test]
fn the_readme_quick_start_scaffolds_builds_drops_in_and_submits_an_agent() {
    let block = quickstart_block();
    assert!(block.contains("arcp-host new hello"), "{block}");
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let host = Host::start(&plugins, &[]);

    let bin = Path::new(env!("CARGO_BIN_EXE_arcp-host")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Dependencies of the scaffolded crate are kept between runs (the block does
    // not name a target dir, so cargo honours this one).
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("quickstart-target");
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &block])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("ARCP_URL", &host.url)
        .env("ARCP_TOKEN", TOKEN)
        .env("CARGO_TARGET_DIR", &cache)
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the quick start failed ({}):\n{stdout}\n{stderr}\nhost:\n{}",
        out.status,
        host.logs()
    );
    assert!(
        stdout.contains("\"greeting\": \"Hello, Ada!\""),
        "the submit printed no greeting:\n{stdout}\n{stderr}"
    );
    assert!(stderr.contains("success"), "{stderr}");
    assert!(dir.path().join("hello/src/lib.rs").is_file());
    assert!(plugins.join("hello@0.1.0.wasm").is_file());
    assert!(host.logs().contains("hello@0.1.0"), "{}", host.logs());
}
