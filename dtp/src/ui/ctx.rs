//! What every page needs to know about its request ([`Ctx`]), which the gate (`access`) hands
//! each page, and the cookies it sets.

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};

/// The cookie that carries a redirect's one-time notice.
pub(super) const FLASH: &str = "dtp_flash";
/// Longest notice carried to the next page (it may quote input).
const MAX_NOTICE_CHARS: usize = 300;

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
    /// The request came through a TLS proxy (`X-Forwarded-Proto: https`): cookies get `Secure`.
    pub secure: bool,
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
        let notice: String = notice.chars().take(MAX_NOTICE_CHARS).collect();
        let flag = if ok { "1" } else { "0" };
        // A notice that cannot be encoded (it always can) is lost, never the redirect.
        let value =
            serde_urlencoded::to_string([("ok", flag), ("m", notice.as_str())]).unwrap_or_default();
        let mut response = Redirect::to(&self.link(path)).into_response();
        set_cookie(
            response.headers_mut(),
            &cookie(FLASH, &value, self, "HttpOnly; Max-Age=60"),
        );
        response
    }
}

/// A `Set-Cookie` value for this dashboard's path, `SameSite=Strict`, `Secure` behind TLS.
pub(super) fn cookie(name: &str, value: &str, ctx: &Ctx, extra: &str) -> String {
    // Only a plain path: a prefix holding `;` or spaces (an embedder's path parameter) would
    // add attributes to the cookie; such a mount gets its cookies on `/`.
    let plain = ctx
        .base
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b));
    let path = if ctx.base.is_empty() || !plain {
        "/"
    } else {
        &ctx.base
    };
    let secure = if ctx.secure { "; Secure" } else { "" };
    format!("{name}={value}; Path={path}; SameSite=Strict; {extra}{secure}")
}

pub(super) fn set_cookie(headers: &mut HeaderMap, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        headers.append(header::SET_COOKIE, value);
    }
}
