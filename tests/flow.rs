//! Acknowledgement and back-pressure (spec §6.5), resume window expiry (§6.3),
//! idempotency under concurrency (§7.2) and result caps (§8.4).

mod common;

use common::{Client, Host, TOKEN, bundled_plugins};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_client_that_stops_acking_throttles_its_jobs_without_losing_events() {
    let (_cfg_dir, cfg) = common::config_file("[limits]\nmax_unacked_events = 50\n");
    let host = Host::start(&bundled_plugins(), &["--config", &cfg]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    c.send("session.ack", json!({"last_processed_seq": 0}))
        .await;
    c.submit(json!({"agent": "ticker", "input": {"count": 300}}))
        .await;

    let mut ticks = Vec::new();
    let mut last_seq = 0;
    let mut pressure = 0;
    loop {
        let f = match tokio::time::timeout(Duration::from_millis(500), c.next()).await {
            Ok(f) => f,
            Err(_) => {
                // Silence: the job may be waiting for us (or the machine is slow);
                // acknowledging what we have seen lets it go on either way.
                c.send("session.ack", json!({"last_processed_seq": last_seq}))
                    .await;
                continue;
            }
        };
        if let Some(seq) = f["event_seq"].as_u64() {
            assert_eq!(seq, last_seq + 1, "gap-free");
            last_seq = seq;
        }
        if f["payload"]["kind"] == "status" && f["payload"]["body"]["phase"] == "back_pressure" {
            pressure += 1;
            c.send("session.ack", json!({"last_processed_seq": last_seq}))
                .await;
        }
        if let Some(m) = f["payload"]["body"]["message"].as_str()
            && m.starts_with("tick ")
        {
            ticks.push(m.to_owned());
        }
        if f["type"] == "job.result" {
            break;
        }
    }
    assert!(
        pressure >= 4,
        "300 events against a lag of 50 must brake several times, saw {pressure}"
    );
    assert_eq!(ticks.len(), 300);
    assert_eq!(ticks[299], "tick 299");
}

#[tokio::test]
async fn an_ack_beyond_what_was_sent_does_not_open_the_brake() {
    let (_cfg_dir, cfg) = common::config_file("[limits]\nmax_unacked_events = 20\n");
    let host = Host::start(&bundled_plugins(), &["--config", &cfg]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    // Acknowledging the future is clamped to what was sent (nothing yet).
    c.send("session.ack", json!({"last_processed_seq": 1_000_000}))
        .await;
    c.submit(json!({"agent": "ticker", "input": {"count": 100}}))
        .await;
    let mut saw_pressure = false;
    while let Ok(f) = tokio::time::timeout(Duration::from_millis(500), c.next()).await {
        if f["payload"]["body"]["phase"] == "back_pressure" {
            saw_pressure = true;
        }
        assert_ne!(
            f["type"], "job.result",
            "the job cannot finish without acks"
        );
    }
    assert!(saw_pressure);
}

#[tokio::test]
async fn resume_after_the_window_is_resume_window_expired() {
    let (_cfg_dir, cfg) = common::config_file("resume_window_sec = 1\n");
    let host = Host::start(&bundled_plugins(), &["--config", &cfg]);
    let c = Client::connect(&host.url, TOKEN).await;
    let token = c.welcome["payload"]["resume_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let sid = c.session_id.clone();
    drop(c);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let r = Client::connect_with(
        &host.url,
        TOKEN,
        json!([]),
        Some(json!({"session_id": sid, "resume_token": token, "last_event_seq": 0})),
    )
    .await;
    assert_eq!(
        r.welcome["payload"]["code"], "RESUME_WINDOW_EXPIRED",
        "{}",
        r.welcome
    );
}

#[tokio::test]
async fn a_resume_cursor_beyond_anything_sent_is_invalid_request() {
    let host = Host::start(&bundled_plugins(), &[]);
    let c = Client::connect(&host.url, TOKEN).await;
    let token = c.welcome["payload"]["resume_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let sid = c.session_id.clone();
    drop(c);
    let r = Client::connect_with(
        &host.url,
        TOKEN,
        json!([]),
        Some(json!({"session_id": sid, "resume_token": token, "last_event_seq": 99})),
    )
    .await;
    assert_eq!(r.welcome["payload"]["code"], "INVALID_REQUEST");
}

#[tokio::test]
async fn two_concurrent_submits_with_one_key_start_one_job() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let submit = json!({"agent": "sleeper", "input": {"seconds": 0.2}, "idempotency_key": "same"});
    c.send("job.submit", submit.clone()).await;
    c.send("job.submit", submit).await;
    let mut accepted = Vec::new();
    while accepted.len() < 2 {
        let f = c.next().await;
        if f["type"] == "job.accepted" {
            accepted.push(f["payload"]["job_id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(accepted[0], accepted[1]);
    c.send("session.list_jobs", json!({})).await;
    let jobs = c.until("session.jobs").await.pop().unwrap();
    assert_eq!(jobs["payload"]["jobs"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn idempotency_keys_expire_after_their_lifetime() {
    let (_cfg_dir, cfg) = common::config_file("idempotency_ttl_sec = 1\n");
    let host = Host::start(&bundled_plugins(), &["--config", &cfg]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let first = c
        .submit(json!({"agent": "echo", "input": 1, "idempotency_key": "short"}))
        .await;
    c.until_terminal().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = c
        .submit(json!({"agent": "echo", "input": 2, "idempotency_key": "short"}))
        .await;
    assert_eq!(
        again["type"], "job.accepted",
        "an expired key may be reused: {again}"
    );
    assert_ne!(again["payload"]["job_id"], first["payload"]["job_id"]);
}

#[tokio::test]
async fn a_streamed_result_over_the_cap_is_internal_error() {
    let (_cfg_dir, cfg) = common::config_file("[limits]\nmax_result_mib = 1\n");
    let host = Host::start(&bundled_plugins(), &["--config", &cfg]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    c.submit(json!({"agent": "streamer", "input": {"chunks": 20, "chunk_size": 100_000}}))
        .await;
    let frames = c.until_terminal().await;
    let last = frames.last().unwrap();
    assert_eq!(last["type"], "job.error", "{last}");
    assert_eq!(last["payload"]["code"], "INTERNAL_ERROR");
    assert!(
        last["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("1 MiB")
    );
    let chunks = frames
        .iter()
        .filter(|f| f["payload"]["kind"] == "result_chunk")
        .count();
    assert_eq!(
        chunks, 10,
        "chunks up to the cap, nothing after the failure"
    );
}

#[tokio::test]
async fn acknowledged_events_are_released_so_an_older_cursor_cannot_resume() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let token = c.welcome["payload"]["resume_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let sid = c.session_id.clone();
    c.submit(json!({"agent": "ticker", "input": {"count": 4}}))
        .await;
    c.until_terminal().await;
    c.send("session.ack", json!({"last_processed_seq": 3}))
        .await;
    c.send(
        "session.ping",
        json!({"nonce": "sync", "sent_at": "2026-01-01T00:00:00Z"}),
    )
    .await;
    c.until("session.pong").await;
    drop(c);
    let old = Client::connect_with(
        &host.url,
        TOKEN,
        json!([]),
        Some(json!({"session_id": sid, "resume_token": token, "last_event_seq": 1})),
    )
    .await;
    assert_eq!(
        old.welcome["payload"]["code"], "RESUME_WINDOW_EXPIRED",
        "{}",
        old.welcome
    );
}

#[tokio::test]
async fn a_resume_replays_the_very_envelopes_first_sent() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let token = c.welcome["payload"]["resume_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let sid = c.session_id.clone();
    c.submit(json!({"agent": "ticker", "input": {"count": 3}}))
        .await;
    let first = c.until_terminal().await;
    drop(c);
    let mut r = Client::connect_with(
        &host.url,
        TOKEN,
        json!([]),
        Some(json!({"session_id": sid, "resume_token": token, "last_event_seq": 0})),
    )
    .await;
    let replayed = r.until_terminal().await;
    assert_eq!(
        replayed, first,
        "same envelopes: same ids, seqs, timestamps"
    );
}

/// A job that ends in its first slice is acknowledged with its result (one commit,
/// both frames together): `job.accepted` still comes first and names the submit,
/// the result is stored (a resumed session replays it) and the job is listed as it
/// ended. (Its record in the store, written only with its end now, is what
/// `restart::after_a_kill_finished_jobs_remain_running_ones_end_and_the_session_resumes`
/// finds after a kill.)
#[tokio::test]
async fn a_job_that_ends_before_it_is_acknowledged_is_acknowledged_first() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let resume = c.resume_at(0);
    let request = c
        .send("job.submit", json!({"agent": "echo", "input": {"n": 7}}))
        .await;
    let frames = c.until_terminal().await;
    let kinds: Vec<&str> = frames.iter().filter_map(|f| f["type"].as_str()).collect();
    assert_eq!(kinds, ["job.accepted", "job.result"], "{frames:?}");
    let job_id = frames[0]["payload"]["job_id"].as_str().unwrap().to_owned();
    assert_eq!(frames[0]["payload"]["request_id"], request.as_str());
    assert_eq!(frames[1]["job_id"], job_id.as_str());
    assert_eq!(frames[1]["payload"]["final_status"], "success");
    drop(c);

    let mut r = Client::connect_with(&host.url, TOKEN, json!([]), Some(resume)).await;
    let replayed = r.until_terminal().await;
    assert_eq!(replayed.last(), frames.last(), "the result is stored");
    r.send("session.list_jobs", json!({})).await;
    let listed = r.until("session.jobs").await;
    let jobs = listed.last().unwrap()["payload"]["jobs"]
        .as_array()
        .unwrap();
    assert!(
        jobs.iter()
            .any(|j| j["job_id"] == job_id.as_str() && j["status"] == "success"),
        "the job is listed as it ended: {jobs:?}"
    );
}

/// Regression: a job's `job.accepted` is held back until its first slice waits.
/// The acknowledgement takes the job's subscriber lock, which a slice that stopped
/// in the middle of sending an event still held (tokio makes a task that has used
/// its budget of lock acquisitions yield at the next one): the job hung, never
/// acknowledged. A long epoch tick makes the first slice long enough to send that
/// many events, even in a debug build.
#[tokio::test]
async fn a_job_whose_first_slice_stops_mid_send_is_still_acknowledged() {
    let (_cfg_dir, cfg) = common::config_file("[limits]\nepoch_tick_ms = 1000\n");
    let host = Host::start(&bundled_plugins(), &["--config", &cfg]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let accepted = c
        .submit(json!({"agent": "ticker", "input": {"count": 20000}}))
        .await;
    assert_eq!(accepted["type"], "job.accepted", "{accepted}");
    let frames = c.until_terminal().await;
    let events = frames.iter().filter(|f| f["type"] == "job.event").count();
    assert_eq!(events, 20000);
    assert_eq!(frames.last().unwrap()["type"], "job.result");
}
