//! Problem answers that many operations share, for their OpenAPI `responses(...)`: each group
//! is written once here and named in the operations that can answer it.

use std::collections::BTreeMap;

use common::problem::PROBLEM_CONTENT_TYPE;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};

/// The OpenAPI responses for `answers`, each a status and its description, all problem JSON.
pub fn problems(answers: &[(u16, &str)]) -> BTreeMap<String, RefOr<Response>> {
    let problem = || {
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build()
    };
    answers
        .iter()
        .map(|(status, description)| {
            let response = ResponseBuilder::new()
                .description(*description)
                .content(PROBLEM_CONTENT_TYPE, problem())
                .build();
            (status.to_string(), RefOr::T(response))
        })
        .collect()
}

/// 400 for a path id that is not a positive integer.
pub struct BadId;

impl utoipa::IntoResponses for BadId {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        problems(&[(400, "Id not a positive integer")])
    }
}

/// What the body extractor refuses before the handler runs: 413 and 415.
pub struct BodyRefused;

impl utoipa::IntoResponses for BodyRefused {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        problems(&[(413, "Body too large"), (415, "Not JSON")])
    }
}

/// 503 when the service's database cannot be reached.
pub struct DatabaseDown;

impl utoipa::IntoResponses for DatabaseDown {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        problems(&[(503, "Database unavailable")])
    }
}
