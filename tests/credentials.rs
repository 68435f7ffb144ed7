//! Provisioned credentials (spec §9.8) against a fake LiteLLM key API on loopback:
//! minted at acceptance with the lease baked in, shown only to the submitter,
//! revoked at every terminal state, and revoked again after a crash.

mod common;

use common::{Client, Host, TOKEN, bundled_plugins};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Seen {
    generated: Vec<Value>,
    deleted: Vec<String>,
}

/// `/key/generate` → `{"key": "sk-virt-N", "token": "tok-N"}`; `/key/delete` records.
async fn fake_litellm() -> (u16, Arc<Mutex<Seen>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let Some(req) = common::read_http_request(&mut sock).await else {
                    return;
                };
                let body = req.json();
                let reply = {
                    let mut s = log.lock().unwrap();
                    if req.path() == "/key/generate" {
                        s.generated.push(body);
                        let n = s.generated.len();
                        json!({"key": format!("sk-virt-{n}"), "token": format!("tok-{n}")})
                    } else {
                        for k in body["keys"].as_array().into_iter().flatten() {
                            s.deleted.push(k.as_str().unwrap_or_default().to_owned());
                        }
                        json!({"deleted_keys": body["keys"]})
                    }
                };
                common::write_json_response(&mut sock, &reply.to_string()).await;
            });
        }
    });
    (port, seen)
}

fn config(port: u16) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("arcp.toml");
    std::fs::write(
        &cfg,
        format!("[credentials]\nadmin_url = \"http://127.0.0.1:{port}\"\nendpoint = \"http://127.0.0.1:{port}/v1\"\n"),
    )
    .unwrap();
    let p = cfg.to_str().unwrap().to_owned();
    (dir, p)
}

const FEATURES: &[&str] = &[
    "provisioned_credentials",
    "list_jobs",
    "subscribe",
    "model.use",
    "cost.budget",
];

async fn wait_for(seen: &Arc<Mutex<Seen>>, deleted: &str) {
    for _ in 0..100 {
        if seen.lock().unwrap().deleted.iter().any(|d| d == deleted) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{deleted} was never revoked");
}

#[tokio::test]
async fn a_credential_is_minted_shown_to_the_submitter_only_and_revoked_at_the_end() {
    let (port, seen) = fake_litellm().await;
    let (_d, cfg) = config(port);
    let host = Host::start(&bundled_plugins(), &["--config", &cfg]);
    let mut c = Client::connect_with(&host.url, TOKEN, json!(FEATURES), None).await;
    assert!(
        c.welcome["payload"]["capabilities"]["features"]
            .as_array()
            .unwrap()
            .contains(&json!("provisioned_credentials"))
    );
    let acc = c
        .submit(json!({"agent": "sleeper", "input": {"seconds": 0.5},
            "lease_request": {"model.use": ["tier-fast/*"], "cost.budget": ["USD:2.50"]}}))
        .await;
    let cred = &acc["payload"]["credentials"][0];
    assert_eq!(cred["scheme"], "bearer");
    assert_eq!(cred["value"], "sk-virt-1");
    assert_eq!(cred["endpoint"], format!("http://127.0.0.1:{port}/v1"));
    assert!(cred["id"].as_str().unwrap().starts_with("cred_"));
    assert_eq!(cred["constraints"]["model.use"], json!(["tier-fast/*"]));
    assert_eq!(cred["constraints"]["cost.budget"], json!(["USD:2.50"]));
    let generated = seen.lock().unwrap().generated[0].clone();
    assert_eq!(generated["models"], json!(["tier-fast/*"]));
    assert_eq!(generated["max_budget"], json!(2.5));
    let job = acc["payload"]["job_id"].as_str().unwrap().to_owned();

    // Never in listings or a subscriber's view.
    let mut w = Client::connect_with(&host.url, TOKEN, json!(FEATURES), None).await;
    w.send("job.subscribe", json!({"job_id": job, "history": true}))
        .await;
    let sub = w.next().await;
    assert_eq!(sub["type"], "job.subscribed");
    w.send("session.list_jobs", json!({})).await;
    let list = w.until("session.jobs").await.pop().unwrap();
    for f in [&sub, &list] {
        assert!(!f.to_string().contains("sk-virt-1"), "{f}");
    }
    c.until_terminal().await;
    wait_for(&seen, "tok-1").await;
    // Regression: the secret was stored with the job's accepted payload. Only the
    // revocation handle may reach the disk.
    for file in ["arcp.db", "arcp.db-wal"] {
        let bytes = std::fs::read(host.data.path().join(file)).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("sk-virt-1"),
            "the credential's secret is in {file}"
        );
    }
}

#[tokio::test]
async fn no_credential_unless_the_client_asked_for_one() {
    let (port, seen) = fake_litellm().await;
    let (_d, cfg) = config(port);
    let host = Host::start(&bundled_plugins(), &["--config", &cfg]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let acc = c.submit(json!({"agent": "echo", "input": 1})).await;
    assert!(acc["payload"].get("credentials").is_none());
    c.until_terminal().await;
    assert!(seen.lock().unwrap().generated.is_empty());
}

#[tokio::test]
async fn a_credential_left_live_by_a_crash_is_revoked_after_the_restart() {
    let (port, seen) = fake_litellm().await;
    let (_d, cfg) = config(port);
    let data = tempfile::tempdir().unwrap();
    let data_path = data.path().to_owned();
    let mut host = Host::start_with_data(&bundled_plugins(), data, &["--config", &cfg]);
    let mut c = Client::connect_with(&host.url, TOKEN, json!(FEATURES), None).await;
    let acc = c
        .submit(json!({"agent": "sleeper", "input": {"seconds": 30}}))
        .await;
    assert_eq!(acc["payload"]["credentials"][0]["value"], "sk-virt-1");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await; // the store's writer commits
    host.child.kill().unwrap(); // kill -9: no graceful revocation
    host.child.wait().unwrap();
    assert!(seen.lock().unwrap().deleted.is_empty());

    // A restart on the same data folder revokes what the crash left live.
    let _host2 = Host::start_with_data(
        &bundled_plugins(),
        common::reuse_data_dir(&data_path),
        &["--config", &cfg],
    );
    wait_for(&seen, "tok-1").await;
}
