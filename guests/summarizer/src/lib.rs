//! `summarizer`: input `{"model": M, "text": T}`; asks model M (through the runtime's
//! model gateway, which the lease's `model.use` must grant) for a summary of T and
//! returns `{"model": M, "summary": <reply text>}`.

use arcp_agent::prelude::*;

#[derive(Deserialize)]
struct Input {
    model: String,
    text: String,
}

#[derive(Serialize)]
struct Output {
    model: String,
    summary: String,
}

fn run(_job: Job, Input { model, text }: Input) -> Result<Output, Failure> {
    let reply = model::complete(
        &model,
        &json!({
            "messages": [
                {"role": "system", "content": "Summarize the user's text in one or two sentences."},
                {"role": "user", "content": text},
            ]
        }),
    )?;
    let summary = model::reply_text(&reply).unwrap_or_default().to_owned();
    Ok(Output { model, summary })
}

arcp_agent::agent!(run);
