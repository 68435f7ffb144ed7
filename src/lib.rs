//! arcp-host: an ARCP v1.1 runtime whose agents are sandboxed WebAssembly components.
//!
//! The path of one job: [`transport`] turns frames into envelopes' text,
//! [`session`] owns one client's session, [`jobs`] owns job records and their
//! lifecycle, [`sandbox`] runs each job in its own wasmtime store, [`lease`] says what
//! a job may do, [`store`] keeps events and jobs, and [`plugins`] keeps the registry
//! of agents from the plugin folder. [`runtime`] wires them together.

pub mod bench;
pub mod client;
pub mod config;
pub mod credentials;
pub mod jobs;
pub mod metrics;
pub mod plugins;
pub mod runtime;
pub mod sandbox;
pub mod scaffold;
pub mod session;
pub mod store;
pub mod telemetry;
pub mod transport;

// Wire types, the error taxonomy and leases live in their own crate (no I/O, no
// wasmtime), so that they can be fuzzed on their own (fuzz/); re-exported here so
// that `crate::protocol`, `crate::error` and `crate::lease` paths are unchanged.
pub use arcp_protocol::{error, lease, protocol};

pub use error::{ArcpError, ErrorCode};
pub use runtime::Runtime;
