//! `sleeper`: input `{"seconds": T}`; waits T seconds through WASI clocks (no CPU
//! burnt) and returns `{"slept": T}`. Cancellable like any job.

wit_bindgen::generate!({ path: "../../wit", world: "agent" });



struct Sleeper;

impl Guest for Sleeper {
    fn run(_job: JobInfo, input_json: String) -> Result<String, Failure> {
        let input: serde_json::Value = serde_json::from_str(&input_json).unwrap_or_default();
        let seconds = input["seconds"].as_f64().filter(|s| s.is_finite() && *s >= 0.0).ok_or(Failure {
            code: "INVALID_REQUEST".into(),
            message: "`seconds` must be a non-negative number".into(),
            retryable: false,
        })?;
        std::thread::sleep(std::time::Duration::from_secs_f64(seconds));
        Ok(serde_json::json!({ "slept": seconds }).to_string())
    }
}

export!(Sleeper);
