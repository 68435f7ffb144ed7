//! Sessions (spec §6): one task per connection, owning the handshake, bearer auth,
//! feature negotiation, heartbeats, acknowledgements, resume and the dispatch of
//! every client message.
//!
//! A session outlives its connection: its [`SessionState`] (id, principal, outbox,
//! resume token) stays registered for the resume window, and jobs keep emitting into
//! its outbox while no connection is attached. This module decides what to answer;
//! it leaves job lifecycle to `jobs` and bytes to `transport`.

mod outbox;

pub use outbox::{Link, Outbox};

use crate::error::{ArcpError, ErrorCode};
use crate::protocol::{
    AckPayload, ByePayload, Envelope, ErrorPayload, HelloPayload, JobsPayload, ListJobsPayload,
    Outbound, PingPayload, PongPayload, RuntimeInfo, WelcomeCapabilities, WelcomePayload, ids,
    now_rfc3339,
};
use crate::runtime::{RUNTIME_NAME, Runtime};
use crate::transport::{Connection, FrameIn, FrameOut};
use outbox::Attachment;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The features this runtime implements (spec §6.2); a session gets the
/// intersection with the client's list.
pub const RUNTIME_FEATURES: &[&str] = &[
    "heartbeat",
    "ack",
    "list_jobs",
    "subscribe",
    "lease_expires_at",
    "cost.budget",
    "progress",
    "result_chunk",
    "agent_versions",
];

/// How long a client has to send `session.hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest client string a reply echoes whole (a ping's nonce).
const MAX_ECHOED_BYTES: usize = 1024;

/// A session's state, which outlives its connections.
pub struct SessionState {
    /// `sess_…`, minted by the runtime.
    pub id: String,
    /// The authenticated principal.
    pub principal: String,
    /// The outbound side.
    pub outbox: Arc<Outbox>,
    features: Vec<String>,
    resume_token: Mutex<String>,
    detached_at: Mutex<Option<Instant>>,
}

impl SessionState {
    /// Whether `feature` was negotiated.
    pub fn has(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature)
    }

    /// Whether a connection is attached.
    pub fn is_attached(&self) -> bool {
        self.detached_at
            .lock()
            .map(|d| d.is_none())
            .unwrap_or(false)
    }

    /// Counts the session as attached from now on (a resume claims it before its
    /// welcome is sent; see [`Runtime::claim_for_resume`]).
    pub(crate) fn mark_attached(&self) {
        if let Ok(mut d) = self.detached_at.lock() {
            *d = None;
        }
    }

    /// Counts the session as detached from now, unless a connection is attached to
    /// its outbox. Under the lock `mark_attached` takes, so that an attach racing
    /// this is never undone.
    fn mark_detached_unless_attached(&self) {
        if let Ok(mut d) = self.detached_at.lock()
            && !self.outbox.is_attached()
        {
            *d = Some(Instant::now());
        }
    }

    /// Since when the session has been without a connection (`None`: attached).
    pub fn detached_since(&self) -> Option<Instant> {
        self.detached_at.lock().ok().and_then(|d| *d)
    }

    /// Whether the session has been without a connection for longer than `window`.
    pub fn expired(&self, window: Duration) -> bool {
        self.detached_at
            .lock()
            .map(|d| d.is_some_and(|at| at.elapsed() > window))
            .unwrap_or(false)
    }

    /// A new single-use resume token. Only its hash is kept (in memory and in the
    /// store, so that the session can be resumed after a restart).
    /// Returns it with the ticket of the session record's write: the token must not
    /// reach the client before a restart could honour it.
    fn rotate_token(&self, store: &dyn crate::store::Store) -> (String, crate::store::Ticket) {
        let token = ids::prefixed("rtk");
        let hash = token_hash(&token);
        if let Ok(mut t) = self.resume_token.lock() {
            t.clone_from(&hash);
        }
        let ticket = store.put_session(crate::store::SessionRecord {
            session_id: self.id.clone(),
            principal: self.principal.clone(),
            features: serde_json::to_string(&self.features).unwrap_or_else(|_| "[]".into()),
            token_hash: hash,
        });
        (token, ticket)
    }

    /// Rebuilds a session recorded before a restart: detached, resumable for one
    /// window from now, numbering on after its last stored envelope.
    pub fn restore(record: &crate::store::SessionRecord, outbox: Arc<Outbox>) -> SessionState {
        SessionState {
            id: record.session_id.clone(),
            principal: record.principal.clone(),
            outbox,
            features: serde_json::from_str(&record.features).unwrap_or_default(),
            resume_token: Mutex::new(record.token_hash.clone()),
            detached_at: Mutex::new(Some(Instant::now())),
        }
    }
}

/// sha256 of a resume token, hex.
fn token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Serves one connection until the peer leaves, says bye, or goes silent.
pub async fn serve(rt: Arc<Runtime>, mut conn: Connection) {
    let Some((session, attachment)) = handshake(&rt, &mut conn).await else {
        return;
    };
    let span =
        tracing::info_span!("session", session_id = %session.id, principal = %session.principal);
    tracing::info!(parent: &span, peer = %conn.peer, "session attached");
    run(&rt, &session, &mut conn).await;
    if !session.outbox.detach(attachment).await {
        tracing::info!(parent: &span, peer = %conn.peer, "connection replaced by a resume");
        return;
    }
    session.mark_detached_unless_attached();
    tracing::info!(parent: &span, "session detached");
}

/// Answers a handshake with an error, then closes the connection.
async fn refuse(
    out: &mpsc::Sender<FrameOut>,
    err: &ArcpError,
    request_id: Option<&str>,
    code: u16,
    reason: &str,
) {
    send_direct(out, error_msg(err, request_id)).await;
    let _ = out.send(FrameOut::Close(code, reason.into())).await;
}

async fn send_direct(out: &mpsc::Sender<FrameOut>, msg: Outbound) {
    let _ = out.send(FrameOut::Frame(msg.encode())).await;
}

fn error_msg(err: &ArcpError, request_id: Option<&str>) -> Outbound {
    let mut err = err.clone();
    if let Some(id) = request_id {
        err = err.with_detail("request_id", id);
    }
    Outbound::new("session.error", ErrorPayload::session(&err))
}

/// Waits for `session.hello`, authenticates, and answers `session.welcome` (new or
/// resumed session) or `session.error`.
async fn handshake(
    rt: &Arc<Runtime>,
    conn: &mut Connection,
) -> Option<(Arc<SessionState>, Attachment)> {
    let deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
    let (env, hello) = loop {
        let frame = match tokio::time::timeout_at(deadline, conn.recv()).await {
            Ok(Some(f)) => f,
            Ok(None) => return None,
            Err(_) => {
                let err = ArcpError::invalid("no session.hello within 10 s");
                refuse(&conn.outbound, &err, None, 1008, "handshake timeout").await;
                return None;
            }
        };
        let text = match frame {
            FrameIn::Frame(t) => t,
            FrameIn::Garbage(why) => {
                send_direct(&conn.outbound, error_msg(&ArcpError::invalid(why), None)).await;
                continue;
            }
        };
        let env = match Envelope::decode(&text) {
            Ok(env) => env,
            Err(f) => {
                send_direct(&conn.outbound, error_msg(&f.error, f.id.as_deref())).await;
                continue;
            }
        };
        if env.kind != "session.hello" {
            let err =
                ArcpError::invalid(format!("expected session.hello first, got {:?}", env.kind));
            send_direct(&conn.outbound, error_msg(&err, Some(&env.id))).await;
            continue;
        }
        match env.payload_as::<HelloPayload>() {
            Ok(hello) => break (env, hello),
            Err(err) => {
                send_direct(&conn.outbound, error_msg(&err, Some(&env.id))).await;
                continue;
            }
        }
    };

    let token = hello
        .auth
        .as_ref()
        .and_then(|a| a.token.clone())
        .unwrap_or_default();
    let scheme_ok = hello.auth.as_ref().is_none_or(|a| a.scheme == "bearer");
    let Some(principal) = rt.principal_for(&token).filter(|_| scheme_ok) else {
        let err = ArcpError::new(ErrorCode::Unauthenticated, "invalid bearer token");
        refuse(&conn.outbound, &err, Some(&env.id), 1000, "unauthenticated").await;
        return None;
    };

    let client_features = hello
        .capabilities
        .as_ref()
        .map(|c| c.features.clone())
        .unwrap_or_default();
    // `model.use` and `provisioned_credentials` only where configured.
    let features: Vec<String> = client_features
        .iter()
        .filter(|f| {
            RUNTIME_FEATURES.contains(&f.as_str())
                || (f.as_str() == "model.use" && rt.config.models.is_some())
                || (f.as_str() == "provisioned_credentials" && rt.config.credentials.is_some())
        })
        .cloned()
        .collect();

    let (session, replay_after) = match &hello.resume {
        None => {
            let id = ids::prefixed("sess");
            let session = Arc::new(SessionState {
                id: id.clone(),
                principal,
                outbox: Arc::new(Outbox::new(
                    id,
                    rt.store.clone(),
                    rt.config.limits.max_unacked_events,
                )),
                features,
                resume_token: Mutex::new(String::new()),
                detached_at: Mutex::new(None),
            });
            if let Err(err) = rt.admit_session(session.clone()) {
                refuse(
                    &conn.outbound,
                    &err,
                    Some(&env.id),
                    1008,
                    "too many sessions",
                )
                .await;
                return None;
            }
            (session, None)
        }
        Some(resume) => match check_resume(rt, &principal, resume)
            .and_then(|s| rt.claim_for_resume(&principal, &s).map(|()| s))
        {
            Ok(session) => (session, Some(resume.last_event_seq)),
            Err(err) => {
                refuse(&conn.outbound, &err, Some(&env.id), 1000, "resume refused").await;
                return None;
            }
        },
    };

    let inventory = rt.registry.inventory();
    let agents = if session.has("agent_versions") {
        serde_json::to_value(inventory.entries()).unwrap_or_default()
    } else {
        inventory
            .entries()
            .into_iter()
            .map(|e| e.name)
            .collect::<Vec<_>>()
            .into()
    };
    let (resume_token, recorded) = session.rotate_token(rt.store.as_ref());
    crate::store::until_settled(rt.store.as_ref(), recorded).await;
    let welcome = WelcomePayload {
        runtime: RuntimeInfo {
            name: RUNTIME_NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        session_id: session.id.clone(),
        resume_token,
        resume_window_sec: rt.config.resume_window_sec,
        heartbeat_interval_sec: session
            .has("heartbeat")
            .then_some(rt.config.heartbeat_interval_sec),
        capabilities: WelcomeCapabilities {
            encodings: vec!["json".into()],
            features: session.features.clone(),
            agents,
        },
        accepted_at: now_rfc3339(),
    };
    send_direct(
        &conn.outbound,
        Outbound::new("session.welcome", welcome).session(&session.id),
    )
    .await;
    let link = Link {
        frames: conn.outbound.clone(),
        kill: conn.kill.clone(),
        slow_after: Duration::from_secs(rt.config.limits.slow_client_timeout_sec.max(1)),
        writer: conn.writer.clone(),
    };
    let attachment = match replay_after {
        None => session.outbox.attach(link).await,
        Some(after) => match session.outbox.attach_with_replay(link, after).await {
            Ok(Some(attachment)) => attachment,
            Ok(None) => {
                // Cut off for not reading its replay: the claim is given back.
                session.mark_detached_unless_attached();
                return None;
            }
            Err(e) => {
                let err = ArcpError::internal(format!("replay failed: {e}"));
                send_direct(&conn.outbound, error_msg(&err, None)).await;
                session.mark_detached_unless_attached();
                return None;
            }
        },
    };
    // Claimed already when resumed; again here in case the end of a connection it
    // replaced was seen in between.
    session.mark_attached();
    Some((session, attachment))
}

fn check_resume(
    rt: &Runtime,
    principal: &str,
    resume: &crate::protocol::ResumeRequest,
) -> Result<Arc<SessionState>, ArcpError> {
    use subtle::ConstantTimeEq;
    let expired = || {
        ArcpError::new(
            ErrorCode::ResumeWindowExpired,
            format!(
                "session {:?} cannot be resumed: unknown or past its resume window",
                resume.session_id
            ),
        )
    };
    let session = rt.session(&resume.session_id).ok_or_else(expired)?;
    let token_ok = session
        .resume_token
        .lock()
        .map(|t| {
            bool::from(
                t.as_bytes()
                    .ct_eq(token_hash(&resume.resume_token).as_bytes()),
            )
        })
        .unwrap_or(false);
    if !token_ok || session.principal != principal {
        return Err(ArcpError::new(
            ErrorCode::PermissionDenied,
            "resume token is not valid for this principal",
        ));
    }
    if session.expired(Duration::from_secs(rt.config.resume_window_sec)) {
        return Err(expired());
    }
    if resume.last_event_seq < session.outbox.acked() {
        // Events up to the acknowledged seq are released for replay: a cursor below
        // it cannot be served without a gap.
        return Err(ArcpError::new(
            ErrorCode::ResumeWindowExpired,
            format!(
                "last_event_seq {} is below the acknowledged seq {}: those events are no longer replayable",
                resume.last_event_seq,
                session.outbox.acked()
            ),
        ));
    }
    if resume.last_event_seq > session.outbox.last_seq() {
        return Err(ArcpError::invalid(format!(
            "last_event_seq {} is beyond the last event sent ({})",
            resume.last_event_seq,
            session.outbox.last_seq()
        )));
    }
    Ok(session)
}

/// The session's main loop.
async fn run(rt: &Arc<Runtime>, session: &Arc<SessionState>, conn: &mut Connection) {
    let interval = Duration::from_secs(rt.config.heartbeat_interval_sec);
    let heartbeat = session.has("heartbeat");
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut last_inbound = Instant::now();
    loop {
        tokio::select! {
            frame = conn.recv() => {
                let Some(frame) = frame else { return };
                last_inbound = Instant::now();
                let text = match frame {
                    FrameIn::Frame(t) => t,
                    FrameIn::Garbage(why) => {
                        session.outbox.send(error_msg(&ArcpError::invalid(why), None)).await;
                        continue;
                    }
                };
                match Envelope::decode(&text) {
                    Ok(env) => {
                        if !dispatch(rt, session, env).await {
                            return;
                        }
                    }
                    Err(f) => {
                        session.outbox.send(error_msg(&f.error, f.id.as_deref())).await;
                    }
                }
            }
            _ = ticker.tick(), if heartbeat => {
                if last_inbound.elapsed() >= interval * 2 {
                    tracing::info!(session_id = %session.id, "heartbeat lost; closing the transport");
                    let err = ArcpError::new(ErrorCode::HeartbeatLost, "no message from the client for two heartbeat intervals");
                    session.outbox.send(error_msg(&err, None)).await;
                    session.outbox.close(1001, "heartbeat lost").await;
                    return;
                }
                let ping = PingPayload { nonce: ids::prefixed("png"), sent_at: now_rfc3339() };
                session.outbox.send(Outbound::new("session.ping", ping)).await;
            }
        }
    }
}

/// Handles one envelope; returns false when the session ends.
async fn dispatch(rt: &Arc<Runtime>, session: &Arc<SessionState>, env: Envelope) -> bool {
    if let Some(sid) = &env.session_id
        && *sid != session.id
    {
        let err = ArcpError::invalid(format!("session_id {sid:?} does not match this session"));
        session.outbox.send(error_msg(&err, Some(&env.id))).await;
        return true;
    }
    let result = match env.kind.as_str() {
        "job.submit" => {
            let credentials = session.has("provisioned_credentials");
            rt.jobs
                .submit(&session.principal, &session.outbox, &env, credentials)
                .await
        }
        "job.cancel" => {
            rt.jobs
                .cancel(&session.principal, &session.outbox, &env)
                .await
        }
        "session.list_jobs" => list_jobs(rt, session, &env).await,
        "session.ack" => ack(session, &env),
        "session.ping" => match env.payload_as::<PingPayload>() {
            // The pong echoes the nonce whole, so a long one is refused, not cut:
            // the reply must stay well inside a frame.
            Ok(ping) if ping.nonce.len() > MAX_ECHOED_BYTES => Err(ArcpError::invalid(format!(
                "a ping nonce may be at most {MAX_ECHOED_BYTES} bytes"
            ))),
            Ok(ping) => {
                let pong = PongPayload {
                    ping_nonce: ping.nonce,
                    received_at: now_rfc3339(),
                };
                session
                    .outbox
                    .send(Outbound::new("session.pong", pong))
                    .await;
                Ok(())
            }
            Err(e) => Err(e),
        },
        "session.pong" => Ok(()),
        "session.bye" => {
            session.outbox.close(1000, "bye").await;
            return false;
        }
        "session.close" => {
            let reason = env.payload_as::<ByePayload>().ok().and_then(|b| b.reason);
            session
                .outbox
                .send(Outbound::new("session.closed", ByePayload { reason }))
                .await;
            session.outbox.close(1000, "closed").await;
            return false;
        }
        "session.hello" => Err(ArcpError::invalid(
            "session already established; session.hello is only valid first",
        )),
        "job.subscribe" | "job.unsubscribe" if !session.has("subscribe") => {
            Err(ArcpError::invalid("feature \"subscribe\" not negotiated"))
        }
        "job.subscribe" => {
            rt.jobs
                .subscribe(&session.principal, &session.outbox, &env)
                .await
        }
        "job.unsubscribe" => {
            rt.jobs
                .unsubscribe(&session.principal, &session.outbox, &env)
                .await
        }
        other => Err(ArcpError::invalid(format!(
            "unknown message type {other:?}"
        ))),
    };
    if let Err(err) = result {
        session.outbox.send(error_msg(&err, Some(&env.id))).await;
    }
    true
}

async fn list_jobs(
    rt: &Arc<Runtime>,
    session: &Arc<SessionState>,
    env: &Envelope,
) -> Result<(), ArcpError> {
    if !session.has("list_jobs") {
        return Err(ArcpError::invalid("feature \"list_jobs\" not negotiated"));
    }
    let req: ListJobsPayload = env.payload_as()?;
    let (jobs, next_cursor) = rt.jobs.list(&session.principal, &req)?;
    let payload = JobsPayload {
        request_id: env.id.clone(),
        jobs,
        next_cursor,
    };
    session
        .outbox
        .send(Outbound::new("session.jobs", payload))
        .await;
    Ok(())
}

fn ack(session: &SessionState, env: &Envelope) -> Result<(), ArcpError> {
    if !session.has("ack") {
        return Err(ArcpError::invalid("feature \"ack\" not negotiated"));
    }
    let req: AckPayload = env.payload_as()?;
    session.outbox.ack(req.last_processed_seq);
    Ok(())
}
