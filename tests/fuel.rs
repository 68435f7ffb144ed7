//! Fuel as a budget currency (spec §9.6, runtime-defined): `cost.budget: ["fuel:N"]`
//! makes wasmtime meter the job's CPU; running out is `BUDGET_EXHAUSTED`.

mod common;

use common::{Client, Host, TOKEN, bundled_plugins};
use serde_json::{Value, json};

fn metric(frames: &[Value], name: &str) -> Option<u64> {
    frames
        .iter()
        .find(|f| {
            f["payload"]["kind"] == "metric"
                && f["payload"]["body"]["name"] == name
                && f["payload"]["body"]["unit"] == "fuel"
        })
        .and_then(|f| f["payload"]["body"]["value"].as_u64())
}

#[tokio::test]
async fn a_fuel_budgeted_spinner_is_stopped_with_budget_exhausted() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let acc = c
        .submit(json!({"agent": "spinner", "lease_request": {"cost.budget": ["fuel:5000000"]}}))
        .await;
    assert_eq!(acc["payload"]["budget"], json!({"fuel": "fuel:5000000"}));
    let frames = c.until_terminal().await;
    let last = frames.last().unwrap();
    assert_eq!(last["type"], "job.error", "{last}");
    assert_eq!(last["payload"]["code"], "BUDGET_EXHAUSTED");
    assert_eq!(last["payload"]["retryable"], false);
    assert_eq!(metric(&frames, "cost.fuel"), Some(5_000_000));
    assert_eq!(metric(&frames, "cost.budget.remaining"), Some(0));
}

#[tokio::test]
async fn a_job_within_its_fuel_budget_succeeds_and_reports_what_it_burnt() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    c.submit(json!({"agent": "echo", "input": {"a": 1}, "lease_request": {"cost.budget": ["fuel:50000000"]}})).await;
    let frames = c.until_terminal().await;
    let last = frames.last().unwrap();
    assert_eq!(
        last["payload"]["result"]["echoed"],
        json!({"a": 1}),
        "{last}"
    );
    let burnt = metric(&frames, "cost.fuel").expect("a cost.fuel metric");
    assert!(burnt > 0 && burnt < 50_000_000, "{burnt}");
    assert_eq!(
        metric(&frames, "cost.budget.remaining"),
        Some(50_000_000 - burnt)
    );
    // Jobs without a fuel budget run unmetered and report no fuel.
    c.submit(json!({"agent": "echo", "input": 2})).await;
    let frames = c.until_terminal().await;
    assert_eq!(metric(&frames, "cost.fuel"), None);
}
