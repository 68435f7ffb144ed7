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
//! - `ok`: returns `{"ok": true}`;
//! - `small-allocs` with `bytes`: keeps allocating `bytes`-sized boxes (touched) until
//!   the allocator gives up; returns `{"boxes": n}` if it ever stops without trapping;
//! - `huge-alloc` with `bytes`: one `try_reserve_exact` of `bytes` (4 GiB and more,
//!   past wasm32's `usize`, ask for `usize::MAX`); returns `{"reserved": bool, "error"?: text}`;
//! - `wide-frames` with `depth`: recurses `depth` frames that each keep 32 `u64`s
//!   live across the call, held on the wasm stack (not the shadow stack in linear
//!   memory): about 115 bytes a frame once compiled, so wasmtime's default 512 KiB
//!   stack runs out between 4,000 and 5,000 frames; returns `{"depth", "sum"}`;
//! - `bad-utf8-chunk`: writes bytes that are not UTF-8 as a `utf8` result chunk and
//!   returns how the write ended, `{"write": "ok"}` or `{"write": {code, message}}`;
//! - `big-result` with `mib`: returns a JSON string of about `mib` MiB;
//! - `huge-log` with `mib`: one `log` event whose message is `mib` MiB long;
//! - `wasi-reveal`: returns what WASI shows: environment, arguments, current folder,
//!   `read_dir("/")`, a read of `/etc/passwd`, a TCP connect, the wall and monotonic
//!   clocks and 16 random bytes.

wit_bindgen::generate!({ path: "../../wit", world: "agent" });

use arcp::agent::{events, result_stream};

mod wasi_random {
    // The one WASI function Rust's std does not expose: random bytes.
    wit_bindgen::generate!({
        inline: "package wasi:random@0.2.0;
                 interface random {
                     get-random-bytes: func(len: u64) -> list<u8>;
                     get-random-u64: func() -> u64;
                 }
                 world rand { import random; }",
        world: "rand",
    });
    pub use self::wasi::random::random::get_random_bytes;
}
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

/// Recursion whose frames keep 32 values live across the call, so each frame spills
/// some of them to the wasm stack.
#[inline(never)]
fn wide_frames(depth: u64, seed: u64) -> u64 {
    if depth == 0 {
        return seed;
    }
    // Plain arithmetic (no `black_box`, which would put the values in linear memory):
    // the values stay wasm locals, which the compiled code spills to the wasm stack.
    let v: [u64; 32] = core::array::from_fn(|i| (seed ^ depth).wrapping_mul(2 * i as u64 + 3).rotate_left(i as u32));
    let r = wide_frames(depth - 1, seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ depth);
    v.iter().fold(r, |acc, x| acc.rotate_left(5) ^ *x)
}

fn show_err<T: std::fmt::Debug, E: std::fmt::Display>(r: Result<T, E>) -> Value {
    match r {
        Ok(v) => serde_json::json!({ "ok": format!("{v:?}") }),
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    }
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
            "small-allocs" => {
                let size = input["bytes"].as_u64().unwrap_or(1024).max(1) as usize;
                let mut boxes: Vec<Box<[u8]>> = Vec::new();
                loop {
                    let mut v = Vec::new();
                    if v.try_reserve_exact(size).is_err() || boxes.try_reserve(1).is_err() {
                        break;
                    }
                    v.resize(size, 1u8);
                    boxes.push(std::hint::black_box(v.into_boxed_slice()));
                }
                Ok(serde_json::json!({ "boxes": boxes.len() }).to_string())
            }
            "huge-alloc" => {
                let bytes = input["bytes"].as_u64().unwrap_or(4 << 30);
                let mut v: Vec<u8> = Vec::new();
                // 4 GiB does not fit wasm32's usize: ask for the most it can say.
                let n = usize::try_from(bytes).unwrap_or(usize::MAX);
                let out = match v.try_reserve_exact(n) {
                    Ok(()) => serde_json::json!({ "reserved": true, "capacity": std::hint::black_box(v).capacity() }),
                    Err(e) => serde_json::json!({ "reserved": false, "error": e.to_string() }),
                };
                Ok(out.to_string())
            }
            "wide-frames" => {
                let depth = input["depth"].as_u64().unwrap_or(0);
                let sum = wide_frames(depth, 0x1234_5678);
                Ok(serde_json::json!({ "depth": depth, "sum": sum.to_string() }).to_string())
            }
            "bad-utf8-chunk" => {
                let write = match result_stream::write(&[0x66, 0x6f, 0xff, 0xfe, 0xc3, 0x28], result_stream::Encoding::Utf8) {
                    Ok(()) => Value::from("ok"),
                    Err(f) => serde_json::json!({ "code": f.code, "message": f.message }),
                };
                Ok(serde_json::json!({ "write": write }).to_string())
            }
            "big-result" => {
                let n = (input["mib"].as_u64().unwrap_or(1) as usize) << 20;
                let mut s = String::with_capacity(n + 2);
                s.push('"');
                s.extend(std::iter::repeat_n('a', n));
                s.push('"');
                Ok(s)
            }
            "huge-log" => {
                let n = (input["mib"].as_u64().unwrap_or(1) as usize) << 20;
                events::log("info", &"x".repeat(n));
                Ok(serde_json::json!({ "logged": n }).to_string())
            }
            "wasi-reveal" => {
                let env: Vec<(String, String)> = std::env::vars_os()
                    .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
                    .collect();
                let args: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
                let root = std::fs::read_dir("/").map(|d| d.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect::<Vec<_>>());
                let dot = std::fs::read_dir(".").map(|d| d.count());
                let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs());
                let t0 = std::time::Instant::now();
                std::thread::sleep(std::time::Duration::from_millis(2));
                let elapsed_us = t0.elapsed().as_micros() as u64;
                let random = wasi_random::get_random_bytes(16);
                Ok(serde_json::json!({
                    "env": env,
                    "args": args,
                    "cwd": show_err(std::env::current_dir()),
                    "read_dir_root": show_err(root),
                    "read_dir_dot": show_err(dot),
                    "read_passwd": show_err(std::fs::read_to_string("/etc/passwd")),
                    "tcp_connect": show_err(std::net::TcpStream::connect("127.0.0.1:7777")),
                    "wall_secs": show_err(wall.map_err(|e| e.to_string())),
                    "monotonic_elapsed_us": elapsed_us,
                    "random": random,
                })
                .to_string())
            }
            other => Err(fail(&format!("unknown mode {other:?}"))),
        }
    }
}

export!(Hostile);
