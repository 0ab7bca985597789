//! Values as PostgreSQL can store them. `text` and `jsonb` refuse the NUL character (SQLSTATE
//! 22P05 and 22021), and a handler's result or error may hold one (an `http` target's body, a
//! message quoting binary input): one such value in a batched write would fail the whole batch.
//! Every result and error passes through here on its way to the table.

use std::borrow::Cow;

use serde_json::Value;

/// What a NUL becomes: visible, and plainly not what the handler produced.
const REPLACEMENT: &str = "\u{fffd}";

/// Longest error message stored, in bytes; longer ones are cut at a character boundary. An
/// error is for people reading `lastError`, and a handler may quote a whole response in it.
pub const MAX_ERROR_BYTES: usize = 8192;

/// `value` with every NUL in its strings and keys replaced; borrowed when there is none (the
/// common case costs one walk, no copy).
pub fn storable_json(value: &Value) -> Cow<'_, Value> {
    if holds_nul(value) {
        Cow::Owned(without_nul(value))
    } else {
        Cow::Borrowed(value)
    }
}

/// `error` with every NUL replaced, cut to [`MAX_ERROR_BYTES`].
pub fn storable_error(error: &str) -> String {
    let mut cut = error.len().min(MAX_ERROR_BYTES);
    while !error.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut stored = error[..cut].replace('\0', REPLACEMENT);
    if cut < error.len() {
        stored.push('…');
    }
    stored
}

fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

fn without_nul(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(s.replace('\0', REPLACEMENT)),
        Value::Array(items) => Value::Array(items.iter().map(without_nul).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.replace('\0', REPLACEMENT), without_nul(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nul_in_strings_and_keys_is_replaced_and_clean_values_are_borrowed() {
        let dirty = json!({"a\u{0}": ["x\u{0}y", 1, null], "b": {"c": "\u{0}"}});
        let clean = json!({"a\u{fffd}": ["x\u{fffd}y", 1, null], "b": {"c": "\u{fffd}"}});

        assert_eq!(storable_json(&dirty).into_owned(), clean);
        assert!(matches!(storable_json(&clean), Cow::Borrowed(_)));
    }

    #[test]
    fn errors_lose_their_nul_and_are_cut_at_a_character_boundary() {
        assert_eq!(storable_error("a\u{0}b"), "a\u{fffd}b");
        let long = "é".repeat(MAX_ERROR_BYTES);
        let stored = storable_error(&long);
        assert!(stored.len() <= MAX_ERROR_BYTES + '…'.len_utf8());
        assert!(stored.ends_with('…'));
    }
}
