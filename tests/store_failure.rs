//! A store that cannot be written (issue 5). A full disk is played by a file-size
//! limit (RLIMIT_FSIZE) put on the running host: its writes past the limit then fail
//! with EFBIG, as they would with ENOSPC, in the real SQLite store of the real binary.
//! The job whose events cannot be recorded ends with `INTERNAL_ERROR`, new jobs are
//! refused with `INTERNAL_ERROR` while nothing can be written, the host keeps
//! answering everyone, and once writing works again jobs are accepted again.

mod common;

use common::{Client, Host, TOKEN, bundled_plugins};
use serde_json::json;
use std::path::Path;

/// Sets the soft file-size limit of process `pid` (None: unlimited).
fn limit_file_size(pid: u32, bytes: Option<u64>) {
    let limit = libc::rlimit {
        rlim_cur: bytes.unwrap_or(libc::RLIM_INFINITY),
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: prlimit reads `limit` and writes nothing (null old-limit pointer).
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_FSIZE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test]
async fn a_full_disk_ends_the_writing_job_refuses_new_ones_and_the_host_keeps_answering() {
    let host = Host::start(&bundled_plugins(), &[]);
    let mut c = Client::connect(&host.url, TOKEN).await;
    c.submit(json!({"agent": "echo", "input": 1})).await;
    assert_eq!(
        c.until_terminal().await.pop().unwrap()["type"],
        "job.result"
    );

    // The disk is full: no file of the host may grow more than 64 KiB past now.
    let db = host.data.path().join("arcp.db");
    let wal = host.data.path().join("arcp.db-wal");
    let room = size(&db).max(size(&wal)) + (64 << 10);
    limit_file_size(host.child.id(), Some(room));

    // 4 MiB of result chunks cannot be recorded: the job is stopped.
    let accepted = c
        .submit(json!({"agent": "streamer", "input": {"chunks": 64, "chunk_size": 65536}}))
        .await;
    assert_eq!(accepted["type"], "job.accepted", "{accepted}");
    let end = c.until_terminal().await.pop().unwrap();
    assert_eq!(end["type"], "job.error", "{end}");
    assert_eq!(end["payload"]["code"], "INTERNAL_ERROR");
    assert_eq!(end["payload"]["retryable"], true);
    let message = end["payload"]["message"].as_str().unwrap();
    assert!(message.contains("could not record"), "{message}");
    assert!(message.contains("arcp.db"), "names the file: {message}");

    // The disk stays full (now not even a byte can be written: a small write could
    // still land in space the log file already has). A submit either is refused at
    // once, or, if the store had just written something successfully, is accepted;
    // echo needs no authority, so it runs while its record is being committed and
    // either ends INTERNAL_ERROR, the record's failure known, or returns its result
    // first. Either way, the next one is refused, with the reason.
    limit_file_size(host.child.id(), Some(0));
    let first = c.submit(json!({"agent": "echo", "input": 2})).await;
    if first["type"] == "job.accepted" {
        let end = c.until_terminal().await.pop().unwrap();
        if end["type"] == "job.error" {
            assert_eq!(end["payload"]["code"], "INTERNAL_ERROR", "{end}");
        } else {
            assert_eq!(end["type"], "job.result", "{end}");
            assert_eq!(end["payload"]["result"]["echoed"], 2, "{end}");
        }
    } else {
        assert_eq!(first["payload"]["code"], "INTERNAL_ERROR", "{first}");
    }
    let refused = c.submit(json!({"agent": "echo", "input": 2})).await;
    assert_eq!(refused["type"], "session.error", "{refused}");
    assert_eq!(refused["payload"]["code"], "INTERNAL_ERROR");
    assert!(
        refused["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot record new jobs"),
        "{refused}"
    );

    // The host keeps answering: this session and a new one.
    c.send(
        "session.ping",
        json!({"nonce": "n1", "sent_at": "2026-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(
        c.until("session.pong").await.pop().unwrap()["type"],
        "session.pong"
    );
    c.send("session.list_jobs", json!({})).await;
    let list = c.until("session.jobs").await.pop().unwrap();
    assert!(list["payload"]["jobs"].as_array().unwrap().len() >= 2);
    let other = Client::connect(&host.url, TOKEN).await;
    assert_eq!(other.welcome["type"], "session.welcome");

    // Space again: jobs are accepted and run.
    limit_file_size(host.child.id(), None);
    let again = c.submit(json!({"agent": "echo", "input": 3})).await;
    assert_eq!(again["type"], "job.accepted", "{again}");
    let done = c.until_terminal().await.pop().unwrap();
    assert_eq!(done["payload"]["result"]["echoed"], 3);
    assert!(
        host.logs().contains("store write failed"),
        "{}",
        host.logs()
    );
}
