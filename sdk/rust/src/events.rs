//! Events: what the agent tells the job's client while it runs (spec §8.2).
//!
//! Each call becomes one `job.event` of its kind, in call order. A call may wait
//! while the client is slow to read (back-pressure) but never fails for that
//! reason; only [`emit`] can fail, for a kind or body the host refuses. The host
//! cuts a text longer than 64 KiB, noting how much it dropped.
//!
//! ```no_run
//! use arcp_agent::prelude::*;
//!
//! events::status("indexing", Some("3 folders"));
//! events::info("starting");
//! for i in 0..10u32 {
//!     Progress::new(f64::from(i + 1)).total(10.0).units("files").emit();
//! }
//! events::metric("files.indexed", 10.0, None);
//! events::cost("inference", 0.02, "USD"); // charged to the job's USD budget
//! events::emit("x-acme.note", &json!({ "text": "done" }))?;
//! # Ok::<(), Failure>(())
//! ```

use crate::Failure;
use crate::bindings::arcp::agent::events as wit;
use serde::Serialize;

/// The level of a `log` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// `debug`
    Debug,
    /// `info`
    Info,
    /// `warn`
    Warn,
    /// `error`
    Error,
}

impl Level {
    /// The wire spelling: `debug`, `info`, `warn` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// `log{level, message}`.
pub fn log(level: Level, message: impl AsRef<str>) {
    wit::log(level.as_str(), message.as_ref());
}

/// `log{level: "debug", message}`.
pub fn debug(message: impl AsRef<str>) {
    log(Level::Debug, message);
}

/// `log{level: "info", message}`.
pub fn info(message: impl AsRef<str>) {
    log(Level::Info, message);
}

/// `log{level: "warn", message}`.
pub fn warn(message: impl AsRef<str>) {
    log(Level::Warn, message);
}

/// `log{level: "error", message}`.
pub fn error(message: impl AsRef<str>) {
    log(Level::Error, message);
}

/// `progress{current, total?}`. For `units` and `message` use [`Progress`].
///
/// `current` must be non-negative (the host sends 0 for a negative or NaN value);
/// an integral value is sent as a JSON integer.
pub fn progress(current: f64, total: Option<f64>) {
    wit::progress(current, total, None, None);
}

/// A `progress{current, total?, units?, message?}` event, built then
/// [emitted](Progress::emit).
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a progress event is sent by `.emit()`"]
pub struct Progress {
    current: f64,
    total: Option<f64>,
    units: Option<String>,
    message: Option<String>,
}

impl Progress {
    /// Progress at `current` (non-negative), of an unknown total.
    pub fn new(current: f64) -> Progress {
        Progress {
            current,
            total: None,
            units: None,
            message: None,
        }
    }

    /// Out of `total`.
    pub fn total(mut self, total: f64) -> Progress {
        self.total = Some(total);
        self
    }

    /// Counted in `units` (`"files"`, `"bytes"`, ...).
    pub fn units(mut self, units: impl Into<String>) -> Progress {
        self.units = Some(units.into());
        self
    }

    /// With a message for people (`"Refactoring src/auth.rs"`).
    pub fn message(mut self, message: impl Into<String>) -> Progress {
        self.message = Some(message.into());
        self
    }

    /// Sends the event.
    pub fn emit(self) {
        wit::progress(
            self.current,
            self.total,
            self.units.as_deref(),
            self.message.as_deref(),
        );
    }
}

/// `metric{name, value, unit?}`. The host drops a non-finite value (with a `warn`
/// log). A metric named `cost.*` whose unit is a currency the job has a
/// `cost.budget` in is charged to that budget (see [`cost`]).
pub fn metric(name: &str, value: f64, unit: Option<&str>) {
    wit::metric(name, value, unit);
}

/// Reports a cost: `metric{name: "cost.<what>", value: amount, unit: currency}`.
/// When the job has a `cost.budget` in `currency` the host charges it and follows
/// with a `cost.budget.remaining` metric; once a budget is spent, capability calls
/// fail with `BUDGET_EXHAUSTED`. A negative amount is refused (logged, not
/// charged).
pub fn cost(what: &str, amount: f64, currency: &str) {
    metric(&format!("cost.{what}"), amount, Some(currency));
}

/// `status{phase, message?}`.
pub fn status(phase: &str, message: Option<&str>) {
    wit::status(phase, message);
}

/// `thought{text}`: the agent's reasoning, for clients that show it.
pub fn thought(text: impl AsRef<str>) {
    wit::thought(text.as_ref());
}

/// An event of any other kind (`artifact_ref`, `x-vendor.something`, ...) whose
/// body is `body` serialized to a JSON object.
///
/// Fails with `INVALID_REQUEST` for a malformed kind (it must start with a
/// lowercase letter and hold only lowercase letters, digits, `_`, `.` and `-`, at
/// most 128 bytes), a body that is not a JSON object or is over 256 KiB, and
/// `PERMISSION_DENIED` for the kinds the host emits itself (`result_chunk`,
/// `delegate`, `tool_call`, `tool_result`).
pub fn emit(kind: &str, body: &impl Serialize) -> Result<(), Failure> {
    let body = serde_json::to_string(body)
        .map_err(|e| Failure::invalid_request(format!("event body cannot be serialized: {e}")))?;
    wit::emit(kind, &body).map_err(Failure::from)
}
