//! A native-code anchor for arcp-host's figures: the Rust SDK's runtime (crates.io
//! `arcp` 2.0.0) serving two native tool handlers over loopback WebSocket, driven by
//! the SDK's own client.
//!
//! - `echo` returns its arguments: sequential `tool.invoke` → `job.completed` round
//!   trips, timed at the client (p50/p99/p999), as `arcp-host bench` times
//!   `job.submit` → `job.result`.
//! - `flood` emits `count` events for one job: the SDK's tool context has no generic
//!   event emitter, so each event is a `metric` envelope (`ToolContext::charge` of 0
//!   in an unbudgeted currency, which emits exactly one envelope), persisted to the
//!   runtime's event log and sent, like arcp-host's `log` events. The SDK client
//!   drops intermediate events, so they are counted by a transport wrapper under it.
//!
//! The wire formats differ (this SDK speaks `session.open`/`tool.invoke`/
//! `job.completed`; arcp-host the v1.1 draft's `session.hello`/`job.submit`/
//! `job.result`), so this is an anchor for what native code reaches on the same
//! machine, not a conformance peer.
//!
//! Sockets: arcp-host's server sets `TCP_NODELAY` on every connection; the SDK's
//! `WebSocketTransport::serve_loopback`/`dial` leave Nagle's algorithm on, and then a
//! job's two answers (`job.accepted`, `job.completed`) written back to back wait out
//! the peer's delayed ACK (~40 ms on Linux). The main figures use loopback sockets
//! with `TCP_NODELAY` on both ends, wrapped by the SDK's own
//! `WebSocketTransport::accept_stream`; a shorter run on the SDK's default sockets
//! follows, for the record.
//!
//! Usage: `arcp-peer-bench [ROUND_TRIPS] [EVENTS]` (defaults 2000, 200000).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arcp::auth::BearerAuthenticator;
use arcp::messages::{AuthScheme, Capabilities, ClientIdentity, Credentials};
use arcp::runtime::{ARCPRuntime, ToolContext, ToolHandler, ToolRegistryBuilder};
use arcp::transport::Transport;
use arcp::transport::websocket::WebSocketTransport;
use arcp::{ARCPClient, ARCPError, Envelope, MessageType};
use async_trait::async_trait;
use serde_json::{Value, json};

struct Echo;

#[async_trait]
impl ToolHandler for Echo {
    fn name(&self) -> &str {
        "echo"
    }
    async fn invoke(&self, input: Value, _ctx: ToolContext) -> Result<Value, ARCPError> {
        Ok(json!({"echoed": input}))
    }
}

struct Flood;

#[async_trait]
impl ToolHandler for Flood {
    fn name(&self) -> &str {
        "flood"
    }
    async fn invoke(&self, input: Value, ctx: ToolContext) -> Result<Value, ARCPError> {
        let count = input["count"].as_u64().unwrap_or(0);
        for _ in 0..count {
            ctx.charge("cost.bench", 0.0, "EVT").await?;
        }
        Ok(json!({"events": count}))
    }
}

/// The client's transport, counting the `metric` envelopes it receives.
struct Counting {
    inner: WebSocketTransport,
    metrics: Arc<AtomicU64>,
}

#[async_trait]
impl Transport for Counting {
    async fn send(&self, envelope: Envelope) -> Result<(), ARCPError> {
        self.inner.send(envelope).await
    }
    async fn recv(&self) -> Result<Option<Envelope>, ARCPError> {
        let env = self.inner.recv().await?;
        if let Some(e) = &env
            && matches!(e.payload, MessageType::Metric(_))
        {
            self.metrics.fetch_add(1, Ordering::Relaxed);
        }
        Ok(env)
    }
    async fn close(&self) -> Result<(), ARCPError> {
        self.inner.close().await
    }
}

type Session = arcp::client::Session<arcp::client::Authenticated, Counting>;

fn io(e: impl std::fmt::Display) -> ARCPError {
    ARCPError::Unavailable {
        detail: e.to_string(),
    }
}

/// A loopback WebSocket connection, `TCP_NODELAY` on both ends: (server, client).
async fn nodelay_pair() -> Result<(WebSocketTransport, WebSocketTransport), ARCPError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(io)?;
    let addr = listener.local_addr().map_err(io)?;
    let accept = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.map_err(io)?;
        sock.set_nodelay(true).map_err(io)?;
        let ws = tokio_tungstenite::accept_async(sock).await.map_err(io)?;
        Ok::<_, ARCPError>(WebSocketTransport::accept_stream(ws))
    });
    let sock = tokio::net::TcpStream::connect(addr).await.map_err(io)?;
    sock.set_nodelay(true).map_err(io)?;
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), sock)
        .await
        .map_err(io)?;
    let server = accept.await.map_err(io)??;
    Ok((server, WebSocketTransport::accept_stream(ws)))
}

/// A fresh loopback WebSocket connection served by `runtime`, with an
/// authenticated SDK client session on it.
async fn connect(
    runtime: &ARCPRuntime,
    nodelay: bool,
) -> Result<(Session, Arc<AtomicU64>), ARCPError> {
    let (server, client) = if nodelay {
        nodelay_pair().await?
    } else {
        WebSocketTransport::serve_loopback().await?
    };
    let _conn = runtime.serve_connection(server);
    let metrics = Arc::new(AtomicU64::new(0));
    let session = ARCPClient::new(Counting {
        inner: client,
        metrics: metrics.clone(),
    })
    .open()?
    .authenticate(
        Credentials {
            scheme: AuthScheme::Bearer,
            token: Some("bench-token".into()),
        },
        ClientIdentity {
            kind: "arcp-peer-bench".into(),
            version: "0.1.0".into(),
            fingerprint: None,
            principal: None,
        },
        Capabilities::default(),
    )
    .await?;
    Ok((session, metrics))
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let round_trips: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2000);
    let events: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(200_000);

    let tools = ToolRegistryBuilder::new()
        .with(Arc::new(Echo))
        .with(Arc::new(Flood))
        .build();
    let runtime = ARCPRuntime::builder()
        .with_authenticator(Box::new(
            BearerAuthenticator::new().with_token("bench-token", "bench"),
        ))
        .with_tools(tools)
        .build()
        .await?;
    println!(
        "# Rust SDK peer: arcp {} (protocol {}), native handlers, loopback WebSocket",
        arcp::IMPL_VERSION,
        arcp::PROTOCOL_VERSION
    );

    run(&runtime, true, round_trips, events).await?;
    println!("\n# the same on the SDK's default sockets (Nagle on), shorter");
    run(&runtime, false, round_trips.min(200), events / 10).await?;
    Ok(())
}

async fn run(
    runtime: &ARCPRuntime,
    nodelay: bool,
    round_trips: usize,
    events: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let (session, _) = connect(runtime, nodelay).await?;
    for i in 0..round_trips.min(50) {
        session
            .invoke("echo", json!({"warm": i}))
            .await?
            .join()
            .await?;
    }
    let mut samples = Vec::with_capacity(round_trips);
    for i in 0..round_trips {
        let t = Instant::now();
        let out = session
            .invoke("echo", json!({"i": i}))
            .await?
            .join()
            .await?;
        samples.push(t.elapsed());
        assert_eq!(out["echoed"]["i"], i, "echo answered {out}");
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("\n## echo tool.invoke→job.completed round trip over loopback WebSocket");
    println!(
        "n={} p50={:.3} ms p99={:.3} ms p999={:.3} ms max={:.3} ms",
        samples.len(),
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.99)),
        ms(percentile(&samples, 0.999)),
        ms(samples[samples.len() - 1])
    );

    if events > 0 {
        let (session, metrics) = connect(runtime, nodelay).await?;
        let t = Instant::now();
        let out = session
            .invoke("flood", json!({"count": events}))
            .await?
            .join()
            .await?;
        let elapsed = t.elapsed();
        let got = metrics.load(Ordering::Relaxed);
        assert_eq!(out["events"], events, "flood answered {out}");
        assert_eq!(
            got, events,
            "expected {events} metric events, counted {got}"
        );
        println!("\n## events from one job to one client ({events} metric events)");
        println!("{:.0} events/s", events as f64 / elapsed.as_secs_f64());
    }
    Ok(())
}
