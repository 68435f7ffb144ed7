//! The sandbox holds: traps, memory ceilings and bad results end one job with a clear
//! `job.error`, and the host keeps serving. Uses the test-only `hostile` plugin.

mod common;

use common::{Client, Host, TOKEN, bundled_plugins};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn hostile_plugin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plugins/hostile@1.0.0.wasm")
}

/// A plugin folder with echo and hostile; hostile's sidecar lowers its memory.
fn folder(memory_mib: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(hostile_plugin(), dir.path().join("hostile@1.0.0.wasm")).unwrap();
    std::fs::write(
        dir.path().join("hostile@1.0.0.toml"),
        format!("memory_mib = {memory_mib}\n"),
    )
    .unwrap();
    std::fs::copy(
        bundled_plugins().join("echo@1.0.0.wasm"),
        dir.path().join("echo@1.0.0.wasm"),
    )
    .unwrap();
    dir
}

async fn run_hostile(c: &mut Client, input: Value) -> Value {
    let acc = c.submit(json!({"agent": "hostile", "input": input})).await;
    assert_eq!(acc["type"], "job.accepted", "{acc}");
    c.until_terminal().await.pop().unwrap()
}

async fn assert_host_still_serves(c: &mut Client) {
    let acc = c.submit(json!({"agent": "echo", "input": "alive"})).await;
    assert_eq!(acc["type"], "job.accepted");
    let done = c.until_terminal().await.pop().unwrap();
    assert_eq!(done["payload"]["result"]["echoed"], "alive");
}

#[tokio::test]
async fn traps_end_the_job_with_the_trap_message() {
    let dir = folder(64);
    let host = Host::start(dir.path(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    for (mode, needle) in [
        ("unreachable", "unreachable"),
        ("oob", "out of bounds"),
        ("overflow", "stack"),
    ] {
        let end = run_hostile(&mut c, json!({"mode": mode})).await;
        assert_eq!(end["type"], "job.error", "{mode}: {end}");
        assert_eq!(end["payload"]["code"], "INTERNAL_ERROR");
        assert_eq!(end["payload"]["final_status"], "error");
        let msg = end["payload"]["message"].as_str().unwrap().to_lowercase();
        assert!(msg.contains(needle), "{mode}: {msg}");
        assert_host_still_serves(&mut c).await;
    }
}

#[tokio::test]
async fn deep_recursion_under_the_stack_limit_still_works() {
    let dir = folder(64);
    let host = Host::start(dir.path(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let end = run_hostile(&mut c, json!({"mode": "recurse", "depth": 1000})).await;
    assert_eq!(end["payload"]["result"]["depth"], 1000, "{end}");
}

#[tokio::test]
async fn memory_over_the_ceiling_ends_the_job_naming_the_limit() {
    let dir = folder(32);
    let host = Host::start(dir.path(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let ok = run_hostile(&mut c, json!({"mode": "alloc", "mib": 8})).await;
    assert_eq!(ok["payload"]["result"]["allocated"], 8, "{ok}");
    let end = run_hostile(&mut c, json!({"mode": "alloc", "mib": 100})).await;
    assert_eq!(end["type"], "job.error", "{end}");
    let msg = end["payload"]["message"].as_str().unwrap();
    assert!(msg.contains("memory limit of 32 MiB"), "{msg}");
    assert_host_still_serves(&mut c).await;
}

#[tokio::test]
async fn a_result_that_is_not_json_is_an_internal_error() {
    let dir = folder(64);
    let host = Host::start(dir.path(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let end = run_hostile(&mut c, json!({"mode": "bad-json"})).await;
    assert_eq!(end["payload"]["code"], "INTERNAL_ERROR");
    assert!(
        end["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("not JSON")
    );
}

#[tokio::test]
async fn a_plugin_failure_keeps_its_spec_code() {
    let dir = folder(64);
    let host = Host::start(dir.path(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let end = run_hostile(&mut c, json!({"mode": "no-such-mode"})).await;
    assert_eq!(end["payload"]["code"], "INVALID_REQUEST");
    assert_eq!(end["payload"]["retryable"], false);
}

#[tokio::test]
async fn the_plugin_folder_is_watched() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        bundled_plugins().join("sleeper@1.0.0.wasm"),
        dir.path().join("sleeper@1.0.0.wasm"),
    )
    .unwrap();
    let host = Host::start(dir.path(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let names = |w: &Value| -> Vec<String> {
        w["payload"]["capabilities"]["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&c.welcome), ["sleeper"]);
    let acc = c
        .submit(json!({"agent": "sleeper", "input": {"seconds": 1}}))
        .await;
    assert_eq!(acc["type"], "job.accepted");

    // Drop a file in; the next session sees it without a restart.
    std::fs::copy(
        bundled_plugins().join("echo@1.0.0.wasm"),
        dir.path().join("echo@1.0.0.wasm"),
    )
    .unwrap();
    let mut seen = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if names(&Client::connect(&host.url, TOKEN).await.welcome).contains(&"echo".to_owned()) {
            seen = true;
            break;
        }
    }
    assert!(seen, "a dropped-in plugin must appear: {}", host.logs());

    // Remove the sleeper while its job runs: the job finishes with its component,
    // and new sessions no longer list it.
    std::fs::remove_file(dir.path().join("sleeper@1.0.0.wasm")).unwrap();
    let done = c.until_terminal().await.pop().unwrap();
    assert_eq!(done["payload"]["result"]["slept"].as_f64(), Some(1.0));
    let mut gone = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if !names(&Client::connect(&host.url, TOKEN).await.welcome).contains(&"sleeper".to_owned())
        {
            gone = true;
            break;
        }
    }
    assert!(gone, "a removed plugin must leave new inventories");
}

#[tokio::test]
async fn a_bad_plugin_file_never_stops_the_host() {
    let dir = folder(64);
    std::fs::write(dir.path().join("junk@1.0.0.wasm"), b"definitely not wasm").unwrap();
    std::fs::write(
        dir.path().join("trunc@1.0.0.wasm"),
        &std::fs::read(hostile_plugin()).unwrap()[..1000],
    )
    .unwrap();
    let host = Host::start(dir.path(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    assert_host_still_serves(&mut c).await;
    let logs = host.logs();
    assert!(
        logs.contains("junk@1.0.0.wasm") && logs.contains("trunc@1.0.0.wasm"),
        "{logs}"
    );
}
