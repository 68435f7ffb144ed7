//! Chat completions from the runtime's model gateway: lease namespace `model.use`.
//!
//! The request is an OpenAI chat-completions body; the host sets its `model` (and
//! turns streaming off), adds the API key (which never enters the sandbox), sends
//! it to the endpoint the operator configured and returns the endpoint's JSON
//! reply. The reply's token usage times the operator's price is reported as a
//! `metric cost.model` and charged to the job's budget in the gateway's currency.
//!
//! Errors: `LEASE_EXPIRED`, `BUDGET_EXHAUSTED`, `PERMISSION_DENIED` (the model is
//! not granted by `model.use`, the runtime has no gateway, or the job has budgets
//! but none in the gateway's currency), `INVALID_REQUEST` (a model the gateway does
//! not offer, a request that is not a JSON object) and `INTERNAL_ERROR` (the
//! endpoint failed or answered with an error; retryable). Each call is reported as
//! `tool_call`/`tool_result` events (tool `model.use`, with the tokens and cost).
//!
//! ```no_run
//! use arcp_agent::prelude::*;
//!
//! let reply = model::complete("tier-fast/small", &json!({
//!     "messages": [{"role": "user", "content": "Say hi."}],
//! }))?;
//! let text = model::reply_text(&reply).unwrap_or_default();
//! # Ok::<(), Failure>(())
//! ```

use crate::Failure;
use crate::bindings::arcp::agent::capabilities as wit;
use serde::Serialize;
use serde_json::Value;

/// `model.use`: a chat completion of `request` by `model`; the endpoint's JSON
/// reply.
pub fn complete(model: &str, request: &impl Serialize) -> Result<Value, Failure> {
    let request = serde_json::to_string(request).map_err(|e| {
        Failure::invalid_request(format!("model request cannot be serialized: {e}"))
    })?;
    let reply = wit::complete(model, &request).map_err(Failure::from)?;
    serde_json::from_str(&reply)
        .map_err(|e| Failure::internal(format!("model reply is not JSON: {e}")))
}

/// The text of a chat-completions reply: its first choice's `message.content`.
pub fn reply_text(reply: &Value) -> Option<&str> {
    reply["choices"][0]["message"]["content"].as_str()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_first_choice() {
        let reply =
            serde_json::json!({"choices": [{"message": {"role": "assistant", "content": "hi"}}]});
        assert_eq!(super::reply_text(&reply), Some("hi"));
        assert_eq!(super::reply_text(&serde_json::json!({})), None);
    }
}
