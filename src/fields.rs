//! Where a record keeps its key and its time: `ID_FIELD` and `CURSOR_FIELD` (a field name, or a
//! dotted path into nested objects: `meta.id`) and `CURSOR_FORMAT` (how the time is written;
//! the formats themselves are [`crate::window`]'s). The defaults — `id`, `updatedAt`, RFC
//! 3339 — are the seed's shape. The record scanner ([`crate::json`]) finds both values in its
//! one pass over the record; nothing parses a record twice.

use std::sync::{Arc, LazyLock};

use crate::error::{Error, Result};
use crate::window::CursorFormat;

/// A field name or a dotted path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    text: String,
    parts: Vec<String>,
}

impl FieldPath {
    /// `text` as `var` gives it: non-empty names separated by dots.
    pub fn parse(var: &str, text: &str) -> Result<FieldPath> {
        let parts: Vec<String> = text.split('.').map(str::to_string).collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || p.contains(['"', '\\']) || p.chars().any(char::is_control))
        {
            return Err(Error::config(
                var,
                format!("expected a field name or a dotted path such as meta.id, got {text:?}"),
            ));
        }
        Ok(FieldPath {
            text: text.to_string(),
            parts,
        })
    }

    fn of(text: &str) -> FieldPath {
        FieldPath {
            text: text.to_string(),
            parts: vec![text.to_string()],
        }
    }

    /// The path as configured (`meta.id`), for messages.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The top-level key.
    #[inline]
    pub fn first(&self) -> &[u8] {
        self.parts[0].as_bytes()
    }

    /// The keys below the top level (empty for a plain field).
    #[inline]
    pub fn rest(&self) -> &[String] {
        &self.parts[1..]
    }
}

/// A record's key and time, and how the time is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    pub id: FieldPath,
    pub cursor: FieldPath,
    pub format: CursorFormat,
    /// Lines carry the key as [`ID_COLUMN`] (a string) and the time as [`CURSOR_COLUMN`]
    /// (RFC 3339 UTC) beside `_synced_at`: with any shape but the seed's, so that one query
    /// (a stream's Glue table, its `latest_by_id`) finds the latest row per key whatever the
    /// API's fields and format.
    pub cursor_column: bool,
}

/// The normalised time written beside `_synced_at` when the shape is not the seed's.
pub const CURSOR_COLUMN: &str = "_cursor";

/// The record's key, as a string, written beside `_synced_at` when the shape is not the
/// seed's (named apart from `_id`, which many APIs use for their own key).
pub const ID_COLUMN: &str = "_record_id";

static DEFAULT: LazyLock<Arc<Fields>> = LazyLock::new(|| {
    Arc::new(Fields {
        id: FieldPath::of("id"),
        cursor: FieldPath::of("updatedAt"),
        format: CursorFormat::Rfc3339,
        cursor_column: false,
    })
});

impl Default for Fields {
    fn default() -> Self {
        Fields::shared_default().as_ref().clone()
    }
}

impl Fields {
    /// `id`, `updatedAt`, RFC 3339: the seed's shape (shared, not rebuilt).
    pub fn shared_default() -> Arc<Fields> {
        DEFAULT.clone()
    }

    /// From `ID_FIELD`, `CURSOR_FIELD`, `CURSOR_FORMAT` (each defaulting as above).
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Fields> {
        let path = |var: &str, default: &str| match get(var) {
            None => Ok(FieldPath::of(default)),
            Some(v) => FieldPath::parse(var, &v),
        };
        let format = match get("CURSOR_FORMAT") {
            None => CursorFormat::Rfc3339,
            Some(v) => CursorFormat::parse_name(&v).ok_or_else(|| {
                Error::config(
                    "CURSOR_FORMAT",
                    format!("expected rfc3339, epoch_s or epoch_ms, got {v:?}"),
                )
            })?,
        };
        let mut fields = Fields {
            id: path("ID_FIELD", "id")?,
            cursor: path("CURSOR_FIELD", "updatedAt")?,
            format,
            cursor_column: false,
        };
        fields.cursor_column = !fields.is_default();
        if fields.id == fields.cursor {
            return Err(Error::config(
                "CURSOR_FIELD",
                format!(
                    "names the same field as ID_FIELD ({:?})",
                    fields.id.as_str()
                ),
            ));
        }
        for reserved in [
            b"_synced_at".as_slice(),
            CURSOR_COLUMN.as_bytes(),
            ID_COLUMN.as_bytes(),
        ] {
            if fields.id.first() == reserved || fields.cursor.first() == reserved {
                return Err(Error::config(
                    "CURSOR_FIELD",
                    format!(
                        "`{}` is a field replay-sync adds: it cannot be the record's id or time",
                        String::from_utf8_lossy(reserved)
                    ),
                ));
            }
        }
        Ok(fields)
    }

    /// Whether these are the seed's defaults.
    pub fn is_default(&self) -> bool {
        *self == *DEFAULT.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<Fields> {
        Fields::from_lookup(&|k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn paths_and_formats_are_read_and_checked() {
        assert!(with(&[]).unwrap().is_default());
        let f = with(&[
            ("ID_FIELD", "company_id"),
            ("CURSOR_FIELD", "meta.updated_at"),
            ("CURSOR_FORMAT", "epoch_ms"),
        ])
        .unwrap();
        assert_eq!(f.id.first(), b"company_id");
        assert_eq!(f.cursor.first(), b"meta");
        assert_eq!(f.cursor.rest(), ["updated_at"]);
        assert_eq!(f.format, CursorFormat::EpochMs);
        assert!(!f.is_default());
        for (vars, var) in [
            (vec![("ID_FIELD", "meta..id")], "ID_FIELD"),
            (vec![("CURSOR_FIELD", ".x")], "CURSOR_FIELD"),
            (vec![("CURSOR_FORMAT", "unix")], "CURSOR_FORMAT"),
            (
                vec![("ID_FIELD", "t"), ("CURSOR_FIELD", "t")],
                "CURSOR_FIELD",
            ),
        ] {
            let e = with(&vars).unwrap_err();
            assert!(e.to_string().contains(var), "{e}");
        }
    }
}
