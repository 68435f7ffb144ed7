//! Wire types: the ARCP v1.1 envelope and every message payload (spec §5–§8).
//!
//! This module owns decoding and encoding only: turning a frame's text into an
//! [`Envelope`] with clear `INVALID_REQUEST` errors, typed payload structs for what a
//! client sends, and builders for what the runtime sends. It knows nothing of
//! sessions, jobs or plugins. Where the spec and the reference Python client
//! disagree, the shapes here follow what the client accepts (see
//! `docs/conformance.md`).

mod messages;

pub use messages::*;

use crate::error::ArcpError;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::sync::Arc;
use ulid::Ulid;

/// The protocol version this runtime speaks.
pub const ARCP_VERSION: &str = "1.1";

/// Largest frame the runtime ever sends (the reference client closes with 1009 above
/// 1 MiB).
pub const MAX_OUTBOUND_FRAME: usize = 1 << 20;

/// Longest envelope `id` or `type` accepted (ids are echoed back in replies).
pub const MAX_ID_LEN: usize = 128;

/// A decoded inbound envelope. Unknown top-level fields are ignored (spec §5).
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The message id (`id`).
    pub id: String,
    /// The message type (`type`), e.g. `job.submit`.
    pub kind: String,
    /// `session_id`, if the peer sent one.
    pub session_id: Option<String>,
    /// `trace_id`, if the peer sent one.
    pub trace_id: Option<String>,
    /// `job_id`, if the peer sent one.
    pub job_id: Option<String>,
    /// `event_seq`, if the peer sent one.
    pub event_seq: Option<u64>,
    /// The payload: always a JSON object (`{}` when absent).
    pub payload: Value,
}

/// What could be recovered from a frame that failed to decode: its `id` and `type`
/// when they were readable and at most [`MAX_ID_LEN`] long, so that an error reply
/// can name them.
#[derive(Debug, Clone, Default)]
pub struct DecodeFailure {
    /// The envelope id, if one was readable.
    pub id: Option<String>,
    /// The message type, if one was readable.
    pub kind: Option<String>,
    /// Why the frame was refused.
    pub error: ArcpError,
}

impl Default for ArcpError {
    fn default() -> Self {
        ArcpError::invalid("invalid request")
    }
}

impl Envelope {
    /// Decodes one frame. Every way a frame can be wrong maps to `INVALID_REQUEST`
    /// with a message that says what was wrong.
    pub fn decode(text: &str) -> Result<Envelope, DecodeFailure> {
        let fail = |id: Option<String>, kind: Option<String>, msg: String| DecodeFailure {
            id,
            kind,
            error: ArcpError::invalid(msg),
        };
        let value: Value = serde_json::from_str(text)
            .map_err(|e| fail(None, None, format!("malformed JSON: {e}")))?;
        let Value::Object(mut obj) = value else {
            return Err(fail(None, None, "envelope must be a JSON object".into()));
        };
        let id = match obj.remove("id") {
            Some(Value::String(s)) if !s.is_empty() => Some(s),
            Some(Value::String(_)) => None,
            Some(_) => return Err(fail(None, None, "envelope `id` must be a string".into())),
            None => None,
        };
        let kind = match obj.remove("type") {
            Some(Value::String(s)) if !s.is_empty() => Some(s),
            Some(_) => {
                // The id is echoed in the error (`request_id`): never an over-long one.
                return Err(fail(
                    id.filter(|id| id.len() <= MAX_ID_LEN),
                    None,
                    "envelope `type` must be a non-empty string".into(),
                ));
            }
            None => None,
        };
        let short_kind = || kind.clone().filter(|k| k.len() <= MAX_ID_LEN);
        let Some(id) = id else {
            return Err(fail(None, short_kind(), "envelope is missing `id`".into()));
        };
        if id.len() > MAX_ID_LEN {
            return Err(fail(
                None,
                short_kind(),
                format!("envelope `id` is longer than {MAX_ID_LEN} characters"),
            ));
        }
        if kind.as_ref().is_some_and(|k| k.len() > MAX_ID_LEN) {
            return Err(fail(
                Some(id),
                None,
                format!("envelope `type` is longer than {MAX_ID_LEN} characters"),
            ));
        }
        let Some(kind) = kind else {
            return Err(fail(Some(id), None, "envelope is missing `type`".into()));
        };
        match obj.remove("arcp") {
            None => {}
            Some(Value::String(v)) if v == ARCP_VERSION => {}
            Some(other) => {
                return Err(fail(
                    Some(id),
                    Some(kind),
                    format!("unsupported `arcp` version {other}; this runtime speaks \"1.1\""),
                ));
            }
        }
        let opt_string = |obj: &mut Map<String, Value>, field: &str| match obj.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("envelope `{field}` must be a string")),
        };
        let session_id = opt_string(&mut obj, "session_id")
            .map_err(|m| fail(Some(id.clone()), Some(kind.clone()), m))?;
        let trace_id = opt_string(&mut obj, "trace_id")
            .map_err(|m| fail(Some(id.clone()), Some(kind.clone()), m))?;
        let job_id = opt_string(&mut obj, "job_id")
            .map_err(|m| fail(Some(id.clone()), Some(kind.clone()), m))?;
        let event_seq = match obj.remove("event_seq") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
            Some(_) => {
                return Err(fail(
                    Some(id),
                    Some(kind),
                    "envelope `event_seq` must be a non-negative integer".into(),
                ));
            }
        };
        let payload = match obj.remove("payload") {
            None => Value::Object(Map::new()),
            Some(v @ Value::Object(_)) => v,
            Some(_) => {
                return Err(fail(
                    Some(id),
                    Some(kind),
                    "envelope `payload` must be a JSON object".into(),
                ));
            }
        };
        Ok(Envelope {
            id,
            kind,
            session_id,
            trace_id,
            job_id,
            event_seq,
            payload,
        })
    }

    /// Decodes the payload into a typed message, naming the type on failure.
    pub fn payload_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, ArcpError> {
        T::deserialize(&self.payload)
            .map_err(|e| ArcpError::invalid(format!("invalid `{}` payload: {e}", self.kind)))
    }
}

/// An envelope the runtime sends. Serialised compactly with `arcp` first; `None`
/// fields are omitted (the reference client serialises with `exclude_none`).
///
/// A job's events are built by the thousand, so nothing here is copied per message
/// that need not be: the id is kept as a ULID and written as text straight into the
/// frame, and the session, job and trace ids are shared (`Arc<str>`) with the session
/// and the job that own them.
#[derive(Debug, Clone, Serialize)]
pub struct Outbound {
    /// Always `"1.1"`.
    pub arcp: &'static str,
    /// A fresh ULID.
    #[serde(serialize_with = "ulid_text")]
    pub id: Ulid,
    /// The message type.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The session this message belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Arc<str>>,
    /// The job's trace id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<Arc<str>>,
    /// The job this message concerns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<Arc<str>>,
    /// Stamped by the session's sequencer on `job.event`, `job.result`, `job.error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_seq: Option<u64>,
    /// The payload object, copied as bytes into every frame made of it (a job's
    /// event goes to its session and to each subscriber).
    pub payload: Payload,
}

/// An outbound message's payload, as [`Outbound::encode`] writes it.
#[derive(Debug, Clone)]
pub enum Payload {
    /// JSON text, serialised once, when the message was built.
    Json(Box<RawValue>),
    /// A `job.event`'s payload, the most frequent by far: written into the frame
    /// with its body, with no text of its own in between.
    Event(EventPayload),
}

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Payload::Json(raw) => raw.serialize(serializer),
            Payload::Event(event) => event.serialize(serializer),
        }
    }
}

impl Payload {
    /// Appends the payload's JSON text to `text`: byte for byte what its
    /// serialisation writes.
    fn write_into(&self, text: &mut String) {
        match self {
            Payload::Json(raw) => text.push_str(raw.get()),
            Payload::Event(event) => {
                text.push_str("{\"kind\":");
                push_json_str(text, &event.kind);
                text.push_str(",\"ts\":");
                push_json_str(text, &event.ts);
                text.push_str(",\"body\":");
                match &event.body {
                    EventBody::Json(raw) => text.push_str(raw.get()),
                    EventBody::Log { level, message } => {
                        text.push_str("{\"level\":");
                        push_json_str(text, level);
                        text.push_str(",\"message\":");
                        push_json_str(text, message);
                        text.push('}');
                    }
                }
                text.push('}');
            }
        }
    }

    /// About how long its JSON text is (exact unless a string needs escapes).
    fn len_hint(&self) -> usize {
        match self {
            Payload::Json(raw) => raw.get().len(),
            Payload::Event(event) => {
                let body = match &event.body {
                    EventBody::Json(raw) => raw.get().len(),
                    EventBody::Log { level, message } => 32 + level.len() + message.len(),
                };
                32 + event.kind.len() + event.ts.len() + body
            }
        }
    }
}

/// Writes a ULID as its 26-character text without allocating it first.
fn ulid_text<S: serde::Serializer>(id: &Ulid, serializer: S) -> Result<S::Ok, S::Error> {
    let mut text = [0u8; ulid::ULID_LEN];
    serializer.serialize_str(id.array_to_str(&mut text))
}

impl Outbound {
    /// A new outbound message with a fresh envelope id.
    pub fn new(kind: &'static str, payload: impl Serialize) -> Outbound {
        Outbound {
            arcp: ARCP_VERSION,
            id: Ulid::new(),
            kind,
            session_id: None,
            trace_id: None,
            job_id: None,
            event_seq: None,
            payload: Payload::Json(raw_payload(&payload)),
        }
    }

    /// A new `job.event` with a fresh envelope id.
    pub fn event(payload: EventPayload) -> Outbound {
        Outbound {
            arcp: ARCP_VERSION,
            id: Ulid::new(),
            kind: "job.event",
            session_id: None,
            trace_id: None,
            job_id: None,
            event_seq: None,
            payload: Payload::Event(payload),
        }
    }

    /// Sets `session_id`.
    pub fn session(mut self, session_id: &str) -> Self {
        self.session_id = Some(session_id.into());
        self
    }

    /// Sets `job_id`.
    pub fn job(mut self, job_id: &str) -> Self {
        self.job_id = Some(job_id.into());
        self
    }

    /// Sets `trace_id`.
    pub fn trace(mut self, trace_id: Option<&str>) -> Self {
        self.trace_id = trace_id.map(Arc::from);
        self
    }

    /// Sets `job_id` and `trace_id` to ids the job shares with its messages.
    pub fn for_job(mut self, job_id: &Arc<str>, trace_id: &Arc<str>) -> Self {
        self.job_id = Some(job_id.clone());
        self.trace_id = Some(trace_id.clone());
        self
    }

    /// A copy with a fresh envelope id (for fan-out to another session).
    pub fn copy(&self) -> Outbound {
        Outbound {
            id: Ulid::new(),
            session_id: None,
            event_seq: None,
            ..self.clone()
        }
    }

    /// Rebuilds a sequenced message from a stored frame, for replay into another
    /// session: fresh envelope id, no session or seq (the sending outbox stamps
    /// them). `None` for a frame that is not a sequenced job message.
    pub fn from_stored(frame: &str) -> Option<Outbound> {
        let mut v: Value = serde_json::from_str(frame).ok()?;
        let kind = match v.get("type")?.as_str()? {
            "job.event" => "job.event",
            "job.result" => "job.result",
            "job.error" => "job.error",
            _ => return None,
        };
        let take = |v: &mut Value, k: &str| {
            v.get_mut(k)
                .map(Value::take)
                .and_then(|x| x.as_str().map(Arc::from))
        };
        Some(Outbound {
            arcp: ARCP_VERSION,
            id: Ulid::new(),
            kind,
            session_id: None,
            trace_id: take(&mut v, "trace_id"),
            job_id: take(&mut v, "job_id"),
            event_seq: None,
            payload: Payload::Json(raw_payload(
                &v.get_mut("payload").map(Value::take).unwrap_or_default(),
            )),
        })
    }

    /// Whether this message takes an `event_seq` (spec §8.3; the reference sequences
    /// exactly these three types).
    pub fn is_sequenced(&self) -> bool {
        matches!(self.kind, "job.event" | "job.result" | "job.error")
    }

    /// Compact JSON text of the envelope, in a buffer sized for it up front (the
    /// payload is most of it) rather than grown and copied as it is written.
    ///
    /// Written by hand, byte for byte what the derived `Serialize` writes (a unit
    /// test holds them equal): a job's events are encoded by the hundred thousand,
    /// and serde's escaping loop, one table lookup per byte of every id, was 7 % of
    /// an event flood's CPU where the ids almost never need escaping.
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(self.payload.len_hint() + ENVELOPE_BYTES);
        text.push_str("{\"arcp\":");
        push_json_str(&mut text, self.arcp);
        text.push_str(",\"id\":\"");
        let mut id = [0u8; ulid::ULID_LEN];
        text.push_str(self.id.array_to_str(&mut id));
        text.push_str("\",\"type\":");
        push_json_str(&mut text, self.kind);
        for (key, value) in [
            (",\"session_id\":", &self.session_id),
            (",\"trace_id\":", &self.trace_id),
            (",\"job_id\":", &self.job_id),
        ] {
            if let Some(value) = value {
                text.push_str(key);
                push_json_str(&mut text, value);
            }
        }
        if let Some(seq) = self.event_seq {
            text.push_str(",\"event_seq\":");
            push_digits(&mut text, seq, 1);
        }
        text.push_str(",\"payload\":");
        self.payload.write_into(&mut text);
        text.push('}');
        text
    }
}

/// Appends `value` as a JSON string: copied as it is when nothing in it needs an
/// escape (ids, types, versions), else escaped by serde_json.
fn push_json_str(text: &mut String, value: &str) {
    // Every byte is looked at, with no early exit, so that the compiler checks many
    // at once: a byte-by-byte `all` was a twentieth of an event's emission.
    let plain = value
        .bytes()
        .fold(true, |ok, b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    if plain {
        text.push('"');
        text.push_str(value);
        text.push('"');
    } else {
        // Writing a string to a String cannot fail.
        text.push_str(&serde_json::to_string(value).unwrap_or_default());
    }
}

/// Appends `n` in decimal, padded with zeros to at least `width` (at most 20)
/// digits: `write!` went through the formatting machinery, a twentieth of an event's
/// emission (its `event_seq`) and half of its timestamp (the microseconds).
fn push_digits(text: &mut String, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let from = at.min(digits.len().saturating_sub(width));
    text.extend(digits[from..].iter().map(|&d| char::from(d)));
}

/// Room for an envelope's fields other than its payload: version, ULID id, type,
/// session, trace and job ids and `event_seq` come to about 200 bytes.
const ENVELOPE_BYTES: usize = 256;

/// `payload` as JSON text. Serialising our own payload structs cannot fail: they hold
/// only strings, numbers, maps and JSON values (an empty object stands in if it did).
pub fn raw_payload(payload: &impl Serialize) -> Box<RawValue> {
    serde_json::value::to_raw_value(payload).unwrap_or_else(|_| empty_object())
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).unwrap_or_default()
}

/// Identifier minting. Envelope ids are uppercase ULIDs; entity ids are a lowercase
/// prefix and a ULID (`sess_…`, `job_…`, `res_…`, `rtk_…`), the forms the reference
/// client accepts.
pub mod ids {
    use ulid::Ulid;

    /// A fresh envelope id.
    pub fn envelope_id() -> String {
        Ulid::new().to_string()
    }

    /// A fresh prefixed id, e.g. `prefixed("job")` → `job_01J…`.
    pub fn prefixed(prefix: &str) -> String {
        format!("{prefix}_{}", Ulid::new())
    }

    /// A fresh W3C trace id: 32 lowercase hex digits, never all zeros.
    pub fn trace_id() -> String {
        // A ULID is a millisecond timestamp and 80 random bits, so it is never zero;
        // its bits come from a thread-local generator, where a UUIDv7's cost a
        // `getrandom` system call per job.
        format!("{:032x}", Ulid::new().0)
    }

    /// Normalises a client-supplied trace id: 32 lowercase hex digits (not all zeros),
    /// or a W3C `traceparent` (`00-<trace-id>-<span-id>-<flags>`) from which the trace
    /// id is taken. Anything else is `None`.
    pub fn normalise_trace_id(raw: &str) -> Option<String> {
        let candidate = if raw.len() == 55 && raw.as_bytes().get(2) == Some(&b'-') {
            raw.get(3..35)?
        } else {
            raw
        };
        let ok = candidate.len() == 32
            && candidate
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && candidate.bytes().any(|b| b != b'0');
        ok.then(|| candidate.to_owned())
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary, noting the original
/// length (`… [truncated from N bytes]`): how every string a peer or a plugin
/// supplies is kept inside a frame.
pub fn cut_noting_length(mut text: String, max: usize) -> String {
    if text.len() > max {
        let original = text.len();
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(&format!("… [truncated from {original} bytes]"));
    }
    text
}

/// Timestamps as the wire carries them: RFC 3339 UTC with microseconds and `Z`.
pub fn now_rfc3339() -> String {
    rfc3339_micros(chrono::Utc::now())
}

/// `at` as [`now_rfc3339`] writes it. Every event carries one, so the date and time
/// down to the second are formatted once a second per thread and only the
/// microseconds each time: chrono's formatting was 4 % of the CPU of a one-job
/// event flood.
fn rfc3339_micros(at: chrono::DateTime<chrono::Utc>) -> String {
    use std::cell::RefCell;
    thread_local! {
        /// The second last formatted on this thread, and its text up to the `.`.
        static SECOND: RefCell<(i64, String)> = const { RefCell::new((0, String::new())) };
    }
    let micros = at.timestamp_subsec_micros();
    if micros >= 1_000_000 {
        // A leap second, which chrono counts in the sub-second part.
        return at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    }
    SECOND.with_borrow_mut(|(second, prefix)| {
        if *second != at.timestamp() || prefix.is_empty() {
            *second = at.timestamp();
            *prefix = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
            // `+00:00` off the end (the offset is always UTC), `.` on.
            prefix.truncate(prefix.len() - "+00:00".len());
            prefix.push('.');
        }
        let mut out = String::with_capacity(prefix.len() + 7);
        out.push_str(prefix);
        push_digits(&mut out, u64::from(micros), 6);
        out.push('Z');
        out
    })
}

/// Shrinks `value` until its JSON text is at most `max_bytes`, by cutting its
/// longest strings (each cut ends with a note of the original length); a value whose
/// size is not in its strings becomes `{"truncated": true, "original_bytes": N}`.
/// Returns whether anything was cut. For event bodies built from plugin or client
/// input, so that no frame passes the 1 MiB limit clients enforce.
pub fn fit_within(value: &mut Value, max_bytes: usize) -> bool {
    // Fast path for the usual small body: an upper bound on its JSON size (a string
    // byte escapes to at most 6, a node's punctuation and scalar to under 32).
    if upper_bound(value) <= max_bytes {
        return false;
    }
    let original = value.to_string().len();
    if original <= max_bytes {
        return false;
    }
    // Each round halves the longest string; a few dozen rounds reach any size.
    for _ in 0..64 {
        let size = value.to_string().len();
        if size <= max_bytes {
            return true;
        }
        let Some(longest) = longest_string(value) else {
            break;
        };
        let len = longest.len();
        let excess = size - max_bytes;
        let keep = len.saturating_sub(excess + 64).min(len / 2);
        *longest = cut_noting_length(std::mem::take(longest), keep);
    }
    if value.to_string().len() > max_bytes {
        *value = serde_json::json!({"truncated": true, "original_bytes": original});
    }
    true
}

fn upper_bound(value: &Value) -> usize {
    match value {
        Value::String(s) => 2 + 6 * s.len(),
        Value::Array(items) => 2 + items.iter().map(|i| upper_bound(i) + 1).sum::<usize>(),
        Value::Object(map) => {
            2 + map
                .iter()
                .map(|(k, v)| 4 + 6 * k.len() + upper_bound(v))
                .sum::<usize>()
        }
        _ => 32,
    }
}

/// The longest string anywhere in `value` (worth cutting only past 256 bytes).
fn longest_string(value: &mut Value) -> Option<&mut String> {
    fn walk<'a>(v: &'a mut Value, best: &mut Option<&'a mut String>) {
        match v {
            Value::String(s)
                if s.len() > 256 && best.as_ref().is_none_or(|b| s.len() > b.len()) =>
            {
                *best = Some(s);
            }
            Value::Array(items) => items.iter_mut().for_each(|i| walk(i, best)),
            Value::Object(map) => map.values_mut().for_each(|i| walk(i, best)),
            _ => {}
        }
    }
    let mut best = None;
    walk(value, &mut best);
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    /// The SQLite store joins a run's frames by U+001E and splits them there on
    /// replay, so no frame may hold it raw: not from a client's ids nor from a
    /// payload's text, and a plugin's body (checked as JSON) cannot carry it either.
    #[test]
    fn no_frame_holds_a_raw_record_separator() {
        let sep = "a\u{1e}b";
        let mut out = Outbound::new(
            "job.event",
            serde_json::json!({"kind": "log", "body": {"message": sep}}),
        )
        .session(sep)
        .job(sep)
        .trace(Some(sep));
        out.event_seq = Some(1);
        let frame = out.encode();
        assert!(frame.contains("\\u001e"), "{frame}");
        assert!(!frame.contains('\u{1e}'), "{frame}");
        // A plugin's log message is escaped straight into the frame.
        let log = Outbound::event(EventPayload {
            kind: "log".into(),
            ts: now_rfc3339(),
            body: EventBody::Log {
                level: "info",
                message: sep.to_owned(),
            },
        })
        .encode();
        assert!(log.contains("a\\u001eb"), "{log}");
        assert!(!log.contains('\u{1e}'), "{log}");
        assert!(RawValue::from_string("{\"m\": \"a\u{1e}b\"}".to_owned()).is_err());
        assert!(RawValue::from_string("{\"m\":\u{1e}1}".to_owned()).is_err());
    }

    /// The second's text is kept per thread: each instant, in any order and across
    /// seconds, must still read exactly as chrono writes it.
    #[test]
    fn a_timestamp_reads_as_chrono_writes_it_from_second_to_second() {
        use chrono::TimeZone;
        let base = chrono::Utc
            .with_ymd_and_hms(2026, 12, 31, 23, 59, 58)
            .unwrap();
        let nanos = [0, 1_000, 999_999_000, 5_000_000, 123_456_789, 1_999_999_000];
        for secs in [0, 0, 1, 2, 1, 86_400 * 400] {
            for ns in nanos {
                let at = base + chrono::Duration::seconds(secs) + chrono::Duration::nanoseconds(ns);
                assert_eq!(
                    rfc3339_micros(at),
                    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                );
            }
        }
        // A leap second, whose sub-second part chrono counts past 999,999 µs.
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_micro_opt(23, 59, 59, 1_500_000))
            .unwrap()
            .and_utc();
        assert_eq!(rfc3339_micros(leap), "2016-12-31T23:59:60.500000Z");
        assert_eq!(now_rfc3339().len(), "2026-12-06T03:45:12.123456Z".len());
    }

    #[test]
    fn decodes_a_hello_and_ignores_unknown_fields() {
        let env = Envelope::decode(
            r#"{"arcp":"1.1","id":"01M8HF0JVS0HYFR5ZC9EQEKXCZ","type":"session.hello","x-extra":1,"payload":{"client":{"name":"c","version":"1"}}}"#,
        )
        .unwrap();
        assert_eq!(env.kind, "session.hello");
        assert!(env.payload.get("client").is_some());
    }

    #[test]
    fn every_malformation_is_invalid_request_with_a_reason() {
        let long_id = format!(r#"{{"id":"{}","type":"x"}}"#, "a".repeat(200));
        let cases = [
            ("{nope", "malformed JSON"),
            ("[1,2]", "JSON object"),
            (r#"{"type":"x"}"#, "missing `id`"),
            (r#"{"id":"a"}"#, "missing `type`"),
            (
                r#"{"id":"a","type":"x","arcp":"2.0"}"#,
                "unsupported `arcp`",
            ),
            (r#"{"id":"a","type":"x","arcp":1.1}"#, "unsupported `arcp`"),
            (r#"{"id":"a","type":"x","payload":null}"#, "`payload`"),
            (r#"{"id":"a","type":"x","event_seq":-1}"#, "event_seq"),
            (r#"{"id":7,"type":"x"}"#, "`id`"),
            (long_id.as_str(), "longer than"),
        ];
        for (frame, needle) in cases {
            let err = Envelope::decode(frame).unwrap_err().error;
            assert_eq!(err.code, ErrorCode::InvalidRequest, "{frame}");
            assert!(err.message.contains(needle), "{frame}: {}", err.message);
        }
    }

    #[test]
    fn an_over_long_id_is_never_echoed_even_when_the_type_is_bad() {
        // Found by fuzz/ (`fuzz/regressions/long-id-with-a-bad-type.json`): a bad
        // `type` was reported before the id's length was checked, so an id of up to
        // the frame limit came back in the error's `request_id`.
        let long = "1".repeat(MAX_ID_LEN + 1);
        for frame in [
            format!(r#"{{"id":"{long}","type":{{"a":1}}}}"#),
            format!(r#"{{"id":"{long}","type":""}}"#),
            format!(r#"{{"id":"{long}","type":"{long}"}}"#),
            format!(r#"{{"type":"{long}"}}"#),
        ] {
            let f = Envelope::decode(&frame).unwrap_err();
            assert_eq!(f.error.code, ErrorCode::InvalidRequest, "{frame}");
            assert!(f.id.is_none_or(|id| id.len() <= MAX_ID_LEN), "{frame}");
            assert!(f.kind.is_none_or(|k| k.len() <= MAX_ID_LEN), "{frame}");
        }
        let ok = Envelope::decode(r#"{"id":"a","type":{}}"#).unwrap_err();
        assert_eq!(ok.id.as_deref(), Some("a"), "a short id is still named");
    }

    #[test]
    fn encode_writes_what_the_derived_serialisation_writes() {
        let strange: Arc<str> = "q\"uote\\back\nline\u{1}ctl\u{7f}del é 🦀".into();
        let plain: Arc<str> = "job_01JABCDEFGHJKMNPQRSTVWXYZ0".into();
        let mut cases = vec![
            Outbound::new("session.pong", serde_json::json!({})),
            Outbound::new(
                "job.event",
                serde_json::json!({"kind": "log", "body": {"n": 1}}),
            )
            .for_job(&plain, &plain)
            .session("sess_01JABCDEFGHJKMNPQRSTVWXYZ0"),
        ];
        for seq in [
            Some(0),
            Some(1),
            Some(10),
            Some(1_234_567_890),
            Some(u64::MAX),
            None,
        ] {
            let mut m = Outbound::new("job.result", serde_json::json!({"s": "\"\n"}));
            m.session_id = Some(strange.clone());
            m.trace_id = Some(strange.clone());
            m.job_id = Some(plain.clone());
            m.event_seq = seq;
            cases.push(m);
        }
        let event = |body: EventBody| {
            let mut m = Outbound::event(EventPayload {
                kind: "log".into(),
                ts: now_rfc3339(),
                body,
            })
            .for_job(&plain, &plain)
            .session("sess_01JABCDEFGHJKMNPQRSTVWXYZ0");
            m.event_seq = Some(7);
            m
        };
        let json = RawValue::from_string(r#"{"n":[1,"\"x"]}"#.to_owned()).unwrap();
        cases.push(event(EventBody::Json(json)));
        for message in ["tick 1", "", &strange] {
            cases.push(event(EventBody::Log {
                level: "warn",
                message: message.to_owned(),
            }));
        }
        for m in cases {
            assert_eq!(m.encode(), serde_json::to_string(&m).unwrap());
        }
    }

    /// A log body's bound is what keeps an oversized one from being sent uncut: it
    /// must hold for the worst escapes.
    #[test]
    fn a_log_body_is_never_longer_than_its_bound() {
        for message in ["", "plain", "\u{1}\u{2}\u{1f}", "\"\\\n", "é🦀"] {
            let body = EventBody::Log {
                level: "error",
                message: message.repeat(100),
            };
            let text = serde_json::to_string(&body).unwrap();
            assert!(text.len() <= body.max_json_len(), "{text}");
            assert_eq!(body.to_value()["message"], message.repeat(100));
        }
    }

    #[test]
    fn ids_have_the_forms_the_reference_client_accepts() {
        let id = ids::envelope_id();
        assert_eq!(id.len(), 26);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        );
        let job = ids::prefixed("job");
        assert!(job.starts_with("job_") && job.len() == 30);
        let t = ids::trace_id();
        assert_eq!(ids::normalise_trace_id(&t).as_deref(), Some(t.as_str()));
    }

    #[test]
    fn trace_ids_are_normalised_or_refused() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            ids::normalise_trace_id(tp).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(ids::normalise_trace_id(&"0".repeat(32)), None);
        assert_eq!(
            ids::normalise_trace_id("4BF92F3577B34DA6A3CE929D0E0E4736"),
            None
        );
        assert_eq!(ids::normalise_trace_id("short"), None);
    }

    #[test]
    fn outbound_omits_absent_fields_and_puts_arcp_first() {
        let text = Outbound::new("session.pong", serde_json::json!({})).encode();
        assert!(text.starts_with(r#"{"arcp":"1.1","id":""#));
        assert!(!text.contains("session_id"));
    }

    #[test]
    fn an_oversized_body_is_cut_to_fit_and_says_so() {
        let mut body = serde_json::json!({
            "name": "read-file",
            "args": {"path": "x".repeat(3 << 20), "note": "y".repeat(500_000)},
            "small": "kept",
        });
        assert!(fit_within(&mut body, 900 << 10));
        let text = body.to_string();
        assert!(text.len() <= 900 << 10, "{} bytes", text.len());
        assert_eq!(body["small"], "kept");
        assert_eq!(body["name"], "read-file");
        assert!(
            body["args"]["path"]
                .as_str()
                .unwrap()
                .ends_with(&format!("[truncated from {} bytes]", 3 << 20))
        );
        // Nothing to cut: untouched.
        let mut small = serde_json::json!({"a": "b"});
        assert!(!fit_within(&mut small, 100));
        assert_eq!(small, serde_json::json!({"a": "b"}));
        // Size not in strings: replaced by a marker.
        let mut many = serde_json::json!(vec![1u8; 400_000]);
        assert!(fit_within(&mut many, 1000));
        assert_eq!(many["truncated"], true);
        // Multi-byte text is cut on a character boundary.
        let mut wide = serde_json::json!({"t": "é".repeat(300_000)});
        assert!(fit_within(&mut wide, 100_000));
        assert!(wide.to_string().len() <= 100_000);
    }
}
