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
pub mod error;
pub mod jobs;
pub mod lease;
pub mod metrics;
pub mod plugins;
pub mod protocol;
pub mod runtime;
pub mod sandbox;
pub mod scaffold;
pub mod session;
pub mod store;
pub mod transport;

pub use error::{ArcpError, ErrorCode};
pub use runtime::Runtime;
