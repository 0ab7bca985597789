//! RFC 9457 problem details: the body of every error answer of both services.

use serde::{Deserialize, Serialize};

/// The media type every error answer carries.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// An RFC 9457 problem body, e.g.
/// `{"type": "about:blank", "title": "Conflict", "status": 409, "detail": "Cannot cancel task in state SUCCEEDED"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// A URI naming the problem class; `about:blank` when the status says it all.
    #[serde(rename = "type", default = "about_blank")]
    pub problem_type: String,
    /// The status code's reason phrase.
    pub title: String,
    /// The HTTP status code, repeated in the body.
    pub status: u16,
    /// What went wrong for this request, in words a client can show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

fn about_blank() -> String {
    "about:blank".to_owned()
}
