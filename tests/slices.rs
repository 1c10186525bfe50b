//! Time slices at their edges, on both backends: rows stamped exactly on a boundary, equal
//! timestamps across a split, empty slices, a slice whose API keeps failing, and a deadline
//! with slices half done followed by the run that fills the hole.

#[macro_use]
mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::TimeDelta;
use common::fixture::{self, FixtureApi, Paging, Response, user};
use common::{Env, Kind, ts};
use replay_sync::sync::Invocation;
use replay_sync::window::Span;
use replay_sync::{RunRequest, Settings, Status};
use serde_json::Value;

on_both_backends!(
    rows_on_slice_boundaries_are_read_once,
    equal_timestamps_across_a_split_stay_whole,
    a_failing_slice_fails_the_run_and_the_cursor_stays,
    a_deadline_with_slices_half_done_then_the_next_run_reads_only_the_holes,
    an_audit_reads_the_ranges_recorded_as_done,
    raising_the_buffer_reads_again_what_a_shorter_one_marked_done,
    a_window_that_starts_in_the_future_reads_what_one_stream_would,
    rows_on_edges_are_never_lost_whichever_way_the_api_reads_its_bounds,
);

/// A source sending `until`, and settings reading `n` slices at once.
fn sliced(env: &Env, url: &str, n: usize) -> (replay_sync::source::http::HttpSource, Settings) {
    let src = common::source_with(url, |a| {
        a.until_param = Some("until".into());
        a.max_attempts = 2;
    });
    let settings = Settings {
        fetch_concurrency: n,
        ..env.settings()
    };
    (src, settings)
}

/// An invocation that started at `at` (the window's top), with `remaining` before its
/// deadline.
fn started_at(at: &str, remaining: Option<Duration>) -> Invocation {
    Invocation {
        request_id: Invocation::random_id(),
        started_at: ts(at),
        deadline: remaining.map(|r| tokio::time::Instant::now() + r),
        lease_until: ts(at) + TimeDelta::minutes(15),
    }
}

/// A scheduled run as an invocation that started at `at` (see [`started_at`]).
async fn run_at(
    env: &Env,
    src: &replay_sync::source::http::HttpSource,
    settings: &Settings,
    at: &str,
    remaining: Option<Duration>,
) -> replay_sync::Result<replay_sync::RunSummary> {
    let inv = started_at(at, remaining);
    env.run_as(&env.state, src, settings, &RunRequest::scheduled(), &inv)
        .await
}

async fn seed(env: &Env, cursor: &str) {
    let c = common::commit(&env.state, &env.sync_id, Some(ts(cursor)), "seed").await;
    assert_eq!(c, replay_sync::state::Checkpoint::Committed { version: 1 });
}

/// Every data line in the lake, per id.
async fn lines_per_id(env: &Env) -> HashMap<String, usize> {
    let keys: Vec<String> = env
        .keys()
        .await
        .into_iter()
        .filter(|k| k.ends_with(".jsonl") && !k.contains("/_"))
        .collect();
    let mut per_id = HashMap::new();
    for l in env.lines(&keys).await {
        *per_id
            .entry(l["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    per_id
}

/// The `(since, until)` of each range the API was asked for (first pages only).
fn ranges(api: &FixtureApi) -> Vec<(Option<String>, Option<String>)> {
    api.requests()
        .iter()
        .filter(|r| r.param("page").is_none())
        .map(|r| {
            (
                r.param("since").map(str::to_string),
                r.param("until").map(str::to_string),
            )
        })
        .collect()
}

async fn rows_on_slice_boundaries_are_read_once(kind: Kind) {
    let env = Env::new(kind).await;
    seed(&env, "2024-01-15T10:00:00Z").await;
    // The window [08:00, 12:00) in four slices: boundaries at 09:00, 10:00 and 11:00.
    let stamps = [
        "2024-01-15T08:00:00Z",
        "2024-01-15T08:59:59.999Z",
        "2024-01-15T09:00:00Z",
        "2024-01-15T09:00:00.500Z",
        "2024-01-15T10:00:00Z",
        "2024-01-15T10:59:59Z",
        "2024-01-15T11:00:00Z",
        "2024-01-15T12:00:00Z",
        "2024-01-15T12:30:00Z",
    ];
    let records: Vec<Value> = stamps
        .iter()
        .enumerate()
        .map(|(i, t)| user(&format!("b{i}"), t))
        .collect();
    let api = fixture::records_api(records, Paging::LinkHeader(2));
    let (src, settings) = sliced(&env, &api.url("/x"), 4);

    let s = run_at(&env, &src, &settings, "2024-01-15T12:00:00Z", None)
        .await
        .unwrap();

    assert_eq!(s.status, Status::Completed, "{s:?}");
    assert_eq!(
        s.counts.records_fetched,
        stamps.len() as u64,
        "every row read by exactly one slice"
    );
    assert_eq!(s.counts.records_written, stamps.len() as u64);
    let per_id = lines_per_id(&env).await;
    assert_eq!(per_id.len(), stamps.len());
    assert!(per_id.values().all(|&n| n == 1), "{per_id:?}");
    let asked = ranges(&api);
    for (since, until) in [
        ("2024-01-15T08:00:00Z", Some("2024-01-15T09:00:00Z")),
        ("2024-01-15T09:00:00Z", Some("2024-01-15T10:00:00Z")),
        ("2024-01-15T10:00:00Z", Some("2024-01-15T11:00:00Z")),
        // The top slice is open: rows stamped after the run started are written too.
        ("2024-01-15T11:00:00Z", None),
    ] {
        assert!(
            asked.contains(&(Some(since.into()), until.map(str::to_string))),
            "{since}..{until:?} in {asked:?}"
        );
    }
    // The cursor: the newest row, but never past the run's start.
    assert_eq!(s.new_cursor.as_deref(), Some("2024-01-15T12:00:00Z"));
}

async fn equal_timestamps_across_a_split_stay_whole(kind: Kind) {
    let env = Env::new(kind).await;
    seed(&env, "2024-01-15T10:00:00Z").await;
    // Every row in the first minutes of a 4-hour window, 30 on each of three seconds; five a
    // page, each page taking 20 ms: the first slice is dense, the other three are empty and
    // split it.
    let records: Vec<Value> = (0..90)
        .map(|i| {
            user(
                &format!("e{i:02}"),
                &format!("2024-01-15T08:10:0{}Z", i / 30),
            )
        })
        .collect();
    let api = fixture::records_api(records, Paging::LinkHeader(5));
    let (src, settings) = sliced(&env, &api.url("/x?latency_ms=20"), 4);

    let s = run_at(&env, &src, &settings, "2024-01-15T12:00:00Z", None)
        .await
        .unwrap();

    assert_eq!(s.status, Status::Completed);
    // Rows stamped on a split's edge may be read by both slices (an API may return them to
    // either), never lost; the second read is known and not written again.
    assert_eq!(s.counts.records_written, 90, "{s:?}");
    assert_eq!(
        s.counts.records_fetched,
        90 + s.counts.records_skipped,
        "only rows read twice are skipped: {s:?}"
    );
    let per_id = lines_per_id(&env).await;
    assert_eq!(per_id.len(), 90);
    assert!(per_id.values().all(|&n| n == 1));
    assert_eq!(
        s.new_cursor.as_deref(),
        Some("2024-01-15T10:00:00Z"),
        "the rows were in the buffer: the cursor never moves back"
    );
    // The dense slice was split: ranges beyond the initial four were read, each starting
    // on a whole second after what its slice had read.
    let asked = ranges(&api);
    assert!(asked.len() > 4, "{asked:?}");
    let initial = ["08", "09", "10", "11"].map(|h| format!("2024-01-15T{h}:00:00Z"));
    assert!(
        asked
            .iter()
            .any(|(since, _)| since.as_ref().is_some_and(|s| !initial.contains(s))),
        "{asked:?}"
    );
}

async fn a_failing_slice_fails_the_run_and_the_cursor_stays(kind: Kind) {
    let env = Env::new(kind).await;
    seed(&env, "2024-01-15T10:00:00Z").await;
    let records: Vec<Value> = ["08:30", "09:30", "10:30", "11:30"]
        .iter()
        .enumerate()
        .map(|(i, t)| user(&format!("f{i}"), &format!("2024-01-15T{t}:00Z")))
        .collect();
    let broken = Arc::new(AtomicBool::new(true));
    let b = broken.clone();
    let api = FixtureApi::start(move |req, _| {
        if b.load(Ordering::SeqCst) && req.param("since") == Some("2024-01-15T10:00:00Z") {
            return Response::raw(503, r#"{"error": "replica unavailable"}"#);
        }
        fixture::records_page(&records, Paging::LinkHeader(10), req)
    });
    let (src, settings) = sliced(&env, &api.url("/x"), 4);

    let err = run_at(&env, &src, &settings, "2024-01-15T12:00:00Z", None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "UpstreamHttpError", "{err}");
    let state = env.state().await;
    assert_eq!(
        state.cursor,
        Some(ts("2024-01-15T10:00:00Z")),
        "below the hole"
    );
    assert_eq!(state.version, 1, "nothing checkpointed");
    assert_eq!(state.lease, None, "the failed run let go of the lease");

    // The API recovers: the next run reads the whole window again and completes.
    broken.store(false, Ordering::SeqCst);
    let s = run_at(&env, &src, &settings, "2024-01-15T12:00:00Z", None)
        .await
        .unwrap();
    assert_eq!(s.status, Status::Completed);
    let per_id = lines_per_id(&env).await;
    assert_eq!(per_id.len(), 4, "{per_id:?}");
    assert_eq!(s.new_cursor.as_deref(), Some("2024-01-15T11:30:00Z"));
}

/// A run that stops at its deadline with the first of four slices unread, leaving the
/// cursor below it and `[12:00, 22:00)` recorded as done; the API is fast again afterwards.
async fn half_done(env: &Env) -> (FixtureApi, replay_sync::source::http::HttpSource, Settings) {
    let (api, src, settings, _) = half_done_shared(env).await;
    (api, src, settings)
}

/// [`half_done`], with the API's rows open to change.
async fn half_done_shared(
    env: &Env,
) -> (
    FixtureApi,
    replay_sync::source::http::HttpSource,
    Settings,
    Arc<std::sync::Mutex<Vec<Value>>>,
) {
    seed(env, "2024-01-15T10:00:00Z").await;
    // A backlog: the window [08:00, 2024-01-16T00:00) in four slices of four hours.
    let records: Vec<Value> = ["15T08:30", "15T13:00", "15T17:00", "15T21:00", "15T23:00"]
        .iter()
        .enumerate()
        .map(|(i, t)| user(&format!("h{i}"), &format!("2024-01-{t}:00Z")))
        .collect();
    // The first slice's range answers slowly in the first run: it misses the deadline.
    let slow = Arc::new(AtomicBool::new(true));
    let s2 = slow.clone();
    let records = Arc::new(std::sync::Mutex::new(records));
    let rows = records.clone();
    let api = FixtureApi::start(move |req, _| {
        let r = fixture::records_page(&rows.lock().unwrap(), Paging::LinkHeader(10), req);
        if s2.load(Ordering::SeqCst) && req.param("since") == Some("2024-01-15T08:00:00Z") {
            r.delayed(Duration::from_secs(4))
        } else {
            r
        }
    });
    let (src, settings) = sliced(env, &api.url("/x"), 4);

    let first = run_at(
        env,
        &src,
        &settings,
        "2024-01-16T00:00:00Z",
        Some(Duration::from_millis(1500)),
    )
    .await
    .unwrap();
    assert_eq!(first.status, Status::Partial, "{first:?}");
    assert!(
        first.reason.as_deref().unwrap_or("").contains("skip"),
        "{first:?}"
    );
    assert_eq!(
        first.counts.records_written, 4,
        "the three fast slices' rows"
    );
    let state = env.state().await;
    assert_eq!(
        state.cursor,
        Some(ts("2024-01-15T10:00:00Z")),
        "the cursor waits below the unread slice"
    );
    // Done beyond the gap: [12:00, 22:00) — the top slice is kept only up to the buffer
    // (2 h) before it was read, as rows within the buffer may still arrive there.
    assert_eq!(
        state.done.spans,
        [Span {
            since: ts("2024-01-15T12:00:00Z"),
            until: ts("2024-01-15T22:00:00Z"),
        }]
    );
    slow.store(false, Ordering::SeqCst);
    (api, src, settings, records)
}

async fn a_deadline_with_slices_half_done_then_the_next_run_reads_only_the_holes(kind: Kind) {
    let env = Env::new(kind).await;
    let (api, src, settings) = half_done(&env).await;
    let before = api.requests().len();
    let second = run_at(&env, &src, &settings, "2024-01-16T00:10:00Z", None)
        .await
        .unwrap();
    assert_eq!(second.status, Status::Completed, "{second:?}");
    let later = &api.requests()[before..];
    assert!(!later.is_empty());
    for r in later {
        let since = r.param("since").map(ts);
        assert!(
            since.is_none_or(|s| s < ts("2024-01-15T12:00:00Z") || s >= ts("2024-01-15T22:00:00Z")),
            "the done range is not read again: {:?}",
            r.target
        );
    }
    assert_eq!(
        lines_per_id(&env).await.len(),
        5,
        "every row is in the lake"
    );
    assert_eq!(second.new_cursor.as_deref(), Some("2024-01-15T23:00:00Z"));
    assert!(
        env.state().await.done.spans.is_empty(),
        "nothing left to skip"
    );
}

/// An audit looks for rows that reached the replica after a range was read: it reads the
/// ranges a partial run recorded as done, and its checkpoint clears them.
async fn an_audit_reads_the_ranges_recorded_as_done(kind: Kind) {
    let env = Env::new(kind).await;
    let (api, src, settings) = half_done(&env).await;
    let before = api.requests().len();
    let inv = started_at("2024-01-16T00:10:00Z", None);
    let audit = RunRequest {
        audit: true,
        trigger: replay_sync::event::Trigger::Manual,
        ..RunRequest::scheduled()
    };
    let s = env
        .run_as(&env.state, &src, &settings, &audit, &inv)
        .await
        .unwrap();
    assert_eq!(s.status, Status::Completed, "{s:?}");
    let done_range_read = api.requests()[before..].iter().any(|r| {
        r.param("since")
            .map(ts)
            .is_some_and(|t| t >= ts("2024-01-15T12:00:00Z") && t < ts("2024-01-15T22:00:00Z"))
    });
    assert!(done_range_read, "the audit read inside the done range");
    assert!(env.state().await.done.spans.is_empty());
}

/// Contract v3, "Edges never lose a row": an API that reads its bounds `updated_after`-style
/// (`since < t <= until`), or one that rounds fractions up when it writes them, returns rows
/// on a slice's edge to the slice below it — and, after a split, to the reader whose end
/// moved down. Every row lands, whichever way the API reads its bounds (issue 20, 3).
async fn rows_on_edges_are_never_lost_whichever_way_the_api_reads_its_bounds(kind: Kind) {
    use fixture::Edges;
    let base = ts("2024-01-15T09:55:00Z").timestamp_millis();
    // 2,400 rows four a second over ten minutes (on the second and at .25, .5, .75), and 72
    // spread over the rest of the window.
    let mut rows: Vec<(i64, Value)> = (0..2400)
        .map(|i| fixture::edge_user(&format!("d{i:04}"), base + (i / 4) * 1000 + (i % 4) * 250))
        .collect();
    let early = ts("2024-01-15T08:00:30Z").timestamp_millis();
    rows.extend((0..72).map(|i| fixture::edge_user(&format!("s{i:02}"), early + i * 97_000)));
    let rows = Arc::new(rows);
    for edges in [Edges::Inclusive, Edges::UpdatedAfter, Edges::RoundsUp] {
        let env = Env::new(kind).await;
        seed(&env, "2024-01-15T10:00:00Z").await;
        let r = rows.clone();
        let api = FixtureApi::start(move |req, _| fixture::edges_page(&r, edges, 3, req));
        let (src, settings) = sliced(&env, &api.url("/x?latency_ms=1"), 8);
        let s = run_at(&env, &src, &settings, "2024-01-15T10:10:00Z", None)
            .await
            .unwrap();
        assert_eq!(s.status, Status::Completed, "{edges:?}: {s:?}");
        let per_id = lines_per_id(&env).await;
        let lost: Vec<&str> = rows
            .iter()
            .map(|(_, v)| v["id"].as_str().unwrap())
            .filter(|id| !per_id.contains_key(*id))
            .collect();
        assert!(
            lost.is_empty(),
            "{edges:?}: {} of {} rows never written (first: {:?}); {} ranges asked",
            lost.len(),
            rows.len(),
            &lost[..lost.len().min(5)],
            ranges(&api).len()
        );
        assert!(
            ranges(&api).len() > 8,
            "{edges:?}: the dense slice was split"
        );
    }
}

/// Done ranges are cut with the buffer in force when they were read: after an operator
/// raises `BUFFER_HOURS` (what the lateness alarm tells them to do), the next run reads them
/// again, and a row that reached the replica late inside the new buffer lands before the
/// cursor passes it (issue 20, 1).
async fn raising_the_buffer_reads_again_what_a_shorter_one_marked_done(kind: Kind) {
    let env = Env::new(kind).await;
    let (api, src, settings, rows) = half_done_shared(&env).await;
    assert_eq!(env.state().await.done.buffer, Some(TimeDelta::hours(2)));
    // A row stamped 20:00 reaches the replica now: 4 h late, inside [12:00, 22:00).
    rows.lock()
        .unwrap()
        .push(user("late", "2024-01-15T20:00:00Z"));
    let before = api.requests().len();
    let raised = Settings {
        buffer: TimeDelta::hours(6),
        ..settings
    };
    let s = run_at(&env, &src, &raised, "2024-01-16T00:10:00Z", None)
        .await
        .unwrap();
    assert_eq!(s.status, Status::Completed, "{s:?}");
    let read_again = api.requests()[before..].iter().any(|r| {
        r.param("since")
            .map(ts)
            .is_some_and(|t| t >= ts("2024-01-15T12:00:00Z") && t < ts("2024-01-15T22:00:00Z"))
    });
    assert!(
        read_again,
        "the range done under a 2 h buffer is read again under 6 h"
    );
    assert!(
        lines_per_id(&env).await.contains_key("late"),
        "the late row landed"
    );
    assert_eq!(s.new_cursor.as_deref(), Some("2024-01-15T23:00:00Z"));
    assert!(env.state().await.done.spans.is_empty());
}

/// A replay from a cursor after the run's start (a window that starts in the future) reads
/// in slices what one stream reads: the rows stamped since then (issue 20, 7).
async fn a_window_that_starts_in_the_future_reads_what_one_stream_would(kind: Kind) {
    for n in [1, 4] {
        let env = Env::new(kind).await;
        let records = vec![
            user("past", "2024-01-15T11:00:00Z"),
            user("future", "2031-01-01T00:00:00Z"),
        ];
        let api = fixture::records_api(records, Paging::LinkHeader(10));
        let (src, settings) = sliced(&env, &api.url("/x"), n);
        let replay = RunRequest {
            state_override: Some(ts("2030-01-01T02:00:00Z")),
            trigger: replay_sync::event::Trigger::Manual,
            ..RunRequest::scheduled()
        };
        let inv = started_at("2024-01-15T12:00:00Z", None);
        let s = env
            .run_as(&env.state, &src, &settings, &replay, &inv)
            .await
            .unwrap();
        assert_eq!(s.status, Status::Completed, "{n} slice(s): {s:?}");
        assert_eq!(s.counts.records_written, 1, "{n} slice(s): {s:?}");
        assert!(lines_per_id(&env).await.contains_key("future"));
    }
}
