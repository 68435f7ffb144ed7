//! `delegator`: input `{"agent": A, "input": I, "lease": L}`; runs agent A with input
//! I as a child job under lease request L (which must be a subset of this job's
//! lease, and `agent.delegate` must grant A) and returns the child's result. The
//! child's failure (or a LEASE_SUBSET_VIOLATION) ends this job with that error.

wit_bindgen::generate!({ path: "../../wit", world: "agent" });

use arcp::agent::capabilities;
use serde_json::{Value, json};

struct Delegator;

impl Guest for Delegator {
    fn run(_job: JobInfo, input_json: String) -> Result<String, Failure> {
        let input: Value = serde_json::from_str(&input_json).unwrap_or_default();
        let agent = input["agent"].as_str().ok_or(Failure {
            code: "INVALID_REQUEST".into(),
            message: "`agent` must be a string".into(),
            retryable: false,
        })?;
        let lease = if input["lease"].is_object() { input["lease"].clone() } else { json!({}) };
        capabilities::delegate(agent, &input["input"].to_string(), &lease.to_string())
    }
}

export!(Delegator);
