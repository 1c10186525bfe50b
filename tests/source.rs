//! The HTTP source against real servers on 127.0.0.1: the playground for paging and rate
//! limiting, the fixture API for faults and bad data. Each run goes through the whole engine
//! (file backends), so "nothing lost" is checked on the state, not assumed.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::fixture::{self, FixtureApi, Paging, Response, user};
use common::{Env, Kind, peers, source_with};
use replay_sync::{RunRequest, RunSummary, Status};
use serde_json::{Value, json};

async fn run(
    env: &Env,
    src: &replay_sync::source::http::HttpSource,
) -> replay_sync::Result<RunSummary> {
    env.run_with(src, &env.settings(), &RunRequest::scheduled())
        .await
}

fn paged(url: &str, next_field: &str) -> replay_sync::source::http::HttpSource {
    source_with(url, |a| a.next_page_field = Some(next_field.into()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playground_next_page_url_paging_lands_every_user() {
    let env = Env::new(Kind::File).await;
    let pg = peers::playground();
    let users = peers::playground_users(pg);
    let src = source_with(
        &format!("{}/pagination/next_page_url?per_page=7", pg.url()),
        |a| {
            a.since_param = "updated_since".into();
            a.next_page_field = Some("next_page_url".into());
        },
    );

    let s = run(&env, &src).await.unwrap();

    assert_eq!(s.counts.records_written, users.len() as u64);
    assert_eq!(s.counts.pages, users.len().div_ceil(7) as u64);
    let ids: std::collections::HashSet<String> = env
        .lines(&s.objects)
        .await
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), users.len(), "every user, once");

    // The second run pages through the buffered window with `updated_since`.
    let second = run(&env, &src).await.unwrap();
    let since = env.state().await.cursor.unwrap() - chrono::TimeDelta::hours(2);
    let expected = users
        .iter()
        .filter(|u| common::ts(u["updatedAt"].as_str().unwrap()) >= since)
        .count();
    assert!(expected > 0);
    assert_eq!(second.counts.records_fetched, expected as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_header_and_body_field_paging() {
    let records: Vec<Value> = (0..10)
        .map(|i| user(&format!("r{i}"), &format!("2024-01-15T10:{i:02}:00Z")))
        .collect();
    for (paging, pages) in [
        (Paging::LinkHeader(3), 4),
        (Paging::BodyField(4), 3),
        (Paging::BodyField(10), 1),
    ] {
        let env = Env::new(Kind::File).await;
        let api = fixture::records_api(records.clone(), paging);
        let s = run(&env, &paged(&api.url("/x"), "next")).await.unwrap();
        assert_eq!(s.counts.records_written, 10, "{paging:?}");
        assert_eq!(s.counts.pages, pages, "{paging:?}");
        assert_eq!(api.requests().len() as u64, pages);
    }
}

/// The page a `Link` header names is requested early (while the current body streams in);
/// when the body names another next page, the body wins and the early request is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_next_field_wins_over_an_early_link_request() {
    let env = Env::new(Kind::File).await;
    let api = FixtureApi::start(|req, _| match (req.path.as_str(), req.param("page")) {
        ("/x", Some("1")) => Response::json(
            &json!({"data": [user("a", "2024-01-15T10:00:00Z")], "next": "/x?page=2"}),
        )
        .header("Link", "</decoy>; rel=\"next\""),
        ("/x", Some("2")) => Response::json(&json!({"data": [user("b", "2024-01-15T10:01:00Z")]}))
            .header("Link", "</x?page=3>; rel=\"next\""),
        ("/x", Some("3")) => Response::json(&json!({"data": [user("c", "2024-01-15T10:02:00Z")]})),
        _ => Response::json(&json!({"data": [user("decoy", "2024-01-15T10:03:00Z")]})),
    });
    let s = run(&env, &paged(&api.url("/x?page=1"), "next"))
        .await
        .unwrap();
    let ids: Vec<String> = env
        .lines(&s.objects)
        .await
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["a", "b", "c"], "the body's chain, then the header's");
    assert_eq!(s.counts.pages, 3);
    let asked = |page: &str| {
        api.requests()
            .iter()
            .filter(|r| r.param("page") == Some(page))
            .count()
    };
    assert_eq!((asked("2"), asked("3")), (1, 1), "each page fetched once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_loops_and_foreign_origins_are_refused() {
    for (next, fragment) in [
        ("/x?page=1", "paging loop"),
        ("http://192.0.2.1/steal", "another origin"),
    ] {
        let env = Env::new(Kind::File).await;
        let next = next.to_string();
        let api = FixtureApi::start(move |_, _| {
            Response::json(&json!({"data": [user("a", "2024-01-15T10:00:00Z")], "next": next}))
        });
        let err = run(&env, &paged(&api.url("/x?page=1"), "next"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "PagingError");
        assert!(err.to_string().contains(fragment), "{err}");
        assert_eq!(api.requests().len(), 1);
        assert_eq!(env.cursor_version().await, (None, 0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_playground_sync_completes_with_every_user() {
    let pg = peers::start_playground(&["--rate-limit", "--capacity", "2"]);
    let users = peers::playground_users(&pg);
    let env = Env::new(Kind::File).await;
    let src = source_with(
        &format!("{}/pagination/next_page_url?per_page=10", pg.url()),
        |a| {
            a.since_param = "updated_since".into();
            a.next_page_field = Some("next_page_url".into());
            a.max_attempts = 20;
        },
    );

    let s = run(&env, &src).await.unwrap();

    assert_eq!(s.status, Status::Completed);
    // The direct read above may itself have been limited; the sync saw every user anyway.
    assert!(!users.is_empty());
    let ids: std::collections::HashSet<String> = env
        .lines(&s.objects)
        .await
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 200, "every user of the playground landed");
    let log = std::fs::read_to_string(&pg.log).unwrap();
    assert!(
        log.contains("\" 429 "),
        "the playground did rate-limit the sync"
    );
    pg.stop();
}

/// Answers with `first` for the first `n` requests, then with `then`.
fn flaky(n: usize, first: Response, then: Response) -> FixtureApi {
    let calls = Arc::new(AtomicUsize::new(0));
    FixtureApi::start(move |_, _| {
        if calls.fetch_add(1, Ordering::SeqCst) < n {
            first.clone()
        } else {
            then.clone()
        }
    })
}

fn two_users() -> Response {
    Response::json(
        &json!({"data": [user("a", "2024-01-15T10:00:00Z"), user("b", "2024-01-15T11:00:00Z")]}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_until_the_page_arrives() {
    let body = two_users().body;
    let cases: Vec<(&str, Response)> = vec![
        ("503", Response::raw(503, "busy")),
        ("500", Response::raw(500, "oops")),
        (
            "429 with Retry-After seconds",
            Response::raw(429, "slow down").header("Retry-After", "1"),
        ),
        (
            "429 with Retry-After HTTP-date",
            Response::raw(429, "slow down").header(
                "Retry-After",
                &(chrono::Utc::now() + chrono::TimeDelta::seconds(1))
                    .to_rfc2822()
                    .replace("+0000", "GMT"),
            ),
        ),
        (
            "connection cut mid-record",
            Response::raw(200, body.clone()).truncated(40),
        ),
        (
            "connection cut after a record",
            Response::raw(200, body.clone()).truncated(body.len() - 60),
        ),
        ("timeout", two_users().delayed(Duration::from_millis(2500))),
    ];
    for (name, first) in cases {
        let env = Env::new(Kind::File).await;
        let api = flaky(2, first, two_users());
        let src = source_with(&api.url("/x"), |a| a.timeout = Duration::from_secs(1));
        let s = run(&env, &src)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            api.requests().len(),
            3,
            "{name}: two failures, then the page"
        );
        assert_eq!(s.counts.records_written, 2, "{name}");
        let lines = env.lines(&s.objects).await;
        assert_eq!(
            lines.len(),
            2,
            "{name}: a re-read page does not duplicate lines within a batch"
        );
        assert_eq!(
            env.state().await.cursor,
            Some(common::ts("2024-01-15T11:00:00Z")),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_bounded_and_report_the_last_failure() {
    let env = Env::new(Kind::File).await;
    let api = FixtureApi::start(|_, _| Response::raw(503, "<html>maintenance</html>"));
    let src = source_with(&api.url("/x"), |a| a.max_attempts = 3);
    let err = run(&env, &src).await.unwrap_err();
    assert_eq!(err.kind(), "UpstreamHttpError");
    let msg = err.to_string();
    assert!(
        msg.contains("503") && msg.contains("3 attempt") && msg.contains("maintenance"),
        "{msg}"
    );
    assert_eq!(api.requests().len(), 3);
    assert_eq!(env.cursor_version().await, (None, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_api_is_retried_then_fails_clearly() {
    let env = Env::new(Kind::File).await;
    let port = peers::free_port(); // nothing listens there
    let src = source_with(&format!("http://127.0.0.1:{port}/x?token=secret"), |a| {
        a.max_attempts = 2
    });
    let err = run(&env, &src).await.unwrap_err();
    assert_eq!(err.kind(), "UpstreamUnreachable");
    let msg = err.to_string();
    assert!(
        msg.contains("2 attempt") && !msg.contains("secret"),
        "{msg}"
    );
}

/// What a bad input must come to.
enum Want {
    /// The run fails with this error kind and a message containing this.
    Fails(&'static str, &'static str),
    /// The run completes; this many records are rejected, the rest written.
    Rejects(u64, u64),
}

fn body(s: &str) -> Response {
    Response::raw(200, s)
}

fn rec(v: Value) -> Response {
    Response::json(&json!({"data": [user("good", "2024-01-15T10:00:00Z"), v]}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_a_clear_error_or_a_rejection_and_lose_nothing() {
    use Want::*;
    let other = "http://192.0.2.1/x";
    let cases: Vec<(&str, Response, Want)> = vec![
        // Bodies
        (
            "html",
            body("<html><body>Bad gateway</body></html>"),
            Fails("MalformedResponse", "not valid JSON"),
        ),
        ("empty 200", body(""), Fails("MalformedResponse", "empty")),
        (
            "204 no content",
            Response::raw(204, ""),
            Fails("MalformedResponse", "empty"),
        ),
        (
            "cut mid-record",
            body(r#"{"data": [{"id": "a", "updatedAt": "2024-01"#),
            Fails("MalformedResponse", "truncated"),
        ),
        (
            "cut after the array",
            body(r#"{"data": []"#),
            Fails("MalformedResponse", "truncated"),
        ),
        (
            "no records field",
            body(r#"{"items": []}"#),
            Fails("MalformedResponse", "no `data` field"),
        ),
        (
            "records is an object",
            body(r#"{"data": {"id": 1}}"#),
            Fails("MalformedResponse", "not an array"),
        ),
        (
            "records is null",
            body(r#"{"data": null}"#),
            Fails("MalformedResponse", "not an array"),
        ),
        (
            "records is a string",
            body(r#"{"data": "[]"}"#),
            Fails("MalformedResponse", "not an array"),
        ),
        (
            "top-level array",
            body(r#"[{"id": 1}]"#),
            Fails("MalformedResponse", "not a JSON object"),
        ),
        (
            "top-level string",
            body(r#""ok""#),
            Fails("MalformedResponse", "not a JSON object"),
        ),
        (
            "records twice",
            body(r#"{"data": [], "data": []}"#),
            Fails("MalformedResponse", "twice"),
        ),
        (
            "trailing garbage",
            body(r#"{"data": []} {"data": []}"#),
            Fails("MalformedResponse", "not valid JSON"),
        ),
        (
            "trailing comma",
            body(r#"{"data": [{"id": 1, "updatedAt": "2024-01-15T10:00:00Z"},]}"#),
            Fails("MalformedResponse", "not valid JSON"),
        ),
        (
            "broken record",
            body(r#"{"data": [{"id": 1,, "updatedAt": "x"}]}"#),
            Fails("MalformedResponse", "not valid JSON"),
        ),
        (
            "bad escape",
            body(r#"{"data": [{"id": "\q", "updatedAt": "2024-01-15T10:00:00Z"}]}"#),
            Fails("MalformedResponse", "not valid JSON"),
        ),
        (
            "invalid UTF-8",
            Response::raw(
                200,
                b"{\"data\": [{\"id\": \"\xc3\x28\", \"updatedAt\": \"2024-01-15T10:00:00Z\"}]}"
                    .to_vec(),
            ),
            Fails("MalformedResponse", "UTF-8"),
        ),
        (
            "bad other field",
            body(r#"{"data": [], "meta": [1,,2]}"#),
            Fails("MalformedResponse", "not valid JSON"),
        ),
        (
            "next is a number",
            body(r#"{"data": [], "next": 2}"#),
            Fails("MalformedResponse", "next-page field"),
        ),
        // Headers
        (
            "Link to another origin",
            body(r#"{"data": []}"#).header("Link", &format!("<{other}>; rel=\"next\"")),
            Fails("PagingError", "another origin"),
        ),
        (
            "Link to itself",
            body(r#"{"data": []}"#).header("Link", "</x>; rel=\"next\""),
            Fails("PagingError", "paging loop"),
        ),
        (
            "Link without brackets is ignored",
            body(r#"{"data": []}"#).header("Link", "/x?page=2; rel=next"),
            Rejects(0, 0),
        ),
        (
            "redirect to another origin",
            Response::raw(302, "").header("Location", other),
            Fails("UpstreamHttpError", "302"),
        ),
        // Statuses
        (
            "400",
            Response::raw(400, r#"{"error": "Invalid date format"}"#),
            Fails("UpstreamHttpError", "HTTP 400"),
        ),
        (
            "401",
            Response::raw(401, r#"{"error": "Authorization header is missing"}"#),
            Fails("UpstreamHttpError", "Authorization header is missing"),
        ),
        (
            "403",
            Response::raw(403, "forbidden"),
            Fails("UpstreamHttpError", "HTTP 403"),
        ),
        (
            "404",
            Response::raw(404, "not found"),
            Fails("UpstreamHttpError", "HTTP 404"),
        ),
        (
            "410",
            Response::raw(410, "gone"),
            Fails("UpstreamHttpError", "HTTP 410"),
        ),
        (
            "422",
            Response::raw(422, "unprocessable"),
            Fails("UpstreamHttpError", "HTTP 422"),
        ),
        (
            "500 forever",
            Response::raw(500, "boom"),
            Fails("UpstreamHttpError", "HTTP 500"),
        ),
        (
            "503 forever",
            Response::raw(503, "busy"),
            Fails("UpstreamHttpError", "HTTP 503"),
        ),
        (
            "429 forever",
            Response::raw(429, "slow").header("Retry-After", "0"),
            Fails("UpstreamHttpError", "HTTP 429"),
        ),
        // Records: rejected with a reason, the good one lands
        (
            "missing id",
            rec(json!({"updatedAt": "2024-01-15T10:00:00Z"})),
            Rejects(1, 1),
        ),
        (
            "null id",
            rec(json!({"id": null, "updatedAt": "2024-01-15T10:00:00Z"})),
            Rejects(1, 1),
        ),
        (
            "object id",
            rec(json!({"id": {"k": 1}, "updatedAt": "2024-01-15T10:00:00Z"})),
            Rejects(1, 1),
        ),
        (
            "boolean id",
            rec(json!({"id": true, "updatedAt": "2024-01-15T10:00:00Z"})),
            Rejects(1, 1),
        ),
        ("missing updatedAt", rec(json!({"id": "x"})), Rejects(1, 1)),
        (
            "numeric updatedAt",
            rec(json!({"id": "x", "updatedAt": 1705312800})),
            Rejects(1, 1),
        ),
        (
            "unparsable updatedAt",
            rec(json!({"id": "x", "updatedAt": "15/01/2024 10:00"})),
            Rejects(1, 1),
        ),
        (
            "updatedAt without zone",
            rec(json!({"id": "x", "updatedAt": "2024-01-15T10:00:00"})),
            Rejects(1, 1),
        ),
        (
            "date only",
            rec(json!({"id": "x", "updatedAt": "2024-01-15"})),
            Rejects(1, 1),
        ),
        (
            "record is an array",
            rec(json!(["x", "2024-01-15T10:00:00Z"])),
            Rejects(1, 1),
        ),
        ("record is a string", rec(json!("x")), Rejects(1, 1)),
        ("record is null", rec(Value::Null), Rejects(1, 1)),
        (
            "duplicate id key",
            body(r#"{"data": [{"id": "a", "id": "b", "updatedAt": "2024-01-15T10:00:00Z"}]}"#),
            Rejects(1, 0),
        ),
        (
            "own _synced_at",
            rec(
                json!({"id": "x", "updatedAt": "2024-01-15T10:00:00Z", "_synced_at": "2099-01-01T00:00:00Z"}),
            ),
            Rejects(1, 1),
        ),
        (
            "duplicated field",
            body(r#"{"data": [{"id": "a", "n": 1, "n": 2, "updatedAt": "2024-01-15T10:00:00Z"}]}"#),
            Rejects(1, 0),
        ),
        (
            "duplicated nested field",
            body(
                r#"{"data": [{"id": "a", "o": {"k": 1, "k": 2}, "updatedAt": "2024-01-15T10:00:00Z"}]}"#,
            ),
            Rejects(1, 0),
        ),
        // Unusual but valid: accepted
        (
            "offset updatedAt",
            rec(json!({"id": "x", "updatedAt": "2024-01-15T15:30:00+05:30"})),
            Rejects(0, 2),
        ),
        (
            "fractional updatedAt",
            rec(json!({"id": "x", "updatedAt": "2024-01-15T10:00:00.123456Z"})),
            Rejects(0, 2),
        ),
        (
            "numeric id",
            rec(json!({"id": 12345678901234567890u64, "updatedAt": "2024-01-15T10:00:00Z"})),
            Rejects(0, 2),
        ),
    ];
    assert!(cases.len() >= 30);
    for (name, resp, want) in cases {
        let env = Env::new(Kind::File).await;
        let api = FixtureApi::start(move |_, _| resp.clone());
        let src = source_with(&api.url("/x"), |a| {
            a.max_attempts = 2;
            a.next_page_field = Some("next".into());
        });
        let result = run(&env, &src).await;
        match want {
            Fails(kind, fragment) => {
                let err = result
                    .err()
                    .unwrap_or_else(|| panic!("{name}: the run succeeded"));
                assert_eq!(err.kind(), kind, "{name}: {err}");
                let msg = err.to_string();
                assert!(msg.contains(fragment), "{name}: {msg}");
                assert!(!msg.contains('\n'), "{name}: one line: {msg}");
                assert_eq!(
                    env.cursor_version().await,
                    (None, 0),
                    "{name}: the cursor did not move"
                );
            }
            Rejects(rejected, written) => {
                let s = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(s.counts.records_rejected, rejected, "{name}");
                assert_eq!(s.counts.records_written, written, "{name}");
                let lines = env.lines(&s.rejected_objects).await;
                assert_eq!(
                    lines.len() as u64,
                    rejected,
                    "{name}: rejected records are kept"
                );
                assert!(
                    lines
                        .iter()
                        .all(|l| l["reason"].as_str().is_some_and(|r| !r.is_empty())),
                    "{name}"
                );
                assert_eq!(env.state().await.version, 1, "{name}: checkpointed");
            }
        }
    }
}
