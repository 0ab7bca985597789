//! Problem answers that many operations share, for their OpenAPI `responses(...)`: each group
//! is written once here and named in the operations that can answer it.

use common::problem::Problem;

/// 400 for a path id that is not a positive integer.
#[derive(utoipa::IntoResponses)]
pub enum BadId {
    #[response(
        status = 400,
        description = "Id not a positive integer",
        content_type = "application/problem+json"
    )]
    NotAnId(Problem),
}

/// What the body extractor refuses before the handler runs.
#[derive(utoipa::IntoResponses)]
pub enum BodyRefused {
    #[response(
        status = 413,
        description = "Body too large",
        content_type = "application/problem+json"
    )]
    TooLarge(Problem),
    #[response(
        status = 415,
        description = "Not JSON",
        content_type = "application/problem+json"
    )]
    NotJson(Problem),
}

/// 503 when the service's database cannot be reached.
#[derive(utoipa::IntoResponses)]
pub enum DatabaseDown {
    #[response(
        status = 503,
        description = "Database unavailable",
        content_type = "application/problem+json"
    )]
    Unavailable(Problem),
}
