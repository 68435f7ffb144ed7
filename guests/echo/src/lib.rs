//! `echo`: returns `{"echoed": <input>, "version": "<its version>"}`.
//! Built twice: 1.0.0 by default, 2.0.0 with the `v2` feature.

use arcp_agent::prelude::*;

const VERSION: &str = if cfg!(feature = "v2") {
    "2.0.0"
} else {
    "1.0.0"
};

fn run(_job: Job, input: Value) -> Result<Value, Failure> {
    Ok(json!({ "echoed": input, "version": VERSION }))
}

arcp_agent::agent!(run);
