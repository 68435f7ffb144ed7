//! Hostile clients (issue 6): each case ends with a clear ARCP error or a closed
//! connection for the offender while the host keeps serving everyone else. Frames
//! that are not JSON, too deep, too large or binary are in tests/websocket.rs; the
//! per-principal caps and the client that stops reading in tests/limits.rs.

mod common;

use common::{Client, Host, OTHER_TOKEN, TOKEN, bundled_plugins};
use futures_util::future::join_all;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A valid `job.submit` with one field replaced by `bad`.
fn submit_with(field: &str, bad: Value) -> Value {
    let mut env = json!({"arcp": "1.1", "id": common::envelope_id(500), "type": "job.submit",
        "payload": {"agent": "echo", "input": 1}});
    match field.strip_prefix("payload.") {
        Some(inner) => env["payload"][inner] = bad,
        None => env[field] = bad,
    }
    env
}

#[tokio::test]
async fn every_field_of_the_wrong_type_is_invalid_request_and_the_session_goes_on() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let cases = [
        ("arcp", json!(1.1)),
        ("id", json!(42)),
        ("type", json!(["job.submit"])),
        ("session_id", json!({"x": 1})),
        ("job_id", json!(7)),
        ("trace_id", json!(false)),
        ("payload", json!("not an object")),
        ("payload.agent", json!(5)),
        ("payload.lease_request", json!("fs.read")),
        ("payload.lease_constraints", json!([1, 2])),
        ("payload.max_runtime_sec", json!("ten")),
        ("payload.max_runtime_sec", json!(-1)),
        ("payload.idempotency_key", json!({"k": 1})),
        ("payload.parent_job_id", json!(3.5)),
    ];
    for (field, bad) in cases {
        c.send_text(&submit_with(field, bad.clone()).to_string())
            .await;
        let answer = c.next().await;
        assert_eq!(answer["type"], "session.error", "{field}={bad}: {answer}");
        assert_eq!(
            answer["payload"]["code"], "INVALID_REQUEST",
            "{field}={bad}: {answer}"
        );
    }
    let accepted = c
        .submit(json!({"agent": "echo", "input": "still here"}))
        .await;
    assert_eq!(accepted["type"], "job.accepted");
    let end = c.until_terminal().await.pop().unwrap();
    assert_eq!(end["payload"]["result"]["echoed"], "still here");
}

#[tokio::test]
async fn huge_strings_under_the_frame_limit_are_served_and_errors_quoting_them_stay_small() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let big = "x".repeat(900 << 10);
    // As the name of an agent: refused, and the error does not echo 900 KiB back.
    c.send("job.submit", json!({"agent": big})).await;
    let refused = c.next().await;
    assert_eq!(refused["type"], "session.error");
    assert!(
        refused.to_string().len() < 16 << 10,
        "{} bytes",
        refused.to_string().len()
    );
    // As an input: echoed whole.
    let accepted = c.submit(json!({"agent": "echo", "input": big})).await;
    assert_eq!(accepted["type"], "job.accepted", "{accepted}");
    let end = c.until_terminal().await.pop().unwrap();
    assert_eq!(end["type"], "job.result");
    assert_eq!(
        end["payload"]["result"]["echoed"].as_str().unwrap().len(),
        900 << 10
    );
}

/// Regression (found while writing the fuzz target): `job.cancelled` echoed the
/// client's `reason` and `session.pong` its `nonce` whole, so a request near the
/// 1 MiB inbound limit got a reply over the 1 MiB a frame may carry, and the
/// reference client closed its own connection (1009).
#[tokio::test]
async fn replies_that_echo_client_strings_stay_small() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let big = "r".repeat(1000 << 10);
    let acc = c
        .submit(json!({"agent": "sleeper", "input": {"seconds": 30}}))
        .await;
    let job_id = acc["job_id"].as_str().unwrap().to_owned();
    c.send_env("job.cancel", json!({"reason": big}), Some(&job_id))
        .await;
    let cancelled = c.until("job.cancelled").await.pop().unwrap();
    let reason = cancelled["payload"]["reason"].as_str().unwrap();
    assert!(reason.len() < 2048, "{} bytes echoed", reason.len());
    assert!(reason.contains("truncated from"), "{reason:.80}");
    assert_eq!(
        c.until_terminal().await.pop().unwrap()["payload"]["final_status"],
        "cancelled"
    );
    // A ping with a huge nonce is refused (a pong must echo it whole), briefly.
    c.send(
        "session.ping",
        json!({"nonce": big, "sent_at": "2026-01-01T00:00:00Z"}),
    )
    .await;
    let refused = c.until("session.error").await.pop().unwrap();
    assert_eq!(
        refused["payload"]["code"], "INVALID_REQUEST",
        "{refused:.200}"
    );
    assert!(refused.to_string().len() < 16 << 10);
    // The session goes on.
    c.send(
        "session.ping",
        json!({"nonce": "n1", "sent_at": "2026-01-01T00:00:00Z"}),
    )
    .await;
    let pong = c.until("session.pong").await.pop().unwrap();
    assert_eq!(pong["payload"]["ping_nonce"], "n1");
}

#[tokio::test]
async fn resume_tokens_are_single_use_and_bound_to_their_principal() {
    let host = Host::start(&bundled_plugins(), &[]);
    let c = Client::connect(&host.url, TOKEN).await;
    let sid = c.session_id.clone();
    let first = c.welcome["payload"]["resume_token"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(c);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let resume =
        |token: &str| json!({"session_id": sid, "resume_token": token, "last_event_seq": 0});

    // Another principal holding the token cannot take the session over.
    let m = Client::connect_with(&host.url, OTHER_TOKEN, json!([]), Some(resume(&first))).await;
    assert_eq!(
        m.welcome["payload"]["code"], "PERMISSION_DENIED",
        "{}",
        m.welcome
    );

    // Its owner can, once; the token then rotates.
    let again = Client::connect_with(&host.url, TOKEN, json!([]), Some(resume(&first))).await;
    assert_eq!(
        again.welcome["type"], "session.welcome",
        "{}",
        again.welcome
    );
    drop(again);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A replay of the used token is refused.
    let replay = Client::connect_with(&host.url, TOKEN, json!([]), Some(resume(&first))).await;
    assert_eq!(
        replay.welcome["payload"]["code"], "PERMISSION_DENIED",
        "{}",
        replay.welcome
    );
}

#[tokio::test]
async fn a_thousand_sessions_opened_at_once_are_all_served() {
    let host = Host::start(&bundled_plugins(), &[]);
    let started = Instant::now();
    let clients = join_all((0..1000).map(|_| Client::connect(&host.url, TOKEN))).await;
    let welcomed = clients
        .iter()
        .filter(|c| c.welcome["type"] == "session.welcome")
        .count();
    assert_eq!(welcomed, 1000);
    let took = started.elapsed();
    // And every one of them still works: each runs a job.
    let results = join_all(
        clients
            .into_iter()
            .enumerate()
            .map(|(i, mut c)| async move {
                c.submit(json!({"agent": "echo", "input": i})).await;
                c.until_terminal().await.pop().unwrap()["payload"]["result"]["echoed"].clone()
            }),
    )
    .await;
    for (i, echoed) in results.iter().enumerate() {
        assert_eq!(*echoed, json!(i));
    }
    println!("1000 handshakes in {took:?}");
}

#[tokio::test]
async fn a_burst_of_ten_thousand_submits_past_the_job_cap_is_refused_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("arcp-host.toml");
    std::fs::write(&cfg, "[limits]\nmax_running_jobs_per_principal = 100\n").unwrap();
    let host = Host::start(&bundled_plugins(), &["--config", cfg.to_str().unwrap()]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    const BURST: usize = 10_000;
    for _ in 0..BURST {
        c.send(
            "job.submit",
            json!({"agent": "sleeper", "input": {"seconds": 1}}),
        )
        .await;
    }
    let (mut accepted, mut refused, mut ended) = (0, 0, 0);
    while accepted + refused < BURST || ended < accepted {
        let f = c.next().await;
        match f["type"].as_str() {
            Some("job.accepted") => accepted += 1,
            Some("session.error") => {
                assert_eq!(f["payload"]["code"], "PERMISSION_DENIED", "{f}");
                refused += 1;
            }
            Some("job.result") => ended += 1,
            _ => {}
        }
    }
    assert!(accepted >= 100, "{accepted} accepted");
    assert_eq!(accepted + refused, BURST);
    // Every accepted job ran to its end; another principal was served throughout.
    let mut m = Client::connect(&host.url, OTHER_TOKEN).await;
    let ok = m.submit(json!({"agent": "echo", "input": 1})).await;
    assert_eq!(ok["type"], "job.accepted");
}

#[tokio::test]
async fn a_slowloris_handshake_is_cut_off_and_others_are_served_meanwhile() {
    let host = Host::start(&bundled_plugins(), &[]);
    let addr = host
        .url
        .trim_start_matches("ws://")
        .trim_end_matches("/arcp");
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    // Half an upgrade request, then nothing.
    slow.write_all(b"GET /arcp HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut c = Client::connect(&host.url, TOKEN).await;
    c.submit(json!({"agent": "echo", "input": 1})).await;
    assert_eq!(
        c.until_terminal().await.pop().unwrap()["type"],
        "job.result"
    );
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(20), slow.read(&mut buf))
        .await
        .expect("the host closes a handshake that never completes");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= Duration::from_secs(5));
}

#[tokio::test]
async fn a_connection_that_never_says_hello_is_closed_after_ten_seconds() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut ws = Client::raw(&host.url).await;
    let started = Instant::now();
    let refusal = common::next_frame_within(&mut ws, Duration::from_secs(20))
        .await
        .expect("an error before the close");
    assert_eq!(refusal["type"], "session.error", "{refusal}");
    assert_eq!(refusal["payload"]["code"], "INVALID_REQUEST");
    assert!(started.elapsed() >= Duration::from_secs(9));
    // Then the connection closes.
    assert!(
        common::next_frame_within(&mut ws, Duration::from_secs(5))
            .await
            .is_none()
    );
}
