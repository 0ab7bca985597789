//! Bearer-token authentication, and the `Secret` wrapper that keeps tokens out of logs.
//!
//! Tokens are compared in constant time; a refused request gets `401` problem JSON with
//! `WWW-Authenticate: Bearer`, and the token it carried is never logged.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use crate::problem_response;

/// A secret string: `Debug` and `Display` print `[redacted]`, so it cannot reach logs by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send or compare it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl FromStr for Secret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        if trimmed.is_empty() {
            return Err("a token must not be empty".into());
        }
        Ok(Secret(trimmed.to_owned()))
    }
}

/// The tokens an API accepts.
#[derive(Clone, Debug)]
pub struct ApiTokens(Arc<Vec<Secret>>);

impl ApiTokens {
    /// Accepts any of `tokens` (empty ones ignored); `None` when there are none (authentication
    /// off).
    pub fn new(tokens: Vec<Secret>) -> Option<Self> {
        // An empty token (possible through `Secret::new`) would accept an empty bearer.
        let tokens: Vec<Secret> = tokens.into_iter().filter(|t| !t.0.is_empty()).collect();
        (!tokens.is_empty()).then(|| ApiTokens(Arc::new(tokens)))
    }

    /// Whether `presented` is one of the tokens, compared in constant time (every token is
    /// compared, so the time does not say which one matched either).
    pub fn accepts(&self, presented: &str) -> bool {
        self.0.iter().fold(false, |matched, token| {
            let equal: bool = token.expose().as_bytes().ct_eq(presented.as_bytes()).into();
            matched | equal
        })
    }

    /// Whether `check` holds for any token; every token is checked, whichever matches, so the
    /// time does not say which one did (`check` itself must compare in constant time).
    pub fn any_matches(&self, check: impl Fn(&str) -> bool) -> bool {
        self.0
            .iter()
            .fold(false, |matched, token| matched | check(token.expose()))
    }
}

/// Middleware: refuses requests without `Authorization: Bearer <one of the tokens>`.
pub async fn require_bearer(
    State(tokens): State<ApiTokens>,
    request: Request,
    next: Next,
) -> Response {
    match bearer_token(&request) {
        Some(token) if tokens.accepts(token.trim()) => next.run(request).await,
        Some(_) => unauthorized("the bearer token is not valid"),
        None => unauthorized("this API needs `Authorization: Bearer <token>`"),
    }
}

/// The token of the request's `Authorization: Bearer <token>`, if it has one.
fn bearer_token(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
}

fn unauthorized(detail: &str) -> Response {
    let mut response = problem_response(StatusCode::UNAUTHORIZED, Some(detail.to_owned()));
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Middleware: refuses a state-changing request (any method but GET, HEAD, OPTIONS and TRACE)
/// that a browser sent from another origin, `403` problem JSON, unless it carries a bearer
/// token (`Authorization: Bearer …`): a page cannot add one to a request to another origin
/// without a CORS preflight, which these services never grant, and a wrong token is refused by
/// [`require_bearer`]. Without it, a web page's no-cors `fetch` or form could pause a queue or
/// run a task through a browser that can reach the service, the compose default having no
/// token. The browser says where a request comes from in `Sec-Fetch-Site` (same-origin, or
/// none for what the user typed); a browser too old to send it is judged by `Origin` against
/// `Host`. A client that is not a browser sends neither and is let through.
pub async fn refuse_cross_site(request: Request, next: Next) -> Response {
    // Only a bearer token: a browser adds cached Basic or Negotiate credentials by itself.
    if request.method().is_safe() || bearer_token(&request).is_some() {
        return next.run(request).await;
    }
    let fetch_site = request
        .headers()
        .get("sec-fetch-site")
        .map(HeaderValue::as_bytes);
    let same_origin = match fetch_site {
        Some(site) => site == b"same-origin" || site == b"none",
        None => sent_from_own_origin(&request).unwrap_or(true),
    };
    if same_origin {
        next.run(request).await
    } else {
        problem_response(
            StatusCode::FORBIDDEN,
            Some(
                "a browser sent this request from another site; changes are accepted from \
                 this service's own pages, or with `Authorization: Bearer <token>`"
                    .to_owned(),
            ),
        )
    }
}

/// Whether the request's `Origin` (else `Referer`) names the host it was sent to: its `Host`,
/// the `X-Forwarded-Host` a proxy that rewrites `Host` sets, or the URI's authority (HTTP/2);
/// `None` when it has neither header. A browser sends `Origin` with every POST, and a page
/// cannot set `X-Forwarded-Host` on a form or a no-cors request.
pub fn sent_from_own_origin(request: &Request) -> Option<bool> {
    let headers = request.headers();
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let source = text("origin").or_else(|| text("referer"))?;
    let Some(authority) = source
        .strip_prefix("https://")
        .or_else(|| source.strip_prefix("http://"))
        .map(|rest| rest.split('/').next().unwrap_or_default())
    else {
        return Some(false);
    };
    let forwarded = text("x-forwarded-host").and_then(|v| v.split(',').next());
    let uri = request.uri().authority().map(|a| a.as_str());
    let own = [text("host"), forwarded.map(str::trim), uri]
        .into_iter()
        .flatten()
        .any(|host| host.eq_ignore_ascii_case(authority));
    Some(own)
}

/// Wraps `router` in [`require_bearer`] when `tokens` is set, and warns loudly when it is not.
pub fn protect(router: axum::Router, tokens: Option<ApiTokens>, service: &str) -> axum::Router {
    match tokens {
        Some(tokens) => router.layer(axum::middleware::from_fn_with_state(tokens, require_bearer)),
        None => {
            tracing::warn!(
                "{service}: AUTHENTICATION IS OFF: anyone who can reach this port can use the API; \
                 set the API token variable (see --help) in any deployment"
            );
            router
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "[redacted] [redacted]");
    }

    #[test]
    fn tokens_accept_exactly_their_values() {
        let tokens = ApiTokens::new(vec![Secret::new("alpha"), Secret::new("beta")]).expect("some");
        assert!(tokens.accepts("alpha") && tokens.accepts("beta"));
        assert!(!tokens.accepts("alph") && !tokens.accepts("alphaa") && !tokens.accepts(""));
        assert!(ApiTokens::new(Vec::new()).is_none());
    }
}
