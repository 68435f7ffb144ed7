//! The floor under arcp-host's echo round trip on this machine: what a WebSocket
//! server built from the same parts (tokio, tokio-tungstenite, SQLite in WAL mode,
//! `synchronous = NORMAL`) reaches when it does nothing but the work the protocol
//! cannot skip, timed by a client of the same parts, each in its own process as in
//! `benches/run.sh`.
//!
//! Shapes, each served by a child process of this binary (`floor serve SHAPE WORKERS`):
//! - `echo`: every text frame is sent straight back (the transport's round trip; what
//!   `session.ping` costs arcp-host without its session);
//! - `two`: every frame gets two answers, the client waits for the second (a job's
//!   `job.accepted` then `job.result`);
//! - `durable`: as `two`, but each answer is sent only after a row holding it has been
//!   committed by one writer thread (one transaction each, handed over by a channel
//!   and answered by a oneshot, as arcp-host's store does): the least a runtime that
//!   writes before it sends (spec's resume guarantee) does per echo job when the job's
//!   result comes after its acceptance was committed;
//! - `durable1`: one transaction for both answers, then both are sent: the least such a
//!   runtime could do if a job ran and ended before its acceptance was committed;
//! - `inline`: as `durable`, but the connection's task commits each row itself, on its
//!   tokio worker, under a mutex around the one connection: no hand-over to a writer
//!   thread and back, so the difference from `durable` is what the two thread wake-ups
//!   of each commit cost.
//!
//! - `flood`: on `flood N`, N event frames of the size of arcp-host's ticker events
//!   (320 bytes) are made by one task and sent by the connection's task as fast as the
//!   client reads them (the one-job event flood without a job, an outbox or ARCP);
//! - `flood-durable`: as `flood`, but each frame is sent only once a writer thread has
//!   committed it: the writer takes everything queued, stores it as one row (frames
//!   joined, as arcp-host stores a run of one job's events) in one transaction, and
//!   publishes the last sequence number it committed (group commit, write before send);
//!   nothing checkpoints the log, which a runtime must do beside this.
//!
//! Each shape runs with one tokio worker (nothing wakes another thread) and with two
//! (one per core, arcp-host's default). No ARCP parsing, no job, no sandbox: the gap
//! between these figures and arcp-host's is what the runtime itself costs.
//!
//! Usage: `floor [ROUND_TRIPS [EVENTS]]` (defaults 5000 and 200000).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// One row to commit, and who to tell once it is.
type Commit = (String, oneshot::Sender<()>);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        let shape = args.get(2).cloned().unwrap_or_else(|| "echo".into());
        let workers: usize = args.get(3).and_then(|w| w.parse().ok()).unwrap_or(2);
        serve(&shape, workers);
        return;
    }
    let n: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(5000);
    println!("## floor: bare tokio-tungstenite server, {n} sequential round trips each");
    for shape in ["echo", "two", "durable", "durable1", "inline"] {
        for workers in [1, 2] {
            match measure(shape, workers, n) {
                Ok(line) => println!("{shape:<8} workers={workers} {line}"),
                Err(e) => println!("{shape:<8} workers={workers} failed: {e}"),
            }
        }
    }
    let events: u64 = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(200_000);
    println!("## floor: {events} events from one producer to one client");
    for shape in ["flood", "flood-durable"] {
        for workers in [1, 2] {
            match measure_flood(shape, workers, events) {
                Ok((rate, cpu)) => {
                    println!("{shape:<13} workers={workers} {rate:.0} events/s (server CPU: {cpu})")
                }
                Err(e) => println!("{shape:<13} workers={workers} failed: {e}"),
            }
        }
    }
}

/// Starts `floor serve SHAPE WORKERS` and returns it with its URL.
fn spawn_server(
    shape: &str,
    workers: usize,
) -> Result<(std::process::Child, String, std::path::PathBuf), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let data = std::env::temp_dir().join(format!("arcp-floor-{}-{shape}", std::process::id()));
    let mut child = std::process::Command::new(exe)
        .args(["serve", shape, &workers.to_string()])
        .env("FLOOR_DATA", &data)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut port = String::new();
    if let Some(out) = child.stdout.as_mut() {
        use std::io::BufRead;
        std::io::BufReader::new(out)
            .read_line(&mut port)
            .map_err(|e| e.to_string())?;
    }
    Ok((child, format!("ws://127.0.0.1:{}/", port.trim()), data))
}

/// Asks a `flood` server for `events` frames and times their arrival.
fn measure_flood(shape: &str, workers: usize, events: u64) -> Result<(f64, String), String> {
    let (mut child, url, data) = spawn_server(shape, workers)?;
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let result = rt.block_on(async {
        let mut ws = connect(&url).await?;
        let start = Instant::now();
        ws.send(Message::text(format!("flood {events}")))
            .await
            .map_err(|e| e.to_string())?;
        receive(&mut ws, events).await?;
        Ok(events as f64 / start.elapsed().as_secs_f64())
    });
    let threads = thread_cpu(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&data);
    result.map(|rate| (rate, threads))
}

/// CPU time (user + system, ms) of each thread of process `pid` so far, by name.
fn thread_cpu(pid: u32) -> String {
    let tick_ms = 10; // USER_HZ is 100 on Linux
    let mut by_name = std::collections::BTreeMap::<String, u64>::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return String::new();
    };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: utime and stime are the 12th and 13th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
            .sum();
        *by_name.entry(name.trim().to_owned()).or_default() += ticks * tick_ms;
    }
    by_name
        .iter()
        .filter(|(_, ms)| **ms > 0)
        .map(|(name, ms)| format!("{name} {ms} ms"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Starts `floor serve SHAPE WORKERS`, drives it, stops it.
fn measure(shape: &str, workers: usize, n: usize) -> Result<String, String> {
    let (mut child, url, data) = spawn_server(shape, workers)?;
    let answers = if shape == "echo" { 1 } else { 2 };
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let result = rt.block_on(drive(&url, n, answers));
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&data);
    let mut times = result?;
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(format!(
        "n={} p50={:.3} ms p99={:.3} ms p999={:.3} ms",
        times.len(),
        ms(at(0.50)),
        ms(at(0.99)),
        ms(at(0.999))
    ))
}

/// A WebSocket client of `url` (`ws://HOST:PORT/`), with `TCP_NODELAY` as the
/// servers have it.
async fn connect(url: &str) -> Result<WebSocketStream<TcpStream>, String> {
    let addr = url.trim_start_matches("ws://").trim_end_matches('/');
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let (ws, _) = tokio_tungstenite::client_async(url, tcp)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

/// Reads `n` text frames; anything else is an error.
async fn receive(ws: &mut WebSocketStream<TcpStream>, n: u64) -> Result<(), String> {
    for _ in 0..n {
        match ws.next().await {
            Some(Ok(Message::Text(_))) => {}
            other => return Err(format!("unexpected {other:?}")),
        }
    }
    Ok(())
}

/// Sequential round trips: a frame out, `answers` frames back.
async fn drive(url: &str, n: usize, answers: usize) -> Result<Vec<Duration>, String> {
    let mut ws = connect(url).await?;
    let frame = r#"{"arcp":"1.1","id":"01J0000000000000000000000","type":"job.submit","payload":{"agent":"echo","input":{"n":1}}}"#;
    let mut times = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let start = Instant::now();
        ws.send(Message::text(frame))
            .await
            .map_err(|e| e.to_string())?;
        receive(&mut ws, answers as u64).await?;
        // The first tenth warms up.
        if i >= n / 10 {
            times.push(start.elapsed());
        }
    }
    Ok(times)
}

fn serve(shape: &str, workers: usize) {
    let rt = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    }
    .enable_all()
    .build()
    .expect("runtime");
    let writer = shape.starts_with("durable").then(start_writer);
    let inline =
        (shape == "inline").then(|| std::sync::Arc::new(std::sync::Mutex::new(open_events())));
    let batches = (shape == "flood-durable").then(start_batch_writer);
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        println!("{}", listener.local_addr().expect("addr").port());
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (shape, writer, batches) = (shape.to_owned(), writer.clone(), batches.clone());
            let inline = inline.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                if shape.starts_with("flood") {
                    flood(ws, batches).await;
                    return;
                }
                while let Some(Ok(Message::Text(text))) = ws.next().await {
                    let answers = if shape == "echo" { 1 } else { 2 };
                    for answer in 0..answers {
                        if let Some(conn) = &inline {
                            let Ok(mut conn) = conn.lock() else { return };
                            commit_row(&mut conn, &text);
                        }
                        let commit = match shape.as_str() {
                            "durable" => true,
                            "durable1" => answer == 0,
                            _ => false,
                        };
                        if let (true, Some(writer)) = (commit, &writer) {
                            let (done, committed) = oneshot::channel();
                            if writer.send((text.to_string(), done)).is_err()
                                || committed.await.is_err()
                            {
                                return;
                            }
                        }
                        if ws.send(Message::Text(text.clone())).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
}

/// One thread that commits each row in its own transaction, in a WAL-mode file.
fn start_writer() -> mpsc::Sender<Commit> {
    let (tx, rx) = mpsc::channel::<Commit>();
    let mut conn = open_events();
    std::thread::spawn(move || {
        while let Ok((frame, done)) = rx.recv() {
            commit_row(&mut conn, &frame);
            let _ = done.send(());
        }
    });
    tx
}

/// The database of the `durable` shapes: one row per answer.
fn open_events() -> rusqlite::Connection {
    open_database(
        "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, frame TEXT NOT NULL);",
    )
}

/// Commits `frame` as a row of its own, in its own transaction (the statement is
/// prepared once and cached, as arcp-host's store does).
fn commit_row(conn: &mut rusqlite::Connection, frame: &str) {
    let txn = conn.transaction().expect("begin");
    txn.prepare_cached("INSERT INTO events (frame) VALUES (?1)")
        .and_then(|mut insert| insert.execute([frame]))
        .expect("insert");
    txn.commit().expect("commit");
}

/// The committing side of `flood-durable`: frames in with their sequence numbers,
/// the last committed sequence number out.
type Batches = (mpsc::Sender<(u64, String)>, watch::Receiver<u64>);

/// Serves one `flood N` request: one task makes the frames, this one sends them, each
/// (with `batches`) once committed. Frames written together are flushed once.
async fn flood(mut ws: WebSocketStream<TcpStream>, batches: Option<Batches>) {
    let Some(Ok(Message::Text(request))) = ws.next().await else {
        return;
    };
    let n: u64 = request
        .strip_prefix("flood ")
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let (frames, mut queued) = tokio::sync::mpsc::channel::<(u64, String)>(2048);
    let store = batches.as_ref().map(|(tx, _)| tx.clone());
    tokio::spawn(async move {
        for seq in 1..=n {
            let frame = format!(
                r#"{{"arcp":"1.1","id":"01M94DNFPFN1H0RFMCBRV{seq:05}","type":"job.event","session_id":"sess_01M94DNFPEKDDJ2ZTM7MDY8HTQ","trace_id":"01a248dabecfe5d33065ed07def3640e","job_id":"job_01M94DNFPFDX3JZNTTWW2ZZC23","event_seq":{seq},"payload":{{"kind":"log","ts":"2026-12-06T00:57:04.975826Z","body":{{"level":"info","message":"tick {seq}"}}}}}}"#
            );
            if let Some(store) = &store
                && store.send((seq, frame.clone())).is_err()
            {
                return;
            }
            if frames.send((seq, frame)).await.is_err() {
                return;
            }
        }
    });
    let mut settled = batches.map(|(_, settled)| settled);
    while let Some((seq, frame)) = queued.recv().await {
        if let Some(settled) = settled.as_mut()
            && settled.wait_for(|s| *s >= seq).await.is_err()
        {
            return;
        }
        if ws.feed(Message::text(frame)).await.is_err() {
            return;
        }
        if queued.is_empty() && ws.flush().await.is_err() {
            return;
        }
    }
    let _ = ws.flush().await;
}

/// One thread that commits whatever is queued as one row in one transaction and then
/// publishes the last sequence number it holds. It never checkpoints (nor does anyone
/// else): a floor under any runtime that keeps its log bounded.
fn start_batch_writer() -> Batches {
    let (tx, rx) = mpsc::channel::<(u64, String)>();
    let (settled_tx, settled) = watch::channel(0u64);
    let mut conn = open_database(
        "PRAGMA wal_autocheckpoint = 0;
         CREATE TABLE IF NOT EXISTS runs (first INTEGER PRIMARY KEY, last INTEGER NOT NULL, frames TEXT NOT NULL);",
    );
    let writer = std::thread::Builder::new().name("floor-writer".into());
    let _writer = writer
        .spawn(move || {
            while let Ok((first, frame)) = rx.recv() {
                let (mut last, mut frames) = (first, frame);
                let mut taken = 1;
                while let Ok((seq, frame)) = rx.try_recv() {
                    frames.push('\n');
                    frames.push_str(&frame);
                    last = seq;
                    taken += 1;
                    if taken == 4096 {
                        break;
                    }
                }
                let txn = conn.transaction().expect("begin");
                txn.execute(
                    "INSERT INTO runs (first, last, frames) VALUES (?1, ?2, ?3)",
                    rusqlite::params![first as i64, last as i64, frames],
                )
                .expect("insert");
                txn.commit().expect("commit");
                settled_tx.send_replace(last);
            }
        })
        .expect("writer thread");
    (tx, settled)
}

/// `$FLOOR_DATA/floor.db` in WAL mode with `synchronous = NORMAL`, as arcp-host
/// opens its store, after `schema`.
fn open_database(schema: &str) -> rusqlite::Connection {
    let dir = std::env::var_os("FLOOR_DATA").map_or_else(std::env::temp_dir, Into::into);
    std::fs::create_dir_all(&dir).expect("data folder");
    let conn = rusqlite::Connection::open(dir.join("floor.db")).expect("open");
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
        .expect("pragmas");
    conn.execute_batch(schema).expect("schema");
    conn
}
