//! Files in the runtime's workspace: lease namespaces `fs.read` and `fs.write`.
//!
//! Paths are relative to the workspace root the operator configured
//! (`/notes/a.txt` and `notes/a.txt` are the same file); the lease's patterns are
//! matched against the path with a leading `/`. `..`, symlinks and hard links never
//! lead outside what the lease grants. Every call is checked first against the
//! lease's expiry (`LEASE_EXPIRED`) and budgets (`BUDGET_EXHAUSTED`), then its
//! namespace's patterns (`PERMISSION_DENIED`, also when the runtime has no
//! workspace), and is reported as `tool_call`/`tool_result` events (tool
//! `fs.read`, `fs.write` or `fs.list`). A missing file or folder, or one that
//! cannot be read, is `INVALID_REQUEST`.
//!
//! ```no_run
//! use arcp_agent::prelude::*;
//!
//! let names = fs::list_dir("/docs")?; // folders end in `/`
//! let text = fs::read_to_string("/docs/hello.txt")?;
//! fs::write_file("/out/hello.upper.txt", text.to_uppercase())?;
//! # Ok::<(), Failure>(())
//! ```

use crate::Failure;
use crate::bindings::arcp::agent::capabilities as wit;

/// `fs.read`: the bytes of a file (at most 16 MiB: a larger file is
/// `INVALID_REQUEST`). Only plain files with a single link are read.
pub fn read_file(path: &str) -> Result<Vec<u8>, Failure> {
    wit::read_file(path).map_err(Failure::from)
}

/// `fs.read`: a file's text; `INVALID_REQUEST` when it is not UTF-8 (use
/// [`read_file`] and [`String::from_utf8_lossy`] to take it anyway).
pub fn read_to_string(path: &str) -> Result<String, Failure> {
    String::from_utf8(read_file(path)?)
        .map_err(|e| Failure::invalid_request(format!("{path:?} is not UTF-8 text: {e}")))
}

/// `fs.write`: creates or replaces a file. Its folder must exist.
pub fn write_file(path: &str, data: impl AsRef<[u8]>) -> Result<(), Failure> {
    wit::write_file(path, data.as_ref()).map_err(Failure::from)
}

/// `fs.read`: the names in a folder that the lease lets this job read, sorted;
/// folders end in `/`. `PERMISSION_DENIED` when nothing in it may be read and the
/// folder itself is not granted.
pub fn list_dir(path: &str) -> Result<Vec<String>, Failure> {
    wit::list_dir(path).map_err(Failure::from)
}
