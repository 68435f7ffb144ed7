//! Shared test harness: the real `arcp-host` binary on a loopback port, and a small
//! raw WebSocket client that speaks envelopes.
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const TOKEN: &str = "test-token";
pub const OTHER_TOKEN: &str = "other-token";

/// The repository's bundled plugin folder.
pub fn bundled_plugins() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins")
}

/// A plugin folder with the test-only `hostile` plugin (tests/plugins) and the
/// bundled plugins named (`echo@1.0.0.wasm`, ...).
pub fn hostile_folder(bundled: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plugins/hostile@1.0.0.wasm"),
        dir.path().join("hostile@1.0.0.wasm"),
    )
    .unwrap();
    for f in bundled {
        std::fs::copy(bundled_plugins().join(f), dir.path().join(f)).unwrap();
    }
    dir
}

/// One HTTP/1.1 request, as a small fake upstream in a test sees it.
pub struct HttpRequest {
    /// Request line and headers.
    pub head: String,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The request path.
    pub fn path(&self) -> &str {
        self.head.split_whitespace().nth(1).unwrap_or("")
    }

    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    /// The body as JSON (`null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Reads one request (head and `Content-Length` body) from a fake upstream's socket.
pub async fn read_http_request(sock: &mut TcpStream) -> Option<HttpRequest> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let len: usize = HttpRequest {
            head: head.clone(),
            body: Vec::new(),
        }
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
        if buf.len() >= end + 4 + len {
            return Some(HttpRequest {
                head,
                body: buf[end + 4..end + 4 + len].to_vec(),
            });
        }
    }
}

/// Answers `200 OK` with a JSON body and closes.
pub async fn write_json_response(sock: &mut TcpStream, body: &str) {
    use tokio::io::AsyncWriteExt;
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = sock.write_all(resp.as_bytes()).await;
}

/// Takes over a stopped host's data folder for a second host: the folder is moved
/// to a new `TempDir`, so that the two hosts' handles never delete it twice.
pub fn reuse_data_dir(path: &Path) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("reuse")
        .tempdir_in(path.parent().expect("a data folder has a parent"))
        .expect("temp dir");
    std::fs::remove_dir(dir.path()).expect("remove placeholder");
    std::fs::rename(path, dir.path()).expect("move data folder");
    dir
}

/// A config file holding `toml`; returns its folder (keep it alive) and its path.
pub fn config_file(toml: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("arcp-host.toml");
    std::fs::write(&path, toml).unwrap();
    let path = path.to_str().unwrap().to_owned();
    (dir, path)
}

/// A running `arcp-host serve`.
pub struct Host {
    pub url: String,
    pub child: Child,
    pub data: tempfile::TempDir,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Host {
    /// Starts the binary on 127.0.0.1:0 with the given plugin folder and flags.
    pub fn start(plugins: &Path, extra: &[&str]) -> Host {
        let data = tempfile::tempdir().unwrap();
        Host::start_with_data(plugins, data, extra)
    }

    pub fn start_with_data(plugins: &Path, data: tempfile::TempDir, extra: &[&str]) -> Host {
        Host::start_with_env(plugins, data, extra, &[])
    }

    /// Starts the binary with extra environment variables.
    pub fn start_with_env(
        plugins: &Path,
        data: tempfile::TempDir,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Host {
        let mut child = Command::new(env!("CARGO_BIN_EXE_arcp-host"))
            .envs(envs.iter().copied())
            .args(["serve", "--listen", "127.0.0.1:0", "--plugins"])
            .arg(plugins)
            .arg("--data")
            .arg(data.path())
            .args([
                "--token",
                &format!("{TOKEN}=alice"),
                "--token",
                &format!("{OTHER_TOKEN}=mallory"),
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn arcp-host");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut url = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            log.lock().unwrap().push(line.clone());
            if let Some(rest) = line.split("listening on ").nth(1) {
                url = Some(rest.trim().to_owned());
                break;
            }
        }
        let url = url.unwrap_or_else(|| panic!("host did not start: {:?}", log.lock().unwrap()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                log2.lock().unwrap().push(line);
            }
        });
        Host {
            url,
            child,
            data,
            log,
        }
    }

    pub fn logs(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw ARCP client over WebSocket.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub session_id: String,
    pub welcome: Value,
    n: u64,
}

pub fn envelope_id(n: u64) -> String {
    // A syntactically valid uppercase ULID, unique per client message.
    format!("01J{n:023}")
}

impl Client {
    pub async fn raw(url: &str) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        ws
    }

    /// Connects and completes the handshake with all features.
    pub async fn connect(url: &str, token: &str) -> Client {
        Client::connect_with(
            url,
            token,
            json!([
                "heartbeat",
                "ack",
                "list_jobs",
                "subscribe",
                "lease_expires_at",
                "cost.budget",
                "progress",
                "result_chunk",
                "agent_versions"
            ]),
            None,
        )
        .await
    }

    /// The `resume` object of a hello that resumes this client's session after
    /// `last_event_seq`.
    pub fn resume_at(&self, last_event_seq: u64) -> Value {
        json!({
            "session_id": self.session_id,
            "resume_token": self.welcome["payload"]["resume_token"],
            "last_event_seq": last_event_seq,
        })
    }

    pub async fn connect_with(
        url: &str,
        token: &str,
        features: Value,
        resume: Option<Value>,
    ) -> Client {
        let mut ws = Client::raw(url).await;
        let mut payload = json!({
            "client": {"name": "rust-test", "version": "0"},
            "auth": {"scheme": "bearer", "token": token},
            "capabilities": {"encodings": ["json"], "features": features},
        });
        if let Some(r) = resume {
            payload["resume"] = r;
        }
        let hello = json!({"arcp": "1.1", "id": envelope_id(0), "type": "session.hello", "payload": payload});
        ws.send(Message::text(hello.to_string())).await.unwrap();
        let welcome = next_frame(&mut ws).await.expect("welcome");
        let session_id = welcome["payload"]["session_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Client {
            ws,
            session_id,
            welcome,
            n: 1,
        }
    }

    /// Sends a message; returns its envelope id.
    pub async fn send(&mut self, kind: &str, payload: Value) -> String {
        self.send_env(kind, payload, None).await
    }

    pub async fn send_env(&mut self, kind: &str, payload: Value, job_id: Option<&str>) -> String {
        self.n += 1;
        let id = envelope_id(self.n);
        let mut env = json!({"arcp": "1.1", "id": id, "type": kind, "session_id": self.session_id, "payload": payload});
        if let Some(j) = job_id {
            env["job_id"] = j.into();
        }
        self.ws.send(Message::text(env.to_string())).await.unwrap();
        id
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).await.unwrap();
    }

    /// The next frame (10 s timeout), skipping pings.
    pub async fn next(&mut self) -> Value {
        loop {
            let f = next_frame(&mut self.ws).await.expect("frame");
            if f["type"] != "session.ping" {
                return f;
            }
        }
    }

    /// Frames until one of type `kind` (returned last).
    pub async fn until(&mut self, kind: &str) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let f = self.next().await;
            let done = f["type"] == kind;
            seen.push(f);
            if done {
                return seen;
            }
        }
    }

    /// Frames until the terminal message of a job.
    pub async fn until_terminal(&mut self) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let f = self.next().await;
            let done = f["type"] == "job.result" || f["type"] == "job.error";
            seen.push(f);
            if done {
                return seen;
            }
        }
    }

    /// Submits and returns the `job.accepted` frame (or the `session.error`).
    pub async fn submit(&mut self, payload: Value) -> Value {
        self.send("job.submit", payload).await;
        loop {
            let f = self.next().await;
            if f["type"] == "job.accepted" || f["type"] == "session.error" {
                return f;
            }
        }
    }
}

pub async fn next_frame(ws: &mut WebSocketStream<MaybeTlsStream<TcpStream>>) -> Option<Value> {
    next_frame_within(ws, Duration::from_secs(10)).await
}

/// The next text frame as JSON, `None` on close or after `wait`.
pub async fn next_frame_within(
    ws: &mut WebSocketStream<MaybeTlsStream<TcpStream>>,
    wait: Duration,
) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(wait, ws.next()).await.ok()??.ok()?;
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).ok(),
            Message::Close(_) => return None,
            _ => continue,
        }
    }
}

/// `GET /metrics` from `host`'s WebSocket port: the body, and it parsed as
/// Prometheus text.
pub async fn scrape_metrics(host: &Host) -> (String, prometheus_parse::Scrape) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = host
        .url
        .trim_start_matches("ws://")
        .trim_end_matches("/arcp");
    let mut sock = TcpStream::connect(addr).await.unwrap();
    sock.write_all(b"GET /metrics HTTP/1.1\r\nHost: arcp\r\nAccept: */*\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    sock.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain"), "{head}");
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("Prometheus text");
    (body.to_owned(), parsed)
}
