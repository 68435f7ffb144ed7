//! `spender`: input `{"cost_per_call": C, "currency": "USD", "max_calls": M}`. For each
//! of M calls it first makes an authority-bearing call (the `meter` tool, which the
//! lease must grant), then reports `metric{name:"cost.inference", value:C, unit:currency}`,
//! which the runtime charges to the job's budget. When a call fails (with
//! `BUDGET_EXHAUSTED` once the budget is spent) it returns that failure, so the job
//! ends in `job.error` with that code. A `currency` that is not a string means USD.

use arcp_agent::prelude::*;

#[derive(Deserialize)]
struct Input {
    cost_per_call: f64,
    #[serde(default, deserialize_with = "arcp_agent::input::lenient")]
    currency: Option<String>,
    max_calls: u64,
}

fn run(_job: Job, input: Input) -> Result<Value, Failure> {
    let currency = input.currency.as_deref().unwrap_or("USD");
    for call in 0..input.max_calls {
        tools::call_raw("meter", &json!({ "call": call }))?;
        events::cost("inference", input.cost_per_call, currency);
    }
    Ok(json!({ "calls": input.max_calls }))
}

arcp_agent::agent!(run);
