//! `ticker`: input `{"count": N, "interval_ms": D, "progress": bool}`. For i in 0..N
//! emits `log{level:"info", message:"tick <i>"}` and, if `progress`, a
//! `progress{current:i+1, total:N, units:"ticks"}`, waiting D ms between ticks (a WASI
//! sleep, no CPU burnt). Returns `{"ticks": N}`.

use arcp_agent::prelude::*;
use std::time::Duration;

#[derive(Deserialize)]
struct Input {
    count: u64,
    interval_ms: Option<u64>,
    progress: Option<bool>,
}

#[derive(Serialize)]
struct Output {
    ticks: u64,
}

fn run(_job: Job, input: Input) -> Result<Output, Failure> {
    let (count, interval_ms) = (input.count, input.interval_ms.unwrap_or(0));
    for i in 0..count {
        events::info(format!("tick {i}"));
        if input.progress.unwrap_or(false) {
            Progress::new((i + 1) as f64)
                .total(count as f64)
                .units("ticks")
                .emit();
        }
        if interval_ms > 0 && i + 1 < count {
            std::thread::sleep(Duration::from_millis(interval_ms));
        }
    }
    Ok(Output { ticks: count })
}

arcp_agent::agent!(run);
