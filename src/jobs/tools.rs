//! `tool.call` backends: operator-registered tools (`[tools.NAME]`) implemented by
//! plugin components, each call run in a fresh store with no authority of its own.

use crate::config::ToolConfig;
use crate::plugins::Registry;
use crate::sandbox::{
    Authority, DiscardEvents, Failure, JobInfo, JobSpec, RunOutcome, Sandbox, ToolRunner,
};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Tools backed by plugins.
pub struct PluginTools {
    pub(super) registry: Arc<Registry>,
    pub(super) sandbox: Arc<Sandbox>,
    pub(super) tools: BTreeMap<String, ToolConfig>,
    pub(super) memory_bytes: u64,
    /// The calling job, for the tool run's `job-info`.
    pub(super) job_id: String,
    pub(super) trace_id: String,
}

fn failure(code: &str, message: String) -> Failure {
    Failure {
        code: code.into(),
        message,
        retryable: code == "INTERNAL_ERROR",
    }
}

impl ToolRunner for PluginTools {
    fn call(
        &self,
        name: String,
        args_json: String,
    ) -> Pin<Box<dyn Future<Output = Result<String, Failure>> + Send>> {
        let tool = self.tools.get(&name).cloned();
        let registry = self.registry.clone();
        let sandbox = self.sandbox.clone();
        let memory_bytes = self.memory_bytes;
        let info = JobInfo {
            job_id: self.job_id.clone(),
            agent: String::new(),
            trace_id: Some(self.trace_id.clone()),
            parent_job_id: None,
        };
        Box::pin(async move {
            let tool = tool.ok_or_else(|| {
                failure(
                    "INVALID_REQUEST",
                    format!("no tool named {name:?} is registered"),
                )
            })?;
            let plugin = registry
                .inventory()
                .resolve(&tool.plugin)
                .map_err(|e| failure("INTERNAL_ERROR", format!("tool {name:?}: {}", e.message)))?;
            let spec = JobSpec {
                info: JobInfo {
                    agent: plugin.reference(),
                    ..info
                },
                input_json: args_json,
                // The tool plugin's own sidecar may lower the ceiling, as for its jobs.
                memory_bytes: plugin.manifest.memory_ceiling(memory_bytes),
                authority: Authority::none(),
                fuel: None,
                waits_for_instance: false,
            };
            // A tool's own events are not the calling job's: they are dropped.
            match sandbox
                .run(&plugin.agent, spec, Arc::new(DiscardEvents))
                .await
            {
                RunOutcome::Success {
                    output,
                    stream: None,
                } => Ok(output),
                RunOutcome::Success {
                    stream: Some(_), ..
                } => Err(failure(
                    "INTERNAL_ERROR",
                    format!("tool {name:?} streamed a result; tools must return theirs"),
                )),
                RunOutcome::Failed(f) => Err(f),
                RunOutcome::Trapped(msg) | RunOutcome::InstantiationFailed(msg) => Err(failure(
                    "INTERNAL_ERROR",
                    format!("tool {name:?} failed: {msg}"),
                )),
            }
        })
    }
}
