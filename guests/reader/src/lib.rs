//! `reader`: input `{"path": P}`; reads P from the runtime's workspace through the
//! `fs.read` capability (which the lease must grant) and returns
//! `{"path": P, "text": <its text>}` (invalid UTF-8 replaced). A refusal
//! (PERMISSION_DENIED, LEASE_EXPIRED, ...) ends the job with that error.

use arcp_agent::prelude::*;

#[derive(Deserialize)]
struct Input {
    path: String,
}

#[derive(Serialize)]
struct Output {
    path: String,
    text: String,
}

fn run(_job: Job, Input { path }: Input) -> Result<Output, Failure> {
    let text = String::from_utf8_lossy(&fs::read_file(&path)?).into_owned();
    Ok(Output { path, text })
}

arcp_agent::agent!(run);
