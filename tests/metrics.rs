//! `GET /metrics` on the WebSocket port: scraped from the real binary after real
//! jobs and parsed as Prometheus text.

mod common;

use common::{Client, Host, TOKEN, bundled_plugins};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn scrape(host: &Host) -> (String, prometheus_parse::Scrape) {
    common::scrape_metrics(host).await
}

fn value(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test]
async fn metrics_are_served_as_prometheus_text_and_count_what_happened() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    for i in 0..3 {
        c.submit(json!({"agent": "echo@1.0.0", "input": i})).await;
        c.until_terminal().await;
    }
    c.submit(json!({"agent": "ticker", "input": {"count": 5}}))
        .await;
    c.until_terminal().await;
    // A fuel-metered job: what it burns is counted by agent.
    c.submit(json!({"agent": "ticker", "input": {"count": 1},
                    "lease_request": {"cost.budget": ["fuel:50000000"]}}))
        .await;
    let end = c.until_terminal().await.pop().unwrap();
    assert_eq!(end["type"], "job.result", "{end}");
    let running = c
        .submit(json!({"agent": "sleeper", "input": {"seconds": 30}}))
        .await;
    assert_eq!(running["type"], "job.accepted");

    let (text, scrape) = scrape(&host).await;
    let echo = [("agent", "echo@1.0.0")];
    assert_eq!(
        value(&scrape, "arcp_jobs_submitted_total", &echo),
        3.0,
        "{text}"
    );
    assert_eq!(
        value(
            &scrape,
            "arcp_jobs_ended_total",
            &[("agent", "echo@1.0.0"), ("state", "success")]
        ),
        3.0,
        "{text}"
    );
    assert_eq!(
        value(
            &scrape,
            "arcp_jobs",
            &[("agent", "sleeper@1.0.0"), ("state", "running")]
        ),
        1.0,
        "{text}"
    );
    assert!(value(&scrape, "arcp_events_total", &[]) >= 5.0, "{text}");
    assert_eq!(
        value(&scrape, "arcp_sessions_connected", &[]),
        1.0,
        "{text}"
    );
    assert_eq!(value(&scrape, "arcp_plugins_loaded", &[]), 11.0, "{text}");
    assert_eq!(
        value(&scrape, "arcp_plugin_load_errors", &[]),
        0.0,
        "{text}"
    );
    assert!(
        value(&scrape, "arcp_process_resident_bytes", &[]) > 1e6,
        "{text}"
    );
    // Histograms: the instantiation times and the durations by agent.
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "arcp_instantiation_seconds"
                && matches!(s.value, prometheus_parse::Value::Histogram(_))),
        "{text}"
    );
    assert!(
        text.contains("arcp_job_duration_seconds_count{agent=\"echo@1.0.0\"} 3"),
        "{text}"
    );
    // Memory and fuel by agent.
    assert!(
        text.contains("arcp_job_memory_bytes_count{agent=\"echo@1.0.0\"} 3"),
        "{text}"
    );
    let memory_sum = text
        .lines()
        .find_map(|l| l.strip_prefix("arcp_job_memory_bytes_sum{agent=\"echo@1.0.0\"} "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_default();
    assert!(
        memory_sum >= 3.0 * 65536.0,
        "every job has a page at least: {text}"
    );
    let fuel = value(
        &scrape,
        "arcp_fuel_consumed_total",
        &[("agent", "ticker@1.0.0")],
    );
    assert!(fuel > 0.0 && fuel < 50_000_000.0, "{text}");

    // The WebSocket endpoint is untouched by the scrape.
    c.submit(json!({"agent": "echo", "input": "after"})).await;
    assert_eq!(
        c.until("job.result").await.pop().unwrap()["payload"]["result"]["echoed"],
        "after"
    );
}

#[tokio::test]
async fn metrics_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("arcp-host.toml");
    std::fs::write(&cfg, "metrics = false\n").unwrap();
    let host = Host::start(&bundled_plugins(), &["--config", cfg.to_str().unwrap()]);
    let addr = host
        .url
        .trim_start_matches("ws://")
        .trim_end_matches("/arcp");
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(b"GET /metrics HTTP/1.1\r\nHost: arcp\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    let _ = sock.read_to_string(&mut response).await;
    assert!(!response.contains("arcp_"), "{response}");
}
