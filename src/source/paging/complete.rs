//! Whether a read is complete when its paging ends: **no silent partial read**. The body may
//! say that more rows exist than were read — a row count, a page count, a `has_more` flag,
//! or a next token that the paging in force does not follow. Then the read fails with
//! `IncompleteRead`, naming what it saw and `API_PAGINATION`, instead of passing for
//! complete. Counts are compared with the rows read over the request's pages (a window's, a
//! slice's); `API_COUNTS=ignore` is for an API whose counts mean something else.

use super::super::page::PageTail;
use super::{Paging, count};

/// Fields that count the request's rows.
pub const COUNTS: &[&str] = &["total", "total_items", "total_count"];
/// Every field the check reads (the page scanner keeps them).
pub const SIGNALS: &[&str] = &[
    "total",
    "total_items",
    "total_count",
    "total_pages",
    "has_more",
    "hasMore",
    "next_cursor",
    "nextCursor",
    "next_token",
    "scroll_param",
];
const FLAGS: &[&str] = &["has_more", "hasMore"];
const TOKENS: &[&str] = &["next_cursor", "nextCursor", "next_token", "scroll_param"];

/// What one read got through.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub rows: u64,
    pub pages: u64,
}

/// `Err` with what the last page said, when it says rows were left unread.
pub fn check(
    tally: Tally,
    last: &PageTail,
    paging: &dyn Paging,
    kind: &str,
    counts: bool,
) -> Result<(), String> {
    let read = format!(
        "{} row(s) were read over {} page(s) (API_PAGINATION={kind})",
        tally.rows, tally.pages
    );
    let fix = "configure the API's paging (API_PAGINATION: page_number, offset or cursor, with their parameters)";
    if counts {
        if let Some((name, n)) = count(last, COUNTS).filter(|(_, n)| tally.rows < *n) {
            return Err(format!(
                "the body says {name} = {n}, but {read}: {fix}, or set API_COUNTS=ignore if `{name}` is not this request's row count"
            ));
        }
        if let Some((name, n)) = count(last, &["total_pages"]).filter(|(_, n)| tally.pages < *n) {
            return Err(format!(
                "the body says {name} = {n}, but {read}: {fix}, or set API_COUNTS=ignore if `{name}` is not this request's page count"
            ));
        }
    }
    for name in FLAGS {
        let more = last.get(name).is_some_and(|v| {
            v.as_bool() == Some(true) || v.as_str().is_some_and(|s| s.eq_ignore_ascii_case("true"))
        });
        if more && !paging.follows(name) {
            return Err(format!(
                "the last page says {name} = true, but {read}: {fix}"
            ));
        }
    }
    for name in TOKENS {
        let token = last.get(name).is_some_and(|v| match v {
            serde_json::Value::String(s) => !s.is_empty(),
            serde_json::Value::Number(_) => true,
            _ => false,
        });
        if token && !paging.follows(name) {
            return Err(format!(
                "the last page has a next token `{name}` that is not followed, and {read}: {fix} (API_PAGINATION=cursor, API_CURSOR_PARAM, API_NEXT_CURSOR_FIELD={name})"
            ));
        }
    }
    Ok(())
}
