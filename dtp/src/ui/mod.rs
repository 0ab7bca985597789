//! The dashboard: server-rendered pages for operators, served by `dtp` at `/ui`, and a
//! [`router`] an embedding program can mount under a prefix of its own.
//!
//! Pages are HTML rendered here (maud) with one stylesheet and one small script of our own
//! (`assets/`), no front-end build. Every read goes through the same queue functions as the
//! API, every action through [`crate::api::operator`], the API's own operations, so the two
//! cannot disagree. [`access`] is the one gate: the sign-in cookie, CSRF and read-only mode.

mod access;
mod charts;
mod ctx;
mod fleet;
mod layout;
mod overview;
mod queues;
mod tasks;

use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

pub use crate::api::UiOptions;
use crate::api::{ApiError, AppState};

pub use ctx::Ctx;

/// What the pages share: the API's state (pool, settings, metrics, tokens) and the options.
#[derive(Debug, Clone)]
pub(crate) struct Ui {
    app: AppState,
    options: UiOptions,
}

/// The dashboard's routes, relative to wherever it is mounted (`Router::nest("/ui", …)`):
/// links are written from the prefix each request arrived under. Signing in takes one of the
/// API's tokens (`state.config.edge.tokens`); without tokens the dashboard is open, like the API.
pub fn router(state: AppState, options: UiOptions) -> Router {
    let ui = Ui {
        app: state,
        options,
    };
    Router::new()
        .route("/", get(overview::page))
        .route("/login", get(access::login_page).post(access::login))
        .route("/logout", post(access::logout))
        .route("/assets/ui.css", get(stylesheet))
        .route("/assets/ui.js", get(script))
        .route("/tasks", get(tasks::list))
        .route("/tasks/bulk", get(tasks::bulk_confirm).post(tasks::bulk))
        .route("/tasks/{id}", get(tasks::detail))
        .route("/tasks/{id}/{action}", post(tasks::act))
        .route("/queues", get(queues::list))
        .route("/queues/action", post(queues::act))
        .route("/failures", get(queues::failures))
        .route("/schedules", get(fleet::schedules))
        .route("/schedules/action", post(fleet::schedule_act))
        .route("/workers", get(fleet::workers))
        .fallback(layout::not_found)
        .layer(axum::middleware::from_fn_with_state(
            ui.clone(),
            access::gate,
        ))
        .with_state(ui)
}

/// A page's answer: the page, or the error page of what went wrong.
type Page = Result<axum::response::Response, Failure>;

/// An error shown as a page: the API's error, rendered for people with the same status.
#[derive(Debug)]
pub(crate) struct Failure(ApiError);

impl<E: Into<ApiError>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure(error.into())
    }
}

/// The detail of a [`Failure`], carried to [`access::gate`], which renders the page (it knows
/// where the dashboard is mounted).
#[derive(Debug, Clone)]
struct Failed(String);

impl IntoResponse for Failure {
    fn into_response(self) -> axum::response::Response {
        let (status, detail) = self.0.status_and_detail();
        let mut response = status.into_response();
        response.extensions_mut().insert(Failed(detail));
        response
    }
}

const CSS: &str = include_str!("assets/ui.css");
const JS: &str = include_str!("assets/ui.js");

async fn stylesheet() -> impl IntoResponse {
    asset("text/css; charset=utf-8", CSS)
}

async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", JS)
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // The URL carries no version: an hour keeps a new release's assets an hour away.
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=3600"),
            ),
        ],
        body,
    )
}
