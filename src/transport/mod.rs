//! Transports: WebSocket at `/arcp` and newline-delimited JSON over stdio.
//!
//! Owns bytes on the wire and nothing else: each transport turns one connection into
//! a [`Connection`], a stream of frame text in and a channel of frame text out, and
//! enforces frame-size limits. It knows nothing of envelopes' meaning or of sessions.

pub mod stdio;
pub mod websocket;

use futures_util::{Stream, StreamExt};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{Notify, mpsc};
pub use tokio_util::sync::CancellationToken;

/// Most frames a connection's writer takes from its outbound queue in one step
/// (`recv_many`): a run gives its places in the queue back at once, where frames
/// taken one by one each gave theirs back under the queue's lock and woke a sender
/// waiting for room, once per frame.
const WRITE_RUN: usize = 256;

/// Frames from the peer, read by whichever task polls them. The WebSocket transport
/// reads its socket right there, in the session's task, so an inbound frame reaches
/// its handler without a hand-off between tasks (a wake-up of another thread, on a
/// runtime with more than one).
pub type Inbound = Pin<Box<dyn Stream<Item = FrameIn> + Send>>;

/// The frames of a channel, as an [`Inbound`].
pub fn inbound_from(frames: mpsc::Receiver<FrameIn>) -> Inbound {
    futures_util::stream::unfold(frames, |mut frames| async move {
        frames.recv().await.map(|frame| (frame, frames))
    })
    .fuse()
    .boxed()
}

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

/// One connection: a stream in and a channel out. The inbound side ends when the peer
/// goes away or the connection is killed; the outbound side is bounded, which is how
/// a slow reader slows its jobs down.
pub struct Connection {
    /// Frames from the peer.
    pub inbound: Inbound,
    /// Frames to the peer.
    pub outbound: mpsc::Sender<FrameOut>,
    /// Where the peer is, for logs.
    pub peer: String,
    /// Cancelling it drops the connection at once, queued frames and all (for a
    /// peer that stopped reading, whose queue a close frame could not get through).
    pub kill: CancellationToken,
    /// What the connection's writer says of its progress; `None` where no writer
    /// of ours takes the frames (an in-process pair, whose other side does).
    pub writer: Option<Arc<WriterProgress>>,
}

/// A connection writer's progress, for a sender that lets its frames go out before
/// it goes on to other work (a finished job, before it cleans up: see
/// `Outbox::frames_taken`).
#[derive(Debug, Default)]
pub struct WriterProgress {
    taken: Notify,
    /// Set while the writer is not waiting for frames: writing them, flushing
    /// (perhaps held up by a peer that does not read), or stopped for good.
    busy: AtomicBool,
}

impl WriterProgress {
    /// Waits until the writer takes what is in its queue, when it is waiting for
    /// frames; returns at once when it is busy (or gone) or `queue_is_empty`.
    /// Never waits on a writer held up by its peer: that one is busy.
    pub async fn until_taken(&self, queue_is_empty: impl Fn() -> bool) {
        let taken = self.taken.notified();
        tokio::pin!(taken);
        // Registered before looking: a writer that takes the frames after the look
        // wakes this waiter.
        taken.as_mut().enable();
        if self.busy.load(Ordering::SeqCst) || queue_is_empty() {
            return;
        }
        taken.await;
    }

    /// What the writer's task reports through; a new one starts out waiting for
    /// frames.
    pub fn reporter(self: &Arc<Self>) -> ProgressReporter {
        ProgressReporter(self.clone())
    }
}

/// The writer's side of [`WriterProgress`]. Dropped with the writer's task, it
/// marks the writer busy for good, so a writer that ends in any way (killed with
/// its connection too) is never waited for.
pub struct ProgressReporter(Arc<WriterProgress>);

impl ProgressReporter {
    /// The writer waits for frames.
    pub fn waiting(&self) {
        self.0.busy.store(false, Ordering::SeqCst);
    }

    /// The writer has taken frames from its queue and writes them now.
    pub fn took(&self) {
        self.0.busy.store(true, Ordering::SeqCst);
        self.0.taken.notify_waiters();
    }
}

impl Drop for ProgressReporter {
    fn drop(&mut self) {
        self.took();
    }
}

impl Connection {
    /// The next frame from the peer; `None` once it has gone.
    pub async fn recv(&mut self) -> Option<FrameIn> {
        self.inbound.next().await
    }

    /// An in-process connection pair: the runtime side and the client side (used by
    /// `arcp-host run` and by tests).
    pub fn pair(queue: usize) -> (Connection, mpsc::Sender<FrameIn>, mpsc::Receiver<FrameOut>) {
        let (in_tx, in_rx) = mpsc::channel(queue);
        let (out_tx, out_rx) = mpsc::channel(queue);
        (
            Connection {
                inbound: inbound_from(in_rx),
                outbound: out_tx,
                peer: "in-process".into(),
                kill: CancellationToken::new(),
                writer: None,
            },
            in_tx,
            out_rx,
        )
    }
}
