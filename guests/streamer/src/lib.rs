//! `streamer`: input `{"chunks": K, "chunk_size": S}`. Streams its result as K
//! `result_chunk`s (utf8); chunk i is i as 6 zero-padded digits followed by
//! `abcdefghijklmnopqrstuvwxyz0123456789` repeated, cut to S bytes.

wit_bindgen::generate!({ path: "../../wit", world: "agent" });

use arcp::agent::result_stream::{self, Encoding};

use serde_json::Value;

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

struct Streamer;

fn invalid(message: &str) -> Failure {
    Failure { code: "INVALID_REQUEST".into(), message: message.into(), retryable: false }
}

/// Chunk `i` of `size` bytes, or None when that much memory cannot be had.
fn chunk(i: u64, size: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    out.try_reserve_exact(size.max(6)).ok()?;
    out.extend_from_slice(format!("{i:06}").as_bytes());
    out.extend(ALPHABET.iter().cycle().take(size.saturating_sub(out.len())));
    out.truncate(size);
    Some(out)
}

impl Guest for Streamer {
    fn run(_job: JobInfo, input_json: String) -> Result<String, Failure> {
        let input: Value =
            serde_json::from_str(&input_json).map_err(|e| invalid(&format!("input is not JSON: {e}")))?;
        let chunks = input["chunks"].as_u64().ok_or_else(|| invalid("`chunks` must be a non-negative integer"))?;
        let size = input["chunk_size"]
            .as_u64()
            .ok_or_else(|| invalid("`chunk_size` must be a non-negative integer"))?;
        let too_large = || invalid(&format!("`chunk_size` is too large: {size} bytes"));
        let size = usize::try_from(size).map_err(|_| too_large())?;
        for i in 0..chunks {
            result_stream::write(&chunk(i, size).ok_or_else(too_large)?, Encoding::Utf8)?;
        }
        Ok(Value::String(format!("{chunks} chunks")).to_string())
    }
}

export!(Streamer);
