//! `API_PAGINATION=page_number`: `API_PAGE_PARAM` counts pages from `API_FIRST_PAGE` (the
//! playground's `/pagination/page_number`, dlt's `page_number`, Airbyte's `PageIncrement`).
//! Paging ends on an empty page, or when the body's `total_pages` or row count is reached;
//! without counts (or with `API_COUNTS=ignore`), on a page shorter than `API_PAGE_SIZE` when
//! it is set (without it an API's short page is no proof of the last, so paging goes on to an
//! empty page).

use url::Url;

use super::{Paging, Repeats, Seen, count, with_param};
use crate::config::PageSize;
use crate::error::{Error, Result};
use crate::redact::url as redact;

pub(super) struct PageNumber {
    param: String,
    first: u64,
    page: u64,
    size: Option<PageSize>,
    counts: bool,
    rows: u64,
    repeats: Repeats,
}

impl PageNumber {
    pub(super) fn start(
        url: Url,
        param: &str,
        first: u64,
        size: Option<PageSize>,
        counts: bool,
    ) -> (Url, Box<dyn Paging>) {
        let mut url = with_param(&url, param, &first.to_string());
        if let Some(s) = &size {
            url = with_param(&url, &s.param, &s.rows.to_string());
        }
        let p = PageNumber {
            param: param.to_string(),
            first,
            page: first,
            size,
            counts,
            rows: 0,
            repeats: Repeats::default(),
        };
        (url, Box::new(p))
    }
}

impl Paging for PageNumber {
    fn next(&mut self, page: &Seen<'_>) -> Result<Option<Url>> {
        self.rows += page.records;
        if self.repeats.same(page) {
            return Err(Error::Paging {
                url: redact(page.url),
                message: format!(
                    "page {} holds the same rows as page {}: the API does not take `{}` (API_PAGE_PARAM)",
                    self.page,
                    self.page - 1,
                    self.param
                ),
            });
        }
        let read = self.page - self.first + 1;
        // The body's counts, when they are the request's, decide; else a short page does.
        let counted = self
            .counts
            .then(|| {
                let pages = count(page.tail, &["total_pages"]).map(|(_, n)| read >= n);
                let rows = count(page.tail, super::complete::COUNTS).map(|(_, n)| self.rows >= n);
                pages.into_iter().chain(rows).reduce(|a, b| a || b)
            })
            .flatten();
        let short = self.size.as_ref().is_some_and(|s| page.records < s.rows);
        let last = page.records == 0 || counted.unwrap_or(short);
        if last {
            return Ok(None);
        }
        self.page += 1;
        Ok(Some(with_param(
            page.url,
            &self.param,
            &self.page.to_string(),
        )))
    }

    fn compares_pages(&self) -> bool {
        true
    }
}
