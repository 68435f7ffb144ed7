//! The one terminal message of a job, built from how its run ended.
//!
//! Follows the reference client's accepted shapes (docs/conformance.md): cancel and
//! timeout end as `job.result` with `final_status` `cancelled` / `timed_out`; every
//! error as `job.error` with `final_status: "error"`.

use super::{Job, JobStatus};
use crate::error::{ArcpError, ErrorCode};
use crate::protocol::cut_noting_length;
use crate::protocol::{
    ErrorPayload, EventBody, MAX_OUTBOUND_FRAME, ResultPayload, ids, now_rfc3339,
};
use crate::sandbox::{Failure, RunOutcome, StreamSummary};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::time::Duration;

/// An inline result whose JSON text is larger than this is sent as a streamed result
/// instead, so that no frame passes the 1 MiB limit.
const INLINE_RESULT_LIMIT: usize = MAX_OUTBOUND_FRAME - (64 << 10);
/// Chunk size when the host streams an oversized inline result.
const HOST_CHUNK_BYTES: usize = 128 << 10;

/// How a job's run ended.
pub(super) enum Ending {
    /// The plugin's `run` returned or trapped.
    Ran(RunOutcome),
    /// The submitter cancelled it.
    Cancelled,
    /// It ran past its limit.
    TimedOut(Duration),
    /// Its lease's `expires_at` passed.
    LeaseExpired,
    /// The runtime stopped (crashed or was killed) while the job ran.
    Restarted,
    /// The store could not record the job's events (full disk, I/O error): the job
    /// is stopped rather than run on with nothing kept of it.
    StoreFailed(String),
}

/// How a job ended, for whoever waits on it (a delegating parent): its final status
/// and its result, or the error that ended it.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The final status.
    pub status: JobStatus,
    /// The result as JSON text (for a streamed one: `{result_id, result_size,
    /// summary}`), or why there is none. Text, not a tree: a finished job keeps its
    /// outcome as long as it is retained, and an echo's result kept parsed cost
    /// ~1.2 KiB more per finished job (BENCHMARKS.md, 2026-12-06 17:30).
    pub result: Result<Box<RawValue>, ArcpError>,
}

/// Sends the terminal message and returns how the job ended.
pub(super) async fn finish(job: &Job, ending: Ending) -> Outcome {
    match ending {
        Ending::Cancelled => {
            job.send_terminal(
                "job.result",
                result("cancelled", None),
                JobStatus::Cancelled,
            )
            .await;
            Outcome {
                status: JobStatus::Cancelled,
                result: Err(ArcpError::new(
                    ErrorCode::Cancelled,
                    "the job was cancelled",
                )),
            }
        }
        Ending::TimedOut(limit) => {
            let mut payload = result("timed_out", None);
            let why = format!("job exceeded its {}s run time", limit.as_secs());
            payload.summary = Some(why.clone());
            job.send_terminal("job.result", payload, JobStatus::TimedOut)
                .await;
            Outcome {
                status: JobStatus::TimedOut,
                result: Err(ArcpError::new(ErrorCode::Timeout, why)),
            }
        }
        Ending::Restarted => {
            error(
                job,
                ArcpError::internal("the runtime restarted while the job was running; resubmit it"),
            )
            .await
        }
        Ending::StoreFailed(why) => {
            error(
                job,
                ArcpError::internal(format!(
                    "the runtime could not record this job, so it was stopped: {why}"
                )),
            )
            .await
        }
        Ending::LeaseExpired => {
            error(
                job,
                ArcpError::new(ErrorCode::LeaseExpired, "the job's lease expired"),
            )
            .await
        }
        Ending::Ran(RunOutcome::Success {
            output,
            stream: Some(stream),
        }) => finish_stream(job, &output, stream).await,
        Ending::Ran(RunOutcome::Success {
            output,
            stream: None,
        }) => match result_text(&output) {
            Ok(text) => finish_inline(job, text).await,
            Err(why) => error(job, ArcpError::internal(why)).await,
        },
        Ending::Ran(RunOutcome::Failed(failure)) => error(job, from_failure(failure)).await,
        Ending::Ran(RunOutcome::Trapped(msg)) => error(job, ArcpError::internal(msg)).await,
        Ending::Ran(RunOutcome::InstantiationFailed(msg)) => {
            error(
                job,
                ArcpError::internal(format!("could not start the plugin: {msg}")),
            )
            .await
        }
    }
}

fn result(final_status: &'static str, value: Option<Box<RawValue>>) -> ResultPayload {
    ResultPayload {
        final_status,
        result: value,
        result_id: None,
        result_size: None,
        summary: None,
        completed_at: now_rfc3339(),
    }
}

async fn error(job: &Job, err: ArcpError) -> Outcome {
    job.send_terminal("job.error", ErrorPayload::job(&err), JobStatus::Error)
        .await;
    Outcome {
        status: JobStatus::Error,
        result: Err(err),
    }
}

/// Longest unknown error code a plugin may pass on (in `details.plugin_code`).
const MAX_PLUGIN_CODE_BYTES: usize = 128;

/// Maps a plugin's failure to the taxonomy: a code outside it becomes
/// `INTERNAL_ERROR` with the plugin's code in `details`; the spec's fixed `retryable`
/// flags win over the plugin's.
/// An unknown code is cut to a bound, as [`ArcpError::new`] cuts the message: both
/// are the plugin's own strings, and a `job.error` must fit a frame.
fn from_failure(f: Failure) -> ArcpError {
    let message = f.message;
    let (code, mut err) = match ErrorCode::parse(&f.code) {
        Some(code) => (code, ArcpError::new(code, message)),
        None => (
            ErrorCode::InternalError,
            ArcpError::new(ErrorCode::InternalError, message).with_detail(
                "plugin_code",
                cut_noting_length(f.code, MAX_PLUGIN_CODE_BYTES),
            ),
        ),
    };
    err.retryable = match code {
        ErrorCode::LeaseExpired | ErrorCode::BudgetExhausted => false,
        ErrorCode::InternalError => true,
        _ => f.retryable,
    };
    err
}

/// A plugin's returned result as the text the runtime sends: parsed, so that it is
/// JSON within serde_json's nesting limit (128 levels, as for a client's frames),
/// and written out once, compactly: on one line, which a frame on stdio must be.
/// The plugin's own text is not passed on as it is, as an event body is: a
/// pretty-printed result would break a stdio frame, and its nesting is unchecked.
fn result_text(output: &str) -> Result<Box<RawValue>, String> {
    let value: Value = serde_json::from_str(output)
        .map_err(|e| format!("plugin returned a result that is not JSON: {e}"))?;
    Ok(crate::protocol::raw_payload(&value))
}

/// A returned result (see [`result_text`]), inline if it fits a frame, else
/// streamed by the runtime.
async fn finish_inline(job: &Job, text: Box<RawValue>) -> Outcome {
    if text.get().len() <= INLINE_RESULT_LIMIT {
        job.send_terminal(
            "job.result",
            result("success", Some(text.clone())),
            JobStatus::Success,
        )
        .await;
        return Outcome {
            status: JobStatus::Success,
            result: Ok(text),
        };
    }
    // Too large for one frame: stream the JSON text as utf8 chunks (spec §8.4).
    let result_id = ids::prefixed("res");
    let mut rest = text.get();
    let mut seq = 0u64;
    while !rest.is_empty() {
        let mut cut = rest.len().min(HOST_CHUNK_BYTES);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let body = json!({"result_id": result_id, "chunk_seq": seq, "data": &rest[..cut], "encoding": "utf8", "more": cut < rest.len()});
        job.event(
            "result_chunk".into(),
            EventBody::Json(crate::protocol::raw_payload(&body)),
        )
        .await;
        rest = &rest[cut..];
        seq += 1;
    }
    let mut payload = result("success", None);
    payload.result_id = Some(result_id);
    payload.result_size = Some(text.get().len() as u64);
    payload.summary =
        Some("JSON result streamed by the runtime: it was too large for one frame".into());
    job.send_terminal("job.result", payload, JobStatus::Success)
        .await;
    Outcome {
        status: JobStatus::Success,
        result: Ok(text),
    }
}

async fn finish_stream(job: &Job, output: &str, stream: StreamSummary) -> Outcome {
    if let Some(msg) = stream.overflow {
        return error(job, ArcpError::internal(msg)).await;
    }
    let last = json!({
        "result_id": stream.result_id,
        "chunk_seq": stream.chunks,
        "data": "",
        "encoding": stream.encoding,
        "more": false,
    });
    job.event(
        "result_chunk".into(),
        EventBody::Json(crate::protocol::raw_payload(&last)),
    )
    .await;
    let mut payload = result("success", None);
    payload.result_id = Some(stream.result_id.clone());
    payload.result_size = Some(stream.bytes);
    payload.summary = match serde_json::from_str::<Value>(output) {
        Ok(Value::String(s)) => Some(s),
        _ => None,
    };
    let summary = payload.summary.clone();
    job.send_terminal("job.result", payload, JobStatus::Success)
        .await;
    Outcome {
        status: JobStatus::Success,
        result: Ok(crate::protocol::raw_payload(
            &json!({"result_id": stream.result_id, "result_size": stream.bytes, "summary": summary}),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a returned result was passed on as the plugin wrote it, so a
    /// pretty-printed one put line breaks into its `job.result`, and a frame on
    /// stdio is one line.
    #[test]
    fn a_pretty_printed_result_goes_out_on_one_line() {
        let pretty = "{\n  \"b\": [1,\r\n 2],\n  \"a\": \"x\"\n}\n";
        let text = result_text(pretty).unwrap();
        assert_eq!(text.get(), r#"{"a":"x","b":[1,2]}"#);
    }

    /// Regression: with the result passed on unparsed, its nesting went unchecked.
    #[test]
    fn a_result_nested_past_serde_jsons_limit_is_refused() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let why = result_text(&deep).unwrap_err();
        assert!(why.contains("recursion limit"), "{why}");
        let fine = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(result_text(&fine).unwrap().get(), fine);
    }

    #[test]
    fn plugin_codes_outside_the_taxonomy_become_internal_error() {
        let e = from_failure(Failure {
            code: "RATE_LIMITED".into(),
            message: "slow down".into(),
            retryable: false,
        });
        assert_eq!(e.code, ErrorCode::InternalError);
        assert!(e.retryable);
        assert_eq!(e.details.unwrap()["plugin_code"], "RATE_LIMITED");
    }

    #[test]
    fn a_huge_plugin_code_or_message_is_cut_before_it_reaches_the_client() {
        let e = from_failure(Failure {
            code: "X".repeat(10 << 20),
            message: "é".repeat(5 << 20),
            retryable: false,
        });
        let code = e.details.unwrap()["plugin_code"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(code.len() < MAX_PLUGIN_CODE_BYTES + 64, "{}", code.len());
        assert!(code.ends_with(&format!("[truncated from {} bytes]", 10 << 20)));
        assert!(e.message.len() <= 64 << 10, "{}", e.message.len());
    }

    #[test]
    fn budget_and_lease_failures_are_never_retryable() {
        for code in ["BUDGET_EXHAUSTED", "LEASE_EXPIRED"] {
            let e = from_failure(Failure {
                code: code.into(),
                message: "x".into(),
                retryable: true,
            });
            assert!(!e.retryable, "{code}");
        }
    }
}
