//! A runtime killed with SIGKILL and restarted on the same `--data` (issue 5's first
//! slice): finished jobs are still listed and replayable, a job that was running ends
//! with `INTERNAL_ERROR` (retryable), the session resumes across the restart, and an
//! idempotent resubmit returns the original `job.accepted`.

mod common;

use common::{Client, Host, TOKEN, bundled_plugins};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn after_a_kill_finished_jobs_remain_running_ones_end_and_the_session_resumes() {
    let data = tempfile::tempdir().unwrap();
    let data_path = data.path().to_owned();
    let mut host = Host::start_with_data(&bundled_plugins(), data, &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let token = c.welcome["payload"]["resume_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let sid = c.session_id.clone();
    let done = c
        .submit(json!({"agent": "echo", "input": "kept", "idempotency_key": "survives"}))
        .await;
    let done_id = done["payload"]["job_id"].as_str().unwrap().to_owned();
    let finished = c.until_terminal().await;
    let running = c
        .submit(json!({"agent": "sleeper", "input": {"seconds": 60}}))
        .await;
    let running_id = running["payload"]["job_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await; // the store's writer commits
    host.child.kill().unwrap();
    host.child.wait().unwrap();

    let host = Host::start_with_data(&bundled_plugins(), common::reuse_data_dir(&data_path), &[]);
    let mut r = Client::connect_with(
        &host.url,
        TOKEN,
        json!(["list_jobs", "subscribe"]),
        Some(json!({"session_id": sid, "resume_token": token, "last_event_seq": 1})),
    )
    .await;
    assert_eq!(r.welcome["type"], "session.welcome", "{}", r.welcome);
    r.session_id = sid.clone();
    // The crashed job's terminal follows the last envelope sent before the crash.
    let end = r.until_terminal().await.pop().unwrap();
    assert_eq!(end["job_id"], running_id.as_str());
    assert_eq!(end["type"], "job.error");
    assert_eq!(end["payload"]["code"], "INTERNAL_ERROR");
    assert_eq!(end["payload"]["retryable"], true);
    assert!(
        end["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("restarted")
    );
    assert_eq!(end["event_seq"], 2, "numbering goes on without a gap");

    r.send("session.list_jobs", json!({})).await;
    let list = r.until("session.jobs").await.pop().unwrap();
    let status = |id: &str| {
        list["payload"]["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["job_id"] == id)
            .map(|j| j["status"].clone())
    };
    assert_eq!(status(&done_id), Some(json!("success")));
    assert_eq!(status(&running_id), Some(json!("error")));

    // An idempotent resubmit after the restart returns the original acceptance.
    let again = r
        .submit(json!({"agent": "echo", "input": "kept", "idempotency_key": "survives"}))
        .await;
    assert_eq!(again["payload"]["job_id"], done_id.as_str());
    assert_eq!(
        again["payload"]["accepted_at"],
        done["payload"]["accepted_at"]
    );
    let conflict = r
        .submit(json!({"agent": "echo", "input": "other", "idempotency_key": "survives"}))
        .await;
    assert_eq!(conflict["payload"]["code"], "DUPLICATE_KEY");

    // A finished job replays its history and terminal to a new subscriber.
    let mut w = Client::connect(&host.url, TOKEN).await;
    w.send("job.subscribe", json!({"job_id": done_id, "history": true}))
        .await;
    assert_eq!(w.next().await["type"], "job.subscribed");
    let replay = w.until_terminal().await;
    assert_eq!(
        replay.last().unwrap()["payload"]["result"],
        finished.last().unwrap()["payload"]["result"]
    );
}

/// Regression: a crash between the commit of a submit's idempotency key and that of
/// its job record (the submit was never acknowledged) left a key pointing at no job,
/// and every resubmit with it failed with INTERNAL_ERROR "job … of this idempotency
/// key is gone". Found by tests/interop/test_crash.py.
#[tokio::test]
async fn a_key_left_without_its_job_by_a_crash_is_free_again() {
    use arcp_host::store::{IdempotencyRecord, SqliteStore, Store};
    let data = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(data.path()).unwrap();
        store.put_idempotency(IdempotencyRecord {
            principal: "alice".into(),
            key: "cut-short".into(),
            fingerprint: "{\"agent\":\"echo@2.0.0\",\"input\":1,\"lease_request\":{},\"lease_constraints\":null,\"max_runtime_sec\":null}".into(),
            job_id: "job_01M8JRGR0TJ027GSXHX9NPNMH5".into(),
            created_at: chrono::Utc::now().to_rfc3339(),
        });
        store.flush().unwrap();
    }
    let host = Host::start_with_data(&bundled_plugins(), data, &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let accepted = c
        .submit(json!({"agent": "echo", "input": 1, "idempotency_key": "cut-short"}))
        .await;
    assert_eq!(accepted["type"], "job.accepted", "{accepted}");
    assert_ne!(
        accepted["payload"]["job_id"],
        "job_01M8JRGR0TJ027GSXHX9NPNMH5"
    );
    let end = c.until_terminal().await.pop().unwrap();
    assert_eq!(end["payload"]["result"]["echoed"], 1);
}

#[tokio::test]
async fn a_subscriber_resuming_after_a_kill_is_sent_the_running_jobs_end() {
    let data = tempfile::tempdir().unwrap();
    let data_path = data.path().to_owned();
    let mut host = Host::start_with_data(&bundled_plugins(), data, &[]);
    let mut owner = Client::connect(&host.url, TOKEN).await;
    let running = owner
        .submit(json!({"agent": "sleeper", "input": {"seconds": 60}}))
        .await;
    let job_id = running["payload"]["job_id"].as_str().unwrap().to_owned();
    let mut w = Client::connect(&host.url, TOKEN).await;
    let (sid, token) = (
        w.session_id.clone(),
        w.welcome["payload"]["resume_token"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    w.send("job.subscribe", json!({"job_id": job_id})).await;
    let subscribed = w.next().await;
    assert_eq!(subscribed["type"], "job.subscribed");
    let seen = subscribed["event_seq"].as_u64().unwrap_or(0); // unsequenced: 0
    tokio::time::sleep(Duration::from_millis(300)).await;
    host.child.kill().unwrap();
    host.child.wait().unwrap();

    let host = Host::start_with_data(&bundled_plugins(), common::reuse_data_dir(&data_path), &[]);
    let mut r = Client::connect_with(
        &host.url,
        TOKEN,
        json!(["subscribe"]),
        Some(json!({"session_id": sid, "resume_token": token, "last_event_seq": seen})),
    )
    .await;
    assert_eq!(r.welcome["type"], "session.welcome", "{}", r.welcome);
    let end = r.until_terminal().await.pop().unwrap();
    assert_eq!(end["job_id"], job_id.as_str());
    assert_eq!(end["type"], "job.error");
    assert_eq!(end["payload"]["code"], "INTERNAL_ERROR");
    assert_eq!(
        end["event_seq"],
        seen + 1,
        "in the subscriber's own numbering"
    );
}
