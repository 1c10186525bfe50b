//! Any API shape, configured rather than coded (contract v3; issue 21): the playground's own
//! paging endpoints read whole by configuration alone, on both backends — and, with today's
//! defaults, failing with `IncompleteRead` instead of reporting `completed` with a quarter of
//! the rows.

#[macro_use]
mod common;

use std::collections::HashSet;

use common::{Env, Kind, peers};
use replay_sync::config::Config;
use replay_sync::source::http::HttpSource;
use replay_sync::{RunRequest, Status};
use serde_json::Value;

on_both_backends!(
    page_number_paging_reads_every_row,
    offset_paging_reads_every_row,
    keyset_cursor_paging_reads_every_row,
    a_next_page_url_field_reads_every_row,
    todays_defaults_fail_with_incomplete_read_instead_of_completing,
    companies_are_keyed_by_company_id,
    a_nested_epoch_shape_lands_every_row_in_one_stream_and_in_slices,
    a_thousand_page_cursor_window_in_slices_lands_every_row,
    every_auth_endpoint_of_the_playground_lands_every_row,
    a_bare_array_in_epoch_seconds_lands_every_row,
    a_backfill_and_an_audit_read_another_shape,
);

/// An HTTP source for the playground's `path`, configured by `vars` as a user would.
fn shaped(path: &str, vars: &[(&str, &str)]) -> HttpSource {
    fixture_source(format!("{}{path}", peers::playground().url()), vars)
}

/// Every user the playground serves, by id.
fn users() -> HashSet<String> {
    peers::playground_users(peers::playground())
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect()
}

/// Every id written to the lake.
async fn landed(env: &Env) -> HashSet<String> {
    let keys: Vec<String> = env
        .keys()
        .await
        .into_iter()
        .filter(|k| k.contains(".jsonl") && !k.contains("/_"))
        .collect();
    env.lines(&keys)
        .await
        .iter()
        .map(|l: &Value| l["id"].as_str().unwrap().to_string())
        .collect()
}

/// A full sync with `src` lands `expected` exactly; a second run writes nothing new.
async fn lands_every_row(kind: Kind, src: &HttpSource, expected: &HashSet<String>) {
    let env = Env::new(kind).await;
    let s = env.scheduled(src).await;
    assert_eq!(s.status, Status::Completed, "{s:?}");
    assert!(s.counts.records_written > 0);
    assert!(s.counts.pages > 1, "read over several pages: {s:?}");
    assert_eq!(&landed(&env).await, expected);
    let again = env.scheduled(src).await;
    assert_eq!(again.status, Status::Completed, "{again:?}");
    assert!(again.since.is_some(), "the incremental run sends since");
    assert_eq!(again.counts.records_written, 0, "nothing new: {again:?}");
}

async fn page_number_paging_reads_every_row(kind: Kind) {
    let src = shaped(
        "/pagination/page_number",
        &[
            ("API_PAGINATION", "page_number"),
            ("API_SINCE_PARAM", "updated_since"),
        ],
    );
    lands_every_row(kind, &src, &users()).await;
    // With a page size sent, fewer pages.
    let src = shaped(
        "/pagination/page_number",
        &[
            ("API_PAGINATION", "page_number"),
            ("API_SINCE_PARAM", "updated_since"),
            ("API_PAGE_SIZE", "50"),
            ("API_LIMIT_PARAM", "per_page"),
        ],
    );
    lands_every_row(kind, &src, &users()).await;
}

async fn offset_paging_reads_every_row(kind: Kind) {
    let src = shaped(
        "/pagination/offset",
        &[
            ("API_PAGINATION", "offset"),
            ("API_SINCE_PARAM", "updated_since"),
            ("API_PAGE_SIZE", "50"),
        ],
    );
    lands_every_row(kind, &src, &users()).await;
}

/// The rows the playground's own keyset paging can return: its `scroll_param` asks for rows
/// stamped after the last of a page, so rows tied with that one on the next page are out of
/// its reach (the API's own edge, not ours).
fn keyset_reachable() -> HashSet<String> {
    let mut all = peers::playground_users(peers::playground());
    all.sort_by(|a, b| a["updatedAt"].as_str().cmp(&b["updatedAt"].as_str()));
    let mut out = HashSet::new();
    let mut rest: Vec<&Value> = all.iter().collect();
    loop {
        let page: Vec<&Value> = rest.iter().take(50).copied().collect();
        out.extend(page.iter().map(|u| u["id"].as_str().unwrap().to_string()));
        if rest.len() <= 50 {
            return out;
        }
        let last = page.last().unwrap()["updatedAt"]
            .as_str()
            .unwrap()
            .to_string();
        rest.retain(|u| u["updatedAt"].as_str().unwrap() > last.as_str());
    }
}

async fn keyset_cursor_paging_reads_every_row(kind: Kind) {
    let src = shaped(
        "/pagination/keyset",
        &[
            ("API_PAGINATION", "cursor"),
            ("API_CURSOR_PARAM", "scroll_param"),
            ("API_NEXT_CURSOR_FIELD", "scroll_param"),
            ("API_SINCE_FIRST_PAGE_ONLY", "true"),
            ("API_SINCE_PARAM", "updated_since"),
        ],
    );
    lands_every_row(kind, &src, &keyset_reachable()).await;
}

async fn a_next_page_url_field_reads_every_row(kind: Kind) {
    let src = shaped(
        "/pagination/next_page_url",
        &[
            ("API_SINCE_PARAM", "updated_since"),
            ("API_NEXT_PAGE_FIELD", "next_page_url"),
        ],
    );
    lands_every_row(kind, &src, &users()).await;
}

/// With today's defaults (a next-page field or `Link` header, which these endpoints do not
/// give), the first page was all that was read and the run said `completed`: now it fails
/// naming what the body said, and the cursor does not move.
async fn todays_defaults_fail_with_incomplete_read_instead_of_completing(kind: Kind) {
    for (path, said) in [
        ("/pagination/page_number", "total_items = 200"),
        ("/pagination/offset", "total = 200"),
        ("/pagination/keyset", "scroll_param"),
        ("/pagination/next_page_url", "total_items = 200"),
    ] {
        let env = Env::new(kind).await;
        let src = shaped(path, &[("API_SINCE_PARAM", "updated_since")]);
        let err = env
            .run_with(&src, &env.settings(), &RunRequest::scheduled())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "IncompleteRead", "{path}: {err}");
        let text = err.to_string();
        assert!(text.contains(said), "{path}: {text}");
        assert!(text.contains("API_PAGINATION=next"), "{path}: {text}");
        let state = env.state().await;
        assert_eq!(
            (state.cursor, state.version),
            (None, 0),
            "{path}: nothing checkpointed"
        );
        assert_eq!(state.lease, None, "{path}: the lease is released");
    }
}

/// A source for a fixture API at `url`, configured by `vars`.
fn fixture_source(url: String, vars: &[(&str, &str)]) -> HttpSource {
    let api = Config::from_lookup(|k| {
        if k == "API_URL" {
            return Some(url.clone());
        }
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap_or_else(|e| panic!("{e}"))
    .api;
    // With its credential from `API_AUTH_TOKEN`, as the binary builds it.
    let src = HttpSource::new(api.clone()).unwrap();
    match (&api.auth, vars.iter().find(|(k, _)| *k == "API_AUTH_TOKEN")) {
        (Some(auth), Some((_, credential))) => {
            let (auth, secrets) =
                replay_sync::source::auth::Auth::new(auth, credential, "API_AUTH_TOKEN").unwrap();
            src.with_auth(auth, &secrets)
        }
        _ => src,
    }
}

fn rows(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            common::fixture::user(
                &format!("r{i:03}"),
                &format!("2024-01-15T10:{:02}:00Z", i % 60),
            )
        })
        .collect()
}

/// Paging never loops, and never stops early in silence: an API that ignores the page
/// counter, a token that repeats itself, a `has_more` flag left standing, an offset API that
/// caps its pages below the size asked for, and a count that means the whole table
/// (`API_COUNTS=ignore`) (issue 21).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_ends_with_an_error_never_a_loop_or_a_silent_stop() {
    use common::fixture::{FixtureApi, Response};
    use serde_json::json;
    let env = Env::new(Kind::File).await;
    let run = |src: HttpSource| {
        let env = &env;
        async move {
            // Dry runs: each case reads from scratch, nothing is kept between them.
            let dry = RunRequest {
                dry_run: true,
                ..common::manual()
            };
            env.run_with(&src, &env.settings(), &dry).await
        }
    };

    // The page parameter is ignored: the same rows on every page.
    let same = FixtureApi::start(|_, _| Response::json(&json!({"data": rows(3)})));
    let err = run(fixture_source(
        same.url("/x"),
        &[("API_PAGINATION", "page_number")],
    ))
    .await
    .unwrap_err();
    assert_eq!(err.kind(), "PagingError", "{err}");
    assert!(err.to_string().contains("API_PAGE_PARAM"), "{err}");
    assert!(
        same.requests().len() <= 3,
        "no loop: {} requests",
        same.requests().len()
    );

    // A token that repeats itself.
    let stuck = FixtureApi::start(|_, _| Response::json(&json!({"data": rows(2), "next": "t1"})));
    let err = run(fixture_source(
        stuck.url("/x"),
        &[
            ("API_PAGINATION", "cursor"),
            ("API_CURSOR_PARAM", "after"),
            ("API_NEXT_CURSOR_FIELD", "next"),
        ],
    ))
    .await
    .unwrap_err();
    assert_eq!(err.kind(), "PagingError", "{err}");
    assert!(err.to_string().contains("repeats"), "{err}");

    // A has_more flag that no paging follows.
    let more =
        FixtureApi::start(|_, _| Response::json(&json!({"data": rows(2), "has_more": true})));
    let err = run(fixture_source(more.url("/x"), &[])).await.unwrap_err();
    assert_eq!(err.kind(), "IncompleteRead", "{err}");
    assert!(err.to_string().contains("has_more = true"), "{err}");

    // An offset API that caps pages at 7 rows whatever the size asked: the offset moves by
    // the rows a page held, and the count ends paging.
    let all = rows(20);
    let capped = FixtureApi::start(move |req, _| {
        let offset: usize = req
            .param("offset")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let page: Vec<Value> = all.iter().skip(offset).take(7).cloned().collect();
        Response::json(&json!({"data": page, "total": 20}))
    });
    let s = run(fixture_source(
        capped.url("/x"),
        &[("API_PAGINATION", "offset"), ("API_PAGE_SIZE", "10")],
    ))
    .await
    .unwrap();
    assert_eq!(s.counts.records_fetched, 20, "{s:?}");
    let offsets: Vec<String> = capped
        .requests()
        .iter()
        .map(|r| r.param("offset").unwrap_or("").to_string())
        .collect();
    assert_eq!(offsets, ["0", "7", "14"]);

    // A count of the whole table, not of the request: API_COUNTS=ignore reads on to the end.
    let table = FixtureApi::start(|_, _| Response::json(&json!({"data": rows(3), "total": 1000})));
    let err = run(fixture_source(table.url("/x"), &[])).await.unwrap_err();
    assert_eq!(err.kind(), "IncompleteRead", "{err}");
    let s = run(fixture_source(table.url("/x"), &[("API_COUNTS", "ignore")]))
        .await
        .unwrap();
    assert_eq!(s.status, Status::DryRun, "{s:?}");
    assert_eq!(s.counts.records_fetched, 3);
}

async fn companies_are_keyed_by_company_id(kind: Kind) {
    let env = Env::new(kind).await;
    let src = shaped(
        "/cursors/companies",
        &[
            ("ID_FIELD", "company_id"),
            ("API_SINCE_PARAM", "updated_since"),
        ],
    );
    let s = env.scheduled(&src).await;
    assert_eq!(s.status, Status::Completed, "{s:?}");
    assert_eq!(
        s.counts.records_rejected, 0,
        "no row quarantined for a missing id: {s:?}"
    );
    assert!(s.counts.records_written > 0);
    let keys: Vec<String> = env
        .keys()
        .await
        .into_iter()
        .filter(|k| k.contains(".jsonl") && !k.contains("/_"))
        .collect();
    let ids: HashSet<String> = env
        .lines(&keys)
        .await
        .iter()
        .map(|l| l["company_id"].to_string())
        .collect();
    assert_eq!(
        ids.len() as u64,
        s.counts.records_written,
        "one line per company"
    );
}

/// A shape far from the seed's: records at `result.items`, keyed by `meta.id`, stamped in
/// epoch milliseconds at `meta.updated_at` (numbers and numeric strings), `since`/`until`
/// sent in epoch milliseconds, paged by a token at `meta.next_cursor`.
fn nested_api() -> (common::fixture::FixtureApi, Vec<String>, i64) {
    nested_api_of(60, 7, 50_000)
}

/// [`nested_api`] with `n` rows `every` milliseconds apart, `per_page` a page.
fn nested_api_of(
    n: i64,
    per_page: usize,
    every: i64,
) -> (common::fixture::FixtureApi, Vec<String>, i64) {
    use common::fixture::{FixtureApi, Response};
    use serde_json::json;
    let base = 1_705_307_400_000i64; // 2024-01-15T08:30:00Z
    let mut rows: Vec<(i64, Value)> = (0..n)
        .map(|i| {
            let ms = base + i * every;
            let at = if i % 3 == 0 {
                json!(ms.to_string())
            } else {
                json!(ms)
            };
            (
                ms,
                json!({"meta": {"id": format!("n{i:02}"), "updated_at": at}, "v": i}),
            )
        })
        .collect();
    let ids = rows
        .iter()
        .map(|(_, v)| v["meta"]["id"].as_str().unwrap().to_string())
        .collect();
    // Two rows that cannot be synced: no time, and a time in another format.
    rows.push((i64::MIN, json!({"meta": {"id": "no-time"}})));
    rows.push((
        i64::MIN,
        json!({"meta": {"id": "bad-time", "updated_at": "soon"}}),
    ));
    let api = FixtureApi::start(move |req, _| {
        let bound = |n: &str| req.param(n).map(|v| v.parse::<i64>().expect("epoch ms"));
        let (since, until) = (bound("updated_after"), bound("updated_before"));
        let mut sel: Vec<&(i64, Value)> = rows
            .iter()
            .filter(|(t, _)| match (*t, since, until) {
                (i64::MIN, s, u) => s.is_none() && u.is_none(),
                (t, s, u) => s.is_none_or(|s| t >= s) && u.is_none_or(|u| t < u),
            })
            .collect();
        sel.sort_by_key(|(t, _)| *t);
        let from: usize = req.param("after").map_or(0, |a| a[1..].parse().unwrap());
        let page: Vec<&Value> = sel
            .iter()
            .skip(from)
            .take(per_page)
            .map(|(_, v)| v)
            .collect();
        let next = (from + per_page < sel.len()).then(|| format!("o{}", from + per_page));
        Response::json(&json!({"result": {"items": page}, "meta": {"next_cursor": next}}))
    });
    (api, ids, base)
}

const NESTED: &[(&str, &str)] = &[
    ("API_RECORDS_FIELD", "result.items"),
    ("ID_FIELD", "meta.id"),
    ("CURSOR_FIELD", "meta.updated_at"),
    ("CURSOR_FORMAT", "epoch_ms"),
    ("API_SINCE_PARAM", "updated_after"),
    ("API_SINCE_FORMAT", "epoch_ms"),
    ("API_PAGINATION", "cursor"),
    ("API_CURSOR_PARAM", "after"),
    ("API_NEXT_CURSOR_FIELD", "meta.next_cursor"),
];

async fn a_nested_epoch_shape_lands_every_row_in_one_stream_and_in_slices(kind: Kind) {
    // One stream, from no state: every row, the two unreadable ones quarantined naming the
    // path; then an incremental run writes nothing new.
    let (api, ids, base) = nested_api();
    let env = Env::new(kind).await;
    let src = fixture_source(api.url("/x"), NESTED);
    let s = env.scheduled(&src).await;
    assert_eq!(s.status, Status::Completed, "{s:?}");
    assert_eq!(s.counts.records_written, 60, "{s:?}");
    assert_eq!(s.counts.records_rejected, 2, "{s:?}");
    let landed: HashSet<String> = env
        .lines(&s.objects)
        .await
        .iter()
        .map(|l| l["meta"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(landed, ids.iter().cloned().collect::<HashSet<_>>());
    let rejected = String::from_utf8(common::decompressed(
        &s.rejected_objects[0],
        env.get(&s.rejected_objects[0]).await,
    ))
    .unwrap();
    assert!(rejected.contains("missing `meta.updated_at`"), "{rejected}");
    assert!(
        rejected.contains("`meta.updated_at` is not a number of milliseconds"),
        "{rejected}"
    );
    assert_eq!(
        s.new_cursor.as_deref(),
        Some("2024-01-15T09:19:10Z"),
        "the newest row, read from epoch milliseconds"
    );
    let again = env.scheduled(&src).await;
    let asked = api.requests();
    assert!(
        asked.iter().any(
            |r| r.param("updated_after") == Some(&(base + 59 * 50_000 - 7_200_000).to_string())
        ),
        "since in epoch ms, cursor - 2 h"
    );
    assert_eq!(again.counts.records_written, 0, "{again:?}");

    // In slices (an upper bound, four at once), from a cursor whose window holds every row.
    let (api, ids, _) = nested_api();
    let (env, s) = nested_in_slices(kind, &api, 4).await;
    assert_eq!(s.status, Status::Completed, "{s:?}");
    assert_eq!(s.counts.records_written, 60, "{s:?}");
    assert!(
        api.requests()
            .iter()
            .filter(|r| r.param("updated_before").is_some())
            .count()
            > 4,
        "read in slices, each paging on its own"
    );
    assert_eq!(
        landed_ids(&env).await,
        ids.into_iter().collect::<HashSet<_>>()
    );
}

/// Every `meta.id` written to the lake.
async fn landed_ids(env: &Env) -> HashSet<String> {
    let keys: Vec<String> = env
        .keys()
        .await
        .into_iter()
        .filter(|k| k.contains(".jsonl") && !k.contains("/_"))
        .collect();
    env.lines(&keys)
        .await
        .iter()
        .map(|l| l["meta"]["id"].as_str().unwrap().to_string())
        .collect()
}

/// A window of 3,000 rows at 3 a page — a thousand pages by cursor token — read in eight
/// slices, each paging on its own, with splits: every row lands once (issue 21).
async fn a_thousand_page_cursor_window_in_slices_lands_every_row(kind: Kind) {
    let (api, ids, _) = nested_api_of(3000, 3, 2_000);
    let (env, s) = nested_in_slices(kind, &api, 8).await;
    assert_eq!(s.status, Status::Completed, "{s:?}");
    assert!(s.counts.pages >= 1000, "{} pages", s.counts.pages);
    assert_eq!(s.counts.records_written, 3000, "{s:?}");
    assert_eq!(
        landed_ids(&env).await,
        ids.into_iter().collect::<HashSet<_>>()
    );
}

/// `API_AUTH=query`: the credential as a query parameter, never printed (URLs in messages
/// carry no query string, and the key is scrubbed besides).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_the_query_reads_and_is_never_printed() {
    use common::fixture::{FixtureApi, Response};
    let api = FixtureApi::start(|req, _| {
        if req.param("api_key") != Some("k3y-value") {
            return Response::raw(
                401,
                format!(r#"{{"error": "bad key {:?}"}}"#, req.param("api_key")),
            );
        }
        common::fixture::records_page(&rows(4), common::fixture::Paging::None, req)
    });
    let env = Env::new(Kind::File).await;
    let vars = |key: &'static str| {
        let mut v = vec![("API_AUTH", "query"), ("API_AUTH_PARAM", "api_key")];
        v.push(("API_AUTH_TOKEN", key));
        v
    };
    let s = env
        .run_with(
            &fixture_source(api.url("/x"), &vars("k3y-value")),
            &env.settings(),
            &RunRequest::scheduled(),
        )
        .await
        .unwrap();
    assert_eq!(s.counts.records_written, 4);
    let err = env
        .run_with(
            &fixture_source(api.url("/x"), &vars("wrong-k3y")),
            &env.settings(),
            &RunRequest::scheduled(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("HTTP 401"), "{err}");
    assert!(!err.to_string().contains("wrong-k3y"), "{err}");
}

/// What the playground printed after `label` on its last line that has it: the rest of the
/// line's words.
fn printed(label: &str, endpoint: &str) -> Vec<String> {
    let log = std::fs::read_to_string(&peers::playground().log).unwrap();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains(endpoint) && l.contains(label))
        .unwrap_or_else(|| panic!("the playground did not print {endpoint}'s {label}"));
    line[line.find(label).unwrap() + label.len()..]
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// `http_basic`, `http_bearer`, `api_key` and `session_token` by configuration alone: every
/// row lands, a second run writes nothing new (issue 21).
async fn every_auth_endpoint_of_the_playground_lands_every_row(kind: Kind) {
    let basic = printed("Username: ", "auth/http_basic");
    let bearer = printed("Bearer Token: ", "auth/http_bearer");
    let key = printed("API Key: ", "auth/api_key");
    let session = printed("Username: ", "auth/session_token/login");
    let login = format!("{}/auth/session_token/login", peers::playground().url());
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        (
            "/auth/http_basic",
            vec![
                ("API_AUTH", "basic".into()),
                ("API_AUTH_TOKEN", format!("{}:{}", basic[0], basic[2])),
            ],
        ),
        (
            "/auth/http_bearer",
            vec![("API_AUTH_TOKEN", bearer[0].clone())],
        ),
        (
            "/auth/api_key",
            vec![
                ("API_AUTH_TOKEN", key[0].clone()),
                ("API_AUTH_SCHEME", "apiKey".into()),
            ],
        ),
        (
            "/auth/session_token/data",
            vec![
                ("API_AUTH", "session".into()),
                ("API_LOGIN_URL", login.clone()),
                ("API_AUTH_SCHEME", "Token".into()),
                ("API_AUTH_TOKEN", format!("{}:{}", session[0], session[2])),
            ],
        ),
    ];
    for (path, vars) in cases {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let src = fixture_source(format!("{}{path}", peers::playground().url()), &vars);
        let env = Env::new(kind).await;
        let s = env.scheduled(&src).await;
        assert_eq!(s.counts.records_written, 20, "{path}: {s:?}");
        let again = env.scheduled(&src).await;
        assert_eq!(again.counts.records_written, 0, "{path}: {again:?}");
        assert_eq!(again.counts.records_skipped, 20, "{path}");
    }
}

/// A body that is the array itself, stamped in epoch seconds (numbers and strings), one page.
async fn a_bare_array_in_epoch_seconds_lands_every_row(kind: Kind) {
    use common::fixture::{FixtureApi, Response};
    let api = FixtureApi::start(|req, _| {
        let since: i64 = req.param("since").map_or(0, |v| v.parse().unwrap());
        let rows: Vec<Value> = (0..12i64)
            .map(|i| 1_705_307_400 + i * 60)
            .filter(|t| *t >= since)
            .map(|t| {
                let at = if t % 120 == 0 {
                    serde_json::json!(t.to_string())
                } else {
                    serde_json::json!(t)
                };
                serde_json::json!({"key": format!("k{t}"), "modified": at})
            })
            .collect();
        Response::json(&Value::Array(rows))
    });
    let src = fixture_source(
        api.url("/x"),
        &[
            ("API_RECORDS_FIELD", "."),
            ("ID_FIELD", "key"),
            ("CURSOR_FIELD", "modified"),
            ("CURSOR_FORMAT", "epoch_s"),
            ("API_SINCE_FORMAT", "epoch_s"),
            ("API_PAGINATION", "none"),
        ],
    );
    let env = Env::new(kind).await;
    let s = env.scheduled(&src).await;
    assert_eq!(s.counts.records_written, 12, "{s:?}");
    assert_eq!(s.new_cursor.as_deref(), Some("2024-01-15T08:41:00Z"));
    let again = env.scheduled(&src).await;
    assert_eq!(again.since.as_deref(), Some("2024-01-15T06:41:00Z"));
    assert!(
        api.requests()
            .iter()
            .any(|r| r.param("since") == Some("1705300860")),
        "since sent in epoch seconds"
    );
    assert_eq!(again.counts.records_written, 0, "{again:?}");
}

/// A run over the nested API in `n` slices (`updated_before` as the upper bound), from a
/// cursor whose window holds every row.
async fn nested_in_slices(
    kind: Kind,
    api: &common::fixture::FixtureApi,
    n: usize,
) -> (Env, replay_sync::RunSummary) {
    let env = Env::new(kind).await;
    let seed = Some(common::ts("2024-01-15T10:00:00Z"));
    let c = common::commit(&env.state, &env.sync_id, seed, "seed").await;
    assert_eq!(c, replay_sync::state::Checkpoint::Committed { version: 1 });
    let mut vars = NESTED.to_vec();
    vars.push(("API_UNTIL_PARAM", "updated_before"));
    let src = fixture_source(api.url("/x"), &vars);
    let settings = replay_sync::Settings {
        fetch_concurrency: n,
        ..env.settings()
    };
    let s = env
        .run_with(&src, &settings, &RunRequest::scheduled())
        .await
        .unwrap();
    (env, s)
}

/// A backfill in quarter-hour slices, each paged by cursor token, over the nested epoch-ms
/// shape; then an audit finds nothing the lake lacks (issue 21: each paging kind with
/// backfills and audits).
async fn a_backfill_and_an_audit_read_another_shape(kind: Kind) {
    let (api, ids, _) = nested_api();
    let env = Env::new(kind).await;
    let mut vars = NESTED.to_vec();
    vars.push(("API_UNTIL_PARAM", "updated_before"));
    let src = fixture_source(api.url("/x"), &vars);
    let settings = env.settings();
    let engine = replay_sync::Engine {
        state: &env.state,
        source: &src,
        sink: &env.sink,
        settings: &settings,
    };
    let start = replay_sync::event::BackfillStart {
        from: "2024-01-15T08:00:00Z".into(),
        to: Some("2024-01-15T10:00:00Z".into()),
        slice_hours: Some(0.25),
        max_concurrency: None,
    };
    let inv = replay_sync::sync::Invocation::new("backfill", None);
    let s = engine
        .backfill(&start, &inv, 4, |_, _, _, _| {})
        .await
        .unwrap();
    assert_eq!(s.status, Status::Completed, "{s:?}");
    assert_eq!(s.counts.records_written, 60, "{s:?}");
    assert_eq!(
        landed_ids(&env).await,
        ids.into_iter().collect::<HashSet<_>>()
    );
    assert_eq!(s.new_cursor.as_deref(), Some("2024-01-15T09:19:10Z"));
    let audit = RunRequest {
        audit: true,
        ..common::manual()
    };
    let a = env.run_with(&src, &settings, &audit).await.unwrap();
    assert_eq!(a.status, Status::Completed, "{a:?}");
    assert_eq!(a.counts.records_fetched, 60, "{a:?}");
    assert_eq!(
        a.counts.records_written, 0,
        "the backfill's rows are known: {a:?}"
    );
    assert_eq!(a.counts.records_missed_by_buffer, 0);
}
