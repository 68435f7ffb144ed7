//! Hostile plugins: table and memory bombs, stack exhaustion, bad and oversized
//! results, a 100 MiB log line, and WASI probing for the host's secrets. Each ends
//! one job (or is refused) and the host keeps serving other sessions. Uses the
//! test-only `hostile` plugin (guests/hostile) and, for the table bomb, a component
//! written in WAT here (Rust cannot emit `table.grow`).

mod common;

use common::{Client, Host, TOKEN};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// The largest frame the host may send (ARCP over WebSocket: 1 MiB).
const MAX_FRAME: usize = 1 << 20;

/// A plugin folder with `hostile` (from tests/plugins) and the bundled `echo`.
fn folder() -> tempfile::TempDir {
    common::hostile_folder(&["echo@1.0.0.wasm"])
}

/// Submits to `agent` and returns every frame up to the job's terminal message, and
/// the size of the largest text frame received meanwhile (pings included).
async fn run_measured(c: &mut Client, agent: &str, input: Value) -> (Vec<Value>, usize) {
    c.send("job.submit", json!({"agent": agent, "input": input}))
        .await;
    let mut seen = Vec::new();
    let mut largest = 0;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), c.ws.next())
            .await
            .expect("a frame within 30 s")
            .expect("the connection stays open")
            .expect("a well-formed WebSocket message");
        let Message::Text(text) = msg else { continue };
        largest = largest.max(text.len());
        let f: Value = serde_json::from_str(text.as_str()).expect("frames are JSON");
        if f["type"] == "session.ping" {
            continue;
        }
        assert_ne!(f["type"], "session.error", "{f}");
        let done = f["type"] == "job.result" || f["type"] == "job.error";
        seen.push(f);
        if done {
            return (seen, largest);
        }
    }
}

/// Runs `hostile` with `input`; returns its terminal message, having checked that
/// no frame passed 1 MiB.
async fn run_hostile(c: &mut Client, input: Value) -> Value {
    let (mut frames, largest) = run_measured(c, "hostile", input.clone()).await;
    assert!(largest <= MAX_FRAME, "{input}: a {largest}-byte frame");
    frames.pop().unwrap()
}

/// An echo job from a fresh session completes.
async fn assert_host_still_serves(host: &Host) {
    let mut other = Client::connect(&host.url, TOKEN).await;
    let acc = other
        .submit(json!({"agent": "echo", "input": "alive"}))
        .await;
    assert_eq!(acc["type"], "job.accepted", "{acc}");
    let done = other.until_terminal().await.pop().unwrap();
    assert_eq!(done["payload"]["result"]["echoed"], "alive", "{done}");
}

fn assert_internal_error(end: &Value, needle: &str) {
    assert_eq!(end["type"], "job.error", "{end}");
    assert_eq!(end["payload"]["code"], "INTERNAL_ERROR", "{end}");
    assert_eq!(end["payload"]["final_status"], "error", "{end}");
    let msg = end["payload"]["message"].as_str().unwrap();
    assert!(msg.contains(needle), "wanted {needle:?} in {msg:?}");
}

// ---------------------------------------------------------------------------------
// Memory

/// A component whose `run` grows a funcref table by 65,536 elements at a time until
/// `table.grow` refuses (-1), then executes `unreachable`. Written in WAT because
/// neither Rust nor wit-bindgen can emit `table.grow`; its `run` has the world's
/// type (the records are exported under their WIT names).
const TABLE_BOMB: &str = r#"
(component
  (core module $m
    (memory (export "memory") 1)
    (table $t 1 funcref)
    (global $next (mut i32) (i32.const 1024))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (i32.and (i32.add (global.get $next) (i32.const 7)) (i32.const -8)))
      (global.set $next (i32.add (local.get $p) (local.get 3)))
      (if (i32.gt_u (global.get $next) (i32.const 65536)) (then unreachable))
      (local.get $p))
    (func (export "run")
      (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
      (loop $grow
        (br_if $grow
          (i32.ne (table.grow $t (ref.null func) (i32.const 65536)) (i32.const -1))))
      unreachable))
  (core instance $i (instantiate $m))
  (type $job-info' (record
    (field "job-id" string) (field "agent" string)
    (field "trace-id" (option string)) (field "parent-job-id" (option string))))
  (export $job-info "job-info" (type $job-info'))
  (type $failure' (record
    (field "code" string) (field "message" string) (field "retryable" bool)))
  (export $failure "failure" (type $failure'))
  (func $run (param "job" $job-info) (param "input-json" string)
    (result (result string (error $failure)))
    (canon lift (core func $i "run") (memory (core memory $i "memory"))
      (realloc (core func $i "realloc"))))
  (export "run" (func $run)))
"#;

#[tokio::test]
async fn a_table_bomb_ends_its_job_and_the_host_serves_on() {
    let dir = folder();
    std::fs::write(
        dir.path().join("tablebomb@1.0.0.wasm"),
        wat::parse_str(TABLE_BOMB).unwrap(),
    )
    .unwrap();
    // With the pooling allocator (the default) a table is capped by the pool's slot
    // size, so `table.grow` fails and the bomb traps on its own `unreachable`; with
    // on-demand allocation the job limiter's cap (1,000,000 elements) stops it. (A
    // machine where the pool cannot be reserved falls back to on-demand: either ends
    // the job.)
    let (_cfg_dir, on_demand) = common::config_file("[limits]\npool_instances = 0\n");
    for extra in [&[][..], &["--config", &on_demand][..]] {
        let host = Host::start(dir.path(), extra);
        let mut c = Client::connect(&host.url, TOKEN).await;
        let (frames, largest) = run_measured(&mut c, "tablebomb", json!(null)).await;
        assert!(largest <= MAX_FRAME);
        let end = frames.last().unwrap();
        assert_eq!(end["type"], "job.error", "{extra:?}: {end}");
        assert_eq!(end["payload"]["code"], "INTERNAL_ERROR", "{end}");
        let msg = end["payload"]["message"].as_str().unwrap();
        if extra.is_empty() {
            assert!(
                msg.contains("unreachable") || msg.contains("table limit"),
                "{msg}"
            );
        } else {
            assert!(
                msg.contains("job table limit of 1000000 elements exceeded"),
                "{msg}"
            );
        }
        assert_host_still_serves(&host).await;
    }
}

#[tokio::test]
async fn memory_growth_past_the_configured_job_ceiling_ends_the_job() {
    let dir = folder();
    let (_cfg_dir, cfg) = common::config_file("[limits]\njob_memory_mib = 32\n");
    let host = Host::start(dir.path(), &["--config", &cfg]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let ok = run_hostile(&mut c, json!({"mode": "alloc", "mib": 8})).await;
    assert_eq!(ok["payload"]["result"]["allocated"], 8, "{ok}");
    let end = run_hostile(&mut c, json!({"mode": "alloc", "mib": 100})).await;
    assert_internal_error(&end, "job memory limit of 32 MiB exceeded");
    assert_host_still_serves(&host).await;
    // The same session runs the next job in a fresh store with its full ceiling.
    let ok = run_hostile(&mut c, json!({"mode": "alloc", "mib": 8})).await;
    assert_eq!(ok["payload"]["result"]["allocated"], 8, "{ok}");
}

#[tokio::test]
async fn many_small_allocations_end_at_the_job_ceiling() {
    let dir = folder();
    let (_cfg_dir, cfg) = common::config_file("[limits]\njob_memory_mib = 32\n");
    let host = Host::start(dir.path(), &["--config", &cfg]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    // 4 KiB boxes until the allocator gives up: the limiter traps the memory.grow
    // that would pass 32 MiB, naming the limit.
    let end = run_hostile(&mut c, json!({"mode": "small-allocs", "bytes": 4096})).await;
    assert_internal_error(&end, "job memory limit of 32 MiB exceeded");
    assert_host_still_serves(&host).await;
}

#[tokio::test]
async fn one_huge_allocation_fails_in_the_guest_or_ends_the_job() {
    let dir = folder();
    let host = Host::start(dir.path(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    // 4 GiB is more than wasm32 can address: the guest's allocator refuses it without
    // asking the host, and the plugin carries on.
    let end = run_hostile(&mut c, json!({"mode": "huge-alloc", "bytes": 4u64 << 30})).await;
    assert_eq!(end["type"], "job.result", "{end}");
    assert_eq!(end["payload"]["result"]["reserved"], false, "{end}");
    assert_host_still_serves(&host).await;
    // 1 GiB is addressable but over the default 256 MiB ceiling: the memory.grow
    // traps and the job ends naming the limit.
    let end = run_hostile(&mut c, json!({"mode": "huge-alloc", "bytes": 1u64 << 30})).await;
    assert_internal_error(&end, "job memory limit of 256 MiB exceeded");
    assert_host_still_serves(&host).await;
}

// ---------------------------------------------------------------------------------
// Stack

#[tokio::test]
async fn wide_frames_using_half_the_wasm_stack_work_and_four_times_that_traps() {
    let dir = folder();
    let host = Host::start(dir.path(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    // Each `wide-frames` frame keeps 32 u64s live across its call; wasmtime's default
    // 512 KiB wasm stack runs out between 4,000 and 5,000 of them, so 2,000 use
    // somewhat under half of it.
    let end = run_hostile(&mut c, json!({"mode": "wide-frames", "depth": 2000})).await;
    assert_eq!(end["type"], "job.result", "{end}");
    assert_eq!(end["payload"]["result"]["depth"], 2000, "{end}");
    let end = run_hostile(&mut c, json!({"mode": "wide-frames", "depth": 8000})).await;
    assert_internal_error(&end, "call stack exhausted");
    assert_host_still_serves(&host).await;
    // The trap left nothing behind: the same depth works again right after.
    let end = run_hostile(&mut c, json!({"mode": "wide-frames", "depth": 2000})).await;
    assert_eq!(end["payload"]["result"]["depth"], 2000, "{end}");
}

// ---------------------------------------------------------------------------------
// Results

#[tokio::test]
async fn invalid_utf8_in_a_utf8_result_chunk_is_refused_with_invalid_request() {
    let dir = folder();
    let host = Host::start(dir.path(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let (frames, _) = run_measured(&mut c, "hostile", json!({"mode": "bad-utf8-chunk"})).await;
    let end = frames.last().unwrap();
    // The write fails (the plugin sees why) and opens no stream: no chunk was sent,
    // and the plugin's own JSON is the inline result.
    assert_eq!(end["type"], "job.result", "{end}");
    let write = &end["payload"]["result"]["write"];
    assert_eq!(write["code"], "INVALID_REQUEST", "{end}");
    assert!(
        write["message"].as_str().unwrap().contains("UTF-8"),
        "{write}"
    );
    assert!(
        !frames
            .iter()
            .any(|f| f["payload"]["kind"] == "result_chunk"),
        "no chunk of the refused write may be sent"
    );
    assert_host_still_serves(&host).await;
}

#[tokio::test]
// Regression: an inline result over the cap used to be streamed by the host anyway.
async fn an_inline_result_far_over_the_result_cap_is_refused() {
    let dir = folder();
    let (_cfg_dir, cfg) = common::config_file("[limits]\nmax_result_mib = 1\n");
    let host = Host::start(dir.path(), &["--config", &cfg]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let (frames, largest) =
        run_measured(&mut c, "hostile", json!({"mode": "big-result", "mib": 8})).await;
    assert!(largest <= MAX_FRAME, "a {largest}-byte frame");
    let end = frames.last().unwrap();
    assert_internal_error(end, "1 MiB");
    assert_host_still_serves(&host).await;
}

// ---------------------------------------------------------------------------------
// Floods

#[tokio::test]
async fn a_100_mib_log_line_is_cut_and_no_frame_passes_one_mebibyte() {
    let dir = folder();
    let host = Host::start(dir.path(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let (frames, largest) =
        run_measured(&mut c, "hostile", json!({"mode": "huge-log", "mib": 100})).await;
    assert!(largest <= MAX_FRAME, "a {largest}-byte frame");
    let end = frames.last().unwrap();
    assert_eq!(end["type"], "job.result", "{end}");
    assert_eq!(end["payload"]["result"]["logged"], 100 << 20, "{end}");
    // The host cut the message to 64 KiB and said how long it was.
    let log = frames
        .iter()
        .find(|f| f["payload"]["kind"] == "log")
        .expect("the log event");
    let msg = log["payload"]["body"]["message"].as_str().unwrap();
    assert!(msg.len() <= (64 << 10) + 64, "{} bytes", msg.len());
    assert!(
        msg.ends_with("[truncated from 104857600 bytes]"),
        "{}",
        &msg[msg.len() - 64..]
    );
    assert_host_still_serves(&host).await;
}

// ---------------------------------------------------------------------------------
// WASI

#[tokio::test]
async fn wasi_reveals_nothing_of_the_host() {
    let dir = folder();
    let data = tempfile::tempdir().unwrap();
    let host = Host::start_with_env(dir.path(), data, &[], &[("ARCP_SECRET", "hunter2")]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    let end = run_hostile(&mut c, json!({"mode": "wasi-reveal"})).await;
    assert_eq!(end["type"], "job.result", "{end}");
    let r = &end["payload"]["result"];
    let text = r.to_string();
    // No environment (the host's ARCP_SECRET least of all), no arguments.
    assert_eq!(r["env"], json!([]), "{r}");
    assert_eq!(r["args"], json!([]), "{r}");
    assert!(
        !text.contains("hunter2") && !text.contains("ARCP_SECRET"),
        "{text}"
    );
    // No preopened folder, no sockets; the working folder is wasi-libc's default
    // `/`, which is no folder of the host's.
    assert!(
        r["cwd"]["error"].is_string() || r["cwd"]["ok"] == "\"/\"",
        "{r}"
    );
    for probe in [
        "read_dir_root",
        "read_dir_dot",
        "read_passwd",
        "tcp_connect",
    ] {
        assert!(r[probe]["error"].is_string(), "{probe} must fail: {r}");
    }
    assert!(!text.contains("root:"), "{text}");
    assert!(!text.contains(env!("CARGO_MANIFEST_DIR")), "{text}");
    // Clocks and randomness work.
    let wall = r["wall_secs"]["ok"]
        .as_str()
        .unwrap()
        .parse::<i64>()
        .unwrap();
    assert!(
        (wall - chrono::Utc::now().timestamp()).abs() < 3600,
        "{wall}"
    );
    assert!(r["monotonic_elapsed_us"].as_u64().unwrap() >= 2000, "{r}");
    let random = r["random"].as_array().unwrap();
    assert_eq!(random.len(), 16, "{r}");
    assert!(random.iter().any(|b| b != &json!(0)), "{r}");
    assert_host_still_serves(&host).await;
}

// ---------------------------------------------------------------------------------
// CPU inside a call's callback path

/// The table bomb's component with a `realloc` that never returns: the host calls
/// it to place `run`'s string arguments in guest memory, so the guest spins inside
/// the call path before `run` itself starts.
fn spinning_realloc() -> String {
    let endless = r#"(func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (loop $spin (br $spin))
      unreachable)"#;
    let start = TABLE_BOMB.find(r#"(func (export "realloc")"#).unwrap();
    let end =
        start + TABLE_BOMB[start..].find("(local.get $p))").unwrap() + "(local.get $p))".len();
    format!("{}{endless}{}", &TABLE_BOMB[..start], &TABLE_BOMB[end..])
}

#[tokio::test]
async fn a_guest_spinning_inside_the_hosts_call_into_it_is_cancelled_and_timed_out() {
    let dir = folder();
    std::fs::write(
        dir.path().join("spinalloc@1.0.0.wasm"),
        wat::parse_str(spinning_realloc()).unwrap(),
    )
    .unwrap();
    let host = Host::start(dir.path(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    // Cancelled: ends promptly.
    let acc = c.submit(json!({"agent": "spinalloc", "input": "x"})).await;
    let job_id = acc["job_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked = std::time::Instant::now();
    c.send_env("job.cancel", json!({}), Some(&job_id)).await;
    let end = tokio::time::timeout(Duration::from_secs(5), c.until_terminal())
        .await
        .expect("the spinning job ends within 5 s of its cancel")
        .pop()
        .unwrap();
    assert_eq!(end["payload"]["final_status"], "cancelled", "{end}");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    // Past max_runtime_sec: timed out.
    let acc = c
        .submit(json!({"agent": "spinalloc", "input": "x", "max_runtime_sec": 1}))
        .await;
    assert_eq!(acc["type"], "job.accepted", "{acc}");
    let end = tokio::time::timeout(Duration::from_secs(10), c.until_terminal())
        .await
        .expect("the spinning job times out")
        .pop()
        .unwrap();
    assert_eq!(end["payload"]["final_status"], "timed_out", "{end}");
    assert_host_still_serves(&host).await;
}
