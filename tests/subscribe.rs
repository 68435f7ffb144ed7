//! `job.subscribe` from other sessions (spec §7.6): history, live events renumbered
//! into the subscriber's own `event_seq` space, visibility and no cancel rights.

mod common;

use common::{Client, Host, OTHER_TOKEN, TOKEN, bundled_plugins};
use serde_json::{Value, json};

fn seqs(frames: &[Value]) -> Vec<u64> {
    frames
        .iter()
        .filter_map(|f| f["event_seq"].as_u64())
        .collect()
}

#[tokio::test]
async fn a_second_session_subscribes_with_history_and_follows_live() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut owner = Client::connect(&host.url, TOKEN).await;
    // Give the owner's session some earlier events so its numbering differs.
    owner
        .submit(json!({"agent": "ticker", "input": {"count": 3}}))
        .await;
    owner.until_terminal().await;
    let acc = owner
        .submit(json!({"agent": "ticker", "input": {"count": 6, "interval_ms": 150}}))
        .await;
    let job = acc["payload"]["job_id"].as_str().unwrap().to_owned();
    let first = owner.next().await; // tick 0 in the owner's space: seq 5
    assert_eq!(first["event_seq"], 5);

    let mut watcher = Client::connect(&host.url, TOKEN).await;
    let req = watcher
        .send("job.subscribe", json!({"job_id": job, "history": true}))
        .await;
    let subscribed = watcher.next().await;
    assert_eq!(subscribed["type"], "job.subscribed", "{subscribed}");
    let p = &subscribed["payload"];
    assert_eq!(p["request_id"], req.as_str());
    assert_eq!(p["job_id"], job.as_str());
    assert_eq!(p["agent"], "ticker@1.0.0");
    assert_eq!(p["current_status"], "running");
    assert_eq!(p["subscribed_from"], 1);
    assert!(p["replayed"].as_u64().unwrap() >= 1);
    assert!(p["lease"].is_object() && p["trace_id"].is_string());

    let frames = watcher.until_terminal().await;
    assert_eq!(
        seqs(&frames),
        (1..=7).collect::<Vec<_>>(),
        "the subscriber's own gap-free numbering"
    );
    for f in &frames {
        assert_eq!(f["session_id"], watcher.session_id.as_str());
        assert_eq!(f["job_id"], job.as_str());
    }
    let ticks: Vec<&str> = frames
        .iter()
        .filter_map(|f| f["payload"]["body"]["message"].as_str())
        .collect();
    assert_eq!(
        ticks,
        ["tick 0", "tick 1", "tick 2", "tick 3", "tick 4", "tick 5"],
        "each event exactly once"
    );
    assert_eq!(
        frames.last().unwrap()["payload"]["result"],
        json!({"ticks": 6})
    );

    // The owner saw its own numbering throughout.
    let owner_frames = owner.until_terminal().await;
    assert_eq!(seqs(&owner_frames), (6..=11).collect::<Vec<_>>());
}

#[tokio::test]
async fn subscribing_to_a_finished_job_replays_it_and_from_event_seq_skips() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut owner = Client::connect(&host.url, TOKEN).await;
    let acc = owner
        .submit(json!({"agent": "ticker", "input": {"count": 3}}))
        .await;
    let job = acc["payload"]["job_id"].as_str().unwrap().to_owned();
    owner.until_terminal().await;

    let mut w = Client::connect(&host.url, TOKEN).await;
    w.send(
        "job.subscribe",
        json!({"job_id": job, "history": true, "from_event_seq": 1}),
    )
    .await;
    let subscribed = w.next().await;
    assert_eq!(subscribed["payload"]["current_status"], "success");
    assert_eq!(subscribed["payload"]["replayed"], 3);
    let frames = w.until_terminal().await;
    let bodies: Vec<Value> = frames
        .iter()
        .map(|f| f["payload"]["body"]["message"].clone())
        .collect();
    assert_eq!(bodies, [json!("tick 1"), json!("tick 2"), Value::Null]);
    assert_eq!(seqs(&frames), [1, 2, 3]);
}

#[tokio::test]
async fn other_principals_cannot_see_subscribers_cannot_cancel_and_unsubscribe_stops() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut owner = Client::connect(&host.url, TOKEN).await;
    let acc = owner
        .submit(json!({"agent": "ticker", "input": {"count": 40, "interval_ms": 50}}))
        .await;
    let job = acc["payload"]["job_id"].as_str().unwrap().to_owned();

    let mut mallory = Client::connect(&host.url, OTHER_TOKEN).await;
    mallory
        .send("job.subscribe", json!({"job_id": job, "history": true}))
        .await;
    assert_eq!(mallory.next().await["payload"]["code"], "JOB_NOT_FOUND");

    let mut w = Client::connect(&host.url, TOKEN).await;
    w.send("job.subscribe", json!({"job_id": job, "history": false}))
        .await;
    assert_eq!(w.next().await["type"], "job.subscribed");
    w.send_env("job.cancel", json!({}), Some(&job)).await;
    loop {
        let f = w.next().await;
        if f["type"] == "session.error" {
            assert_eq!(f["payload"]["code"], "PERMISSION_DENIED");
            break;
        }
    }
    w.send("job.unsubscribe", json!({"job_id": job})).await;
    w.send(
        "session.ping",
        json!({"nonce": "after", "sent_at": "2026-01-01T00:00:00Z"}),
    )
    .await;
    loop {
        let f = w.next().await;
        if f["type"] == "session.pong" {
            break;
        }
    }
    // Nothing of the job arrives after the unsubscribe took effect.
    let quiet = tokio::time::timeout(
        std::time::Duration::from_millis(400),
        common::next_frame(&mut w.ws),
    )
    .await;
    assert!(quiet.is_err() || quiet.unwrap().is_none_or(|f| f["type"] == "session.ping"));
    owner.until_terminal().await;
}

#[tokio::test]
async fn an_observer_principal_may_list_and_subscribe_but_not_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("arcp.toml");
    std::fs::write(&cfg, "observers = [\"mallory\"]\n").unwrap();
    let host = Host::start(&bundled_plugins(), &["--config", cfg.to_str().unwrap()]);
    let mut owner = Client::connect(&host.url, TOKEN).await;
    let acc = owner
        .submit(json!({"agent": "sleeper", "input": {"seconds": 5}}))
        .await;
    let job = acc["payload"]["job_id"].as_str().unwrap().to_owned();
    let mut auditor = Client::connect(&host.url, OTHER_TOKEN).await;
    auditor.send("session.list_jobs", json!({})).await;
    let jobs = auditor.until("session.jobs").await.pop().unwrap();
    assert_eq!(jobs["payload"]["jobs"][0]["job_id"], job.as_str());
    auditor.send("job.subscribe", json!({"job_id": job})).await;
    assert_eq!(auditor.next().await["type"], "job.subscribed");
    auditor.send_env("job.cancel", json!({}), Some(&job)).await;
    assert_eq!(
        auditor.until("session.error").await.pop().unwrap()["payload"]["code"],
        "JOB_NOT_FOUND"
    );
}

#[tokio::test]
async fn job_subscribed_carries_the_current_budget() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("arcp.toml");
    std::fs::write(&cfg, "[tools.meter]\nplugin = \"echo@1.0.0\"\n").unwrap();
    let host = Host::start(&bundled_plugins(), &["--config", cfg.to_str().unwrap()]);
    let mut owner = Client::connect(&host.url, TOKEN).await;
    let acc = owner
        .submit(
            json!({"agent": "spender", "input": {"cost_per_call": 0.3, "max_calls": 2},
            "lease_request": {"tool.call": ["meter"], "cost.budget": ["USD:1.00"]}}),
        )
        .await;
    assert_eq!(acc["payload"]["budget"], json!({"USD": "USD:1.00"}));
    owner.until_terminal().await;
    let mut w = Client::connect(&host.url, TOKEN).await;
    w.send(
        "job.subscribe",
        json!({"job_id": acc["payload"]["job_id"], "history": false}),
    )
    .await;
    let subscribed = w.next().await;
    assert_eq!(
        subscribed["payload"]["budget"],
        json!({"USD": "USD:0.40"}),
        "{subscribed}"
    );
}
