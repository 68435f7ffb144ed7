//! Outgoing HTTP(S) requests: lease namespace `net.fetch`.
//!
//! The URL must match one of the lease's URL patterns on scheme, host, port and
//! path (`https://api.example.com/v1/**`); redirects are followed (at most 5) and
//! each hop is checked again; private and loopback addresses are refused unless
//! the operator allows them; the host sets `Host` itself. Errors:
//! `LEASE_EXPIRED`, `BUDGET_EXHAUSTED`, `PERMISSION_DENIED` (not granted, a
//! refused address, or no network for this runtime), `INVALID_REQUEST` (a bad URL
//! or method, a scheme other than http/https, too many redirects, a response body
//! over the runtime's cap, 8 MiB by default) and `INTERNAL_ERROR` (the server could
//! not be reached; retryable). An HTTP error status is not a failure: it is in
//! [`Response::status`]. Each call is reported as `tool_call`/`tool_result`
//! events (tool `net.fetch`).
//!
//! ```no_run
//! use arcp_agent::prelude::*;
//!
//! let page = net::fetch("https://example.com/")?;
//! let text = page.text_lossy();
//!
//! let reply: Value = net::Request::post("https://api.example.com/v1/items")
//!     .header("accept", "application/json")
//!     .json(&json!({ "name": "x" }))?
//!     .send()?
//!     .json()?;
//! # Ok::<(), Failure>(())
//! ```

use crate::Failure;
use crate::bindings::arcp::agent::capabilities as wit;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::borrow::Cow;

/// `GET url`.
pub fn fetch(url: &str) -> Result<Response, Failure> {
    Request::get(url).send()
}

/// An HTTP request, sent with [`send`](Request::send).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a request is made by `.send()`"]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Request {
    /// A request of any method (`"GET"`, `"PATCH"`, ...; the host upper-cases it).
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Request {
        Request {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Request {
        Request::new("GET", url)
    }

    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Request {
        Request::new("POST", url)
    }

    /// Adds a header (sent in the order added; a `Host` header is ignored).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds headers.
    pub fn headers<K, V>(mut self, headers: impl IntoIterator<Item = (K, V)>) -> Request
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.headers
            .extend(headers.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = Some(body.into());
        self
    }

    /// Sets the body to `value` as JSON and `content-type: application/json`.
    pub fn json(self, value: &impl Serialize) -> Result<Request, Failure> {
        let body = serde_json::to_vec(value).map_err(|e| {
            Failure::invalid_request(format!("request body cannot be serialized: {e}"))
        })?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// Makes the request (`net.fetch`) and returns the final response.
    pub fn send(self) -> Result<Response, Failure> {
        let r = wit::fetch(&self.url, &self.method, &self.headers, self.body.as_deref())
            .map_err(Failure::from)?;
        Ok(Response {
            status: r.status,
            headers: r.headers,
            body: r.body,
        })
    }
}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code, e.g. 200.
    pub status: u16,
    /// The headers, names in lowercase, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first header named `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text; `INVALID_REQUEST` when it is not UTF-8.
    pub fn text(&self) -> Result<&str, Failure> {
        std::str::from_utf8(&self.body)
            .map_err(|e| Failure::invalid_request(format!("response body is not UTF-8: {e}")))
    }

    /// The body as text, invalid UTF-8 replaced by `U+FFFD`.
    pub fn text_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The body deserialized from JSON; `INTERNAL_ERROR` (retryable) when it is not
    /// JSON of that shape.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Failure::internal(format!("response body is not the JSON expected: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_requests_and_reads_responses() {
        let r = Request::post("http://x/")
            .header("a", "1")
            .headers([("b", "2")])
            .json(&serde_json::json!({"k": 1}))
            .unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.headers.len(), 3);
        assert_eq!(r.body.as_deref(), Some(&b"{\"k\":1}"[..]));
        let resp = Response {
            status: 201,
            headers: vec![("content-type".into(), "application/json".into())],
            body: b"{\"ok\":true}".to_vec(),
        };
        assert!(resp.is_success());
        assert_eq!(resp.header("Content-Type"), Some("application/json"));
        assert_eq!(resp.json::<serde_json::Value>().unwrap()["ok"], true);
        assert_eq!(resp.text().unwrap(), "{\"ok\":true}");
    }
}
