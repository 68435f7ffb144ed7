//! `echo`: returns `{"echoed": <input>, "version": "<its version>"}`.
//! Built twice: 1.0.0 by default, 2.0.0 with the `v2` feature.

wit_bindgen::generate!({ path: "../../wit", world: "agent" });

const VERSION: &str = if cfg!(feature = "v2") { "2.0.0" } else { "1.0.0" };

struct Echo;

impl Guest for Echo {
    fn run(_job: JobInfo, input_json: String) -> Result<String, Failure> {
        let input: serde_json::Value = serde_json::from_str(&input_json).map_err(|e| Failure {
            code: "INVALID_REQUEST".into(),
            message: format!("input is not JSON: {e}"),
            retryable: false,
        })?;
        Ok(serde_json::json!({ "echoed": input, "version": VERSION }).to_string())
    }
}

export!(Echo);
