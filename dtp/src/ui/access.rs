//! The dashboard's one gate, [`gate`], in front of every page and action:
//!
//! - **Sign-in.** With API tokens set, a page needs the `dtp_session` cookie holding one of
//!   them (`HttpOnly`: scripts cannot read it; `SameSite=Strict`: other sites' pages cannot
//!   send it). The login page sets it; without tokens the dashboard is open, as the API is.
//! - **CSRF.** Every `POST` must come from a page of this origin (`Origin`, else `Referer`) and
//!   carry the `csrf` form field equal to the `dtp_csrf` cookie (double submit): a page of
//!   another origin can neither read the cookie nor send a matching field.
//! - **Read-only.** With [`super::UiOptions::read_only`], every action is refused here, whatever
//!   the page showed.
//!
//! It also hands each page its [`Ctx`] and carries the one-time notice ("flash") of a redirect.

use apikit::auth::ApiTokens;
use axum::body::Body;
use axum::extract::{Form, OriginalUri, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use maud::html;
use rand::Rng;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::layout;
use super::Ui;

const SESSION: &str = "dtp_session";
const CSRF: &str = "dtp_csrf";
const FLASH: &str = "dtp_flash";
/// Largest form the dashboard accepts (its biggest is a bulk filter with an 8 KiB error text).
const MAX_FORM_BYTES: usize = 64 * 1024;

/// What every page needs to know about its request.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Where the dashboard is mounted (`/ui`), without a trailing slash; links start with it.
    pub base: String,
    /// This browser's CSRF token, for the forms of the page.
    pub csrf: String,
    /// The notice of the action that redirected here: `(ok, text)`.
    pub flash: Option<(bool, String)>,
    /// Whether signing in is required (tokens are set), so a sign-out button makes sense.
    pub auth_on: bool,
    /// Actions are hidden and refused.
    pub read_only: bool,
}

impl Ctx {
    /// `path` (starting with `/`) under the dashboard's prefix.
    pub fn link(&self, path: &str) -> String {
        match (path, self.base.as_str()) {
            // The overview is the mount point itself: nested routers do not answer `/ui/`.
            ("/", "") => "/".to_owned(),
            ("/", base) => base.to_owned(),
            (path, base) => format!("{base}{path}"),
        }
    }

    /// A 303 to `path` with a one-time notice shown by the next page.
    pub fn redirect(&self, path: &str, ok: bool, notice: &str) -> Response {
        let value =
            serde_urlencoded::to_string([("ok", if ok { "1" } else { "0" }), ("m", notice)])
                .unwrap_or_default();
        let mut response = Redirect::to(&self.link(path)).into_response();
        set_cookie(
            response.headers_mut(),
            &cookie(FLASH, &value, &self.base, "HttpOnly; Max-Age=60"),
        );
        response
    }
}

/// The middleware in front of the dashboard (see the module's text).
pub(super) async fn gate(State(ui): State<Ui>, request: Request, next: Next) -> Response {
    let base = mount_point(&request);
    let cookies = request.headers().clone();
    let path = request.uri().path().to_owned();
    let public = path == "/login" || path.starts_with("/assets/");
    let tokens = ui.app.config.edge.tokens.clone();
    let (csrf, fresh_csrf) = match cookie_value(&cookies, CSRF).filter(|t| is_token_shape(t)) {
        Some(token) => (token, false),
        None => (new_token(), true),
    };
    let flash = cookie_value(&cookies, FLASH).and_then(|raw| read_flash(&raw));
    let ctx = Ctx {
        base: base.clone(),
        csrf: csrf.clone(),
        flash: flash.clone(),
        auth_on: tokens.is_some(),
        read_only: ui.options.read_only,
    };
    let signed_in = tokens
        .as_ref()
        .is_none_or(|tokens| session_token(&cookies).is_some_and(|t| tokens.accepts(&t)));
    let is_get = request.method() == Method::GET;
    let checked = if !public && !signed_in {
        Err(if is_get {
            let back = request
                .extensions()
                .get::<OriginalUri>()
                .map(|uri| uri.0.to_string())
                .unwrap_or_else(|| ctx.link("/"));
            let query = serde_urlencoded::to_string([("next", back)]).unwrap_or_default();
            Redirect::to(&ctx.link(&format!("/login?{query}"))).into_response()
        } else {
            refusal(StatusCode::UNAUTHORIZED, "Sign in first.", &ctx)
        })
    } else if request.method() == Method::POST {
        checked_post(request, &ctx, fresh_csrf, &path).await
    } else {
        Ok(request)
    };
    let mut response = match checked {
        Ok(mut request) => {
            request.extensions_mut().insert(ctx.clone());
            next.run(request).await
        }
        Err(refused) => refused,
    };
    if let Some(super::Failed(detail)) = response.extensions_mut().remove::<super::Failed>() {
        response = layout::error_page(&ctx, response.status(), &detail);
    }
    let headers = response.headers_mut();
    if fresh_csrf {
        set_cookie(headers, &cookie(CSRF, &csrf, &base, "HttpOnly"));
    }
    if flash.is_some() && is_get && !headers.contains_key(header::LOCATION) {
        set_cookie(headers, &cookie(FLASH, "", &base, "Max-Age=0"));
    }
    for (name, value) in [
        // No inline script or style anywhere: what an injected string could run, it cannot.
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// `request` again if it is a POST this dashboard should act on, or the page refusing it.
async fn checked_post(
    request: Request,
    ctx: &Ctx,
    fresh_csrf: bool,
    path: &str,
) -> Result<Request, Response> {
    if !same_origin(request.headers()) {
        return Err(refusal(
            StatusCode::FORBIDDEN,
            "This form was not sent from a page of this dashboard.",
            ctx,
        ));
    }
    let account = path == "/login" || path == "/logout";
    if ctx.read_only && !account {
        return Err(refusal(
            StatusCode::FORBIDDEN,
            "This dashboard is read-only (DTP_UI_READ_ONLY=true): it changes nothing.",
            ctx,
        ));
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
        return Err(refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "The form is too large.",
            ctx,
        ));
    };
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
    let sent = fields
        .iter()
        .find(|(name, _)| name == "csrf")
        .map(|(_, value)| value.as_bytes())
        .unwrap_or_default();
    let matches: bool = ctx.csrf.as_bytes().ct_eq(sent).into();
    if fresh_csrf || !matches {
        return Err(refusal(
            StatusCode::FORBIDDEN,
            "This form has expired or was not sent from this dashboard; reload the page and try again.",
            ctx,
        ));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// An action refused, as a page.
fn refusal(status: StatusCode, detail: &str, ctx: &Ctx) -> Response {
    layout::error_page(ctx, status, detail)
}

/// Whether the request's `Origin` (else `Referer`) names the host it was sent to. A browser
/// sends `Origin` with every POST; a request with neither did not come from one of our pages.
fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(host) = text(header::HOST) else {
        return false;
    };
    let Some(source) = text(header::ORIGIN).or_else(|| text(header::REFERER)) else {
        return false;
    };
    let authority = source
        .strip_prefix("https://")
        .or_else(|| source.strip_prefix("http://"))
        .map(|rest| rest.split('/').next().unwrap_or_default());
    authority.is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

/// The prefix the dashboard is mounted under: the original path without the part the
/// dashboard's own router saw.
fn mount_point(request: &Request) -> String {
    let inner = request.uri().path();
    let original = request
        .extensions()
        .get::<OriginalUri>()
        .map_or(inner, |uri| uri.0.path());
    let base = if inner == "/" {
        original.trim_end_matches('/')
    } else {
        original.strip_suffix(inner).unwrap_or_default()
    };
    base.to_owned()
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// The token in the session cookie (stored form-encoded: a token may hold any character).
fn session_token(headers: &HeaderMap) -> Option<String> {
    let raw = cookie_value(headers, SESSION)?;
    let fields: Vec<(String, String)> = serde_urlencoded::from_str(&raw).ok()?;
    fields.into_iter().find(|(k, _)| k == "t").map(|(_, v)| v)
}

fn read_flash(raw: &str) -> Option<(bool, String)> {
    let fields: Vec<(String, String)> = serde_urlencoded::from_str(raw).ok()?;
    let ok = fields.iter().any(|(k, v)| k == "ok" && v == "1");
    let text = fields.into_iter().find(|(k, _)| k == "m")?.1;
    Some((ok, text.chars().take(500).collect()))
}

fn cookie(name: &str, value: &str, base: &str, extra: &str) -> String {
    let path = if base.is_empty() { "/" } else { base };
    format!("{name}={value}; Path={path}; SameSite=Strict; {extra}")
}

fn set_cookie(headers: &mut HeaderMap, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        headers.append(header::SET_COOKIE, value);
    }
}

fn new_token() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_token_shape(token: &str) -> bool {
    token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The sign-in page (or the overview when there is nothing to sign in to).
pub(super) async fn login_page(
    State(ui): State<Ui>,
    Extension(ctx): Extension<Ctx>,
    axum::extract::Query(query): axum::extract::Query<Vec<(String, String)>>,
) -> Response {
    if ui.app.config.edge.tokens.is_none() {
        return Redirect::to(&ctx.link("/")).into_response();
    }
    let next = query
        .into_iter()
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v)
        .unwrap_or_default();
    login_form(&ctx, &next, None, StatusCode::OK)
}

fn login_form(ctx: &Ctx, next: &str, error: Option<&str>, status: StatusCode) -> Response {
    let body = html! {
        form.login method="post" action=(ctx.link("/login")) {
            input type="hidden" name="csrf" value=(ctx.csrf);
            input type="hidden" name="next" value=(next);
            label for="token" { "API token" }
            input #token type="password" name="token" autocomplete="current-password" required autofocus;
            @if let Some(error) = error { p.error role="alert" { (error) } }
            button.primary type="submit" { "Sign in" }
            p.muted { "Any token of DTP_API_TOKEN. It is kept in a cookie scripts cannot read." }
        }
    };
    (status, layout::bare(ctx, "Sign in to DTP", body)).into_response()
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    token: String,
    #[serde(default)]
    next: String,
}

/// Checks the token and keeps it in the session cookie.
pub(super) async fn login(
    State(ui): State<Ui>,
    Extension(ctx): Extension<Ctx>,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some(tokens) = ui.app.config.edge.tokens.as_ref() else {
        return Redirect::to(&ctx.link("/")).into_response();
    };
    let token = form.token.trim();
    if !accepts(tokens, token) {
        tracing::warn!("dashboard sign-in refused: not one of the API tokens");
        let error = Some("That is not one of this DTP's API tokens.");
        return login_form(&ctx, &form.next, error, StatusCode::UNAUTHORIZED);
    }
    // Only a page of this dashboard: `next` comes from the query string anyone can write.
    let under_base = form.next.starts_with(&format!("{}/", ctx.base)) || form.next == ctx.base;
    let next = if under_base && !form.next.starts_with("//") && !form.next.contains('\\') {
        form.next.clone()
    } else {
        ctx.link("/")
    };
    let value = serde_urlencoded::to_string([("t", token)]).unwrap_or_default();
    let mut response = Redirect::to(&next).into_response();
    set_cookie(
        response.headers_mut(),
        &cookie(SESSION, &value, &ctx.base, "HttpOnly"),
    );
    tracing::info!("dashboard sign-in");
    response
}

fn accepts(tokens: &ApiTokens, token: &str) -> bool {
    !token.is_empty() && tokens.accepts(token)
}

/// Forgets the session cookie.
pub(super) async fn logout(Extension(ctx): Extension<Ctx>) -> Response {
    let mut response = Redirect::to(&ctx.link("/login")).into_response();
    set_cookie(
        response.headers_mut(),
        &cookie(SESSION, "", &ctx.base, "HttpOnly; Max-Age=0"),
    );
    response
}
