//! `model.use` (spec §9.7): the model gateway forwards to an OpenAI-compatible
//! endpoint (here a small fake on loopback), adds the key (never visible to the
//! plugin or in events), and charges token usage × price to the budget.

mod common;

use common::{Client, Host, TOKEN, bundled_plugins};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

const KEY: &str = "sk-test-secret-key-0123456789";

/// A fake `/v1/chat/completions`: 1,000 prompt and 500 completion tokens per call;
/// records each request's Authorization header and body.
async fn fake_openai() -> (u16, Arc<Mutex<Vec<(String, Value)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let Some(req) = common::read_http_request(&mut sock).await else {
                    return;
                };
                let body = req.json();
                let auth = req.header("authorization").unwrap_or_default();
                log.lock().unwrap().push((auth, body.clone()));
                let reply = json!({
                    "id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "A short summary."}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}
                });
                common::write_json_response(&mut sock, &reply.to_string()).await;
            });
        }
    });
    (port, seen)
}

fn host_for(port: u16) -> (tempfile::TempDir, Host) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("arcp.toml");
    std::fs::write(
        &cfg,
        format!(
            "[models]\nurl = \"http://127.0.0.1:{port}/v1\"\nkey_env = \"TEST_MODEL_KEY\"\ncurrency = \"USD\"\n\
             [models.prices.\"tier-fast/small\"]\ninput_per_1k = \"0.001\"\noutput_per_1k = \"0.002\"\n\
             [models.prices.\"tier-slow/big\"]\ninput_per_1k = \"0.01\"\noutput_per_1k = \"0.03\"\n"
        ),
    )
    .unwrap();
    let host = Host::start_with_env(
        &bundled_plugins(),
        tempfile::tempdir().unwrap(),
        &["--config", cfg.to_str().unwrap()],
        &[("TEST_MODEL_KEY", KEY)],
    );
    (dir, host)
}

async fn summarize(c: &mut Client, model: &str, lease: Value) -> Vec<Value> {
    let acc = c.submit(json!({"agent": "summarizer", "input": {"model": model, "text": "long text"}, "lease_request": lease})).await;
    assert_eq!(acc["type"], "job.accepted", "{acc}");
    c.until_terminal().await
}

#[tokio::test]
async fn a_granted_model_answers_and_usage_is_charged_to_the_budget() {
    let (port, seen) = fake_openai().await;
    let (_d, host) = host_for(port);
    let mut c = Client::connect(&host.url, TOKEN).await;
    assert!(
        c.welcome["payload"]["capabilities"]["features"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f != "model.use"),
        "not advertised to a client that did not ask"
    );
    let frames = summarize(
        &mut c,
        "tier-fast/small",
        json!({"model.use": ["tier-fast/*"], "cost.budget": ["USD:0.005"]}),
    )
    .await;
    let last = frames.last().unwrap();
    assert_eq!(
        last["payload"]["result"]["summary"], "A short summary.",
        "{last}"
    );
    // 1000 × 0.001/1k + 500 × 0.002/1k = 0.002 USD
    let metrics: Vec<(String, f64)> = frames
        .iter()
        .filter(|f| f["payload"]["kind"] == "metric")
        .map(|f| {
            (
                f["payload"]["body"]["name"].as_str().unwrap().to_owned(),
                f["payload"]["body"]["value"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        metrics,
        [
            ("cost.model".to_owned(), 0.002),
            ("cost.budget.remaining".to_owned(), 0.003)
        ]
    );
    let (auth, body) = seen.lock().unwrap()[0].clone();
    assert_eq!(auth, format!("Bearer {KEY}"), "the host adds the key");
    assert_eq!(body["model"], "tier-fast/small");
    assert_eq!(body["messages"][1]["content"], "long text");
    for f in &frames {
        assert!(
            !f.to_string().contains(KEY),
            "the key never appears in events"
        );
    }
}

#[tokio::test]
async fn models_outside_the_lease_or_the_budget_are_refused() {
    let (port, seen) = fake_openai().await;
    let (_d, host) = host_for(port);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let end = summarize(
        &mut c,
        "tier-slow/big",
        json!({"model.use": ["tier-fast/*"]}),
    )
    .await
    .pop()
    .unwrap();
    assert_eq!(end["payload"]["code"], "PERMISSION_DENIED", "{end}");
    let end = summarize(
        &mut c,
        "tier-fast/small",
        json!({"model.use": ["*"], "cost.budget": ["EUR:5"]}),
    )
    .await
    .pop()
    .unwrap();
    assert_eq!(
        end["payload"]["code"], "PERMISSION_DENIED",
        "no budget in the gateway's currency: {end}"
    );
    let end = summarize(
        &mut c,
        "tier-fast/small",
        json!({"model.use": ["*"], "cost.budget": ["USD:0"]}),
    )
    .await
    .pop()
    .unwrap();
    assert_eq!(end["payload"]["code"], "BUDGET_EXHAUSTED", "{end}");
    let end = summarize(&mut c, "unknown-model", json!({"model.use": ["*"]}))
        .await
        .pop()
        .unwrap();
    assert_eq!(end["payload"]["code"], "INVALID_REQUEST", "{end}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "no refused call reached the endpoint"
    );
}

/// Regression: a model reply was read whole before its 8 MiB cap was checked, so a
/// gateway streaming without end held the job (and host memory) until the timeout.
#[tokio::test]
async fn an_endless_model_reply_is_cut_off_at_the_cap_without_being_read_whole() {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (sent_tx, sent_rx) = tokio::sync::oneshot::channel::<usize>();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        common::read_http_request(&mut sock).await;
        // Chunked, no Content-Length: the cap can only be found by reading.
        let _ = sock
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await;
        let chunk = format!("{:x}\r\n{}\r\n", 1 << 16, " ".repeat(1 << 16));
        let mut sent = 0usize;
        // Up to 1 GiB; the host must hang up long before.
        while sent < 1 << 30 {
            if sock.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
            sent += 1 << 16;
        }
        let _ = sent_tx.send(sent);
    });
    let (_d, host) = host_for(port);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let end = summarize(&mut c, "tier-fast/small", json!({"model.use": ["*"]}))
        .await
        .pop()
        .unwrap();
    assert_eq!(end["payload"]["code"], "INTERNAL_ERROR", "{end}");
    assert!(
        end["payload"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("limit"),
        "{end}"
    );
    let sent = tokio::time::timeout(std::time::Duration::from_secs(20), sent_rx)
        .await
        .expect("the host hung up")
        .unwrap();
    assert!(
        sent < 64 << 20,
        "the host read {sent} bytes of an 8 MiB-capped reply"
    );
}
