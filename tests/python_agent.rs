//! The Python example agent, `py-wordcount` (guests/python/py-wordcount, built with
//! componentize-py into plugins/python/), driven through the real binary over a real
//! socket like the Rust examples: a result, its events, a lease denial, invalid input,
//! a missing file, a cancel while it runs; plus a check that the committed component
//! was built from the committed source.
//!
//! The component embeds CPython (about 18 MB): a debug host compiles it in 20-40 s, so
//! the compiled code is made once per run (and kept under the target directory between
//! runs, keyed like the host's own cache by the file's sha256 and the engine) and each
//! test's host starts from a data folder seeded with it.

mod common;

use common::{Client, Host, TOKEN, bundled_plugins};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const AGENT: &str = "py-wordcount";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn python_plugins() -> PathBuf {
    root().join("plugins/python")
}

fn tmp() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

fn sha256_hex(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// Links (or copies, across file systems) `from` to `to`.
fn link(from: &Path, to: &Path) {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).unwrap();
    }
}

/// A plugin folder with the Python agent (and its sidecar) beside the Rust `reader`,
/// whose contract it shares.
fn plugin_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir_in(tmp()).unwrap();
    for f in ["py-wordcount@1.0.0.wasm", "py-wordcount@1.0.0.toml"] {
        link(&python_plugins().join(f), &dir.path().join(f));
    }
    let reader = "reader@1.0.0.wasm";
    link(&bundled_plugins().join(reader), &dir.path().join(reader));
    dir
}

/// A data folder whose compiled-code cache holds the entries of `cache`.
fn seeded_data(cache: &Path) -> tempfile::TempDir {
    let data = tempfile::tempdir_in(tmp()).unwrap();
    let dest = data.path().join("cache");
    std::fs::create_dir_all(&dest).unwrap();
    for entry in std::fs::read_dir(cache).unwrap().flatten() {
        link(&entry.path(), &dest.join(entry.file_name()));
    }
    data
}

/// The compiled code of the plugin folder, made once per test run.
fn compiled_cache() -> &'static Path {
    static CACHE: OnceLock<PathBuf> = OnceLock::new();
    CACHE.get_or_init(|| {
        let keep = tmp().join("python-agent-cache");
        std::fs::create_dir_all(&keep).unwrap();
        // Entries for other bytes of the component are stale.
        let sha = sha256_hex(&python_plugins().join("py-wordcount@1.0.0.wasm"));
        let reader = sha256_hex(&bundled_plugins().join("reader@1.0.0.wasm"));
        for entry in std::fs::read_dir(&keep).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with(&sha) && !name.starts_with(&reader) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let plugins = plugin_folder();
        let started = Instant::now();
        let host = Host::start_with_data(plugins.path(), seeded_data(&keep), &[]);
        eprintln!(
            "python agent: plugin folder loaded in {:.1} s (compiled-code cache {})",
            started.elapsed().as_secs_f64(),
            keep.display()
        );
        for entry in std::fs::read_dir(host.data.path().join("cache"))
            .unwrap()
            .flatten()
        {
            let to = keep.join(entry.file_name());
            if !to.exists() {
                std::fs::copy(entry.path(), &to).unwrap();
            }
        }
        keep
    })
}

struct Setup {
    host: Host,
    _workspace: tempfile::TempDir,
    _plugins: tempfile::TempDir,
}

/// A host serving the Python agent and `reader`, over a workspace holding `files`.
fn setup(files: &[(&str, &str)]) -> Setup {
    let cache = compiled_cache();
    let workspace = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = workspace.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let plugins = plugin_folder();
    let host = Host::start_with_data(
        plugins.path(),
        seeded_data(cache),
        &["--workspace", workspace.path().to_str().unwrap()],
    );
    Setup {
        host,
        _workspace: workspace,
        _plugins: plugins,
    }
}

async fn run(c: &mut Client, submit: Value) -> Vec<Value> {
    let acc = c.submit(submit).await;
    assert_eq!(acc["type"], "job.accepted", "{acc}");
    c.until_terminal().await
}

fn events_of(frames: &[Value], kind: &str) -> Vec<Value> {
    frames
        .iter()
        .filter(|f| f["type"] == "job.event" && f["payload"]["kind"] == kind)
        .map(|f| f["payload"]["body"].clone())
        .collect()
}

const DOCS: &[(&str, &str)] = &[
    ("docs/a.txt", "The quick brown fox.\nThe lazy dog!\n"),
    ("docs/deep/b.txt", "fox and dog and fox"),
    ("docs/deep/c.txt", "caf\u{e9} 42\n"),
    ("private/secret.txt", "host secret"),
];

#[tokio::test]
async fn counts_a_file_read_through_fs_read_and_streams_its_events() {
    let s = setup(DOCS);
    let mut c = Client::connect(&s.host.url, TOKEN).await;
    let agents = &c.welcome["payload"]["capabilities"]["agents"];
    assert!(
        agents
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["name"] == AGENT)),
        "{agents}"
    );
    let frames = run(
        &mut c,
        json!({"agent": AGENT, "input": {"path": "docs/a.txt", "top": 2},
        "lease_request": {"fs.read": ["/docs/**"]}}),
    )
    .await;
    let last = frames.last().unwrap();
    assert_eq!(last["type"], "job.result", "{last}");
    assert_eq!(last["payload"]["final_status"], "success", "{last}");
    let result = &last["payload"]["result"];
    assert_eq!(
        *result,
        json!({"path": "docs/a.txt", "files": 1, "lines": 2, "words": 7, "chars": 35,
        "bytes": 35, "top": [{"word": "the", "count": 2}, {"word": "brown", "count": 1}],
        "per_file": [{"path": "docs/a.txt", "lines": 2, "words": 7, "chars": 35, "bytes": 35}],
        "truncated": false}),
        "{last}"
    );

    // The read went through the host and is reported like any capability call.
    let calls = events_of(&frames, "tool_call");
    assert_eq!(calls.len(), 1, "{frames:?}");
    assert_eq!(calls[0]["tool"], "fs.read");
    assert_eq!(calls[0]["args"]["path"], "docs/a.txt");
    let results = events_of(&frames, "tool_result");
    assert_eq!(results[0]["call_id"], calls[0]["call_id"]);
    assert_eq!(results[0]["result"]["bytes"], 35);

    // Its own events, in order: progress per file, then metrics and a log.
    let progress = events_of(&frames, "progress");
    assert_eq!(
        progress,
        [
            json!({"current": 0, "total": 1, "units": "files", "message": "docs/a.txt"}),
            json!({"current": 1, "total": 1, "units": "files"}),
        ]
    );
    let metrics = events_of(&frames, "metric");
    assert_eq!(
        metrics,
        [
            json!({"name": "words", "value": 7, "unit": "words"}),
            json!({"name": "bytes", "value": 35, "unit": "bytes"}),
        ]
    );
    let logs = events_of(&frames, "log");
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0]["level"], "info");
    assert_eq!(
        logs[0]["message"],
        "py-wordcount@1.0.0: 7 words, 2 lines in 1 file(s)"
    );
    let kinds: Vec<&str> = frames
        .iter()
        .filter(|f| f["type"] == "job.event")
        .map(|f| f["payload"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "progress",
            "tool_call",
            "tool_result",
            "progress",
            "metric",
            "metric",
            "log"
        ]
    );
}

#[tokio::test]
async fn walks_a_folder_through_list_dir_within_the_lease() {
    let s = setup(DOCS);
    let mut c = Client::connect(&s.host.url, TOKEN).await;
    let frames = run(
        &mut c,
        json!({"agent": AGENT, "input": {"path": "/", "top": 3},
        "lease_request": {"fs.read": ["/docs/**"]}}),
    )
    .await;
    let last = frames.last().unwrap();
    let r = &last["payload"]["result"];
    assert_eq!(r["files"], 3, "{last}");
    // `private/` is not granted: never listed, never read.
    let paths: Vec<&str> = r["per_file"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["/docs/a.txt", "/docs/deep/b.txt", "/docs/deep/c.txt"]
    );
    assert!(!last.to_string().contains("secret"), "{last}");
    assert_eq!(r["words"], 7 + 5 + 2);
    assert_eq!(r["lines"], 2 + 1 + 1, "an unterminated last line counts");
    assert_eq!(r["chars"], 35 + 19 + 8);
    assert_eq!(r["bytes"], 35 + 19 + 9, "é is two bytes, one char");
    assert_eq!(
        r["top"],
        json!([{"word": "fox", "count": 3}, {"word": "and", "count": 2},
        {"word": "dog", "count": 2}])
    );
    assert_eq!(
        events_of(&frames, "status"),
        [json!({"phase": "listing", "message": "/"})]
    );
    let tools: Vec<Value> = events_of(&frames, "tool_call")
        .iter()
        .map(|c| c["tool"].clone())
        .collect();
    assert_eq!(
        tools,
        [
            "fs.list", "fs.list", "fs.list", "fs.read", "fs.read", "fs.read"
        ]
    );

    // `max_files` stops the walk and says so.
    let frames = run(
        &mut c,
        json!({"agent": AGENT, "input": {"path": "docs/", "max_files": 2, "top": 0},
        "lease_request": {"fs.read": ["/docs/**"]}}),
    )
    .await;
    let r = &frames.last().unwrap()["payload"]["result"];
    assert_eq!(r["files"], 2, "{r}");
    assert_eq!(r["truncated"], true);
    assert_eq!(r["top"], json!([]));
    assert_eq!(events_of(&frames, "log")[0]["level"], "warn");
}

#[tokio::test]
async fn a_lease_denial_ends_the_job_with_the_hosts_failure_like_reader() {
    let s = setup(DOCS);
    let mut c = Client::connect(&s.host.url, TOKEN).await;
    for (path, lease, why) in [
        ("docs/a.txt", json!({}), "an empty lease grants no files"),
        (
            "private/secret.txt",
            json!({"fs.read": ["/docs/**"]}),
            "outside the grant",
        ),
        (
            "../outside.txt",
            json!({"fs.read": ["/**"]}),
            ".. above the root",
        ),
        (
            "private/",
            json!({"fs.read": ["/docs/**"]}),
            "a folder not granted",
        ),
    ] {
        let frames = run(
            &mut c,
            json!({"agent": AGENT, "input": {"path": path}, "lease_request": lease}),
        )
        .await;
        let last = frames.last().unwrap();
        assert_eq!(last["type"], "job.error", "{why}: {last}");
        assert_eq!(
            last["payload"]["code"], "PERMISSION_DENIED",
            "{why}: {last}"
        );
        assert_eq!(last["payload"]["retryable"], false, "{why}");
        assert!(!last.to_string().contains("host secret"), "{why}");
        let refused = events_of(&frames, "tool_result");
        assert_eq!(
            refused[0]["error"]["code"], "PERMISSION_DENIED",
            "{why}: refusals are reported too"
        );
        // The Rust `reader` ends the same way, with the same message, for a file.
        if !path.ends_with('/') {
            let rust = run(
                &mut c,
                json!({"agent": "reader", "input": {"path": path}, "lease_request": lease}),
            )
            .await;
            let rust = &rust.last().unwrap()["payload"];
            assert_eq!(rust["code"], last["payload"]["code"], "{why}");
            assert_eq!(rust["message"], last["payload"]["message"], "{why}");
        }
    }
}

#[tokio::test]
async fn invalid_input_is_invalid_request_before_any_file_is_read() {
    let s = setup(DOCS);
    let mut c = Client::connect(&s.host.url, TOKEN).await;
    for (input, says) in [
        (Value::Null, "invalid input: expected an object"),
        (json!("docs/a.txt"), "invalid input: expected an object"),
        (json!({}), "invalid input at `path`: missing field `path`"),
        (
            json!({"path": 3}),
            "invalid input at `path`: expected a string",
        ),
        (json!({"path": ""}), "invalid input at `path`: empty path"),
        (
            json!({"path": "docs/a.txt", "top": -1}),
            "invalid input at `top`: -1 is outside 0..100",
        ),
        (
            json!({"path": "docs/a.txt", "top": true}),
            "invalid input at `top`: expected an integer",
        ),
        (
            json!({"path": "docs/", "max_files": 1.5}),
            "invalid input at `max_files`: expected an integer",
        ),
    ] {
        let frames = run(
            &mut c,
            json!({"agent": AGENT, "input": input, "lease_request": {"fs.read": ["/**"]}}),
        )
        .await;
        let last = frames.last().unwrap();
        assert_eq!(last["type"], "job.error", "{input}: {last}");
        assert_eq!(
            last["payload"]["code"], "INVALID_REQUEST",
            "{input}: {last}"
        );
        assert_eq!(last["payload"]["retryable"], false);
        let message = last["payload"]["message"].as_str().unwrap();
        assert!(message.starts_with(says), "{input}: {message}");
        assert!(
            events_of(&frames, "tool_call").is_empty(),
            "{input}: nothing is read"
        );
    }
    // A file that does not exist is the host's INVALID_REQUEST, passed on.
    let frames = run(
        &mut c,
        json!({"agent": AGENT, "input": {"path": "docs/missing.txt"},
        "lease_request": {"fs.read": ["/docs/**"]}}),
    )
    .await;
    let last = frames.last().unwrap();
    assert_eq!(last["payload"]["code"], "INVALID_REQUEST", "{last}");
    assert_eq!(
        events_of(&frames, "tool_result")[0]["error"]["message"],
        last["payload"]["message"]
    );
}

#[tokio::test]
async fn a_cancel_while_it_walks_a_large_folder_stops_it() {
    let files: Vec<(String, String)> = (0..2000)
        .map(|i| (format!("many/f{i:04}.txt"), format!("word {i}\n")))
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let s = setup(&files);
    let mut c = Client::connect(&s.host.url, TOKEN).await;
    let acc = c
        .submit(json!({"agent": AGENT, "input": {"path": "many/"},
        "lease_request": {"fs.read": ["/many/**"]}}))
        .await;
    let job = acc["payload"]["job_id"].as_str().unwrap().to_owned();
    // Running: its first progress event has arrived.
    loop {
        let f = c.next().await;
        assert_ne!(f["type"], "job.result", "finished before the cancel: {f}");
        if f["payload"]["kind"] == "progress" {
            break;
        }
    }
    let started = Instant::now();
    c.send_env("job.cancel", json!({"reason": "test"}), Some(&job))
        .await;
    let frames = c.until_terminal().await;
    let last = frames.last().unwrap();
    assert_eq!(last["payload"]["final_status"], "cancelled", "{last}");
    let read = events_of(&frames, "tool_call").len();
    assert!(read < 2000, "stopped before reading every file ({read})");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn the_committed_component_was_built_from_the_committed_source() {
    // guests/python/py-wordcount/build.sh records the sha256 of what it built from
    // and of what it wrote (componentize-py's output is not byte-reproducible, so the
    // component cannot be rebuilt and compared here).
    let stamp = root().join("guests/python/py-wordcount/BUILT");
    let stamp = std::fs::read_to_string(&stamp).expect("BUILT: run build.sh");
    let mut checked = Vec::new();
    for line in stamp.lines() {
        let (sum, path) = line.split_once("  ").expect("sha256sum format");
        assert_eq!(
            sha256_hex(&root().join(path)),
            sum,
            "{path} changed since guests/python/py-wordcount/build.sh built \
             plugins/python/py-wordcount@1.0.0.wasm: rebuild it"
        );
        checked.push(path);
    }
    for needed in [
        "guests/python/py-wordcount/app.py",
        "guests/python/py-wordcount/requirements.txt",
        "wit/agent.wit",
        "plugins/python/py-wordcount@1.0.0.wasm",
    ] {
        assert!(checked.contains(&needed), "BUILT does not cover {needed}");
    }
}
