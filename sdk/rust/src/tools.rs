//! Operator-registered tools: lease namespace `tool.call`.
//!
//! A tool is a name the operator registered in the runtime's configuration
//! (`[tools.NAME] plugin = "name@version"`), implemented by another plugin that
//! runs in its own sandbox with no authority. Errors: `LEASE_EXPIRED`,
//! `BUDGET_EXHAUSTED`, `PERMISSION_DENIED` (the name is not granted by
//! `tool.call`), `INVALID_REQUEST` (no such tool, or none at all), the tool's own
//! failure, and `INTERNAL_ERROR` when the tool crashed. Each call is reported as
//! `tool_call`/`tool_result` events named after the tool.
//!
//! ```no_run
//! use arcp_agent::prelude::*;
//!
//! let answer = tools::call("meter", &json!({ "call": 1 }))?;
//! # Ok::<(), Failure>(())
//! ```

use crate::Failure;
use crate::bindings::arcp::agent::capabilities as wit;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// `tool.call`: calls tool `name` with `args` (serialized to JSON); its JSON
/// result.
pub fn call(name: &str, args: &impl Serialize) -> Result<Value, Failure> {
    call_as(name, args)
}

/// Like [`call`], with the result as the JSON text the tool returned, unparsed
/// (for passing it on, or ignoring it).
pub fn call_raw(name: &str, args: &impl Serialize) -> Result<String, Failure> {
    let args = serde_json::to_string(args).map_err(|e| {
        Failure::invalid_request(format!("tool arguments cannot be serialized: {e}"))
    })?;
    wit::call_tool(name, &args).map_err(Failure::from)
}

/// Like [`call`], with the result deserialized into `T` (`INTERNAL_ERROR` when it
/// does not fit).
pub fn call_as<T: DeserializeOwned>(name: &str, args: &impl Serialize) -> Result<T, Failure> {
    let result = call_raw(name, args)?;
    serde_json::from_str(&result)
        .map_err(|e| Failure::internal(format!("tool {name:?} returned an unexpected result: {e}")))
}
