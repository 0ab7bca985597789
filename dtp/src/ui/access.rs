//! The dashboard's one gate, [`gate`], in front of every page and action:
//!
//! - **Sign-in.** With API tokens set, a page needs the `dtp_session` cookie the login page sets
//!   once given one of them: an expiry and an HMAC of it keyed by the token, so the cookie is
//!   not the token (a stolen cookie opens the dashboard until it expires, never the API), and
//!   every session ends when its token is removed. `HttpOnly`: scripts cannot read it;
//!   `SameSite=Strict`: other sites' pages cannot send it; `Secure` behind a TLS proxy that says
//!   `X-Forwarded-Proto: https`. Without tokens the dashboard is open, as the API is.
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
use hmac::{Hmac, Mac as Mac_};
use maud::html;
use rand::Rng;
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::ctx::{cookie, set_cookie, Ctx, FLASH};
use super::layout;
use super::Ui;

const SESSION: &str = "dtp_session";
const CSRF: &str = "dtp_csrf";
/// How long a sign-in lasts.
const SESSION_SECONDS: u64 = 12 * 60 * 60;
/// Largest form the dashboard accepts (its biggest is a bulk filter with an 8 KiB error text).
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The middleware in front of the dashboard (see the module's text).
pub(super) async fn gate(State(ui): State<Ui>, request: Request, next: Next) -> Response {
    let base = mount_point(&request);
    let cookies = request.headers();
    let path = request.uri().path().to_owned();
    let assets = path.starts_with("/assets/");
    let public = path == "/login" || assets;
    let tokens = ui.app.config.edge.tokens.clone();
    let (csrf, fresh_csrf) = match cookie_value(cookies, CSRF).filter(|t| is_token_shape(t)) {
        Some(token) => (token, false),
        None => (new_token(), true),
    };
    let flash = cookie_value(cookies, FLASH).and_then(|raw| read_flash(&raw));
    let ctx = Ctx {
        base: base.clone(),
        csrf: csrf.clone(),
        flash: flash.clone(),
        auth_on: tokens.is_some(),
        read_only: ui.options.read_only,
        secure: cookies
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https")),
    };
    let signed_in = tokens.as_ref().is_none_or(|tokens| {
        cookie_value(cookies, SESSION).is_some_and(|session| session_holds(tokens, &session))
    });
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
    if let Some(detail) = refusal_detail(&mut response).await {
        // An extractor's refusal (a missing form field, a bad query) answered as problem JSON
        // becomes a page like the dashboard's own.
        response = layout::error_page(&ctx, response.status(), &detail);
    }
    let headers = response.headers_mut();
    // Assets may be cached (shared caches too): they carry no cookie.
    if fresh_csrf && !assets {
        set_cookie(headers, &cookie(CSRF, &csrf, &ctx, "HttpOnly"));
    }
    if flash.is_some() && is_get && !assets && !headers.contains_key(header::LOCATION) {
        set_cookie(headers, &cookie(FLASH, "", &ctx, "Max-Age=0"));
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

/// What a refusal that is not a page of ours says (an extractor's plain-text rejection, a 405,
/// problem JSON), so it can be shown as one; `None` for a page or a success.
async fn refusal_detail(response: &mut Response) -> Option<String> {
    let content_type = response.headers().get(header::CONTENT_TYPE);
    let is_page = content_type.is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if response.status().as_u16() < 400 || is_page {
        return None;
    }
    let is_problem =
        content_type.is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    let body = std::mem::take(response.body_mut());
    let bytes = axum::body::to_bytes(body, 16 * 1024)
        .await
        .unwrap_or_default();
    let text = if is_problem {
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|p| p.get("detail").and_then(|d| d.as_str()).map(str::to_owned))
    } else {
        Some(String::from_utf8_lossy(&bytes).trim().to_owned())
    };
    let reason = response.status().canonical_reason().unwrap_or("Refused");
    Some(
        text.filter(|t| !t.is_empty())
            .unwrap_or_else(|| format!("{reason}.")),
    )
}

/// `request` again if it is a POST this dashboard should act on, or the page refusing it.
async fn checked_post(
    request: Request,
    ctx: &Ctx,
    fresh_csrf: bool,
    path: &str,
) -> Result<Request, Response> {
    if !same_origin(&request) {
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

/// Whether the request names this origin as its source: a request with neither `Origin` nor
/// `Referer` did not come from one of our pages.
fn same_origin(request: &Request) -> bool {
    apikit::auth::sent_from_own_origin(request) == Some(true)
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

/// The cookie `name`. Each pair is read on its own: another application's cookie in bytes that
/// are not text must not hide ours.
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .filter_map(|pair| std::str::from_utf8(pair).ok())
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

type Mac = Hmac<Sha256>;

/// A session for `token` until `expires` (Unix seconds): `expires.hex(HMAC(token, expires))`.
fn session_for(token: &str, expires: u64) -> String {
    let mac = session_mac(token, expires).finalize().into_bytes();
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("{expires}.{hex}")
}

fn session_mac(token: &str, expires: u64) -> Mac {
    let mut mac =
        <Mac as Mac_>::new_from_slice(token.as_bytes()).expect("HMAC accepts a key of any length");
    mac.update(format!("dtp-ui-session:{expires}").as_bytes());
    mac
}

/// Whether `session` is unexpired and made with one of `tokens` (each tried, in constant time).
fn session_holds(tokens: &ApiTokens, session: &str) -> bool {
    let Some((expires, hex)) = session.split_once('.') else {
        return false;
    };
    let Ok(expires) = expires.parse::<u64>() else {
        return false;
    };
    if expires <= unix_now() || hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let Some(mac) = (0..32)
        .map(|i| u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    tokens.any_matches(|token| session_mac(token, expires).verify_slice(&mac).is_ok())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn read_flash(raw: &str) -> Option<(bool, String)> {
    let fields: Vec<(String, String)> = serde_urlencoded::from_str(raw).ok()?;
    let ok = fields.iter().any(|(k, v)| k == "ok" && v == "1");
    let text = fields.into_iter().find(|(k, _)| k == "m")?.1;
    Some((ok, text.chars().take(500).collect()))
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
    let next = if is_dashboard_path(&ctx, &form.next) {
        form.next.clone()
    } else {
        ctx.link("/")
    };
    let session = session_for(token, unix_now() + SESSION_SECONDS);
    let mut response = Redirect::to(&next).into_response();
    let lasting = format!("HttpOnly; Max-Age={SESSION_SECONDS}");
    set_cookie(
        response.headers_mut(),
        &cookie(SESSION, &session, &ctx, &lasting),
    );
    tracing::info!("dashboard sign-in");
    response
}

/// Whether `next` is a path of this dashboard and nothing else: no other host (`//x`, `/\x`),
/// no control character or space (which browsers drop, turning `/\t/x` into `//x`).
fn is_dashboard_path(ctx: &Ctx, next: &str) -> bool {
    let plain = next.bytes().all(|b| b > 0x20 && b != 0x7f && b != b'\\');
    let under = next == ctx.base || next.starts_with(&format!("{}/", ctx.base));
    plain && under && !next.starts_with("//")
}

fn accepts(tokens: &ApiTokens, token: &str) -> bool {
    !token.is_empty() && tokens.accepts(token)
}

/// Forgets the session cookie.
pub(super) async fn logout(Extension(ctx): Extension<Ctx>) -> Response {
    let mut response = Redirect::to(&ctx.link("/login")).into_response();
    set_cookie(
        response.headers_mut(),
        &cookie(SESSION, "", &ctx, "HttpOnly; Max-Age=0"),
    );
    response
}
