//! `sleeper`: input `{"seconds": T}`; waits T seconds through WASI clocks (no CPU
//! burnt) and returns `{"slept": T}`. Cancellable like any job.

use arcp_agent::prelude::*;
use std::time::Duration;

#[derive(Deserialize)]
struct Input {
    seconds: f64,
}

fn run(_job: Job, Input { seconds }: Input) -> Result<Value, Failure> {
    if seconds < 0.0 {
        return Err(Failure::invalid_request(
            "`seconds` must be a non-negative number",
        ));
    }
    // try_from: a value too large for a Duration is bad input, not a panic.
    let duration = Duration::try_from_secs_f64(seconds)
        .map_err(|_| Failure::invalid_request("`seconds` is too large"))?;
    std::thread::sleep(duration);
    Ok(json!({ "slept": seconds }))
}

arcp_agent::agent!(run);
