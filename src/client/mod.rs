//! A client of ARCP over WebSocket, behind the `submit`, `jobs`, `tail` and `cancel`
//! commands.
//!
//! It speaks the protocol to any runtime URL exactly as another client would, and
//! knows nothing of this runtime's internals: what it can do is what the wire allows
//! (for example, only the session that submitted a job may cancel it, so `cancel`
//! resumes that session when given its id and resume token).

pub mod display;

use crate::protocol::ids;
use anyhow::Context as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Features this client asks for: all this runtime speaks but `ack`, which it never
/// sends.
fn features() -> Vec<&'static str> {
    crate::session::RUNTIME_FEATURES
        .iter()
        .copied()
        .filter(|f| *f != "ack")
        .collect()
}

/// One connected, welcomed session.
pub struct Client {
    ws: Ws,
    /// `session.welcome`'s payload.
    pub welcome: Value,
}

/// One envelope as read by [`Client::next_frame`].
pub struct Frame {
    /// Its `type`.
    pub kind: String,
    /// Its `event_seq`, if sequenced.
    pub event_seq: Option<u64>,
    /// The whole envelope's text.
    pub text: Utf8Bytes,
}

/// A session to resume instead of opening a new one.
pub struct Resume {
    /// Its id.
    pub session_id: String,
    /// Its current resume token.
    pub resume_token: String,
    /// The last `event_seq` seen (replay starts after it).
    pub last_event_seq: u64,
}

impl Client {
    /// Connects to `url`, says hello with `token`, and waits for the welcome. A
    /// refusal (`session.error`) is an error carrying its code and message.
    pub async fn connect(url: &str, token: &str, resume: Option<Resume>) -> anyhow::Result<Client> {
        // tungstenite zero-fills its whole read buffer before each read (128 KiB by
        // default): 16 KiB still takes a burst of events in one read, and keeps a
        // load generator's thousand connections cheap. Nagle off: requests are
        // single small frames that should leave at once.
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(16 << 10);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        let mut payload = json!({
            "client": {"name": "arcp-host", "version": env!("CARGO_PKG_VERSION")},
            "auth": {"scheme": "bearer", "token": token},
            "capabilities": {"encodings": ["json"], "features": features()},
        });
        if let Some(r) = resume {
            payload["resume"] = json!({"session_id": r.session_id, "resume_token": r.resume_token,
                "last_event_seq": r.last_event_seq});
        }
        let mut client = Client {
            ws,
            welcome: Value::Null,
        };
        client.send("session.hello", payload, None).await?;
        let welcome = client.next().await?;
        if welcome["type"] != "session.welcome" {
            anyhow::bail!(
                "the runtime refused the session: {}",
                describe_error(&welcome)
            );
        }
        client.welcome = welcome["payload"].clone();
        Ok(client)
    }

    /// The session id.
    pub fn session_id(&self) -> &str {
        self.welcome["session_id"].as_str().unwrap_or_default()
    }

    /// Sends one envelope (with whatever [`Client::feed`] queued before it); returns
    /// its id.
    pub async fn send(
        &mut self,
        kind: &str,
        payload: Value,
        job_id: Option<&str>,
    ) -> anyhow::Result<String> {
        let id = self.feed(kind, payload, job_id).await?;
        self.flush().await?;
        Ok(id)
    }

    /// Queues one envelope without writing it to the socket; returns its id. The
    /// envelopes queued go out together at the next [`Client::flush`] or
    /// [`Client::send`] (or once the queue's buffer fills): one write for a burst,
    /// the way a client submitting many jobs at once would send them.
    pub async fn feed(
        &mut self,
        kind: &str,
        payload: Value,
        job_id: Option<&str>,
    ) -> anyhow::Result<String> {
        let id = ids::envelope_id();
        let mut env = json!({"arcp": "1.1", "id": id, "type": kind, "payload": payload});
        if let Some(sid) = self.welcome["session_id"].as_str() {
            env["session_id"] = sid.into();
        }
        if let Some(j) = job_id {
            env["job_id"] = j.into();
        }
        self.ws.feed(Message::text(env.to_string())).await?;
        Ok(id)
    }

    /// Writes whatever [`Client::feed`] queued.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        self.ws.flush().await?;
        Ok(())
    }

    /// The next text message from the runtime (an error once it has closed).
    async fn next_text(&mut self) -> anyhow::Result<Utf8Bytes> {
        loop {
            let msg = match self.ws.next().await {
                Some(m) => m?,
                None => anyhow::bail!("the runtime closed the connection"),
            };
            match msg {
                Message::Text(t) => return Ok(t),
                Message::Close(frame) => {
                    anyhow::bail!("the runtime closed the connection: {frame:?}")
                }
                _ => continue,
            }
        }
    }

    /// Answers the runtime's `session.ping` envelope `ping`.
    async fn pong(&mut self, ping: &Value) -> anyhow::Result<()> {
        let pong = json!({"ping_nonce": ping["payload"]["nonce"], "received_at": crate::protocol::now_rfc3339()});
        self.send("session.pong", pong, None).await?;
        Ok(())
    }

    /// The next envelope's text with its type and `event_seq`, answering the
    /// runtime's pings on the way: for a reader of many frames (the bench's event
    /// flood) that needs no more of them, without building each one's JSON tree.
    pub async fn next_frame(&mut self) -> anyhow::Result<Frame> {
        #[derive(serde::Deserialize)]
        struct Head<'a> {
            #[serde(rename = "type", borrow)]
            kind: std::borrow::Cow<'a, str>,
            #[serde(default)]
            event_seq: Option<u64>,
        }
        loop {
            let text = self.next_text().await?;
            let head: Head = serde_json::from_str(text.as_str())?;
            if head.kind == "session.ping" {
                self.pong(&serde_json::from_str(text.as_str())?).await?;
                continue;
            }
            let (kind, event_seq) = (head.kind.into_owned(), head.event_seq);
            return Ok(Frame {
                kind,
                event_seq,
                text,
            });
        }
    }

    /// The next envelope, answering the runtime's pings on the way.
    pub async fn next(&mut self) -> anyhow::Result<Value> {
        loop {
            let env: Value = serde_json::from_str(self.next_text().await?.as_str())?;
            if env["type"] == "session.ping" {
                self.pong(&env).await?;
                continue;
            }
            return Ok(env);
        }
    }

    /// Waits for the answer to request `id` (`reply_type`, or a `session.error`
    /// naming it), passing over anything else.
    pub async fn reply(&mut self, id: &str, reply_type: &str) -> anyhow::Result<Value> {
        loop {
            let env = tokio::time::timeout(Duration::from_secs(30), self.next())
                .await
                .context("no answer from the runtime within 30 s")??;
            let answers = env["payload"]["request_id"] == id;
            if env["type"] == "session.error" {
                // Errors name the request they answer in `details.request_id`.
                let about = &env["payload"]["details"]["request_id"];
                if about == id || about.is_null() {
                    anyhow::bail!("{}", describe_error(&env));
                }
                continue;
            }
            // `job.cancelled` carries no request id: it is matched by its type.
            if env["type"] == reply_type && (answers || env["payload"]["request_id"].is_null()) {
                return Ok(env);
            }
        }
    }

    /// Submits a job and returns its `job.accepted` envelope (a refusal is an error).
    pub async fn submit(&mut self, payload: Value) -> anyhow::Result<Value> {
        let id = self.send("job.submit", payload, None).await?;
        self.reply(&id, "job.accepted").await
    }

    /// The next terminal message of any job (an error if nothing comes for 30 s).
    pub async fn terminal(&mut self) -> anyhow::Result<Value> {
        loop {
            let env = tokio::time::timeout(Duration::from_secs(30), self.next())
                .await
                .context("nothing from the runtime within 30 s")??;
            if is_terminal(&env) {
                return Ok(env);
            }
        }
    }

    /// Sends `job.cancel` for `job_id` (only the submitting session may).
    pub async fn cancel(&mut self, job_id: &str) -> anyhow::Result<String> {
        self.send(
            "job.cancel",
            json!({"reason": "cancelled by the client"}),
            Some(job_id),
        )
        .await
    }

    /// Every job `filter` selects, following the cursor page by page.
    pub async fn list_jobs(&mut self, filter: Value) -> anyhow::Result<Vec<Value>> {
        let mut jobs = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut req = json!({"filter": filter, "limit": 1000});
            if let Some(c) = &cursor {
                req["cursor"] = c.clone().into();
            }
            let id = self.send("session.list_jobs", req, None).await?;
            let page = self.reply(&id, "session.jobs").await?;
            jobs.extend(
                page["payload"]["jobs"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
            match page["payload"]["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return Ok(jobs),
            }
        }
    }
}

/// Whether an envelope is a job's terminal message.
pub fn is_terminal(env: &Value) -> bool {
    env["type"] == "job.result" || env["type"] == "job.error"
}

/// `CODE: message` of an error envelope.
pub fn describe_error(env: &Value) -> String {
    let p = &env["payload"];
    match (p["code"].as_str(), p["message"].as_str()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        _ => env.to_string(),
    }
}

/// One envelope as a line for a terminal: `[seq] kind body`.
pub fn human_line(env: &Value) -> String {
    let seq = env["event_seq"]
        .as_u64()
        .map(|s| format!("[{s}] "))
        .unwrap_or_default();
    let p = &env["payload"];
    match env["type"].as_str().unwrap_or_default() {
        "job.event" => format!("{seq}{} {}", p["kind"].as_str().unwrap_or("?"), p["body"]),
        "job.accepted" => format!(
            "{seq}accepted {} ({})",
            p["job_id"].as_str().unwrap_or("?"),
            p["agent"].as_str().unwrap_or("?")
        ),
        "job.result" => format!(
            "{seq}{} {}",
            p["final_status"].as_str().unwrap_or("result"),
            p.get("result").unwrap_or(&Value::Null)
        ),
        "job.error" => format!("{seq}error {}", describe_error(env)),
        other => format!("{seq}{other} {p}"),
    }
}
