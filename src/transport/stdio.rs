//! stdio transport: one envelope per `\n`-terminated line on stdin and stdout. Logs
//! go to stderr. A line over the limit is answered as garbage and skipped.

use super::{CancellationToken, Connection, FrameIn, FrameOut, inbound_from};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

/// Connects the process's stdin and stdout.
pub fn connect(max_line: usize, outbound_queue: usize) -> Connection {
    let (in_tx, in_rx) = mpsc::channel::<FrameIn>(64);
    let (out_tx, mut out_rx) = mpsc::channel::<FrameOut>(outbound_queue);
    let kill = CancellationToken::new();
    let (read_kill, write_kill) = (kill.clone(), kill.clone());

    let reader = async move {
        let mut lines = FramedRead::new(
            tokio::io::stdin(),
            LinesCodec::new_with_max_length(max_line),
        );
        while let Some(line) = lines.next().await {
            let inbound = match line {
                Ok(l) if l.trim().is_empty() => continue,
                Ok(l) => FrameIn::Frame(l),
                Err(LinesCodecError::MaxLineLengthExceeded) => {
                    FrameIn::Garbage(format!("line longer than the {max_line}-byte limit"))
                }
                Err(LinesCodecError::Io(e)) => {
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        FrameIn::Garbage("line is not UTF-8 text".into())
                    } else {
                        break;
                    }
                }
            };
            if in_tx.send(inbound).await.is_err() {
                break;
            }
        }
    };
    tokio::spawn(async move {
        tokio::select! {
            () = reader => {}
            () = read_kill.cancelled() => {}
        }
    });

    let progress = std::sync::Arc::new(super::WriterProgress::default());
    let writing = progress.reporter();
    let writer = async move {
        // Buffered, flushed whenever the queue runs dry: bursts of events cost one
        // write, a lone frame is still sent at once.
        // Taken in runs, as the WebSocket writer does (see `super::WRITE_RUN`).
        let mut stdout = tokio::io::BufWriter::new(tokio::io::stdout());
        let mut run = Vec::with_capacity(super::WRITE_RUN);
        while out_rx.recv_many(&mut run, super::WRITE_RUN).await > 0 {
            writing.took();
            for out in run.drain(..) {
                let FrameOut::Frame(text) = out else {
                    let _ = stdout.flush().await;
                    return;
                };
                if stdout.write_all(text.as_bytes()).await.is_err()
                    || stdout.write_all(b"\n").await.is_err()
                {
                    return;
                }
            }
            if out_rx.is_empty() && stdout.flush().await.is_err() {
                return;
            }
            writing.waiting();
        }
    };
    tokio::spawn(async move {
        tokio::select! {
            () = writer => {}
            () = write_kill.cancelled() => {}
        }
    });

    Connection {
        inbound: inbound_from(in_rx),
        outbound: out_tx,
        peer: "stdio".into(),
        kill,
        writer: Some(progress),
    }
}
