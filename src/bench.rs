//! Benchmarks behind `arcp-host bench`: what it costs to load, instantiate and run a
//! plugin, and what a client sees over loopback WebSocket.
//!
//! A load generator and measurement code only; it drives the runtime through its
//! public API or over the wire, as a client would, and changes nothing in it.

use crate::client::Client;
use crate::runtime::Runtime;
use crate::sandbox::{Flavor, JobSink, Sandbox};
use serde_json::{Value, json};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Latency percentiles of a sample.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    /// Samples taken.
    pub n: usize,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest sample.
    pub max: Duration,
}

impl Percentiles {
    /// Percentiles of `samples` (which it sorts).
    pub fn of(samples: &mut [Duration]) -> Percentiles {
        samples.sort();
        let at = |q: f64| {
            samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1]
        };
        Percentiles {
            n: samples.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: samples[samples.len() - 1],
        }
    }
}

impl std::fmt::Display for Percentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        write!(
            f,
            "n={} p50={:.3} ms p99={:.3} ms max={:.3} ms",
            self.n,
            ms(self.p50),
            ms(self.p99),
            ms(self.max)
        )
    }
}

struct Discard;

impl JobSink for Discard {
    fn emit(&self, _kind: &str, _body: Value) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async {})
    }
}

/// Cold compile vs cached load vs per-job instantiation, for every plugin in `dir`.
pub async fn plugins(
    sandbox: Arc<Sandbox>,
    dir: &Path,
    instantiations: usize,
) -> anyhow::Result<()> {
    let cache = tempfile_dir()?;
    println!(
        "{:<24} {:>12} {:>12} {:>14} {:>14}",
        "plugin", "compile ms", "cached ms", "inst p50 µs", "inst p99 µs"
    );
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .collect();
    files.sort();
    for path in files {
        let bytes = std::fs::read(&path)?;
        let t = Instant::now();
        let (component, cached) = sandbox.load_component(&bytes, Some(&cache), Flavor::Plain)?;
        let compile = t.elapsed();
        anyhow::ensure!(!cached, "the first load must compile");
        let t = Instant::now();
        let (_, cached) = sandbox.load_component(&bytes, Some(&cache), Flavor::Plain)?;
        let cached_load = t.elapsed();
        anyhow::ensure!(cached, "the second load must come from the cache");
        let agent = sandbox.prepare(&component, Flavor::Plain)?;
        let mut samples = Vec::with_capacity(instantiations);
        for _ in 0..instantiations {
            samples.push(sandbox.instantiate_only(&agent, Arc::new(Discard)).await?);
        }
        let p = Percentiles::of(&mut samples);
        println!(
            "{:<24} {:>12.1} {:>12.2} {:>14.1} {:>14.1}",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default(),
            compile.as_secs_f64() * 1e3,
            cached_load.as_secs_f64() * 1e3,
            p.p50.as_secs_f64() * 1e6,
            p.p99.as_secs_f64() * 1e6
        );
    }
    let _ = std::fs::remove_dir_all(&cache);
    Ok(())
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("arcp-bench-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The job id of a `job.accepted` envelope.
fn job_id(accepted: &Value) -> String {
    accepted["payload"]["job_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Sequential echo round trips: submit → terminal, one at a time.
pub async fn round_trips(url: &str, token: &str, n: usize) -> anyhow::Result<Percentiles> {
    let mut c = Client::connect(url, token, None).await?;
    for _ in 0..n.min(50) {
        c.submit(json!({"agent": "echo", "input": {"warm": true}}))
            .await?;
        c.terminal().await?;
    }
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        c.submit(json!({"agent": "echo", "input": {"i": i}}))
            .await?;
        let done = c.terminal().await?;
        samples.push(t.elapsed());
        anyhow::ensure!(done["type"] == "job.result", "echo failed: {done}");
    }
    Ok(Percentiles::of(&mut samples))
}

/// Spinner cancel latency: from sending `job.cancel` to the terminal message.
pub async fn cancel_latency(url: &str, token: &str, n: usize) -> anyhow::Result<Percentiles> {
    let mut c = Client::connect(url, token, None).await?;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let job = job_id(
            &c.submit(json!({"agent": "spinner", "max_runtime_sec": 60}))
                .await?,
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t = Instant::now();
        c.cancel(&job).await?;
        let done = c.terminal().await?;
        samples.push(t.elapsed());
        anyhow::ensure!(
            done["payload"]["final_status"] == "cancelled",
            "spinner not cancelled: {done}"
        );
    }
    Ok(Percentiles::of(&mut samples))
}

/// What [`noisy_neighbours`] measured.
pub struct NeighbourReport {
    /// Echo round trips with nothing else running.
    pub idle: Percentiles,
    /// Echo round trips while `spinners` CPU-bound jobs run.
    pub loaded: Percentiles,
    /// Resident memory (bytes) before the spinners, while they run, and once they
    /// are cancelled and gone.
    pub resident: [u64; 3],
}

/// Echo latency with `spinners` CPU-bound jobs running beside it (the epoch ticker
/// and the tokio scheduler must keep echo jobs served), and whether this process's
/// memory returns to where it was once they end. For an in-process runtime.
pub async fn noisy_neighbours(
    url: &str,
    token: &str,
    spinners: usize,
    n: usize,
) -> anyhow::Result<NeighbourReport> {
    let before = crate::metrics::resident_bytes();
    let idle = round_trips(url, token, n).await?;
    let mut spinning = Client::connect(url, token, None).await?;
    let mut jobs = Vec::with_capacity(spinners);
    for _ in 0..spinners {
        jobs.push(job_id(
            &spinning
                .submit(json!({"agent": "spinner", "max_runtime_sec": 600}))
                .await?,
        ));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let loaded = round_trips(url, token, n).await?;
    let during = crate::metrics::resident_bytes();
    for job in &jobs {
        spinning.cancel(job).await?;
    }
    for _ in 0..spinners {
        spinning.terminal().await?;
    }
    drop(spinning);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = crate::metrics::resident_bytes();
    Ok(NeighbourReport {
        idle,
        loaded,
        resident: [before, during, after],
    })
}

/// Starts a runtime on a loopback port in this process; returns its URL.
pub async fn serve_in_process(runtime: Arc<Runtime>) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}/arcp", listener.local_addr()?);
    let settings = crate::transport::websocket::WsSettings {
        max_inbound_frame: runtime.config.limits.max_inbound_frame_kib * 1024,
        outbound_queue: runtime.config.limits.outbound_queue,
        metrics: None,
    };
    tokio::spawn(crate::transport::websocket::serve(
        listener,
        settings,
        move |conn| {
            tokio::spawn(crate::session::serve(runtime.clone(), conn));
        },
    ));
    Ok(url)
}

/// Collects nothing; counts events (a host call each).
struct Counter(std::sync::atomic::AtomicU64);

impl JobSink for Counter {
    fn emit(&self, _kind: &str, _body: Value) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Box::pin(async {})
    }
}

/// The costs the sandbox adds: one lease check, one host call, and fuel metering's
/// overhead on a CPU-bound guest against the same guest under epochs only. `probe`
/// is a component with the `hostile` test plugin's `compute` and `flood` modes.
pub async fn sandbox_costs(sandbox: Arc<Sandbox>, probe: &Path) -> anyhow::Result<()> {
    use crate::lease::{Lease, LeaseMatcher, normalise_path};
    use crate::sandbox::{Authority, Flavor, JobInfo, JobSpec, RunOutcome};

    // One lease check: normalise a path and match it against a few globs.
    let lease = Lease::from_request(
        json!({"fs.read": ["/docs/**", "/data/*.csv", "/home/*/notes/**"]}).as_object(),
    )?;
    let matcher = LeaseMatcher::new(&lease)?;
    let n = 200_000u32;
    let t = Instant::now();
    let mut granted = 0u32;
    for i in 0..n {
        let path = if i % 2 == 0 {
            "docs/a/../b/c.md"
        } else {
            "/etc/passwd"
        };
        if normalise_path(path).is_ok_and(|p| matcher.allows("fs.read", &p)) {
            granted += 1;
        }
    }
    let per_check = t.elapsed() / n;
    anyhow::ensure!(granted == n / 2, "lease check results are wrong");
    println!(
        "lease check (normalise + 3 globs): {:.0} ns",
        per_check.as_nanos()
    );

    let bytes = std::fs::read(probe)?;
    let plain = sandbox.prepare(
        &sandbox.load_component(&bytes, None, Flavor::Plain)?.0,
        Flavor::Plain,
    )?;
    let fueled = sandbox.prepare(
        &sandbox.load_component(&bytes, None, Flavor::Fuel)?.0,
        Flavor::Fuel,
    )?;
    let spec = |input: Value, fuel: Option<u64>| JobSpec {
        info: JobInfo {
            job_id: "job_bench".into(),
            agent: "hostile@1.0.0".into(),
            trace_id: None,
            parent_job_id: None,
        },
        input_json: input.to_string(),
        memory_bytes: 256 << 20,
        authority: Authority::none(),
        fuel,
    };

    // One host call: `events.log` through the sandbox boundary (the sink discards).
    let calls = 100_000u64;
    let counter = Arc::new(Counter(Default::default()));
    let t = Instant::now();
    let out = sandbox
        .run(
            &plain,
            spec(json!({"mode": "flood", "count": calls}), None),
            counter.clone(),
        )
        .await;
    let elapsed = t.elapsed();
    anyhow::ensure!(
        matches!(out, RunOutcome::Success { .. }),
        "flood run failed: {out:?}"
    );
    println!(
        "host call (events.log, {} calls): {:.0} ns per call",
        counter.0.load(std::sync::atomic::Ordering::Relaxed),
        elapsed.as_nanos() as f64 / calls as f64
    );

    // Fuel's overhead: the same CPU-bound guest, epochs only vs fuel + epochs.
    let rounds = 200_000_000u64;
    let mut best = [Duration::MAX; 2];
    for _ in 0..3 {
        for (i, (agent, fuel)) in [(&plain, None), (&fueled, Some(u64::MAX / 2))]
            .into_iter()
            .enumerate()
        {
            let t = Instant::now();
            let out = sandbox
                .run(
                    agent,
                    spec(json!({"mode": "compute", "rounds": rounds}), fuel),
                    Arc::new(Discard),
                )
                .await;
            anyhow::ensure!(
                matches!(out, RunOutcome::Success { .. }),
                "compute run failed: {out:?}"
            );
            best[i] = best[i].min(t.elapsed());
        }
    }
    println!(
        "compute ({rounds} xorshift rounds, best of 3): epochs only {:.1} ms, fuel + epochs {:.1} ms, fuel overhead {:+.1}%",
        best[0].as_secs_f64() * 1e3,
        best[1].as_secs_f64() * 1e3,
        (best[1].as_secs_f64() / best[0].as_secs_f64() - 1.0) * 100.0
    );
    Ok(())
}

/// Events from one job to one client: a `ticker` emitting `n` log events as fast as
/// it can, counted at the client until the terminal. Returns events per second.
pub async fn event_rate(url: &str, token: &str, n: u64) -> anyhow::Result<f64> {
    let mut c = Client::connect(url, token, None).await?;
    let t = Instant::now();
    c.send(
        "job.submit",
        json!({"agent": "ticker", "input": {"count": n}}),
        None,
    )
    .await?;
    let mut events = 0u64;
    loop {
        let f = tokio::time::timeout(Duration::from_secs(30), c.next()).await??;
        match f["type"].as_str() {
            Some("job.event") => events += 1,
            Some("job.result") => break,
            Some("job.error") | Some("session.error") => anyhow::bail!("ticker failed: {f}"),
            _ => {}
        }
    }
    let elapsed = t.elapsed();
    anyhow::ensure!(events == n, "expected {n} events, got {events}");
    Ok(n as f64 / elapsed.as_secs_f64())
}
