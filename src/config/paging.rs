//! How the API pages (`API_PAGINATION` and its parameters), and what the body's counts mean
//! (`API_COUNTS`): parsed and checked together, each bad combination named at start-up.

use crate::error::{Error, Result};

/// How the next page is asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PagingConfig {
    /// A next-page URL in the body field `API_NEXT_PAGE_FIELD`, or a `Link: <…>; rel="next"`
    /// header (the default).
    #[default]
    Next,
    /// `API_PAGE_PARAM` counts pages from `API_FIRST_PAGE`; with `API_PAGE_SIZE`, the size
    /// is sent as `API_LIMIT_PARAM`.
    PageNumber {
        param: String,
        first: u64,
        size: Option<PageSize>,
    },
    /// `API_OFFSET_PARAM` counts the rows read; with `API_PAGE_SIZE`, the size is sent as
    /// `API_LIMIT_PARAM`.
    Offset {
        param: String,
        size: Option<PageSize>,
    },
    /// The body field `API_NEXT_CURSOR_FIELD` (a dotted path) holds a token sent back as
    /// `API_CURSOR_PARAM`; with `API_SINCE_FIRST_PAGE_ONLY`, `since` and `until` go with the
    /// first request only.
    Cursor {
        param: String,
        field: String,
        since_first_only: bool,
    },
    /// One request, one page.
    None,
}

/// A page size sent with each request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageSize {
    pub param: String,
    pub rows: u64,
}

impl PagingConfig {
    /// Its `API_PAGINATION` name.
    pub fn name(&self) -> &'static str {
        match self {
            PagingConfig::Next => "next",
            PagingConfig::PageNumber { .. } => "page_number",
            PagingConfig::Offset { .. } => "offset",
            PagingConfig::Cursor { .. } => "cursor",
            PagingConfig::None => "none",
        }
    }
}

/// The variables each kind of paging takes (any other kind refuses them).
const OWN: [(&str, &[&str]); 4] = [
    ("next", &["API_NEXT_PAGE_FIELD"]),
    (
        "page_number",
        &[
            "API_PAGE_PARAM",
            "API_FIRST_PAGE",
            "API_LIMIT_PARAM",
            "API_PAGE_SIZE",
        ],
    ),
    (
        "offset",
        &["API_OFFSET_PARAM", "API_LIMIT_PARAM", "API_PAGE_SIZE"],
    ),
    (
        "cursor",
        &[
            "API_CURSOR_PARAM",
            "API_NEXT_CURSOR_FIELD",
            "API_SINCE_FIRST_PAGE_ONLY",
        ],
    ),
];

/// `API_PAGINATION` and its parameters: a variable that the chosen paging does not take is
/// refused, naming both (it would otherwise be ignored in silence).
pub fn parse(get: &impl Fn(&str) -> Option<String>) -> Result<PagingConfig> {
    let kind = get("API_PAGINATION").unwrap_or_else(|| "next".into());
    let kind = kind.to_ascii_lowercase();
    if kind != "none" && !OWN.iter().any(|(k, _)| *k == kind) {
        return Err(Error::config(
            "API_PAGINATION",
            format!("expected next, page_number, offset, cursor or none, got {kind:?}"),
        ));
    }
    let own: &[&str] = OWN.iter().find(|(k, _)| *k == kind).map_or(&[], |(_, v)| v);
    for (_, vars) in OWN {
        for var in vars {
            if !own.contains(var) && get(var).is_some() {
                return Err(Error::config(
                    *var,
                    format!(
                        "is not used with API_PAGINATION={kind} (it belongs to another kind of paging)"
                    ),
                ));
            }
        }
    }
    let size = |param: &str| -> Result<Option<PageSize>> {
        let Some(v) = get("API_PAGE_SIZE") else {
            return Ok(None);
        };
        match v.parse::<u64>() {
            Ok(rows) if rows > 0 => Ok(Some(PageSize {
                param: get("API_LIMIT_PARAM").unwrap_or_else(|| param.into()),
                rows,
            })),
            _ => Err(Error::config(
                "API_PAGE_SIZE",
                format!("expected a positive whole number of rows, got {v:?}"),
            )),
        }
    };
    Ok(match kind.as_str() {
        "next" => PagingConfig::Next,
        "page_number" => PagingConfig::PageNumber {
            param: get("API_PAGE_PARAM").unwrap_or_else(|| "page".into()),
            first: match get("API_FIRST_PAGE") {
                None => 1,
                Some(v) => v.parse().map_err(|_| {
                    Error::config(
                        "API_FIRST_PAGE",
                        format!("expected a whole number such as 1 or 0, got {v:?}"),
                    )
                })?,
            },
            size: size("limit")?,
        },
        "offset" => PagingConfig::Offset {
            param: get("API_OFFSET_PARAM").unwrap_or_else(|| "offset".into()),
            size: size("limit")?,
        },
        "cursor" => {
            let need = |var: &str, what: &str| {
                get(var).ok_or_else(|| {
                    Error::config(
                        var,
                        format!("is required with API_PAGINATION=cursor: {what}"),
                    )
                })
            };
            PagingConfig::Cursor {
                param: need(
                    "API_CURSOR_PARAM",
                    "the query parameter that takes the token",
                )?,
                field: need(
                    "API_NEXT_CURSOR_FIELD",
                    "the body field (a dotted path) that holds the next token",
                )?,
                since_first_only: match get("API_SINCE_FIRST_PAGE_ONLY").as_deref() {
                    None | Some("false") => false,
                    Some("true") => true,
                    Some(v) => {
                        return Err(Error::config(
                            "API_SINCE_FIRST_PAGE_ONLY",
                            format!("expected true or false, got {v:?}"),
                        ));
                    }
                },
            }
        }
        _ => PagingConfig::None,
    })
}

/// `API_COUNTS`: whether the body's counts (`total`, `total_items`, `total_count`,
/// `total_pages`) say how many rows the request has (`use`, the default) or something else
/// — the whole table, an estimate (`ignore`).
pub fn parse_counts(get: &impl Fn(&str) -> Option<String>) -> Result<bool> {
    match get("API_COUNTS").as_deref() {
        None | Some("use") => Ok(true),
        Some("ignore") => Ok(false),
        Some(v) => Err(Error::config(
            "API_COUNTS",
            format!("expected use or ignore, got {v:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<PagingConfig> {
        parse(&|k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn each_kind_takes_its_own_variables_and_refuses_the_others() {
        assert_eq!(with(&[]).unwrap(), PagingConfig::Next);
        assert_eq!(
            with(&[("API_PAGINATION", "page_number")]).unwrap(),
            PagingConfig::PageNumber {
                param: "page".into(),
                first: 1,
                size: None
            }
        );
        assert_eq!(
            with(&[
                ("API_PAGINATION", "offset"),
                ("API_PAGE_SIZE", "50"),
                ("API_LIMIT_PARAM", "per_page")
            ])
            .unwrap(),
            PagingConfig::Offset {
                param: "offset".into(),
                size: Some(PageSize {
                    param: "per_page".into(),
                    rows: 50
                })
            }
        );
        let e = with(&[("API_CURSOR_PARAM", "scroll_param")]).unwrap_err();
        assert!(
            e.to_string().contains("API_CURSOR_PARAM") && e.to_string().contains("next"),
            "{e}"
        );
        let e = with(&[("API_PAGINATION", "cursor"), ("API_CURSOR_PARAM", "t")]).unwrap_err();
        assert!(e.to_string().contains("API_NEXT_CURSOR_FIELD"), "{e}");
        let e = with(&[("API_PAGINATION", "pages")]).unwrap_err();
        assert!(e.to_string().contains("API_PAGINATION"), "{e}");
        let e = with(&[("API_PAGINATION", "offset"), ("API_PAGE_SIZE", "0")]).unwrap_err();
        assert!(e.to_string().contains("API_PAGE_SIZE"), "{e}");
        let e = with(&[("API_PAGINATION", "none"), ("API_NEXT_PAGE_FIELD", "next")]).unwrap_err();
        assert!(e.to_string().contains("API_NEXT_PAGE_FIELD"), "{e}");
    }
}
