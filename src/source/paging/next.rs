//! `API_PAGINATION=next` (the default): the body's next-page field (`API_NEXT_PAGE_FIELD`,
//! read by the page parser) or an RFC 8288 `Link: <…>; rel="next"` header names the next
//! page; a link is followed only within the API's origin and never back to a page already
//! read.

use std::collections::HashSet;

use reqwest::header::{HeaderMap, LINK};
use url::Url;

use super::{Paging, Seen};
use crate::error::{Error, Result};
use crate::redact::url as redact;

/// Follows next-page links.
pub(super) struct NextLink {
    origin: url::Origin,
    visited: HashSet<Url>,
}

impl NextLink {
    pub(super) fn new(first: &Url) -> Self {
        NextLink {
            origin: first.origin(),
            visited: HashSet::from([first.clone()]),
        }
    }
}

impl Paging for NextLink {
    fn next(&mut self, page: &Seen<'_>) -> Result<Option<Url>> {
        let Some(link) = page.tail.next.as_deref().or(page.link) else {
            return Ok(None);
        };
        let next = next_page(page.url, link, &self.origin, &self.visited)?;
        self.visited.insert(next.clone());
        Ok(Some(next))
    }

    fn links(&self) -> bool {
        true
    }

    fn early(&self, url: &Url, link: &str) -> Option<Url> {
        next_page(url, link, &self.origin, &self.visited)
            .ok()
            .filter(|n| n != url)
    }
}

/// Resolves a next-page link of the page at `url`, refusing another origin and pages
/// already read (a loop).
pub fn next_page(
    url: &Url,
    link: &str,
    origin: &url::Origin,
    visited: &HashSet<Url>,
) -> Result<Url> {
    let resolved = url.join(link).map_err(|e| Error::Paging {
        url: redact(url),
        message: format!("the next-page link is not a URL ({e})"),
    })?;
    if resolved.origin() != *origin {
        return Err(Error::Paging {
            url: redact(url),
            message: format!(
                "refusing to follow a next-page link to another origin ({})",
                redact(&resolved)
            ),
        });
    }
    if visited.contains(&resolved) {
        return Err(Error::Paging {
            url: redact(url),
            message: format!(
                "the next-page link points back to a page already read ({}): a paging loop",
                redact(&resolved)
            ),
        });
    }
    Ok(resolved)
}

/// The target of `Link: <…>; rel="next"` (RFC 8288), if any.
pub fn link_next(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(LINK) {
        let Ok(value) = value.to_str() else { continue };
        // Links are comma-separated; a URI in <> does not contain '>'.
        let mut rest = value;
        while let Some(start) = rest.find('<') {
            let Some(end) = rest[start..].find('>') else {
                break;
            };
            let target = &rest[start + 1..start + end];
            let after = &rest[start + end + 1..];
            let params_end = after.find('<').unwrap_or(after.len());
            let params = &after[..params_end];
            let is_next = params.split(';').any(|p| {
                let p = p.trim().trim_end_matches(',').trim();
                p.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("rel")
                        && v.trim()
                            .trim_matches('"')
                            .split_whitespace()
                            .any(|r| r.eq_ignore_ascii_case("next"))
                })
            });
            if is_next {
                return Some(target.to_string());
            }
            rest = &after[params_end..];
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn link_header_next_is_found() {
        let mut h = HeaderMap::new();
        h.append(
            LINK,
            HeaderValue::from_static(
                r#"<https://api/x?page=1>; rel="prev", <https://api/x?page=3>; rel="next""#,
            ),
        );
        assert_eq!(link_next(&h).as_deref(), Some("https://api/x?page=3"));
        let mut h = HeaderMap::new();
        h.append(LINK, HeaderValue::from_static(r#"</p?page=2>; rel=next"#));
        assert_eq!(link_next(&h).as_deref(), Some("/p?page=2"));
        let mut h = HeaderMap::new();
        h.append(
            LINK,
            HeaderValue::from_static(r#"<https://api/x?page=1>; rel="prev last""#),
        );
        assert_eq!(link_next(&h), None);
    }
}
