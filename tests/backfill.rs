//! Backfills: the local `replay-sync backfill` end to end against the fixture API (every row,
//! the cursor, convergence after kills, a slice that fails and then succeeds), the steps the
//! state machine invokes on both backends (a busy lease, a backfill after the cursor), and
//! the state machine itself, executed by moto with queued Lambda answers.

#[macro_use]
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::fixture::{self, FixtureApi, Paging, Response, user};
use common::{Env, Kind, peers, summary, ts};
use replay_sync::event::{BackfillStart, SliceTask};
use replay_sync::state::{Lease, StateStore};
use replay_sync::sync::Invocation;
use replay_sync::{Settings, Status};
use serde_json::Value;

on_both_backends!(
    the_steps_commit_once_every_slice_is_durable,
    a_backfill_after_the_cursor_leaves_it,
    a_slice_that_reaches_the_deadline_goes_on_in_its_next_part,
    a_commit_refuses_parts_that_do_not_tile_the_plan,
    parts_lose_no_row_on_their_edges_with_an_updated_after_api,
    after_a_backfill_the_next_run_and_audit_write_nothing_again,
    a_backfill_without_to_is_sliced_up_to_the_planning_time,
);

// The backfill steps again as the function in a moto that enforces IAM (the template's
// grants only).
on_aws_with_iam_enforced!(
    the_steps_commit_once_every_slice_is_durable,
    a_backfill_after_the_cursor_leaves_it,
    a_slice_that_reaches_the_deadline_goes_on_in_its_next_part,
    a_commit_refuses_parts_that_do_not_tile_the_plan,
    parts_lose_no_row_on_their_edges_with_an_updated_after_api,
    after_a_backfill_the_next_run_and_audit_write_nothing_again,
    a_backfill_without_to_is_sliced_up_to_the_planning_time,
);

/// 10 days of users, one every 2 hours from 2024-01-01.
fn records() -> Vec<Value> {
    (0..120)
        .map(|i| {
            let t = ts("2024-01-01T00:00:00Z") + chrono::TimeDelta::hours(2 * i);
            user(&format!("b{i:03}"), &replay_sync::window::format_ts(t))
        })
        .collect()
}

fn backfill_cmd(dir: &Path, api: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_replay-sync"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("API_URL", api)
        .env("API_UNTIL_PARAM", "until")
        .env(
            "STATE_STORE",
            format!("file://{}/state.json", dir.display()),
        )
        .env("OUTPUT", format!("file://{}/out", dir.display()))
        .current_dir(dir)
        .args([
            "backfill",
            "--from",
            "2024-01-01T00:00:00Z",
            "--to",
            "2024-01-11T00:00:00Z",
            "--slice-hours",
            "24",
        ])
        .args(extra);
    cmd
}

fn backfill(dir: &Path, api: &str, extra: &[&str]) -> Output {
    backfill_cmd(dir, api, extra)
        .output()
        .expect("run replay-sync")
}

/// Data lines per id, and every data key, under `dir/out/user`.
fn lake(dir: &Path) -> (HashMap<String, usize>, Vec<String>) {
    let root = dir.join("out/user");
    let mut per_id = HashMap::new();
    let mut keys = Vec::new();
    for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".jsonl") {
            continue;
        }
        for line in std::fs::read_to_string(e.path()).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            *per_id
                .entry(v["id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        keys.push(name);
    }
    (per_id, keys)
}

fn state(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap()
}

#[test]
fn the_local_backfill_lands_every_row_and_moves_the_cursor() {
    let api = fixture::records_api(records(), Paging::LinkHeader(7));
    let dir = tempfile::tempdir().unwrap();
    let out = backfill(dir.path(), &api.url("/users"), &["--concurrency", "4"]);
    let s = summary(&out);
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["records_written"], 120);
    assert_eq!(s["checkpoints"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    let progress = err
        .lines()
        .filter(|l| l.starts_with("backfill: slice "))
        .count();
    assert_eq!(progress, 10, "a line per slice: {err}");
    assert!(err.contains("slice 10/10 done"), "{err}");
    let (per_id, keys) = lake(dir.path());
    assert_eq!(per_id.len(), 120);
    assert!(per_id.values().all(|&n| n == 1));
    // The manifest lists every object.
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("out").join(s["manifest"].as_str().unwrap()))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["objects"].as_array().unwrap().len(), keys.len());
    // No cursor before: the backfill's newest row.
    assert_eq!(
        state(dir.path())["user"]["last_timestamp"],
        "2024-01-10T22:00:00Z"
    );
    // Every range the API was asked for has an upper bound and is one day at most.
    let reqs = api.requests();
    assert!(
        reqs.iter()
            .filter(|r| r.param("page").is_none())
            .all(|r| r.param("until").is_some())
    );
}

#[test]
fn a_killed_backfill_converges_when_run_again() {
    // Slow pages, so that kills land in the middle.
    let recs = records();
    let api = FixtureApi::start(move |req, _| {
        fixture::records_page(&recs, Paging::LinkHeader(5), req).delayed(Duration::from_millis(80))
    });
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(11);
    for _ in 0..3 {
        let mut child = backfill_cmd(dir.path(), &api.url("/users"), &["--concurrency", "3"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.u64(100..1200)));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
    }
    let out = backfill(dir.path(), &api.url("/users"), &["--concurrency", "3"]);
    let s = summary(&out);
    // Completed now, or by a killed run that got to its commit first.
    assert!(
        s["status"] == "completed" || s["status"] == "skipped",
        "{s}"
    );
    let (per_id, keys) = lake(dir.path());
    assert_eq!(per_id.len(), 120, "every row");
    assert!(
        keys.iter().all(|k| !k.contains('~')),
        "the same keys, no object written beside another: {keys:?}"
    );
    let id = replay_sync::sync::backfill_id(
        ts("2024-01-01T00:00:00Z"),
        Some(ts("2024-01-11T00:00:00Z")),
        24.0,
    );
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(format!("out/user/_manifests/{id}.json")))
            .unwrap(),
    )
    .unwrap();
    let listed = manifest["objects"].as_array().unwrap().len();
    assert_eq!(listed, keys.len(), "every object is listed in the manifest");
    // The same backfill once more: already committed.
    let again = summary(&backfill(dir.path(), &api.url("/users"), &[]));
    assert_eq!(again["status"], "skipped", "{again}");
}

#[test]
fn a_slice_that_fails_then_succeeds() {
    let recs = records();
    let failures = Arc::new(AtomicUsize::new(0));
    let f = failures.clone();
    let api = FixtureApi::start(move |req, _| {
        // The fourth day's slice answers 503 until it has failed 12 times.
        if req.param("since") == Some("2024-01-04T00:00:00Z")
            && f.fetch_add(1, Ordering::SeqCst) < 12
        {
            return Response::raw(503, r#"{"error": "replica unavailable"}"#);
        }
        fixture::records_page(&recs, Paging::LinkHeader(7), req)
    });
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = backfill_cmd(dir.path(), &api.url("/users"), &[]);
    cmd.env("API_MAX_ATTEMPTS", "2");
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("UpstreamHttpError"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing committed: no cursor.
    let st = std::fs::read_to_string(dir.path().join("state.json")).unwrap_or_default();
    assert!(!st.contains("last_timestamp"), "{st}");

    // Until the API recovers, each attempt fails; then one succeeds and lands everything.
    let mut last = None;
    for _ in 0..8 {
        let mut cmd = backfill_cmd(dir.path(), &api.url("/users"), &[]);
        cmd.env("API_MAX_ATTEMPTS", "2");
        let out = cmd.output().unwrap();
        if out.status.success() {
            last = Some(summary(&out));
            break;
        }
    }
    let s = last.expect("the backfill succeeds once the API recovers");
    assert_eq!(s["status"], "completed");
    assert_eq!(lake(dir.path()).0.len(), 120);
    assert_eq!(
        state(dir.path())["user"]["last_timestamp"],
        "2024-01-10T22:00:00Z"
    );
}

fn sliced(env: &Env, url: &str) -> (replay_sync::source::http::HttpSource, Settings) {
    let src = common::source_with(url, |a| a.until_param = Some("until".into()));
    (src, env.settings())
}

type Engine<'a> = replay_sync::Engine<
    'a,
    replay_sync::app::AnyState,
    replay_sync::source::http::HttpSource,
    replay_sync::app::AnySink,
>;

fn engine<'a>(
    env: &'a Env,
    src: &'a replay_sync::source::http::HttpSource,
    settings: &'a Settings,
) -> Engine<'a> {
    replay_sync::Engine {
        state: &env.state,
        source: src,
        sink: &env.sink,
        settings,
    }
}

fn start(from: &str, to: &str) -> BackfillStart {
    BackfillStart {
        from: from.into(),
        to: Some(to.into()),
        slice_hours: Some(24.0),
        max_concurrency: None,
    }
}

async fn the_steps_commit_once_every_slice_is_durable(kind: Kind) {
    let env = Env::new(kind).await;
    let api = fixture::records_api(records(), Paging::LinkHeader(7));
    let (src, settings) = sliced(&env, &api.url("/users"));
    let engine = engine(&env, &src, &settings);
    let inv = Invocation::new("plan", None);
    let planned = engine
        .backfill_plan(&start("2024-01-01T00:00:00Z", "2024-01-04T00:00:00Z"), &inv)
        .await
        .unwrap();
    assert_eq!(planned.slices, 3);
    let slices: Vec<SliceTask> = serde_json::from_slice(&env.get(&planned.key).await).unwrap();
    assert_eq!(slices.len(), 3);
    if kind == Kind::Aws {
        assert!(planned.bucket.is_some(), "the Map reads the list from S3");
    }

    // Two slices read: the commit refuses, naming the slice not done, and changes nothing.
    for s in &slices[..2] {
        let out = engine.backfill_slice(s, &inv).await.unwrap();
        assert!(out.done);
    }
    let err = engine
        .backfill_commit(&planned.backfill_id, &Invocation::new("c1", None))
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&slices[2].since), "{err}");
    assert_eq!(env.state().await.version, 0, "nothing committed");

    let out = engine.backfill_slice(&slices[2], &inv).await.unwrap();
    assert!(out.done && out.records_written > 0);
    // A scheduled run holds the lease: the commit is busy, and retrying later works.
    let seen = env.state.load(&env.sync_id).await.unwrap();
    let lease = Lease {
        owner: "scheduled-run".into(),
        expires_at: chrono::Utc::now() + chrono::TimeDelta::minutes(5),
    };
    let plan = replay_sync::state::Plan {
        version: 0,
        since: None,
        until: chrono::Utc::now(),
    };
    assert!(
        env.state
            .try_lease(&env.sync_id, &seen, &lease, &plan)
            .await
            .unwrap()
    );
    let err = engine
        .backfill_commit(&planned.backfill_id, &Invocation::new("c2", None))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "StateBusy", "{err}");
    env.state
        .release(&env.sync_id, "scheduled-run")
        .await
        .unwrap();

    let s = engine
        .backfill_commit(&planned.backfill_id, &Invocation::new("c3", None))
        .await
        .unwrap();
    assert_eq!(s.status, Status::Completed, "{s:?}");
    assert_eq!(s.counts.records_written, 36);
    assert_eq!(s.new_cursor.as_deref(), Some("2024-01-03T22:00:00Z"));
    let manifest: Value =
        serde_json::from_slice(&env.get(s.manifest.as_ref().unwrap()).await).unwrap();
    assert_eq!(
        manifest["objects"].as_array().unwrap().len(),
        s.objects.len()
    );
    assert!(!s.objects.is_empty());
    // Committed once: a second commit is skipped.
    let again = engine
        .backfill_commit(&planned.backfill_id, &Invocation::new("c4", None))
        .await
        .unwrap();
    assert_eq!(again.status, Status::Skipped);
}

async fn a_backfill_after_the_cursor_leaves_it(kind: Kind) {
    let env = Env::new(kind).await;
    let seeded = common::commit(
        &env.state,
        &env.sync_id,
        Some(ts("2024-01-02T00:00:00Z")),
        "seed",
    )
    .await;
    assert_eq!(
        seeded,
        replay_sync::state::Checkpoint::Committed { version: 1 }
    );
    let api = fixture::records_api(records(), Paging::LinkHeader(7));
    let (src, settings) = sliced(&env, &api.url("/users"));
    let engine = engine(&env, &src, &settings);
    // From after the cursor: the rows land, the cursor does not jump the gap.
    let inv = Invocation::new("after", None);
    let s = engine
        .backfill(
            &start("2024-01-05T00:00:00Z", "2024-01-06T00:00:00Z"),
            &inv,
            2,
            |_, _, _, _| {},
        )
        .await
        .unwrap();
    assert_eq!(s.counts.records_written, 12);
    assert_eq!(env.state().await.cursor, Some(ts("2024-01-02T00:00:00Z")));
    assert!(
        s.reason.as_deref().unwrap_or("").contains("cursor stays"),
        "{s:?}"
    );
    // From before the cursor: forward to the newest row, never backwards.
    let s = engine
        .backfill(
            &start("2024-01-01T00:00:00Z", "2024-01-03T00:00:00Z"),
            &inv,
            2,
            |_, _, _, _| {},
        )
        .await
        .unwrap();
    assert_eq!(s.new_cursor.as_deref(), Some("2024-01-02T22:00:00Z"));
    let s = engine
        .backfill(
            &start("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"),
            &inv,
            2,
            |_, _, _, _| {},
        )
        .await
        .unwrap();
    assert_eq!(
        s.new_cursor.as_deref(),
        Some("2024-01-02T22:00:00Z"),
        "never backwards"
    );
}

/// The template's state machine, executed by moto: plan → a Distributed Map over the slices
/// (the first slice carried on by a second part in the same child) → commit; and children
/// that fail are failed items of the map run. One test: moto's queue of Lambda answers is
/// shared.
#[test]
fn the_state_machine_plans_maps_the_slices_and_commits() {
    let run = |scenario: &str| -> Value {
        let out = Command::new(peers::venv_bin("python"))
            .args([
                "tests/sfn/backfill_machine.py",
                &peers::moto().url(),
                scenario,
            ])
            .current_dir(peers::project_dir())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let entered = |r: &Value| -> Vec<String> {
        r["entered"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };

    let r = run("ok");
    assert_eq!(r["status"], "SUCCEEDED", "{r}");
    let states = entered(&r);
    assert_eq!(
        states.first().map(String::as_str),
        Some("Plan"),
        "{states:?}"
    );
    assert!(states.iter().any(|s| s == "Slices"), "{states:?}");
    assert_eq!(
        states.last().map(String::as_str),
        Some("Commit"),
        "{states:?}"
    );
    let output: Value = serde_json::from_str(r["output"].as_str().unwrap()).unwrap();
    assert_eq!(
        output["status"], "completed",
        "the commit's answer is the result"
    );
    let payloads = r["task_payloads"].as_array().unwrap();
    assert!(payloads[0].get("backfill_plan").is_some(), "{payloads:?}");
    assert_eq!(
        payloads.last().unwrap()["backfill_commit"]["backfill_id"],
        "backfill-test"
    );
    // The stream goes with every step: in the plan's input, then beside each slice and the
    // commit (the function reads it there: event::take_stream).
    assert_eq!(
        payloads[0]["backfill_plan"]["stream"], "user",
        "{payloads:?}"
    );
    for p in &payloads[1..] {
        assert_eq!(p["stream"], "user", "{p}");
        let (stream, _) = replay_sync::event::take_stream(p).unwrap();
        assert_eq!(stream.as_deref(), Some("user"));
    }

    // Exactly the queued answers were used in order: the plan, four slice parts (the first
    // slice carried on in its child by a second invocation), then the commit — otherwise
    // the commit would have received a slice's answer.
    let runs = r["map_runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{r}");
    assert_eq!(runs[0]["items"]["total"], 3, "one child per slice: {r}");
    assert_eq!(runs[0]["items"]["succeeded"], 3, "{r}");
    assert_eq!(
        runs[0]["max_concurrency"], 1,
        "from the input's max_concurrency: {r}"
    );

    // The children and the commit take the stream from the plan's answer (moto keeps the
    // children's histories out of reach): a plan's answer without it fails every child,
    // and the commit, before either invokes the function.
    let r = run("no-stream");
    assert_eq!(r["status"], "FAILED", "{r}");
    let runs = r["map_runs"].as_array().unwrap();
    assert_eq!(runs[0]["items"]["failed"], 3, "{r}");
    assert_eq!(
        r["task_payloads"].as_array().unwrap().len(),
        1,
        "the plan only: {r}"
    );

    // A child whose answers cannot be carried on fails. (AWS then fails the Map and the
    // execution, as no failure is tolerated; moto 5.2.5 only counts the failed items, and
    // the commit step itself refuses while a slice is not done: see
    // the_steps_commit_once_every_slice_is_durable.)
    let r = run("failed-child");
    let runs = r["map_runs"].as_array().unwrap();
    assert_eq!(runs[0]["items"]["failed"], 3, "{r}");
    assert_eq!(runs[0]["items"]["succeeded"], 0, "{r}");
    assert_eq!(runs[0]["tolerated_failure_count"], 0, "{r}");
}

async fn a_slice_that_reaches_the_deadline_goes_on_in_its_next_part(kind: Kind) {
    let env = Env::new(kind).await;
    // No upper bound: the backfill is one slice, read to the end, 5 rows a page at 150 ms.
    let recs = records();
    let api = FixtureApi::start(move |req, _| {
        fixture::records_page(&recs, Paging::LinkHeader(5), req).delayed(Duration::from_millis(150))
    });
    let src = common::source(&api.url("/users"));
    let settings = env.settings();
    let engine = engine(&env, &src, &settings);
    let planned = engine
        .backfill_plan(
            &start("2024-01-01T00:00:00Z", "2024-01-11T00:00:00Z"),
            &Invocation::new("plan", None),
        )
        .await
        .unwrap();
    assert_eq!(planned.slices, 1, "no API_UNTIL_PARAM: one slice");
    let mut task: SliceTask =
        serde_json::from_slice::<Vec<SliceTask>>(&env.get(&planned.key).await).unwrap()[0].clone();
    // Invocations of 1.2 s each, as the state machine's loop makes them, until it is done.
    let mut parts = 0;
    loop {
        parts += 1;
        assert!(parts < 30, "the slice progresses");
        let inv = Invocation::new(format!("part-{parts}"), Some(Duration::from_millis(1200)));
        let out = engine.backfill_slice(&task, &inv).await.unwrap();
        if out.done {
            break;
        }
        assert_eq!(out.backfill_slice.part, task.part + 1);
        assert!(out.backfill_slice.read_from.is_some());
        task = out.backfill_slice;
    }
    assert!(parts > 1, "the slice needed more than one invocation");
    let s = engine
        .backfill_commit(&planned.backfill_id, &Invocation::new("commit", None))
        .await
        .unwrap();
    assert_eq!(s.status, Status::Completed);
    // Every row, each part's objects listed; a row on a part's boundary may be read twice.
    let lines = env.lines(&s.objects).await;
    let ids: std::collections::HashSet<&str> =
        lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 120);
    assert!(lines.len() <= 120 + parts, "{} lines", lines.len());
    assert_eq!(s.new_cursor.as_deref(), Some("2024-01-10T22:00:00Z"));
}

/// A slice step must be the plan's, and the commit proves that the parts tile every planned
/// slice: a hand-sent event with another end, a part that does not start where the one
/// before it ended, or a part stored with other bounds fails, naming it, and nothing is
/// committed (issue 20, 4).
async fn a_commit_refuses_parts_that_do_not_tile_the_plan(kind: Kind) {
    let env = Env::new(kind).await;
    let api = fixture::records_api(records(), Paging::LinkHeader(7));
    let (src, settings) = sliced(&env, &api.url("/users"));
    let engine = engine(&env, &src, &settings);
    let inv = Invocation::new("plan", None);
    let planned = engine
        .backfill_plan(&start("2024-01-01T00:00:00Z", "2024-01-04T00:00:00Z"), &inv)
        .await
        .unwrap();
    let slices: Vec<SliceTask> = serde_json::from_slice(&env.get(&planned.key).await).unwrap();

    // Another end than the plan's.
    let short = SliceTask {
        until: Some("2024-01-02T12:00:00Z".into()),
        ..slices[1].clone()
    };
    let err = engine.backfill_slice(&short, &inv).await.unwrap_err();
    assert_eq!(err.kind(), "InvalidEvent", "{err}");
    assert!(err.to_string().contains("backfill_slice.until"), "{err}");
    // A slice the plan does not have.
    let stray = SliceTask {
        since: "2024-01-01T06:00:00Z".into(),
        ..slices[0].clone()
    };
    let err = engine.backfill_slice(&stray, &inv).await.unwrap_err();
    assert!(err.to_string().contains("no slice from"), "{err}");
    // A second part where no first part went before it.
    let ahead = SliceTask {
        part: 1,
        read_from: Some("2024-01-01T18:00:00Z".into()),
        ..slices[0].clone()
    };
    let err = engine.backfill_slice(&ahead, &inv).await.unwrap_err();
    assert!(
        err.to_string().contains("backfill_slice.read_from"),
        "{err}"
    );

    // Every slice read as planned; then one part is found stored with another end (a hand
    // edit, or an event an older version accepted): the commit names the gap.
    for s in &slices {
        assert!(engine.backfill_slice(s, &inv).await.unwrap().done);
    }
    let keys = env.keys().await;
    let part_key = keys
        .iter()
        .find(|k| k.ends_with("/parts/20240102T000000Z-p0.json"))
        .expect("the second slice's part");
    let mut part: Value = serde_json::from_slice(&env.get(part_key).await).unwrap();
    part["slice"]["until"] = "2024-01-02T12:00:00Z".into();
    env.lake
        .put(part_key, serde_json::to_vec(&part).unwrap())
        .await;
    let err = engine
        .backfill_commit(&planned.backfill_id, &Invocation::new("c", None))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("a gap"), "{err}");
    assert!(err.to_string().contains("2024-01-02T12:00:00Z"), "{err}");
    let state = env.state().await;
    assert_eq!(
        (state.version, state.cursor),
        (0, None),
        "nothing committed"
    );
}

/// A part that stops at the deadline between rows of one second: the next part asks again
/// from before that second, so an API that reads `since < t` still returns the rows of it
/// the part did not reach (contract v3, "Edges never lose a row"; issue 20, 3).
async fn parts_lose_no_row_on_their_edges_with_an_updated_after_api(kind: Kind) {
    let env = Env::new(kind).await;
    // 120 rows, 4 on each whole second; 3 a page at 100 ms.
    let base = ts("2024-01-01T00:00:00Z").timestamp_millis();
    let rows: Vec<(i64, Value)> = (0..120)
        .map(|i| fixture::edge_user(&format!("t{i:03}"), base + 1000 + (i / 4) * 1000))
        .collect();
    let api = FixtureApi::start(move |req, _| {
        fixture::edges_page(&rows, fixture::Edges::UpdatedAfter, 3, req)
            .delayed(Duration::from_millis(100))
    });
    let src = common::source(&api.url("/users"));
    let settings = env.settings();
    let engine = engine(&env, &src, &settings);
    let planned = engine
        .backfill_plan(
            &start("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"),
            &Invocation::new("plan", None),
        )
        .await
        .unwrap();
    let mut task: SliceTask =
        serde_json::from_slice::<Vec<SliceTask>>(&env.get(&planned.key).await).unwrap()[0].clone();
    let mut parts = 0;
    loop {
        parts += 1;
        assert!(parts < 40, "the slice progresses");
        let inv = Invocation::new(format!("part-{parts}"), Some(Duration::from_millis(1000)));
        let out = engine.backfill_slice(&task, &inv).await.unwrap();
        if out.done {
            break;
        }
        task = out.backfill_slice;
    }
    assert!(parts > 2, "the slice needed several invocations");
    let s = engine
        .backfill_commit(&planned.backfill_id, &Invocation::new("commit", None))
        .await
        .unwrap();
    let lines = env.lines(&s.objects).await;
    let ids: std::collections::HashSet<&str> =
        lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 120, "every row, over {parts} parts");
}

/// The commit hands on what the backfill wrote: the next scheduled run and the next audit
/// skip those rows instead of writing them again, and call none of them late or missed by
/// the buffer (issue 20, 5).
async fn after_a_backfill_the_next_run_and_audit_write_nothing_again(kind: Kind) {
    let env = Env::new(kind).await;
    let api = fixture::records_api(records(), Paging::LinkHeader(7));
    let (src, settings) = sliced(&env, &api.url("/users"));
    let engine = engine(&env, &src, &settings);
    let s = engine
        .backfill(
            &start("2024-01-01T00:00:00Z", "2024-01-11T00:00:00Z"),
            &Invocation::new("backfill", None),
            4,
            |_, _, _, _| {},
        )
        .await
        .unwrap();
    assert_eq!(s.counts.records_written, 120, "{s:?}");
    assert_eq!(s.new_cursor.as_deref(), Some("2024-01-10T22:00:00Z"));

    // The next run re-reads the buffer (20:00 and 22:00): both rows are the backfill's.
    let run = env.scheduled(&src).await;
    assert_eq!(run.counts.records_fetched, 2, "{run:?}");
    assert_eq!(
        run.counts.records_written, 0,
        "nothing written again: {run:?}"
    );
    assert_eq!(run.counts.records_skipped, 2);
    assert_eq!(run.counts.late_records, 0);

    // An audit re-reads 24 hours before the cursor: 13 rows, all the backfill's.
    let audit = replay_sync::RunRequest {
        audit: true,
        trigger: replay_sync::event::Trigger::Manual,
        ..replay_sync::RunRequest::scheduled()
    };
    let a = env.run_with(&src, &settings, &audit).await.unwrap();
    assert_eq!(a.counts.records_fetched, 13, "{a:?}");
    assert_eq!(a.counts.records_written, 0, "nothing written again: {a:?}");
    assert_eq!(a.counts.records_skipped, 13);
    assert_eq!(
        (a.counts.late_records, a.counts.records_missed_by_buffer),
        (0, 0),
        "no false lateness: {a:?}"
    );
}

/// Leaving `to` out costs nothing: the range is sliced up to the planning time, and only
/// the last slice is open (issue 20, 6).
async fn a_backfill_without_to_is_sliced_up_to_the_planning_time(kind: Kind) {
    let env = Env::new(kind).await;
    let api = fixture::records_api(records(), Paging::LinkHeader(7));
    let (src, settings) = sliced(&env, &api.url("/users"));
    let engine = engine(&env, &src, &settings);
    let open = BackfillStart {
        from: "2024-01-01T00:00:00Z".into(),
        to: None,
        slice_hours: Some(24.0 * 60.0),
        max_concurrency: None,
    };
    let inv = Invocation::new("plan", None);
    let planned = engine.backfill_plan(&open, &inv).await.unwrap();
    let slices: Vec<SliceTask> = serde_json::from_slice(&env.get(&planned.key).await).unwrap();
    assert!(
        slices.len() > 10,
        "sliced up to now: {} slices",
        slices.len()
    );
    assert!(slices[..slices.len() - 1].iter().all(|s| s.until.is_some()));
    assert_eq!(slices.last().unwrap().until, None, "the top slice is open");
    assert_eq!(slices[1].since, "2024-03-01T00:00:00Z");
    let s = engine
        .backfill(&open, &Invocation::new("run", None), 8, |_, _, _, _| {})
        .await
        .unwrap();
    assert_eq!(s.status, Status::Completed, "{s:?}");
    let ids: std::collections::HashSet<String> = env
        .lines(&s.objects)
        .await
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 120);
    assert_eq!(s.new_cursor.as_deref(), Some("2024-01-10T22:00:00Z"));
}
