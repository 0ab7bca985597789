//! JSON objects only, where serde's derive would also read a struct from an array.
//!
//! A derived `Deserialize` for a struct accepts a JSON array of its fields in order as well as
//! an object, so `["noop"]` would be a create request and `[null, null]` a queue patch. Every
//! request body, and every struct inside one, is read through [`object`] (a field's
//! `deserialize_with`) or [`Object`] (a body), which take an object and nothing else.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// `T` read from a JSON object; anything else is an error naming what was expected.
pub fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<T, D::Error> {
    deserializer.deserialize_map(ObjectVisitor(PhantomData))
}

/// An optional `T` read by [`object`]: `null` (or, with `#[serde(default)]`, no field) is `None`.
pub fn optional_object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    Option::<Object<T>>::deserialize(deserializer).map(|o| o.map(|Object(value)| value))
}

/// A `T` that is read from a JSON object only, for a request body or the items of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        object(deserializer).map(Object)
    }
}

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CreateTask;

    #[test]
    fn an_object_is_read_and_an_array_of_the_fields_is_refused() {
        let read: Object<CreateTask> =
            serde_json::from_str(r#"{"type": "noop"}"#).expect("an object");
        assert_eq!(read.0.task_type, "noop");
        let refused = serde_json::from_str::<Object<CreateTask>>(r#"["noop"]"#)
            .expect_err("an array")
            .to_string();
        assert!(refused.contains("expected a JSON object"), "{refused}");
        let list = serde_json::from_str::<Vec<Object<CreateTask>>>(r#"[["noop"]]"#);
        assert!(list.is_err(), "an item that is an array");
    }
}
