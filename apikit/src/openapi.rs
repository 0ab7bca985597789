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

/// Declares a group of problem answers: a type that operations name in their OpenAPI
/// `responses(...)` in place of a line per answer.
///
/// ```ignore
/// apikit::problem_answers!(
///     /// 400 and 404 for an operation on one task.
///     pub UnknownTask: 400 "Id not a positive integer", 404 "No such task"
/// );
/// ```
#[macro_export]
macro_rules! problem_answers {
    ($(#[$doc:meta])* $vis:vis $name:ident: $($status:literal $description:literal),+ $(,)?) => {
        $(#[$doc])*
        $vis struct $name;

        impl ::utoipa::IntoResponses for $name {
            fn responses() -> ::std::collections::BTreeMap<
                String,
                ::utoipa::openapi::RefOr<::utoipa::openapi::Response>,
            > {
                $crate::openapi::problems(&[$(($status, $description)),+])
            }
        }
    };
}

crate::problem_answers!(
    /// What the body extractor refuses before the handler runs.
    pub BodyRefused: 413 "Body too large", 415 "Not JSON"
);

crate::problem_answers!(
    /// 503 when the service's database cannot be reached.
    pub DatabaseDown: 503 "Database unavailable"
);
