//! Retention (issue 5): the sweep removes what `[retention]` and the resume window
//! say, and nothing else, here and in the store (a restart does not bring it back).

mod common;

use common::{Client, Host, TOKEN, bundled_plugins};
use serde_json::{Value, json};
use std::time::Duration;

async fn listed(c: &mut Client) -> Vec<(String, String)> {
    c.send("session.list_jobs", json!({"limit": 1000})).await;
    let list = c.until("session.jobs").await.pop().unwrap();
    list["payload"]["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["job_id"].as_str().unwrap().to_owned(),
                j["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn job_id(accepted: &Value) -> String {
    assert_eq!(accepted["type"], "job.accepted", "{accepted}");
    accepted["payload"]["job_id"].as_str().unwrap().to_owned()
}

async fn subscribe_error(c: &mut Client, id: &str) -> Option<String> {
    c.send("job.subscribe", json!({"job_id": id, "history": true}))
        .await;
    let f = c.next().await;
    (f["type"] == "session.error").then(|| f["payload"]["code"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn the_sweep_removes_finished_jobs_past_their_retention_and_nothing_else() {
    let (_dir, cfg) = common::config_file("[retention]\njobs_sec = 2\nsweep_interval_sec = 1\n");
    let mut host = Host::start(&bundled_plugins(), &["--config", &cfg]);
    let mut c = Client::connect(&host.url, TOKEN).await;

    let old = job_id(
        &c.submit(json!({"agent": "echo", "input": "old", "idempotency_key": "k-old"}))
            .await,
    );
    c.until_terminal().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let running = job_id(
        &c.submit(json!({"agent": "sleeper", "input": {"seconds": 60}}))
            .await,
    );
    let recent = job_id(&c.submit(json!({"agent": "echo", "input": "recent"})).await);
    c.until_terminal().await;
    // Two sweeps later: `old` ended over 2 s ago, `recent` has not, `running` runs.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let jobs = listed(&mut c).await;
    let ids: Vec<&str> = jobs.iter().map(|(id, _)| id.as_str()).collect();
    assert!(!ids.contains(&old.as_str()), "{jobs:?}");
    assert!(ids.contains(&recent.as_str()), "{jobs:?}");
    assert!(ids.contains(&running.as_str()), "{jobs:?}");
    assert_eq!(
        subscribe_error(&mut c, &old).await.as_deref(),
        Some("JOB_NOT_FOUND")
    );
    // Its idempotency key went with it: the same submit starts a new job.
    let again = job_id(
        &c.submit(json!({"agent": "echo", "input": "old", "idempotency_key": "k-old"}))
            .await,
    );
    assert_ne!(again, old);
    c.until_terminal().await;
    assert!(host.logs().contains("retention sweep"), "{}", host.logs());

    // A restart on the same data does not bring the removed job back.
    host.child.kill().unwrap();
    host.child.wait().unwrap();
    let data = common::reuse_data_dir(host.data.path());
    let host = Host::start_with_data(
        &bundled_plugins(),
        data,
        &["--config", &cfg], // same retention
    );
    let mut r = Client::connect(&host.url, TOKEN).await;
    let jobs = listed(&mut r).await;
    let ids: Vec<&str> = jobs.iter().map(|(id, _)| id.as_str()).collect();
    assert!(!ids.contains(&old.as_str()), "{jobs:?}");
    assert!(ids.contains(&recent.as_str()), "{jobs:?}");
    assert!(ids.contains(&again.as_str()), "{jobs:?}");
    assert!(
        jobs.contains(&(running.clone(), "error".into())),
        "the crash ended the sleeper: {jobs:?}"
    );
}

#[tokio::test]
async fn over_the_byte_cap_the_oldest_finished_jobs_go_first() {
    // 1 MiB cap; sessions expire one second after they disconnect.
    let (_dir, cfg) = common::config_file(
        "resume_window_sec = 1\n[retention]\nmax_store_mib = 1\nsweep_interval_sec = 1\n",
    );
    let host = Host::start(&bundled_plugins(), &["--config", &cfg]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    // Four streamed results of 512 KiB each: 2 MiB of history.
    let mut ids = Vec::new();
    let mut live_chunks = 0;
    for _ in 0..4 {
        ids.push(job_id(
            &c.submit(json!({"agent": "streamer", "input": {"chunks": 8, "chunk_size": 65536}}))
                .await,
        ));
        let frames = c.until_terminal().await;
        assert_eq!(frames.last().unwrap()["type"], "job.result");
        live_chunks = frames
            .iter()
            .filter(|f| f["payload"]["kind"] == "result_chunk")
            .count();
        assert!(live_chunks >= 9, "8 chunks and the closing one");
    }
    // While the submitting session is resumable, its history is kept whatever the cap.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(listed(&mut c).await.len(), 4);
    drop(c);

    // Once it is past its window, the cap removes the oldest jobs first.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let mut w = Client::connect(&host.url, TOKEN).await;
    let kept: Vec<String> = listed(&mut w).await.into_iter().map(|(id, _)| id).collect();
    assert!(
        !kept.is_empty() && kept.len() < 4,
        "some but not all jobs kept under a 1 MiB cap: {kept:?}\n{}",
        host.logs()
    );
    assert_eq!(
        kept,
        ids[4 - kept.len()..].to_vec(),
        "the newest are the ones kept"
    );
    // What is kept is whole: the newest job replays every chunk it sent live.
    w.send("job.subscribe", json!({"job_id": ids[3], "history": true}))
        .await;
    let replay = w.until_terminal().await;
    let chunks = |frames: &[Value]| {
        frames
            .iter()
            .filter(|f| f["payload"]["kind"] == "result_chunk")
            .count()
    };
    assert_eq!(chunks(&replay), live_chunks);
    assert_eq!(replay.last().unwrap()["type"], "job.result");
    assert!(host.logs().contains("over its cap"), "{}", host.logs());
}
