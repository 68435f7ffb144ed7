//! `spender`: input `{"cost_per_call": C, "currency": "USD", "max_calls": M}`. For each
//! of M calls it first makes an authority-bearing call (the `meter` tool, which the
//! lease must grant), then reports `metric{name:"cost.inference", value:C, unit:currency}`,
//! which the runtime charges to the job's budget. When a call fails (with
//! `BUDGET_EXHAUSTED` once the budget is spent) it returns that failure, so the job
//! ends in `job.error` with that code.

wit_bindgen::generate!({ path: "../../wit", world: "agent" });

use arcp::agent::{capabilities, events};
use serde_json::{Value, json};

struct Spender;

fn invalid(message: &str) -> Failure {
    Failure { code: "INVALID_REQUEST".into(), message: message.into(), retryable: false }
}

impl Guest for Spender {
    fn run(_job: JobInfo, input_json: String) -> Result<String, Failure> {
        let input: Value = serde_json::from_str(&input_json).map_err(|_| invalid("input is not JSON"))?;
        let cost = input["cost_per_call"].as_f64().ok_or_else(|| invalid("`cost_per_call` must be a number"))?;
        let currency = input["currency"].as_str().unwrap_or("USD");
        let max_calls = input["max_calls"].as_u64().ok_or_else(|| invalid("`max_calls` must be a non-negative integer"))?;
        for call in 0..max_calls {
            capabilities::call_tool("meter", &json!({ "call": call }).to_string())?;
            events::metric("cost.inference", cost, Some(currency));
        }
        Ok(json!({ "calls": max_calls }).to_string())
    }
}

export!(Spender);
