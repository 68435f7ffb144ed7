//! `streamer`: input `{"chunks": K, "chunk_size": S}`. Streams its result as K
//! `result_chunk`s (utf8); chunk i is i as 6 zero-padded digits followed by
//! `abcdefghijklmnopqrstuvwxyz0123456789` repeated, cut to S bytes. Returns the
//! summary `"K chunks"`.

use arcp_agent::prelude::*;

const ALPHABET: &str = "abcdefghijklmnopqrstuvwxyz0123456789";

#[derive(Deserialize)]
struct Input {
    chunks: u64,
    chunk_size: u64,
}

/// Chunk `i` of `size` bytes, or None when that much memory cannot be had.
fn chunk(i: u64, size: usize) -> Option<String> {
    let mut out = String::new();
    out.try_reserve_exact(size.max(6)).ok()?;
    out.push_str(&format!("{i:06}"));
    out.extend(
        ALPHABET
            .chars()
            .cycle()
            .take(size.saturating_sub(out.len())),
    );
    out.truncate(size);
    Some(out)
}

fn run(_job: Job, Input { chunks, chunk_size }: Input) -> Result<String, Failure> {
    let too_large =
        || Failure::invalid_request(format!("`chunk_size` is too large: {chunk_size} bytes"));
    let size = usize::try_from(chunk_size).map_err(|_| too_large())?;
    let mut result = ResultStream::new();
    for i in 0..chunks {
        result.write_str(&chunk(i, size).ok_or_else(too_large)?)?;
    }
    Ok(format!("{chunks} chunks"))
}

arcp_agent::agent!(run);
