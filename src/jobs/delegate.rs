//! `agent.delegate` backend: a child job of another plugin, started by a running
//! job (spec §10). The sandbox has already checked that the child's lease is a
//! subset of the parent's and reserved its budget; this module starts the child as
//! a real job (listed, subscribable, with `parent_job_id` and the parent's trace
//! id), reports it with a `delegate` event in the parent, and waits for its end.

use super::{Job, JobManager};
use crate::error::ArcpError;
use crate::lease::Lease;
use crate::protocol::{AcceptedPayload, EventBody, ids, now_rfc3339};
use crate::sandbox::{Delegator, Failure};
use serde_json::{Value, json};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};

/// Starts children of one parent job.
pub struct ChildJobs {
    pub(super) manager: Weak<JobManager>,
    pub(super) parent: Arc<Job>,
}

fn to_failure(e: ArcpError) -> Failure {
    Failure {
        code: e.code.as_str().into(),
        message: e.message,
        retryable: e.retryable,
    }
}

impl Delegator for ChildJobs {
    fn delegate(
        &self,
        agent: String,
        input_json: String,
        lease: Lease,
    ) -> Pin<Box<dyn Future<Output = Result<String, Failure>> + Send>> {
        let manager = self.manager.upgrade();
        let parent = self.parent.clone();
        Box::pin(async move {
            let manager = manager
                .ok_or_else(|| to_failure(ArcpError::internal("the runtime is shutting down")))?;
            let input: Value = serde_json::from_str(&input_json).map_err(|e| {
                to_failure(ArcpError::invalid(format!("child input is not JSON: {e}")))
            })?;
            let child = manager
                .start_child(&parent, &agent, input, lease)
                .map_err(to_failure)?;
            parent
                .event(
                    "delegate".into(),
                    EventBody::Json(crate::protocol::raw_payload(
                        &json!({"child_job_id": child.id, "agent": child.agent}),
                    )),
                )
                .await;
            let ended = child.outcome.wait_for(Option::clone).await;
            match ended.result {
                Ok(text) => Ok(text.get().to_owned()),
                Err(e) => Err(to_failure(e)),
            }
        })
    }
}

impl JobManager {
    /// Registers and starts a child of `parent`: same principal, session and trace;
    /// the parent's lease expiry; the child plugin's ceiling applied to `lease`.
    fn start_child(
        self: &Arc<Self>,
        parent: &Arc<Job>,
        agent: &str,
        input: Value,
        lease: Lease,
    ) -> Result<Arc<Job>, ArcpError> {
        let plugin = self.registry.inventory().resolve(agent)?;
        // A child counts against its principal's running jobs like any job: a plugin
        // must not get past the cap by delegating.
        let slot = self.reserve_slot(&parent.principal)?;
        let lease = super::effective_lease(&plugin, &lease)?;
        let max_runtime = self.max_runtime(&plugin, None)?;
        let job_id = ids::prefixed("job");
        let budgets = lease.budgets();
        let accepted = AcceptedPayload {
            job_id: job_id.clone(),
            agent: plugin.reference(),
            accepted_at: now_rfc3339(),
            lease: lease.to_wire(),
            lease_constraints: parent.accepted.lease_constraints.clone(),
            budget: (!budgets.is_empty()).then(|| crate::lease::budget_to_wire(&budgets)),
            trace_id: parent.trace_id.to_string(),
            request_id: parent.accepted.request_id.clone(),
            parent_job_id: Some(parent.id.to_string()),
            credentials: Vec::new(),
        };
        let child = Job::new(
            &parent.principal,
            lease,
            accepted,
            parent.outbox.clone(),
            parent.expires_at,
        );
        if parent.status().is_terminal() {
            return Err(ArcpError::invalid("the parent job has ended"));
        }
        if let Ok(mut held) = child.slot.lock() {
            *held = Some(slot);
        }
        if let Ok(mut c) = parent.children.lock() {
            c.push(job_id);
        }
        self.register(&child);
        self.store.put_job(child.record());
        // Its record is not waited for: it acts under its parent's, already stored.
        self.launch(child.clone(), plugin, input, max_runtime, None)?;
        Ok(child)
    }
}
