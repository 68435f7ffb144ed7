//! The `otel` feature: the real binary exports its spans over OTLP/HTTP to a fake
//! collector on loopback, and a job's `job` span carries the client's trace id.
//! Run with `cargo test --features otel --test otel`.
#![cfg(feature = "otel")]

mod common;

use common::{Client, Host, TOKEN, bundled_plugins, envelope_id, read_http_request};
use serde_json::json;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// One export the fake collector received.
struct Export {
    path: String,
    content_type: String,
    body: Vec<u8>,
}

/// A fake OTLP/HTTP collector: answers every request `200` with an empty protobuf
/// body (an `ExportTraceServiceResponse` with nothing to say) and hands it over.
async fn collector() -> (String, mpsc::UnboundedReceiver<Export>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(req) = read_http_request(&mut sock).await {
                    let _ = tx.send(Export {
                        path: req.path().to_owned(),
                        content_type: req.header("content-type").unwrap_or_default(),
                        body: req.body,
                    });
                    let resp = "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";
                    if sock.write_all(resp.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (url, rx)
}

/// Waits (up to `within`) for an export holding the span named `job` of `trace_id`.
async fn job_span_export(
    rx: &mut mpsc::UnboundedReceiver<Export>,
    trace_id: &str,
    within: Duration,
) -> Export {
    let raw = hex::decode(trace_id).unwrap();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let export = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no export of trace {trace_id} within {within:?}"))
            .expect("collector running");
        assert_eq!(export.path, "/v1/traces");
        assert_eq!(export.content_type, "application/x-protobuf");
        let has = |needle: &[u8]| export.body.windows(needle.len()).any(|w| w == needle);
        // The span's name is a length-delimited protobuf string: 0x2a (field 5),
        // length 3, "job".
        // The trace id is field 1 of the span (bytes, length 16).
        let trace_field = [&[0x0a, 0x10][..], &raw].concat();
        if has(&trace_field) && has(b"\x2a\x03job") {
            assert!(has(b"arcp-host"), "service.name is arcp-host");
            return export;
        }
    }
}

/// Submits an echo job with `trace_id` on its envelope; returns the accepted
/// envelope's trace id once the job has succeeded.
async fn echo_with_trace(c: &mut Client, trace_id: &str) -> String {
    let submit = json!({
        "arcp": "1.1", "id": envelope_id(900), "type": "job.submit",
        "session_id": c.session_id, "trace_id": trace_id,
        "payload": {"agent": "echo", "input": {"traced": true}},
    });
    c.send_text(&submit.to_string()).await;
    let frames = c.until_terminal().await;
    let accepted = frames
        .iter()
        .find(|f| f["type"] == "job.accepted")
        .expect("accepted");
    let last = frames.last().unwrap();
    assert_eq!(last["type"], "job.result", "{last}");
    assert_eq!(last["payload"]["result"]["echoed"], json!({"traced": true}));
    accepted["trace_id"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn job_span_is_exported_with_the_clients_trace_id() {
    let (endpoint, mut exports) = collector().await;
    let host = Host::start_with_env(
        &bundled_plugins(),
        tempfile::tempdir().unwrap(),
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    assert!(
        host.logs().contains("exporting traces over OTLP/HTTP"),
        "{}",
        host.logs()
    );
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut c = Client::connect(&host.url, TOKEN).await;
    assert_eq!(echo_with_trace(&mut c, trace_id).await, trace_id);
    job_span_export(&mut exports, trace_id, Duration::from_secs(10)).await;

    // Exporting changes nothing for clients: the runtime still serves.
    let second = "0af7651916cd43dd8448eb211c80319c";
    assert_eq!(echo_with_trace(&mut c, second).await, second);
    job_span_export(&mut exports, second, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn queued_spans_are_flushed_when_the_runtime_is_stopped() {
    let (endpoint, mut exports) = collector().await;
    // A batch delay far past the test: only the exit's flush can send the span.
    let mut host = Host::start_with_env(
        &bundled_plugins(),
        tempfile::tempdir().unwrap(),
        &[],
        &[
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                &format!("{endpoint}/v1/traces"),
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ],
    );
    // A W3C traceparent: its trace id is the job's.
    let trace_id = "5bf92f3577b34da6a3ce929d0e0e4737";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let mut c = Client::connect(&host.url, TOKEN).await;
    assert_eq!(echo_with_trace(&mut c, &traceparent).await, trace_id);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), exports.recv())
            .await
            .is_err(),
        "nothing is exported before the batch delay"
    );
    // SAFETY: signals our own child process.
    unsafe {
        libc::kill(host.child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while host.child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    job_span_export(&mut exports, trace_id, Duration::from_secs(5)).await;
}
