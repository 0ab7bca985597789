//! The typed client for DTP: the only code in TaskPilot that knows DTP's URLs.
//!
//! Every call has connect and request timeouts, follows no redirects, passes the request id and
//! the trace context (`traceparent`) on,
//! and answers with a typed outcome; the API maps those to HTTP in one place (`api::error`).

use std::time::{Duration, Instant};

use apikit::auth::Secret;
use apikit::metrics::CountedCalls;
use apikit::trace::TRACEPARENT;
use apikit::Caller;
use common::{Attempt, AttemptList, Problem, TaskPage, TaskView};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::registry::Registry;
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

/// Largest successful answer read from DTP. A task carries its payload (1 MiB under DTP's
/// default body limit, JSON-escaped) and its result; an answer larger than this is not a task
/// DTP sent, and reading it whole would let the peer decide how much memory TaskPilot uses.
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;
/// Largest error answer read from DTP (only its problem detail is kept).
const MAX_ERROR_ANSWER_BYTES: usize = 64 * 1024;

/// How a call to DTP can fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// DTP has no task with this id.
    #[error("Scheduler task not found: {0}")]
    NotFound(i64),
    /// DTP refused because of the task's state (409), with its reason.
    #[error("{0}")]
    Conflict(String),
    /// DTP refused the request itself (another 4xx), with its status and reason.
    #[error("scheduler rejected the request ({status}): {detail}")]
    Rejected {
        /// DTP's status.
        status: u16,
        /// DTP's reason.
        detail: String,
    },
    /// DTP answered 2xx without a usable body.
    #[error("scheduler answered without a usable body: {0}")]
    BadBody(String),
    /// DTP failed (5xx), or the exchange broke after connecting.
    #[error("scheduler failed: {0}")]
    Upstream(String),
    /// DTP could not be reached.
    #[error("scheduler unreachable: {0}")]
    Unreachable(String),
    /// DTP did not answer within the timeout.
    #[error("scheduler did not answer within {0:?}")]
    TimedOut(Duration),
}

/// A call to DTP as its metrics label it: which operation, and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    operation: &'static str,
    outcome: &'static str,
}

/// Calls to DTP: how many, and how long each took, per operation and outcome.
#[derive(Clone, Debug, Default)]
pub struct DtpCallMetrics(CountedCalls<CallLabels>);

impl DtpCallMetrics {
    /// Registers `taskpilot_dtp_requests_total` and `taskpilot_dtp_request_duration_seconds`.
    pub fn register(&self, registry: &mut Registry) {
        self.0.register(
            registry,
            "taskpilot_dtp_request",
            "Calls to DTP, by operation and outcome (ok, not_found, conflict, rejected, bad_body, upstream, unreachable, timed_out)",
            "Time a call to DTP took, by operation and outcome",
        );
    }

    fn record<T>(&self, operation: &'static str, result: &Result<T, Error>, took: Duration) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(Error::NotFound(_)) => "not_found",
            Err(Error::Conflict(_)) => "conflict",
            Err(Error::Rejected { .. }) => "rejected",
            Err(Error::BadBody(_)) => "bad_body",
            Err(Error::Upstream(_)) => "upstream",
            Err(Error::Unreachable(_)) => "unreachable",
            Err(Error::TimedOut(_)) => "timed_out",
        };
        self.0.record(&CallLabels { operation, outcome }, took);
    }
}

/// A client for one DTP base URL.
#[derive(Debug, Clone)]
pub struct SchedulerClient {
    http: reqwest::Client,
    base: Url,
    timeout: Duration,
    token: Option<Secret>,
    metrics: DtpCallMetrics,
}

impl SchedulerClient {
    /// A client for DTP at `base_url`, presenting `token` as a bearer token when given.
    pub fn new(
        base_url: &str,
        connect_timeout: Duration,
        timeout: Duration,
        token: Option<Secret>,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let base = Url::parse(base_url)?;
        Ok(SchedulerClient {
            http,
            base,
            timeout,
            token,
            metrics: DtpCallMetrics::default(),
        })
    }

    /// This client, counting its calls into `metrics`.
    pub fn with_metrics(self, metrics: DtpCallMetrics) -> Self {
        SchedulerClient { metrics, ..self }
    }

    /// Runs `call`, the operation `operation`, and counts it.
    async fn observed<T>(
        &self,
        operation: &'static str,
        call: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let started = Instant::now();
        let result = call.await;
        self.metrics.record(operation, &result, started.elapsed());
        result
    }

    /// `POST /tasks`: creates a task (or returns the one its idempotency key already made).
    pub async fn create_task(
        &self,
        request: &impl serde::Serialize,
        caller: &Caller,
    ) -> Result<TaskView, Error> {
        let call = self.request(Method::POST, "/tasks", caller).json(request);
        self.observed("create_task", self.send(call, None)).await
    }

    /// `GET /tasks/{id}`.
    pub async fn get_task(&self, id: i64, caller: &Caller) -> Result<TaskView, Error> {
        let call = self.request(Method::GET, &format!("/tasks/{id}"), caller);
        self.observed("get_task", self.send(call, Some(id))).await
    }

    /// `GET /tasks/{id}/attempts`: oldest first.
    pub async fn get_attempts(&self, id: i64, caller: &Caller) -> Result<Vec<Attempt>, Error> {
        let call = self.request(Method::GET, &format!("/tasks/{id}/attempts"), caller);
        let list: AttemptList = self
            .observed("get_attempts", self.send(call, Some(id)))
            .await?;
        Ok(list.attempts)
    }

    /// `PUT /tasks/{id}/cancel`: succeeds when the task is (now or already) CANCELED. The body
    /// is not needed: any 2xx is success.
    pub async fn cancel_task(&self, id: i64, caller: &Caller) -> Result<(), Error> {
        let call = self.request(Method::PUT, &format!("/tasks/{id}/cancel"), caller);
        let cancel = async {
            let response = self.exchange(call).await?;
            check_status(response, Some(id)).await.map(drop)
        };
        self.observed("cancel_task", cancel).await
    }

    /// The task created with `key`, if any (`GET /tasks?idempotencyKey=`).
    pub async fn find_by_idempotency_key(
        &self,
        key: &str,
        caller: &Caller,
    ) -> Result<Option<TaskView>, Error> {
        let call = self.request(Method::GET, "/tasks", caller).query(&[
            ("idempotencyKey", key),
            ("limit", "1"),
            ("include", "payload,result"),
        ]);
        let page: TaskPage = self
            .observed("find_by_idempotency_key", self.send(call, None))
            .await?;
        Ok(page.tasks.into_iter().next())
    }

    fn request(&self, method: Method, path: &str, caller: &Caller) -> reqwest::RequestBuilder {
        let mut url = self.base.clone();
        url.set_path(path);
        let request = self
            .http
            .request(method, url)
            .header(apikit::REQUEST_ID_HEADER, &caller.request_id)
            .header(TRACEPARENT, caller.trace.to_string());
        match &self.token {
            Some(token) => request.bearer_auth(token.expose()),
            None => request,
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        call: reqwest::RequestBuilder,
        id: Option<i64>,
    ) -> Result<T, Error> {
        let response = check_status(self.exchange(call).await?, id).await?;
        let body = apikit::read_at_most(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| self.transport(e))?;
        if !body.complete {
            return Err(Error::BadBody(format!(
                "the answer is larger than {MAX_ANSWER_BYTES} bytes"
            )));
        }
        serde_json::from_slice(&body.bytes).map_err(|e| Error::BadBody(e.to_string()))
    }

    async fn exchange(&self, call: reqwest::RequestBuilder) -> Result<reqwest::Response, Error> {
        call.send().await.map_err(|e| self.transport(e))
    }

    fn transport(&self, error: reqwest::Error) -> Error {
        if error.is_timeout() {
            Error::TimedOut(self.timeout)
        } else if error.is_connect() {
            Error::Unreachable(error_chain(&error))
        } else {
            Error::Upstream(error_chain(&error))
        }
    }
}

/// Passes 2xx answers on; turns every other status into its typed error.
async fn check_status(
    response: reqwest::Response,
    id: Option<i64>,
) -> Result<reqwest::Response, Error> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = match apikit::read_at_most(response, MAX_ERROR_ANSWER_BYTES).await {
        Ok(body) => body.text(),
        Err(e) => format!("(body unreadable: {e})"),
    };
    let detail = serde_json::from_str::<Problem>(&text)
        .ok()
        .and_then(|p| p.detail)
        .unwrap_or_else(|| text.chars().take(500).collect());
    Err(match (status, id) {
        (StatusCode::NOT_FOUND, Some(id)) => Error::NotFound(id),
        (StatusCode::CONFLICT, _) => Error::Conflict(detail),
        (s, _) if s.is_server_error() => Error::Upstream(format!("{status}: {detail}")),
        (s, _) => Error::Rejected {
            status: s.as_u16(),
            detail,
        },
    })
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
