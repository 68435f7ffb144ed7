//! The `capabilities` imports: the only ways out of the sandbox that carry
//! authority. Each call is checked, before anything happens, against the job's
//! [`Authority`]: lease expiry, then budgets, then the namespace's patterns (asking
//! the pure `lease` module); then paths are resolved on disk and matched again, so
//! that no `..`, symlink or hard link leads outside what the lease grants. Every
//! call, granted or refused, is reported as `tool_call` and `tool_result` events.

use super::arcp::agent::{capabilities, types};
use super::host::JobState;
use super::model::ModelGateway;
use super::net::NetClient;
use crate::lease::Charge;
use crate::lease::{Budget, Lease, LeaseMatcher, normalise_path};
use serde_json::{Value, json};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

/// Largest file `read-file` returns.
pub const MAX_READ_BYTES: u64 = 16 << 20;

/// Runs operator-registered tools for `tool.call`. Implemented outside the sandbox
/// (it needs the plugin registry).
pub trait ToolRunner: Send + Sync + 'static {
    /// Calls tool `name` with JSON arguments; its JSON result or a failure.
    fn call(
        &self,
        name: String,
        args_json: String,
    ) -> Pin<Box<dyn Future<Output = Result<String, types::Failure>> + Send>>;
}

/// Starts child jobs for `agent.delegate`. Implemented outside the sandbox (it
/// needs the job manager).
pub trait Delegator: Send + Sync + 'static {
    /// Runs `agent` as a child job with `input_json` under `lease` (already checked
    /// to be a subset, its budget already reserved); the child's result JSON or its
    /// error.
    fn delegate(
        &self,
        agent: String,
        input_json: String,
        lease: Lease,
    ) -> Pin<Box<dyn Future<Output = Result<String, types::Failure>> + Send>>;
}

/// What a job may do outside its sandbox.
pub struct Authority {
    /// The effective lease's glob namespaces.
    pub matcher: Arc<LeaseMatcher>,
    /// Budget counters.
    pub budget: Budget,
    /// When the lease expires (monotonic clock).
    pub expires_at: Option<Instant>,
    /// The canonical workspace root for `fs.*`, if the runtime has one.
    pub workspace: Option<PathBuf>,
    /// The tools for `tool.call`.
    pub tools: Option<Arc<dyn ToolRunner>>,
    /// The HTTP client for `net.fetch`.
    pub net: Option<Arc<NetClient>>,
    /// The model gateway for `model.use`.
    pub models: Option<Arc<ModelGateway>>,
    /// The effective lease (delegation checks children against it).
    pub lease: Lease,
    /// Starts child jobs for `agent.delegate`.
    pub delegator: Option<Arc<dyn Delegator>>,
    /// The budget's remaining amounts as the rest of the runtime sees them (for a
    /// subscriber's `job.subscribed.budget`); updated after every charge.
    pub budget_view:
        Arc<std::sync::Mutex<std::collections::BTreeMap<String, rust_decimal::Decimal>>>,
    /// Set when the job tried an authority-bearing call after its lease expired
    /// (spec §9.5: the job then ends with `LEASE_EXPIRED`).
    pub expired_attempt: std::sync::atomic::AtomicBool,
    /// Resolves once the job's record is stored. A job starts while its record is
    /// still being committed (computing and emitting events need no record: their
    /// frames are stored after it), but nothing that reaches outside the sandbox
    /// happens before it is; `None` when there is nothing to wait for.
    pub recorded: Option<RecordGate>,
}

/// A job's [`Authority::recorded`]: the store's verdict on its record, shared by
/// every call that waits for it.
pub type RecordGate =
    futures_util::future::Shared<futures_util::future::BoxFuture<'static, Result<(), String>>>;

/// Compiled lease matchers by lease, shared by every job that asks for the same
/// lease: compiling one is regex work (~0.4 ms for three path globs and two URL
/// patterns: `cargo bench --bench hot_paths -- "lease compile"`), and a client tends
/// to send the same lease with each job.
#[derive(Default)]
pub struct MatcherCache {
    matchers: std::sync::Mutex<std::collections::HashMap<Lease, Arc<LeaseMatcher>>>,
}

/// Leases whose matchers a [`MatcherCache`] keeps; past it the cache starts over, so
/// a client sending a new lease with every job is no worse off than with no cache.
const MATCHER_CACHE: usize = 256;

impl MatcherCache {
    /// The compiled matcher of `lease` (compiled outside the lock on a miss).
    pub fn get(&self, lease: &Lease) -> Result<Arc<LeaseMatcher>, crate::error::ArcpError> {
        let cached = self
            .matchers
            .lock()
            .ok()
            .and_then(|c| c.get(lease).cloned());
        if let Some(matcher) = cached {
            return Ok(matcher);
        }
        let matcher = Arc::new(LeaseMatcher::new(lease)?);
        if let Ok(mut cache) = self.matchers.lock() {
            if cache.len() >= MATCHER_CACHE {
                cache.clear();
            }
            cache.insert(lease.clone(), matcher.clone());
        }
        Ok(matcher)
    }
}

impl Authority {
    /// An authority that grants nothing (tools run with it).
    pub fn none() -> Authority {
        // Compiled once, not for each tool run.
        static GRANTS_NOTHING: std::sync::LazyLock<Arc<LeaseMatcher>> =
            std::sync::LazyLock::new(|| {
                Arc::new(
                    LeaseMatcher::new(&crate::lease::Lease::default())
                        .unwrap_or_else(|_| unreachable!("the empty lease compiles")),
                )
            });
        Authority {
            matcher: GRANTS_NOTHING.clone(),
            budget: Budget::default(),
            expires_at: None,
            workspace: None,
            tools: None,
            net: None,
            models: None,
            lease: Lease::default(),
            delegator: None,
            budget_view: Default::default(),
            expired_attempt: Default::default(),
            recorded: None,
        }
    }

    /// Waits for the job's record to be stored (see [`Authority::recorded`]); every
    /// authority-bearing call awaits this first.
    fn recorded(&self) -> impl Future<Output = Result<(), types::Failure>> + Send + 'static {
        let gate = self.recorded.clone();
        async move {
            match gate {
                Some(gate) => gate.await.map_err(|why| {
                    failure(
                        "INTERNAL_ERROR",
                        format!("the job's record could not be stored: {why}"),
                    )
                }),
                None => Ok(()),
            }
        }
    }
}

pub(super) fn failure(code: &str, message: impl Into<String>) -> types::Failure {
    types::Failure {
        code: code.to_owned(),
        message: message.into(),
        retryable: code == "INTERNAL_ERROR",
    }
}

fn denied(message: impl Into<String>) -> types::Failure {
    failure("PERMISSION_DENIED", message)
}

impl Authority {
    /// Publishes the budget's remaining amounts to [`Self::budget_view`].
    pub(super) fn publish_budget(&self) {
        if let Ok(mut view) = self.budget_view.lock() {
            view.clone_from(self.budget.remaining());
        }
    }

    /// Expiry, then budgets: the checks every authority-bearing call makes first.
    fn admit(&self) -> Result<(), types::Failure> {
        if self.expires_at.is_some_and(|at| Instant::now() >= at) {
            // However the plugin handles this failure, the job ends LEASE_EXPIRED.
            self.expired_attempt
                .store(true, std::sync::atomic::Ordering::Release);
            return Err(failure("LEASE_EXPIRED", "the job's lease has expired"));
        }
        if let Some(currency) = self.budget.exhausted() {
            return Err(failure(
                "BUDGET_EXHAUSTED",
                format!("the job's {currency} budget is exhausted"),
            ));
        }
        Ok(())
    }

    /// Resolves a job-visible path for `namespace`: lexical normalisation, the
    /// lease's globs, then the real path on disk (symlinks followed) must still be
    /// inside the workspace and granted.
    fn resolve(
        &self,
        namespace: &str,
        path: &str,
        must_exist: bool,
    ) -> Result<PathBuf, types::Failure> {
        let root = self
            .workspace
            .as_deref()
            .ok_or_else(|| denied("this runtime has no workspace for fs.* operations"))?;
        let visible = normalise_path(path).map_err(|why| denied(format!("path {path:?} {why}")))?;
        if !self.matcher.allows(namespace, &visible) {
            return Err(denied(format!("{namespace} does not grant {visible:?}")));
        }
        let joined = root.join(visible.trim_start_matches('/'));
        let real = if must_exist || joined.exists() || joined.is_symlink() {
            joined
                .canonicalize()
                .map_err(|e| failure("INVALID_REQUEST", format!("{visible:?}: {e}")))?
        } else {
            let parent = joined
                .parent()
                .ok_or_else(|| denied(format!("{visible:?} has no parent folder")))?
                .canonicalize()
                .map_err(|e| failure("INVALID_REQUEST", format!("folder of {visible:?}: {e}")))?;
            parent.join(joined.file_name().unwrap_or_default())
        };
        let inside = real
            .strip_prefix(root)
            .map_err(|_| denied(format!("{visible:?} resolves outside the workspace")))?;
        let real_visible = format!("/{}", inside.to_string_lossy());
        if real_visible != visible && !self.matcher.allows(namespace, &real_visible) {
            return Err(denied(format!(
                "{visible:?} resolves to {real_visible:?}, which {namespace} does not grant"
            )));
        }
        Ok(real)
    }
}

/// Refuses anything but a plain file with one link: devices, fifos and hard links
/// (which could alias a file outside the workspace) are never read or written.
fn plain_file(path: &Path, meta: &std::fs::Metadata) -> Result<(), types::Failure> {
    use std::os::unix::fs::MetadataExt;
    if !meta.is_file() {
        return Err(denied(format!("{} is not a regular file", path.display())));
    }
    if meta.nlink() > 1 {
        return Err(denied(format!("{} has several hard links", path.display())));
    }
    Ok(())
}

fn open_options(write: bool) -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    if write {
        o.write(true).create(true).truncate(true);
    } else {
        o.read(true);
    }
    // The path was resolved already: never follow a symlink swapped in since.
    o.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    o
}

fn read_file(path: &Path) -> Result<Vec<u8>, types::Failure> {
    use std::io::Read;
    let io = |e: std::io::Error| failure("INVALID_REQUEST", format!("{}: {e}", path.display()));
    let file = open_options(false).open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    plain_file(path, &meta)?;
    if meta.len() > MAX_READ_BYTES {
        return Err(failure(
            "INVALID_REQUEST",
            format!(
                "file is {} bytes, over the {MAX_READ_BYTES}-byte limit",
                meta.len()
            ),
        ));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_READ_BYTES)
        .read_to_end(&mut buf)
        .map_err(io)?;
    Ok(buf)
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), types::Failure> {
    use std::io::Write;
    let io = |e: std::io::Error| failure("INVALID_REQUEST", format!("{}: {e}", path.display()));
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        plain_file(path, &meta)?;
    }
    let mut file = open_options(true).open(path).map_err(io)?;
    file.write_all(data).map_err(io)
}

impl JobState {
    /// Reports a call and its outcome as `tool_call` / `tool_result` events around
    /// `op`.
    async fn reported<T, F>(
        &mut self,
        tool: &str,
        args: Value,
        summary: impl FnOnce(&T) -> Value,
        op: F,
    ) -> Result<T, types::Failure>
    where
        F: Future<Output = Result<T, types::Failure>>,
    {
        let call_id = crate::protocol::ids::prefixed("call");
        self.send_event(
            "tool_call",
            json!({"call_id": call_id, "tool": tool, "args": args}),
        )
        .await;
        let outcome = op.await;
        let body = match &outcome {
            Ok(v) => json!({"call_id": call_id, "result": summary(v)}),
            Err(f) => json!({"call_id": call_id, "error": {"code": f.code, "message": f.message}}),
        };
        self.send_event("tool_result", body).await;
        outcome
    }
}

/// `net.fetch` with every hop checked: the lease's URL patterns, then the address
/// policy (literal IPs here, names in the resolver).
async fn fetch(
    net: &NetClient,
    matcher: &LeaseMatcher,
    url: &str,
    method: &str,
    headers: Vec<(String, String)>,
    mut body: Option<Vec<u8>>,
) -> Result<capabilities::HttpResponse, types::Failure> {
    let invalid = |m: String| failure("INVALID_REQUEST", m);
    let mut url = url::Url::parse(url).map_err(|e| invalid(format!("URL {url:?}: {e}")))?;
    let mut method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| invalid(format!("method {method:?} is not an HTTP method")))?;
    for hop in 0..=net.policy.max_redirects {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!("scheme of {url} is not http or https")));
        }
        if !matcher.allows_url(&url) {
            return Err(denied(format!("net.fetch does not grant {url}")));
        }
        net.check_literal(&url).map_err(denied)?;
        let mut req = net.client.request(method.clone(), url.clone());
        for (k, v) in &headers {
            // The host sets Host itself: a plugin cannot aim at another virtual host.
            if !k.eq_ignore_ascii_case("host") {
                req = req.header(k.as_str(), v.as_str());
            }
        }
        if let Some(b) = &body {
            req = req.body(b.clone());
        }
        let resp = req.send().await.map_err(send_failure)?;
        let status = resp.status();
        if status.is_redirection()
            && let Some(location) = resp.headers().get(reqwest::header::LOCATION)
        {
            if hop == net.policy.max_redirects {
                return Err(invalid(format!(
                    "more than {} redirects",
                    net.policy.max_redirects
                )));
            }
            let location = location
                .to_str()
                .map_err(|_| invalid("redirect Location is not text".into()))?;
            url = url
                .join(location)
                .map_err(|e| invalid(format!("redirect to {location:?}: {e}")))?;
            if matches!(status.as_u16(), 301..=303) {
                method = reqwest::Method::GET;
                body = None;
            }
            continue;
        }
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let data = match super::read_body_within(resp, net.policy.max_response_bytes).await {
            Ok(data) => data,
            Err(super::BodyError::Read(e)) => return Err(send_failure(e)),
            Err(too_large) => return Err(invalid(format!("{too_large} of this runtime"))),
        };
        return Ok(capabilities::HttpResponse {
            status: status.as_u16(),
            headers,
            body: data,
        });
    }
    Err(invalid("too many redirects".into()))
}

/// A refusal by the resolver is a permission matter; anything else on the way is a
/// (retryable) failure to reach the server.
fn send_failure(e: reqwest::Error) -> types::Failure {
    let mut source: Option<&dyn std::error::Error> = Some(&e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::PermissionDenied
        {
            return denied(io.to_string());
        }
        source = err.source();
    }
    let mut f = failure("INTERNAL_ERROR", format!("request failed: {e}"));
    f.retryable = true;
    f
}

impl capabilities::Host for JobState {
    async fn delegate(
        &mut self,
        agent: String,
        input_json: String,
        lease_json: String,
    ) -> Result<String, types::Failure> {
        self.authority.recorded().await?;
        let authority = &mut self.authority;
        let checked = authority.admit().and_then(|()| {
            let (name, _) = crate::plugins::parse_agent_ref(&agent)
                .map_err(|e| failure("INVALID_REQUEST", e.message))?;
            if !authority.matcher.allows("agent.delegate", name)
                && !authority.matcher.allows("agent.delegate", &agent)
            {
                return Err(denied(format!("agent.delegate does not grant {agent:?}")));
            }
            let request: serde_json::Map<String, Value> = serde_json::from_str(&lease_json)
                .map_err(|e| {
                    failure(
                        "INVALID_REQUEST",
                        format!("child lease must be a JSON object of namespace → patterns: {e}"),
                    )
                })?;
            let child = Lease::from_request(Some(&request))
                .map_err(|e| failure("INVALID_REQUEST", e.message))?;
            crate::lease::check_subset(
                &authority.lease,
                &authority.matcher,
                &authority.budget,
                &child,
            )
            .map_err(|why| failure("LEASE_SUBSET_VIOLATION", why))?;
            // The child's budget is reserved from this job's (spec §9.4).
            for (currency, amount) in child.budgets() {
                authority.budget.charge(&currency, amount);
            }
            authority.publish_budget();
            Ok(child)
        });
        let delegator = self.authority.delegator.clone();
        let args = json!({"agent": agent, "lease": serde_json::from_str::<Value>(&lease_json).unwrap_or(Value::Null)});
        let op = async move {
            let child = checked?;
            let delegator = delegator.ok_or_else(|| denied("this runtime does not delegate"))?;
            delegator.delegate(agent, input_json, child).await
        };
        let summary = |out: &String| serde_json::from_str::<Value>(out).unwrap_or(Value::Null);
        self.reported("agent.delegate", args, summary, op).await
    }

    async fn complete(
        &mut self,
        model: String,
        request_json: String,
    ) -> Result<String, types::Failure> {
        self.authority.recorded().await?;
        let gateway = self.authority.models.clone();
        let admitted = self.authority.admit().and_then(|()| {
            let gateway = gateway
                .as_ref()
                .ok_or_else(|| denied("this runtime has no model gateway"))?;
            if !self.authority.matcher.allows("model.use", &model) {
                return Err(denied(format!("model.use does not grant {model:?}")));
            }
            if self.authority.budget.is_enforced() && !self.authority.budget.has(&gateway.currency)
            {
                return Err(denied(format!(
                    "model calls are charged in {}, which this job has no budget in",
                    gateway.currency
                )));
            }
            Ok(())
        });
        let args = json!({"model": model});
        let op = async {
            admitted?;
            let gateway = gateway.ok_or_else(|| denied("this runtime has no model gateway"))?;
            gateway
                .complete(&model, &request_json)
                .await
                .map(|c| (c, gateway.currency.clone()))
                .map_err(|(code, msg)| failure(&code, msg))
        };
        let summary = |(c, currency): &(super::model::Completion, String)| json!({"prompt_tokens": c.tokens.0, "completion_tokens": c.tokens.1, "cost": c.cost.to_string(), "currency": currency});
        let (completion, currency) = self.reported("model.use", args, summary, op).await?;
        // The cost is a charge like a plugin's cost.* metric: reported, then charged.
        let cost = completion.cost.to_string().parse::<f64>().unwrap_or(0.0);
        self.send_event(
            "metric",
            json!({"name": "cost.model", "value": cost, "unit": currency}),
        )
        .await;
        let charge = self.authority.budget.charge(&currency, completion.cost);
        self.authority.publish_budget();
        if let Charge::Charged {
            currency,
            remaining,
        } = charge
        {
            let left = remaining.to_string().parse::<f64>().unwrap_or(0.0);
            self.send_event(
                "metric",
                json!({"name": "cost.budget.remaining", "value": left, "unit": currency}),
            )
            .await;
        }
        Ok(completion.body)
    }

    async fn fetch(
        &mut self,
        url: String,
        method: String,
        headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
    ) -> Result<capabilities::HttpResponse, types::Failure> {
        self.authority.recorded().await?;
        let admitted = self.authority.admit();
        let net = self.authority.net.clone();
        let matcher = self.authority.matcher.clone();
        let args = json!({"url": url, "method": method});
        let op = async move {
            admitted?;
            let net = net.ok_or_else(|| denied("this runtime makes no outgoing requests"))?;
            fetch(&net, &matcher, &url, &method, headers, body).await
        };
        let summary =
            |r: &capabilities::HttpResponse| json!({"status": r.status, "bytes": r.body.len()});
        self.reported("net.fetch", args, summary, op).await
    }

    async fn read_file(&mut self, path: String) -> Result<Vec<u8>, types::Failure> {
        self.authority.recorded().await?;
        let checked = self
            .authority
            .admit()
            .and_then(|()| self.authority.resolve("fs.read", &path, true));
        let op = async move {
            let real = checked?;
            tokio::task::spawn_blocking(move || read_file(&real))
                .await
                .map_err(|e| failure("INTERNAL_ERROR", e.to_string()))?
        };
        self.reported(
            "fs.read",
            json!({"path": path}),
            |b: &Vec<u8>| json!({"bytes": b.len()}),
            op,
        )
        .await
    }

    async fn write_file(&mut self, path: String, data: Vec<u8>) -> Result<(), types::Failure> {
        self.authority.recorded().await?;
        let checked = self
            .authority
            .admit()
            .and_then(|()| self.authority.resolve("fs.write", &path, false));
        let len = data.len();
        let op = async move {
            let real = checked?;
            tokio::task::spawn_blocking(move || write_file(&real, &data))
                .await
                .map_err(|e| failure("INTERNAL_ERROR", e.to_string()))?
        };
        self.reported(
            "fs.write",
            json!({"path": path, "bytes": len}),
            |_: &()| json!({"written": len}),
            op,
        )
        .await
    }

    async fn list_dir(&mut self, path: String) -> Result<Vec<String>, types::Failure> {
        self.authority.recorded().await?;
        let admitted = self.authority.admit();
        let root = self.authority.workspace.clone();
        let visible = normalise_path(&path).map_err(|why| denied(format!("path {path:?} {why}")));
        let matcher = self.authority.matcher.clone();
        let list = move || {
            admitted?;
            let visible = visible?;
            let root =
                root.ok_or_else(|| denied("this runtime has no workspace for fs.* operations"))?;
            let dir = root.join(visible.trim_start_matches('/'));
            let real = dir
                .canonicalize()
                .map_err(|e| failure("INVALID_REQUEST", format!("{visible:?}: {e}")))?;
            if !real.starts_with(&root) {
                return Err(denied(format!(
                    "{visible:?} resolves outside the workspace"
                )));
            }
            let base = if visible == "/" {
                String::new()
            } else {
                visible.clone()
            };
            let mut names = Vec::new();
            let entries = std::fs::read_dir(&real)
                .map_err(|e| failure("INVALID_REQUEST", format!("{visible:?}: {e}")))?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                let child = format!("{base}/{name}");
                // A folder is listed when anything beneath it may be read.
                let allowed = matcher.allows("fs.read", &child)
                    || (is_dir && matcher.allows("fs.read", &format!("{child}/")));
                if allowed {
                    names.push(if is_dir { format!("{name}/") } else { name });
                }
            }
            if names.is_empty() && !matcher.allows("fs.read", &visible) {
                return Err(denied(format!("fs.read does not grant {visible:?}")));
            }
            names.sort();
            Ok(names)
        };
        let op = async move {
            tokio::task::spawn_blocking(list)
                .await
                .map_err(|e| failure("INTERNAL_ERROR", e.to_string()))?
        };
        self.reported(
            "fs.list",
            json!({"path": path}),
            |n: &Vec<String>| json!({"entries": n.len()}),
            op,
        )
        .await
    }

    async fn call_tool(
        &mut self,
        name: String,
        args_json: String,
    ) -> Result<String, types::Failure> {
        self.authority.recorded().await?;
        let admitted = self.authority.admit().and_then(|()| {
            if self.authority.matcher.allows("tool.call", &name) {
                Ok(())
            } else {
                Err(denied(format!("tool.call does not grant {name:?}")))
            }
        });
        let tools = self.authority.tools.clone();
        let args: Value =
            serde_json::from_str(&args_json).unwrap_or(Value::String(args_json.clone()));
        let tool = name.clone();
        let op = async move {
            admitted?;
            let tools =
                tools.ok_or_else(|| failure("INVALID_REQUEST", "this runtime has no tools"))?;
            serde_json::from_str::<Value>(&args_json).map_err(|e| {
                failure(
                    "INVALID_REQUEST",
                    format!("tool arguments are not JSON: {e}"),
                )
            })?;
            tools.call(tool, args_json).await
        };
        let summary = |out: &String| serde_json::from_str::<Value>(out).unwrap_or(Value::Null);
        self.reported(&name, args, summary, op).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt as _;

    fn gated(gate: tokio::sync::oneshot::Receiver<Result<(), String>>) -> Authority {
        let gate = async move { gate.await.unwrap_or_else(|_| Err("dropped".into())) };
        Authority {
            recorded: Some(gate.boxed().shared()),
            ..Authority::none()
        }
    }

    fn lease(fs_read: &[&str]) -> Lease {
        Lease::from_request(serde_json::json!({ "fs.read": fs_read }).as_object())
            .expect("a valid lease")
    }

    #[test]
    fn the_matcher_cache_shares_one_matcher_per_lease_and_stays_bounded() {
        let cache = MatcherCache::default();
        let docs = cache.get(&lease(&["/docs/**"])).unwrap();
        assert!(Arc::ptr_eq(
            &docs,
            &cache.get(&lease(&["/docs/**"])).unwrap()
        ));
        assert!(docs.allows("fs.read", "/docs/a.md"));
        // Another lease gets its own matcher, not the cached one.
        let data = cache.get(&lease(&["/data/*.csv"])).unwrap();
        assert!(data.allows("fs.read", "/data/x.csv"));
        assert!(!data.allows("fs.read", "/docs/a.md"));
        for i in 0..MATCHER_CACHE * 2 {
            let m = cache.get(&lease(&[&format!("/n{i}/*")])).unwrap();
            assert!(m.allows("fs.read", &format!("/n{i}/f")));
            assert!(cache.matchers.lock().unwrap().len() <= MATCHER_CACHE);
        }
    }

    #[tokio::test]
    async fn authority_bearing_calls_wait_for_the_record_and_fail_when_it_was_not_stored() {
        assert!(Authority::none().recorded().await.is_ok());

        let (stored, gate) = tokio::sync::oneshot::channel();
        let authority = gated(gate);
        let mut waiting = Box::pin(authority.recorded());
        assert!(futures_util::poll!(&mut waiting).is_pending());
        stored.send(Ok(())).unwrap();
        assert!(waiting.await.is_ok());
        // Later calls find the verdict at once.
        assert!(authority.recorded().now_or_never().unwrap().is_ok());

        let (stored, gate) = tokio::sync::oneshot::channel();
        let authority = gated(gate);
        stored.send(Err("disk full".into())).unwrap();
        let failure = authority.recorded().await.unwrap_err();
        assert_eq!(failure.code, "INTERNAL_ERROR");
        assert!(failure.message.contains("disk full"), "{}", failure.message);
    }
}
