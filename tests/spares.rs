//! Spare instances (`sandbox::spare`): once a job has ended, and few jobs run, the
//! runtime makes its plugin's next instance ready, and the plugin's next job starts
//! in it. Driven through the real binary and scraped from its metrics: a job in a
//! spare has its own lease, its own events, its own memory ceiling, and is cancelled
//! like any other.

mod common;

use common::{Client, Host, TOKEN, bundled_plugins};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The value of the unlabelled metric `name` (a counter or a gauge).
async fn metric(host: &Host, name: &str) -> f64 {
    let (body, scrape) = common::scrape_metrics(host).await;
    let found = scrape.samples.iter().find(|s| s.metric == name);
    match found.map(|s| &s.value) {
        Some(
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v),
        ) => *v,
        other => panic!("{name}: {other:?}\n{body}"),
    }
}

/// Waits (up to 10 s) until a spare instance is held.
async fn spare_ready(host: &Host) {
    let until = Instant::now() + Duration::from_secs(10);
    while metric(host, "arcp_spare_instances").await < 1.0 {
        assert!(Instant::now() < until, "no spare instance was made");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn taken(host: &Host) -> f64 {
    metric(host, "arcp_spare_instances_taken_total").await
}

async fn run(c: &mut Client, submit: Value) -> Value {
    let acc = c.submit(submit).await;
    assert_eq!(acc["type"], "job.accepted", "{acc}");
    c.until_terminal().await.pop().unwrap()
}

/// A workspace with `docs/a.txt`, and a host over the bundled plugins using it.
fn host_with_workspace() -> (tempfile::TempDir, Host) {
    let dir = tempfile::tempdir().unwrap();
    let workspace = dir.path().join("ws");
    std::fs::create_dir_all(workspace.join("docs")).unwrap();
    std::fs::write(workspace.join("docs/a.txt"), "alpha").unwrap();
    let cfg = dir.path().join("arcp.toml");
    std::fs::write(
        &cfg,
        format!("workspace = {:?}\n", workspace.to_str().unwrap()),
    )
    .unwrap();
    let host = Host::start(&bundled_plugins(), &["--config", cfg.to_str().unwrap()]);
    (dir, host)
}

/// The authority a job starts with is its own, never the spare's (which grants
/// nothing) nor the previous job's: a lease, then none, then the lease again.
#[tokio::test]
async fn a_job_in_a_spare_instance_has_its_own_lease() {
    let (_dir, host) = host_with_workspace();
    let mut c = Client::connect(&host.url, TOKEN).await;
    let granted = json!({"agent": "reader", "input": {"path": "docs/a.txt"},
        "lease_request": {"fs.read": ["/docs/**"]}});
    let end = run(&mut c, granted.clone()).await;
    assert_eq!(end["payload"]["result"]["text"], "alpha", "{end}");
    assert_eq!(
        taken(&host).await,
        0.0,
        "the plugin's first job had no spare"
    );

    spare_ready(&host).await;
    let end = run(
        &mut c,
        json!({"agent": "reader", "input": {"path": "docs/a.txt"}}),
    )
    .await;
    assert_eq!(end["type"], "job.error", "{end}");
    assert_eq!(end["payload"]["code"], "PERMISSION_DENIED", "{end}");
    assert_eq!(taken(&host).await, 1.0);

    spare_ready(&host).await;
    let end = run(&mut c, granted).await;
    assert_eq!(end["payload"]["result"]["text"], "alpha", "{end}");
    assert_eq!(taken(&host).await, 2.0);
}

/// A job in a spare sends its events to its own session, every one of them.
#[tokio::test]
async fn a_job_in_a_spare_instance_sends_its_events_to_its_own_session() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut alice = Client::connect(&host.url, TOKEN).await;
    let end = run(
        &mut alice,
        json!({"agent": "ticker", "input": {"count": 2}}),
    )
    .await;
    assert_eq!(end["payload"]["result"]["ticks"], 2, "{end}");

    spare_ready(&host).await;
    let mut bob = Client::connect(&host.url, TOKEN).await;
    let acc = bob
        .submit(json!({"agent": "ticker", "input": {"count": 5}}))
        .await;
    let job_id = acc["payload"]["job_id"].as_str().unwrap().to_owned();
    let frames = bob.until_terminal().await;
    assert_eq!(taken(&host).await, 1.0);
    let ticks: Vec<&Value> = frames
        .iter()
        .filter(|f| f["type"] == "job.event" && f["payload"]["kind"] == "log")
        .collect();
    assert_eq!(ticks.len(), 5, "{frames:?}");
    assert!(ticks.iter().all(|f| f["job_id"] == job_id.as_str()));
    assert_eq!(frames.last().unwrap()["payload"]["result"]["ticks"], 5);

    // Alice's session heard nothing of Bob's job.
    alice
        .send(
            "session.ping",
            json!({"nonce": "sync", "sent_at": "2026-01-01T00:00:00Z"}),
        )
        .await;
    let heard = alice.until("session.pong").await;
    assert!(
        heard.iter().all(|f| f["type"] == "session.pong"),
        "{heard:?}"
    );
}

/// A host over `hostile` under a 32 MiB ceiling, a client, and a spare of `hostile`
/// left by one job that ran to its end.
async fn hostile_with_a_spare() -> (tempfile::TempDir, Host, Client) {
    let dir = common::hostile_folder(&[]);
    std::fs::write(dir.path().join("hostile@1.0.0.toml"), "memory_mib = 32\n").unwrap();
    let host = Host::start(dir.path(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let ok = run(&mut c, json!({"agent": "hostile", "input": {"mode": "ok"}})).await;
    assert_eq!(ok["payload"]["result"]["ok"], true, "{ok}");
    spare_ready(&host).await;
    (dir, host, c)
}

/// A job in a spare is interrupted by the epoch like any other: a guest computing
/// without end, which never calls the host, is cancelled.
#[tokio::test]
async fn a_job_in_a_spare_instance_is_cancelled_while_it_computes() {
    let (_dir, host, mut c) = hostile_with_a_spare().await;
    let acc = c
        .submit(json!({"agent": "hostile", "input": {"mode": "compute", "rounds": u64::MAX}}))
        .await;
    let job_id = acc["payload"]["job_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.send("job.cancel", json!({"job_id": job_id})).await;
    let end = tokio::time::timeout(Duration::from_secs(10), c.until_terminal())
        .await
        .expect("the computing job ended within 10 s of its cancel")
        .pop()
        .unwrap();
    assert_eq!(end["payload"]["final_status"], "cancelled", "{end}");
    assert_eq!(taken(&host).await, 1.0);
}

/// A spare is made under its plugin's memory ceiling, which holds for the job that
/// takes it.
#[tokio::test]
async fn a_job_in_a_spare_instance_is_held_to_its_memory_ceiling() {
    let (_dir, host, mut c) = hostile_with_a_spare().await;
    let end = run(
        &mut c,
        json!({"agent": "hostile", "input": {"mode": "alloc", "mib": 100}}),
    )
    .await;
    assert_eq!(end["type"], "job.error", "{end}");
    let msg = end["payload"]["message"].as_str().unwrap();
    assert!(msg.contains("32 MiB"), "names the ceiling: {msg}");
    assert_eq!(taken(&host).await, 1.0);

    spare_ready(&host).await;
    let ok = run(
        &mut c,
        json!({"agent": "hostile", "input": {"mode": "alloc", "mib": 8}}),
    )
    .await;
    assert_eq!(ok["payload"]["result"]["allocated"], 8, "{ok}");
    assert_eq!(taken(&host).await, 2.0);
}

/// A spare no job takes goes at the runtime's sweep (here every second), with its
/// instance of the pool.
#[tokio::test]
async fn a_spare_no_job_takes_is_dropped_by_the_sweep() {
    let (_dir, cfg) = common::config_file("[retention]\nsweep_interval_sec = 1\n");
    let host = Host::start(&bundled_plugins(), &["--config", &cfg]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let end = run(&mut c, json!({"agent": "echo", "input": "once"})).await;
    assert_eq!(end["payload"]["result"]["echoed"], "once", "{end}");
    spare_ready(&host).await;

    let until = Instant::now() + Duration::from_secs(10);
    while metric(&host, "arcp_spare_instances").await > 0.0 {
        assert!(Instant::now() < until, "the idle spare was never dropped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The plugin's next job instantiates as it comes, and leaves a spare again.
    let end = run(&mut c, json!({"agent": "echo", "input": "again"})).await;
    assert_eq!(end["payload"]["result"]["echoed"], "again", "{end}");
    assert_eq!(taken(&host).await, 0.0);
    spare_ready(&host).await;
}
