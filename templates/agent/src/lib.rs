//! `{{name}}`: an ARCP agent for arcp-host.
//!
//! Input `{"name": "Ada"}`; result `{"greeting": "Hello, Ada!"}`. Logs one line
//! on the way; an empty name ends the job with `INVALID_REQUEST`.
//! The SDK's documentation (`cargo doc --open -p arcp-agent`) lists what else an
//! agent can do: progress, streamed results, files, HTTP, models, tools, delegation.

use arcp_agent::prelude::*;

#[derive(Deserialize)]
struct Input {
    name: String,
}

#[derive(Serialize)]
struct Output {
    greeting: String,
}

fn run(job: Job, input: Input) -> Result<Output, Failure> {
    let name = input.name.trim();
    if name.is_empty() {
        return Err(Failure::invalid_request("`name` is empty"));
    }
    events::info(format!("{} greeting {name}", job.agent()));
    Ok(Output {
        greeting: format!("Hello, {name}!"),
    })
}

arcp_agent::agent!(run);
