//! `reader`: input `{"path": P}`; reads P from the runtime's workspace through the
//! `fs.read` capability (which the lease must grant) and returns
//! `{"path": P, "text": <its text>}`. A refusal (PERMISSION_DENIED, LEASE_EXPIRED, ...)
//! ends the job with that error.

wit_bindgen::generate!({ path: "../../wit", world: "agent" });

use arcp::agent::capabilities;
use serde_json::{Value, json};

struct Reader;

impl Guest for Reader {
    fn run(_job: JobInfo, input_json: String) -> Result<String, Failure> {
        let input: Value = serde_json::from_str(&input_json).unwrap_or_default();
        let path = input["path"].as_str().ok_or(Failure {
            code: "INVALID_REQUEST".into(),
            message: "`path` must be a string".into(),
            retryable: false,
        })?;
        let bytes = capabilities::read_file(path)?;
        let text = String::from_utf8_lossy(&bytes);
        Ok(json!({ "path": path, "text": text }).to_string())
    }
}

export!(Reader);
