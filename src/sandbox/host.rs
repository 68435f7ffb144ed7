//! The host side of the WIT world: the per-job store data and the `events` and
//! `result-stream` imports.
//!
//! Every import here only reports to the job's [`JobSink`]; none reaches anything
//! outside the sandbox. Authority-bearing imports (files, network, tools, models,
//! delegation) will live beside these and must check the job's lease first.

use super::arcp::agent::{events, result_stream, types};
use super::capabilities::Authority;
use super::limits::JobLimiter;
use crate::lease::Charge;
use crate::protocol::EventBody;
use base64::Engine as _;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Longest text a plugin may put in one log message, thought or status; longer text
/// is cut, with a note saying how much was dropped.
const MAX_TEXT_BYTES: usize = 64 << 10;
/// Largest JSON body a plugin may pass to `emit`.
const MAX_EMIT_BODY_BYTES: usize = 256 << 10;
/// Raw bytes per `result_chunk`: chosen so that, even fully JSON-escaped (utf8) or
/// base64-encoded, a chunk's envelope stays under the 1 MiB frame limit.
const UTF8_CHUNK_BYTES: usize = 128 << 10;
const BASE64_CHUNK_BYTES: usize = 384 << 10;

/// Where a job's events go. Implemented by the jobs module; `emit` may wait (that is
/// how a slow client slows a chatty plugin down).
pub trait JobSink: Send + Sync + 'static {
    /// Emits one `job.event` of `kind` with `body`: a plugin's own body goes out as
    /// the bytes it passed, never parsed into a tree.
    fn emit(
        &self,
        kind: Cow<'static, str>,
        body: EventBody,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;

    /// Told once, when the run ends, what it used (for metrics); by default ignored.
    fn usage(&self, _usage: Usage) {}
}

/// A sink that drops every event: for runs whose events belong to no client (a
/// tool's run, a spare instance before its job takes it, a benchmark).
pub struct DiscardEvents;

impl JobSink for DiscardEvents {
    fn emit(
        &self,
        _kind: Cow<'static, str>,
        _body: EventBody,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::ready(()))
    }
}

/// What one run of a plugin used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Linear memory reserved by all of the job's memories at the end (they never
    /// shrink, so this is the peak), in bytes.
    pub memory_bytes: u64,
    /// Fuel burnt, for a fuel-metered run.
    pub fuel: Option<u64>,
}

/// What a plugin streamed as its result.
#[derive(Debug, Clone)]
pub struct StreamSummary {
    /// The runtime-assigned result id.
    pub result_id: String,
    /// Chunks emitted so far (the next `chunk_seq`).
    pub chunks: u64,
    /// Decoded bytes streamed.
    pub bytes: u64,
    /// The encoding of the stream's chunks.
    pub encoding: &'static str,
    /// Set when the stream broke a cap; the job must then fail with this message.
    pub overflow: Option<String>,
}

/// The data of one job's `Store`.
pub struct JobState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limiter: JobLimiter,
    sink: Arc<dyn JobSink>,
    stream: Option<StreamSummary>,
    max_result_bytes: u64,
    pub(super) authority: Authority,
    /// Epoch deadlines reached so far: past a few, the job counts as CPU-bound.
    pub(super) epoch_yields: u32,
    /// Its hold on a CPU slot, once CPU-bound.
    pub(super) cpu_turn: super::fairness::Turn,
    /// Keeps the epoch ticker ticking while this store runs a job (a spare
    /// instance, which runs nothing, holds none).
    _ticking: Option<super::ticker::Awake>,
}

impl JobState {
    pub(super) fn new(
        sink: Arc<dyn JobSink>,
        limiter: JobLimiter,
        max_result_bytes: u64,
        authority: Authority,
        ticking: Option<super::ticker::Awake>,
    ) -> JobState {
        // `new()` inherits nothing: no environment, arguments, preopens, stdio or
        // network. Sockets and name lookups are refused outright.
        let wasi = WasiCtxBuilder::new()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        JobState {
            wasi,
            table: ResourceTable::new(),
            limiter,
            sink,
            stream: None,
            max_result_bytes,
            authority,
            epoch_yields: 0,
            cpu_turn: Default::default(),
            _ticking: ticking,
        }
    }

    /// Hands a spare instance's store to the job that takes it: its sink and
    /// authority in place of the spare's, which reach nothing.
    pub(super) fn start_job(
        &mut self,
        sink: Arc<dyn JobSink>,
        authority: Authority,
        ticking: super::ticker::Awake,
    ) {
        self.sink = sink;
        self.authority = authority;
        self._ticking = Some(ticking);
    }

    pub(super) fn take_stream(&mut self) -> Option<StreamSummary> {
        self.stream.take()
    }

    /// Emits one event, its body serialised at once (a typed body straight to JSON
    /// text, with no tree in between). The sink is cloned first so that the future
    /// holds no shared borrow of the store data (which is `Send` but not `Sync`).
    pub(super) fn send_event(
        &self,
        kind: &'static str,
        body: impl serde::Serialize,
    ) -> impl Future<Output = ()> + Send + 'static {
        let body = EventBody::Json(crate::protocol::raw_payload(&body));
        self.send_raw_event(kind.into(), body)
    }

    /// Like [`Self::send_event`], for a body that is ready to go.
    fn send_raw_event(
        &self,
        kind: Cow<'static, str>,
        body: EventBody,
    ) -> impl Future<Output = ()> + Send + 'static {
        let sink = self.sink.clone();
        async move { sink.emit(kind, body).await }
    }
}

impl WasiView for JobState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A plugin's `emit` body, checked but not parsed into a tree: it goes out as the
/// bytes the plugin wrote, unless it holds line breaks between its tokens, which are
/// squeezed out (a frame is one line: stdio is newline-delimited JSON).
fn event_body(body_json: String) -> Result<Box<RawValue>, types::Failure> {
    let not_json =
        |e: serde_json::Error| failure("INVALID_REQUEST", format!("event body is not JSON: {e}"));
    let body = RawValue::from_string(body_json).map_err(not_json)?;
    if !body.get().starts_with('{') {
        return Err(failure(
            "INVALID_REQUEST",
            "event body must be a JSON object",
        ));
    }
    if body.get().contains(['\n', '\r']) {
        let tree: Value = serde_json::from_str(body.get()).map_err(not_json)?;
        return Ok(crate::protocol::raw_payload(&tree));
    }
    Ok(body)
}

fn failure(code: &str, message: impl Into<String>) -> types::Failure {
    types::Failure {
        code: code.to_owned(),
        message: message.into(),
        retryable: false,
    }
}

/// Cuts `text` to at most [`MAX_TEXT_BYTES`] on a character boundary.
fn bounded(text: String) -> String {
    crate::protocol::cut_noting_length(text, MAX_TEXT_BYTES)
}

/// A JSON number for an `f64`: integral values as integers (as the reference sends
/// them), non-finite values as `None`.
fn number(v: f64) -> Option<Value> {
    if !v.is_finite() {
        return None;
    }
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        return Some(Value::from(v as i64));
    }
    serde_json::Number::from_f64(v).map(Value::Number)
}

impl types::Host for JobState {}

impl events::Host for JobState {
    async fn log(&mut self, level: String, message: String) {
        let level = match level.as_str() {
            "debug" => "debug",
            "warn" | "warning" => "warn",
            "error" => "error",
            "trace" => "debug",
            _ => "info",
        };
        let message = bounded(message);
        self.send_raw_event("log".into(), EventBody::Log { level, message })
            .await;
    }

    async fn progress(
        &mut self,
        current: f64,
        total: Option<f64>,
        units: Option<String>,
        message: Option<String>,
    ) {
        // The spec requires a non-negative current; a guest's NaN or negative value
        // is clamped rather than forwarded.
        let mut body = Map::new();
        body.insert(
            "current".into(),
            number(current.max(0.0)).unwrap_or(Value::from(0)),
        );
        if let Some(t) = total.and_then(number) {
            body.insert("total".into(), t);
        }
        if let Some(u) = units {
            body.insert("units".into(), bounded(u).into());
        }
        if let Some(m) = message {
            body.insert("message".into(), bounded(m).into());
        }
        self.send_event("progress", Value::Object(body)).await;
    }

    async fn metric(&mut self, name: String, value: f64, unit: Option<String>) {
        let Some(value) = number(value) else {
            let msg = format!("metric {name:?} dropped: value is not a finite number");
            self.send_event("log", json!({"level": "warn", "message": bounded(msg)}))
                .await;
            return;
        };
        let mut body = Map::new();
        body.insert("name".into(), bounded(name.clone()).into());
        body.insert("value".into(), value.clone());
        if let Some(u) = &unit {
            body.insert("unit".into(), bounded(u.clone()).into());
        }
        self.send_event("metric", Value::Object(body)).await;
        // `cost.*` metrics in a budgeted currency are charges (spec §9.6); each is
        // followed by the currency's `cost.budget.remaining`.
        let amount = value.as_f64().unwrap_or(f64::NAN);
        let charge = self
            .authority
            .budget
            .charge_metric(&name, amount, unit.as_deref());
        self.authority.publish_budget();
        match charge {
            Charge::NotACharge => {}
            Charge::Charged {
                currency,
                remaining,
            } => {
                let left = remaining
                    .to_string()
                    .parse::<f64>()
                    .ok()
                    .and_then(number)
                    .unwrap_or(Value::Null);
                let body =
                    json!({"name": "cost.budget.remaining", "value": left, "unit": currency});
                self.send_event("metric", body).await;
            }
            Charge::Refused(why) => {
                self.send_event(
                    "log",
                    json!({"level": "warn", "message": bounded(format!("charge refused: {why}"))}),
                )
                .await;
            }
        }
    }

    async fn status(&mut self, phase: String, message: Option<String>) {
        let mut body = Map::new();
        body.insert("phase".into(), bounded(phase).into());
        if let Some(m) = message {
            body.insert("message".into(), bounded(m).into());
        }
        self.send_event("status", Value::Object(body)).await;
    }

    async fn thought(&mut self, text: String) {
        self.send_event("thought", json!({"text": bounded(text)}))
            .await;
    }

    async fn emit(&mut self, kind: String, body_json: String) -> Result<(), types::Failure> {
        const HOST_OWNED: [&str; 4] = ["result_chunk", "delegate", "tool_call", "tool_result"];
        let well_formed = !kind.is_empty()
            && kind.len() <= 128
            && kind.starts_with(|c: char| c.is_ascii_lowercase())
            && kind.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-')
            });
        if !well_formed {
            return Err(failure(
                "INVALID_REQUEST",
                format!("event kind {kind:?} is malformed"),
            ));
        }
        if HOST_OWNED.contains(&kind.as_str()) {
            return Err(failure(
                "PERMISSION_DENIED",
                format!("event kind {kind:?} is emitted by the host only"),
            ));
        }
        if body_json.len() > MAX_EMIT_BODY_BYTES {
            return Err(failure(
                "INVALID_REQUEST",
                format!(
                    "event body of {} bytes is over the {MAX_EMIT_BODY_BYTES}-byte limit",
                    body_json.len()
                ),
            ));
        }
        let body = event_body(body_json)?;
        self.send_raw_event(kind.into(), EventBody::Json(body))
            .await;
        Ok(())
    }
}

impl result_stream::Host for JobState {
    async fn write(
        &mut self,
        data: Vec<u8>,
        encoding: result_stream::Encoding,
    ) -> Result<(), types::Failure> {
        let encoding_name = match encoding {
            result_stream::Encoding::Utf8 => "utf8",
            result_stream::Encoding::Base64 => "base64",
        };
        let text = match encoding {
            result_stream::Encoding::Utf8 => {
                Some(String::from_utf8(data.clone()).map_err(|e| {
                    failure(
                        "INVALID_REQUEST",
                        format!("result chunk is not valid UTF-8: {e}"),
                    )
                })?)
            }
            result_stream::Encoding::Base64 => None,
        };
        let stream = self.stream.get_or_insert_with(|| StreamSummary {
            result_id: crate::protocol::ids::prefixed("res"),
            chunks: 0,
            bytes: 0,
            encoding: encoding_name,
            overflow: None,
        });
        if let Some(msg) = &stream.overflow {
            return Err(types::Failure {
                code: "INTERNAL_ERROR".into(),
                message: msg.clone(),
                retryable: true,
            });
        }
        if stream.encoding != encoding_name {
            return Err(failure(
                "INVALID_REQUEST",
                format!(
                    "result stream is {}; cannot switch to {encoding_name}",
                    stream.encoding
                ),
            ));
        }
        let new_total = stream.bytes.saturating_add(data.len() as u64);
        if new_total > self.max_result_bytes {
            let msg = format!(
                "streamed result exceeds the runtime's {} MiB cap",
                self.max_result_bytes >> 20
            );
            stream.overflow = Some(msg.clone());
            return Err(types::Failure {
                code: "INTERNAL_ERROR".into(),
                message: msg,
                retryable: true,
            });
        }
        let result_id = stream.result_id.clone();
        let mut pieces: Vec<String> = Vec::new();
        match &text {
            Some(text) => {
                let mut rest = text.as_str();
                while !rest.is_empty() {
                    let mut cut = rest.len().min(UTF8_CHUNK_BYTES);
                    while !rest.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    pieces.push(rest[..cut].to_owned());
                    rest = &rest[cut..];
                }
            }
            None => {
                for part in data.chunks(BASE64_CHUNK_BYTES) {
                    pieces.push(base64::engine::general_purpose::STANDARD.encode(part));
                }
            }
        }
        let first_seq = stream.chunks;
        stream.chunks += pieces.len() as u64;
        stream.bytes = new_total;
        for (i, piece) in pieces.into_iter().enumerate() {
            let body = json!({
                "result_id": result_id,
                "chunk_seq": first_seq + i as u64,
                "data": piece,
                "encoding": encoding_name,
                "more": true,
            });
            self.send_event("result_chunk", body).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_on_a_char_boundary_with_a_note() {
        let s = "é".repeat(MAX_TEXT_BYTES);
        let out = bounded(s);
        assert!(out.len() < MAX_TEXT_BYTES + 64);
        assert!(out.contains("truncated from"));
    }

    #[test]
    fn numbers_are_integral_when_they_can_be() {
        assert_eq!(number(3.0), Some(json!(3)));
        assert_eq!(number(0.5), Some(json!(0.5)));
        assert_eq!(number(f64::NAN), None);
    }

    #[test]
    fn an_event_body_goes_out_as_the_plugin_wrote_it() {
        let text = r#"{"n":12345678901234567890123,"s":"a\nb","dup":1,"dup":2}"#;
        // Not re-serialised: a big number keeps its digits, a repeated key stays.
        assert_eq!(event_body(text.to_owned()).unwrap().get(), text);
        assert_eq!(event_body(" { } ".to_owned()).unwrap().get(), "{ }");
    }

    /// A body with line breaks between its tokens would have split a stdio frame.
    #[test]
    fn an_event_body_with_line_breaks_is_made_one_line() {
        let body = event_body("{\n  \"a\": [1,\r\n 2]\n}".to_owned()).unwrap();
        assert_eq!(body.get(), r#"{"a":[1,2]}"#);
    }

    #[test]
    fn an_event_body_must_be_a_json_object() {
        for bad in ["[1]", "\"x\"", "3", "null", "{", "{} {}", "", "{\"a\":1}x"] {
            let err = event_body(bad.to_owned()).unwrap_err();
            assert_eq!(err.code, "INVALID_REQUEST", "{bad:?}");
        }
    }
}
