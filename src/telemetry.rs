//! Traces: the `job` span every job runs in, and (with the `otel` cargo feature) the
//! OpenTelemetry exporter that turns `tracing` spans into OTLP traces.
//!
//! This module owns two things. [`job_span`] makes the span a job's task runs in;
//! with the exporter on, that span's OpenTelemetry trace id is the job's ARCP trace
//! id (spec §6.4's `trace_id`: the client's, or minted at submit), so that the
//! exported `job` span and everything logged under it join the client's trace.
//! [`otel_layer`] builds the exporter from the standard `OTEL_*` environment
//! variables: OTLP over HTTP/protobuf with a batch span processor, only when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; its
//! [`Guard`] flushes the spans still queued when it is dropped.
//!
//! It must not touch what the spans carry for the log lines (the fmt subscriber and
//! `ARCP_LOG` stay in `main.rs`, and the spans' names, targets and fields are the
//! logs' too), nor the ARCP trace id itself: normalising or minting it is the job
//! manager's, at submit. Without the `otel` feature nothing here exports anything,
//! and no OpenTelemetry crate is built.

use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// The environment variables that turn the exporter on (either is enough).
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
];

/// The span a job's task runs in (named `job`, target `arcp_host::jobs`, with the
/// job id, the agent and the ARCP trace id, 32 lowercase hex digits, as fields).
/// With the exporter on, its OpenTelemetry parent is a remote span of that trace id
/// (a random span id, sampled), unless it is started inside a span of the same trace
/// already (a delegated job under its parent's), which then stays its parent.
pub fn job_span(job_id: &str, agent: &str, trace_id: &str) -> tracing::Span {
    let span = tracing::info_span!(target: "arcp_host::jobs", "job", job_id = %job_id, agent = %agent, trace_id = %trace_id);
    #[cfg(feature = "otel")]
    otel::join_trace(&span, trace_id);
    span
}

/// The endpoint the environment names for traces, if any.
fn configured_endpoint() -> Option<String> {
    ENDPOINT_VARS
        .iter()
        .rev()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
}

/// What [`otel_layer`] set up; dropping it flushes and stops the exporter (keep it
/// until the process ends: spans closed after it are not exported).
#[must_use = "dropping the guard stops the exporter"]
pub struct Guard {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    /// Said by [`Guard::log_status`] once a subscriber is installed.
    status: Option<(tracing::Level, String)>,
}

impl Guard {
    /// Logs whether traces are exported, and where (a warning when the environment
    /// asks for them but they cannot be). Call it once the subscriber is installed.
    pub fn log_status(&self) {
        match &self.status {
            Some((level, msg)) if *level == tracing::Level::WARN => tracing::warn!("{msg}"),
            Some((_, msg)) => tracing::info!("{msg}"),
            None => {}
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider.take() {
            // Exports what the batch processor still holds (bounded: a collector that
            // does not answer must not hold the exit up for long).
            if let Err(e) = provider.shutdown_with_timeout(std::time::Duration::from_secs(5)) {
                eprintln!("arcp-host: flushing traces at exit failed: {e}");
            }
        }
    }
}

/// The layer that exports spans, when the environment asks for it and the binary
/// was built with the `otel` feature (`None` otherwise), and its [`Guard`]. Layer it
/// over the subscriber that logs, so that `ARCP_LOG` filters both alike.
pub fn otel_layer<S>() -> (Option<Box<dyn Layer<S> + Send + Sync>>, Guard)
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let Some(endpoint) = configured_endpoint() else {
        return (None, Guard::quiet());
    };
    #[cfg(feature = "otel")]
    {
        otel::layer(&endpoint)
    }
    #[cfg(not(feature = "otel"))]
    {
        let guard = Guard {
            status: Some((
                tracing::Level::WARN,
                format!(
                    "OpenTelemetry export requested ({endpoint}) but this arcp-host was built without the `otel` feature: no traces are exported (rebuild with `cargo build --release --features otel`)"
                ),
            )),
        };
        (None, guard)
    }
}

impl Guard {
    fn quiet() -> Guard {
        Guard {
            #[cfg(feature = "otel")]
            provider: None,
            status: None,
        }
    }
}

#[cfg(feature = "otel")]
mod otel {
    use super::Guard;
    use opentelemetry::trace::{
        SpanContext, TraceContextExt as _, TraceFlags, TraceId, TraceState, TracerProvider as _,
    };
    use opentelemetry_sdk::trace::{IdGenerator as _, RandomIdGenerator, SdkTracerProvider};
    use std::sync::atomic::{AtomicBool, Ordering};
    use tracing::Subscriber;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    use tracing_subscriber::Layer;
    use tracing_subscriber::registry::LookupSpan;

    /// Whether the exporter's layer is installed (no work per job otherwise).
    static EXPORTING: AtomicBool = AtomicBool::new(false);

    /// Makes `span`'s OpenTelemetry trace the ARCP trace `trace_id`.
    pub(super) fn join_trace(span: &tracing::Span, trace_id: &str) {
        if !EXPORTING.load(Ordering::Relaxed) {
            return;
        }
        let Ok(trace) = TraceId::from_hex(trace_id) else {
            return;
        };
        if trace == TraceId::INVALID {
            return;
        }
        // Started inside a span of this trace already (a delegated job inside its
        // parent's): that span stays the parent.
        let current = tracing::Span::current().context();
        if current.span().span_context().trace_id() == trace {
            return;
        }
        // The client's own span id is not kept past submit (only the trace id is):
        // the remote parent gets a random one.
        let parent = SpanContext::new(
            trace,
            RandomIdGenerator::default().new_span_id(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        // Fails only when the span is disabled (ARCP_LOG filters `job` spans out).
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
    }

    /// The exporting layer, or `None` (and a warning) when the environment switches
    /// it off or the exporter cannot be built.
    pub(super) fn layer<S>(endpoint: &str) -> (Option<Box<dyn Layer<S> + Send + Sync>>, Guard)
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let off = |var: &str, value: &str| {
            std::env::var(var).is_ok_and(|v| v.trim().eq_ignore_ascii_case(value))
        };
        if off("OTEL_SDK_DISABLED", "true") || off("OTEL_TRACES_EXPORTER", "none") {
            let guard = Guard {
                provider: None,
                status: Some((
                    tracing::Level::INFO,
                    "OpenTelemetry export switched off (OTEL_SDK_DISABLED or OTEL_TRACES_EXPORTER)"
                        .into(),
                )),
            };
            return (None, guard);
        }
        // Reads the OTEL_EXPORTER_OTLP_* variables (endpoint, headers, timeout).
        let exporter = match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(e) => e,
            Err(e) => {
                let guard = Guard {
                    provider: None,
                    status: Some((
                        tracing::Level::WARN,
                        format!("OpenTelemetry export to {endpoint} not started: {e}"),
                    )),
                };
                return (None, guard);
            }
        };
        // service.name: OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES when they say
        // it, else arcp-host.
        let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.is_empty())
            || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| {
                v.split(',')
                    .any(|kv| kv.trim().starts_with("service.name="))
            });
        let mut resource = opentelemetry_sdk::Resource::builder().with_attribute(
            opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        );
        if !named {
            resource = resource.with_service_name("arcp-host");
        }
        // The batch processor runs on its own thread and reads OTEL_BSP_*.
        let provider = SdkTracerProvider::builder()
            .with_resource(resource.build())
            .with_batch_exporter(exporter)
            .build();
        let tracer = provider.tracer("arcp-host");
        EXPORTING.store(true, Ordering::Relaxed);
        let layer = tracing_opentelemetry::layer().with_tracer(tracer).boxed();
        let guard = Guard {
            provider: Some(provider),
            status: Some((
                tracing::Level::INFO,
                format!("exporting traces over OTLP/HTTP to {endpoint}"),
            )),
        };
        (Some(layer), guard)
    }
}
