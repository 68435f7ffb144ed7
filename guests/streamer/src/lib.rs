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

/// Chunk `i` of `size` bytes.
fn chunk(i: u64, size: usize) -> Vec<u8> {
    let mut out = format!("{i:06}").into_bytes();
    out.extend(ALPHABET.iter().cycle().take(size.saturating_sub(out.len())));
    out.truncate(size);
    out
}

impl Guest for Streamer {
    fn run(_job: JobInfo, input_json: String) -> Result<String, Failure> {
        let input: Value = serde_json::from_str(&input_json).map_err(|_| invalid("input is not JSON"))?;
        let chunks = input["chunks"].as_u64().ok_or_else(|| invalid("`chunks` must be a non-negative integer"))?;
        let size = input["chunk_size"]
            .as_u64()
            .ok_or_else(|| invalid("`chunk_size` must be a non-negative integer"))? as usize;
        for i in 0..chunks {
            result_stream::write(&chunk(i, size), Encoding::Utf8)?;
        }
        Ok(Value::String(format!("{chunks} chunks")).to_string())
    }
}

export!(Streamer);
