//! `http`: POSTs `payload.body` to `payload.url`.
//!
//! 2xx is success (the result holds the status and the first 4 KiB of the response body: JSON
//! when the whole body is JSON, else text), 5xx, 408, 429, timeouts
//! and connection errors are retryable, any other status is a permanent failure. Redirects are not
//! followed: a redirect is an answer, not a success.
//!
//! Only http and https, and, unless the operator allows it, no destination that is or resolves
//! to a loopback, private, link-local or otherwise internal address: a task's payload must not be
//! a way into the network DTP runs in (SSRF). Names are checked by the client's own resolver, so
//! the addresses checked are the addresses connected to: a name cannot pass with one answer and
//! connect with another (DNS rebinding).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::DtpMetrics;
use apikit::trace::{TraceContext, TRACEPARENT};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde_json::{json, Value};

use super::{BoxFuture, Handler, HandlerError, TaskContext};

/// The `http` handler with its own client.
pub struct HttpHandler {
    client: reqwest::Client,
    allow_private: bool,
    metrics: DtpMetrics,
}

/// Per-request timeout of the `http` handler.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Connect timeout of the `http` handler.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Response bodies are read up to this many bytes, kept in the result (or the error); the rest
/// is never read.
const MAX_RESULT_BODY: usize = 4096;

impl HttpHandler {
    /// A handler with a client that follows no redirects and times out; `allow_private` lets it
    /// call internal addresses (for tests and trusted networks).
    pub fn new(allow_private: bool) -> Self {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT);
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnlyResolver));
        }
        let client = builder.build().unwrap_or_else(|_| reqwest::Client::new());
        HttpHandler {
            client,
            allow_private,
            metrics: DtpMetrics::default(),
        }
    }

    /// This handler, counting its requests into `metrics`.
    pub fn with_metrics(self, metrics: DtpMetrics) -> Self {
        HttpHandler { metrics, ..self }
    }

    async fn post(&self, payload: Value, trace: TraceContext) -> Result<Value, HandlerError> {
        let url = parse_url(&payload)?;
        if !self.allow_private {
            refuse_internal_ip(&url)?;
        }
        let body = payload.get("body").cloned().unwrap_or(Value::Null);
        let sent = self
            .client
            .post(url)
            .header(TRACEPARENT, trace.to_string())
            .json(&body)
            .send()
            .await;
        self.metrics
            .http_target_answered(sent.as_ref().ok().map(|r| r.status().as_u16()));
        let response = sent.map_err(|e| match internal_address_in(&e) {
            Some(refused) => HandlerError::Permanent(refused.to_string()),
            None => HandlerError::Retryable(format!("request failed: {e}")),
        })?;
        let status = response.status();
        // Only what is kept is read: a target must not decide how much memory a worker uses.
        let body = apikit::read_at_most(response, MAX_RESULT_BODY)
            .await
            .map_err(|e| HandlerError::Retryable(format!("reading the response failed: {e}")))?;
        let excerpt = body.text();
        if status.is_success() {
            let body = match body.complete {
                true => serde_json::from_slice(&body.bytes).unwrap_or(Value::String(excerpt)),
                false => Value::String(excerpt),
            };
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
    /// Internal addresses refused.
    fn default() -> Self {
        Self::new(false)
    }
}

/// A destination the handler will not call.
#[derive(Debug, thiserror::Error)]
#[error(
    "payload.url {host} is or resolves to the internal address {ip}; \
     set DTP_HTTP_ALLOW_PRIVATE=true to allow it"
)]
struct InternalAddress {
    host: String,
    ip: IpAddr,
}

/// Fails permanently when `url`'s host is an internal IP address. Names never reach the
/// resolver when the host is an address, so this is the only check they get.
fn refuse_internal_ip(url: &reqwest::Url) -> Result<(), HandlerError> {
    let host = url
        .host_str()
        .ok_or_else(|| HandlerError::Permanent("payload.url has no host".into()))?;
    // The URL parser has already normalised every IPv4 spelling (0x7f.1, 2130706433…).
    let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    else {
        return Ok(());
    };
    if is_internal(ip) {
        let host = host.to_owned();
        return Err(HandlerError::Permanent(
            InternalAddress { host, ip }.to_string(),
        ));
    }
    Ok(())
}

/// The client's resolver when internal addresses are refused: a name with any internal address
/// fails to resolve, so the request never connects.
struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // The port is the URL's: the connector sets it on each address.
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(ip) = addresses
                .iter()
                .map(SocketAddr::ip)
                .find(|ip| is_internal(*ip))
            {
                return Err(InternalAddress { host, ip }.into());
            }
            let addresses: Addrs = Box::new(addresses.into_iter());
            Ok(addresses)
        })
    }
}

/// The resolver's refusal, if that is why the request failed.
fn internal_address_in(error: &reqwest::Error) -> Option<&InternalAddress> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(refused) = current.downcast_ref::<InternalAddress>() {
            return Some(refused);
        }
        cause = current.source();
    }
    None
}

/// Loopback, private, link-local, shared (CGNAT), unspecified, broadcast, documentation and
/// unique-local addresses, including IPv4 written as IPv6.
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_internal_v4(v4),
            None => {
                let first = v6.segments()[0];
                v6.is_loopback()
                    || v6.is_unspecified()
                    || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                    || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
            }
        },
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || (a == 100 && (64..128).contains(&b)) // shared address space 100.64.0.0/10
        || a == 0
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
        Box::pin(self.post(ctx.payload, ctx.trace))
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

    #[test]
    fn internal_addresses_are_recognised() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = internal.parse().expect("ip");
            assert!(is_internal(ip), "{internal} should be internal");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "172.32.0.1"] {
            let ip: IpAddr = public.parse().expect("ip");
            assert!(!is_internal(ip), "{public} should be public");
        }
    }

    #[tokio::test]
    async fn the_resolver_that_connects_refuses_names_with_internal_addresses() {
        let name: Name = "localhost".parse().expect("name");
        let refused = PublicOnlyResolver.resolve(name).await;
        assert!(
            matches!(&refused, Err(e) if e.downcast_ref::<InternalAddress>().is_some()),
            "{:?}",
            refused.map(|addresses| addresses.collect::<Vec<_>>())
        );
    }

    /// Asserts that a handler refusing internal addresses fails each of `urls` permanently,
    /// saying why.
    async fn assert_refused_as_internal(urls: &[&str]) {
        let refusing = HttpHandler::new(false);
        for url in urls {
            let refused = refusing
                .post(json!({ "url": url }), TraceContext::root())
                .await;
            assert!(
                matches!(&refused, Err(HandlerError::Permanent(m)) if m.contains("internal")),
                "{url}: {refused:?}"
            );
        }
    }

    #[tokio::test]
    async fn other_spellings_of_internal_addresses_are_refused() {
        assert_refused_as_internal(&[
            "http://0x7f.1:1/x",
            "http://2130706433:1/x",
            "http://[::ffff:7f00:1]:1/x",
        ])
        .await;
    }

    #[tokio::test]
    async fn calls_to_internal_addresses_are_refused_permanently_unless_allowed() {
        assert_refused_as_internal(&[
            "http://127.0.0.1:1/x",
            "http://localhost:1/x",
            "http://[::1]:1/x",
            "http://169.254.169.254/latest",
        ])
        .await;
        // Allowed: the request is made (and fails to connect, retryably).
        let allowing = HttpHandler::new(true);
        let attempted = allowing
            .post(
                json!({ "url": "http://127.0.0.1:1/x" }),
                TraceContext::root(),
            )
            .await;
        assert!(
            matches!(attempted, Err(HandlerError::Retryable(_))),
            "{attempted:?}"
        );
    }
}
