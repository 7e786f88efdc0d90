//! How agentctl prints what a service answered: an aligned table for
//! people by default, or the whole answer as JSON (`--output json`) for
//! scripts. A subcommand builds the JSON once and names the columns a
//! table shows; both forms come from the same value.

use serde_json::Value;

/// `--output`: the form of what a subcommand prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// The whole answer as JSON (field names as in the proto contracts).
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct OutputArgs {
    /// How to print the answer.
    #[arg(
        long,
        short = 'o',
        value_enum,
        default_value = "table",
        env = "AGENTCTL_OUTPUT",
        global = true
    )]
    pub output: Format,
}

/// One column of a table: its header and what it shows of an item.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    header: &'static str,
    shows: Shows,
}

#[derive(Debug, Clone, Copy)]
enum Shows {
    Field(&'static str),
    /// A proto enum's name without its prefix (`AGENT_STATUS_`), lowercase.
    Enum(&'static str, &'static str),
    /// Something drawn from the whole item.
    Drawn(fn(&Value) -> String),
}

impl Column {
    /// The JSON field `key`.
    pub const fn new(header: &'static str, key: &'static str) -> Self {
        Self {
            header,
            shows: Shows::Field(key),
        }
    }

    /// A proto enum's name, shown without `prefix`, in lowercase
    /// (`AGENT_STATUS_ACTIVE` reads `active`).
    pub const fn enumeration(
        header: &'static str,
        key: &'static str,
        prefix: &'static str,
    ) -> Self {
        Self {
            header,
            shows: Shows::Enum(key, prefix),
        }
    }

    /// What `draw` makes of the whole item.
    pub const fn drawn(header: &'static str, draw: fn(&Value) -> String) -> Self {
        Self {
            header,
            shows: Shows::Drawn(draw),
        }
    }

    pub fn header(&self) -> &'static str {
        self.header
    }

    fn cell(&self, item: &Value) -> String {
        match self.shows {
            Shows::Field(key) => cell(item.get(key).unwrap_or(&Value::Null)),
            Shows::Enum(key, prefix) => {
                let name = item.get(key).and_then(Value::as_str).unwrap_or_default();
                enum_name(name, prefix)
            }
            Shows::Drawn(draw) => draw(item),
        }
    }
}

/// A proto enum name for people: `AGENT_STATUS_ACTIVE` without `prefix`
/// reads `active`.
pub fn enum_name(name: &str, prefix: &str) -> String {
    if name.is_empty() {
        return "-".to_owned();
    }
    name.strip_prefix(prefix).unwrap_or(name).to_lowercase()
}

/// A JSON value as a table cell: lists joined with commas, maps as
/// `key=value`, nothing as `-`.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(text) if text.is_empty() => "-".to_owned(),
        Value::String(text) => text.clone(),
        Value::Array(items) if items.is_empty() => "-".to_owned(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Object(map) if map.is_empty() => "-".to_owned(),
        Value::Object(map) => map
            .iter()
            .map(|(key, value)| format!("{key}={}", cell(value)))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

impl Format {
    /// One object: `FIELD  value` lines for a table, the object as JSON.
    pub fn one(self, item: &Value, columns: &[Column]) -> String {
        match self {
            Self::Json => json(item),
            Self::Table => aligned(
                columns
                    .iter()
                    .map(|column| vec![column.header.to_owned(), column.cell(item)]),
            ),
        }
    }

    /// A list: a header row and a row per item, or a JSON array; an empty
    /// list is said in words in a table.
    pub fn list(self, items: &[Value], columns: &[Column], none: &str) -> String {
        match self {
            Self::Json => json(&Value::Array(items.to_vec())),
            Self::Table if items.is_empty() => format!("{none}\n"),
            Self::Table => aligned(
                std::iter::once(columns.iter().map(|c| c.header.to_owned()).collect()).chain(
                    items
                        .iter()
                        .map(|item| columns.iter().map(|column| column.cell(item)).collect()),
                ),
            ),
        }
    }

    /// One item of a stream: its cells on one line (not aligned: later
    /// items are not known yet), or the item as one line of JSON.
    pub fn line(self, item: &Value, columns: &[Column]) -> String {
        match self {
            Self::Json => format!("{item}\n"),
            Self::Table => {
                let cells: Vec<String> = columns.iter().map(|column| column.cell(item)).collect();
                format!("{}\n", cells.join("  "))
            }
        }
    }

    /// A sentence for people, or `value` for scripts (e.g. after a delete).
    pub fn said(self, sentence: &str, value: &Value) -> String {
        match self {
            Self::Json => json(value),
            Self::Table => format!("{sentence}\n"),
        }
    }
}

fn json(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    text.push('\n');
    text
}

/// Rows padded into columns (two spaces apart, the last not padded).
fn aligned(rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = rows.collect();
    let mut widths: Vec<usize> = Vec::new();
    for row in &rows {
        for (index, text) in row.iter().enumerate() {
            let width = text.chars().count();
            match widths.get_mut(index) {
                Some(known) => *known = (*known).max(width),
                None => widths.push(width),
            }
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (index, text) in row.iter().enumerate() {
            if index + 1 == row.len() {
                line.push_str(text);
            } else {
                let width = widths.get(index).copied().unwrap_or(0);
                line.push_str(&format!("{text:<width$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A proto timestamp as RFC 3339 UTC, or null when unset.
pub fn time(timestamp: Option<&prost_types::Timestamp>) -> Value {
    timestamp
        .and_then(|ts| {
            chrono::DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).unwrap_or(0))
        })
        .map_or(Value::Null, |time| {
            Value::String(time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        })
}

/// Seconds since the Unix epoch.
pub fn now() -> anyhow::Result<i64> {
    let elapsed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| anyhow::anyhow!("the clock is before 1970"))?;
    Ok(i64::try_from(elapsed.as_secs())?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const COLUMNS: [Column; 3] = [
        Column::new("ID", "id"),
        Column::enumeration("STATUS", "status", "AGENT_STATUS_"),
        Column::new("SCOPES", "scopes"),
    ];

    #[test]
    fn a_list_is_a_table_with_aligned_columns_and_readable_cells() {
        let items = [
            json!({"id": "agt_1", "status": "AGENT_STATUS_ACTIVE", "scopes": ["a", "b"]}),
            json!({"id": "agt_22", "status": "AGENT_STATUS_SUSPENDED", "scopes": []}),
        ];
        assert_eq!(
            Format::Table.list(&items, &COLUMNS, "no agents"),
            "ID      STATUS     SCOPES\n\
             agt_1   active     a,b\n\
             agt_22  suspended  -\n"
        );
        assert_eq!(
            Format::Table.list(&[], &COLUMNS, "no agents"),
            "no agents\n"
        );
        let json: Value = serde_json::from_str(&Format::Json.list(&items, &COLUMNS, "")).unwrap();
        assert_eq!(json, Value::Array(items.to_vec()));
    }

    #[test]
    fn one_object_is_a_field_per_line() {
        let item = json!({"id": "agt_1", "status": "AGENT_STATUS_REVOKED", "scopes": null});
        assert_eq!(
            Format::Table.one(&item, &COLUMNS),
            "ID      agt_1\nSTATUS  revoked\nSCOPES  -\n"
        );
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let ts = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        };
        assert_eq!(time(Some(&ts)), json!("2023-11-14T22:13:20Z"));
        assert_eq!(time(None), Value::Null);
    }
}
