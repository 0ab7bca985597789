//! Request ids: every request gets an `x-request-id` (the caller's, or a new one), echoed in the
//! answer, recorded in the request's log span with its trace id, and passed on to DTP by
//! TaskPilot with its `traceparent` ([`Caller`]).

use axum::extract::{FromRequestParts, Request as AxumRequest};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId as TowerRequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use tracing::Instrument;

use crate::trace::{FollowedTrace, TraceContext, TRACEPARENT};

/// The header that carries the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request id `headers` carry (`-` when none is readable; every request through
/// [`with_request_id`] has one).
pub(crate) fn request_id_of(headers: &axum::http::HeaderMap) -> &str {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
}

/// New ids: 16 random hex digits.
#[derive(Clone, Copy, Default)]
struct RandomId;

impl MakeRequestId for RandomId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<TowerRequestId> {
        let id = format!("{:016x}", rand::random::<u64>());
        HeaderValue::from_str(&id).ok().map(TowerRequestId::new)
    }
}

/// Adds request ids and a per-request log span (method, path, request id) to `router`.
pub fn with_request_id<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    let header = HeaderName::from_static(REQUEST_ID_HEADER);
    router
        .layer(PropagateRequestIdLayer::new(header.clone()))
        // The request's span is made by `assign`, outside, which runs first.
        .layer(TraceLayer::new_for_http().make_span_with(|_: &Request<_>| tracing::Span::current()))
        .layer(axum::middleware::from_fn(assign))
        .layer(SetRequestIdLayer::new(header, RandomId))
}

/// Middleware: the request's log span (method, path, request id, trace id), continuing the
/// caller's trace (see [`crate::telemetry::continue_trace`]), and the span's context for
/// [`TraceContext`]'s extractor.
async fn assign(mut request: AxumRequest, next: Next) -> Response {
    let parent = request
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse);
    let request_id = request_id_of(request.headers());
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
        trace_id = tracing::field::Empty,
    );
    let context = crate::telemetry::continue_trace(&span, parent);
    span.record("trace_id", context.trace_id_hex());
    let followed = parent.is_some() || crate::telemetry::exporting();
    request.extensions_mut().insert(context);
    request
        .extensions_mut()
        .insert(FollowedTrace(followed.then_some(context)));
    next.run(request).instrument(span).await
}

/// What a request passes on to the services it calls: its id and its span context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Sent as `x-request-id`.
    pub request_id: String,
    /// Sent as `traceparent`.
    pub trace: TraceContext,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let RequestId(request_id) = RequestId::from_request_parts(parts, state).await?;
        let trace = TraceContext::from_request_parts(parts, state).await?;
        Ok(Caller { request_id, trace })
    }
}

/// The current request's id, for passing on to other services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestId(request_id_of(&parts.headers).to_owned()))
    }
}
