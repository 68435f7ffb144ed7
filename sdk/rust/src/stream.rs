//! Streamed results (spec §8.4): [`ResultStream`].

use crate::Failure;
use crate::bindings::arcp::agent::result_stream::{self as wit, Encoding};
use std::io;

/// The job's result, streamed as `result_chunk` events instead of returned inline.
///
/// The first write opens the stream and the host assigns its `result_id`; every
/// write becomes one or more ordered chunks (the host splits large writes so that
/// each event stays under its frame limit). When the agent's function returns,
/// the host closes the stream with a final empty chunk and sends `job.result` with
/// the `result_id` and `result_size`; the value the function returned is then the
/// result's `summary` if it is a JSON string (return a `String`), never an inline
/// result.
///
/// A stream is text ([`write_str`](ResultStream::write_str), and
/// [`std::io::Write`], which checks that the bytes are UTF-8) or binary
/// ([`write_binary`](ResultStream::write_binary), sent base64-encoded), never both:
/// the host refuses the other kind once the first write has chosen. A write fails
/// with `INTERNAL_ERROR` once the result passes the host's size cap (256 MiB by
/// default); return that failure to end the job with it.
///
/// Writes are not buffered: each (one `write_str`, one `write!`/`writeln!`) is one
/// host call and at least one event. Wrap the stream in a [`std::io::BufWriter`]
/// when writing many small pieces.
///
/// ```no_run
/// use arcp_agent::prelude::*;
/// use std::io::Write as _;
///
/// fn run(_job: Job, lines: Vec<String>) -> Result<String, Failure> {
///     let mut out = ResultStream::new();
///     for line in &lines {
///         writeln!(out, "{line}")?; // io errors carry the host's Failure back
///     }
///     out.finish()?;
///     Ok(format!("{} lines", lines.len()))
/// }
/// arcp_agent::agent!(run);
/// ```
#[derive(Debug, Default)]
pub struct ResultStream {
    /// The start of a UTF-8 sequence that an [`io::Write::write`] cut in two: at
    /// most 3 bytes, sent with the next write.
    pending: Vec<u8>,
}

impl ResultStream {
    /// A writer of the job's result stream. Nothing is sent (and the result is not
    /// streamed) until the first write.
    pub fn new() -> ResultStream {
        ResultStream::default()
    }

    /// Appends `text` as one write of the `utf8` stream. Even an empty write opens
    /// the stream.
    pub fn write_str(&mut self, text: &str) -> Result<(), Failure> {
        wit::write(text.as_bytes(), Encoding::Utf8).map_err(Failure::from)
    }

    /// Appends `data` as one write of the `base64` (binary) stream.
    pub fn write_binary(&mut self, data: &[u8]) -> Result<(), Failure> {
        wit::write(data, Encoding::Base64).map_err(Failure::from)
    }

    /// Checks that no UTF-8 sequence was left cut in two by the [`io::Write`]
    /// writes (`INVALID_REQUEST` if one was). Dropping the stream without calling
    /// it loses such a fragment silently.
    pub fn finish(self) -> Result<(), Failure> {
        if self.pending.is_empty() {
            Ok(())
        } else {
            Err(Failure::invalid_request(format!(
                "the streamed result ends in the middle of a UTF-8 sequence ({} bytes left)",
                self.pending.len()
            )))
        }
    }

    /// Splits `pending + data` into the longest valid UTF-8 text and the start of a
    /// sequence that the next write may complete (kept in `pending`).
    fn utf8_prefix(&mut self, data: &[u8]) -> Result<Vec<u8>, Failure> {
        let mut bytes = std::mem::take(&mut self.pending);
        bytes.extend_from_slice(data);
        match std::str::from_utf8(&bytes) {
            Ok(_) => Ok(bytes),
            Err(e) if e.error_len().is_none() => {
                self.pending = bytes.split_off(e.valid_up_to());
                Ok(bytes)
            }
            Err(e) => Err(Failure::invalid_request(format!(
                "the streamed result is not valid UTF-8: {e}"
            ))),
        }
    }
}

/// Writes to the `utf8` stream. Bytes must be UTF-8, but a write may end in the
/// middle of a character: its first bytes are held back until the next write
/// completes it (see [`ResultStream::finish`]). `write!` formats its arguments
/// whole and writes them at once. The [`io::Error`] of a failed
/// write wraps the host's [`Failure`], which `?` in the agent's function turns
/// back into that failure.
impl io::Write for ResultStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let text = self.utf8_prefix(buf).map_err(io::Error::other)?;
        if !text.is_empty() {
            wit::write(&text, Encoding::Utf8).map_err(|f| io::Error::other(Failure::from(f)))?;
        }
        Ok(buf.len())
    }

    /// Formats the whole of `args` first, so that one `write!` is one write.
    fn write_fmt(&mut self, args: std::fmt::Arguments<'_>) -> io::Result<()> {
        match args.as_str() {
            Some(text) => io::Write::write_all(self, text.as_bytes()),
            None => io::Write::write_all(self, std::fmt::format(args).as_bytes()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_cut_in_two_waits_for_its_end() {
        let mut s = ResultStream::new();
        let text = "aé€😀".as_bytes();
        // "a" + the first byte of "é".
        assert_eq!(s.utf8_prefix(&text[..2]).unwrap(), b"a");
        assert_eq!(s.pending.len(), 1);
        // The rest of "é" and the first two bytes of "€".
        assert_eq!(s.utf8_prefix(&text[2..5]).unwrap(), "é".as_bytes());
        assert_eq!(s.utf8_prefix(&text[5..]).unwrap(), "€😀".as_bytes());
        assert!(s.pending.is_empty());
        s.finish().unwrap();
    }

    #[test]
    fn invalid_bytes_and_a_dangling_fragment_are_refused() {
        let mut s = ResultStream::new();
        assert!(s.utf8_prefix(b"ok\xffno").is_err());
        let mut s = ResultStream::new();
        s.utf8_prefix(&"€".as_bytes()[..2]).unwrap();
        let f = s.finish().unwrap_err();
        assert!(f.is(crate::ErrorCode::InvalidRequest));
    }
}
