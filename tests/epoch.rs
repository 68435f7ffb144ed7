//! Epoch interruption: guests that never call the host are still stopped.

mod common;

use common::{Client, Host, TOKEN, bundled_plugins};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_spinner_is_cancelled_promptly() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let acc = c.submit(json!({"agent": "spinner"})).await;
    let job = acc["payload"]["job_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    c.send_env("job.cancel", json!({"reason": "test"}), Some(&job))
        .await;
    let last = c.until_terminal().await.pop().unwrap();
    assert_eq!(last["payload"]["final_status"], "cancelled");
    // Generous bound for a shared CI machine; the benchmark measures the real figure.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_spinner_reaching_max_runtime_times_out() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    c.submit(json!({"agent": "spinner", "max_runtime_sec": 1}))
        .await;
    let last = c.until_terminal().await.pop().unwrap();
    assert_eq!(last["type"], "job.result");
    assert_eq!(last["payload"]["final_status"], "timed_out");
}

#[tokio::test]
async fn eight_spinners_do_not_stop_an_echo_job() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let mut spinners = Vec::new();
    for _ in 0..8 {
        let acc = c
            .submit(json!({"agent": "spinner", "max_runtime_sec": 60}))
            .await;
        spinners.push(acc["payload"]["job_id"].as_str().unwrap().to_owned());
    }
    let mut other = Client::connect(&host.url, TOKEN).await;
    other
        .submit(json!({"agent": "echo", "input": "through"}))
        .await;
    let done = other.until_terminal().await.pop().unwrap();
    assert_eq!(done["payload"]["result"]["echoed"], "through");
    for job in &spinners {
        c.send_env("job.cancel", json!({}), Some(job)).await;
    }
    let mut ended = 0;
    while ended < spinners.len() {
        let f = c.next().await;
        if f["type"] == "job.result" {
            assert_eq!(f["payload"]["final_status"], "cancelled");
            ended += 1;
        }
    }
}

#[tokio::test]
async fn a_lease_that_expires_ends_the_job_with_lease_expired() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let at = (chrono::Utc::now() + chrono::Duration::milliseconds(1500))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let acc = c.submit(json!({"agent": "sleeper", "input": {"seconds": 30}, "lease_constraints": {"expires_at": at}})).await;
    assert_eq!(
        acc["payload"]["lease_constraints"]["expires_at"],
        at.as_str()
    );
    let last = c.until_terminal().await.pop().unwrap();
    assert_eq!(last["type"], "job.error");
    assert_eq!(last["payload"]["code"], "LEASE_EXPIRED");
    assert_eq!(last["payload"]["retryable"], false);
    assert_eq!(last["payload"]["final_status"], "error");
}
