//! The CLI's HTTP client for DTP's API: bearer token, timeouts, and every refusal read from
//! its problem JSON into one line.

use std::time::Duration;

use apikit::auth::Secret;
use common::Problem;
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Exit, Remote};

/// Largest answer read (a page of 500 tasks with their payloads fits).
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// Why a client subcommand failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// DTP refused the request (4xx): its status and problem detail.
    #[error("{status}: {detail}")]
    Refused {
        /// DTP's status.
        status: StatusCode,
        /// Its reason.
        detail: String,
    },
    /// DTP could not be reached, failed (5xx) or did not answer in time.
    #[error("{0}")]
    Unavailable(String),
    /// The command's input is not usable (a file, a JSON argument).
    #[error("{0}")]
    Input(String),
}

impl CliError {
    /// The exit code this failure ends the process with.
    pub fn exit(&self) -> Exit {
        match self {
            CliError::Refused { .. } | CliError::Input(_) => Exit::Refused,
            CliError::Unavailable(_) => Exit::Unavailable,
        }
    }
}

/// A client of one DTP.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<Secret>,
}

impl Client {
    /// A client of the DTP at `remote.url`.
    pub fn new(remote: &Remote) -> Result<Client, CliError> {
        let base = Url::parse(&remote.url)
            .map_err(|e| CliError::Input(format!("--url {:?} is not a URL: {e}", remote.url)))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| CliError::Unavailable(format!("no HTTP client: {e}")))?;
        Ok(Client {
            http,
            base,
            token: remote.token.clone(),
        })
    }

    /// `GET path?query`, its answer read as a `T`.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, CliError> {
        let request = self.request(Method::GET, path).query(query);
        read(self.exchange(request).await?).await
    }

    /// `method path` with `body` as JSON (or none), its answer read as a `T`.
    pub async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, CliError> {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        read(self.exchange(request).await?).await
    }

    /// `method path` without a body, for an answer without one (`204`).
    pub async fn send_empty(&self, method: Method, path: &str) -> Result<(), CliError> {
        self.exchange(self.request(method, path)).await.map(drop)
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut url = self.base.clone();
        url.set_path(path);
        let request = self.http.request(method, url);
        match &self.token {
            Some(token) => request.bearer_auth(token.expose()),
            None => request,
        }
    }

    /// Sends `request`; a 2xx answer is passed on, anything else is its [`CliError`].
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, CliError> {
        let response = request.send().await.map_err(|e| {
            let what = if e.is_timeout() {
                "did not answer in time"
            } else if e.is_connect() {
                "cannot be reached"
            } else {
                "failed"
            };
            CliError::Unavailable(format!("DTP at {} {what}: {e}", self.base))
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = apikit::read_at_most(response, 64 * 1024)
            .await
            .map(|b| b.text())
            .unwrap_or_default();
        let detail = serde_json::from_str::<Problem>(&body)
            .ok()
            .and_then(|p| p.detail)
            .unwrap_or_else(|| body.chars().take(300).collect());
        Err(
            if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
                CliError::Unavailable(format!("{status}: {detail}"))
            } else {
                CliError::Refused { status, detail }
            },
        )
    }
}

async fn read<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, CliError> {
    let body = apikit::read_at_most(response, MAX_ANSWER_BYTES)
        .await
        .map_err(|e| CliError::Unavailable(format!("reading DTP's answer failed: {e}")))?;
    serde_json::from_slice(&body.bytes)
        .map_err(|e| CliError::Unavailable(format!("DTP's answer is not what was expected: {e}")))
}
