//! One spanned document tree for both spec formats, so TOML and JSON share a
//! single validator and every value keeps the byte range it came from.

use std::ops::Range;

use serde::de::{Deserializer as _, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::char_boundary;

/// Which syntax the spec text is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Toml,
    Json,
}

impl Format {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::Toml => "TOML",
            Format::Json => "JSON",
        }
    }
}

/// A value and the byte range of its text in the spec.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) value: Value,
    pub(crate) span: Range<usize>,
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    String(String),
    /// `radix` is how the number was written (TOML allows 0o/0x/0b); it lets
    /// `mode = 755` be caught as a decimal slip.
    Integer {
        value: i128,
        radix: u32,
    },
    Float(f64),
    Bool(bool),
    /// TOML's unquoted date-time, kept as its RFC 3339 text.
    Datetime(String),
    Array(Vec<Node>),
    /// Entries in document order.
    Table(Vec<Entry>),
    /// JSON `null`; a table entry holding it counts as absent.
    Null,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) key_span: Range<usize>,
    pub(crate) node: Node,
}

impl Node {
    /// The type as a user would name it, for "expected X, found Y" messages.
    pub(crate) fn type_name(&self, format: Format) -> &'static str {
        match (&self.value, format) {
            (Value::String(_), _) => "a string",
            (Value::Integer { .. }, _) => "an integer",
            (Value::Float(_), _) => "a float",
            (Value::Bool(_), _) => "a boolean",
            (Value::Datetime(_), _) => "a date-time",
            (Value::Array(_), _) => "an array",
            (Value::Table(_), Format::Toml) => "a table",
            (Value::Table(_), Format::Json) => "an object",
            (Value::Null, _) => "null",
        }
    }
}

/// A syntax error: what the parser said and where.
#[derive(Debug)]
pub(crate) struct SyntaxError {
    pub(crate) message: String,
    pub(crate) span: Range<usize>,
}

pub(crate) fn parse_toml(text: &str) -> Result<Node, SyntaxError> {
    let table = toml::de::DeTable::parse(text).map_err(|error| SyntaxError {
        message: error.message().to_owned(),
        span: error.span().unwrap_or(0..0),
    })?;
    let span = table.span();
    Ok(Node {
        value: toml_table(table.into_inner())?,
        span,
    })
}

fn toml_table(table: toml::de::DeTable<'_>) -> Result<Value, SyntaxError> {
    let mut entries = table
        .into_iter()
        .map(|(key, value)| {
            Ok(Entry {
                key_span: key.span(),
                key: key.into_inner().into_owned(),
                node: toml_node(value)?,
            })
        })
        .collect::<Result<Vec<_>, SyntaxError>>()?;
    // The parser's map is ordered by key; diagnostics follow the document.
    entries.sort_by_key(|entry| entry.key_span.start);
    Ok(Value::Table(entries))
}

fn toml_node(node: toml::Spanned<toml::de::DeValue<'_>>) -> Result<Node, SyntaxError> {
    use toml::de::DeValue;
    let span = node.span();
    let value = match node.into_inner() {
        DeValue::String(text) => Value::String(text.into_owned()),
        DeValue::Integer(integer) => Value::Integer {
            value: i128::from_str_radix(integer.as_str(), integer.radix()).map_err(|_| {
                SyntaxError {
                    message: "integer is too large".to_owned(),
                    span: span.clone(),
                }
            })?,
            radix: integer.radix(),
        },
        DeValue::Float(float) => Value::Float(float.as_str().replace('_', "").parse().map_err(
            |_| SyntaxError {
                message: "float is not a number".to_owned(),
                span: span.clone(),
            },
        )?),
        DeValue::Boolean(value) => Value::Bool(value),
        DeValue::Datetime(datetime) => Value::Datetime(datetime.to_string()),
        DeValue::Array(array) => {
            Value::Array(array.into_iter().map(toml_node).collect::<Result<_, _>>()?)
        }
        DeValue::Table(table) => toml_table(table)?,
    };
    Ok(Node { value, span })
}

/// Parses JSON into spanned nodes. serde_json reports no spans, but a
/// `RawValue` borrowed from the text is a slice of it, so its offset is the
/// value's position; each level is re-read from its raw slice.
pub(crate) fn parse_json(text: &str) -> Result<Node, SyntaxError> {
    check_json_depth(text)?;
    let root: &RawValue =
        serde_json::from_str(text).map_err(|error| json_syntax(text, 0, &error))?;
    json_node(text, root)
}

fn json_node(text: &str, raw: &RawValue) -> Result<Node, SyntaxError> {
    let slice = raw.get();
    let start = offset_in(text, slice);
    let span = start..start + slice.len();
    let fail = |error: serde_json::Error| json_syntax(text, start, &error);
    let value = match slice.as_bytes().first() {
        Some(b'{') => {
            let pairs = serde_json::Deserializer::from_str(slice)
                .deserialize_map(RawPairs)
                .map_err(fail)?;
            let mut entries = Vec::with_capacity(pairs.len());
            for (key, value) in pairs {
                let key_text = key.get();
                let key_start = offset_in(text, key_text);
                entries.push(Entry {
                    key: serde_json::from_str(key_text).map_err(fail)?,
                    key_span: key_start..key_start + key_text.len(),
                    node: json_node(text, value)?,
                });
            }
            Value::Table(entries)
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(slice).map_err(fail)?;
            Value::Array(
                items
                    .into_iter()
                    .map(|item| json_node(text, item))
                    .collect::<Result<_, _>>()?,
            )
        }
        Some(b'"') => Value::String(serde_json::from_str(slice).map_err(fail)?),
        Some(b't' | b'f') => Value::Bool(slice.starts_with('t')),
        Some(b'n') => Value::Null,
        _ => {
            let number: serde_json::Number = serde_json::from_str(slice).map_err(fail)?;
            match number
                .as_i64()
                .map(i128::from)
                .or(number.as_u64().map(i128::from))
            {
                Some(value) => Value::Integer { value, radix: 10 },
                None => Value::Float(number.as_f64().unwrap_or(f64::NAN)),
            }
        }
    };
    Ok(Node { value, span })
}

/// Where `part`, a slice borrowed from `text`, starts in it.
fn offset_in(text: &str, part: &str) -> usize {
    part.as_ptr() as usize - text.as_ptr() as usize
}

/// Turns serde_json's 1-based line and column, counted within the slice
/// starting at `base`, into a byte range in the whole text.
/// How deeply JSON arrays and objects may nest: serde_json's own limit, and far more
/// than any spec needs (its deepest key is three levels down).
const MAX_JSON_DEPTH: usize = 128;

/// Refuses JSON nested deeper than [`MAX_JSON_DEPTH`] before it is parsed: [`json_node`]
/// recurses once per level, so a document nested 100,000 levels deep would otherwise
/// overflow the stack (TOML's parser has a limit of its own). Brackets inside strings
/// do not count; malformed text is left for the parser to report.
fn check_json_depth(text: &str) -> Result<(), SyntaxError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (offset, byte) in text.bytes().enumerate() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(SyntaxError {
                        message: format!(
                            "arrays and objects nest more than {MAX_JSON_DEPTH} levels deep here; \
                             a spec needs a few, so look for brackets that are never closed"
                        ),
                        span: offset..offset + 1,
                    });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn json_syntax(text: &str, base: usize, error: &serde_json::Error) -> SyntaxError {
    let local = &text[base..];
    let line_start: usize = local
        .split_inclusive('\n')
        .take(error.line().saturating_sub(1))
        .map(str::len)
        .sum();
    // serde_json's column counts the bytes read on the line, the bad one included.
    let offset = char_boundary(text, base + line_start + error.column().saturating_sub(1));
    // serde_json's message ends with " at line L column C"; the position is
    // reported separately, so drop it.
    let message = error.to_string();
    let message = match message.rfind(" at line ") {
        Some(cut) => message[..cut].to_owned(),
        None => message,
    };
    SyntaxError {
        message,
        span: offset..offset,
    }
}

/// Collects an object's members as raw key and value slices.
struct RawPairs;

impl<'de> Visitor<'de> for RawPairs {
    type Value = Vec<(&'de RawValue, &'de RawValue)>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut pairs = Vec::new();
        while let Some(pair) = map.next_entry()? {
            pairs.push(pair);
        }
        Ok(pairs)
    }
}
