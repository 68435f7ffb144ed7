//! Plugin files an operator (or an attacker with the folder) gets wrong (issue 6):
//! a file over the size limit, and a file replaced while jobs of it run. Truncated
//! files, garbage and core modules are in tests/sandbox.rs and tests/cli.rs.

mod common;

use common::{Client, Host, TOKEN, bundled_plugins};
use serde_json::json;
use std::time::{Duration, Instant};

fn copy(from: &str, dir: &std::path::Path, to: &str) {
    std::fs::copy(bundled_plugins().join(from), dir.join(to)).unwrap();
}

#[tokio::test]
async fn a_file_over_the_size_limit_is_refused_without_being_read() {
    let dir = tempfile::tempdir().unwrap();
    copy("echo@1.0.0.wasm", dir.path(), "echo@1.0.0.wasm");
    // 300 MiB, sparse: refused on its size alone, never read into memory.
    let huge = std::fs::File::create(dir.path().join("huge@1.0.0.wasm")).unwrap();
    huge.set_len(300 << 20).unwrap();
    let host = Host::start(dir.path(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let acc = c.submit(json!({"agent": "echo", "input": 1})).await;
    assert_eq!(acc["type"], "job.accepted");
    c.until_terminal().await;
    let refused = c.submit(json!({"agent": "huge", "input": 1})).await;
    assert_eq!(
        refused["payload"]["code"], "AGENT_NOT_AVAILABLE",
        "{refused}"
    );
    assert!(host.logs().contains("over the"), "{}", host.logs());
}

#[tokio::test]
async fn a_file_replaced_while_its_job_runs_leaves_that_job_alone() {
    let dir = tempfile::tempdir().unwrap();
    copy("sleeper@1.0.0.wasm", dir.path(), "nap@1.0.0.wasm");
    copy("echo@1.0.0.wasm", dir.path(), "echo@1.0.0.wasm");
    let host = Host::start(dir.path(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let running = c
        .submit(json!({"agent": "nap", "input": {"seconds": 2}}))
        .await;
    assert_eq!(running["type"], "job.accepted");
    let running_id = running["job_id"].as_str().unwrap().to_owned();

    // The file is replaced by another component (written aside, then renamed in, as
    // a deployment would), while the job runs.
    let staged = dir.path().join("nap.staged");
    std::fs::copy(bundled_plugins().join("echo@1.0.0.wasm"), &staged).unwrap();
    std::fs::rename(&staged, dir.path().join("nap@1.0.0.wasm")).unwrap();

    // New jobs get the new code once the folder has been rescanned...
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut mine = Client::connect(&host.url, TOKEN).await;
    loop {
        assert!(
            Instant::now() < deadline,
            "the replacement was never picked up"
        );
        let acc = mine.submit(json!({"agent": "nap", "input": "x"})).await;
        assert_eq!(acc["type"], "job.accepted", "{acc}");
        let end = mine.until_terminal().await.pop().unwrap();
        if end["payload"]["result"]["echoed"] == "x" {
            break; // echo's behaviour: the new file.
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // ...and the job started from the old file ends as the old code would.
    let end = c.until_terminal().await.pop().unwrap();
    assert_eq!(end["job_id"], running_id.as_str());
    assert_eq!(end["type"], "job.result", "{end}");
    assert_eq!(end["payload"]["final_status"], "success", "{end}");

    // A file replaced by garbage: that agent is gone, the rest serve on.
    std::fs::write(dir.path().join("nap.staged"), b"garbage").unwrap();
    std::fs::rename(
        dir.path().join("nap.staged"),
        dir.path().join("nap@1.0.0.wasm"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(
            Instant::now() < deadline,
            "the broken file was never noticed"
        );
        let r = mine.submit(json!({"agent": "nap", "input": "y"})).await;
        if r["type"] == "session.error" {
            assert_eq!(r["payload"]["code"], "AGENT_NOT_AVAILABLE", "{r}");
            break;
        }
        mine.until_terminal().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let acc = mine.submit(json!({"agent": "echo", "input": 2})).await;
    assert_eq!(acc["type"], "job.accepted");
}
