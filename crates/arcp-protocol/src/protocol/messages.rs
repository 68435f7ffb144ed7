//! Typed payloads of every ARCP v1.1 message type.
//!
//! Client → runtime payloads derive `Deserialize` and ignore unknown fields;
//! runtime → client payloads derive `Serialize` and omit absent optional fields.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;

// ---------------------------------------------------------------- client → runtime

/// `session.hello` (spec §6.2).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HelloPayload {
    /// Who the client is.
    #[serde(default)]
    pub client: Option<ClientInfo>,
    /// Bearer credentials.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// What the client supports.
    #[serde(default)]
    pub capabilities: Option<ClientCapabilities>,
    /// Present when the client resumes an earlier session (spec §6.3).
    #[serde(default)]
    pub resume: Option<ResumeRequest>,
}

/// `session.hello.payload.client`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ClientInfo {
    /// Client name.
    #[serde(default)]
    pub name: String,
    /// Client version.
    #[serde(default)]
    pub version: String,
}

/// `session.hello.payload.auth`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Auth {
    /// Only `bearer` is defined.
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// The bearer token.
    #[serde(default)]
    pub token: Option<String>,
}

fn default_scheme() -> String {
    "bearer".into()
}

/// `session.hello.payload.capabilities`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClientCapabilities {
    /// Encodings the client speaks (only `json` exists).
    #[serde(default)]
    pub encodings: Vec<String>,
    /// Feature flags the client supports.
    #[serde(default)]
    pub features: Vec<String>,
}

/// `session.hello.payload.resume`.
#[derive(Debug, Clone, Deserialize)]
pub struct ResumeRequest {
    /// The session to resume.
    pub session_id: String,
    /// The most recent resume token.
    pub resume_token: String,
    /// The highest `event_seq` the client has seen.
    #[serde(default)]
    pub last_event_seq: u64,
}

/// `job.submit` (spec §7.1).
#[derive(Debug, Clone, Deserialize)]
pub struct SubmitPayload {
    /// `name` or `name@version`.
    pub agent: String,
    /// The job's input (absent = `null`).
    #[serde(default)]
    pub input: Option<Value>,
    /// Namespace → patterns.
    #[serde(default)]
    pub lease_request: Option<Map<String, Value>>,
    /// `expires_at` and friends.
    #[serde(default)]
    pub lease_constraints: Option<LeaseConstraints>,
    /// Idempotency key (spec §7.2).
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Wall-clock limit in seconds.
    #[serde(default)]
    pub max_runtime_sec: Option<u64>,
    /// The parent job, for delegation.
    #[serde(default)]
    pub parent_job_id: Option<String>,
}

/// `lease_constraints` (spec §9.5).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct LeaseConstraints {
    /// UTC expiry, `…Z`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// `job.cancel` (spec §7.4). The Python client puts the job id on the envelope, the
/// Ruby client in the payload; both are accepted.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CancelPayload {
    /// The job, when carried in the payload.
    #[serde(default)]
    pub job_id: Option<String>,
    /// Why the client cancels.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `session.list_jobs` (spec §6.6).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListJobsPayload {
    /// Filters; all optional.
    #[serde(default)]
    pub filter: Option<ListFilter>,
    /// Page size.
    #[serde(default)]
    pub limit: Option<u32>,
    /// Opaque cursor from a previous `next_cursor`.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// `session.list_jobs.payload.filter`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListFilter {
    /// Status names to include.
    #[serde(default)]
    pub status: Option<Vec<String>>,
    /// Agent name or `name@version`.
    #[serde(default)]
    pub agent: Option<String>,
    /// Only jobs submitted strictly after this instant.
    #[serde(default)]
    pub created_after: Option<String>,
}

/// `session.ack` (spec §6.5).
#[derive(Debug, Clone, Deserialize)]
pub struct AckPayload {
    /// Highest processed `event_seq`.
    pub last_processed_seq: u64,
}

/// `session.ping` (spec §6.4), either direction.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PingPayload {
    /// Echoed back in the pong.
    pub nonce: String,
    /// When the ping was sent.
    pub sent_at: String,
}

/// `session.pong` (spec §6.4), either direction.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PongPayload {
    /// The nonce of the ping answered.
    pub ping_nonce: String,
    /// When the ping was received.
    pub received_at: String,
}

/// `session.bye` / `session.close`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ByePayload {
    /// Why the peer leaves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

// ---------------------------------------------------------------- runtime → client

/// `session.welcome` (spec §6.2 plus the fields the reference client requires).
#[derive(Debug, Clone, Serialize)]
pub struct WelcomePayload {
    /// `{name, version}` of this runtime.
    pub runtime: RuntimeInfo,
    /// The runtime-minted session id (also on the envelope).
    pub session_id: String,
    /// Single-use token for resuming this session.
    pub resume_token: String,
    /// How long the session stays resumable after a drop.
    pub resume_window_sec: u64,
    /// Ping interval, when `heartbeat` is negotiated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_sec: Option<u64>,
    /// Negotiated capabilities and the agent inventory.
    pub capabilities: WelcomeCapabilities,
    /// When the session was accepted.
    pub accepted_at: String,
}

/// `session.welcome.payload.runtime`.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeInfo {
    /// Runtime name.
    pub name: String,
    /// Runtime version.
    pub version: String,
}

/// `session.welcome.payload.capabilities`.
#[derive(Debug, Clone, Serialize)]
pub struct WelcomeCapabilities {
    /// Always `["json"]`.
    pub encodings: Vec<String>,
    /// The negotiated features: the client's ∩ the runtime's.
    pub features: Vec<String>,
    /// The agent inventory: [`AgentEntry`] objects when `agent_versions` is
    /// negotiated, else a flat list of names (the v1.0 form).
    pub agents: Value,
}

/// One agent in the inventory (`agent_versions` form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentEntry {
    /// Agent name.
    pub name: String,
    /// Available versions, ascending.
    pub versions: Vec<String>,
    /// The version a bare name resolves to.
    pub default: Option<String>,
}

/// `job.accepted` (spec §7.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptedPayload {
    /// The new job's id.
    pub job_id: String,
    /// Resolved `name@version`.
    pub agent: String,
    /// When the runtime accepted the job.
    pub accepted_at: String,
    /// The effective lease.
    pub lease: Map<String, Value>,
    /// Echoed constraints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_constraints: Option<LeaseConstraints>,
    /// Initial budget counters, as strings (`{"USD":"USD:5.00"}`), the reference
    /// client's form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<Map<String, Value>>,
    /// The job's trace id.
    pub trace_id: String,
    /// The submit envelope's id.
    pub request_id: String,
    /// Parent job, for delegated jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_job_id: Option<String>,
    /// Provisioned credentials (spec §9.8), only ever sent to the submitter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<Value>,
}

/// `job.event` payload (spec §8.1).
#[derive(Debug, Clone, Serialize)]
pub struct EventPayload {
    /// Event kind.
    pub kind: Cow<'static, str>,
    /// When it happened.
    pub ts: String,
    /// Kind-specific body, a JSON object.
    pub body: EventBody,
}

/// A `job.event`'s body, kept as it came until its frame is written: a job's events
/// are built by the hundred thousand, and each text made on the way (and copied into
/// the next) was a tenth of an event flood's emission path.
#[derive(Debug, Clone)]
pub enum EventBody {
    /// A JSON object as text: a plugin's own body, passed through as it wrote it, or
    /// one the runtime serialised.
    Json(Box<serde_json::value::RawValue>),
    /// A `log` body, `{"level": …, "message": …}`, the most frequent body of all:
    /// its message is escaped once, straight into the frame.
    Log {
        /// `debug`, `info`, `warn` or `error`.
        level: &'static str,
        /// The message.
        message: String,
    },
}

impl EventBody {
    /// An upper bound on the length of the body's JSON text (a byte of a string
    /// escapes to at most six).
    pub fn max_json_len(&self) -> usize {
        match self {
            EventBody::Json(raw) => raw.get().len(),
            EventBody::Log { level, message } => {
                r#"{"level":"","message":""}"#.len() + level.len() + 6 * message.len()
            }
        }
    }

    /// The body as a JSON tree (to cut one that is too long for a frame).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

impl Serialize for EventBody {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        match self {
            EventBody::Json(raw) => raw.serialize(serializer),
            EventBody::Log { level, message } => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("level", level)?;
                map.serialize_entry("message", message)?;
                map.end()
            }
        }
    }
}

/// `job.result` payload.
#[derive(Debug, Clone, Serialize)]
pub struct ResultPayload {
    /// `success`, `cancelled` or `timed_out`.
    pub final_status: &'static str,
    /// Inline result (absent when streamed), as compact JSON text: the runtime
    /// serialises it once, to learn whether it fits a frame, and sends that text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Box<serde_json::value::RawValue>>,
    /// The streamed result's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_id: Option<String>,
    /// Decoded size of the streamed result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_size: Option<u64>,
    /// Summary of a streamed result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// When the job ended.
    pub completed_at: String,
}

/// One entry of `session.jobs`.
#[derive(Debug, Clone, Serialize)]
pub struct JobListEntry {
    /// The job.
    pub job_id: String,
    /// `name@version`.
    pub agent: String,
    /// Current status.
    pub status: String,
    /// Effective lease.
    pub lease: Map<String, Value>,
    /// Parent job.
    pub parent_job_id: Option<String>,
    /// Submission time (the reference client's name).
    pub submitted_at: String,
    /// Submission time (the spec's name).
    pub created_at: String,
    /// Trace id.
    pub trace_id: String,
    /// Last `event_seq` of this job in its submitting session.
    pub last_event_seq: Option<u64>,
}

/// `session.jobs`.
#[derive(Debug, Clone, Serialize)]
pub struct JobsPayload {
    /// The `session.list_jobs` envelope id.
    pub request_id: String,
    /// The page.
    pub jobs: Vec<JobListEntry>,
    /// Cursor of the next page, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `job.subscribe` (spec §7.6).
#[derive(Debug, Clone, Deserialize)]
pub struct SubscribePayload {
    /// The job to attach to.
    pub job_id: String,
    /// Whether to replay buffered history first.
    #[serde(default)]
    pub history: bool,
    /// Replay strictly after this seq.
    #[serde(default)]
    pub from_event_seq: Option<u64>,
}

/// `job.unsubscribe` (spec §7.6).
#[derive(Debug, Clone, Deserialize)]
pub struct UnsubscribePayload {
    /// The job to detach from.
    pub job_id: String,
}

/// `job.subscribed` (spec §7.6, with the fields the reference client requires).
#[derive(Debug, Clone, Serialize)]
pub struct SubscribedPayload {
    /// The `job.subscribe` envelope id.
    pub request_id: String,
    /// The job.
    pub job_id: String,
    /// Its status now.
    pub current_status: String,
    /// `name@version`.
    pub agent: String,
    /// Its effective lease.
    pub lease: Map<String, Value>,
    /// Its lease constraints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_constraints: Option<LeaseConstraints>,
    /// Its budget counters as accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<Map<String, Value>>,
    /// Its parent job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_job_id: Option<String>,
    /// Its trace id.
    pub trace_id: String,
    /// The subscriber's seq at which live delivery starts.
    pub subscribed_from: u64,
    /// How many envelopes were replayed.
    pub replayed: u64,
}

/// `session.error` and `job.error` payloads (spec §12).
#[derive(Debug, Clone, Serialize)]
pub struct ErrorPayload {
    /// One of the 15 spec codes.
    pub code: crate::error::ErrorCode,
    /// Never empty.
    pub message: String,
    /// Whether a retry may succeed.
    pub retryable: bool,
    /// Structured details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Map<String, Value>>,
    /// `"error"` on `job.error` (the only value the reference client accepts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_status: Option<&'static str>,
    /// When the job ended, on `job.error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
}

impl ErrorPayload {
    /// A `session.error` payload.
    pub fn session(err: &crate::error::ArcpError) -> ErrorPayload {
        ErrorPayload {
            code: err.code,
            message: err.message.clone(),
            retryable: err.retryable,
            details: err.details.clone(),
            final_status: None,
            completed_at: None,
        }
    }

    /// A `job.error` payload, ended now.
    pub fn job(err: &crate::error::ArcpError) -> ErrorPayload {
        ErrorPayload {
            final_status: Some("error"),
            completed_at: Some(super::now_rfc3339()),
            ..ErrorPayload::session(err)
        }
    }
}

/// `job.cancelled`: the acknowledgement of a cancel (spec §7.4).
#[derive(Debug, Clone, Serialize)]
pub struct CancelledPayload {
    /// The job being cancelled.
    pub job_id: String,
    /// The client's reason, if it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
