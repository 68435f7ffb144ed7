//! The real binary over a real loopback WebSocket with the bundled plugins.

mod common;

use common::{Client, Host, OTHER_TOKEN, TOKEN, bundled_plugins};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn welcome_carries_every_field_the_reference_client_requires() {
    let host = Host::start(&bundled_plugins(), &[]);
    let c = Client::connect(&host.url, TOKEN).await;
    let w = &c.welcome;
    assert_eq!(w["type"], "session.welcome");
    assert_eq!(w["arcp"], "1.1");
    let p = &w["payload"];
    assert!(p["session_id"].as_str().unwrap().starts_with("sess_"));
    assert_eq!(w["session_id"], p["session_id"]);
    assert!(p["resume_token"].as_str().unwrap().starts_with("rtk_"));
    assert!(p["accepted_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(p["runtime"]["name"], "arcp-host");
    assert_eq!(p["heartbeat_interval_sec"], 30);
    let features: Vec<&str> = p["capabilities"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(features.contains(&"agent_versions"));
    assert!(
        !features.contains(&"model.use"),
        "never advertise what is not implemented"
    );
    let echo = p["capabilities"]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "echo")
        .unwrap();
    assert_eq!(echo["versions"], json!(["1.0.0", "2.0.0"]));
    assert_eq!(echo["default"], "2.0.0");
}

#[tokio::test]
async fn features_are_the_intersection_and_agents_flat_without_agent_versions() {
    let host = Host::start(&bundled_plugins(), &[]);
    let c = Client::connect_with(&host.url, TOKEN, json!(["progress", "x-unknown"]), None).await;
    let p = &c.welcome["payload"];
    assert_eq!(p["capabilities"]["features"], json!(["progress"]));
    assert!(
        p["capabilities"]["agents"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a.is_string())
    );
    assert!(p.get("heartbeat_interval_sec").is_none());
}

#[tokio::test]
async fn unknown_token_is_unauthenticated_and_closes() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut c = Client::connect(&host.url, "wrong").await;
    assert_eq!(c.welcome["type"], "session.error");
    assert_eq!(c.welcome["payload"]["code"], "UNAUTHENTICATED");
    assert!(
        common::next_frame(&mut c.ws).await.is_none(),
        "connection must close"
    );
}

#[tokio::test]
async fn echo_job_runs_end_to_end_with_accepted_fields() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let submit_id = c
        .send(
            "job.submit",
            json!({"agent": "echo@1.0.0", "input": {"a": 1}}),
        )
        .await;
    let acc = c.until("job.accepted").await.pop().unwrap();
    let p = &acc["payload"];
    assert_eq!(p["request_id"], submit_id.as_str());
    assert_eq!(p["agent"], "echo@1.0.0");
    assert!(p["job_id"].as_str().unwrap().starts_with("job_"));
    assert_eq!(p["trace_id"].as_str().unwrap().len(), 32);
    assert!(
        acc.get("event_seq").is_none(),
        "job.accepted is not sequenced"
    );
    let done = c.until_terminal().await.pop().unwrap();
    assert_eq!(done["type"], "job.result");
    assert_eq!(done["event_seq"], 1);
    assert_eq!(
        done["payload"]["result"],
        json!({"echoed": {"a": 1}, "version": "1.0.0"})
    );
    assert!(done["payload"]["completed_at"].is_string());
}

#[tokio::test]
async fn a_client_trace_id_is_carried_on_every_envelope_of_the_job() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let env = json!({"arcp": "1.1", "id": common::envelope_id(77), "type": "job.submit", "session_id": c.session_id,
        "trace_id": format!("00-{trace}-00f067aa0ba902b7-01"), "payload": {"agent": "ticker", "input": {"count": 2}}});
    c.send_text(&env.to_string()).await;
    let frames = c.until_terminal().await;
    assert!(frames.len() >= 4);
    for f in frames {
        assert_eq!(f["trace_id"], trace, "{f}");
    }
}

#[tokio::test]
async fn not_available_errors_name_the_agent_and_versions() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let e = c.submit(json!({"agent": "nope"})).await;
    assert_eq!(e["payload"]["code"], "AGENT_NOT_AVAILABLE");
    let e = c.submit(json!({"agent": "echo@3.0.0"})).await;
    assert_eq!(e["payload"]["code"], "AGENT_VERSION_NOT_AVAILABLE");
    assert_eq!(
        e["payload"]["details"]["available_versions"],
        json!(["1.0.0", "2.0.0"])
    );
    let e = c.submit(json!({"agent": "Bad Name"})).await;
    assert_eq!(e["payload"]["code"], "INVALID_REQUEST");
}

#[tokio::test]
async fn submit_validation_refuses_bad_leases_and_limits() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    for bad in [
        json!({"agent": "echo", "lease_request": {"cost.budget": ["USD:lots"]}}),
        json!({"agent": "echo", "lease_constraints": {"expires_at": "2000-01-01T00:00:00Z"}}),
        json!({"agent": "echo", "lease_constraints": {"expires_at": "2999-01-01T00:00:00+02:00"}}),
        json!({"agent": "echo", "max_runtime_sec": 0}),
        json!({"agent": "echo", "max_runtime_sec": 100000000}),
        json!({"agent": "echo", "idempotency_key": ""}),
    ] {
        let e = c.submit(bad.clone()).await;
        assert_eq!(e["payload"]["code"], "INVALID_REQUEST", "{bad}");
    }
    let ok = c.submit(json!({"agent": "echo", "lease_request": {"cost.budget": ["USD:5.00"], "x.custom": ["a"]}})).await;
    assert_eq!(ok["payload"]["budget"], json!({"USD": "USD:5.00"}));
    assert_eq!(ok["payload"]["lease"]["x.custom"], json!(["a"]));
}

#[tokio::test]
async fn cancel_rules_unknown_other_principal_other_session_and_finished() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut alice = Client::connect(&host.url, TOKEN).await;
    let acc = alice
        .submit(json!({"agent": "sleeper", "input": {"seconds": 30}}))
        .await;
    let job = acc["payload"]["job_id"].as_str().unwrap().to_owned();

    alice
        .send_env(
            "job.cancel",
            json!({"reason": "x"}),
            Some("job_01JNOSUCHJOB0000000000000"),
        )
        .await;
    assert_eq!(
        alice.until("session.error").await.pop().unwrap()["payload"]["code"],
        "JOB_NOT_FOUND"
    );

    let mut mallory = Client::connect(&host.url, OTHER_TOKEN).await;
    mallory
        .send_env("job.cancel", json!({"reason": "x"}), Some(&job))
        .await;
    let e = mallory.until("session.error").await.pop().unwrap();
    assert_eq!(
        e["payload"]["code"], "JOB_NOT_FOUND",
        "another principal must not learn the job exists"
    );

    let mut alice2 = Client::connect(&host.url, TOKEN).await;
    alice2.send("job.cancel", json!({"job_id": job})).await;
    assert_eq!(
        alice2.until("session.error").await.pop().unwrap()["payload"]["code"],
        "PERMISSION_DENIED"
    );

    // The submitting session cancels (Ruby spelling: job id in the payload).
    alice
        .send("job.cancel", json!({"job_id": job, "reason": "done"}))
        .await;
    let frames = alice.until_terminal().await;
    assert!(frames.iter().any(|f| f["type"] == "job.cancelled"));
    let last = frames.last().unwrap();
    assert_eq!(last["payload"]["final_status"], "cancelled");

    // Cancelling a finished job is a no-op: nothing comes back, the session goes on.
    alice.send_env("job.cancel", json!({}), Some(&job)).await;
    alice
        .send(
            "session.ping",
            json!({"nonce": "n1", "sent_at": "2026-01-01T00:00:00Z"}),
        )
        .await;
    let f = alice.next().await;
    assert_eq!(f["type"], "session.pong");
    assert_eq!(f["payload"]["ping_nonce"], "n1");
}

#[tokio::test]
async fn protocol_violations_get_invalid_request_and_the_session_goes_on() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let forged = json!({"arcp": "1.1", "id": common::envelope_id(90), "type": "session.list_jobs", "session_id": "sess_forged", "payload": {}});
    c.send_text(&forged.to_string()).await;
    assert_eq!(c.next().await["payload"]["code"], "INVALID_REQUEST");
    c.send("session.hello", json!({})).await;
    assert_eq!(c.next().await["payload"]["code"], "INVALID_REQUEST");
    c.ws.send(Message::binary(vec![0xff, 0xfe, 0x00]))
        .await
        .unwrap();
    assert_eq!(c.next().await["payload"]["code"], "INVALID_REQUEST");
    let deep = "[".repeat(100_000);
    c.send_text(&deep).await;
    assert_eq!(c.next().await["payload"]["code"], "INVALID_REQUEST");
    let acc = c.submit(json!({"agent": "echo", "input": 5})).await;
    assert_eq!(acc["type"], "job.accepted");
}

#[tokio::test]
async fn messages_before_hello_are_refused_then_hello_still_works() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut ws = Client::raw(&host.url).await;
    ws.send(Message::text(json!({"arcp": "1.1", "id": common::envelope_id(1), "type": "job.submit", "payload": {"agent": "echo"}}).to_string())).await.unwrap();
    let e = common::next_frame(&mut ws).await.unwrap();
    assert_eq!(e["type"], "session.error");
    assert_eq!(e["payload"]["code"], "INVALID_REQUEST");
    let hello = json!({"arcp": "1.1", "id": common::envelope_id(2), "type": "session.hello",
        "payload": {"client": {"name": "t", "version": "0"}, "auth": {"scheme": "bearer", "token": TOKEN}}});
    ws.send(Message::text(hello.to_string())).await.unwrap();
    assert_eq!(
        common::next_frame(&mut ws).await.unwrap()["type"],
        "session.welcome"
    );
}

#[tokio::test]
async fn an_inbound_frame_over_the_limit_closes_with_1009() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(2 << 20));
    let _ = c.ws.send(Message::text(big)).await;
    let mut code = None;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        futures_util::StreamExt::next(&mut c.ws),
    )
    .await
    {
        if let Message::Close(Some(frame)) = msg {
            code = Some(u16::from(frame.code));
            assert!(frame.reason.contains("limit"), "{}", frame.reason);
            break;
        }
    }
    assert_eq!(code, Some(1009));
    // The host serves others.
    let mut other = Client::connect(&host.url, TOKEN).await;
    assert_eq!(
        other.submit(json!({"agent": "echo"})).await["type"],
        "job.accepted"
    );
}

#[tokio::test]
async fn only_the_arcp_path_is_served() {
    let host = Host::start(&bundled_plugins(), &[]);
    let url = host.url.replace("/arcp", "/other");
    assert!(tokio_tungstenite::connect_async(url).await.is_err());
}

#[tokio::test]
async fn list_jobs_filters_and_pages_with_a_cursor() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let acc = c.submit(json!({"agent": "echo@1.0.0", "input": i})).await;
        ids.push(acc["payload"]["job_id"].as_str().unwrap().to_owned());
        c.until_terminal().await;
    }
    c.submit(json!({"agent": "sleeper", "input": {"seconds": 30}}))
        .await;
    let mut mallory = Client::connect(&host.url, OTHER_TOKEN).await;
    mallory.submit(json!({"agent": "echo"})).await;

    let req = c
        .send(
            "session.list_jobs",
            json!({"filter": {"agent": "echo", "status": ["success"]}, "limit": 2}),
        )
        .await;
    let page = c.until("session.jobs").await.pop().unwrap();
    assert_eq!(page["payload"]["request_id"], req.as_str());
    let jobs = page["payload"]["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0]["job_id"], ids[0].as_str());
    for field in [
        "job_id",
        "agent",
        "status",
        "submitted_at",
        "created_at",
        "lease",
        "trace_id",
    ] {
        assert!(jobs[0].get(field).is_some(), "missing {field}");
    }
    let mut seen: Vec<String> = jobs
        .iter()
        .map(|j| j["job_id"].as_str().unwrap().to_owned())
        .collect();
    let mut cursor = page["payload"]["next_cursor"].clone();
    while cursor.is_string() {
        c.send(
            "session.list_jobs",
            json!({"filter": {"agent": "echo@1.0.0"}, "limit": 2, "cursor": cursor}),
        )
        .await;
        let page = c.until("session.jobs").await.pop().unwrap();
        seen.extend(
            page["payload"]["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["job_id"].as_str().unwrap().to_owned()),
        );
        cursor = page["payload"]["next_cursor"].clone();
    }
    assert_eq!(
        seen, ids,
        "paging returns every job once, in order, and only alice's"
    );

    c.send(
        "session.list_jobs",
        json!({"filter": {"status": ["running"]}}),
    )
    .await;
    let page = c.until("session.jobs").await.pop().unwrap();
    assert_eq!(page["payload"]["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(page["payload"]["jobs"][0]["agent"], "sleeper@1.0.0");
}

#[tokio::test]
async fn idempotent_submit_replays_and_conflicts_are_duplicate_key() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let first = c
        .submit(json!({"agent": "echo", "input": 1, "idempotency_key": "k1"}))
        .await;
    c.until_terminal().await;
    let again = c
        .submit(json!({"agent": "echo", "input": 1, "idempotency_key": "k1"}))
        .await;
    assert_eq!(again["payload"]["job_id"], first["payload"]["job_id"]);
    assert_eq!(
        again["payload"]["accepted_at"],
        first["payload"]["accepted_at"]
    );
    assert_ne!(
        again["payload"]["request_id"],
        first["payload"]["request_id"]
    );
    let conflict = c
        .submit(json!({"agent": "echo", "input": 2, "idempotency_key": "k1"}))
        .await;
    assert_eq!(conflict["payload"]["code"], "DUPLICATE_KEY");
    // Keys are per principal.
    let mut m = Client::connect(&host.url, OTHER_TOKEN).await;
    let other = m
        .submit(json!({"agent": "echo", "input": 2, "idempotency_key": "k1"}))
        .await;
    assert_eq!(other["type"], "job.accepted");
}

/// Regression: a client that resumed on a new connection while its old one still
/// looked alive to the runtime (it went without a close the runtime had seen, as a
/// dropped network does) lost every live frame once the old connection's end was
/// seen: that end detached the session from the new connection. A resume now takes
/// the session over and closes the connection it replaces.
#[tokio::test]
async fn a_resume_that_replaces_a_live_connection_keeps_the_live_frames() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut old = Client::connect(&host.url, TOKEN).await;
    old.submit(json!({"agent": "ticker", "input": {"count": 6, "interval_ms": 300}}))
        .await;
    assert_eq!(old.next().await["event_seq"], 1);

    let resume = old.resume_at(1);
    let mut new = Client::connect_with(&host.url, TOKEN, json!(["progress"]), Some(resume)).await;
    assert_eq!(new.welcome["type"], "session.welcome", "{}", new.welcome);
    new.session_id = old.session_id.clone();
    // The runtime drops the connection it replaced (no frame for it any more), and
    // the end of that connection, seen while the job runs, leaves the new one be.
    let wait = std::time::Duration::from_secs(5);
    loop {
        match tokio::time::timeout(wait, old.ws.next()).await {
            Err(_) => panic!("the replaced connection is still open"),
            Ok(Some(Ok(Message::Text(t)))) => assert!(t.contains("session.ping"), "{t}"),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(_) => break, // closed, reset or ended
        }
    }
    drop(old);

    let frames = new.until_terminal().await;
    let seqs: Vec<u64> = frames
        .iter()
        .filter_map(|f| f["event_seq"].as_u64())
        .collect();
    assert_eq!(seqs, (2..=7).collect::<Vec<_>>(), "gap-free to the result");
}

#[tokio::test]
async fn resume_replays_missed_events_and_a_running_job_continues() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let token = c.welcome["payload"]["resume_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let sid = c.session_id.clone();
    c.submit(json!({"agent": "ticker", "input": {"count": 6, "interval_ms": 100}}))
        .await;
    let first = c.next().await;
    assert_eq!(first["event_seq"], 1);
    drop(c); // the connection drops mid-job

    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    let mut r = Client::connect_with(
        &host.url,
        TOKEN,
        json!(["progress"]),
        Some(json!({"session_id": sid, "resume_token": token, "last_event_seq": 1})),
    )
    .await;
    assert_eq!(r.welcome["type"], "session.welcome", "{}", r.welcome);
    assert_eq!(r.welcome["payload"]["session_id"], sid.as_str());
    assert_ne!(
        r.welcome["payload"]["resume_token"],
        token.as_str(),
        "token rotates"
    );
    r.session_id = sid.clone();
    let frames = r.until_terminal().await;
    let seqs: Vec<u64> = frames
        .iter()
        .filter_map(|f| f["event_seq"].as_u64())
        .collect();
    assert_eq!(
        seqs,
        (2..=7).collect::<Vec<_>>(),
        "gap-free from 2 to the result"
    );
    assert_eq!(
        frames.last().unwrap()["payload"]["result"],
        json!({"ticks": 6})
    );

    // The old token is spent; another principal cannot resume.
    let stale = Client::connect_with(
        &host.url,
        TOKEN,
        json!([]),
        Some(json!({"session_id": sid, "resume_token": token, "last_event_seq": 0})),
    )
    .await;
    assert_eq!(stale.welcome["payload"]["code"], "PERMISSION_DENIED");
    let fresh = r.welcome["payload"]["resume_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let thief = Client::connect_with(
        &host.url,
        OTHER_TOKEN,
        json!([]),
        Some(json!({"session_id": sid, "resume_token": fresh, "last_event_seq": 0})),
    )
    .await;
    assert_eq!(thief.welcome["payload"]["code"], "PERMISSION_DENIED");
}

#[tokio::test]
async fn a_large_inline_result_is_streamed_so_no_frame_passes_one_mebibyte() {
    let host = Host::start(&bundled_plugins(), &["--token", "x=y"]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    // Just under the inbound limit; echo's result is larger than one outbound frame.
    let input = "z".repeat(1_000_000);
    c.submit(json!({"agent": "echo", "input": input})).await;
    let frames = c.until_terminal().await;
    let mut text = String::new();
    for f in &frames {
        assert!(f.to_string().len() < 1 << 20);
        if f["payload"]["kind"] == "result_chunk" {
            text.push_str(f["payload"]["body"]["data"].as_str().unwrap());
        }
    }
    let last = frames.last().unwrap();
    assert!(last["payload"]["result_id"].is_string());
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["echoed"].as_str().unwrap().len(), 1_000_000);
}

#[tokio::test]
async fn a_silent_peer_is_dropped_as_heartbeat_lost_and_its_job_goes_on() {
    let host = Host::start(&bundled_plugins(), &["--heartbeat-interval", "1"]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let token = c.welcome["payload"]["resume_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let sid = c.session_id.clone();
    c.submit(json!({"agent": "ticker", "input": {"count": 4, "interval_ms": 1000}}))
        .await;
    // Read but never answer pings: after two silent intervals the runtime gives up.
    let mut lost = None;
    while let Some(f) = common::next_frame(&mut c.ws).await {
        if f["type"] == "session.ping" {
            assert!(f["payload"]["nonce"].is_string() && f["payload"]["sent_at"].is_string());
        }
        if f["type"] == "session.error" {
            lost = Some(f);
        }
    }
    let lost = lost.expect("a session.error before the close");
    assert_eq!(lost["payload"]["code"], "HEARTBEAT_LOST");
    // The job was not terminated: resuming shows it finishing.
    let mut r = Client::connect_with(
        &host.url,
        TOKEN,
        json!([]),
        Some(json!({"session_id": sid, "resume_token": token, "last_event_seq": 0})),
    )
    .await;
    assert_eq!(r.welcome["type"], "session.welcome", "{}", r.welcome);
    let last = r.until_terminal().await.pop().unwrap();
    assert_eq!(last["payload"]["result"], json!({"ticks": 4}));
}

#[tokio::test]
async fn bye_and_close_end_the_session_but_touch_no_job() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let acc = c
        .submit(json!({"agent": "sleeper", "input": {"seconds": 1}}))
        .await;
    let job = acc["payload"]["job_id"].as_str().unwrap().to_owned();
    c.send("session.bye", json!({"reason": "client.close"}))
        .await;
    assert!(
        common::next_frame(&mut c.ws).await.is_none(),
        "bye closes the connection"
    );

    let mut d = Client::connect(&host.url, TOKEN).await;
    d.send("session.close", json!({"reason": "done"})).await;
    assert_eq!(d.next().await["type"], "session.closed");

    let mut e = Client::connect(&host.url, TOKEN).await;
    e.send("session.list_jobs", json!({})).await;
    let list = e.until("session.jobs").await.pop().unwrap();
    assert_eq!(list["payload"]["jobs"][0]["job_id"], job.as_str());
    assert_eq!(
        list["payload"]["jobs"][0]["status"], "running",
        "the job outlives its session"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    e.send("session.list_jobs", json!({})).await;
    let list = e.until("session.jobs").await.pop().unwrap();
    assert_eq!(list["payload"]["jobs"][0]["status"], "success");
}

/// Regression (found by the SECURITY.md review): a `session.jobs` page of many jobs
/// with large leases could pass the 1 MiB frame limit; a page now ends before that and
/// the cursor carries on.
#[tokio::test]
async fn a_page_of_jobs_with_large_leases_stays_under_a_mebibyte() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    // 12 jobs, each with a lease of about 100 KB of patterns.
    let patterns: Vec<String> = (0..1000)
        .map(|i| format!("/docs/{i:04}/{}/**", "p".repeat(90)))
        .collect();
    for _ in 0..12 {
        let acc = c
            .submit(json!({"agent": "echo", "input": 1, "lease_request": {"fs.read": patterns}}))
            .await;
        assert_eq!(acc["type"], "job.accepted", "{acc}");
        c.until_terminal().await;
    }
    let mut seen = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut req = json!({"limit": 1000});
        if let Some(cur) = &cursor {
            req["cursor"] = cur.clone().into();
        }
        c.send("session.list_jobs", req).await;
        let page = c.until("session.jobs").await.pop().unwrap();
        assert!(
            page.to_string().len() < 1 << 20,
            "a {}-byte page",
            page.to_string().len()
        );
        seen += page["payload"]["jobs"].as_array().unwrap().len();
        match page["payload"]["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, 12);
}
