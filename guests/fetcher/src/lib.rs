//! `fetcher`: input `{"url": U, "method"?: "GET", "headers"?: {name: value}, "body"?: text}`;
//! fetches U through the `net.fetch` capability (which the lease must grant) and
//! returns `{"status": <code>, "body": <text>}`. A refusal ends the job with it.
//! Optional fields of another type are ignored (a header value that is not a
//! string is sent empty).

use arcp_agent::input::lenient;
use arcp_agent::prelude::*;
use std::collections::BTreeMap;

#[derive(Deserialize)]
struct Input {
    url: String,
    #[serde(default, deserialize_with = "lenient")]
    method: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    headers: BTreeMap<String, Value>,
    #[serde(default, deserialize_with = "lenient")]
    body: Option<String>,
}

fn run(_job: Job, input: Input) -> Result<Value, Failure> {
    let method = input.method.as_deref().unwrap_or("GET");
    let headers = input
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default()));
    let mut request = net::Request::new(method, input.url).headers(headers);
    if let Some(body) = input.body {
        request = request.body(body);
    }
    let response = request.send()?;
    Ok(json!({ "status": response.status, "body": response.text_lossy() }))
}

arcp_agent::agent!(run);
