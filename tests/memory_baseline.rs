//! The host's memory returns to where it was (issue 6). After a warm-up round has
//! filled what is meant to stay (compiled code, the instance pool's touched slots,
//! allocator arenas, SQLite's page cache), further rounds of the same hostile work
//! must not grow the host's resident memory: memory hogs at and past the job
//! ceiling, every kind of trap, an event flood, a huge log line, spinners cancelled
//! mid-run, bursts of echo jobs over many sessions, and a client that vanishes
//! mid-job. A leak of even 1 KiB per job would show over the ~500 jobs of a round.

mod common;

use common::{Client, Host, TOKEN};
use serde_json::{Value, json};
use std::time::Duration;

/// Anonymous resident memory of `pid` (heap, stacks, guest memories), in bytes:
/// `RssAnon`. File-backed pages (the binary's code, compiled plugins mapped from
/// the cache) are left out: they are the kernel's to drop and grow as more code
/// paths run, which is not memory the host holds on to.
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

fn folder() -> tempfile::TempDir {
    common::hostile_folder(&["echo@1.0.0.wasm", "spinner@1.0.0.wasm"])
}

async fn run(c: &mut Client, agent: &str, input: Value) -> Value {
    let acc = c.submit(json!({"agent": agent, "input": input})).await;
    assert_eq!(acc["type"], "job.accepted", "{acc}");
    c.until_terminal().await.pop().unwrap()
}

/// One round of hostile and ordinary work; every job must end as expected.
async fn round(url: &str) {
    let mut c = Client::connect(url, TOKEN).await;
    // Memory: up to the 256 MiB ceiling, and past it.
    for _ in 0..3 {
        let end = run(&mut c, "hostile", json!({"mode": "alloc", "mib": 200})).await;
        assert_eq!(end["type"], "job.result", "{end}");
    }
    let end = run(&mut c, "hostile", json!({"mode": "alloc", "mib": 400})).await;
    assert_eq!(end["payload"]["code"], "INTERNAL_ERROR", "{end}");
    // Traps.
    for mode in ["unreachable", "oob", "overflow", "bad-json"] {
        let end = run(&mut c, "hostile", json!({"mode": mode})).await;
        assert_eq!(end["type"], "job.error", "{mode}: {end}");
    }
    // A flood of events and a huge log line.
    let end = run(&mut c, "hostile", json!({"mode": "flood", "count": 20000})).await;
    assert_eq!(end["type"], "job.result", "{end}");
    let end = run(&mut c, "hostile", json!({"mode": "huge-log", "mib": 16})).await;
    assert_eq!(end["type"], "job.result", "{end}");
    // Spinners cancelled mid-run.
    let mut spinning = Vec::new();
    for _ in 0..20 {
        let acc = c.submit(json!({"agent": "spinner", "input": {}})).await;
        spinning.push(acc["job_id"].as_str().unwrap().to_owned());
    }
    for id in &spinning {
        c.send_env("job.cancel", json!({}), Some(id)).await;
    }
    let mut ended = 0;
    while ended < spinning.len() {
        let f = c.next().await;
        if f["type"] == "job.error" || f["type"] == "job.result" {
            ended += 1;
        }
    }
    // Echo bursts over many sessions at once.
    let bursts = (0..10).map(|_| async {
        let mut s = Client::connect(url, TOKEN).await;
        for i in 0..40 {
            let end = run(&mut s, "echo", json!(i)).await;
            assert_eq!(end["payload"]["result"]["echoed"], i);
        }
    });
    futures_util::future::join_all(bursts).await;
    // A client that goes away mid-job (its session is left to be resumed).
    let mut gone = Client::connect(url, TOKEN).await;
    gone.submit(json!({"agent": "hostile", "input": {"mode": "flood", "count": 5000}}))
        .await;
    drop(gone);
}

#[tokio::test]
async fn the_hosts_memory_does_not_grow_from_one_round_of_hostile_work_to_the_next() {
    let dir = folder();
    // Finished jobs and detached sessions are kept by design (for `[retention]
    // jobs_sec` and `resume_window_sec`); kept briefly here, so that what stays is
    // what the host fails to give back.
    let (_cfg_dir, cfg) = common::config_file(
        "resume_window_sec = 1\n[retention]\njobs_sec = 1\nsweep_interval_sec = 1\n",
    );
    let host = Host::start(dir.path(), &["--config", &cfg]);
    let pid = host.child.id();
    let settle = || tokio::time::sleep(Duration::from_millis(1500));
    let idle = resident_bytes(pid);
    // Warm-up: pools, caches and the allocator's arenas fill over the first rounds
    // (measured: idle 15 MiB, 22 MiB after three rounds).
    for _ in 0..3 {
        round(&host.url).await;
    }
    settle().await;
    let warm = resident_bytes(pid);
    // Measured after that: about +0.5 MiB a round (before the host set glibc's
    // mmap threshold, a 16 MiB log line could keep 16 MiB resident for good, and
    // this grew by 16 MiB in random rounds).
    let mut after = Vec::new();
    for _ in 0..3 {
        round(&host.url).await;
        settle().await;
        after.push(resident_bytes(pid));
    }
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let report = format!(
        "anonymous resident memory: idle {:.1} MiB, after three warm-up rounds {:.1} MiB, after each further round {:?} MiB",
        mib(idle),
        mib(warm),
        after
            .iter()
            .map(|b| (mib(*b) * 10.0).round() / 10.0)
            .collect::<Vec<_>>()
    );
    eprintln!("{report}");
    let last = *after.last().unwrap();
    // Three more rounds (about 1,500 jobs, 2 GiB of guest memory touched) may not
    // add more than 8 MiB: allocator noise, not a leak per job (1 KiB a job would
    // be 1.5 MiB a round).
    assert!(last <= warm + (8 << 20), "{report}");
    // And the guest memory and the large buffers are given back: nowhere near the
    // 600 MiB the hogs of one round touched, or its 16 MiB log line, stays resident.
    assert!(last <= idle + (32 << 20), "{report}");
}
