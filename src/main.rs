//! The `arcp-host` command: a thin layer over the library.

use anyhow::Context as _;
use arcp_host::config::Config;
use arcp_host::protocol::{Envelope, Outbound};
use arcp_host::runtime::Runtime;
use arcp_host::transport::{self, Connection, FrameIn, FrameOut};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "arcp-host",
    version,
    about = "An ARCP v1.1 runtime hosting sandboxed WebAssembly agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve ARCP over WebSocket at ws://LISTEN/arcp.
    Serve(ServeArgs),
    /// Speak ARCP as newline-delimited JSON on stdin/stdout (logs on stderr).
    Stdio(CommonArgs),
    /// List the agents in the plugin folder, and the files that failed to load.
    Agents(CommonArgs),
    /// Run one job in-process and print its events as they come.
    Run(RunArgs),
    /// Measure plugin loading, instantiation, round trips and cancel latency.
    Bench(BenchArgs),
    /// Say whether plugin files would load, and if not, why (exit status 1).
    Check(CheckArgs),
}

#[derive(Args)]
struct CheckArgs {
    /// Plugin files (`NAME@VERSION.wasm`).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Measure a runtime already serving at this URL instead of an in-process one.
    #[arg(long)]
    url: Option<String>,
    /// Bearer token for --url.
    #[arg(long, default_value = "")]
    bench_token: String,
    /// Round trips to time.
    #[arg(long, default_value_t = 2000)]
    round_trips: usize,
    /// Spinner cancels to time.
    #[arg(long, default_value_t = 100)]
    cancels: usize,
    /// Instantiations per plugin.
    #[arg(long, default_value_t = 1000)]
    instantiations: usize,
    /// Events for the one-job event-rate run against --url (0 skips it; the runtime
    /// must serve the `ticker` agent).
    #[arg(long, default_value_t = 0)]
    events: u64,
    /// The probe plugin for sandbox costs (host call, fuel overhead).
    #[arg(long, default_value = "tests/plugins/hostile@1.0.0.wasm")]
    probe: PathBuf,
}

#[derive(Args, Clone)]
struct CommonArgs {
    /// Configuration file (TOML); flags override it.
    #[arg(long, env = "ARCP_CONFIG")]
    config: Option<PathBuf>,
    /// Plugin folder.
    #[arg(long)]
    plugins: Option<PathBuf>,
    /// Data folder (SQLite store, compiled-code cache).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Keep events and jobs in memory only.
    #[arg(long)]
    in_memory: bool,
    /// A bearer token and the principal it stands for; repeatable.
    #[arg(long = "token", value_name = "TOKEN=PRINCIPAL")]
    tokens: Vec<String>,
    /// Seconds between the runtime's pings.
    #[arg(long)]
    heartbeat_interval: Option<u64>,
    /// Folder the `fs.*` capabilities work in (none: no file access).
    #[arg(long)]
    workspace: Option<PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Address to listen on.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// AGENT or AGENT@VERSION.
    agent: String,
    /// The job's input as JSON.
    #[arg(long, default_value = "null")]
    input: String,
    /// Wall-clock limit in seconds.
    #[arg(long)]
    max_runtime: Option<u64>,
}

fn load_config(args: &CommonArgs) -> anyhow::Result<Config> {
    let mut cfg = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(p) = &args.plugins {
        cfg.plugins = p.clone();
    }
    if let Some(d) = &args.data {
        cfg.data = d.clone();
    }
    if args.in_memory {
        cfg.in_memory = true;
    }
    if let Some(h) = args.heartbeat_interval {
        cfg.heartbeat_interval_sec = h;
    }
    if let Some(w) = &args.workspace {
        cfg.workspace = Some(w.clone());
    }
    cfg.add_token_flags(&args.tokens)?;
    cfg.validate()?;
    Ok(cfg)
}

/// A file-size limit (`ulimit -f`) must end a store write with an error the host
/// reports (INTERNAL_ERROR to the job, refused submits) rather than kill the host
/// with SIGXFSZ: ignore the signal, as PostgreSQL does, so the write fails with EFBIG.
fn ignore_file_size_signal() {
    // SAFETY: installing SIG_IGN touches no Rust state; it runs before any thread
    // is started.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ARCP_LOG")
                .unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    ignore_file_size_signal();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Stdio(args) => stdio(args).await,
            Command::Agents(args) => agents(args).await,
            Command::Run(args) => run(args).await,
            Command::Bench(args) => bench(args).await,
            Command::Check(args) => check(args),
        }
    })
}

/// Starts the runtime and restores what an earlier run left in its store.
async fn start(cfg: Config) -> anyhow::Result<Arc<Runtime>> {
    let runtime = tokio::task::spawn_blocking(move || Runtime::start(cfg)).await??;
    runtime
        .recover()
        .await
        .context("restoring from the store")?;
    Ok(runtime)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut cfg = load_config(&args.common)?;
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if cfg.tokens.is_empty() {
        // Never serve without authentication: mint a token for this run and say it.
        let token = format!("arcp-{}", uuid::Uuid::now_v7().simple());
        eprintln!(
            "no tokens configured; this run accepts bearer token {token} (principal \"local\")"
        );
        cfg.tokens.insert(token, "local".into());
    }
    let listen = cfg.listen;
    let runtime = start(cfg).await?;
    let _watcher = runtime
        .registry
        .watch()
        .context("watching the plugin folder")?;
    runtime.spawn_sweeper();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, pooling = runtime.sandbox.is_pooling(), "serving ARCP at ws://{addr}/arcp");
    eprintln!("arcp-host listening on ws://{addr}/arcp");
    let settings = transport::websocket::WsSettings {
        max_inbound_frame: runtime.config.limits.max_inbound_frame_kib * 1024,
        outbound_queue: runtime.config.limits.outbound_queue,
    };
    let rt = runtime.clone();
    tokio::select! {
        _ = transport::websocket::serve(listener, settings, move |conn| {
            tokio::spawn(arcp_host::session::serve(rt.clone(), conn));
        }) => {}
        _ = tokio::signal::ctrl_c() => {
            eprintln!("shutting down");
        }
    }
    runtime.store.flush().ok();
    Ok(())
}

async fn stdio(args: CommonArgs) -> anyhow::Result<()> {
    let mut cfg = load_config(&args)?;
    if cfg.tokens.is_empty() {
        // The peer is the parent process that started us; with no tokens configured
        // it authenticates with any token, as principal "local".
        cfg.anonymous_principal = Some("local".into());
    }
    let runtime = start(cfg).await?;
    let _watcher = runtime.registry.watch().ok();
    runtime.spawn_sweeper();
    let conn = transport::stdio::connect(
        runtime.config.limits.max_inbound_frame_kib * 1024,
        runtime.config.limits.outbound_queue,
    );
    arcp_host::session::serve(runtime.clone(), conn).await;
    runtime.store.flush().ok();
    Ok(())
}

async fn agents(args: CommonArgs) -> anyhow::Result<()> {
    let mut cfg = load_config(&args)?;
    cfg.in_memory = true;
    let runtime = start(cfg).await?;
    let inventory = runtime.registry.inventory();
    println!(
        "{:<16} {:<10} {:<8} {:<7} {:>9}  SHA256",
        "AGENT", "VERSION", "DEFAULT", "CACHED", "LOAD(ms)"
    );
    let entries = inventory.entries();
    for plugin in inventory.plugins() {
        let default = entries
            .iter()
            .find(|e| e.name == plugin.name)
            .and_then(|e| e.default.clone())
            .is_some_and(|d| d == plugin.version);
        println!(
            "{:<16} {:<10} {:<8} {:<7} {:>9.1}  {}",
            plugin.name,
            plugin.version,
            if default { "yes" } else { "-" },
            if plugin.from_cache { "yes" } else { "no" },
            plugin.load_time.as_secs_f64() * 1e3,
            &plugin.sha256[..12]
        );
    }
    for e in runtime.registry.errors() {
        println!("FAILED {}: {}", e.path.display(), e.reason);
    }
    Ok(())
}

/// Runs the plugin folder's checks on each file and says what it found.
fn check(args: CheckArgs) -> anyhow::Result<()> {
    let cfg = Config::default();
    let sandbox = arcp_host::sandbox::Sandbox::new(arcp_host::sandbox::SandboxConfig {
        epoch_tick: std::time::Duration::from_millis(cfg.limits.epoch_tick_ms),
        job_memory_bytes: cfg.job_memory_bytes(),
        pool_instances: 0,
        max_result_bytes: cfg.limits.max_result_mib.saturating_mul(1 << 20),
    })?;
    let mut failed = 0;
    for file in &args.files {
        match arcp_host::plugins::check_file(&sandbox, file) {
            Ok(report) => {
                let name = report.reference.clone().unwrap_or_else(|| {
                    "(file name is not NAME@VERSION.wasm: the plugin folder would skip it)".into()
                });
                let wit = report
                    .wit_versions
                    .iter()
                    .map(|v| format!("arcp:agent@{v}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                println!("ok      {}: {name}", file.display());
                println!("        built against {wit}");
                println!("        imports {}", report.imports.join(", "));
                println!("        exports {}", report.exports.join(", "));
                if report.has_manifest {
                    println!("        sidecar manifest: yes");
                }
                if report.reference.is_none() {
                    failed += 1;
                }
            }
            Err(e) => {
                failed += 1;
                println!("FAILED  {}: {e:#}", file.display());
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} files would not load", args.files.len());
        std::process::exit(1);
    }
    Ok(())
}

/// Runs one job through a real in-process session and prints what comes back.
async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut cfg = load_config(&args.common)?;
    let input: Value = serde_json::from_str(&args.input).context("--input is not JSON")?;
    let token = format!("run-{}", uuid::Uuid::now_v7().simple());
    cfg.tokens.insert(token.clone(), "local".into());
    let runtime = start(cfg).await?;
    let (conn, to_runtime, mut from_runtime) =
        Connection::pair(runtime.config.limits.outbound_queue);
    tokio::spawn(arcp_host::session::serve(runtime.clone(), conn));

    let send = |msg: Outbound| {
        let tx = to_runtime.clone();
        async move { tx.send(FrameIn::Frame(msg.encode())).await.ok() }
    };
    let hello = json!({
        "client": {"name": "arcp-host run", "version": env!("CARGO_PKG_VERSION")},
        "auth": {"scheme": "bearer", "token": token},
        "capabilities": {"encodings": ["json"], "features": arcp_host::session::RUNTIME_FEATURES},
    });
    send(Outbound::new("session.hello", hello)).await;
    let mut submit = json!({"agent": args.agent, "input": input, "lease_request": {}});
    if let Some(s) = args.max_runtime {
        submit["max_runtime_sec"] = s.into();
    }
    let mut submitted = false;
    let mut streamed = String::new();
    let mut failed = false;
    while let Some(out) = from_runtime.recv().await {
        let FrameOut::Frame(text) = out else { break };
        let env = Envelope::decode(&text).map_err(|f| anyhow::anyhow!(f.error))?;
        let p = &env.payload;
        match env.kind.as_str() {
            "session.welcome" if !submitted => {
                submitted = true;
                send(Outbound::new("job.submit", submit.clone())).await;
            }
            "session.error" => {
                eprintln!(
                    "error: {} {}",
                    p["code"].as_str().unwrap_or(""),
                    p["message"].as_str().unwrap_or("")
                );
                failed = true;
                break;
            }
            "job.accepted" => eprintln!(
                "accepted {} as {}",
                p["job_id"].as_str().unwrap_or(""),
                p["agent"].as_str().unwrap_or("")
            ),
            "job.event" => {
                let seq = env.event_seq.unwrap_or(0);
                if p["kind"] == "result_chunk" {
                    streamed.push_str(p["body"]["data"].as_str().unwrap_or(""));
                    eprintln!(
                        "[{seq}] result_chunk #{} ({} bytes)",
                        p["body"]["chunk_seq"],
                        p["body"]["data"].as_str().map_or(0, str::len)
                    );
                } else {
                    eprintln!("[{seq}] {} {}", p["kind"].as_str().unwrap_or(""), p["body"]);
                }
            }
            "job.result" => {
                eprintln!(
                    "[{}] {}",
                    env.event_seq.unwrap_or(0),
                    p["final_status"].as_str().unwrap_or("")
                );
                if p.get("result_id").is_some() {
                    println!("{streamed}");
                } else {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&p["result"]).unwrap_or_default()
                    );
                }
                failed = p["final_status"] != "success";
                break;
            }
            "job.error" => {
                eprintln!(
                    "[{}] error {}: {}",
                    env.event_seq.unwrap_or(0),
                    p["code"].as_str().unwrap_or(""),
                    p["message"].as_str().unwrap_or("")
                );
                failed = true;
                break;
            }
            _ => {}
        }
    }
    runtime.store.flush().ok();
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    use arcp_host::bench;
    if let Some(url) = &args.url {
        // Another runtime (e.g. the reference Python one): only what any ARCP runtime
        // with an `echo` agent can answer.
        println!("## echo submit→result round trip over loopback WebSocket ({url})");
        println!(
            "{}",
            bench::round_trips(url, &args.bench_token, args.round_trips).await?
        );
        if args.events > 0 {
            let rate = bench::event_rate(url, &args.bench_token, args.events).await?;
            println!(
                "\n## events from one job to one client ({} ticker events)\n{rate:.0} events/s",
                args.events
            );
        }
        return Ok(());
    }
    let mut cfg = load_config(&args.common)?;
    let token = format!("bench-{}", uuid::Uuid::now_v7().simple());
    cfg.tokens.insert(token.clone(), "bench".into());
    let plugins_dir = cfg.plugins.clone();
    let data =
        std::env::temp_dir().join(format!("arcp-bench-data-{}", uuid::Uuid::now_v7().simple()));
    cfg.data = data.clone();
    let store = if cfg.in_memory { "in-memory" } else { "sqlite" };
    let runtime = start(cfg).await?;
    println!(
        "# arcp-host bench: {store} store, pooling allocator: {}",
        runtime.sandbox.is_pooling()
    );
    println!("\n## plugin load and instantiation");
    bench::plugins(runtime.sandbox.clone(), &plugins_dir, args.instantiations).await?;
    println!("\n## lease check, host call, fuel overhead");
    bench::sandbox_costs(runtime.sandbox.clone(), &args.probe).await?;
    let url = bench::serve_in_process(runtime.clone()).await?;
    println!("\n## echo submit→result round trip over loopback WebSocket ({url})");
    println!(
        "{}",
        bench::round_trips(&url, &token, args.round_trips).await?
    );
    println!("\n## spinner cancel latency (job.cancel sent → terminal received)");
    println!(
        "{}",
        bench::cancel_latency(&url, &token, args.cancels).await?
    );
    runtime.store.flush().ok();
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}
