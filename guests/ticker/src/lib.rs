//! `ticker`: input `{"count": N, "interval_ms": D, "progress": bool}`. For i in 0..N
//! emits `log{level:"info", message:"tick <i>"}` and, if `progress`, a
//! `progress{current:i+1, total:N, units:"ticks"}`, waiting D ms between ticks (a WASI
//! sleep, no CPU burnt). Returns `{"ticks": N}`.

wit_bindgen::generate!({ path: "../../wit", world: "agent" });

use arcp::agent::events;

use serde_json::Value;

struct Ticker;

fn invalid(message: String) -> Failure {
    Failure { code: "INVALID_REQUEST".into(), message, retryable: false }
}

impl Guest for Ticker {
    fn run(_job: JobInfo, input_json: String) -> Result<String, Failure> {
        let input: Value = serde_json::from_str(&input_json).map_err(|e| invalid(format!("input is not JSON: {e}")))?;
        let count = input["count"]
            .as_u64()
            .ok_or_else(|| invalid("`count` must be a non-negative integer".into()))?;
        let interval_ms = match &input["interval_ms"] {
            Value::Null => 0,
            v => v.as_u64().ok_or_else(|| invalid("`interval_ms` must be a non-negative integer".into()))?,
        };
        let progress = match &input["progress"] {
            Value::Null => false,
            v => v.as_bool().ok_or_else(|| invalid("`progress` must be a boolean".into()))?,
        };
        for i in 0..count {
            events::log("info", &format!("tick {i}"));
            if progress {
                events::progress((i + 1) as f64, Some(count as f64), Some("ticks"), None);
            }
            if interval_ms > 0 && i + 1 < count {
                std::thread::sleep(std::time::Duration::from_millis(interval_ms));
            }
        }
        Ok(serde_json::json!({ "ticks": count }).to_string())
    }
}

export!(Ticker);
