//! The model gateway behind `model.use`: forwards a plugin's chat-completion request
//! to the OpenAI-compatible endpoint the operator configured, adding the API key
//! (which never enters the sandbox), and prices the reply's token usage from the
//! operator's price table so that it can be charged to the job's budget.

use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Price of one model, per 1,000 tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPrice {
    /// Per 1,000 prompt tokens.
    pub input_per_1k: Decimal,
    /// Per 1,000 completion tokens.
    pub output_per_1k: Decimal,
}

/// The configured endpoint.
pub struct ModelGateway {
    client: reqwest::Client,
    url: String,
    key: Option<String>,
    /// The currency prices are in.
    pub currency: String,
    prices: BTreeMap<String, ModelPrice>,
    max_response_bytes: usize,
}

/// A completed call: the endpoint's reply and what it cost.
pub struct Completion {
    /// The reply body (JSON text), as the endpoint sent it.
    pub body: String,
    /// Token usage × price.
    pub cost: Decimal,
    /// Prompt and completion tokens.
    pub tokens: (u64, u64),
}

impl ModelGateway {
    /// A gateway to `url` (e.g. `https://api.openai.com/v1`).
    pub fn new(
        url: String,
        key: Option<String>,
        currency: String,
        prices: BTreeMap<String, ModelPrice>,
        timeout: Duration,
    ) -> anyhow::Result<ModelGateway> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("arcp-host/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(ModelGateway {
            client,
            url: url.trim_end_matches('/').to_owned(),
            key,
            currency,
            prices,
            max_response_bytes: 8 << 20,
        })
    }

    /// Whether the gateway offers `model`.
    pub fn offers(&self, model: &str) -> bool {
        self.prices.contains_key(model)
    }

    /// Sends `request_json` (an OpenAI chat-completions body; `model` is set to
    /// `model`, streaming is turned off) and prices the reply.
    pub async fn complete(
        &self,
        model: &str,
        request_json: &str,
    ) -> Result<Completion, (String, String)> {
        let invalid = |m: String| ("INVALID_REQUEST".to_owned(), m);
        let price = self
            .prices
            .get(model)
            .ok_or_else(|| invalid(format!("model {model:?} is not offered by this runtime")))?;
        let mut request: Value = serde_json::from_str(request_json)
            .map_err(|e| invalid(format!("request is not JSON: {e}")))?;
        let obj = request
            .as_object_mut()
            .ok_or_else(|| invalid("request must be a JSON object".into()))?;
        obj.insert("model".into(), model.into());
        obj.insert("stream".into(), false.into());
        let mut req = self
            .client
            .post(format!("{}/chat/completions", self.url))
            .json(&request);
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        let upstream = |m: String| ("INTERNAL_ERROR".to_owned(), m);
        let resp = req
            .send()
            .await
            .map_err(|e| upstream(format!("model endpoint unreachable: {e}")))?;
        let status = resp.status();
        let bytes = super::read_body_within(resp, self.max_response_bytes)
            .await
            .map_err(|e| upstream(format!("model endpoint: {e}")))?;
        let body = String::from_utf8_lossy(&bytes).into_owned();
        if !status.is_success() {
            return Err(upstream(format!("model endpoint answered {status}")));
        }
        let reply: Value = serde_json::from_str(&body)
            .map_err(|e| upstream(format!("model reply is not JSON: {e}")))?;
        let prompt = reply["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
        let completion = reply["usage"]["completion_tokens"].as_u64().unwrap_or(0);
        let thousand = Decimal::from(1000);
        let cost = Decimal::from(prompt) * price.input_per_1k / thousand
            + Decimal::from(completion) * price.output_per_1k / thousand;
        Ok(Completion {
            body,
            cost: cost.normalize(),
            tokens: (prompt, completion),
        })
    }
}
