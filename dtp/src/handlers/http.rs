//! `http`: POSTs `payload.body` to `payload.url`.
//!
//! 2xx is success (the result holds the status and the response body), 5xx, 408, 429, timeouts
//! and connection errors are retryable, any other status is a permanent failure. Redirects are not
//! followed: a redirect is an answer, not a success.

use std::time::Duration;

use serde_json::{json, Value};

use super::{BoxFuture, Handler, HandlerError, TaskContext};

/// The `http` handler with its own client.
pub struct HttpHandler {
    client: reqwest::Client,
}

/// Per-request timeout of the `http` handler.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Connect timeout of the `http` handler.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Response bodies kept in the result are cut to this many bytes.
const MAX_RESULT_BODY: usize = 4096;

impl HttpHandler {
    /// A handler with a client that follows no redirects and times out.
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        HttpHandler { client }
    }

    async fn post(&self, payload: Value) -> Result<Value, HandlerError> {
        let url = parse_url(&payload)?;
        let body = payload.get("body").cloned().unwrap_or(Value::Null);
        let response = self
            .client
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(|e| HandlerError::Retryable(format!("request failed: {e}")))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let excerpt: String = text.chars().take(MAX_RESULT_BODY).collect();
        if status.is_success() {
            let body = serde_json::from_str(&excerpt).unwrap_or(Value::String(excerpt));
            return Ok(json!({ "status": status.as_u16(), "body": body }));
        }
        let message = format!("HTTP {status}: {excerpt}");
        let retryable = status.is_server_error()
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
        Err(if retryable {
            HandlerError::Retryable(message)
        } else {
            HandlerError::Permanent(message)
        })
    }
}

impl Default for HttpHandler {
    fn default() -> Self {
        Self::new()
    }
}

fn parse_url(payload: &Value) -> Result<reqwest::Url, HandlerError> {
    let raw = payload
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| HandlerError::Permanent("payload.url (a string) is required".into()))?;
    let url = reqwest::Url::parse(raw)
        .map_err(|e| HandlerError::Permanent(format!("payload.url {raw:?} is invalid: {e}")))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(HandlerError::Permanent(format!(
            "payload.url scheme {other:?} is not allowed; use http or https"
        ))),
    }
}

impl Handler for HttpHandler {
    fn run(&self, ctx: TaskContext) -> BoxFuture<'_, Result<Value, HandlerError>> {
        Box::pin(self.post(ctx.payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_other_than_http_are_refused_permanently() {
        let refused = parse_url(&json!({ "url": "file:///etc/passwd" }));
        assert!(matches!(refused, Err(HandlerError::Permanent(_))));
        assert!(matches!(
            parse_url(&json!({})),
            Err(HandlerError::Permanent(_))
        ));
        assert!(parse_url(&json!({ "url": "https://example.com/hook" })).is_ok());
    }
}
