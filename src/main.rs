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

/// Jobs allocate and free many small buffers across threads (a frame is encoded by a
/// job's task and freed by the connection's writer or the store's). glibc's malloc
/// spent about a quarter of the runtime's CPU on that; jemalloc's thread caches make
/// echo jobs and event floods cheaper (BENCHMARKS.md). mimalloc was as fast but held
/// the compiler threads' freed memory (~100 MiB after the first start) until they
/// allocated again; jemalloc's background thread returns it.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main`: a background thread gives freed pages back
/// to the system a second after they were last used, even while the host is idle.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: Option<&std::ffi::c_char> =
    // SAFETY: the pointer is to a static, NUL-terminated string (jemalloc's `const char*`).
    Some(unsafe { &*c"background_thread:true,dirty_decay_ms:1000".as_ptr() });

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
    /// Submit a job to a running runtime and print its events as they arrive
    /// (Ctrl-C cancels it).
    Submit(SubmitArgs),
    /// List jobs on a running runtime.
    Jobs(JobsArgs),
    /// Print a job's events, from its first, until it ends.
    Tail(TailArgs),
    /// Cancel a job (only its submitting session may: give its id and resume token).
    Cancel(CancelArgs),
    /// Scaffold a new agent crate on the Rust guest SDK, with its build script.
    New(NewArgs),
}

#[derive(Args)]
struct NewArgs {
    /// The agent's name: its crate name and the NAME of NAME@VERSION.wasm.
    name: String,
    /// Folder to create (default: ./NAME).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The Rust guest SDK (sdk/rust of an arcp-host checkout; default: the one this
    /// binary was built from).
    #[arg(long, env = "ARCP_SDK")]
    sdk: Option<PathBuf>,
}

/// Where the runtime is and who we are.
#[derive(Args)]
struct ClientArgs {
    /// The runtime's WebSocket URL.
    #[arg(long, env = "ARCP_URL", default_value = "ws://127.0.0.1:7777/arcp")]
    url: String,
    /// Bearer token.
    #[arg(long, env = "ARCP_TOKEN")]
    token: String,
    /// JSON lines on stdout (one envelope each) instead of text.
    #[arg(long)]
    json: bool,
    /// Colour in the text output: auto (when stderr is a terminal and NO_COLOR is
    /// unset), always or never.
    #[arg(long, value_enum, default_value_t = When::Auto)]
    color: When,
    /// Draw `progress` events as a progress bar: auto (when stderr is a terminal),
    /// always or never (then they are printed as lines).
    #[arg(long, value_enum, default_value_t = When::Auto)]
    progress: When,
}

#[derive(Args)]
struct SubmitArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// `name` or `name@version`.
    agent: String,
    /// The input: JSON text, or `@FILE` holding it.
    #[arg(long, default_value = "null")]
    input: String,
    /// A lease request, as a JSON object (`{"fs.read": ["/docs/**"]}`).
    #[arg(long)]
    lease: Option<String>,
    /// `max_runtime_sec`.
    #[arg(long)]
    max_runtime: Option<u64>,
    /// Write a streamed result to this file instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct JobsArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Only jobs in this status (repeatable).
    #[arg(long)]
    status: Vec<String>,
    /// Only jobs of this agent (`name` or `name@version`).
    #[arg(long)]
    agent: Option<String>,
}

#[derive(Args)]
struct TailArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The job.
    job: String,
}

#[derive(Args)]
struct CancelArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The job.
    job: String,
    /// The submitting session (printed by `submit`).
    #[arg(long)]
    session: Option<String>,
    /// That session's resume token (printed by `submit`).
    #[arg(long)]
    resume_token: Option<String>,
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
    /// Bearer token for --url; a comma-separated list spreads the sessions over
    /// several (principals have a session cap: `limits.max_sessions_per_principal`).
    #[arg(long, default_value = "")]
    bench_token: String,
    /// The measured runtime's process id: its CPU time and resident memory (peak
    /// included) are read from /proc before and after each phase. In-process, this
    /// process (load generator included) is measured.
    #[arg(long)]
    pid: Option<u32>,
    /// Round trips to time.
    #[arg(long, default_value_t = 2000)]
    round_trips: usize,
    /// Spinner cancels to time.
    #[arg(long, default_value_t = 100)]
    cancels: usize,
    /// Instantiations per plugin.
    #[arg(long, default_value_t = 1000)]
    instantiations: usize,
    /// Events for the one-job event-rate run (0 skips it; the runtime must serve the
    /// `ticker` agent).
    #[arg(long, default_value_t = 0)]
    events: u64,
    /// Sessions (WebSocket connections) of the many-sessions load, all submitting at
    /// once (0 skips it).
    #[arg(long, default_value_t = 0)]
    sessions: usize,
    /// Echo jobs each session of the many-sessions load submits back to back.
    #[arg(long, default_value_t = 10)]
    jobs_per_session: usize,
    /// Concurrent `sleeper` jobs (0 skips it): are all accepted, do all finish, what
    /// does each cost in resident memory (needs --pid against --url).
    #[arg(long, default_value_t = 0)]
    sleepers: usize,
    /// How long each sleeper sleeps.
    #[arg(long, default_value_t = 5.0)]
    sleep_secs: f64,
    /// In-process: skip the plugin, sandbox-cost and epoch-overhead phases (only the
    /// wire phases run).
    #[arg(long)]
    load_only: bool,
    /// The probe plugin for sandbox costs (host call, fuel overhead).
    #[arg(long, default_value = "tests/plugins/hostile@1.0.0.wasm")]
    probe: PathBuf,
    /// A `lease_request` (a JSON object) that every submit of the echo round trips
    /// carries, to measure what a lease costs a job.
    #[arg(long)]
    lease: Option<String>,
    /// Spinners running beside the echo round trips of the noisy-neighbour run (0
    /// skips it).
    #[arg(long, default_value_t = 100)]
    spinners: usize,
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

/// SQLite (C) still allocates with glibc's malloc: buffers of 512 KiB and more are
/// mapped for themselves and unmapped when freed, rather than glibc raising that
/// threshold to the largest buffer freed (up to 32 MiB) and keeping them resident.
/// Not lower: SQLite copies each row of stored events it is given (up to 256 KiB,
/// `store::sqlite`), and at 128 KiB every such copy was a fresh mapping, faulted in
/// page by page and unmapped again: a fifth of the store writer's samples under a
/// flood, its CPU 10 % lower without (BENCHMARKS.md, 2026-12-06).
fn return_large_buffers_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of glibc's allocator, under its lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 512 << 10);
    }
}

/// Logs to stderr, filtered by `ARCP_LOG`; with the `otel` feature and an
/// `OTEL_EXPORTER_OTLP_ENDPOINT`, the same spans are exported as traces too. Keep
/// the guard until the end: dropping it flushes the spans not yet exported.
fn init_logging() -> arcp_host::telemetry::Guard {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ARCP_LOG")
                .unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".into()),
        )
        .with_writer(std::io::stderr);
    let (otel, guard) = arcp_host::telemetry::otel_layer();
    match otel {
        Some(otel) => logs.finish().with(otel).init(),
        None => logs.init(),
    }
    guard.log_status();
    guard
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Declared before the tokio runtime, so dropped after it: the spans its tasks
    // still hold are closed first, then flushed.
    let _telemetry = init_logging();
    ignore_file_size_signal();
    return_large_buffers_to_the_os();
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
            Command::Submit(args) => submit(args).await,
            Command::Jobs(args) => jobs(args).await,
            Command::Tail(args) => tail(args).await,
            Command::Cancel(args) => cancel(args).await,
            Command::New(args) => new_agent(args),
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
        metrics: runtime.config.metrics.then(|| {
            let weak = Arc::downgrade(&runtime);
            let text: transport::websocket::MetricsText = Arc::new(move || {
                weak.upgrade()
                    .map(|rt| rt.render_metrics())
                    .unwrap_or_default()
            });
            text
        }),
    };
    let rt = runtime.clone();
    // SIGTERM is how service managers (systemd, Docker, Kubernetes) stop a process:
    // it gets the same orderly exit as Ctrl-C, with the store flushed.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = transport::websocket::serve(listener, settings, move |conn| {
            tokio::spawn(arcp_host::session::serve(rt.clone(), conn));
        }) => {}
        _ = tokio::signal::ctrl_c() => {
            eprintln!("shutting down (interrupt)");
        }
        _ = terminate.recv() => {
            eprintln!("shutting down (terminate)");
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
        "{:<16} {:<10} {:<8} {:<7} {:>9}  {:<12}  DESCRIPTION",
        "AGENT", "VERSION", "DEFAULT", "CACHED", "LOAD(ms)", "SHA256"
    );
    let entries = inventory.entries();
    for plugin in inventory.plugins() {
        let default = entries
            .iter()
            .find(|e| e.name == plugin.name)
            .and_then(|e| e.default.clone())
            .is_some_and(|d| d == plugin.version);
        println!(
            "{:<16} {:<10} {:<8} {:<7} {:>9.1}  {:<12}  {}",
            plugin.name,
            plugin.version,
            if default { "yes" } else { "-" },
            if plugin.from_cache { "yes" } else { "no" },
            plugin.load_time.as_secs_f64() * 1e3,
            &plugin.sha256[..12],
            // The operator's text from the sidecar: one line, so the table holds.
            plugin
                .manifest
                .description
                .as_deref()
                .unwrap_or("-")
                .lines()
                .next()
                .unwrap_or("-")
        );
    }
    for e in runtime.registry.errors() {
        println!("FAILED {}: {}", e.path.display(), e.reason);
    }
    Ok(())
}

/// `auto`, `always` or `never`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum When {
    Auto,
    Always,
    Never,
}

impl When {
    fn forced(self) -> Option<bool> {
        match self {
            When::Auto => None,
            When::Always => Some(true),
            When::Never => Some(false),
        }
    }
}

/// Shows envelopes: JSON lines on stdout with `--json`, else text on stderr
/// (stdout is kept for the result), coloured and with progress bars as asked.
enum Printer {
    Json,
    Text(arcp_host::client::display::JobView),
}

impl Printer {
    fn new(c: &ClientArgs) -> Printer {
        if c.json {
            Printer::Json
        } else {
            Printer::Text(arcp_host::client::display::JobView::stderr(
                c.color.forced(),
                c.progress.forced(),
            ))
        }
    }

    fn show(&mut self, env: &Value) {
        match self {
            Printer::Json => println!("{env}"),
            Printer::Text(view) => view.show(env),
        }
    }
}

/// The exit status for a terminal message: 0 for success.
fn exit_for(terminal: &Value) -> anyhow::Result<()> {
    if terminal["type"] == "job.result" && terminal["payload"]["final_status"] == "success" {
        return Ok(());
    }
    std::process::exit(1);
}

async fn submit(args: SubmitArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let input_text = match args.input.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?,
        None => args.input.clone(),
    };
    let input: Value = serde_json::from_str(&input_text).context("--input is not JSON")?;
    let mut payload = serde_json::json!({"agent": args.agent, "input": input});
    if let Some(lease) = &args.lease {
        payload["lease_request"] = serde_json::from_str(lease).context("--lease is not JSON")?;
    }
    if let Some(s) = args.max_runtime {
        payload["max_runtime_sec"] = s.into();
    }
    let c = &args.client;
    // Listening for Ctrl-C starts now, before anything is printed: a signal that
    // arrives once the job is accepted must cancel it, never kill this process.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut client = arcp_host::client::Client::connect(&c.url, &c.token, None).await?;
    let mut out = Printer::new(c);
    let accepted = client.submit(payload).await?;
    let job_id = accepted["payload"]["job_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    out.show(&accepted);
    if !c.json {
        eprintln!(
            "(to cancel from elsewhere: arcp-host cancel {job_id} --session {} --resume-token {})",
            client.session_id(),
            client.welcome["resume_token"].as_str().unwrap_or_default()
        );
    }
    let mut sink: Box<dyn std::io::Write> = match &args.output {
        Some(path) => Box::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let mut cancelled = false;
    loop {
        let env = tokio::select! {
            env = client.next() => env?,
            _ = interrupt.recv(), if !cancelled => {
                cancelled = true;
                eprintln!("cancelling {job_id}…");
                client.send("job.cancel", serde_json::json!({"reason": "interrupted"}), Some(&job_id)).await?;
                continue;
            }
        };
        if env["job_id"] != job_id.as_str() {
            continue;
        }
        let body = &env["payload"]["body"];
        if !c.json && env["payload"]["kind"] == "result_chunk" {
            let data = body["data"].as_str().unwrap_or_default();
            let bytes = if body["encoding"] == "base64" {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .context("a result chunk is not base64")?
            } else {
                data.as_bytes().to_vec()
            };
            sink.write_all(&bytes)?;
            continue;
        }
        out.show(&env);
        if arcp_host::client::is_terminal(&env) {
            if !c.json
                && let Some(result) = env["payload"].get("result")
            {
                writeln!(sink, "{}", serde_json::to_string_pretty(result)?)?;
            }
            sink.flush()?;
            return exit_for(&env);
        }
    }
}

async fn jobs(args: JobsArgs) -> anyhow::Result<()> {
    let c = &args.client;
    let mut client = arcp_host::client::Client::connect(&c.url, &c.token, None).await?;
    let mut filter = serde_json::json!({});
    if !args.status.is_empty() {
        filter["status"] = args.status.clone().into();
    }
    if let Some(agent) = &args.agent {
        filter["agent"] = agent.clone().into();
    }
    let jobs = client.list_jobs(filter).await?;
    if c.json {
        for job in &jobs {
            println!("{job}");
        }
        return Ok(());
    }
    println!("{:<32} {:<20} {:<10} SUBMITTED", "JOB", "AGENT", "STATUS");
    for job in &jobs {
        let field = |k: &str| job[k].as_str().unwrap_or("-").to_owned();
        println!(
            "{:<32} {:<20} {:<10} {}",
            field("job_id"),
            field("agent"),
            field("status"),
            field("submitted_at")
        );
    }
    Ok(())
}

async fn tail(args: TailArgs) -> anyhow::Result<()> {
    let c = &args.client;
    let mut client = arcp_host::client::Client::connect(&c.url, &c.token, None).await?;
    let id = client
        .send(
            "job.subscribe",
            serde_json::json!({"job_id": args.job, "history": true}),
            None,
        )
        .await?;
    let subscribed = client.reply(&id, "job.subscribed").await?;
    let mut out = Printer::new(c);
    out.show(&subscribed);
    loop {
        let env = client.next().await?;
        if env["job_id"] != args.job.as_str() {
            continue;
        }
        out.show(&env);
        if arcp_host::client::is_terminal(&env) {
            return exit_for(&env);
        }
    }
}

async fn cancel(args: CancelArgs) -> anyhow::Result<()> {
    let c = &args.client;
    let resume = match (&args.session, &args.resume_token) {
        (Some(session_id), Some(token)) => Some(arcp_host::client::Resume {
            session_id: session_id.clone(),
            resume_token: token.clone(),
            last_event_seq: 0,
        }),
        (None, None) => None,
        _ => anyhow::bail!("--session and --resume-token go together"),
    };
    let mut client = arcp_host::client::Client::connect(&c.url, &c.token, resume).await?;
    let id = client
        .send(
            "job.cancel",
            serde_json::json!({"reason": "arcp-host cancel"}),
            Some(&args.job),
        )
        .await?;
    // A job that already ended is acknowledged with nothing: ask for its state.
    let answer = tokio::select! {
        a = client.reply(&id, "job.cancelled") => a,
        () = tokio::time::sleep(std::time::Duration::from_secs(2)) => Ok(serde_json::Value::Null),
    };
    match answer {
        Ok(env) if !env.is_null() => Printer::new(c).show(&env),
        Ok(_) => eprintln!("{}: nothing to cancel (already ended?)", args.job),
        Err(e) if args.session.is_none() => {
            anyhow::bail!(
                "{e}\n(only the submitting session may cancel a job: pass --session and --resume-token as printed by `arcp-host submit`)"
            )
        }
        Err(e) => return Err(e),
    }
    if args.session.is_some() && !c.json {
        eprintln!(
            "(the session's resume token is now {})",
            client.welcome["resume_token"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

/// Runs the plugin folder's checks on each file and says what it found.
fn new_agent(args: NewArgs) -> anyhow::Result<()> {
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    let sdk = args.sdk.unwrap_or_else(arcp_host::scaffold::default_sdk);
    let files = arcp_host::scaffold::scaffold(&args.name, &dir, &sdk)?;
    for f in &files {
        println!("created {}", dir.join(f).display());
    }
    let d = dir.display();
    let n = &args.name;
    println!("\nnext:\n  {d}/build.sh                 # builds {d}/{n}@0.1.0.wasm");
    println!("  cp {d}/{n}@0.1.0.wasm plugins/");
    println!("  arcp-host submit {n} --input '{{\"name\": \"Ada\"}}'");
    Ok(())
}

fn check(args: CheckArgs) -> anyhow::Result<()> {
    // Checking compiles one file at a time: no instance pool to reserve.
    let mut cfg = Config::default();
    cfg.limits.pool_instances = 0;
    let sandbox = arcp_host::sandbox::Sandbox::new(arcp_host::runtime::sandbox_config(&cfg))?;
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
    let plan = bench::LoadPlan {
        round_trips: args.round_trips,
        events: args.events,
        sessions: args.sessions,
        jobs_per_session: args.jobs_per_session,
        sleepers: args.sleepers,
        sleep_secs: args.sleep_secs,
        lease: match &args.lease {
            Some(text) => Some(serde_json::from_str(text).context("--lease is not JSON")?),
            None => None,
        },
    };
    if let Some(url) = &args.url {
        // Another runtime (e.g. the reference Python one): only what any ARCP runtime
        // with `echo`, `ticker` and `sleeper` agents can answer.
        println!("# arcp-host bench --url {url}");
        let tokens = bench::split_tokens(&args.bench_token);
        return bench::run_load(url, &tokens, args.pid, &plan).await;
    }
    let mut cfg = load_config(&args.common)?;
    // One principal per 500 sessions and per 5,000 jobs at once, so that neither
    // `limits.max_sessions_per_principal` nor `max_running_jobs_per_principal` (at
    // their defaults) refuses the bench's own load.
    let principals = [
        1,
        args.sessions.div_ceil(500),
        (args.sessions * args.jobs_per_session).div_ceil(5000),
        args.sleepers.div_ceil(5000),
    ]
    .into_iter()
    .max()
    .unwrap_or(1);
    let run = uuid::Uuid::now_v7().simple();
    let tokens: Vec<String> = (0..principals)
        .map(|i| {
            let token = format!("bench-{run}-{i}");
            let principal = if i == 0 {
                "bench".into()
            } else {
                format!("bench-{i}")
            };
            cfg.tokens.insert(token.clone(), principal);
            token
        })
        .collect();
    let token = tokens[0].clone();
    let pid = Some(args.pid.unwrap_or_else(std::process::id));
    let plugins_dir = cfg.plugins.clone();
    let data =
        std::env::temp_dir().join(format!("arcp-bench-data-{}", uuid::Uuid::now_v7().simple()));
    cfg.data = data.clone();
    let store = if cfg.in_memory { "in-memory" } else { "sqlite" };
    let epoch_tick = std::time::Duration::from_millis(cfg.limits.epoch_tick_ms);
    let runtime = start(cfg).await?;
    println!(
        "# arcp-host bench: {store} store, pooling allocator: {}",
        runtime.sandbox.is_pooling()
    );
    if !args.load_only {
        println!("\n## plugin load and instantiation");
        bench::plugins(runtime.sandbox.clone(), &plugins_dir, args.instantiations).await?;
        bench::sandboxed_echo(&runtime, args.instantiations).await?;
        println!("\n## lease check, host call, fuel overhead");
        bench::sandbox_costs(runtime.sandbox.clone(), &args.probe).await?;
        let rounds = 200_000_000;
        let [without, with, sandboxed] =
            bench::epoch_overhead(runtime.sandbox.clone(), &args.probe, rounds, epoch_tick).await?;
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        println!(
            "epoch interruption ({rounds} xorshift rounds, interleaved, best of 5): plain engine without epochs {:.1} ms, with epochs ({} ms ticks, yielding at each) {:.1} ms, overhead {:+.1}%; the sandbox's own run {:.1} ms ({:+.1}% over no epochs)",
            ms(without),
            epoch_tick.as_millis(),
            ms(with),
            (with.as_secs_f64() / without.as_secs_f64() - 1.0) * 100.0,
            ms(sandboxed),
            (sandboxed.as_secs_f64() / without.as_secs_f64() - 1.0) * 100.0
        );
    }
    let url = bench::serve_in_process(runtime.clone()).await?;
    if args.round_trips > 0 {
        println!("\n## echo submit→result round trip over loopback WebSocket ({url})");
        let phase = bench::Phase::begin(pid);
        println!(
            "{}",
            bench::round_trips(&url, &token, args.round_trips, plan.lease.as_ref()).await?
        );
        if let Some(line) = phase.end() {
            println!("{line}");
        }
    }
    if args.cancels > 0 {
        println!("\n## spinner cancel latency (job.cancel sent → terminal received)");
        println!(
            "{}",
            bench::cancel_latency(&url, &token, args.cancels).await?
        );
    }
    if args.spinners > 0 && args.round_trips > 0 {
        let n = args.round_trips.min(500);
        let r = bench::noisy_neighbours(&url, &token, args.spinners, n).await?;
        let mib = |b: u64| b as f64 / f64::from(1 << 20);
        println!(
            "\n## echo round trip beside {} spinners (same process)",
            args.spinners
        );
        println!("idle:   {}", r.idle);
        println!("loaded: {}", r.loaded);
        println!(
            "p50 ratio loaded/idle: {:.2}",
            r.loaded.p50.as_secs_f64() / r.idle.p50.as_secs_f64()
        );
        println!(
            "resident memory: {:.1} MiB before, {:.1} MiB with the spinners, {:.1} MiB after they ended",
            mib(r.resident[0]),
            mib(r.resident[1]),
            mib(r.resident[2])
        );
    }
    // The rest is what any runtime can be measured on over --url.
    let rest = bench::LoadPlan {
        round_trips: 0,
        ..plan
    };
    bench::run_load(&url, &tokens, pid, &rest).await?;
    runtime.store.flush().ok();
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}
