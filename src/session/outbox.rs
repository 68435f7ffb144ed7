//! A session's outbound side: the `event_seq` counter, the store write of every
//! sequenced envelope, and the (bounded) queue to whichever connection is attached.
//!
//! One lock orders everything: a sequenced envelope takes its number, is handed to
//! the store and is queued under the same lock, so the wire order is the `event_seq`
//! order. Waiting for queue space happens under the lock too, which is how a slow
//! reader slows every job of its session (back-pressure) instead of growing memory.
//!
//! Write-before-send: a sequenced envelope reaches the connection only once the
//! store has settled its write. Each attached connection has a forwarder task that
//! takes frames in order with their store tickets and holds each until the store's
//! settled ticket has reached it. The sender does not wait for the commit (it only
//! queues), so the store can commit many frames per transaction while the wire
//! order, and the promise that whatever a client saw can be replayed, both hold.
//! A frame with nothing to wait for (its write already settled, nothing queued
//! before it) goes straight to the connection's queue: one task hand-off fewer.
//!
//! A client that acknowledges (`session.ack`) gets a second, protocol-level brake:
//! once it is more than `max_lag` events behind its acknowledgements, jobs wait in
//! [`Outbox::wait_for_room`] until it catches up to half that, and are told so by a
//! `status{phase:"back_pressure"}` event (spec §6.5). A client that negotiated `ack`
//! but never sent one is not throttled this way (the reference client negotiates it
//! by default and acks only on request), only by the bounded queue.

use crate::protocol::Outbound;
use crate::store::{JobRecord, Store, StoredEvent, Ticket};
use crate::transport::{CancellationToken, FrameOut};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use tokio::sync::{Mutex, Notify, mpsc};

/// Writes a session without a connection may have waiting for the store before its
/// jobs' emission waits (the back-pressure a connection's queue gives otherwise).
const MAX_UNSETTLED_DETACHED: Ticket = 1024;

/// The outbound side of one session.
pub struct Outbox {
    /// Shared with every envelope and stored event of the session.
    session_id: Arc<str>,
    store: Arc<dyn Store>,
    inner: Mutex<Inner>,
    last_seq: AtomicU64,
    retired: AtomicBool,
    attached: AtomicBool,
    /// Highest acknowledged seq; 0 until the first `session.ack`.
    acked: AtomicU64,
    /// Whether the client ever acknowledged.
    acking: AtomicBool,
    max_lag: u64,
    room: Notify,
}

struct Inner {
    next_seq: u64,
    conn: Option<Forwarder>,
    /// How many connections have been attached so far: the current one's number.
    attachments: u64,
}

/// One connection's attachment to a session, as [`Outbox::attach`] returns it: only
/// that connection's own end can detach it (see [`Outbox::detach`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attachment(u64);

/// How many frames may wait for their store write per connection (beyond the
/// connection's own queue), and how many bytes they may hold. Under a flood the
/// store commits whatever waits in one transaction, so a deeper queue means fewer,
/// larger commits: 2,048 frames instead of 256 took a one-job SQLite flood from
/// 104-131 k to 135-188 k events/s (BENCHMARKS.md). The byte bound keeps a plugin emitting
/// 256 KiB bodies from parking 2,048 of them.
const FORWARD_QUEUE: usize = 2048;
const FORWARD_BYTES: usize = 8 << 20;

/// A frame in a forwarder's queue, holding its place in both bounds until it has
/// been handed to the connection.
struct Pending {
    ticket: Ticket,
    frame: FrameOut,
    place: Place,
}

/// What a forwarder holds: how many frames and how many bytes, each bounded
/// ([`FORWARD_QUEUE`], [`FORWARD_BYTES`]), and a sender waiting for room. Counted
/// with atomics, over an unbounded channel: a bounded `tokio::sync::mpsc` channel
/// and a `tokio::sync::Semaphore` for the bytes did the same with a mutex taken on
/// every release (add_permits_locked, 3-5 % of the tokio workers' CPU in a one-job
/// flood).
#[derive(Default)]
struct Held {
    frames: AtomicUsize,
    bytes: AtomicUsize,
    waiting: AtomicBool,
    room: Notify,
}

impl Held {
    /// Waits until one more frame of `len` bytes fits (a frame larger than the byte
    /// bound goes when nothing else is held), then holds its place until the
    /// returned [`Place`] drops.
    async fn hold(self: &Arc<Self>, len: usize) -> Place {
        let fits = |held: &Held| {
            let frames = held.frames.load(Ordering::SeqCst);
            let bytes = held.bytes.load(Ordering::SeqCst);
            frames < FORWARD_QUEUE && (bytes == 0 || bytes + len <= FORWARD_BYTES)
        };
        // Only a sender that finds no room registers with `room`, which takes
        // its lock.
        while !fits(self) {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            // Said before looking again: a release either is seen below or sees
            // this and wakes us (all sequentially consistent).
            self.waiting.store(true, Ordering::SeqCst);
            if fits(self) {
                break;
            }
            room.await;
        }
        self.frames.fetch_add(1, Ordering::SeqCst);
        self.bytes.fetch_add(len, Ordering::SeqCst);
        Place {
            held: self.clone(),
            len,
        }
    }

    /// Whether the forwarder holds no frame: every frame sent to it has reached the
    /// connection's queue (or been dropped with the connection).
    fn is_empty(&self) -> bool {
        self.frames.load(Ordering::SeqCst) == 0
    }
}

/// One frame's place in a forwarder's bounds.
struct Place {
    held: Arc<Held>,
    len: usize,
}

impl Drop for Place {
    fn drop(&mut self) {
        let bytes = self.held.bytes.fetch_sub(self.len, Ordering::SeqCst) - self.len;
        let frames = self.held.frames.fetch_sub(1, Ordering::SeqCst) - 1;
        // A waiting sender is woken once the forwarder is down to half of both
        // bounds, so that it queues a run of frames per wake-up rather than one
        // frame per frame delivered (which tripled the workers' context switches
        // in a flood). Every frame is delivered in the end, so it is woken at the
        // latest when nothing is held.
        if frames <= FORWARD_QUEUE / 2
            && bytes <= FORWARD_BYTES / 2
            && self.held.waiting.swap(false, Ordering::SeqCst)
        {
            self.held.room.notify_waiters();
        }
    }
}

/// The sending side of a connection's forwarder.
struct Forwarder {
    frames: mpsc::UnboundedSender<Pending>,
    held: Arc<Held>,
    /// The connection, for frames that need not wait (see [`Forwarder::send`]).
    link: Arc<Link>,
    settled: tokio::sync::watch::Receiver<Ticket>,
}

impl Forwarder {
    /// Sends `frame` once `ticket` is settled, after every frame sent before it.
    /// When the forwarder holds nothing and the ticket is settled already, the frame
    /// goes straight into the connection's queue (if it has room): the caller holds
    /// the outbox's lock, so no other frame can get between. False when the
    /// connection is gone.
    async fn send(&self, ticket: Ticket, frame: FrameOut) -> bool {
        let ready = self.held.is_empty() && ticket <= *self.settled.borrow();
        if !ready {
            return self.enqueue(ticket, frame).await;
        }
        match self.link.frames.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(frame)) => self.enqueue(ticket, frame).await,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues `frame` to be sent once `ticket` is settled, first waiting for room in
    /// both bounds. False when the forwarder has stopped (its connection is gone).
    async fn enqueue(&self, ticket: Ticket, frame: FrameOut) -> bool {
        let len = match &frame {
            FrameOut::Frame(text) => text.len(),
            FrameOut::Close(..) => 0,
        };
        let place = self.held.hold(len).await;
        self.frames
            .send(Pending {
                ticket,
                frame,
                place,
            })
            .is_ok()
    }
}

/// Where an attached connection's frames go, and how long it may fail to read.
pub struct Link {
    /// The connection's bounded outbound queue.
    pub frames: mpsc::Sender<FrameOut>,
    /// Drops the connection at once.
    pub kill: CancellationToken,
    /// How long the queue may stay full before the client is disconnected.
    pub slow_after: std::time::Duration,
    /// What the connection's writer says of its progress
    /// ([`crate::transport::Connection::writer`]).
    pub writer: Option<Arc<crate::transport::WriterProgress>>,
}

impl Link {
    /// Queues `frame` to the connection. False when the connection is gone, or when
    /// its queue stayed full for `slow_after` (the client stopped reading), in which
    /// case the connection is killed.
    async fn deliver(&self, session_id: &str, frame: FrameOut) -> bool {
        // A queue with room takes the frame without a timer (a clock read and a
        // timer handle per frame otherwise).
        let frame = match self.frames.try_send(frame) {
            Ok(()) => return true,
            Err(mpsc::error::TrySendError::Closed(_)) => return false,
            Err(mpsc::error::TrySendError::Full(frame)) => frame,
        };
        match tokio::time::timeout(self.slow_after, self.frames.send(frame)).await {
            Ok(sent) => sent.is_ok(),
            Err(_) => {
                tracing::warn!(
                    session_id,
                    after_sec = self.slow_after.as_secs(),
                    "the client has read nothing for too long; disconnecting it (its jobs go on, it may resume)"
                );
                self.kill.cancel();
                false
            }
        }
    }
}

/// Moves frames to the connection in order, each once the store has settled its
/// ticket. A client whose queue stays full for `slow_after` (it stopped reading) is
/// disconnected: its session's jobs go on, their frames are stored, and it can
/// resume from what it last read.
async fn forward(
    session_id: Arc<str>,
    mut frames: mpsc::UnboundedReceiver<Pending>,
    link: Arc<Link>,
    mut settled: tokio::sync::watch::Receiver<Ticket>,
) {
    // The settled ticket last read: under a flood a commit settles hundreds of
    // frames, which then go without reading it again (a lock shared with the
    // store's writer).
    let mut known = 0;
    while let Some(Pending {
        ticket,
        frame,
        place,
    }) = frames.recv().await
    {
        if ticket > known {
            // Returns at once when the store has settled it already.
            match settled.wait_for(|s| *s >= ticket).await {
                Ok(now) => known = *now,
                Err(_) => return, // The store is gone: the runtime is shutting down.
            }
        }
        if !link.deliver(&session_id, frame).await {
            return;
        }
        // Only now: a sender that sees nothing held may put its frame straight
        // into the connection's queue, which this frame has reached.
        drop(place);
    }
}

impl Outbox {
    /// An outbox for `session_id` with no connection attached yet. `max_lag` is how
    /// many unacknowledged events an acknowledging client may fall behind.
    pub fn new(session_id: String, store: Arc<dyn Store>, max_lag: u64) -> Outbox {
        Outbox {
            session_id: session_id.into(),
            store,
            inner: Mutex::new(Inner {
                next_seq: 1,
                conn: None,
                attachments: 0,
            }),
            last_seq: AtomicU64::new(0),
            retired: AtomicBool::new(false),
            attached: AtomicBool::new(false),
            acked: AtomicU64::new(0),
            acking: AtomicBool::new(false),
            max_lag: max_lag.max(2),
            room: Notify::new(),
        }
    }

    /// An outbox for a session restored after a restart: numbering goes on after
    /// `last_seq`, the last envelope stored.
    pub fn restored(
        session_id: String,
        store: Arc<dyn Store>,
        max_lag: u64,
        last_seq: u64,
    ) -> Outbox {
        let outbox = Outbox::new(session_id, store, max_lag);
        outbox.last_seq.store(last_seq, Ordering::Release);
        if let Ok(mut inner) = outbox.inner.try_lock() {
            inner.next_seq = last_seq + 1;
        }
        outbox
    }

    /// Records `session.ack`: never beyond what was sent. Returns the new ack level.
    pub fn ack(&self, last_processed_seq: u64) -> u64 {
        let upto = last_processed_seq.min(self.last_seq());
        self.acking.store(true, Ordering::Release);
        let level = self.acked.fetch_max(upto, Ordering::AcqRel).max(upto);
        self.room.notify_waiters();
        level
    }

    /// The highest acknowledged seq.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }

    fn lag(&self) -> u64 {
        self.last_seq().saturating_sub(self.acked())
    }

    /// How far behind an acknowledging, attached client is, when that is more than
    /// `max_lag`; `None` when no brake applies.
    pub fn overrun(&self) -> Option<u64> {
        let applies = self.acking.load(Ordering::Acquire)
            && self.attached.load(Ordering::Acquire)
            && !self.is_retired();
        let lag = self.lag();
        (applies && lag > self.max_lag).then_some(lag)
    }

    /// Waits until the client has caught up to half of `max_lag`, the connection
    /// went away, or the session retired.
    pub async fn wait_for_room(&self) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let applies = self.attached.load(Ordering::Acquire) && !self.is_retired();
            if !applies || self.lag() <= self.max_lag / 2 {
                return;
            }
            notified.await;
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
        self.room.notify_waiters();
    }

    /// Whether [`Self::retire`] was called.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// A forwarder in front of the connection (see the module docs).
    fn forwarder(&self, link: Link) -> Forwarder {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.session_id.clone();
        let link = Arc::new(link);
        tokio::spawn(forward(id, rx, link.clone(), self.store.settled()));
        Forwarder {
            frames: tx,
            held: Arc::default(),
            link,
            settled: self.store.settled(),
        }
    }

    /// Waits until the attached connection's writer has taken the frames queued to
    /// it, when it is waiting for frames; returns at once when there is nothing to
    /// wait for (no connection, a connection without a writer of ours, frames still
    /// waiting for the store, a writer already busy or gone, or an empty queue).
    ///
    /// For a job that has sent its terminal message and has cleaning up to do
    /// (its instance, its spare): the writer, woken by those frames and usually on
    /// this same worker, takes them and wakes the job, which then runs once the
    /// writer's turn has ended, after it has written and flushed them (unless its
    /// peer holds it up). `tokio::task::yield_now` did the same but, on a
    /// multi-threaded runtime, woke the runtime's other, idle worker for every job
    /// (the yielded task is put back after a search for work to steal, and a worker
    /// that finds work after searching wakes another), and so did a timer to bound
    /// the wait (a timer earlier than the sleeping worker's wakes it to re-arm): that
    /// thread's wake-up took the client's core (BENCHMARKS.md, 2026-12-07 08:00).
    /// No timer is needed: a writer held up by its peer is busy, and is not waited for.
    pub async fn frames_taken(&self) {
        let link = {
            let inner = self.inner.lock().await;
            match &inner.conn {
                Some(forwarder) if forwarder.held.is_empty() => forwarder.link.clone(),
                _ => return,
            }
        };
        if let Some(writer) = &link.writer {
            let frames = &link.frames;
            writer
                .until_taken(|| frames.capacity() == frames.max_capacity())
                .await;
        }
    }

    /// Attaches a connection; frames go there from now on.
    pub async fn attach(&self, link: Link) -> Attachment {
        let forwarder = self.forwarder(link);
        let mut inner = self.inner.lock().await;
        self.install(&mut inner, forwarder)
    }

    /// Attaches a connection after first sending it, in order, every stored envelope
    /// after `after` (resume replay). Holding the lock makes the replay and the live
    /// traffic that follows one gap-free sequence. `None` when the client stopped
    /// reading during the replay and was cut off: nothing was attached.
    pub async fn attach_with_replay(
        &self,
        link: Link,
        after: u64,
    ) -> Result<Option<Attachment>, crate::store::StoreError> {
        let mut inner = self.inner.lock().await;
        self.store.flush()?;
        for event in self.store.events_after(&self.session_id, after)? {
            // A client that stops reading during its replay is cut off like one
            // that stops reading later: the lock must not be held for ever.
            if !link
                .deliver(&self.session_id, FrameOut::Frame(event.frame))
                .await
            {
                return Ok(None);
            }
        }
        let forwarder = self.forwarder(link);
        Ok(Some(self.install(&mut inner, forwarder)))
    }

    fn install(&self, inner: &mut Inner, forwarder: Forwarder) -> Attachment {
        if let Some(replaced) = inner.conn.replace(forwarder) {
            // Resumed on a new connection while the old one still looked alive (its
            // peer went without a close the runtime has seen yet): the old one is
            // dropped now, so that it reads nothing more for this session.
            replaced.link.kill.cancel();
        }
        inner.attachments += 1;
        self.attached.store(true, Ordering::Release);
        Attachment(inner.attachments)
    }

    /// Detaches the connection of `attachment`; sequenced envelopes are still
    /// numbered and stored. False, and nothing changes, when the session has been
    /// attached to another connection since: a connection replaced by a resume ends
    /// after the new one took over, and must not cut the new one off.
    pub async fn detach(&self, attachment: Attachment) -> bool {
        let mut inner = self.inner.lock().await;
        if inner.attachments != attachment.0 {
            return false;
        }
        inner.conn = None;
        self.attached.store(false, Ordering::Release);
        self.room.notify_waiters();
        true
    }

    /// Whether a connection is attached.
    pub fn is_attached(&self) -> bool {
        self.attached.load(Ordering::Acquire)
    }

    /// Sends a message. Sequenced types get the next `event_seq` and are stored
    /// first; the returned number is that seq (0 for unsequenced messages).
    pub async fn send(&self, msg: Outbound) -> u64 {
        self.send_recording(None, msg, None).await.0
    }

    /// Sends an unsequenced acknowledgement once `record`, what it acknowledges
    /// (a job's record for its `job.accepted`), is stored; returns that write's
    /// ticket.
    pub async fn send_acknowledging(&self, msg: Outbound, record: JobRecord) -> Ticket {
        self.send_recording(None, msg, Some(record)).await.1
    }

    /// Sends a job's terminal message, stored in one write with the job's final
    /// `record` ([`Store::append_final_event`]).
    pub async fn send_final(&self, msg: Outbound, record: JobRecord) -> u64 {
        self.send_recording(None, msg, Some(record)).await.0
    }

    /// Sends a job's held `job.accepted` (unsequenced) and then its terminal
    /// message, both once the terminal message and the job's final `record` are
    /// stored in one write: a job that ended before it was acknowledged is
    /// recorded, acknowledged and answered with one commit.
    pub async fn send_accepted_and_final(
        &self,
        accepted: Outbound,
        msg: Outbound,
        record: JobRecord,
    ) -> u64 {
        self.send_recording(Some(accepted), msg, Some(record))
            .await
            .0
    }

    /// Sends `msg` (and, just before it, the unsequenced `first`, which waits for
    /// the same write): a sequenced `msg` is stored, with `record` when given; an
    /// unsequenced one waits for `record`'s write when given. Returns `msg`'s seq
    /// (0 when unsequenced) and the ticket its frame waited for.
    async fn send_recording(
        &self,
        first: Option<Outbound>,
        mut msg: Outbound,
        record: Option<JobRecord>,
    ) -> (u64, Ticket) {
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
        let mut ticket = 0;
        if seq > 0 {
            let event = StoredEvent {
                session_id: self.session_id.clone(),
                seq,
                job_id: msg.job_id.clone(),
                frame: text.clone(),
            };
            ticket = match record {
                Some(record) => self.store.append_final_event(event, record),
                None => self.store.append_event(event),
            };
        } else if let Some(record) = record {
            ticket = self.store.put_job(record);
        }
        let frames = first
            .map(|mut first| {
                first.session_id = Some(self.session_id.clone());
                first.encode()
            })
            .into_iter()
            .chain(std::iter::once(text));
        for text in frames {
            if let Some(conn) = &inner.conn
                && !conn.send(ticket, FrameOut::Frame(text)).await
            {
                inner.conn = None;
            }
        }
        if inner.conn.is_none() && ticket > MAX_UNSETTLED_DETACHED {
            // No connection, so no queue to fill: without this, a job flooding
            // events in a detached session would run at full speed and grow the
            // store's write queue without bound. It waits, as it would for a slow
            // client, until the store is within reach of its writes.
            crate::store::until_settled(&*self.store, ticket - MAX_UNSETTLED_DETACHED).await;
        }
        (seq, ticket)
    }

    /// Asks the attached connection to close.
    pub async fn close(&self, code: u16, reason: &str) {
        let mut inner = self.inner.lock().await;
        if let Some(conn) = inner.conn.take() {
            // After every frame queued before it, each sent once durable.
            conn.send(0, FrameOut::Close(code, reason.to_owned())).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{
        IdempotencyRecord, JobRecord, MemoryStore, OutstandingCredential, SessionRecord, StoreError,
    };
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;
    use tokio::sync::watch;

    /// A store whose writes settle only when the test says so: every write gets a
    /// ticket and is kept in memory at once, but `settled` moves by hand.
    struct GatedStore {
        inner: MemoryStore,
        next: AtomicU64,
        settled: watch::Sender<Ticket>,
    }

    impl GatedStore {
        fn ticket(&self) -> Ticket {
            self.next.fetch_add(1, Ordering::SeqCst) + 1
        }
    }

    impl Store for GatedStore {
        fn append_event(&self, event: StoredEvent) -> Ticket {
            self.inner.append_event(event);
            self.ticket()
        }
        fn put_job(&self, job: JobRecord) -> Ticket {
            self.inner.put_job(job);
            self.ticket()
        }
        fn append_final_event(&self, event: StoredEvent, job: JobRecord) -> Ticket {
            self.inner.append_final_event(event, job);
            self.ticket()
        }
        fn remove_job(&self, job_id: &str) -> Ticket {
            self.inner.remove_job(job_id);
            self.ticket()
        }
        fn put_session(&self, session: SessionRecord) -> Ticket {
            self.inner.put_session(session);
            self.ticket()
        }
        fn remove_session(&self, session_id: &str) -> Ticket {
            self.inner.remove_session(session_id);
            self.ticket()
        }
        fn put_idempotency(&self, record: IdempotencyRecord) -> Ticket {
            self.inner.put_idempotency(record);
            self.ticket()
        }
        fn remove_idempotency(&self, principal: &str, key: &str) -> Ticket {
            self.inner.remove_idempotency(principal, key);
            self.ticket()
        }
        fn put_credential(&self, credential: OutstandingCredential) -> Ticket {
            self.inner.put_credential(credential);
            self.ticket()
        }
        fn remove_credential(&self, id: &str) -> Ticket {
            self.inner.remove_credential(id);
            self.ticket()
        }
        fn settled(&self) -> watch::Receiver<Ticket> {
            self.settled.subscribe()
        }
        fn outcome(&self, _: Ticket) -> Result<(), StoreError> {
            Ok(())
        }
        fn health(&self) -> Result<(), StoreError> {
            Ok(())
        }
        fn probe(&self) -> Result<(), StoreError> {
            Ok(())
        }
        fn flush(&self) -> Result<(), StoreError> {
            Ok(())
        }
        fn events_after(&self, s: &str, after: u64) -> Result<Vec<StoredEvent>, StoreError> {
            self.inner.events_after(s, after)
        }
        fn events_for_job(
            &self,
            s: &str,
            j: &str,
            after: u64,
        ) -> Result<Vec<StoredEvent>, StoreError> {
            self.inner.events_for_job(s, j, after)
        }
        fn last_seq(&self, s: &str) -> Result<u64, StoreError> {
            self.inner.last_seq(s)
        }
        fn job(&self, j: &str) -> Result<Option<JobRecord>, StoreError> {
            self.inner.job(j)
        }
        fn jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
            self.inner.jobs()
        }
        fn sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
            self.inner.sessions()
        }
        fn idempotency_keys(&self) -> Result<Vec<IdempotencyRecord>, StoreError> {
            self.inner.idempotency_keys()
        }
        fn outstanding_credentials(&self) -> Result<Vec<OutstandingCredential>, StoreError> {
            self.inner.outstanding_credentials()
        }
        fn stored_bytes(&self) -> Result<u64, StoreError> {
            self.inner.stored_bytes()
        }
    }

    fn event(i: u64) -> Outbound {
        let body = serde_json::json!({"kind": "log", "body": {"i": i}});
        Outbound::new("job.event", body).job("job_t")
    }

    async fn seq_of(rx: &mut mpsc::Receiver<FrameOut>) -> u64 {
        match rx.recv().await {
            Some(FrameOut::Frame(text)) => {
                let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
                frame["event_seq"].as_u64().unwrap_or(0)
            }
            _ => panic!("expected a frame"),
        }
    }

    /// An outbox over a [`GatedStore`] with a connection attached.
    async fn gated_outbox() -> (Arc<GatedStore>, Outbox, mpsc::Receiver<FrameOut>) {
        let store = Arc::new(GatedStore {
            inner: MemoryStore::new(),
            next: AtomicU64::new(0),
            settled: watch::channel(0).0,
        });
        let outbox = Outbox::new("sess_t".into(), store.clone(), 1 << 20);
        let rx = attach(&outbox, 64).await;
        (store, outbox, rx)
    }

    /// Attaches a connection whose queue holds `queue` frames; returns its far end.
    async fn attach(outbox: &Outbox, queue: usize) -> mpsc::Receiver<FrameOut> {
        let (tx, rx) = mpsc::channel(queue);
        outbox
            .attach(Link {
                frames: tx,
                kill: CancellationToken::new(),
                slow_after: Duration::from_secs(30),
                writer: None,
            })
            .await;
        rx
    }

    /// A finished job waits for its connection's writer to take its frames
    /// (`frames_taken`) only while that writer waits for frames, and is woken when
    /// it takes them; a writer that is busy (held up by a peer that does not read,
    /// say) or gone is not waited for, so it cannot keep the job's instance and
    /// running slot from being given back.
    #[tokio::test]
    async fn a_job_waits_for_its_frames_to_be_taken_only_by_a_waiting_writer() {
        use crate::transport::WriterProgress;
        let outbox = Outbox::new("sess_w".into(), Arc::new(MemoryStore::new()), 1 << 20);
        let progress = Arc::new(WriterProgress::default());
        let reporter = progress.reporter();
        let (tx, mut rx) = mpsc::channel(64);
        outbox
            .attach(Link {
                frames: tx,
                kill: CancellationToken::new(),
                slow_after: Duration::from_secs(30),
                writer: Some(progress.clone()),
            })
            .await;
        let within = |d| tokio::time::timeout(Duration::from_secs(10), d);
        // Nothing queued: nothing to wait for.
        within(outbox.frames_taken())
            .await
            .expect("waited with nothing queued");
        // A frame queued to a writer that waits for frames: the wait ends when the
        // writer takes it, not before.
        outbox.send(event(1)).await;
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            rx.recv().await;
            reporter.took();
            (rx, reporter)
        });
        let started = std::time::Instant::now();
        within(outbox.frames_taken())
            .await
            .expect("the writer's taking did not end the wait");
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "did not wait for the writer"
        );
        let (_rx, reporter) = writer.await.unwrap();
        // A frame queued to a busy writer (it took the last ones and has not come
        // back for more): not waited for.
        outbox.send(event(2)).await;
        within(outbox.frames_taken())
            .await
            .expect("waited for a busy writer");
        // A writer that is gone is never waited for.
        reporter.waiting();
        drop(reporter);
        within(outbox.frames_taken())
            .await
            .expect("waited for a writer that is gone");
    }

    /// Regression: `job.accepted` is unsequenced, so it was sent before the job's
    /// record was committed, and a crash right after could lose an acknowledged job.
    #[tokio::test]
    async fn an_acknowledgement_waits_for_the_write_it_acknowledges() {
        let (store, outbox, mut rx) = gated_outbox().await;
        let accepted = Outbound::new("job.accepted", serde_json::json!({"job_id": "job_t"}));
        let record = outbox
            .send_acknowledging(accepted, crate::store::conformance::job("job_t", "pending"))
            .await;
        assert_eq!(outbox.last_seq(), 0, "unsequenced");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(rx.try_recv().is_err(), "not before the record is committed");
        store.settled.send_replace(record);
        assert!(matches!(rx.recv().await, Some(FrameOut::Frame(t)) if t.contains("job.accepted")));
    }

    /// The frames waiting for the store are bounded in number: the 2,049th waits
    /// until the store has some and the connection takes them, and none is lost or
    /// reordered on the way.
    #[tokio::test]
    async fn frames_waiting_for_the_store_are_bounded_in_number() {
        let (store, outbox, mut rx) = gated_outbox().await;
        let outbox = Arc::new(outbox);
        for i in 0..FORWARD_QUEUE as u64 {
            outbox.send(event(i)).await;
        }
        one_more_waits_for_room(&store, &outbox, &mut rx, event(99)).await;
    }

    /// Sends `msg` after a full forwarder: it must wait until the store settles
    /// and the connection takes what is queued, then every frame arrives in order.
    async fn one_more_waits_for_room(
        store: &GatedStore,
        outbox: &Arc<Outbox>,
        rx: &mut mpsc::Receiver<FrameOut>,
        msg: Outbound,
    ) {
        let queued = outbox.last_seq();
        let one_more = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.send(msg).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!one_more.is_finished(), "the sender waits for room");

        // Once the store has them and the connection takes them, room comes back.
        store.settled.send_replace(u64::MAX);
        for seq in 1..=queued + 1 {
            assert_eq!(seq_of(rx).await, seq);
        }
        assert_eq!(one_more.await.unwrap(), queued + 1);
    }

    /// The frames waiting for the store are bounded in bytes as well as in number:
    /// a job emitting large bodies waits once FORWARD_BYTES of them wait.
    #[tokio::test]
    async fn frames_waiting_for_the_store_are_bounded_in_bytes() {
        let (store, outbox, mut rx) = gated_outbox().await;
        let outbox = Arc::new(outbox);
        let big = |i: u64| {
            let pad = "x".repeat(200 << 10);
            let body = serde_json::json!({"kind": "log", "body": {"i": i, "pad": pad}});
            Outbound::new("job.event", body).job("job_t")
        };
        let per_frame = big(0).encode().len();
        let fits = FORWARD_BYTES / per_frame;
        assert!(
            fits < FORWARD_QUEUE,
            "the byte bound is the one that binds here"
        );
        for i in 0..fits as u64 {
            outbox.send(big(i)).await;
        }
        one_more_waits_for_room(&store, &outbox, &mut rx, big(99)).await;
    }

    /// Write-before-send: a sequenced frame reaches the connection only once the
    /// store has settled its write, in order, and the sender does not wait for it.
    #[tokio::test]
    async fn a_frame_reaches_the_client_only_once_the_store_has_it() {
        let (store, outbox, mut rx) = gated_outbox().await;
        for i in 0..3 {
            outbox.send(event(i)).await; // returns without waiting for the store
        }
        // An unsequenced frame queued after them waits behind them.
        outbox
            .send(Outbound::new("session.pong", serde_json::json!({})))
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            rx.try_recv().is_err(),
            "nothing goes before the store has it"
        );

        store.settled.send_replace(2);
        assert_eq!(seq_of(&mut rx).await, 1);
        assert_eq!(seq_of(&mut rx).await, 2);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(rx.try_recv().is_err(), "event 3 is not stored yet");

        store.settled.send_replace(3);
        assert_eq!(seq_of(&mut rx).await, 3);
        assert_eq!(seq_of(&mut rx).await, 0, "then the pong");
    }

    /// An outbox over the in-memory store (every write settled at once) with a
    /// connection whose queue holds `queue` frames.
    async fn memory_outbox(queue: usize) -> (Outbox, mpsc::Receiver<FrameOut>) {
        let outbox = Outbox::new("sess_t".into(), Arc::new(MemoryStore::new()), 1 << 20);
        let rx = attach(&outbox, queue).await;
        (outbox, rx)
    }

    /// A frame whose write is settled, with nothing queued before it, is put in the
    /// connection's queue by the sender itself: it does not wait for the forwarder
    /// task to run (this test's runtime has one thread, and the test never yields).
    #[tokio::test]
    async fn a_frame_with_nothing_to_wait_for_skips_the_forwarder() {
        let (outbox, mut rx) = memory_outbox(64).await;
        outbox.send(event(0)).await;
        assert!(matches!(rx.try_recv(), Ok(FrameOut::Frame(t)) if t.contains("\"event_seq\":1")));
    }

    /// When the connection's queue is full, frames wait in the forwarder, and those
    /// sent after them queue behind them even once the connection has room again.
    #[tokio::test]
    async fn frames_keep_their_order_when_the_connection_queue_fills() {
        let (outbox, mut rx) = memory_outbox(1).await;
        for i in 0..5 {
            outbox.send(event(i)).await;
        }
        for seq in 1..=5 {
            assert_eq!(seq_of(&mut rx).await, seq);
        }
        outbox
            .send(Outbound::new("session.pong", serde_json::json!({})))
            .await;
        assert_eq!(seq_of(&mut rx).await, 0);
    }

    /// Regression: a session without a connection had no back-pressure, so a job
    /// flooding events in it grew the store's write queue without bound.
    #[tokio::test]
    async fn a_detached_sessions_jobs_wait_once_the_store_falls_behind() {
        let store = Arc::new(GatedStore {
            inner: MemoryStore::new(),
            next: AtomicU64::new(0),
            settled: watch::channel(0).0,
        });
        let outbox = Arc::new(Outbox::new("sess_t".into(), store.clone(), 1 << 20));
        // Up to the allowance, sending does not wait for the store.
        for i in 0..MAX_UNSETTLED_DETACHED {
            outbox.send(event(i)).await;
        }
        let sender = outbox.clone();
        let next = tokio::spawn(async move { sender.send(event(0)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!next.is_finished(), "one write past the allowance waits");
        store.settled.send_replace(1);
        let seq = tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .expect("released once the store catches up")
            .unwrap();
        assert_eq!(seq, MAX_UNSETTLED_DETACHED + 1);
    }
}
