//! WebSocket transport: `ws://HOST:PORT/arcp`, no subprotocol, text frames of compact
//! JSON. FrameIn messages above the configured limit close the connection with 1009
//! and a reason; outbound frames are never above 1 MiB (the session guarantees it).

use super::{CancellationToken, Connection, FrameIn, FrameOut};
use futures_util::stream::SplitStream;
use futures_util::task::{ArcWake, AtomicWaker, waker_ref};
use futures_util::{Sink, SinkExt, StreamExt};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// The one path the runtime serves.
pub const PATH: &str = "/arcp";

/// How long a client may take to finish the WebSocket handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A provider of the text served at `GET /metrics`.
pub type MetricsText = std::sync::Arc<dyn Fn() -> String + Send + Sync>;

/// Settings of the WebSocket listener.
#[derive(Clone)]
pub struct WsSettings {
    /// Largest inbound message, in bytes.
    pub max_inbound_frame: usize,
    /// FrameOut queue length per connection.
    pub outbound_queue: usize,
    /// What to answer a plain `GET /metrics` with; `None`: only WebSocket upgrades.
    pub metrics: Option<MetricsText>,
}

/// Accepts connections on `listener` forever, handing each to `on_connection`.
pub async fn serve<F>(listener: TcpListener, settings: WsSettings, on_connection: F)
where
    F: Fn(Connection) + Send + Sync + 'static,
{
    let on_connection = std::sync::Arc::new(on_connection);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and similar: back off, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let settings = settings.clone();
        let on_connection = on_connection.clone();
        tokio::spawn(async move {
            if let Some(metrics) = &settings.metrics {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, wants_metrics(&stream)).await {
                    Ok(true) => {
                        let _ =
                            tokio::time::timeout(HANDSHAKE_TIMEOUT, serve_metrics(stream, metrics))
                                .await;
                        return;
                    }
                    Ok(false) => {}
                    Err(_) => return, // Sent nothing at all.
                }
            }
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept(stream, peer, &settings)).await {
                Ok(Ok(conn)) => on_connection(conn),
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "websocket handshake failed"),
                Err(_) => tracing::debug!(%peer, "websocket handshake timed out"),
            }
        });
    }
}

/// Whether the request on `stream` is `GET /metrics`, looked at without consuming it
/// (anything else goes to the WebSocket handshake untouched).
async fn wants_metrics(stream: &TcpStream) -> bool {
    const WANT: &[u8] = b"GET /metrics ";
    let mut buf = [0u8; 13];
    loop {
        let n = match stream.peek(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        if !WANT.starts_with(&buf[..n]) {
            return false;
        }
        if n == WANT.len() {
            return true;
        }
        // A prefix so far: wait for the rest of the request line.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Reads the rest of a `GET /metrics` request head and answers it with the text.
async fn serve_metrics(mut stream: TcpStream, metrics: &MetricsText) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 16 << 10 {
            return; // Not a request any scraper sends.
        }
    }
    let body = metrics();
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The reading half of a connection: frames in until the peer leaves, breaks a rule
/// or the connection is killed. A frame over the limit is answered (by the writer)
/// with close 1009.
struct Reader {
    stream: SplitStream<WebSocketStream<TcpStream>>,
    close: mpsc::Sender<FrameOut>,
    limit: usize,
    peer: SocketAddr,
    kill: CancellationToken,
}

impl Reader {
    async fn next_frame(&mut self) -> Option<FrameIn> {
        loop {
            let msg = tokio::select! {
                msg = self.stream.next() => msg?,
                () = self.kill.cancelled() => return None,
            };
            return Some(match msg {
                Ok(Message::Text(t)) => FrameIn::Frame(t.as_str().to_owned()),
                Ok(Message::Binary(b)) => match String::from_utf8(b.to_vec()) {
                    Ok(t) => FrameIn::Frame(t),
                    Err(_) => FrameIn::Garbage("binary frame is not UTF-8 text".into()),
                },
                Ok(Message::Close(_)) => return None,
                Ok(_) => continue, // ping/pong: tungstenite answers pings itself
                Err(WsError::Capacity(e)) => {
                    let limit = self.limit;
                    let reason = format!("frame too large ({e}); the limit is {limit} bytes");
                    let _ = self.close.send(FrameOut::Close(1009, reason)).await;
                    return None;
                }
                Err(e) => {
                    tracing::debug!(peer = %self.peer, error = %e, "websocket read ended");
                    return None;
                }
            });
        }
    }
}

/// The writing half of a connection, polled with a waker of its own that wakes the
/// writer's task only while one of its writes or flushes is pending.
///
/// tokio-tungstenite wakes whichever task last wrote whenever the socket becomes
/// readable (its waker proxy wakes a read's and a write's waker together, since a
/// read may have to write), so every frame a client sent woke the idle writer as
/// well as the session's task. With two tasks ready at once, tokio's multi-threaded
/// scheduler woke its other, sleeping worker to share them, and a sequential
/// client's next request then ran on the other core, its caches cold, for nine in
/// ten requests (BENCHMARKS.md, 2026-12-07 09:30).
struct Gated<S> {
    inner: S,
    gate: std::sync::Arc<Gate>,
}

/// The writer task's waker, and whether a write of it waits for the socket.
#[derive(Default)]
struct Gate {
    task: AtomicWaker,
    pending: AtomicBool,
}

impl ArcWake for Gate {
    fn wake_by_ref(gate: &std::sync::Arc<Self>) {
        if gate.pending.load(Ordering::SeqCst) {
            gate.task.wake();
        }
    }
}

impl<S> Gated<S> {
    fn new(inner: S) -> Self {
        Gated {
            inner,
            gate: std::sync::Arc::default(),
        }
    }
}

impl<S: Sink<Message> + Unpin> Gated<S> {
    /// Runs one poll of the inner sink with the gate's waker, the writer's task
    /// registered behind it and let through until the operation is ready.
    fn gated<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<Result<T, S::Error>>,
    ) -> Poll<Result<T, S::Error>> {
        self.gate.task.register(cx.waker());
        // Armed before the poll: a wake that its registration brings is let through.
        self.gate.pending.store(true, Ordering::SeqCst);
        let waker = waker_ref(&self.gate);
        let polled = op(Pin::new(&mut self.inner), &mut Context::from_waker(&waker));
        if polled.is_ready() {
            self.gate.pending.store(false, Ordering::SeqCst);
        }
        polled
    }
}

impl<S: Sink<Message> + Unpin> Sink<Message> for Gated<S> {
    type Error = S::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.get_mut().gated(cx, |s, cx| s.poll_ready(cx))
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), S::Error> {
        Pin::new(&mut self.get_mut().inner).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.get_mut().gated(cx, |s, cx| s.poll_flush(cx))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.get_mut().gated(cx, |s, cx| s.poll_close(cx))
    }
}

#[allow(clippy::result_large_err)] // the callback signature is tungstenite's
fn check_path(req: &Request, resp: Response) -> Result<Response, ErrorResponse> {
    if req.uri().path() == PATH {
        return Ok(resp);
    }
    let mut err = ErrorResponse::new(Some(format!("not found: ARCP is served at {PATH}")));
    *err.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::NOT_FOUND;
    Err(err)
}

/// Bytes read from a connection's socket at a time (see `accept`).
const READ_BUFFER_BYTES: usize = 8 << 10;

async fn accept(
    stream: TcpStream,
    peer: SocketAddr,
    settings: &WsSettings,
) -> Result<Connection, WsError> {
    // tungstenite zero-fills its whole read buffer before every read: at its
    // 128 KiB default that memset, and the page faults of 128 KiB per connection,
    // were a sixth of the runtime's CPU under 1,000 sessions of echo jobs. Client
    // frames are small; a larger one reserves its own length.
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(settings.max_inbound_frame))
        .max_frame_size(Some(settings.max_inbound_frame));
    let ws =
        tokio_tungstenite::accept_hdr_async_with_config(stream, check_path, Some(config)).await?;
    let (sink, stream) = ws.split();
    let mut sink = Gated::new(sink);
    let (out_tx, mut out_rx) = mpsc::channel::<FrameOut>(settings.outbound_queue);
    let kill = CancellationToken::new();
    let reader = Reader {
        stream,
        close: out_tx.clone(),
        limit: settings.max_inbound_frame,
        peer,
        kill: kill.clone(),
    };
    // Read by the session's own task (see `Inbound`): no reader task in between.
    let inbound = futures_util::stream::unfold(reader, |mut reader| async move {
        reader.next_frame().await.map(|frame| (frame, reader))
    })
    .fuse()
    .boxed();
    let write_kill = kill.clone();
    let progress = std::sync::Arc::new(super::WriterProgress::default());
    let writing = progress.reporter();

    // Writer: frames out until the session drops its sender or asks to close. Frames
    // already queued are written together and flushed once: one syscall for a burst
    // of events instead of one per frame. They are taken in runs (`WRITE_RUN`).
    let writer = async move {
        let mut run = Vec::with_capacity(super::WRITE_RUN);
        'conn: while out_rx.recv_many(&mut run, super::WRITE_RUN).await > 0 {
            writing.took();
            for out in run.drain(..) {
                match out {
                    FrameOut::Frame(text) => {
                        if sink.feed(Message::text(text)).await.is_err() {
                            break 'conn;
                        }
                    }
                    FrameOut::Close(code, reason) => {
                        let frame = CloseFrame {
                            code: CloseCode::from(code),
                            reason: reason.into(),
                        };
                        let _ = sink.send(Message::Close(Some(frame))).await;
                        break 'conn;
                    }
                }
            }
            if out_rx.is_empty() && sink.flush().await.is_err() {
                break;
            }
            writing.waiting();
        }
        let _ = sink.close().await;
    };
    tokio::spawn(async move {
        // Killed: the sink is dropped with whatever it still held.
        tokio::select! {
            () = writer => {}
            () = write_kill.cancelled() => {}
        }
    });

    Ok(Connection {
        inbound,
        outbound: out_tx,
        peer: peer.to_string(),
        kill,
        writer: Some(progress),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio_tungstenite::tungstenite::protocol::Role;

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Counted(AtomicUsize);

    impl ArcWake for Counted {
        fn wake_by_ref(counted: &std::sync::Arc<Self>) {
            counted.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Regression: every frame a client sent woke the connection's idle writer
    /// task too (tokio-tungstenite's waker proxy), which made tokio wake its other
    /// worker and moved each next request to the other core. The writer, idle after
    /// a flush, must not be woken by a frame coming in; a write that waits for the
    /// socket still is.
    #[tokio::test]
    async fn a_frame_coming_in_does_not_wake_the_idle_writer() {
        let (server_io, client_io) = tokio::io::duplex(1 << 16);
        let server = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let (sink, mut stream) = server.split();
        let mut sink = Gated::new(sink);
        let writer = std::sync::Arc::new(Counted::default());
        let reader = std::sync::Arc::new(Counted::default());
        // The writer writes and flushes, as after an answer: its waker is registered.
        let writer_waker = waker_ref(&writer);
        let mut writer_cx = Context::from_waker(&writer_waker);
        assert!(Pin::new(&mut sink).poll_ready(&mut writer_cx).is_ready());
        Pin::new(&mut sink)
            .start_send(Message::text("answer"))
            .unwrap();
        assert!(matches!(
            Pin::new(&mut sink).poll_flush(&mut writer_cx),
            Poll::Ready(Ok(()))
        ));
        // The session's task waits for the next frame.
        let reader_waker = waker_ref(&reader);
        let mut reader_cx = Context::from_waker(&reader_waker);
        assert!(stream.poll_next_unpin(&mut reader_cx).is_pending());
        client.send(Message::text("next request")).await.unwrap();
        assert_eq!(
            reader.0.load(Ordering::SeqCst),
            1,
            "the reader was not woken"
        );
        assert_eq!(
            writer.0.load(Ordering::SeqCst),
            0,
            "the idle writer was woken"
        );
        // A writer whose flush waits for the socket is woken when it drains.
        let mut reply = String::from("x");
        while reply.len() < (1 << 17) {
            reply.push_str(&reply.clone());
        }
        assert!(Pin::new(&mut sink).poll_ready(&mut writer_cx).is_ready());
        Pin::new(&mut sink)
            .start_send(Message::text(reply))
            .unwrap();
        assert!(Pin::new(&mut sink).poll_flush(&mut writer_cx).is_pending());
        let _ = client.next().await;
        assert!(
            writer.0.load(Ordering::SeqCst) >= 1,
            "a pending flush was not woken"
        );
    }
}
