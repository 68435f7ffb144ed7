//! arcp-protocol: what arcp-host decodes from and encodes to the wire, kept apart
//! from the runtime so that it can be tested and fuzzed on its own.
//!
//! It owns:
//! - [`protocol`]: the ARCP v1.1 envelope and every message payload (decoding a
//!   frame's text into an [`protocol::Envelope`] with `INVALID_REQUEST` reasons,
//!   typed payloads, outbound builders, [`protocol::fit_within`]);
//! - [`error`]: the error taxonomy, the 15 spec codes and [`error::ArcpError`];
//! - [`lease`]: lease parsing and validation, ceilings, path normalisation, glob
//!   and URL matching, budget counters and delegation subsetting.
//!
//! It must stay pure: no I/O (files, sockets, the store), no async runtime, no
//! wasmtime, no knowledge of sessions, jobs, plugins or the host's configuration.
//! Everything here is reachable by client input, and `fuzz/` instruments all of it,
//! so a new dependency makes the fuzz build slower and must be justified. The host
//! (`arcp-host`) depends on this crate, never the other way round.

pub mod error;
pub mod lease;
pub mod protocol;

pub use error::{ArcpError, ErrorCode};
