//! Transports: WebSocket at `/arcp` and newline-delimited JSON over stdio.
//!
//! Owns bytes on the wire and nothing else: each transport turns one connection into
//! a [`Connection`], a pair of channels carrying frame text in and out, and enforces
//! frame-size limits. It knows nothing of envelopes' meaning or of sessions.

pub mod stdio;
pub mod websocket;

use tokio::sync::mpsc;
pub use tokio_util::sync::CancellationToken;

/// What a transport delivers to the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameIn {
    /// One frame's text.
    Frame(String),
    /// A frame that could not be used (binary that is not UTF-8, say); the session
    /// answers it with `INVALID_REQUEST`.
    Garbage(String),
}

/// What the session asks a transport to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameOut {
    /// One frame's text.
    Frame(String),
    /// Close the connection with a code and a reason.
    Close(u16, String),
}

/// One connection, as channels. The inbound side ends when the peer goes away; the
/// outbound side is bounded, which is how a slow reader slows its jobs down.
pub struct Connection {
    /// Frames from the peer.
    pub inbound: mpsc::Receiver<FrameIn>,
    /// Frames to the peer.
    pub outbound: mpsc::Sender<FrameOut>,
    /// Where the peer is, for logs.
    pub peer: String,
    /// Cancelling it drops the connection at once, queued frames and all (for a
    /// peer that stopped reading, whose queue a close frame could not get through).
    pub kill: CancellationToken,
}

impl Connection {
    /// An in-process connection pair: the runtime side and the client side (used by
    /// `arcp-host run` and by tests).
    pub fn pair(queue: usize) -> (Connection, mpsc::Sender<FrameIn>, mpsc::Receiver<FrameOut>) {
        let (in_tx, in_rx) = mpsc::channel(queue);
        let (out_tx, out_rx) = mpsc::channel(queue);
        (
            Connection {
                inbound: in_rx,
                outbound: out_tx,
                peer: "in-process".into(),
                kill: CancellationToken::new(),
            },
            in_tx,
            out_rx,
        )
    }
}
