//! [`Failure`]: an ARCP error as an agent returns it and as the host's capability
//! calls report it; [`ErrorCode`]: the codes of the spec's error taxonomy.

use crate::bindings;
use std::fmt;

/// An ARCP error code (spec §12, "Error Taxonomy").
///
/// The host maps a code outside the taxonomy ([`ErrorCode::Other`]) that an agent
/// returns to `INTERNAL_ERROR`, keeping the agent's code in the error's details.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `PERMISSION_DENIED`: the operation was rejected by lease enforcement.
    PermissionDenied,
    /// `LEASE_SUBSET_VIOLATION`: a delegation asked for more than the parent's lease.
    LeaseSubsetViolation,
    /// `JOB_NOT_FOUND`: a referenced job does not exist or is not visible.
    JobNotFound,
    /// `DUPLICATE_KEY`: an idempotency key was reused with other parameters.
    DuplicateKey,
    /// `AGENT_NOT_AVAILABLE`: the requested agent is not registered.
    AgentNotAvailable,
    /// `AGENT_VERSION_NOT_AVAILABLE`: the agent exists but not in that version.
    AgentVersionNotAvailable,
    /// `CANCELLED`: the job ended because a client cancelled it.
    Cancelled,
    /// `TIMEOUT`: the job exceeded its `max_runtime_sec`.
    Timeout,
    /// `RESUME_WINDOW_EXPIRED`: a resume came after the buffer window closed.
    ResumeWindowExpired,
    /// `HEARTBEAT_LOST`: a peer stopped answering.
    HeartbeatLost,
    /// `LEASE_EXPIRED`: the lease's `expires_at` was reached.
    LeaseExpired,
    /// `BUDGET_EXHAUSTED`: a `cost.budget` counter reached zero.
    BudgetExhausted,
    /// `INVALID_REQUEST`: malformed input or a schema violation.
    InvalidRequest,
    /// `UNAUTHENTICATED`: missing or invalid authentication.
    Unauthenticated,
    /// `INTERNAL_ERROR`: an unrecoverable fault; always retryable.
    InternalError,
    /// A code outside the taxonomy, as it was spelled.
    Other(String),
}

impl ErrorCode {
    /// The 15 codes of the taxonomy, in the spec's order.
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
    pub fn as_str(&self) -> &str {
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
            ErrorCode::Other(code) => code,
        }
    }

    /// Whether the code is one of the taxonomy's (not [`ErrorCode::Other`]).
    pub fn is_known(&self) -> bool {
        !matches!(self, ErrorCode::Other(_))
    }

    /// The `retryable` flag a [`Failure`] of this code gets unless told otherwise:
    /// true for `INTERNAL_ERROR` (the spec says always), `TIMEOUT` and
    /// `HEARTBEAT_LOST`, false for the rest. The host forces `LEASE_EXPIRED` and
    /// `BUDGET_EXHAUSTED` to false and `INTERNAL_ERROR` to true whatever an agent
    /// says.
    pub fn default_retryable(&self) -> bool {
        matches!(
            self,
            ErrorCode::InternalError | ErrorCode::Timeout | ErrorCode::HeartbeatLost
        )
    }
}

impl From<&str> for ErrorCode {
    fn from(code: &str) -> ErrorCode {
        ErrorCode::ALL
            .into_iter()
            .find(|known| known.as_str() == code)
            .unwrap_or_else(|| ErrorCode::Other(code.to_owned()))
    }
}

impl From<String> for ErrorCode {
    fn from(code: String) -> ErrorCode {
        match ErrorCode::from(code.as_str()) {
            ErrorCode::Other(_) => ErrorCode::Other(code),
            known => known,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ARCP error: what an agent returns to end its job with `job.error`, and what
/// a refused or failed host call returns.
///
/// ```
/// use arcp_agent::{ErrorCode, Failure};
///
/// let f = Failure::invalid_request("`path` must be a string");
/// assert_eq!(f.code(), &ErrorCode::InvalidRequest);
/// assert!(!f.is_retryable());
/// assert_eq!(f.to_string(), "INVALID_REQUEST: `path` must be a string");
///
/// let f = Failure::new("X_VENDOR_QUOTA", "try later").with_retryable(true);
/// assert_eq!(f.code().as_str(), "X_VENDOR_QUOTA");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    code: ErrorCode,
    message: String,
    retryable: bool,
}

macro_rules! constructors {
    ($($(#[$doc:meta])* $name:ident => $code:ident;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(message: impl Into<String>) -> Failure {
                Failure::new(ErrorCode::$code, message)
            }
        )*
    };
}

impl Failure {
    /// A failure of `code` with `message`, retryable as
    /// [`ErrorCode::default_retryable`] says.
    pub fn new(code: impl Into<ErrorCode>, message: impl Into<String>) -> Failure {
        let code = code.into();
        Failure {
            retryable: code.default_retryable(),
            code,
            message: message.into(),
        }
    }

    constructors! {
        /// `INVALID_REQUEST`: the input (or a request the agent was given) is
        /// malformed. Not retryable.
        invalid_request => InvalidRequest;
        /// `PERMISSION_DENIED`: something the job is not allowed to do. Not retryable.
        permission_denied => PermissionDenied;
        /// `LEASE_SUBSET_VIOLATION`: a delegation that would widen the lease. Not
        /// retryable.
        lease_subset_violation => LeaseSubsetViolation;
        /// `LEASE_EXPIRED`: the lease's `expires_at` has passed. Never retryable.
        lease_expired => LeaseExpired;
        /// `BUDGET_EXHAUSTED`: a `cost.budget` counter is spent. Never retryable.
        budget_exhausted => BudgetExhausted;
        /// `INTERNAL_ERROR`: an unrecoverable fault. Always retryable.
        internal => InternalError;
        /// `TIMEOUT`: something took too long. Retryable.
        timeout => Timeout;
        /// `CANCELLED`: the work was cancelled. Not retryable.
        cancelled => Cancelled;
        /// `JOB_NOT_FOUND`: a referenced job does not exist. Not retryable.
        job_not_found => JobNotFound;
        /// `AGENT_NOT_AVAILABLE`: a referenced agent is not registered. Not retryable.
        agent_not_available => AgentNotAvailable;
        /// `AGENT_VERSION_NOT_AVAILABLE`: a referenced agent version is not
        /// registered. Not retryable.
        agent_version_not_available => AgentVersionNotAvailable;
        /// `UNAUTHENTICATED`: missing or invalid credentials. Not retryable.
        unauthenticated => Unauthenticated;
    }

    /// The same failure with its `retryable` flag set.
    pub fn with_retryable(mut self, retryable: bool) -> Failure {
        self.retryable = retryable;
        self
    }

    /// The same failure with `context: ` put before its message.
    pub fn context(mut self, context: impl fmt::Display) -> Failure {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// The ARCP error code.
    pub fn code(&self) -> &ErrorCode {
        &self.code
    }

    /// What went wrong, for people.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the same request may succeed if retried.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// Whether the code is `code`: `failure.is(ErrorCode::BudgetExhausted)`.
    pub fn is(&self, code: ErrorCode) -> bool {
        self.code == code
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Failure {}

impl From<bindings::Failure> for Failure {
    fn from(f: bindings::Failure) -> Failure {
        Failure {
            code: ErrorCode::from(f.code),
            message: f.message,
            retryable: f.retryable,
        }
    }
}

impl From<Failure> for bindings::Failure {
    fn from(f: Failure) -> bindings::Failure {
        bindings::Failure {
            code: match f.code {
                ErrorCode::Other(code) => code,
                known => known.as_str().to_owned(),
            },
            message: f.message,
            retryable: f.retryable,
        }
    }
}

/// JSON that could not be read or written: `INVALID_REQUEST` with serde's message
/// (e.g. a body built from a `Value` the agent was sent).
impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Failure {
        Failure::invalid_request(e.to_string())
    }
}

/// An I/O error, typically from writing a [`ResultStream`](crate::ResultStream)
/// through [`std::io::Write`]: the stream's own [`Failure`] when it carries one,
/// else `INTERNAL_ERROR`.
impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<Failure>())
        {
            Some(failure) => failure.clone(),
            None => Failure::internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_ones_are_kept() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from(code.as_str()), code);
            assert!(code.is_known());
        }
        let other = ErrorCode::from("X_VENDOR");
        assert_eq!(other, ErrorCode::Other("X_VENDOR".into()));
        assert_eq!(other.as_str(), "X_VENDOR");
        assert!(!other.is_known());
    }

    #[test]
    fn retryable_defaults_follow_the_spec() {
        assert!(Failure::internal("x").is_retryable());
        assert!(!Failure::budget_exhausted("x").is_retryable());
        assert!(!Failure::lease_expired("x").is_retryable());
        assert!(!Failure::invalid_request("x").is_retryable());
        assert!(
            Failure::invalid_request("x")
                .with_retryable(true)
                .is_retryable()
        );
    }

    #[test]
    fn converts_to_and_from_the_wit_record() {
        let wit: bindings::Failure = Failure::permission_denied("no").into();
        assert_eq!(wit.code, "PERMISSION_DENIED");
        assert_eq!(wit.message, "no");
        assert!(!wit.retryable);
        let back = Failure::from(bindings::Failure {
            code: "BUDGET_EXHAUSTED".into(),
            message: "spent".into(),
            retryable: false,
        });
        assert!(back.is(ErrorCode::BudgetExhausted));
        let odd: bindings::Failure = Failure::new("X_Y", "z").into();
        assert_eq!(odd.code, "X_Y");
    }

    #[test]
    fn an_io_error_gives_back_the_failure_it_wraps() {
        let wrapped = std::io::Error::other(Failure::internal("cap reached"));
        assert_eq!(Failure::from(wrapped), Failure::internal("cap reached"));
        let plain = std::io::Error::new(std::io::ErrorKind::InvalidData, "bad");
        assert!(Failure::from(plain).is(ErrorCode::InternalError));
    }
}
