//! Provisioned credentials (spec §9.8): short-lived per-job credentials for an
//! upstream cost-bearing service, minted at acceptance with the job's lease baked in,
//! shown only to the submitter (in `job.accepted`), and revoked at every terminal
//! state. Outstanding credentials are recorded in the store, so that a restart
//! revokes again whatever a crash left live.
//!
//! Owns the provisioner interface and its one implementation, the LiteLLM key API
//! (`/key/generate`, `/key/delete`), the de facto standard for virtual keys in front
//! of OpenAI-compatible endpoints. It never decides whether a job gets credentials
//! (the session's negotiated features do) and never touches the wire.

use crate::lease::Lease;
use crate::protocol::ids;
use serde_json::{Map, Value, json};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Largest reply the provisioner may send (a key record is a few hundred bytes).
const MAX_REPLY_BYTES: usize = 1 << 20;

/// A freshly minted credential.
#[derive(Debug, Clone)]
pub struct Minted {
    /// The wire object for `job.accepted.credentials` (`id`, `scheme`, `value`,
    /// `endpoint`, `profile`, `constraints`).
    pub wire: Value,
    /// The credential's `id`.
    pub id: String,
    /// What revocation needs (the upstream's handle for the key).
    pub handle: String,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Mints and revokes per-job credentials at an upstream.
pub trait Provisioner: Send + Sync + 'static {
    /// Mints a credential for `job_id` constrained to `lease` (its `model.use` and
    /// `cost.budget`) and `expires_at`.
    fn mint<'a>(
        &'a self,
        job_id: &'a str,
        lease: &'a Lease,
        expires_at: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Minted, String>>;
    /// Revokes the credential behind `handle`.
    fn revoke<'a>(&'a self, handle: &'a str) -> BoxFuture<'a, Result<(), String>>;
}

/// The LiteLLM proxy's key API.
pub struct LiteLlm {
    client: reqwest::Client,
    admin_url: String,
    admin_key: Option<String>,
    endpoint: String,
    profile: String,
    currency: String,
}

impl LiteLlm {
    /// A provisioner against the proxy at `admin_url`, whose keys are valid at
    /// `endpoint`; `currency` is the unit of its spend caps.
    pub fn new(
        admin_url: String,
        admin_key: Option<String>,
        endpoint: String,
        profile: String,
        currency: String,
    ) -> anyhow::Result<LiteLlm> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(LiteLlm {
            client,
            admin_url: admin_url.trim_end_matches('/').to_owned(),
            admin_key,
            endpoint,
            profile,
            currency,
        })
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        let mut req = self
            .client
            .post(format!("{}{path}", self.admin_url))
            .json(&body);
        if let Some(key) = &self.admin_key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = resp.status();
        let bytes = crate::sandbox::read_body_within(resp, MAX_REPLY_BYTES)
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        let text = String::from_utf8_lossy(&bytes);
        if !status.is_success() {
            return Err(format!("{path} answered {status}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("{path}: reply is not JSON: {e}"))
    }
}

impl Provisioner for LiteLlm {
    fn mint<'a>(
        &'a self,
        job_id: &'a str,
        lease: &'a Lease,
        expires_at: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Minted, String>> {
        Box::pin(async move {
            let models = lease.patterns("model.use").to_vec();
            let mut request = Map::new();
            request.insert("models".into(), models.clone().into());
            request.insert("metadata".into(), json!({"arcp_job_id": job_id}));
            let mut constraints = Map::new();
            constraints.insert("model.use".into(), models.into());
            if let Some(amount) = lease.budgets().get(&self.currency) {
                let cap = amount.to_string().parse::<f64>().unwrap_or(0.0);
                request.insert("max_budget".into(), cap.into());
                constraints.insert(
                    "cost.budget".into(),
                    json!([format!("{}:{amount}", self.currency)]),
                );
            }
            if let Some(at) = expires_at {
                let left = chrono::DateTime::parse_from_rfc3339(at)
                    .map(|t| {
                        (t.with_timezone(&chrono::Utc) - chrono::Utc::now())
                            .num_seconds()
                            .max(1)
                    })
                    .map_err(|e| format!("expires_at: {e}"))?;
                request.insert("duration".into(), format!("{left}s").into());
                constraints.insert("expires_at".into(), at.into());
            }
            let reply = self.post("/key/generate", Value::Object(request)).await?;
            let key = reply["key"]
                .as_str()
                .ok_or("/key/generate returned no key")?
                .to_owned();
            // Revoke by the proxy's hashed token where it gives one, so that the key
            // itself is never stored.
            let handle = reply["token"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| key.clone());
            let id = ids::prefixed("cred");
            let wire = json!({
                "id": id, "scheme": "bearer", "value": key,
                "endpoint": self.endpoint, "profile": self.profile,
                "constraints": constraints,
            });
            Ok(Minted { wire, id, handle })
        })
    }

    fn revoke<'a>(&'a self, handle: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.post("/key/delete", json!({"keys": [handle]}))
                .await
                .map(|_| ())
        })
    }
}
