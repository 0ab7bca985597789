//! A task's state as the `tasks.status` column holds it: text, constrained by the schema to the
//! five names, and decoded strictly (see `apikit::db::decode_known`), never with a fallback.

use common::TaskStatus;
use sqlx::postgres::{PgTypeInfo, PgValueRef};
use sqlx::Postgres;

/// A `status` column read from the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredStatus(pub TaskStatus);

impl sqlx::Type<Postgres> for StoredStatus {
    fn type_info() -> PgTypeInfo {
        <&str as sqlx::Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <&str as sqlx::Type<Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for StoredStatus {
    fn decode(value: PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        apikit::db::decode_known(value, &TaskStatus::ALL, TaskStatus::as_str).map(StoredStatus)
    }
}
