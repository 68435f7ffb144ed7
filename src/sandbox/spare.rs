//! Spare instances: a plugin's next instance made ready before its job arrives.
//!
//! Instantiating a component from the pool takes 20–25 µs on a sequential job's path
//! (its pages and tables are cold by then; BENCHMARKS.md, 2026-12-07). When few jobs
//! run, a job that has sent its result leaves a fresh instance of its plugin behind,
//! in a store of its own, and the plugin's next job starts in it: it takes the store,
//! gives it its sink, authority and epoch deadline, and calls `run`.
//!
//! What keeps this invisible to plugins and jobs:
//! - Only components whose instantiation runs none of their code get spares
//!   ([`runs_code_when_instantiated`]): no core module with a start function, no
//!   component start. Instantiating them only lays out memories, tables and globals,
//!   so nothing a plugin does can happen before its job exists, under no one's
//!   authority.
//! - A spare is never reused: a job takes it whole and it goes when the job ends,
//!   as a fresh store would. Nothing of one job's instance reaches another.
//! - Its memory ceiling is the one it was instantiated under; a job with another
//!   ceiling (a tool run, say) does not take it.
//! - It holds an instance of the pool and, where submitted jobs queue for those,
//!   the permit a job would hold: a spare is made only when one is free at once, and
//!   the job that takes it takes its permit.
//! - It lives with its plugin's prepared code: a plugin replaced or removed drops
//!   its spare with it; and one that no job takes for a while is dropped (the
//!   runtime's sweep), so that a plugin used once an hour does not hold an instance
//!   and its memory all the time between.
//!
//! Owns the spare's slot and the check of a component's start functions; the store,
//! the pool and when to make one are `Sandbox`'s.

use super::{Agent, PreparedAgent, host};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use wasmtime::Store;

/// One instance made ready for the next job of its plugin.
pub(super) struct Spare {
    pub(super) store: Store<host::JobState>,
    pub(super) instance: Agent,
    /// The pool permit a submitted job would hold (see the module docs).
    pub(super) permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The memory ceiling it was instantiated under.
    pub(super) memory_bytes: u64,
    /// Counts it among the spares held until it is taken or dropped.
    pub(super) _counted: Counted,
    /// When it was made (see [`SpareSlot::drop_made_before`]).
    pub(super) made: std::time::Instant,
}

/// One spare in the gauge of spares held, for as long as this lives.
pub(super) struct Counted(prometheus_client::metrics::gauge::Gauge);

impl Counted {
    pub(super) fn new(gauge: &prometheus_client::metrics::gauge::Gauge) -> Counted {
        gauge.inc();
        Counted(gauge.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Where a plugin keeps its spare.
#[derive(Default)]
pub(super) struct SpareSlot {
    spare: Mutex<Option<Spare>>,
    /// Set when making a spare failed (its memory over the ceiling, say): the
    /// plugin's jobs then instantiate as they come, and report that failure
    /// themselves, instead of each trying again for nothing.
    refused: AtomicBool,
}

impl SpareSlot {
    /// Takes the spare, when there is one made under `memory_bytes`.
    pub(super) fn take(&self, memory_bytes: u64) -> Option<Spare> {
        let mut held = self.spare.lock().ok()?;
        match &*held {
            Some(spare) if spare.memory_bytes == memory_bytes => held.take(),
            _ => None,
        }
    }

    /// Whether a spare is wanted: none held and none refused.
    pub(super) fn wants_one(&self) -> bool {
        !self.refused.load(Ordering::Relaxed) && self.spare.lock().is_ok_and(|s| s.is_none())
    }

    /// Keeps `spare` unless another was put first (it is then dropped).
    pub(super) fn put(&self, spare: Spare) {
        if let Ok(mut held) = self.spare.lock()
            && held.is_none()
        {
            *held = Some(spare);
        }
    }

    /// Drops the spare if it was made before `cutoff` (no job took it since).
    /// Whether one was dropped.
    pub(super) fn drop_made_before(&self, cutoff: std::time::Instant) -> bool {
        let Ok(mut held) = self.spare.lock() else {
            return false;
        };
        match &*held {
            Some(spare) if spare.made < cutoff => held.take().is_some(),
            _ => false,
        }
    }

    /// Stops making spares for this plugin.
    pub(super) fn refuse(&self) {
        self.refused.store(true, Ordering::Relaxed);
    }

    /// Whether a spare is held now.
    pub(super) fn holds_one(&self) -> bool {
        self.spare.lock().is_ok_and(|s| s.is_some())
    }
}

/// What a finished job leaves to make its plugin's next spare from (see
/// `Finished::release`).
pub struct Refill {
    pub(super) agent: PreparedAgent,
    pub(super) memory_bytes: u64,
}

/// Whether instantiating the component in `bytes` runs any of its code: a core
/// module (at any depth) with a start function, or a component start function.
/// Bytes that do not parse count as running code.
pub fn runs_code_when_instantiated(bytes: &[u8]) -> bool {
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload {
            Ok(wasmparser::Payload::StartSection { .. })
            | Ok(wasmparser::Payload::ComponentStartSection { .. })
            | Err(_) => return true,
            Ok(_) => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(wat: &str) -> Vec<u8> {
        wat::parse_str(wat).unwrap_or_else(|e| panic!("test component: {e}"))
    }

    #[test]
    fn a_component_without_start_functions_runs_no_code_when_instantiated() {
        let bytes = component(
            r#"(component
                 (core module $m (memory 1) (data (i32.const 0) "hi") (func (export "f")))
                 (core instance (instantiate $m)))"#,
        );
        assert!(!runs_code_when_instantiated(&bytes));
    }

    #[test]
    fn a_core_module_start_function_runs_code_when_instantiated() {
        let bytes = component(
            r#"(component
                 (core module $m (func $init) (start $init))
                 (core instance (instantiate $m)))"#,
        );
        assert!(runs_code_when_instantiated(&bytes));
    }

    #[test]
    fn a_start_function_in_a_nested_component_is_found() {
        let bytes = component(
            r#"(component
                 (component $inner
                   (core module $m (func $init) (start $init))
                   (core instance (instantiate $m)))
                 (instance (instantiate $inner)))"#,
        );
        assert!(runs_code_when_instantiated(&bytes));
    }

    /// The bundled plugins, built by wit-bindgen and wasm-component-ld, run their
    /// constructors on their first export call, not at instantiation: they all may
    /// have spares.
    #[test]
    fn the_bundled_plugins_run_no_code_when_instantiated() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
            let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
            if path.extension().is_some_and(|e| e == "wasm") {
                let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
                assert!(!runs_code_when_instantiated(&bytes), "{path:?}");
                seen += 1;
            }
        }
        assert!(seen >= 10, "the bundled plugins are there ({seen})");
        // componentize-py's component runs its interpreter's start-up when it is
        // built (pre-initialised), not when it is instantiated.
        let python = dir.join("python/py-wordcount@1.0.0.wasm");
        let bytes = std::fs::read(&python).unwrap_or_else(|e| panic!("{python:?}: {e}"));
        assert!(!runs_code_when_instantiated(&bytes), "{python:?}");
    }

    #[test]
    fn bytes_that_do_not_parse_count_as_running_code() {
        assert!(runs_code_when_instantiated(b"\0asm\x0d\0\x01\0garbage"));
        assert!(runs_code_when_instantiated(b"not wasm at all"));
    }
}
