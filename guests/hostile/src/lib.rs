//! `hostile`: a test plugin (never bundled) that misbehaves on request, to prove the
//! sandbox holds. Input `{"mode": M, ...}`:
//! - `unreachable`: executes `unreachable`;
//! - `oob`: reads far outside its linear memory;
//! - `overflow`: recurses without end;
//! - `recurse` with `depth`: recurses `depth` frames and returns the depth;
//! - `alloc` with `mib`: allocates and touches `mib` MiB, returns `{"allocated": mib}`;
//! - `bad-json`: returns text that is not JSON;
//! - `flood` with `count`: emits `count` log events as fast as it can;
//! - `compute` with `rounds`: a CPU-bound loop (xorshift) of `rounds` steps, returns
//!   `{"x": <final state>}` (a benchmark load);
//! - `late-call` with `seconds`: sleeps, then calls the `meter` tool and swallows
//!   any failure, returning `{"swallowed": bool}`;
//! - `ok`: returns `{"ok": true}`.

wit_bindgen::generate!({ path: "../../wit", world: "agent" });

use arcp::agent::events;
use serde_json::Value;

struct Hostile;

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == 0 {
        return 0;
    }
    // black_box stops the compiler from turning this into a loop.
    1 + std::hint::black_box(recurse(std::hint::black_box(depth - 1)))
}

fn fail(message: &str) -> Failure {
    Failure { code: "INVALID_REQUEST".into(), message: message.into(), retryable: false }
}

impl Guest for Hostile {
    fn run(_job: JobInfo, input_json: String) -> Result<String, Failure> {
        let input: Value = serde_json::from_str(&input_json).map_err(|_| fail("input is not JSON"))?;
        match input["mode"].as_str().unwrap_or("") {
            "unreachable" => core::arch::wasm32::unreachable(),
            "oob" => {
                // SAFETY: deliberately invalid; the sandbox must trap it.
                let v = unsafe { core::ptr::read_volatile((u32::MAX - 16) as usize as *const u64) };
                Ok(v.to_string())
            }
            "overflow" => Ok(recurse(u64::MAX).to_string()),
            "recurse" => Ok(serde_json::json!({ "depth": recurse(input["depth"].as_u64().unwrap_or(0)) }).to_string()),
            "alloc" => {
                let mib = input["mib"].as_u64().unwrap_or(1) as usize;
                let mut v = vec![0u8; mib << 20];
                for i in (0..v.len()).step_by(4096) {
                    v[i] = 1;
                }
                Ok(serde_json::json!({ "allocated": mib, "touched": std::hint::black_box(v).len() }).to_string())
            }
            "bad-json" => Ok("{this is not json".into()),
            "flood" => {
                for i in 0..input["count"].as_u64().unwrap_or(0) {
                    events::log("debug", &format!("flood {i}"));
                }
                Ok("{\"flooded\":true}".into())
            }
            "compute" => {
                let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
                for _ in 0..input["rounds"].as_u64().unwrap_or(0) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                }
                Ok(serde_json::json!({ "x": x }).to_string())
            }
            "late-call" => {
                std::thread::sleep(std::time::Duration::from_secs_f64(input["seconds"].as_f64().unwrap_or(0.0)));
                let swallowed = arcp::agent::capabilities::call_tool("meter", "{}").is_err();
                Ok(serde_json::json!({ "swallowed": swallowed }).to_string())
            }
            "ok" => Ok("{\"ok\":true}".into()),
            other => Err(fail(&format!("unknown mode {other:?}"))),
        }
    }
}

export!(Hostile);
