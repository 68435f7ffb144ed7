//! The interop suite: the reference Python client (PyPI
//! `agentruntimecontrolprotocol==1.1.3`) drives the real binary. This test creates
//! a virtualenv once under the target directory, installs `interop/requirements.txt`
//! into it, and runs pytest on `tests/interop/`. A missing Python is a failure, not
//! a skip.

use std::path::{Path, PathBuf};
use std::process::Command;

fn python() -> String {
    std::env::var("ARCP_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn venv() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("interop-venv");
    let reqs = root.join("tests/interop/requirements.txt");
    let wanted = std::fs::read_to_string(&reqs).expect("requirements.txt");
    let stamp = venv.join("requirements.stamp");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return venv;
    }
    let status = Command::new(python())
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 is required for the interop suite (set ARCP_PYTHON to choose one)");
    assert!(status.success(), "creating the interop virtualenv failed");
    let status = Command::new(venv.join("bin/python"))
        .args(["-m", "pip", "install", "--quiet", "-r"])
        .arg(&reqs)
        .status()
        .expect("pip");
    assert!(
        status.success(),
        "installing the interop requirements failed"
    );
    std::fs::write(&stamp, wanted).expect("stamp");
    venv
}

#[test]
fn reference_python_client_interop_suite() {
    let venv = venv();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(venv.join("bin/python"))
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/interop",
        ])
        .current_dir(root)
        .env("ARCP_HOST_BIN", env!("CARGO_BIN_EXE_arcp-host"))
        .output()
        .expect("running pytest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "interop suite failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" passed"), "pytest ran no tests:\n{stdout}");
}
