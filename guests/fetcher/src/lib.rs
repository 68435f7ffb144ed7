//! `fetcher`: input `{"url": U, "method"?: "GET", "headers"?: {name: value}, "body"?: text}`;
//! fetches U through the `net.fetch` capability (which the lease must grant) and
//! returns `{"status": <code>, "body": <text>}`. A refusal ends the job with it.

wit_bindgen::generate!({ path: "../../wit", world: "agent" });

use arcp::agent::capabilities;
use serde_json::{Value, json};

struct Fetcher;

impl Guest for Fetcher {
    fn run(_job: JobInfo, input_json: String) -> Result<String, Failure> {
        let input: Value = serde_json::from_str(&input_json).unwrap_or_default();
        let url = input["url"].as_str().ok_or(Failure {
            code: "INVALID_REQUEST".into(),
            message: "`url` must be a string".into(),
            retryable: false,
        })?;
        let method = input["method"].as_str().unwrap_or("GET");
        let headers: Vec<(String, String)> = input["headers"]
            .as_object()
            .map(|h| h.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
            .unwrap_or_default();
        let body = input["body"].as_str().map(|b| b.as_bytes().to_vec());
        let resp = capabilities::fetch(url, method, &headers, body.as_deref())?;
        Ok(json!({ "status": resp.status, "body": String::from_utf8_lossy(&resp.body) }).to_string())
    }
}

export!(Fetcher);
