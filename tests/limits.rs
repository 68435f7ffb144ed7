//! Limits a hostile or careless client runs into (issue 6): per-principal caps on
//! connected sessions and on running jobs, answered with a clear error while other
//! principals carry on, and a client that stops reading, which is disconnected after
//! the configured time while its jobs go on and it can resume without losing a frame.

mod common;

use common::{Client, Host, OTHER_TOKEN, TOKEN, bundled_plugins};
use serde_json::{Value, json};
use std::time::Duration;

fn assert_cap(refusal: &Value, limit: &str) {
    assert_eq!(refusal["type"], "session.error", "{refusal}");
    assert_eq!(refusal["payload"]["code"], "PERMISSION_DENIED", "{refusal}");
    assert_eq!(refusal["payload"]["retryable"], true, "{refusal}");
    assert_eq!(refusal["payload"]["details"]["limit"], limit, "{refusal}");
    assert_eq!(refusal["payload"]["details"]["max"], 2, "{refusal}");
}

#[tokio::test]
async fn a_principal_past_its_session_cap_is_refused_and_others_are_not() {
    let (_dir, cfg) = common::config_file("[limits]\nmax_sessions_per_principal = 2\n");
    let host = Host::start(&bundled_plugins(), &["--config", &cfg]);
    let a1 = Client::connect(&host.url, TOKEN).await;
    let _a2 = Client::connect(&host.url, TOKEN).await;
    assert_eq!(a1.welcome["type"], "session.welcome");
    let a3 = Client::connect(&host.url, TOKEN).await;
    assert_cap(&a3.welcome, "max_sessions_per_principal");
    // Another principal is not affected.
    let mut m = Client::connect(&host.url, OTHER_TOKEN).await;
    assert_eq!(m.welcome["type"], "session.welcome");
    m.submit(json!({"agent": "echo", "input": 1})).await;
    assert_eq!(
        m.until_terminal().await.pop().unwrap()["type"],
        "job.result"
    );
    // A session that went away no longer counts.
    drop(a1);
    let mut again = None;
    for _ in 0..50 {
        let c = Client::connect(&host.url, TOKEN).await;
        if c.welcome["type"] == "session.welcome" {
            again = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(again.is_some(), "a slot frees when a session leaves");
}

#[tokio::test]
async fn a_principal_past_its_running_job_cap_is_refused_until_one_ends() {
    let (_dir, cfg) = common::config_file("[limits]\nmax_running_jobs_per_principal = 2\n");
    let host = Host::start(&bundled_plugins(), &["--config", &cfg]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let mut running = Vec::new();
    for _ in 0..2 {
        let accepted = c
            .submit(json!({"agent": "sleeper", "input": {"seconds": 60}}))
            .await;
        assert_eq!(accepted["type"], "job.accepted", "{accepted}");
        running.push(accepted["job_id"].as_str().unwrap().to_owned());
    }
    let refused = c.submit(json!({"agent": "echo", "input": 1})).await;
    assert_cap(&refused, "max_running_jobs_per_principal");
    // An idempotent replay of a refused submit is refused alike, and starts nothing.
    let refused = c
        .submit(json!({"agent": "echo", "input": 1, "idempotency_key": "k"}))
        .await;
    assert_cap(&refused, "max_running_jobs_per_principal");
    // Another principal is not affected.
    let mut m = Client::connect(&host.url, OTHER_TOKEN).await;
    let accepted = m.submit(json!({"agent": "echo", "input": 2})).await;
    assert_eq!(accepted["type"], "job.accepted", "{accepted}");
    // Once one of the two ends, a slot is free again.
    c.send_env("job.cancel", json!({}), Some(&running[0])).await;
    c.until_terminal().await;
    let accepted = c.submit(json!({"agent": "echo", "input": 3})).await;
    assert_eq!(accepted["type"], "job.accepted", "{accepted}");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_and_its_job_goes_on() {
    let (_dir, cfg) =
        common::config_file("[limits]\nslow_client_timeout_sec = 1\noutbound_queue = 16\n");
    let host = Host::start(&bundled_plugins(), &["--config", &cfg]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let (sid, token) = (
        c.session_id.clone(),
        c.welcome["payload"]["resume_token"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    const TICKS: u64 = 100_000;
    let accepted = c
        .submit(json!({"agent": "ticker", "input": {"count": TICKS}}))
        .await;
    let job_id = accepted["job_id"].as_str().unwrap().to_owned();
    // Read nothing more: the socket buffers fill, then the queue, then the host
    // gives up on this connection.
    let mut disconnected = false;
    for _ in 0..200 {
        if host
            .logs()
            .contains("the client has read nothing for too long")
        {
            disconnected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(disconnected, "{}", host.logs());
    drop(c);

    // The job went on; the session resumes and gets every tick and the result.
    let mut r = Client::connect_with(
        &host.url,
        TOKEN,
        json!(["subscribe"]),
        Some(json!({"session_id": sid, "resume_token": token, "last_event_seq": 0})),
    )
    .await;
    assert_eq!(r.welcome["type"], "session.welcome", "{}", r.welcome);
    let frames = r.until_terminal().await;
    let end = frames.last().unwrap();
    assert_eq!(end["job_id"], job_id.as_str());
    assert_eq!(end["payload"]["result"]["ticks"], TICKS);
    let ticks = frames.iter().filter(|f| f["type"] == "job.event").count() as u64;
    assert_eq!(ticks, TICKS, "no tick lost");
    let seqs: Vec<u64> = frames
        .iter()
        .filter_map(|f| f["event_seq"].as_u64())
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "gap-free");
}

/// Connects until the host has noticed earlier connections went away (a refusal
/// while it has not yet is retryable, so a client would do the same).
async fn connect_when_admitted(url: &str) -> Client {
    for _ in 0..100 {
        let c = Client::connect(url, TOKEN).await;
        if c.welcome["type"] == "session.welcome" {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never admitted");
}

/// Also a regression test: a resumed session was counted as connected only after its
/// welcome had been sent, so a hello right after that welcome found it detached and
/// forgot it to make room (the fourth client below was admitted; seen in CI).
#[tokio::test]
async fn detached_sessions_count_against_the_session_cap_and_the_longest_detached_is_forgotten() {
    let (_dir, cfg) = common::config_file("[limits]\nmax_sessions_per_principal = 2\n");
    let host = Host::start(&bundled_plugins(), &["--config", &cfg]);
    let first = connect_when_admitted(&host.url).await;
    let first_resume = first.resume_at(0);
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = connect_when_admitted(&host.url).await;
    let second_resume = second.resume_at(0);
    drop(second);
    // Two sessions held, both detached: a third is admitted and the first, detached
    // longest, is forgotten, so the principal never holds more than the cap.
    let _third = connect_when_admitted(&host.url).await;
    let lost = Client::connect_with(&host.url, TOKEN, json!([]), Some(first_resume)).await;
    assert_ne!(lost.welcome["type"], "session.welcome", "{}", lost.welcome);
    let kept = Client::connect_with(&host.url, TOKEN, json!([]), Some(second_resume)).await;
    assert_eq!(kept.welcome["type"], "session.welcome", "{}", kept.welcome);
    // Both slots are attached now: a fourth is refused.
    let fourth = Client::connect(&host.url, TOKEN).await;
    assert_cap(&fourth.welcome, "max_sessions_per_principal");
    assert!(host.logs().contains("detached session forgotten"));
}

/// Regression: with every instance of the pool in use, the next job failed at once
/// with INTERNAL_ERROR ("maximum concurrent limit ... reached"): 10,000 sleepers on
/// the default pool of 1,000 left 9,000 failed. Submitted jobs now wait for one.
#[tokio::test]
async fn jobs_past_the_instance_pool_wait_for_an_instance_and_all_finish() {
    let (_dir, cfg) = common::config_file("[limits]\npool_instances = 10\n");
    let host = Host::start(&bundled_plugins(), &["--config", &cfg]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let jobs = 30;
    for _ in 0..jobs {
        let acc = c
            .submit(json!({"agent": "sleeper", "input": {"seconds": 0.5}}))
            .await;
        assert_eq!(acc["type"], "job.accepted", "{acc}");
    }
    let mut ends = Vec::new();
    while ends.len() < jobs {
        let f = c.next().await;
        if f["type"] == "job.result" || f["type"] == "job.error" {
            ends.push(f);
        }
    }
    let failed: Vec<_> = ends.iter().filter(|f| f["type"] != "job.result").collect();
    assert!(
        failed.is_empty(),
        "{} of {jobs} failed: {:?}",
        failed.len(),
        failed.first()
    );
}
