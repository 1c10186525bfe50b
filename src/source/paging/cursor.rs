//! `API_PAGINATION=cursor`: the body field `API_NEXT_CURSOR_FIELD` (a dotted path) holds a
//! token that the next request sends as `API_CURSOR_PARAM` (the playground's
//! `/pagination/keyset` with `scroll_param`, dlt's `cursor`, Airbyte's `CursorPagination`).
//! An absent, null or empty token ends paging; a token that repeats itself is a loop.

use url::Url;

use super::{Paging, Seen, with_param};
use crate::error::{Error, Result};
use crate::redact::url as redact;

pub(super) struct Cursor {
    /// What later requests start from: the first request's URL, or `API_URL` without
    /// since/until (`API_SINCE_FIRST_PAGE_ONLY`).
    then: Url,
    param: String,
    field: String,
    last: Option<String>,
}

impl Cursor {
    pub(super) fn new(then: Url, param: &str, field: &str) -> Self {
        Cursor {
            then,
            param: param.to_string(),
            field: field.to_string(),
            last: None,
        }
    }
}

impl Paging for Cursor {
    fn next(&mut self, page: &Seen<'_>) -> Result<Option<Url>> {
        let token = match page.tail.get(&self.field) {
            None | Some(serde_json::Value::Null) => return Ok(None),
            Some(serde_json::Value::String(s)) if s.is_empty() => return Ok(None),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v @ serde_json::Value::Number(_)) => v.to_string(),
            Some(other) => {
                return Err(Error::Paging {
                    url: redact(page.url),
                    message: format!(
                        "the next token `{}` (API_NEXT_CURSOR_FIELD) is {}, not a string or a number",
                        self.field,
                        kind(other)
                    ),
                });
            }
        };
        if self.last.as_deref() == Some(token.as_str()) {
            return Err(Error::Paging {
                url: redact(page.url),
                message: format!(
                    "the next token `{}` repeats the one before it: a paging loop",
                    self.field
                ),
            });
        }
        let next = with_param(&self.then, &self.param, &token);
        self.last = Some(token);
        Ok(Some(next))
    }

    fn follows(&self, name: &str) -> bool {
        self.field == name
    }
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
        _ => "something else",
    }
}
