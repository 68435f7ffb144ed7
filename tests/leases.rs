//! Leases enforced by the sandbox (spec §9): `fs.read` with path escapes refused,
//! `tool.call`, decimal budgets ending a job with `BUDGET_EXHAUSTED`, and every
//! authority-bearing call visible as `tool_call`/`tool_result`.

mod common;

use common::{Client, Host, TOKEN, bundled_plugins};
use serde_json::{Value, json};
use std::path::Path;

struct Setup {
    _dir: tempfile::TempDir,
    host: Host,
    workspace: std::path::PathBuf,
    outside: std::path::PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let workspace = dir.path().join("ws");
    std::fs::create_dir_all(workspace.join("docs/deep")).unwrap();
    std::fs::create_dir_all(workspace.join("private")).unwrap();
    std::fs::write(workspace.join("docs/a.txt"), "alpha").unwrap();
    std::fs::write(workspace.join("docs/deep/b.txt"), "beta").unwrap();
    std::fs::write(workspace.join("private/secret.txt"), "no").unwrap();
    let outside = dir.path().join("outside.txt");
    std::fs::write(&outside, "host secret").unwrap();
    std::os::unix::fs::symlink(&outside, workspace.join("docs/escape.txt")).unwrap();
    std::os::unix::fs::symlink(
        workspace.join("private"),
        workspace.join("docs/private-link"),
    )
    .unwrap();
    std::fs::hard_link(&outside, workspace.join("docs/hard.txt")).unwrap();
    let cfg = dir.path().join("arcp.toml");
    std::fs::write(
        &cfg,
        format!(
            "workspace = {:?}\n[tools.meter]\nplugin = \"echo@1.0.0\"\n",
            workspace.to_str().unwrap()
        ),
    )
    .unwrap();
    let host = Host::start(&bundled_plugins(), &["--config", cfg.to_str().unwrap()]);
    Setup {
        _dir: dir,
        host,
        workspace,
        outside,
    }
}

async fn run(c: &mut Client, submit: Value) -> Vec<Value> {
    let acc = c.submit(submit).await;
    assert_eq!(acc["type"], "job.accepted", "{acc}");
    c.until_terminal().await
}

fn events_of(frames: &[Value], kind: &str) -> Vec<Value> {
    frames
        .iter()
        .filter(|f| f["payload"]["kind"] == kind)
        .map(|f| f["payload"]["body"].clone())
        .collect()
}

#[tokio::test]
async fn fs_read_is_granted_by_glob_and_reported_as_tool_events() {
    let s = setup();
    let mut c = Client::connect(&s.host.url, TOKEN).await;
    let frames = run(
        &mut c,
        json!({"agent": "reader", "input": {"path": "docs/deep/../a.txt"},
        "lease_request": {"fs.read": ["/docs/**"]}}),
    )
    .await;
    let last = frames.last().unwrap();
    assert_eq!(last["payload"]["result"]["text"], "alpha", "{last}");
    let calls = events_of(&frames, "tool_call");
    assert_eq!(calls[0]["tool"], "fs.read");
    assert_eq!(calls[0]["args"]["path"], "docs/deep/../a.txt");
    let results = events_of(&frames, "tool_result");
    assert_eq!(results[0]["call_id"], calls[0]["call_id"]);
    assert_eq!(results[0]["result"]["bytes"], 5);
}

#[tokio::test]
async fn paths_outside_the_grant_are_permission_denied() {
    let s = setup();
    let mut c = Client::connect(&s.host.url, TOKEN).await;
    let lease = json!({"fs.read": ["/docs/*.txt"]});
    for (path, why) in [
        ("private/secret.txt", "not granted"),
        ("docs/deep/b.txt", "* stays within one folder"),
        ("../outside.txt", ".. above the root"),
        ("docs/escape.txt", "a symlink leading out of the workspace"),
        (
            "docs/private-link/secret.txt",
            "a symlink to a folder the lease does not grant",
        ),
        ("docs/hard.txt", "a hard link"),
        (
            s.outside.to_str().unwrap(),
            "an absolute host path is workspace-relative",
        ),
    ] {
        let frames = run(
            &mut c,
            json!({"agent": "reader", "input": {"path": path}, "lease_request": lease}),
        )
        .await;
        let last = frames.last().unwrap();
        assert_eq!(last["type"], "job.error", "{why}: {last}");
        let code = last["payload"]["code"].as_str().unwrap();
        assert!(
            code == "PERMISSION_DENIED" || code == "INVALID_REQUEST",
            "{why}: {last}"
        );
        assert!(!last.to_string().contains("host secret"), "{why}");
        let results = events_of(&frames, "tool_result");
        assert!(
            results[0]["error"]["code"].is_string(),
            "{why}: refusals are reported too"
        );
    }
    // The host file was never touched.
    assert_eq!(std::fs::read_to_string(&s.outside).unwrap(), "host secret");
    assert!(Path::new(&s.workspace).exists());
}

#[tokio::test]
async fn an_empty_lease_grants_no_files() {
    let s = setup();
    let mut c = Client::connect(&s.host.url, TOKEN).await;
    let frames = run(
        &mut c,
        json!({"agent": "reader", "input": {"path": "docs/a.txt"}}),
    )
    .await;
    assert_eq!(
        frames.last().unwrap()["payload"]["code"],
        "PERMISSION_DENIED"
    );
}

#[tokio::test]
async fn a_budget_is_spent_to_the_cent_then_budget_exhausted() {
    let s = setup();
    let mut c = Client::connect(&s.host.url, TOKEN).await;
    let frames = run(
        &mut c,
        json!({"agent": "spender",
        "input": {"cost_per_call": 0.3, "currency": "USD", "max_calls": 10},
        "lease_request": {"tool.call": ["meter"], "cost.budget": ["USD:1.00"]}}),
    )
    .await;
    let remaining: Vec<f64> = events_of(&frames, "metric")
        .iter()
        .filter(|m| m["name"] == "cost.budget.remaining")
        .map(|m| m["value"].as_f64().unwrap())
        .collect();
    assert_eq!(
        remaining,
        [0.7, 0.4, 0.1, -0.2],
        "decimal arithmetic, no float drift"
    );
    let last = frames.last().unwrap();
    assert_eq!(last["type"], "job.error", "{last}");
    assert_eq!(last["payload"]["code"], "BUDGET_EXHAUSTED");
    assert_eq!(last["payload"]["retryable"], false);
    assert_eq!(
        events_of(&frames, "tool_call").len(),
        5,
        "four paid calls, the fifth refused"
    );
}

#[tokio::test]
async fn a_tool_the_lease_does_not_grant_is_refused() {
    let s = setup();
    let mut c = Client::connect(&s.host.url, TOKEN).await;
    let frames = run(
        &mut c,
        json!({"agent": "spender",
        "input": {"cost_per_call": 0.1, "max_calls": 2},
        "lease_request": {"tool.call": ["other-*"]}}),
    )
    .await;
    assert_eq!(
        frames.last().unwrap()["payload"]["code"],
        "PERMISSION_DENIED"
    );
}

#[tokio::test]
async fn a_granted_tool_runs_in_its_own_sandbox() {
    let s = setup();
    let mut c = Client::connect(&s.host.url, TOKEN).await;
    let frames = run(
        &mut c,
        json!({"agent": "spender",
        "input": {"cost_per_call": 0.1, "max_calls": 2},
        "lease_request": {"tool.call": ["me*"]}}),
    )
    .await;
    let last = frames.last().unwrap();
    assert_eq!(last["payload"]["result"], json!({"calls": 2}), "{last}");
    let results = events_of(&frames, "tool_result");
    assert_eq!(results[0]["result"]["echoed"], json!({"call": 0}));
}

#[tokio::test]
async fn a_plugin_built_for_wit_1_0_still_loads_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plugins/legacy-echo@1.0.0.wasm"),
        dir.path().join("legacy-echo@1.0.0.wasm"),
    )
    .unwrap();
    let host = Host::start(dir.path(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let frames = run(&mut c, json!({"agent": "legacy-echo", "input": "old"})).await;
    assert_eq!(frames.last().unwrap()["payload"]["result"]["echoed"], "old");
}

#[tokio::test]
async fn an_authority_bearing_call_after_expiry_ends_the_job_lease_expired() {
    // With a grace period the runtime does not end the job at expiry; the job's next
    // authority-bearing call does, even though the plugin swallows the failure.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plugins/hostile@1.0.0.wasm"),
        dir.path().join("hostile@1.0.0.wasm"),
    )
    .unwrap();
    std::fs::copy(
        bundled_plugins().join("echo@1.0.0.wasm"),
        dir.path().join("echo@1.0.0.wasm"),
    )
    .unwrap();
    let cfg = dir.path().join("arcp.toml");
    std::fs::write(
        &cfg,
        "lease_expiry_grace_sec = 30\n[tools.meter]\nplugin = \"echo@1.0.0\"\n",
    )
    .unwrap();
    let host = Host::start(dir.path(), &["--config", cfg.to_str().unwrap()]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let at = (chrono::Utc::now() + chrono::Duration::milliseconds(1500))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let frames = run(
        &mut c,
        json!({"agent": "hostile", "input": {"mode": "late-call", "seconds": 3},
        "lease_request": {"tool.call": ["meter"]}, "lease_constraints": {"expires_at": at}}),
    )
    .await;
    let last = frames.last().unwrap();
    assert_eq!(last["payload"]["code"], "LEASE_EXPIRED", "{last}");
    assert_eq!(last["payload"]["retryable"], false);
    let refused = events_of(&frames, "tool_result");
    assert_eq!(refused[0]["error"]["code"], "LEASE_EXPIRED");
}

#[tokio::test]
async fn the_effective_lease_is_the_request_within_the_plugins_ceiling() {
    let s = setup();
    // A second host over a plugin folder whose reader has a ceiling.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        bundled_plugins().join("reader@1.0.0.wasm"),
        dir.path().join("reader@1.0.0.wasm"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("reader@1.0.0.toml"),
        "[ceiling]\n\"fs.read\" = [\"/docs/**\"]\n\"cost.budget\" = [\"USD:1.00\"]\n",
    )
    .unwrap();
    let cfg = dir.path().join("arcp.toml");
    std::fs::write(
        &cfg,
        format!("workspace = {:?}\n", s.workspace.to_str().unwrap()),
    )
    .unwrap();
    let host = Host::start(dir.path(), &["--config", cfg.to_str().unwrap()]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let lease = json!({"fs.read": ["/docs/a.txt", "/private/secret.txt"], "net.fetch": ["https://example.com/**"], "cost.budget": ["USD:5.00"]});
    let acc = c.submit(json!({"agent": "reader", "input": {"path": "private/secret.txt"}, "lease_request": lease})).await;
    assert_eq!(
        acc["payload"]["lease"],
        json!({"fs.read": ["/docs/a.txt"], "cost.budget": ["USD:1.00"]}),
        "{acc}"
    );
    assert_eq!(acc["payload"]["budget"], json!({"USD": "USD:1.00"}));
    let last = c.until_terminal().await.pop().unwrap();
    assert_eq!(last["payload"]["code"], "PERMISSION_DENIED");
    let frames = run(
        &mut c,
        json!({"agent": "reader", "input": {"path": "docs/a.txt"}, "lease_request": lease}),
    )
    .await;
    assert_eq!(frames.last().unwrap()["payload"]["result"]["text"], "alpha");
}

/// Regression: an in-memory store gives every write ticket 0 ("already settled"),
/// and a job waited for a non-zero ticket of its record before its first
/// authority-bearing call: with `--in-memory` every file read, fetch, tool call or
/// delegation hung until the job's runtime limit.
#[tokio::test]
async fn an_in_memory_runtime_lets_a_job_make_authority_bearing_calls() {
    let dir = tempfile::tempdir().unwrap();
    let workspace = dir.path().join("ws");
    std::fs::create_dir_all(&workspace).unwrap();
    std::fs::write(workspace.join("a.txt"), "alpha").unwrap();
    let (_cfg_dir, cfg) =
        common::config_file(&format!("workspace = {:?}\n", workspace.to_str().unwrap()));
    let host = Host::start(&bundled_plugins(), &["--config", &cfg, "--in-memory"]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let frames = run(
        &mut c,
        json!({"agent": "reader", "input": {"path": "a.txt"}, "lease_request": {"fs.read": ["/**"]}}),
    )
    .await;
    let last = frames.last().unwrap();
    assert_eq!(last["payload"]["result"]["text"], "alpha", "{last}");
}
