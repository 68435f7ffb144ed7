//! A session's outbound side: the `event_seq` counter, the store write of every
//! sequenced envelope, and the (bounded) queue to whichever connection is attached.
//!
//! One lock orders everything: a sequenced envelope takes its number, is handed to
//! the store and is queued to the connection under the same lock, so the wire order
//! is the `event_seq` order. Waiting for queue space happens under the lock too,
//! which is how a slow reader slows every job of its session (back-pressure) instead
//! of growing memory.

use crate::protocol::Outbound;
use crate::store::{Store, StoredEvent};
use crate::transport::FrameOut;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Mutex, mpsc};

/// The outbound side of one session.
pub struct Outbox {
    session_id: String,
    store: Arc<dyn Store>,
    inner: Mutex<Inner>,
    last_seq: AtomicU64,
    retired: std::sync::atomic::AtomicBool,
}

struct Inner {
    next_seq: u64,
    conn: Option<mpsc::Sender<FrameOut>>,
}

impl Outbox {
    /// An outbox for `session_id` with no connection attached yet.
    pub fn new(session_id: String, store: Arc<dyn Store>) -> Outbox {
        Outbox {
            session_id,
            store,
            inner: Mutex::new(Inner {
                next_seq: 1,
                conn: None,
            }),
            last_seq: AtomicU64::new(0),
            retired: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The session id.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The last `event_seq` handed out (0 before any).
    pub fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Acquire)
    }

    /// Marks the session as gone for good (past its resume window): jobs stop
    /// fanning events out to it.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    /// Whether [`Self::retire`] was called.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// Attaches a connection; frames go there from now on.
    pub async fn attach(&self, conn: mpsc::Sender<FrameOut>) {
        self.inner.lock().await.conn = Some(conn);
    }

    /// Attaches a connection after first sending it, in order, every stored envelope
    /// after `after` (resume replay). Holding the lock makes the replay and the live
    /// traffic that follows one gap-free sequence.
    pub async fn attach_with_replay(
        &self,
        conn: mpsc::Sender<FrameOut>,
        after: u64,
    ) -> Result<(), crate::store::StoreError> {
        let mut inner = self.inner.lock().await;
        self.store.flush()?;
        for event in self.store.events_after(&self.session_id, after)? {
            if conn.send(FrameOut::Frame(event.frame)).await.is_err() {
                return Ok(());
            }
        }
        inner.conn = Some(conn);
        Ok(())
    }

    /// Detaches the connection; sequenced envelopes are still numbered and stored.
    pub async fn detach(&self) {
        self.inner.lock().await.conn = None;
    }

    /// Sends a message. Sequenced types get the next `event_seq` and are stored
    /// first; the returned number is that seq (0 for unsequenced messages).
    pub async fn send(&self, mut msg: Outbound) -> u64 {
        msg.session_id = Some(self.session_id.clone());
        let mut inner = self.inner.lock().await;
        let mut seq = 0;
        if msg.is_sequenced() {
            seq = inner.next_seq;
            inner.next_seq += 1;
            msg.event_seq = Some(seq);
            self.last_seq.store(seq, Ordering::Release);
        }
        let text = msg.encode();
        if seq > 0 {
            self.store.append_event(StoredEvent {
                session_id: self.session_id.clone(),
                seq,
                job_id: msg.job_id.clone(),
                frame: text.clone(),
            });
        }
        if let Some(conn) = &inner.conn
            && conn.send(FrameOut::Frame(text)).await.is_err()
        {
            inner.conn = None;
        }
        seq
    }

    /// Asks the attached connection to close.
    pub async fn close(&self, code: u16, reason: &str) {
        let mut inner = self.inner.lock().await;
        if let Some(conn) = inner.conn.take() {
            let _ = conn.send(FrameOut::Close(code, reason.to_owned())).await;
        }
    }
}
