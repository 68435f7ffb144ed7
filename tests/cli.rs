//! The command line: `run`, `agents`, `stdio`, and the plugin folder as seen by them.

mod common;

use common::bundled_plugins;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

fn arcp_host() -> Command {
    Command::new(env!("CARGO_BIN_EXE_arcp-host"))
}

#[test]
fn run_prints_events_and_the_result() {
    let data = tempfile::tempdir().unwrap();
    let out = arcp_host()
        .args([
            "run",
            "ticker",
            "--input",
            r#"{"count":2,"progress":true}"#,
            "--plugins",
        ])
        .arg(bundled_plugins())
        .arg("--data")
        .arg(data.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result, json!({"ticks": 2}));
    assert!(
        stderr.contains(r#"[1] log {"level":"info","message":"tick 0"}"#),
        "{stderr}"
    );
    assert!(stderr.contains("[4] progress"), "{stderr}");
}

#[test]
fn run_fails_with_the_error_code_for_an_unknown_agent() {
    let data = tempfile::tempdir().unwrap();
    let out = arcp_host()
        .args(["run", "nope", "--in-memory", "--plugins"])
        .arg(bundled_plugins())
        .arg("--data")
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("AGENT_NOT_AVAILABLE"));
}

#[test]
fn agents_lists_the_bundled_plugins_and_reports_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["echo@1.0.0.wasm", "echo@2.0.0.wasm", "ticker@1.0.0.wasm"] {
        std::fs::copy(bundled_plugins().join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(
        dir.path().join("broken@1.0.0.wasm"),
        b"\0asm\x0d\x00\x01\x00garbage",
    )
    .unwrap();
    std::fs::write(dir.path().join("core@1.0.0.wasm"), b"\0asm\x01\x00\x00\x00").unwrap();
    std::fs::write(dir.path().join("BadName.wasm"), b"x").unwrap();
    std::fs::write(
        dir.path().join("ticker@1.0.0.toml"),
        "description = \"Counts out loud\\nsecond line\"\n",
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = arcp_host()
        .arg("agents")
        .arg("--plugins")
        .arg(dir.path())
        .arg("--data")
        .arg(data.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("echo") && l.contains("2.0.0") && l.contains("yes")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("ticker") && l.ends_with("Counts out loud")),
        "the sidecar's description, first line only: {stdout}"
    );
    assert!(
        stdout.contains("FAILED") && stdout.contains("broken@1.0.0.wasm"),
        "{stdout}"
    );
    assert!(
        stdout.contains("core@1.0.0.wasm") && stdout.contains("not a component"),
        "{stdout}"
    );
    assert!(stdout.contains("BadName.wasm"), "{stdout}");

    // Second start: compiled code comes from the cache.
    let out = arcp_host()
        .arg("agents")
        .arg("--plugins")
        .arg(dir.path())
        .arg("--data")
        .arg(data.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("FAILED"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    assert!(
        rows.iter().all(|r| r[3] == "yes"),
        "every plugin loads from the cache: {stdout}"
    );
}

#[test]
fn stdio_speaks_ndjson_on_stdin_and_stdout() {
    let data = tempfile::tempdir().unwrap();
    let mut child = arcp_host()
        .args(["stdio", "--in-memory", "--plugins"])
        .arg(bundled_plugins())
        .arg("--data")
        .arg(data.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let hello = json!({"arcp": "1.1", "id": common::envelope_id(1), "type": "session.hello",
        "payload": {"client": {"name": "t", "version": "0"}, "auth": {"scheme": "bearer", "token": "any"}}});
    writeln!(stdin, "{hello}").unwrap();
    let welcome: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(welcome["type"], "session.welcome");
    let sid = welcome["payload"]["session_id"].as_str().unwrap();
    writeln!(stdin, "not json").unwrap();
    let err: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(err["payload"]["code"], "INVALID_REQUEST");
    let submit = json!({"arcp": "1.1", "id": common::envelope_id(2), "type": "job.submit", "session_id": sid,
        "payload": {"agent": "echo@1.0.0", "input": "via stdio"}});
    writeln!(stdin, "{submit}").unwrap();
    let mut result = None;
    for line in lines.by_ref() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v["type"] == "job.result" {
            result = Some(v);
            break;
        }
    }
    assert_eq!(result.unwrap()["payload"]["result"]["echoed"], "via stdio");
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success());
}

#[test]
fn components_with_unknown_imports_or_no_run_export_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let importer = wat::parse_str(
        r#"(component (import "acme:secret/vault@1.0.0" (instance (export "open" (func)))))"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("importer@1.0.0.wasm"), importer).unwrap();
    let empty = wat::parse_str("(component)").unwrap();
    std::fs::write(dir.path().join("empty@1.0.0.wasm"), empty).unwrap();
    std::fs::copy(
        bundled_plugins().join("echo@1.0.0.wasm"),
        dir.path().join("echo@1.0.0.wasm"),
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = arcp_host()
        .arg("agents")
        .arg("--plugins")
        .arg(dir.path())
        .arg("--data")
        .arg(data.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line("importer@1.0.0.wasm").contains("acme:secret/vault"),
        "{stdout}"
    );
    assert!(line("empty@1.0.0.wasm").contains("run"), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("echo")),
        "the good plugin still loads: {stdout}"
    );
}

#[test]
fn serve_refuses_to_start_on_a_corrupt_or_unusable_store_and_names_the_file() {
    // A data "folder" that is a file cannot hold the store.
    let dir = tempfile::tempdir().unwrap();
    let not_a_folder = dir.path().join("data");
    std::fs::write(&not_a_folder, b"x").unwrap();
    // A store file that is not a database.
    let corrupt = dir.path().join("corrupt");
    std::fs::create_dir(&corrupt).unwrap();
    std::fs::write(corrupt.join("arcp.db"), vec![0x42u8; 8192]).unwrap();
    for (data, named) in [
        (&not_a_folder, not_a_folder.display().to_string()),
        (&corrupt, corrupt.join("arcp.db").display().to_string()),
    ] {
        let out = arcp_host()
            .args(["serve", "--listen", "127.0.0.1:0", "--plugins"])
            .arg(bundled_plugins())
            .arg("--data")
            .arg(data)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains(&named), "names {named}: {stderr}");
    }
}

#[test]
fn check_says_whether_a_file_would_load_and_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let cases = [
        (
            write("garbage@1.0.0.wasm", b"not wasm at all"),
            "bad magic number",
        ),
        (
            write("core@1.0.0.wasm", &wat::parse_str("(module)").unwrap()),
            "core WebAssembly module, not a component",
        ),
        (
            write(
                "importer@1.0.0.wasm",
                &wat::parse_str(
                    r#"(component (import "acme:secret/vault@1.0.0" (instance (export "open" (func)))))"#,
                )
                .unwrap(),
            ),
            "acme:secret/vault",
        ),
        (
            write(
                "future@1.0.0.wasm",
                &wat::parse_str(
                    r#"(component (import "arcp:agent/events@9.0.0" (instance (export "log" (func)))))"#,
                )
                .unwrap(),
            ),
            "built against arcp:agent@9.0.0; this host accepts arcp:agent@1.0.0, arcp:agent@1.1.0",
        ),
        (
            write("empty@1.0.0.wasm", &wat::parse_str("(component)").unwrap()),
            "run",
        ),
    ];
    for (file, why) in &cases {
        let out = arcp_host().arg("check").arg(file).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{stdout}");
        assert!(stdout.starts_with("FAILED"), "{stdout}");
        assert!(
            stdout.contains(why),
            "{file:?}: expected {why:?} in {stdout}"
        );
    }
    // Good files, including one built against the older 1.0.0 package.
    let out = arcp_host()
        .arg("check")
        .arg(bundled_plugins().join("echo@1.0.0.wasm"))
        .arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/plugins/legacy-echo@1.0.0.wasm"),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("ok      "), "{stdout}");
    assert!(
        stdout.contains("built against arcp:agent@1.1.0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("built against arcp:agent@1.0.0"),
        "{stdout}"
    );
    assert!(stdout.contains("exports run"), "{stdout}");
}

/// `arcp-host` as a client of the host at `url`, token TOKEN.
fn client_cmd(host: &common::Host, args: &[&str]) -> Command {
    let mut cmd = arcp_host();
    cmd.args(args)
        .env("ARCP_URL", &host.url)
        .env("ARCP_TOKEN", common::TOKEN);
    cmd
}

fn json_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[test]
fn submit_jobs_and_tail_against_a_running_host() {
    let host = common::Host::start(&bundled_plugins(), &[]);
    // submit: events as JSON lines, exit 0 on success.
    let out = client_cmd(
        &host,
        &["submit", "echo", "--input", r#"{"a":1}"#, "--json"],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.first().unwrap()["type"], "job.accepted");
    let end = lines.last().unwrap();
    assert_eq!(end["payload"]["result"]["echoed"], json!({"a": 1}));
    let job_id = end["job_id"].as_str().unwrap().to_owned();

    // A streamed result goes to --output; the input may come from a file.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.json");
    std::fs::write(&input, r#"{"chunks": 3, "chunk_size": 10}"#).unwrap();
    let file = dir.path().join("result.txt");
    let out = client_cmd(&host, &["submit", "streamer", "--input"])
        .arg(format!("@{}", input.display()))
        .arg("--output")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "000000abcd000001abcd000002abcd"
    );

    // A job that does not succeed exits 1.
    let out = client_cmd(
        &host,
        &[
            "submit",
            "sleeper",
            "--input",
            r#"{"seconds": 30}"#,
            "--max-runtime",
            "1",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("timed_out"));

    // jobs: filters by agent.
    let out = client_cmd(&host, &["jobs", "--agent", "echo", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = json_lines(&out.stdout);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["job_id"], job_id.as_str());

    // tail: the finished job's history, then its end.
    let out = client_cmd(&host, &["tail", &job_id, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.first().unwrap()["type"], "job.subscribed");
    assert_eq!(
        lines.last().unwrap()["payload"]["result"]["echoed"],
        json!({"a": 1})
    );
}

#[tokio::test]
async fn cancel_needs_the_submitting_session_and_ctrl_c_cancels_a_submit() {
    let host = common::Host::start(&bundled_plugins(), &[]);
    // A job submitted by a session that then went away.
    let mut c = common::Client::connect(&host.url, common::TOKEN).await;
    let accepted = c
        .submit(json!({"agent": "sleeper", "input": {"seconds": 60}}))
        .await;
    let job_id = accepted["job_id"].as_str().unwrap().to_owned();
    let (sid, token) = (
        c.session_id.clone(),
        c.welcome["payload"]["resume_token"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    drop(c);
    // Another session may not cancel it, and is told how to.
    let out = client_cmd(&host, &["cancel", &job_id]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PERMISSION_DENIED"), "{stderr}");
    assert!(stderr.contains("--resume-token"), "{stderr}");
    // Its own session, resumed, may.
    let out = client_cmd(
        &host,
        &[
            "cancel",
            &job_id,
            "--session",
            &sid,
            "--resume-token",
            &token,
            "--json",
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_lines(&out.stdout)[0]["type"], "job.cancelled");

    // Ctrl-C during `submit` cancels the job and exits 1.
    let mut submit = client_cmd(
        &host,
        &[
            "submit",
            "sleeper",
            "--input",
            r#"{"seconds": 60}"#,
            "--json",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stdout = BufReader::new(submit.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.contains("job.accepted"), "{first}");
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(submit.id() as libc::pid_t, libc::SIGINT) };
    let status = submit.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let rest: Vec<String> = stdout.lines().map_while(Result::ok).collect();
    let end: Value = serde_json::from_str(rest.last().unwrap()).unwrap();
    assert_eq!(end["payload"]["final_status"], "cancelled", "{rest:?}");
}

#[test]
fn serve_exits_cleanly_on_sigterm_and_keeps_what_it_acknowledged() {
    let mut host = common::Host::start(&bundled_plugins(), &[]);
    let out = client_cmd(&host, &["submit", "echo", "--input", "7", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let job_id = json_lines(&out.stdout).last().unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A service manager's stop: SIGTERM, then a wait.
    unsafe { libc::kill(host.child.id() as libc::pid_t, libc::SIGTERM) };
    let status = host.child.wait().unwrap();
    assert!(status.success(), "{status:?}\n{}", host.logs());
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(
        host.logs().contains("shutting down (terminate)"),
        "{}",
        host.logs()
    );
    // Restarted on the same data, the job is there.
    let data = common::reuse_data_dir(host.data.path());
    let again = common::Host::start_with_data(&bundled_plugins(), data, &[]);
    let out = client_cmd(&again, &["jobs", "--json"]).output().unwrap();
    let listed = json_lines(&out.stdout);
    assert!(
        listed.iter().any(|j| j["job_id"] == job_id.as_str()),
        "{listed:?}"
    );
}

#[test]
fn submit_colours_its_text_only_when_asked_or_on_a_terminal() {
    let host = common::Host::start(&bundled_plugins(), &[]);
    let input = r#"{"count": 2, "progress": true}"#;
    let stderr_of = |extra: &[&str]| {
        let mut args = vec!["submit", "ticker", "--input", input];
        args.extend_from_slice(extra);
        let out = client_cmd(&host, &args).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stderr).unwrap()
    };
    // Not a terminal: plain text, progress as lines.
    let plain = stderr_of(&[]);
    assert!(!plain.contains('\u{1b}'), "{plain:?}");
    assert!(plain.contains("progress"), "{plain}");
    let coloured = stderr_of(&["--color", "always", "--progress", "never"]);
    assert!(
        coloured.contains("\u{1b}[32"),
        "success in green: {coloured:?}"
    );
    assert!(coloured.contains("progress"), "{coloured}");
    // Bars on request even off a terminal: drawn in place of the progress lines.
    let bars = stderr_of(&["--progress", "always"]);
    assert!(bars.contains("2/2 ticks"), "{bars:?}");
    assert!(!bars.contains("] progress {"), "{bars:?}");
}

/// The load generator (`bench --url`) against a running host: every job of every
/// session is counted as accepted and succeeded, with its submits written as one
/// burst per session, and the round trips (each with a lease) and the event flood
/// report their figures.
#[test]
fn bench_counts_every_job_of_every_session_against_a_running_host() {
    let host = common::Host::start(&bundled_plugins(), &[]);
    let out = arcp_host()
        .args(["bench", "--url", &host.url, "--bench-token", common::TOKEN])
        .args(["--round-trips", "5", "--cancels", "0", "--events", "200"])
        .args([
            "--lease",
            r#"{"fs.read": ["/docs/**"], "net.fetch": ["https://*.example.org/**"]}"#,
        ])
        .args(["--sessions", "4", "--jobs-per-session", "6"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("4 sessions opened"),
        "sessions line missing: {stdout}"
    );
    assert!(
        stdout.contains("24 jobs: 24 accepted, 24 succeeded, errors 0"),
        "not every job counted: {stdout}"
    );
    assert!(stdout.contains("n=24 p50="), "latency of 24 jobs: {stdout}");
    assert!(stdout.contains("n=5 p50="), "5 round trips: {stdout}");
    assert!(
        stdout.contains(r#"lease_request {"fs.read":["/docs/**"]"#),
        "the round trips' lease: {stdout}"
    );
    assert!(stdout.contains("events/s"), "event flood: {stdout}");
}
