//! Benchmarks behind `arcp-host bench`: what it costs to load, instantiate and run a
//! plugin, and what a client sees over loopback WebSocket.
//!
//! A load generator and measurement code only; it drives the runtime through its
//! public API or over the wire, as a client would, and changes nothing in it.

use crate::client::Client;
use crate::runtime::Runtime;
use crate::sandbox::{DiscardEvents, Flavor, JobSink, Sandbox};
use anyhow::Context as _;
use serde_json::{Value, json};
use std::collections::HashMap;
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
    /// 99.9th percentile.
    pub p999: Duration,
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
            p999: at(0.999),
            max: samples[samples.len() - 1],
        }
    }
}

impl std::fmt::Display for Percentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        write!(
            f,
            "n={} p50={:.3} ms p99={:.3} ms p999={:.3} ms max={:.3} ms",
            self.n,
            ms(self.p50),
            ms(self.p99),
            ms(self.p999),
            ms(self.max)
        )
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
            samples.push(
                sandbox
                    .instantiate_only(&agent, Arc::new(DiscardEvents))
                    .await?,
            );
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

/// An echo job's part in its sandbox, one job after another, as the runtime runs it:
/// a new store, instantiation from the pool and the guest's `run` (what comes before
/// the job's result can be sent), then the instance's reset (which the runtime does
/// after sending it); then the same jobs each in the spare instance the one before
/// left (taking its store, `run`), and the making of the next spare after each (which
/// the runtime does once the job has ended). With the floor's bare commit and frames,
/// this bounds how fast a runtime with a fresh sandbox per job can answer.
/// The echo is the one the runtime serves (from its registry, compiled once).
pub async fn sandboxed_echo(runtime: &Runtime, n: usize) -> anyhow::Result<()> {
    use crate::sandbox::{Authority, JobInfo, JobSpec, RunOutcome};
    let (sandbox, memory_bytes) = (&runtime.sandbox, runtime.config.job_memory_bytes());
    let echo = runtime
        .registry
        .inventory()
        .resolve("echo@1.0.0")
        .map_err(|e| anyhow::anyhow!("the runtime serves no echo@1.0.0: {e}"))?;
    let agent = &echo.agent;
    let spec = |i: usize| JobSpec {
        info: JobInfo {
            job_id: "job_bench".into(),
            agent: "echo@1.0.0".into(),
            trace_id: None,
            parent_job_id: None,
        },
        input_json: json!({"i": i}).to_string(),
        memory_bytes,
        authority: Authority::none(),
        fuel: None,
        waits_for_instance: true,
    };
    let warm_up = n.min(50);
    // Each job's run, then its instance's reset (`with_spare` false: the next job
    // instantiates) or the making of the spare the next job starts in, made once
    // this one's instance is released, as the runtime runs a plugin's jobs one after
    // another (`sandbox::spare`).
    let measure = async |with_spare: bool| -> anyhow::Result<[Percentiles; 2]> {
        let (mut runs, mut afters) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n + warm_up {
            let t = Instant::now();
            let (outcome, finished) = sandbox
                .run_holding(agent, spec(i), Arc::new(DiscardEvents))
                .await;
            let ran = t.elapsed();
            anyhow::ensure!(
                matches!(outcome, RunOutcome::Success { .. }),
                "echo failed in its sandbox: {outcome:?}"
            );
            let t = Instant::now();
            let refill = finished.and_then(crate::sandbox::Finished::release);
            let mut after = t.elapsed();
            if let (true, Some(refill)) = (with_spare, refill) {
                let t = Instant::now();
                sandbox.make_spare(refill).await;
                after = t.elapsed();
                anyhow::ensure!(agent.has_spare(), "echo@1.0.0 got no spare instance");
            }
            if i >= warm_up {
                runs.push(ran);
                afters.push(after);
            }
        }
        Ok([Percentiles::of(&mut runs), Percentiles::of(&mut afters)])
    };
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let [run, reset] = measure(false).await?;
    println!(
        "echo job in its sandbox (new store, instantiation, run): n={} p50={:.1} µs p99={:.1} µs; the instance's reset after it p50={:.1} µs p99={:.1} µs",
        run.n,
        us(run.p50),
        us(run.p99),
        us(reset.p50),
        us(reset.p99)
    );
    let [run, spare] = measure(true).await?;
    println!(
        "echo job in a spare instance (its store taken, run): n={} p50={:.1} µs p99={:.1} µs; making the spare after it p50={:.1} µs p99={:.1} µs",
        run.n,
        us(run.p50),
        us(run.p99),
        us(spare.p50),
        us(spare.p99)
    );
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
/// With `lease`, every submit carries it as its `lease_request`.
pub async fn round_trips(
    url: &str,
    token: &str,
    n: usize,
    lease: Option<&Value>,
) -> anyhow::Result<Percentiles> {
    let submit = |input: Value| {
        let mut payload = json!({"agent": "echo", "input": input});
        if let Some(lease) = lease {
            payload["lease_request"] = lease.clone();
        }
        payload
    };
    let mut c = Client::connect(url, token, None).await?;
    for _ in 0..n.min(50) {
        c.submit(submit(json!({"warm": true}))).await?;
        c.terminal().await?;
    }
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        c.submit(submit(json!({"i": i}))).await?;
        let done = c.terminal().await?;
        samples.push(t.elapsed());
        anyhow::ensure!(done["type"] == "job.result", "echo failed: {done}");
    }
    Ok(Percentiles::of(&mut samples))
}

/// Sequential `session.ping` → `session.pong` round trips: the transport's floor
/// (WebSocket framing, JSON and the session's task, no job and no store), against
/// which the echo round trip's cost of a sandbox and a commit can be read.
pub async fn ping_round_trips(url: &str, token: &str, n: usize) -> anyhow::Result<Percentiles> {
    let mut c = Client::connect(url, token, None).await?;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + n.min(50) {
        let ping =
            json!({"nonce": format!("bench-{i}"), "sent_at": crate::protocol::now_rfc3339()});
        let t = Instant::now();
        let id = c.send("session.ping", ping, None).await?;
        c.reply(&id, "session.pong").await?;
        if i >= n.min(50) {
            samples.push(t.elapsed());
        }
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
    let idle = round_trips(url, token, n, None).await?;
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
    let loaded = round_trips(url, token, n, None).await?;
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
    fn emit(
        &self,
        _kind: std::borrow::Cow<'static, str>,
        _body: crate::protocol::EventBody,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
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
        waits_for_instance: true,
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
                    Arc::new(DiscardEvents),
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
    // Each frame is read for its type and seq only (no JSON tree): the load
    // generator shares the machine's two cores with the runtime it measures. The
    // sequence must be gap-free.
    let mut events = 0u64;
    let mut last_seq = None;
    loop {
        let f = tokio::time::timeout(Duration::from_secs(30), c.next_frame()).await??;
        if let Some(seq) = f.event_seq {
            anyhow::ensure!(
                last_seq.is_none_or(|last| seq == last + 1),
                "event_seq {seq} after {last_seq:?}"
            );
            last_seq = Some(seq);
        }
        match f.kind.as_str() {
            "job.event" => events += 1,
            "job.result" => break,
            "job.error" | "session.error" => anyhow::bail!("ticker failed: {}", f.text),
            _ => {}
        }
    }
    let elapsed = t.elapsed();
    anyhow::ensure!(events == n, "expected {n} events, got {events}");
    Ok(n as f64 / elapsed.as_secs_f64())
}

/// What `/proc` says about a process: the CPU time it has used and its resident
/// memory, now and at its peak. Any process on this machine can be measured this way
/// (this runtime over `--url`, the reference Python one, ourselves).
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    /// User + system CPU time so far (`utime + stime` of `/proc/PID/stat`).
    pub cpu: Duration,
    /// Resident memory now (`VmRSS`), bytes.
    pub rss: u64,
    /// Peak resident memory so far (`VmHWM`), bytes.
    pub hwm: u64,
    /// When it was taken.
    pub at: Instant,
}

/// Reads [`ProcSample`] of process `pid`.
pub fn proc_sample(pid: u32) -> anyhow::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Field 2 (the command) is in parentheses and may hold spaces: split after the
    // last ')'. What follows starts at field 3; utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u64> {
        Ok(fields.get(n - 3).context("short /proc/PID/stat")?.parse()?)
    };
    let ticks = field(14)? + field(15)?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|h| *h > 0).unwrap_or(100);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |k| k * 1024)
    };
    Ok(ProcSample {
        cpu: Duration::from_secs_f64(ticks as f64 / hz as f64),
        rss: kib("VmRSS:"),
        hwm: kib("VmHWM:"),
        at: Instant::now(),
    })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// The measured runtime's CPU time and memory around one phase of the bench: take
/// [`Phase::begin`] before it and print [`Phase::end`] after.
pub struct Phase {
    pid: Option<u32>,
    before: Option<ProcSample>,
    /// This process (the load generator), when it is not the one measured: the
    /// two share the machine's cores, so what it burns bounds what the runtime gets.
    generator: Option<ProcSample>,
}

impl Phase {
    /// Samples `pid` (if any) now.
    pub fn begin(pid: Option<u32>) -> Phase {
        let me = std::process::id();
        Phase {
            pid,
            before: pid.and_then(|p| proc_sample(p).ok()),
            generator: pid.filter(|p| *p != me).and_then(|_| proc_sample(me).ok()),
        }
    }

    /// What the process used since [`Phase::begin`], as one line (`None` without a
    /// pid).
    pub fn end(self) -> Option<String> {
        let pid = self.pid?;
        let Some(before) = self.before else {
            return Some(format!("runtime pid {pid}: could not read /proc/{pid}"));
        };
        let generator = self
            .generator
            .and_then(|g| Some((g, proc_sample(std::process::id()).ok()?)))
            .map(|(g, now)| {
                let cpu = now.cpu.saturating_sub(g.cpu).as_secs_f64();
                format!("; load generator CPU {cpu:.2} s")
            })
            .unwrap_or_default();
        Some(match proc_sample(pid) {
            Ok(after) => {
                let cpu = after.cpu.saturating_sub(before.cpu).as_secs_f64();
                let wall = after.at.duration_since(before.at).as_secs_f64();
                format!(
                    "runtime pid {pid}: CPU {cpu:.2} s (user+sys) in {wall:.2} s wall ({:.0}% of one core); RSS {:.1} -> {:.1} MiB, peak (VmHWM) {:.1} -> {:.1} MiB{generator}",
                    cpu / wall.max(1e-9) * 100.0,
                    mib(before.rss),
                    mib(after.rss),
                    mib(before.hwm),
                    mib(after.hwm)
                )
            }
            Err(e) => format!("runtime pid {pid}: {e:#}"),
        })
    }
}

/// Bearer tokens from a comma-separated list (sessions take them round robin, so
/// that several principals can share a load past one principal's session cap).
pub fn split_tokens(list: &str) -> Vec<String> {
    let tokens: Vec<String> = list.split(',').map(str::to_owned).collect();
    if tokens.is_empty() {
        vec![String::new()]
    } else {
        tokens
    }
}

/// Makes sure this process may hold `need` open files (raising its soft limit up to
/// the hard one if it must): every WebSocket connection is a descriptor here, and
/// two when the runtime is in the same process.
pub fn ensure_open_files(need: u64) -> anyhow::Result<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Ok(());
    }
    if lim.rlim_cur >= need {
        return Ok(());
    }
    let raised = libc::rlimit {
        rlim_cur: lim.rlim_max.min(need.max(lim.rlim_cur)),
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads the struct it is given.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
    anyhow::ensure!(
        raised.rlim_cur >= need,
        "this load needs {need} open files but `ulimit -n` allows {} (hard limit {}): raise it",
        lim.rlim_cur,
        lim.rlim_max
    );
    Ok(())
}

/// Opens `n` sessions, at most 64 handshakes at a time (a burst of a thousand
/// connects would overflow the listener's backlog), tokens taken round robin.
async fn connect_many(url: &str, tokens: &[String], n: usize) -> Vec<anyhow::Result<Client>> {
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (url, token, gate) = (
            url.to_owned(),
            tokens[i % tokens.len()].clone(),
            gate.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await?;
            Client::connect(&url, &token, None).await
        }));
    }
    let mut clients = Vec::with_capacity(n);
    for t in tasks {
        clients.push(t.await.unwrap_or_else(|e| Err(e.into())));
    }
    clients
}

/// What one session saw of the jobs it submitted.
#[derive(Default)]
struct SessionOutcome {
    /// Submit sent → terminal received, for every job that got a terminal.
    latencies: Vec<Duration>,
    /// `job.accepted` received.
    accepted: usize,
    /// Submits refused (`session.error` naming the submit).
    refused: usize,
    /// Terminals that were `job.result` with `final_status: success`.
    succeeded: usize,
    /// Other terminals, and jobs lost to a broken or silent connection.
    failed: usize,
    first_error: Option<String>,
}

impl SessionOutcome {
    fn note(&mut self, error: impl FnOnce() -> String) {
        if self.first_error.is_none() {
            self.first_error = Some(error());
        }
    }
}

/// Sends all of `submits` on `c` at once (queued, then written together, as a client
/// submitting a batch would), then reads until each has been refused or has ended (or
/// nothing arrives for `quiet`).
async fn run_jobs(mut c: Client, submits: Vec<Value>, quiet: Duration) -> SessionOutcome {
    let mut out = SessionOutcome::default();
    let mut sent: HashMap<String, Instant> = HashMap::with_capacity(submits.len());
    for payload in submits {
        match c.feed("job.submit", payload, None).await {
            Ok(id) => {
                sent.insert(id, Instant::now());
            }
            Err(e) => {
                out.failed += 1;
                out.note(|| format!("sending job.submit: {e:#}"));
            }
        }
    }
    if let Err(e) = c.flush().await {
        out.failed += sent.len();
        out.note(|| format!("sending job.submit: {e:#}"));
        return out;
    }
    let mut running: HashMap<String, Instant> = HashMap::with_capacity(sent.len());
    while !sent.is_empty() || !running.is_empty() {
        let env = match tokio::time::timeout(quiet, c.next()).await {
            Ok(Ok(env)) => env,
            Ok(Err(e)) => {
                out.failed += sent.len() + running.len();
                out.note(|| format!("{e:#}"));
                break;
            }
            Err(_) => {
                out.failed += sent.len() + running.len();
                out.note(|| format!("nothing from the runtime for {quiet:?}"));
                break;
            }
        };
        match env["type"].as_str().unwrap_or_default() {
            "job.accepted" => {
                let request = env["payload"]["request_id"].as_str().unwrap_or_default();
                if let Some(t) = sent.remove(request) {
                    out.accepted += 1;
                    running.insert(job_id(&env), t);
                }
            }
            "session.error" => {
                let request = env["payload"]["details"]["request_id"]
                    .as_str()
                    .unwrap_or_default();
                if sent.remove(request).is_some() {
                    out.refused += 1;
                }
                out.note(|| crate::client::describe_error(&env));
            }
            "job.result" | "job.error" => {
                let job = env["job_id"]
                    .as_str()
                    .or(env["payload"]["job_id"].as_str())
                    .unwrap_or_default();
                if let Some(t) = running.remove(job) {
                    out.latencies.push(t.elapsed());
                    if env["type"] == "job.result" && env["payload"]["final_status"] == "success" {
                        out.succeeded += 1;
                    } else {
                        out.failed += 1;
                        out.note(|| crate::client::describe_error(&env));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// What [`many_sessions`] and [`sleepers`] measured.
pub struct LoadReport {
    /// Sessions asked for.
    pub sessions: usize,
    /// Sessions that could not be opened.
    pub refused_sessions: usize,
    /// Jobs asked for, over all sessions.
    pub jobs: usize,
    /// `job.accepted` received.
    pub accepted: usize,
    /// Submits refused, and jobs of sessions that could not be opened.
    pub refused: usize,
    /// Jobs that ended in success.
    pub succeeded: usize,
    /// Jobs that ended otherwise, or never ended.
    pub failed: usize,
    /// The first error seen, if any.
    pub first_error: Option<String>,
    /// Time to open every session.
    pub connect: Duration,
    /// From the first submit to the last terminal.
    pub elapsed: Duration,
    /// Submit → terminal, over the jobs that ended.
    pub latency: Option<Percentiles>,
}

impl LoadReport {
    /// Refused + failed.
    pub fn errors(&self) -> usize {
        self.refused + self.failed
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} sessions opened in {:.3} s ({} refused)",
            self.sessions - self.refused_sessions,
            self.connect.as_secs_f64(),
            self.refused_sessions
        )?;
        writeln!(
            f,
            "{} jobs: {} accepted, {} succeeded, errors {} ({} refused, {} failed or lost) in {:.3} s: {:.0} jobs/s",
            self.jobs,
            self.accepted,
            self.succeeded,
            self.errors(),
            self.refused,
            self.failed,
            self.elapsed.as_secs_f64(),
            self.succeeded as f64 / self.elapsed.as_secs_f64()
        )?;
        if let Some(e) = &self.first_error {
            writeln!(f, "first error: {e}")?;
        }
        match &self.latency {
            Some(p) => write!(f, "submit→terminal latency: {p}"),
            None => write!(f, "submit→terminal latency: no job ended"),
        }
    }
}

/// Runs `per_session[i]` submits on session `i`, all sessions at once, once every
/// session is open.
async fn load(
    url: &str,
    tokens: &[String],
    per_session: Vec<Vec<Value>>,
    quiet: Duration,
) -> anyhow::Result<LoadReport> {
    let sessions = per_session.len();
    ensure_open_files(2 * sessions as u64 + 256)?;
    let t = Instant::now();
    let clients = connect_many(url, tokens, sessions).await;
    let connect = t.elapsed();
    let mut report = LoadReport {
        sessions,
        refused_sessions: 0,
        jobs: per_session.iter().map(Vec::len).sum(),
        accepted: 0,
        refused: 0,
        succeeded: 0,
        failed: 0,
        first_error: None,
        connect,
        elapsed: Duration::ZERO,
        latency: None,
    };
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(sessions);
    for (client, submits) in clients.into_iter().zip(per_session) {
        match client {
            Ok(c) => tasks.push(tokio::spawn(run_jobs(c, submits, quiet))),
            Err(e) => {
                report.refused_sessions += 1;
                report.refused += submits.len();
                report.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    let mut latencies = Vec::with_capacity(report.jobs);
    for task in tasks {
        let out = task.await?;
        report.elapsed = start.elapsed();
        latencies.extend(out.latencies);
        report.accepted += out.accepted;
        report.refused += out.refused;
        report.succeeded += out.succeeded;
        report.failed += out.failed;
        if let Some(e) = out.first_error {
            report.first_error.get_or_insert(e);
        }
    }
    if !latencies.is_empty() {
        report.latency = Some(Percentiles::of(&mut latencies));
    }
    Ok(report)
}

/// Many sessions × many jobs: `sessions` WebSocket connections, each submitting
/// `jobs` echo jobs back to back, all at once; jobs/s over the whole load.
pub async fn many_sessions(
    url: &str,
    tokens: &[String],
    sessions: usize,
    jobs: usize,
) -> anyhow::Result<LoadReport> {
    let per_session = (0..sessions)
        .map(|s| {
            (0..jobs)
                .map(|j| json!({"agent": "echo", "input": {"s": s, "j": j}}))
                .collect()
        })
        .collect();
    load(url, tokens, per_session, Duration::from_secs(60)).await
}

/// What [`sleepers`] measured besides the [`LoadReport`]: the runtime's resident
/// memory before, at its peak during, and after the load.
pub struct SleeperReport {
    /// Jobs, acceptance, completion.
    pub load: LoadReport,
    /// `[before, peak sampled every 50 ms, 1 s after]`, bytes (zeros without a pid).
    pub rss: [u64; 3],
    /// `VmHWM` after the load, bytes.
    pub hwm: u64,
}

/// `n` concurrent `sleeper` jobs of `secs` seconds each (input `{"seconds": S}`),
/// over `min(n, 100)` sessions: are they all accepted, do they all finish, and what
/// does each cost the runtime (process `pid`) in resident memory.
pub async fn sleepers(
    url: &str,
    tokens: &[String],
    n: usize,
    secs: f64,
    pid: Option<u32>,
) -> anyhow::Result<SleeperReport> {
    let sessions = n.clamp(1, 100);
    let mut per_session = vec![Vec::new(); sessions];
    for i in 0..n {
        per_session[i % sessions].push(json!({"agent": "sleeper", "input": {"seconds": secs}}));
    }
    let rss_now = move || pid.and_then(|p| proc_sample(p).ok()).map_or(0, |s| s.rss);
    let before = rss_now();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_now());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            peak
        })
    };
    let quiet = Duration::from_secs_f64(secs + 60.0);
    let load = load(url, tokens, per_session, quiet).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.await?.max(rss_now());
    let load = load?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_now();
    let hwm = pid.and_then(|p| proc_sample(p).ok()).map_or(0, |s| s.hwm);
    Ok(SleeperReport {
        load,
        rss: [before, peak, after],
        hwm,
    })
}

impl std::fmt::Display for SleeperReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.load)?;
        let [before, peak, after] = self.rss;
        if peak == 0 {
            return write!(f, "runtime memory: not measured (no --pid)");
        }
        let grown = peak.saturating_sub(before) as f64 / 1024.0;
        write!(
            f,
            "runtime RSS: {:.1} MiB before, {:.1} MiB peak (VmHWM {:.1} MiB), {:.1} MiB 1 s after; per job that ran {:.1} KiB ((peak - before) / {} succeeded), per accepted job {:.1} KiB",
            mib(before),
            mib(peak),
            mib(self.hwm),
            mib(after),
            grown / self.load.succeeded.max(1) as f64,
            self.load.succeeded,
            grown / self.load.accepted.max(1) as f64,
        )
    }
}

/// Epoch interruption's own overhead on a CPU-bound guest: the `hostile` probe's
/// `compute` loop (`rounds` xorshift steps) on two plain engines that differ only in
/// `epoch_interruption`, the second with a ticker thread bumping the epoch every
/// `tick` and the guest yielding to the executor at each (as the sandbox runs jobs;
/// no pooling, limiter or host functions on either, so only the epoch checks and
/// yields differ); and, for reference, the same job through [`Sandbox::run`] (pooling
/// allocator, limiter, CPU slots). Interleaved, best of 5 each:
/// `[plain without epochs, plain with epochs, sandbox]`.
pub async fn epoch_overhead(
    sandbox: Arc<Sandbox>,
    probe: &Path,
    rounds: u64,
    tick: Duration,
) -> anyhow::Result<[Duration; 3]> {
    use crate::sandbox::{Authority, JobInfo, JobSpec, RunOutcome};
    use wasmtime::component::{Component, Linker};
    let bytes = std::fs::read(probe)?;
    let mut engines = Vec::new();
    for epochs in [false, true] {
        let mut c = wasmtime::Config::new();
        c.wasm_component_model(true);
        c.epoch_interruption(epochs);
        let engine = wasmtime::Engine::new(&c)?;
        let component = Component::new(&engine, &bytes)?;
        let mut linker = Linker::<()>::new(&engine);
        // The compute mode calls no host function.
        linker.define_unknown_imports_as_traps(&component)?;
        engines.push((engine, component, linker, epochs));
    }
    let prepared = sandbox.prepare(
        &sandbox.load_component(&bytes, None, Flavor::Plain)?.0,
        Flavor::Plain,
    )?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticker = {
        let (engine, stop) = (engines[1].0.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(tick);
                engine.increment_epoch();
            }
        })
    };
    let info = JobInfo {
        job_id: "job_bench".into(),
        agent: "hostile@1.0.0".into(),
        trace_id: None,
        parent_job_id: None,
    };
    let input = json!({"mode": "compute", "rounds": rounds}).to_string();
    let mut best = [Duration::MAX; 3];
    let result: anyhow::Result<()> = async {
        for _ in 0..5 {
            for (i, (engine, component, linker, epochs)) in engines.iter().enumerate() {
                let mut store = wasmtime::Store::new(engine, ());
                if *epochs {
                    store.set_epoch_deadline(1);
                    store.epoch_deadline_async_yield_and_update(1);
                }
                let agent =
                    crate::sandbox::Agent::instantiate_async(&mut store, component, linker).await?;
                let t = Instant::now();
                let out = agent.call_run(&mut store, &info, &input).await?;
                best[i] = best[i].min(t.elapsed());
                anyhow::ensure!(out.is_ok(), "compute run failed");
            }
            let spec = JobSpec {
                info: info.clone(),
                input_json: input.clone(),
                memory_bytes: 256 << 20,
                authority: Authority::none(),
                fuel: None,
                waits_for_instance: true,
            };
            let t = Instant::now();
            let out = sandbox.run(&prepared, spec, Arc::new(DiscardEvents)).await;
            best[2] = best[2].min(t.elapsed());
            anyhow::ensure!(
                matches!(out, RunOutcome::Success { .. }),
                "compute run failed: {out:?}"
            );
        }
        Ok(())
    }
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = ticker.join();
    result.map(|()| best)
}

/// The phases any ARCP runtime serving `echo`, `ticker` and `sleeper` can be put
/// through over the wire (0 skips a phase).
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// Sequential echo round trips.
    pub round_trips: usize,
    /// Events of the one-job event flood (`ticker`).
    pub events: u64,
    /// Concurrent sessions of the many-sessions load.
    pub sessions: usize,
    /// Echo jobs each of those sessions submits at once.
    pub jobs_per_session: usize,
    /// Concurrent `sleeper` jobs.
    pub sleepers: usize,
    /// How long each sleeps.
    pub sleep_secs: f64,
    /// A `lease_request` for every submit of the echo round trips.
    pub lease: Option<Value>,
}

fn print_phase(phase: Phase) {
    if let Some(line) = phase.end() {
        println!("{line}");
    }
}

/// Runs `plan` against the runtime at `url` (process `pid`, if given, is sampled
/// around each phase: CPU time, RSS, peak RSS), printing each phase's figures.
pub async fn run_load(
    url: &str,
    tokens: &[String],
    pid: Option<u32>,
    plan: &LoadPlan,
) -> anyhow::Result<()> {
    let token = &tokens[0];
    if plan.round_trips > 0 {
        println!(
            "\n## session.ping→pong round trip over loopback WebSocket (the transport's floor)"
        );
        // A runtime that does not answer client pings is still measured on the rest.
        match tokio::time::timeout(
            Duration::from_secs(60),
            ping_round_trips(url, token, plan.round_trips),
        )
        .await
        {
            Ok(Ok(p)) => println!("{p}"),
            Ok(Err(e)) => println!("not answered: {e:#}"),
            Err(_) => println!("not answered within 60 s"),
        }
        let lease = plan
            .lease
            .as_ref()
            .map(|l| format!(", lease_request {l}"))
            .unwrap_or_default();
        println!("\n## echo submit→result round trip over loopback WebSocket ({url}){lease}");
        let phase = Phase::begin(pid);
        println!(
            "{}",
            round_trips(url, token, plan.round_trips, plan.lease.as_ref()).await?
        );
        print_phase(phase);
    }
    if plan.events > 0 {
        println!(
            "\n## events from one job to one client ({} ticker events)",
            plan.events
        );
        let phase = Phase::begin(pid);
        let rate = event_rate(url, token, plan.events).await?;
        println!("{rate:.0} events/s");
        print_phase(phase);
    }
    if plan.sessions > 0 {
        println!(
            "\n## {} sessions × {} echo jobs, all at once ({} principals)",
            plan.sessions,
            plan.jobs_per_session,
            tokens.len()
        );
        let phase = Phase::begin(pid);
        println!(
            "{}",
            many_sessions(url, tokens, plan.sessions, plan.jobs_per_session).await?
        );
        print_phase(phase);
    }
    if plan.sleepers > 0 {
        println!(
            "\n## {} concurrent sleepers of {} s ({} sessions, {} principals)",
            plan.sleepers,
            plan.sleep_secs,
            plan.sleepers.clamp(1, 100),
            tokens.len()
        );
        let phase = Phase::begin(pid);
        println!(
            "{}",
            sleepers(url, tokens, plan.sleepers, plan.sleep_secs, pid).await?
        );
        print_phase(phase);
    }
    Ok(())
}
