//! `summarizer`: input `{"model": M, "text": T}`; asks model M (through the runtime's
//! model gateway, which the lease's `model.use` must grant) for a summary of T and
//! returns `{"model": M, "summary": <reply text>}`.

wit_bindgen::generate!({ path: "../../wit", world: "agent" });

use arcp::agent::capabilities;
use serde_json::{Value, json};

struct Summarizer;

fn invalid(message: &str) -> Failure {
    Failure { code: "INVALID_REQUEST".into(), message: message.into(), retryable: false }
}

impl Guest for Summarizer {
    fn run(_job: JobInfo, input_json: String) -> Result<String, Failure> {
        let input: Value = serde_json::from_str(&input_json).unwrap_or_default();
        let model = input["model"].as_str().ok_or_else(|| invalid("`model` must be a string"))?;
        let text = input["text"].as_str().ok_or_else(|| invalid("`text` must be a string"))?;
        let request = json!({
            "messages": [
                {"role": "system", "content": "Summarize the user's text in one or two sentences."},
                {"role": "user", "content": text},
            ]
        });
        let reply: Value = serde_json::from_str(&capabilities::complete(model, &request.to_string())?)
            .map_err(|_| Failure { code: "INTERNAL_ERROR".into(), message: "model reply is not JSON".into(), retryable: true })?;
        let summary = reply["choices"][0]["message"]["content"].as_str().unwrap_or_default();
        Ok(json!({ "model": model, "summary": summary }).to_string())
    }
}

export!(Summarizer);
