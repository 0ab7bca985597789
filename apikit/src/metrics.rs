//! Prometheus metrics, as both services expose them: the `GET /metrics` route (Prometheus text
//! format, open like `/healthz` unless a metrics token is set), the HTTP request metrics every
//! route records, and the latency buckets every duration histogram uses.
//!
//! We use `prometheus-client` (the Prometheus project's own Rust client) because its registry is
//! a value, not a process global: an embedding program, or a test running several services in
//! one process, keeps each service's counts apart.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::auth::{require_bearer, ApiTokens, Secret};

/// Bucket bounds of every duration histogram, in seconds: from half a millisecond (a claim on an
/// idle machine) to a minute (a slow handler, a long queue wait).
pub const SECONDS_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// A histogram over [`SECONDS_BUCKETS`].
pub fn seconds_histogram() -> Histogram {
    Histogram::new(SECONDS_BUCKETS)
}

/// A family of [`seconds_histogram`]s, one per label set.
pub type SecondsFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// An empty [`SecondsFamily`].
pub fn seconds_family<L>() -> SecondsFamily<L>
where
    L: Clone + std::hash::Hash + Eq,
{
    Family::new_with_constructor(seconds_histogram)
}

/// A request as the HTTP metrics label it: the route's template (never the path itself, which
/// carries ids), the method and the answer's status code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: String,
}

/// Calls counted and timed under the same labels: a counter `{stem}s_total` and a histogram
/// `{stem}_duration_seconds` (requests a service answered, calls it made).
#[derive(Clone, Debug)]
pub struct CountedCalls<L> {
    count: Family<L, Counter>,
    seconds: SecondsFamily<L>,
}

impl<L: Clone + std::hash::Hash + Eq> Default for CountedCalls<L> {
    fn default() -> Self {
        CountedCalls {
            count: Family::default(),
            seconds: seconds_family(),
        }
    }
}

impl<L> CountedCalls<L>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    /// Registers `{stem}s_total` (`counted` is its help) and `{stem}_duration_seconds`
    /// (`timed`).
    pub fn register(&self, registry: &mut Registry, stem: &str, counted: &str, timed: &str) {
        registry.register(format!("{stem}s"), counted, self.count.clone());
        registry.register(
            format!("{stem}_duration_seconds"),
            timed,
            self.seconds.clone(),
        );
    }

    /// A call labelled `labels` took `took`.
    pub fn record(&self, labels: &L, took: std::time::Duration) {
        self.count.get_or_create(labels).inc();
        self.seconds
            .get_or_create(labels)
            .observe(took.as_secs_f64());
    }
}

/// What every route of a service records: requests answered and how long they took.
#[derive(Clone, Debug, Default)]
pub struct HttpMetrics(CountedCalls<RequestLabels>);

impl HttpMetrics {
    /// Registers `{service}_http_requests_total` and `{service}_http_request_duration_seconds`.
    pub fn register(&self, registry: &mut Registry, service: &str) {
        self.0.register(
            registry,
            &format!("{service}_http_request"),
            "HTTP requests answered, by route template, method and status code",
            "Time from a request's arrival to its answer, by route template, method and status code",
        );
    }

    /// Wraps every route of `router` (and its fallback) so that it records its requests.
    pub fn record_requests(&self, router: Router) -> Router {
        router.layer(axum::middleware::from_fn_with_state(self.clone(), record))
    }
}

async fn record(State(metrics): State<HttpMetrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = method_label(request.method()).to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = RequestLabels {
        route,
        method,
        status: response.status().as_u16().to_string(),
    };
    metrics.0.record(&labels, started.elapsed());
    response
}

/// A method as a label value: HTTP accepts any token as a method, and each would be a series
/// kept for the life of the process, so the unusual ones are one value.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The registry as Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail, and every metric we register encodes.
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut text, registry) {
        tracing::error!(error = %e, "metrics could not be encoded");
    }
    text
}

/// What answers a scrape: the exposition text, made when asked (DTP reads its depth gauges
/// first).
pub type Exposition = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>;

/// `GET /metrics`, answered by `exposition`; behind `token` when one is set.
pub fn metrics_router(exposition: Exposition, token: Option<Secret>) -> Router {
    let route = Router::new().route(
        "/metrics",
        get(move || {
            let exposition = exposition.clone();
            async move {
                let text = exposition().await;
                (
                    [(
                        header::CONTENT_TYPE,
                        prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                    )],
                    text,
                )
                    .into_response()
            }
        }),
    );
    match token.and_then(|token| ApiTokens::new(vec![token])) {
        Some(tokens) => route.layer(axum::middleware::from_fn_with_state(tokens, require_bearer)),
        None => route,
    }
}
