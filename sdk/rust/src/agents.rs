//! Delegation (spec §10): running another agent as a child job, lease namespace
//! `agent.delegate`.
//!
//! [`delegate`] starts the child (a real job: listed, subscribable, with this job
//! as its `parent_job_id` and this job's trace id), reports it in this job's events
//! as `delegate{child_job_id, agent}`, waits for it and returns its result. The
//! child runs under the [`Lease`] given, which must be a subset of this job's
//! lease; its `cost.budget` is reserved from this job's remaining budget, and it
//! inherits this job's expiry. Ending this job (cancel, timeout, error) ends its
//! children.
//!
//! Errors: `LEASE_EXPIRED`, `BUDGET_EXHAUSTED`, `PERMISSION_DENIED` (the agent is
//! not granted by `agent.delegate`, or the runtime does not delegate),
//! `LEASE_SUBSET_VIOLATION` (the lease asks for more than this job has),
//! `INVALID_REQUEST` (a malformed agent reference or lease),
//! `AGENT_NOT_AVAILABLE`, `AGENT_VERSION_NOT_AVAILABLE`, and whatever error the
//! child ended with. The call is reported as `tool_call`/`tool_result` events
//! (tool `agent.delegate`).
//!
//! ```no_run
//! use arcp_agent::prelude::*;
//!
//! #[derive(Deserialize)]
//! struct ReaderOutput {
//!     text: String,
//! }
//!
//! let lease = Lease::new().grant("fs.read", ["/docs/**"]);
//! let out: ReaderOutput = agents::delegate("reader", &json!({ "path": "docs/a.txt" }), &lease)?;
//! # Ok::<(), Failure>(())
//! ```

use crate::Failure;
use crate::bindings::arcp::agent::capabilities as wit;
use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;

/// `agent.delegate`: runs `agent` (`name` or `name@version`) with `input` as a
/// child job under `lease` (a [`Lease`], or any value that serializes to a JSON
/// object of namespace → patterns) and returns its result deserialized into `O`
/// (`INTERNAL_ERROR` when it does not fit; use [`serde_json::Value`] to take any
/// result). The child's error is returned as the failure.
pub fn delegate<O: DeserializeOwned>(
    agent: &str,
    input: &impl Serialize,
    lease: &impl Serialize,
) -> Result<O, Failure> {
    let result = delegate_raw(agent, input, lease)?;
    serde_json::from_str(&result)
        .map_err(|e| Failure::internal(format!("{agent:?} returned an unexpected result: {e}")))
}

/// Like [`delegate`], with the child's result as JSON text, unparsed (for passing
/// it on as this job's result with [`RawJson`](crate::RawJson)).
pub fn delegate_raw(
    agent: &str,
    input: &impl Serialize,
    lease: &impl Serialize,
) -> Result<String, Failure> {
    let input = serde_json::to_string(input)
        .map_err(|e| Failure::invalid_request(format!("child input cannot be serialized: {e}")))?;
    let lease = serde_json::to_string(lease)
        .map_err(|e| Failure::invalid_request(format!("child lease cannot be serialized: {e}")))?;
    wit::delegate(agent, &input, &lease).map_err(Failure::from)
}

/// A lease request for a child job: namespace → patterns, serialized as the JSON
/// object ARCP uses (`{"fs.read": ["/docs/**"], "cost.budget": ["USD:0.50"]}`).
///
/// ```
/// use arcp_agent::Lease;
///
/// let lease = Lease::new()
///     .grant("fs.read", ["/docs/**"])
///     .grant("net.fetch", ["https://example.com/**"])
///     .budget("USD:0.50");
/// assert_eq!(
///     arcp_agent::serde_json::to_string(&lease).unwrap(),
///     r#"{"cost.budget":["USD:0.50"],"fs.read":["/docs/**"],"net.fetch":["https://example.com/**"]}"#
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lease {
    grants: BTreeMap<String, Vec<String>>,
}

impl Lease {
    /// A lease that grants nothing.
    pub fn new() -> Lease {
        Lease::default()
    }

    /// Adds `patterns` to `namespace` (`fs.read`, `fs.write`, `net.fetch`,
    /// `tool.call`, `agent.delegate`, `model.use`, `cost.budget`, ...).
    pub fn grant<P: Into<String>>(
        mut self,
        namespace: impl Into<String>,
        patterns: impl IntoIterator<Item = P>,
    ) -> Lease {
        self.grants
            .entry(namespace.into())
            .or_default()
            .extend(patterns.into_iter().map(Into::into));
        self
    }

    /// Adds a `cost.budget` amount, `CURRENCY:DECIMAL` (`"USD:0.50"`).
    pub fn budget(self, amount: impl Into<String>) -> Lease {
        self.grant("cost.budget", [amount.into()])
    }

    /// The patterns of `namespace` (empty when it is not granted).
    pub fn patterns(&self, namespace: &str) -> &[String] {
        self.grants.get(namespace).map_or(&[], Vec::as_slice)
    }
}

impl Serialize for Lease {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.grants.serialize(serializer)
    }
}
