//! `delegator`: input `{"agent": A, "input": I, "lease": L}`; runs agent A with input
//! I as a child job under lease request L (which must be a subset of this job's
//! lease, and `agent.delegate` must grant A; a missing or non-object L is `{}`) and
//! returns the child's result. The child's failure (or a LEASE_SUBSET_VIOLATION)
//! ends this job with that error.

use arcp_agent::prelude::*;

#[derive(Deserialize)]
struct Input {
    agent: String,
    #[serde(default)]
    input: Value,
    #[serde(default, deserialize_with = "arcp_agent::input::lenient")]
    lease: arcp_agent::serde_json::Map<String, Value>,
}

fn run(_job: Job, input: Input) -> Result<RawJson, Failure> {
    agents::delegate_raw(&input.agent, &input.input, &input.lease).map(RawJson)
}

arcp_agent::agent!(run);
