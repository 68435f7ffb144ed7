//! `sleeper`: input `{"seconds": T}`; waits T seconds through WASI clocks (no CPU
//! burnt) and returns `{"slept": T}`. Cancellable like any job.

wit_bindgen::generate!({ path: "../../wit", world: "agent" });

struct Sleeper;

fn invalid(message: String) -> Failure {
    Failure { code: "INVALID_REQUEST".into(), message, retryable: false }
}

impl Guest for Sleeper {
    fn run(_job: JobInfo, input_json: String) -> Result<String, Failure> {
        let input: serde_json::Value =
            serde_json::from_str(&input_json).map_err(|e| invalid(format!("input is not JSON: {e}")))?;
        let seconds = input["seconds"]
            .as_f64()
            .filter(|s| *s >= 0.0)
            .ok_or_else(|| invalid("`seconds` must be a non-negative number".into()))?;
        // try_from: a value too large for a Duration is bad input, not a panic.
        let duration = std::time::Duration::try_from_secs_f64(seconds)
            .map_err(|_| invalid("`seconds` is too large".into()))?;
        std::thread::sleep(duration);
        Ok(serde_json::json!({ "slept": seconds }).to_string())
    }
}

export!(Sleeper);
