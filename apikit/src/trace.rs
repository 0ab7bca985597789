//! W3C Trace Context (`traceparent`), carried through both services: TaskPilot accepts it and
//! passes it to DTP, DTP stores it with the task, the worker's span for the attempt continues
//! it and the `http` handler sends it on.
//!
//! Every request gets a span context of its own: a child of the caller's `traceparent` when it
//! sent a valid one, else the root of a new trace. Its trace id is in the request's log span,
//! so one id finds a request's lines in every service. When spans are exported
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, see `crate::telemetry`), the exported span continues the
//! same trace, and what is sent on names the exported span as the parent.

use std::fmt;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

/// The header.
pub const TRACEPARENT: &str = "traceparent";

/// A span's place in a trace: the trace, the span, and whether the trace is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// The trace: 16 bytes, never all zero.
    pub trace_id: u128,
    /// The span: 8 bytes, never all zero.
    pub span_id: u64,
    /// The trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceContext {
    /// Reads a `traceparent` value. `None` for anything the W3C recommendation says to ignore:
    /// version `ff`, upper-case or short hex, an all-zero id, or a version-00 value with more
    /// than its four fields (a later version may add fields after them).
    pub fn parse(value: &str) -> Option<TraceContext> {
        let mut fields = value.split('-');
        let version = fields.next().filter(|v| is_lower_hex(v, 2) && *v != "ff")?;
        let trace_id = fields.next().filter(|t| is_lower_hex(t, 32))?;
        let span_id = fields.next().filter(|s| is_lower_hex(s, 16))?;
        let flags = fields.next().filter(|f| is_lower_hex(f, 2))?;
        if version == "00" && fields.next().is_some() {
            return None;
        }
        let context = TraceContext {
            trace_id: u128::from_str_radix(trace_id, 16).ok()?,
            span_id: u64::from_str_radix(span_id, 16).ok()?,
            flags: u8::from_str_radix(flags, 16).ok()?,
        };
        (context.trace_id != 0 && context.span_id != 0).then_some(context)
    }

    /// The first span of a new, sampled trace.
    pub fn root() -> TraceContext {
        TraceContext {
            trace_id: nonzero(rand::random()),
            span_id: nonzero(rand::random()),
            flags: 1,
        }
    }

    /// A new span in this trace, under this one. Of the flags only "sampled" is passed on:
    /// version 00 of the recommendation defines no other, and says to clear unknown ones.
    pub fn child(&self) -> TraceContext {
        TraceContext {
            span_id: nonzero(rand::random()),
            flags: self.flags & 1,
            ..*self
        }
    }

    /// The trace id as 32 hex digits, as log lines and trace viewers show it.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

/// The `traceparent` value naming this span as the parent.
impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

fn is_lower_hex(field: &str, len: usize) -> bool {
    field.len() == len
        && field
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn nonzero<T: Default + PartialEq + From<u8>>(value: T) -> T {
    if value == T::default() {
        T::from(1)
    } else {
        value
    }
}

/// The request's span context when someone follows its trace: the caller sent a `traceparent`,
/// or spans are exported. What is kept for later (DTP stores it with a task) is only such a
/// context: a trace nobody follows would cost every task its bytes for nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowedTrace(pub Option<TraceContext>);

impl<S: Send + Sync> FromRequestParts<S> for FollowedTrace {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<FollowedTrace>()
            .copied()
            .unwrap_or(FollowedTrace(None)))
    }
}

/// The current request's span context, to pass on to the services it calls.
impl<S: Send + Sync> FromRequestParts<S> for TraceContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Every router of ours has the middleware; a handler mounted elsewhere starts a trace.
        Ok(parts
            .extensions
            .get::<TraceContext>()
            .copied()
            .unwrap_or_else(TraceContext::root))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_reads_and_prints_back_the_same() {
        let context = TraceContext::parse(EXAMPLE).expect("valid");
        assert_eq!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.span_id, 0x00f0_67aa_0ba9_02b7);
        assert_eq!(context.flags, 1);
        assert_eq!(context.to_string(), EXAMPLE);
    }

    #[test]
    fn what_the_recommendation_says_to_ignore_is_not_read() {
        for invalid in [
            "",
            "00",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(invalid), None, "{invalid:?}");
        }
        let later_version = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more";
        assert!(TraceContext::parse(later_version).is_some());
    }

    #[test]
    fn a_child_keeps_the_trace_and_flags_and_gets_a_new_span() {
        let parent = TraceContext::parse(EXAMPLE).expect("valid");
        let no_export = tracing::Span::none();
        let child = crate::telemetry::continue_trace(&no_export, Some(parent));
        assert_eq!(
            (child.trace_id, child.flags),
            (parent.trace_id, parent.flags)
        );
        assert_ne!(child.span_id, parent.span_id);
        let root = crate::telemetry::continue_trace(&no_export, TraceContext::parse("garbage"));
        assert_ne!(root.trace_id, parent.trace_id);
        assert_eq!(TraceContext::parse(&root.to_string()), Some(root));
    }
}
