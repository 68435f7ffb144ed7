//! The protocol-edge error type: one variant per ARCP error code (spec §12).
//!
//! Everything that reaches a client as `session.error` or `job.error` is an
//! [`ArcpError`]. Internal code uses `anyhow`/`wasmtime::Error` with context and maps
//! to an `ArcpError` at the boundary, so that only the 15 spec codes ever reach the
//! wire, each with the `retryable` flag the spec requires.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The 15 ARCP v1.1 error codes (spec §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// Operation rejected by lease enforcement.
    PermissionDenied,
    /// Delegation request expanded beyond the parent lease.
    LeaseSubsetViolation,
    /// Referenced `job_id` does not exist or is not visible.
    JobNotFound,
    /// `idempotency_key` reuse with conflicting parameters.
    DuplicateKey,
    /// Requested `agent` is not registered.
    AgentNotAvailable,
    /// Agent name resolved but requested version unavailable.
    AgentVersionNotAvailable,
    /// Job ended due to client cancellation.
    Cancelled,
    /// Job exceeded `max_runtime_sec`.
    Timeout,
    /// Resume attempted after the buffer window closed.
    ResumeWindowExpired,
    /// Peer detected counterparty disconnection.
    HeartbeatLost,
    /// Lease's `expires_at` reached during execution.
    LeaseExpired,
    /// A `cost.budget` counter reached zero.
    BudgetExhausted,
    /// Malformed envelope or schema violation.
    InvalidRequest,
    /// Missing or invalid authentication.
    Unauthenticated,
    /// Unrecoverable runtime fault. Always retryable.
    InternalError,
}

impl ErrorCode {
    /// All codes, in the spec's order.
    pub const ALL: [ErrorCode; 15] = [
        ErrorCode::PermissionDenied,
        ErrorCode::LeaseSubsetViolation,
        ErrorCode::JobNotFound,
        ErrorCode::DuplicateKey,
        ErrorCode::AgentNotAvailable,
        ErrorCode::AgentVersionNotAvailable,
        ErrorCode::Cancelled,
        ErrorCode::Timeout,
        ErrorCode::ResumeWindowExpired,
        ErrorCode::HeartbeatLost,
        ErrorCode::LeaseExpired,
        ErrorCode::BudgetExhausted,
        ErrorCode::InvalidRequest,
        ErrorCode::Unauthenticated,
        ErrorCode::InternalError,
    ];

    /// The wire spelling, e.g. `"INVALID_REQUEST"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::LeaseSubsetViolation => "LEASE_SUBSET_VIOLATION",
            ErrorCode::JobNotFound => "JOB_NOT_FOUND",
            ErrorCode::DuplicateKey => "DUPLICATE_KEY",
            ErrorCode::AgentNotAvailable => "AGENT_NOT_AVAILABLE",
            ErrorCode::AgentVersionNotAvailable => "AGENT_VERSION_NOT_AVAILABLE",
            ErrorCode::Cancelled => "CANCELLED",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::ResumeWindowExpired => "RESUME_WINDOW_EXPIRED",
            ErrorCode::HeartbeatLost => "HEARTBEAT_LOST",
            ErrorCode::LeaseExpired => "LEASE_EXPIRED",
            ErrorCode::BudgetExhausted => "BUDGET_EXHAUSTED",
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::InternalError => "INTERNAL_ERROR",
        }
    }

    /// Parses a wire spelling; `None` for anything outside the taxonomy.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The `retryable` flag a runtime sends with this code. The spec fixes
    /// `LEASE_EXPIRED` and `BUDGET_EXHAUSTED` to false and `INTERNAL_ERROR` to true;
    /// for the others we say true only where a retry of the same request can succeed
    /// without the client changing anything.
    pub fn default_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::InternalError | ErrorCode::HeartbeatLost | ErrorCode::Timeout
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest error message sent.
pub const MAX_MESSAGE_BYTES: usize = 2048;

/// An error as it crosses the protocol edge: a spec code, a message for humans and
/// optional structured details.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ArcpError {
    /// The ARCP error code.
    pub code: ErrorCode,
    /// What went wrong, never empty.
    pub message: String,
    /// Whether the same request may succeed if retried.
    pub retryable: bool,
    /// Structured details (e.g. the available versions of an agent).
    pub details: Option<Map<String, Value>>,
}

impl ArcpError {
    /// An error with the code's default `retryable` flag. Messages often quote
    /// client input, so they are cut to [`MAX_MESSAGE_BYTES`]: an error frame can
    /// never approach the 1 MiB frame limit.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.is_empty() {
            message = code.as_str().to_owned();
        }
        if message.len() > MAX_MESSAGE_BYTES {
            let mut cut = MAX_MESSAGE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        ArcpError {
            code,
            message,
            retryable: code.default_retryable(),
            details: None,
        }
    }

    /// Adds one detail entry.
    pub fn with_detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details
            .get_or_insert_with(Map::new)
            .insert(key.to_owned(), value.into());
        self
    }

    /// Sets the `retryable` flag (the wire flag wins over the code's default).
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// `INVALID_REQUEST` with the given message.
    pub fn invalid(message: impl Into<String>) -> Self {
        ArcpError::new(ErrorCode::InvalidRequest, message)
    }

    /// `INTERNAL_ERROR` with the given message.
    pub fn internal(message: impl Into<String>) -> Self {
        ArcpError::new(ErrorCode::InternalError, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_wire_spelling() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
        assert_eq!(ErrorCode::parse("RATE_LIMITED"), None);
    }

    #[test]
    fn spec_mandated_retryable_flags_hold() {
        assert!(!ErrorCode::LeaseExpired.default_retryable());
        assert!(!ErrorCode::BudgetExhausted.default_retryable());
        assert!(ErrorCode::InternalError.default_retryable());
    }

    #[test]
    fn long_messages_are_cut() {
        let e = ArcpError::invalid("é".repeat(10_000));
        assert!(e.message.len() <= MAX_MESSAGE_BYTES + 4);
    }

    #[test]
    fn empty_message_is_replaced_by_the_code() {
        assert_eq!(
            ArcpError::new(ErrorCode::JobNotFound, "").message,
            "JOB_NOT_FOUND"
        );
    }
}
