//! Fuzzes what a client controls: one inbound frame, decoded the way the session
//! layer decodes it (`src/session/mod.rs`: `Envelope::decode`, then the payload of
//! its type, then what `src/jobs/mod.rs` does with a `job.submit` before and after
//! acceptance), with the invariants that hold along the way:
//!
//! - decoding never panics; a refusal is `INVALID_REQUEST` with a short message, and
//!   the `session.error` that answers it is a small frame that decodes;
//! - a decoded envelope re-encodes to JSON that decodes to the same envelope;
//! - a lease that validates round-trips through its wire form (as `job.accepted`
//!   carries it, and as a restart reads it back), compiles to a matcher, is a
//!   subset of itself, and stays valid within a plugin's ceiling;
//! - `expires_at` that parses is after "now"; a normalised path is normal;
//! - `fit_within`'s output fits, and it leaves alone what it says it did not cut.
//!
//! Run with `scripts/fuzz.sh [SECONDS]` (stable toolchain) or `cargo fuzz run decode`.

#![no_main]

use std::sync::OnceLock;

use arcp_protocol::error::{ArcpError, ErrorCode, MAX_MESSAGE_BYTES};
use arcp_protocol::lease::{
    self, Budget, Charge, FUEL, Lease, LeaseMatcher, PATH_NAMESPACES, budget_to_wire, check_subset,
    normalise_path,
};
use arcp_protocol::protocol::{
    AcceptedPayload, AckPayload, ByePayload, CancelPayload, CancelledPayload, Envelope,
    ErrorPayload, HelloPayload, ListJobsPayload, MAX_ID_LEN, MAX_OUTBOUND_FRAME, Outbound,
    PingPayload, PongPayload, SubmitPayload, SubscribePayload, UnsubscribePayload, fit_within, ids,
    now_rfc3339,
};
use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

/// What the host allows a `job.event` body (`src/jobs/mod.rs`, `EVENT_BODY_LIMIT`).
const EVENT_BODY_LIMIT: usize = MAX_OUTBOUND_FRAME - (64 << 10);

/// Largest `session.error` frame: a message of at most `MAX_MESSAGE_BYTES` (each
/// byte escaping to at most 6) and a request id of at most `MAX_ID_LEN`.
const MAX_ERROR_FRAME: usize = 16 << 10;

fuzz_target!(|data: &[u8]| {
    // The transports hand the session text only: a WebSocket text frame is UTF-8 by
    // construction, and a binary frame or stdio line that is not UTF-8 is answered
    // as garbage without being decoded (`src/transport/`).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    frame(text);
    // Stored frames are re-read for resume and subscribe history; they are the
    // runtime's own, but reading one must never panic either.
    if let Some(out) = Outbound::from_stored(text) {
        let encoded = out.encode();
        serde_json::from_str::<Value>(&encoded).expect("a replayed frame is JSON");
    }
});

/// One inbound frame, as `session::run` (and `handshake`) handle it.
fn frame(text: &str) {
    let env = match Envelope::decode(text) {
        Ok(env) => env,
        Err(failure) => {
            assert_eq!(failure.error.code, ErrorCode::InvalidRequest, "{text:?}");
            check_error(&failure.error);
            // Both are echoed in the error reply: never longer than an id may be.
            for named in [&failure.id, &failure.kind].into_iter().flatten() {
                assert!(!named.is_empty() && named.len() <= MAX_ID_LEN, "{named:?}");
            }
            error_reply(&failure.error, failure.id.as_deref());
            return;
        }
    };
    check_envelope(&env);

    // Every client payload type, whatever the envelope's type: the fuzzer need not
    // guess a type name to reach a payload decoder.
    payload_types(&env);

    let result = match env.kind.as_str() {
        "session.hello" => env.payload_as::<HelloPayload>().map(|h| hello(&h)),
        "job.submit" => submit(&env),
        "job.cancel" => cancel(&env),
        "session.list_jobs" => list_jobs(&env),
        "session.ack" => env.payload_as::<AckPayload>().map(drop),
        "session.ping" => env.payload_as::<PingPayload>().map(|ping| {
            let pong = PongPayload {
                ping_nonce: ping.nonce,
                received_at: now_rfc3339(),
            };
            reply(Outbound::new("session.pong", pong));
        }),
        "session.pong" | "session.bye" => Ok(()),
        "session.close" => {
            let reason = env.payload_as::<ByePayload>().ok().and_then(|b| b.reason);
            reply(Outbound::new("session.closed", ByePayload { reason }));
            Ok(())
        }
        "job.subscribe" => env.payload_as::<SubscribePayload>().map(drop),
        "job.unsubscribe" => env.payload_as::<UnsubscribePayload>().map(drop),
        other => Err(ArcpError::invalid(format!(
            "unknown message type {other:?}"
        ))),
    };
    if let Err(err) = result {
        check_error(&err);
        error_reply(&err, Some(&env.id));
    }
}

/// What `Envelope::decode` promises, and that the envelope survives re-encoding.
fn check_envelope(env: &Envelope) {
    assert!(
        !env.id.is_empty() && env.id.len() <= MAX_ID_LEN,
        "{:?}",
        env.id
    );
    assert!(
        !env.kind.is_empty() && env.kind.len() <= MAX_ID_LEN,
        "{:?}",
        env.kind
    );
    assert!(env.payload.is_object(), "{:?}", env.payload);

    let mut obj = Map::new();
    obj.insert("arcp".into(), "1.1".into());
    obj.insert("id".into(), env.id.clone().into());
    obj.insert("type".into(), env.kind.clone().into());
    for (field, value) in [
        ("session_id", &env.session_id),
        ("trace_id", &env.trace_id),
        ("job_id", &env.job_id),
    ] {
        if let Some(v) = value {
            obj.insert(field.into(), v.clone().into());
        }
    }
    if let Some(seq) = env.event_seq {
        obj.insert("event_seq".into(), seq.into());
    }
    obj.insert("payload".into(), env.payload.clone());
    let encoded = Value::Object(obj).to_string();
    let back = Envelope::decode(&encoded)
        .unwrap_or_else(|f| panic!("re-encoded envelope refused: {}: {encoded}", f.error));
    assert_eq!(
        (&back.id, &back.kind, &back.session_id, &back.trace_id),
        (&env.id, &env.kind, &env.session_id, &env.trace_id)
    );
    assert_eq!((&back.job_id, back.event_seq), (&env.job_id, env.event_seq));
    assert!(
        same_json(&back.payload, &env.payload),
        "payload changed on re-encoding: {encoded}"
    );
}

/// JSON equality, floats within a few ULPs: without its `float_roundtrip` feature
/// serde_json does not promise to parse back exactly the float it printed.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            x == y || (x - y).abs() <= x.abs().max(y.abs()) * 4.0 * f64::EPSILON
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

fn payload_types(env: &Envelope) {
    fn try_as<T: serde::de::DeserializeOwned>(env: &Envelope) {
        if let Err(err) = env.payload_as::<T>() {
            assert_eq!(err.code, ErrorCode::InvalidRequest);
            check_error(&err);
        }
    }
    try_as::<HelloPayload>(env);
    try_as::<SubmitPayload>(env);
    try_as::<CancelPayload>(env);
    try_as::<ListJobsPayload>(env);
    try_as::<AckPayload>(env);
    try_as::<PingPayload>(env);
    try_as::<PongPayload>(env);
    try_as::<ByePayload>(env);
    try_as::<SubscribePayload>(env);
    try_as::<UnsubscribePayload>(env);
}

/// An error as it reaches the wire: never empty, its message cut.
fn check_error(err: &ArcpError) {
    assert!(!err.message.is_empty());
    assert!(
        err.message.len() <= MAX_MESSAGE_BYTES + '…'.len_utf8(),
        "{} bytes",
        err.message.len()
    );
    assert_eq!(ErrorCode::parse(err.code.as_str()), Some(err.code));
}

/// The `session.error` the session sends (`session::error_msg`).
fn error_reply(err: &ArcpError, request_id: Option<&str>) {
    let mut err = err.clone();
    if let Some(id) = request_id {
        err = err.with_detail("request_id", id);
    }
    let text = reply(Outbound::new("session.error", ErrorPayload::session(&err)));
    assert!(text.len() <= MAX_ERROR_FRAME, "{} bytes", text.len());
}

/// Encodes a frame the runtime sends: it is JSON the runtime itself would accept,
/// of the type it was built with, and within the frame limit clients enforce.
fn reply(out: Outbound) -> String {
    let text = out.encode();
    let back = Envelope::decode(&text)
        .unwrap_or_else(|f| panic!("the runtime's own frame is refused: {}: {text}", f.error));
    assert_eq!(
        (back.kind.as_str(), back.id),
        (out.kind, out.id.to_string())
    );
    assert!(text.len() <= MAX_OUTBOUND_FRAME, "{} bytes", text.len());
    text
}

fn hello(hello: &HelloPayload) {
    let _ = hello.auth.as_ref().is_none_or(|a| a.scheme == "bearer");
    if let Some(resume) = &hello.resume {
        let _ = (
            &resume.session_id,
            &resume.resume_token,
            resume.last_event_seq,
        );
    }
}

fn cancel(env: &Envelope) -> Result<(), ArcpError> {
    let req: CancelPayload = env.payload_as()?;
    let job_id = env.job_id.clone().or(req.job_id).ok_or_else(|| {
        ArcpError::invalid("job.cancel needs a job_id (on the envelope or in the payload)")
    })?;
    reply(
        Outbound::new(
            "job.cancelled",
            CancelledPayload {
                job_id: job_id.clone(),
                reason: req.reason,
            },
        )
        .job(&job_id),
    );
    Ok(())
}

/// What `Jobs::list` checks before it looks at any job.
fn list_jobs(env: &Envelope) -> Result<(), ArcpError> {
    let req: ListJobsPayload = env.payload_as()?;
    let limit = req.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ArcpError::invalid("limit must be between 1 and 1000"));
    }
    let filter = req.filter.unwrap_or_default();
    if let Some(raw) = &filter.created_after {
        DateTime::parse_from_rfc3339(raw)
            .map_err(|e| ArcpError::invalid(format!("filter.created_after {raw:?}: {e}")))?;
    }
    Ok(())
}

/// A fixed "now", so that a run is reproducible.
fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-28T16:08:17Z")
        .expect("a valid instant")
        .with_timezone(&Utc)
}

/// A plugin ceiling of the kind a sidecar `[ceiling]` declares.
fn ceiling() -> &'static Lease {
    static CEILING: OnceLock<Lease> = OnceLock::new();
    CEILING.get_or_init(|| {
        let c = json!({
            "fs.read": ["/docs/**", "/pub/readme.md"],
            "fs.write": ["/out/*"],
            "net.fetch": ["https://*.example.com/**"],
            "tool.call": ["meter"],
            "agent.delegate": ["reader", "echo"],
            "model.use": ["gpt-*"],
            "cost.budget": ["USD:1.00", "fuel:1000000"]
        });
        Lease::from_request(c.as_object()).expect("the ceiling is valid")
    })
}

/// `Jobs::submit` up to `job.accepted`, then what the bundled agents do with the
/// authority their input names.
fn submit(env: &Envelope) -> Result<(), ArcpError> {
    let req: SubmitPayload = env.payload_as()?;
    let trace_id = match env.trace_id.as_deref() {
        None => ids::trace_id(),
        Some(raw) => {
            let t = ids::normalise_trace_id(raw)
                .ok_or_else(|| ArcpError::invalid(format!("trace_id {raw:?} is not a trace id")))?;
            assert!(
                t.len() == 32
                    && t.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                    && t.bytes().any(|b| b != b'0'),
                "{raw:?} -> {t:?}"
            );
            t
        }
    };
    let requested = Lease::from_request(req.lease_request.as_ref())?;
    check_lease(&requested);

    // `within` a lease itself keeps every non-empty namespace's patterns.
    let itself = requested
        .within(&requested)
        .expect("a valid lease compiles");
    for (ns, patterns) in requested.grants() {
        if ns != "cost.budget" && !patterns.is_empty() {
            assert_eq!(itself.patterns(ns), patterns.as_slice(), "{ns}");
        }
    }
    assert_eq!(itself.budgets(), requested.budgets());

    // The effective lease under a ceiling names nothing the ceiling does not.
    let allowed: Vec<String> = ceiling().grants().map(|(ns, _)| ns.clone()).collect();
    let effective = requested
        .restricted_to(Some(&allowed))
        .within(ceiling())
        .expect("a valid lease compiles");
    check_lease(&effective);
    for (ns, _) in effective.grants() {
        assert!(allowed.contains(ns), "{ns}");
    }
    for (currency, amount) in effective.budgets() {
        assert!(amount <= ceiling().budgets()[&currency], "{currency}");
    }

    if let Some(raw) = req
        .lease_constraints
        .as_ref()
        .and_then(|c| c.expires_at.as_deref())
    {
        let at = lease::parse_expires_at(raw, now())?;
        assert!(at > now(), "{raw:?}");
    }

    // job.accepted, as the host sends it (and stores it: a restart reads the
    // lease back from it).
    let job_id = ids::prefixed("job");
    let budgets = requested.budgets();
    let accepted = AcceptedPayload {
        job_id: job_id.clone(),
        agent: req.agent.clone(),
        accepted_at: now_rfc3339(),
        lease: requested.to_wire(),
        lease_constraints: req.lease_constraints.clone(),
        budget: (!budgets.is_empty()).then(|| budget_to_wire(&budgets)),
        trace_id: trace_id.clone(),
        request_id: env.id.clone(),
        parent_job_id: req.parent_job_id.clone(),
        credentials: Vec::new(),
    };
    let restored = Lease::from_request(Some(&accepted.lease)).expect("a restart reads it back");
    assert_eq!(restored, requested);
    reply(
        Outbound::new("job.accepted", accepted)
            .job(&job_id)
            .trace(Some(&trace_id)),
    );

    run_job(&requested, req.input.as_ref().unwrap_or(&Value::Null));
    Ok(())
}

/// What the bundled agents ask of their lease, from their input: `reader` (a path),
/// `fetcher` (a URL), `delegator` (an agent and a child lease), `summarizer` (a
/// model), `spender` (cost metrics); and the event bodies that carry the input.
fn run_job(lease: &Lease, input: &Value) {
    let matcher = LeaseMatcher::new(lease).expect("an accepted lease compiles");
    let mut budget = Budget::new(lease);
    let field = |k: &str| input.get(k).and_then(Value::as_str);

    if let Some(path) = field("path")
        && let Ok(normal) = normalise_path(path)
    {
        check_normalised(&normal);
        let _ = matcher.allows("fs.read", &normal);
        let _ = matcher.allows("fs.write", &normal);
    }
    if let Some(raw) = field("url")
        && let Ok(url) = url::Url::parse(raw)
    {
        let _ = matcher.allows_url(&url);
    }
    if let Some(agent) = field("agent") {
        let _ = matcher.allows("agent.delegate", agent);
    }
    if let Some(model) = field("model") {
        let _ = matcher.allows("model.use", model);
    }
    if let Some(Value::Object(child)) = input.get("lease")
        && let Ok(child) = Lease::from_request(Some(child))
    {
        check_lease(&child);
        let _ = check_subset(lease, &matcher, &budget, &child);
    }
    if let Some(cost) = input.get("cost_per_call").and_then(Value::as_f64) {
        let currency = field("currency").unwrap_or("USD");
        let calls = input.get("max_calls").and_then(Value::as_u64).unwrap_or(3);
        for _ in 0..calls.min(16) {
            let before = budget.clone();
            match budget.charge_metric("cost.inference", cost, Some(currency)) {
                Charge::Refused(why) => {
                    assert!(!why.is_empty());
                    assert_eq!(budget, before, "a refused charge changes nothing");
                }
                Charge::NotACharge => assert_eq!(budget, before),
                Charge::Charged {
                    currency,
                    remaining,
                } => {
                    assert_eq!(budget.remaining()[&currency], remaining);
                }
            }
            let _ = budget.exhausted();
        }
    }

    // Event bodies quote client input (`tool_call` arguments, echoed results).
    let body = json!({"name": "read-file", "args": input});
    for limit in [EVENT_BODY_LIMIT, 64 + body.to_string().len() / 3] {
        let mut cut = body.clone();
        let was_cut = fit_within(&mut cut, limit);
        let len = cut.to_string().len();
        assert!(len <= limit, "{len} bytes over {limit}");
        if !was_cut {
            assert_eq!(cut, body, "fit_within changed what it says it did not cut");
        }
    }
}

/// What holds for every lease that validated.
fn check_lease(lease: &Lease) {
    let wire = lease.to_wire();
    let back = Lease::from_request(Some(&wire)).expect("a lease's wire form validates");
    assert_eq!(&back, lease);
    let matcher = LeaseMatcher::new(lease).expect("a validated lease compiles");
    check_subset(lease, &matcher, &Budget::default(), lease).expect("a lease covers itself");
    for ns in PATH_NAMESPACES {
        for p in lease.patterns(ns) {
            let normal = normalise_path(p).expect("a validated path pattern normalises");
            check_normalised(&normal);
        }
    }
    let budgets = lease.budgets();
    assert!(budgets.values().all(|a| !a.is_sign_negative()));
    let _ = lease.fuel();
    let _ = budget_to_wire(&budgets);
    assert!(!Budget::new(lease).remaining().contains_key(FUEL));
}

/// A normalised path: rooted, no empty, `.` or `..` segment, a fixed point.
fn check_normalised(normal: &str) {
    assert!(normal.starts_with('/'), "{normal:?}");
    if normal != "/" {
        assert!(
            normal[1..]
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".."),
            "{normal:?}"
        );
    }
    assert_eq!(normalise_path(normal).as_deref(), Ok(normal));
}
