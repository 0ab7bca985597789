//! What the CLI prints: the API's JSON (`--json`, for scripts) or a table (for people).

use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{ContentArrangement, Table};
use serde::Serialize;

/// Prints `value` as pretty JSON when `json`, else the table `table` makes of it.
pub fn print<T: Serialize>(json: bool, value: &T, table: impl FnOnce(&T) -> Table) {
    if json {
        match serde_json::to_string_pretty(value) {
            Ok(text) => println!("{text}"),
            // Our own wire types always serialize; say so if one day one does not.
            Err(e) => eprintln!("dtp: the answer could not be printed as JSON: {e}"),
        }
    } else {
        println!("{}", table(value));
    }
}

/// A table with `header`, laid out for the terminal.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    table
}

/// A two-column table of `(field, value)` rows, for one record.
pub fn record(rows: Vec<(&str, String)>) -> Table {
    let mut table = table(&["field", "value"]);
    for (field, value) in rows {
        table.add_row(vec![field.to_owned(), value]);
    }
    table
}

/// `value` or `-`.
pub fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// `text` cut to `most` characters (an ellipsis says so).
pub fn clip(text: &str, most: usize) -> String {
    let first_line = text.lines().next().unwrap_or_default();
    if first_line.chars().count() <= most && first_line.len() == text.len() {
        return text.to_owned();
    }
    let kept: String = first_line.chars().take(most).collect();
    format!("{kept}…")
}
