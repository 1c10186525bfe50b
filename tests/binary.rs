//! The real `replay-sync` binary in its local mode (`replay-sync invoke`), as an operator
//! runs it: events from `events/`, configuration from the environment, summary on stdout.

#[macro_use]
mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::fixture::{FixtureApi, Response};
use common::{peers, summary};
use serde_json::Value;

fn event(name: &str) -> String {
    peers::project_dir()
        .join("events")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// Runs the binary in `cwd` with only the given environment (plus PATH and HOME).
fn run(cwd: &Path, env: &[(&str, String)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_replay-sync"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", cwd)
        .current_dir(cwd)
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run replay-sync")
}

fn playground_env() -> Vec<(&'static str, String)> {
    vec![(
        "API_URL",
        format!("{}/incremental/timestamp", peers::playground().url()),
    )]
}

fn count_lines(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "jsonl") {
            n += std::fs::read_to_string(&p).unwrap().lines().count();
        }
    }
    n
}

#[test]
fn scheduled_run_on_the_embedded_defaults_lands_every_user() {
    let dir = tempfile::tempdir().unwrap();
    let users = peers::playground_users(peers::playground());

    let s = summary(&run(dir.path(), &playground_env(), &["invoke"]));

    assert_eq!(s["status"], "completed");
    assert_eq!(s["trigger"], "scheduled");
    assert!(s["records_written"].as_u64().unwrap() > 0);
    assert_eq!(s["records_written"].as_u64().unwrap(), users.len() as u64);
    // The defaults: file state and directory output under ./.replay-sync/.
    let state: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(".replay-sync/state.json")).unwrap())
            .unwrap();
    assert_eq!(state["user"]["version"], 1);
    assert_eq!(state["user"]["last_timestamp"], s["new_cursor"]);
    assert_eq!(
        count_lines(&dir.path().join(".replay-sync/output/user")),
        users.len()
    );
}

#[test]
fn scheduled_event_file_runs_a_normal_sync() {
    let dir = tempfile::tempdir().unwrap();
    let first = summary(&run(
        dir.path(),
        &playground_env(),
        &["invoke", "--event", &event("scheduled.json")],
    ));
    assert_eq!(first["status"], "completed");
    assert_eq!(first["since"], Value::Null);
    assert!(first["records_written"].as_u64().unwrap() > 0);

    // The same event again is a duplicate delivery: recognised by its id, nothing done.
    let duplicate = summary(&run(
        dir.path(),
        &playground_env(),
        &["invoke", "--event", &event("scheduled.json")],
    ));
    assert_eq!(duplicate["status"], "skipped");
    assert_eq!(duplicate["records_fetched"], 0);
    assert_eq!(duplicate["new_cursor"], first["new_cursor"]);
    assert!(
        duplicate["reason"].as_str().unwrap().contains("53dc4d37"),
        "{duplicate}"
    );

    // The next scheduled event (a new id) is a normal run.
    let next_file = common::scheduled_event(dir.path(), "a-later-event");
    let second = summary(&run(
        dir.path(),
        &playground_env(),
        &["invoke", "--event", &next_file],
    ));
    assert_eq!(second["status"], "completed");
    assert_eq!(second["previous_cursor"], first["new_cursor"]);
    assert!(
        second["since"].is_string(),
        "the second run sends the buffered since"
    );
    assert!(
        second["records_fetched"].as_u64().unwrap() < first["records_fetched"].as_u64().unwrap()
    );
}

#[test]
fn manual_replay_event_file_replays_from_the_override() {
    let dir = tempfile::tempdir().unwrap();
    let users = peers::playground_users(peers::playground());
    let first = summary(&run(dir.path(), &playground_env(), &["invoke"]));

    let s = summary(&run(
        dir.path(),
        &playground_env(),
        &["invoke", "--event", &event("manual-replay.json")],
    ));

    assert_eq!(s["status"], "completed");
    assert_eq!(s["trigger"], "manual");
    assert_eq!(s["previous_cursor"], "2024-01-15T10:30:00Z");
    assert_eq!(
        s["since"], "2024-01-15T04:30:00Z",
        "override minus the event's 6 h buffer"
    );
    assert_eq!(s["buffer_hours"], 6.0);
    assert_eq!(s["records_fetched"].as_u64().unwrap(), users.len() as u64);
    assert_eq!(
        s["new_cursor"], first["new_cursor"],
        "a replay does not move the cursor backwards"
    );
}

#[test]
fn dry_run_event_file_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();

    let s = summary(&run(
        dir.path(),
        &playground_env(),
        &["invoke", "--event", &event("dry-run.json")],
    ));

    assert_eq!(s["status"], "dry_run");
    assert!(s["records_fetched"].as_u64().unwrap() > 0);
    assert_eq!(s["checkpoints"], 0);
    assert!(s["planned_cursor"].is_string());
    assert!(
        !dir.path().join(".replay-sync").exists(),
        "no state and no output were written"
    );
}

#[test]
fn event_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_replay-sync"));
    let out = cmd
        .env_clear()
        .env(
            "API_URL",
            format!("{}/incremental/timestamp", peers::playground().url()),
        )
        .current_dir(dir.path())
        .args(["invoke", "--event", "-"])
        .stdin(std::fs::File::open(event("dry-run.json")).unwrap())
        .output()
        .unwrap();
    assert_eq!(summary(&out)["status"], "dry_run");
}

#[test]
fn bad_configuration_fails_at_start_with_one_line_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let api = ("API_URL", "http://127.0.0.1:9/x".to_string());
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (vec![], "API_URL"),
        (
            vec![api.clone(), ("BUFFER_HOURS", "-2".into())],
            "BUFFER_HOURS",
        ),
        (
            vec![api.clone(), ("BUFFER_HOURS", "two".into())],
            "BUFFER_HOURS",
        ),
        (
            vec![api.clone(), ("STATE_STORE", "redis://x".into())],
            "STATE_STORE",
        ),
        (vec![api.clone(), ("OUTPUT", "gs://b/p".into())], "OUTPUT"),
        // Once a panic (an Instant overflowed), not a configuration error.
        (
            vec![
                api.clone(),
                ("API_TIMEOUT_SECONDS", "18446744073709551615".into()),
            ],
            "API_TIMEOUT_SECONDS",
        ),
        (
            vec![api.clone(), ("MAX_RECORD_BYTES", "-1".into())],
            "MAX_RECORD_BYTES",
        ),
    ];
    for (env, var) in cases {
        let out = run(dir.path(), &env, &["invoke"]);
        assert_eq!(out.status.code(), Some(2), "{var}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(var), "{err}");
        assert!(out.stdout.is_empty());
    }
    assert!(!dir.path().join(".replay-sync").exists());
}

#[test]
fn bad_event_is_rejected_before_anything_is_read_or_written() {
    let dir = tempfile::tempdir().unwrap();
    let ev = dir.path().join("typo.json");
    std::fs::write(&ev, r#"{"dry_rn": true}"#).unwrap();
    // The API would fail the test if it were called.
    let api = FixtureApi::start(|_, _| Response::raw(500, "must not be called"));
    let env = vec![("API_URL", api.url("/x"))];

    let out = run(
        dir.path(),
        &env,
        &["invoke", "--event", ev.to_str().unwrap()],
    );

    // One rule: bad arguments, configuration or event is bad usage (2), refused before
    // any I/O; 1 is a run that failed.
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("InvalidEvent") && err.contains("dry_rn"),
        "{err}"
    );
    assert!(api.requests().is_empty(), "the API was not called");
    assert!(
        !dir.path().join(".replay-sync").exists(),
        "nothing was written"
    );
}

#[test]
fn upstream_client_error_fails_the_run_with_status_and_excerpt() {
    let dir = tempfile::tempdir().unwrap();
    let api = FixtureApi::start(|_, _| Response::raw(404, r#"{"error": "no such endpoint"}"#));

    let out = run(dir.path(), &[("API_URL", api.url("/missing"))], &["invoke"]);

    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("UpstreamHttpError")
            && err.contains("404")
            && err.contains("no such endpoint"),
        "{err}"
    );
    assert_eq!(api.requests().len(), 1, "a 404 is not retried");
    let state: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(".replay-sync/state.json")).unwrap())
            .unwrap();
    let item = &state["user"];
    assert_eq!(item["version"], 0, "no checkpoint: {state}");
    assert_eq!(item["last_timestamp"], Value::Null, "{state}");
    assert_eq!(
        item["lease_owner"],
        Value::Null,
        "the failed run released its lease: {state}"
    );
}

#[test]
fn logs_never_contain_record_contents() {
    let dir = tempfile::tempdir().unwrap();
    let users = peers::playground_users(peers::playground());
    let out = run(dir.path(), &playground_env(), &["invoke"]);
    let s = summary(&out);
    assert!(s["records_written"].as_u64().unwrap() > 0);
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(
        logs.contains("run finished"),
        "the run logs its summary: {logs}"
    );
    for u in &users {
        for field in ["email", "name", "address"] {
            let v = u[field].as_str().unwrap();
            assert!(!logs.contains(v), "the logs contain a user's {field}");
        }
    }
}

#[test]
fn lambda_log_format_json_gives_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = playground_env();
    env.push(("AWS_LAMBDA_LOG_FORMAT", "JSON".into()));
    let out = run(dir.path(), &env, &["invoke"]);
    summary(&out);
    let logs = String::from_utf8_lossy(&out.stderr);
    let mut finished = None;
    for line in logs.lines() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["message"] == "run finished" {
            finished = Some(v);
        }
    }
    let finished = finished.expect("a structured 'run finished' line");
    // The summary's own word (`completed`), not the enum's Debug form.
    assert_eq!(finished["status"], "completed");
    assert!(finished["records_written"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_backends_from_the_environment() {
    let table = peers::unique("state");
    let bucket = peers::unique("lake");
    common::create_table(&table).await;
    common::create_bucket(&bucket).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = playground_env();
    env.extend([
        ("STATE_STORE", format!("dynamodb://{table}")),
        ("OUTPUT", format!("s3://{bucket}/lake/raw")),
        ("SYNC_ID", "users".to_string()),
    ]);
    env.extend(common::moto_env());
    let d = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || run(&d, &env, &["invoke"]))
        .await
        .unwrap();
    let s = summary(&out);

    assert_eq!(s["status"], "completed");
    assert!(s["records_written"].as_u64().unwrap() > 0);
    let lake = common::Lake::S3 {
        client: common::s3_client(),
        bucket,
        prefix: "lake/raw".into(),
    };
    let keys = lake.keys().await;
    assert!(
        keys.iter()
            .any(|k| k.starts_with("lake/raw/users/") && k.ends_with(".jsonl")),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.starts_with("lake/raw/users/_manifests/")),
        "{keys:?}"
    );
    let item = common::dynamodb_client()
        .get_item()
        .table_name(&table)
        .key(
            "sync_id",
            aws_sdk_dynamodb::types::AttributeValue::S("users".into()),
        )
        .send()
        .await
        .unwrap();
    let item = item.item().expect("the state item exists");
    assert_eq!(
        item["last_timestamp"].as_s().unwrap(),
        s["new_cursor"].as_str().unwrap()
    );
    assert_eq!(item["version"].as_n().unwrap(), "1");
    assert!(!dir.path().join(".replay-sync").exists(), "nothing local");
}

#[test]
fn metrics_are_emitted_in_embedded_metric_format() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &playground_env(), &["invoke"]);
    let s = summary(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let emf: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect();
    assert_eq!(emf.len(), 1, "one metrics line per run:\n{stderr}");
    let m = &emf[0];
    let def = &m["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(def["Namespace"], "ReplaySync");
    assert_eq!(def["Dimensions"][0], serde_json::json!(["Stream"]));
    assert!(m["CursorAgeSeconds"].as_f64().unwrap() > 0.0, "{m}");
    assert!(m["_aws"]["Timestamp"].as_i64().unwrap() > 1_700_000_000_000);
    assert_eq!(m["Stream"], "user");
    assert_eq!(m["Status"], "completed");
    let names: Vec<&str> = def["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["Name"].as_str().unwrap())
        .collect();
    for name in [
        "RecordsFetched",
        "RecordsWritten",
        "RecordsSkipped",
        "RecordsRejected",
        "RecordsStale",
        "LateRecords",
        "MaxLatenessSeconds",
        "BufferUsed",
        "DurationMs",
        "Runs",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
        assert!(m[name].is_number(), "{name} has a value: {m}");
    }
    assert!(m["RecordsWritten"].as_f64().unwrap() > 0.0);
    assert_eq!(
        m["RecordsWritten"].as_f64().unwrap(),
        s["records_written"].as_f64().unwrap()
    );
    assert_eq!(
        m["RecordsFetched"].as_f64().unwrap(),
        s["records_fetched"].as_f64().unwrap()
    );
}

#[test]
fn lateness_near_the_buffer_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let records = std::sync::Arc::new(std::sync::Mutex::new(vec![common::fixture::user(
        "a",
        "2024-01-15T10:00:00Z",
    )]));
    let api = common::fixture::shared_records_api(records.clone(), common::fixture::Paging::None);
    let env = [("API_URL", api.url("/x"))];
    let first = summary(&run(dir.path(), &env, &["invoke"]));
    assert_eq!(first["new_cursor"], "2024-01-15T10:00:00Z");

    // A row stamped 1 h 48 min before the cursor reaches the replica: 90 % of the 2 h buffer.
    records
        .lock()
        .unwrap()
        .push(common::fixture::user("b", "2024-01-15T08:12:00Z"));
    let out = run(dir.path(), &env, &["invoke"]);
    let s = summary(&out);
    assert_eq!(s["late_records"], 1);
    assert_eq!(s["max_lateness_seconds"], 6480.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warning = stderr
        .lines()
        .find(|l| l.contains("WARN") && l.contains("of the buffer"))
        .unwrap_or_else(|| panic!("a warning:\n{stderr}"));
    assert!(warning.contains("90 %"), "{warning}");
    let emf = stderr.lines().find(|l| l.contains("\"_aws\"")).unwrap();
    let m: Value = serde_json::from_str(emf).unwrap();
    assert_eq!(m["BufferUsed"], 0.9);
    assert_eq!(m["LateRecords"], 1.0);
}

#[test]
fn version_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &[], &["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("replay-sync {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn slices_are_configured_from_the_environment() {
    // 60 users over two days, 5 a page: with API_UNTIL_PARAM and FETCH_CONCURRENCY=3 the
    // window is read in ranges with an upper bound, and every user lands once.
    let records: Vec<Value> = (0..60)
        .map(|i| {
            common::fixture::user(
                &format!("s{i:02}"),
                &format!("2024-01-{:02}T{:02}:00:00Z", 14 + i / 24, i % 24),
            )
        })
        .collect();
    let api = common::fixture::records_api(records, common::fixture::Paging::LinkHeader(5));
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("API_URL", api.url("/users")),
        ("API_UNTIL_PARAM", "until".to_string()),
        ("FETCH_CONCURRENCY", "3".to_string()),
    ];
    let out = run(dir.path(), &env, &["invoke"]);
    let s = summary(&out);
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["records_fetched"], 60);
    assert_eq!(
        count_lines(&dir.path().join(".replay-sync/output/user")),
        60
    );
    let bounded = api
        .requests()
        .iter()
        .filter(|r| r.param("until").is_some())
        .count();
    assert!(bounded > 0, "ranges with an upper bound were read");
    // A first sync starts as one open slice: after its first page, the rest is split off
    // and read in ranges; slices name their objects after their start.
    let keys: Vec<String> = std::fs::read_dir(dir.path().join(".replay-sync/output/user"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jsonl"))
        .collect();
    assert!(
        keys.iter()
            .any(|k| k.starts_with("000000000000-full-start-")),
        "{keys:?}"
    );
}

#[test]
fn backfill_plan_event_file_plans_the_slices() {
    let api = common::fixture::records_api(vec![], common::fixture::Paging::LinkHeader(5));
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("API_URL", api.url("/users")),
        ("API_UNTIL_PARAM", "until".to_string()),
    ];
    let out = run(
        dir.path(),
        &env,
        &["invoke", "--event", &event("backfill-plan.json")],
    );
    let s = summary(&out);
    assert_eq!(s["slices"], 3, "{s}");
    let id = s["backfill_id"].as_str().unwrap();
    assert_eq!(id, "backfill-20240101T000000Z-20240104T000000Z-24h");
    let list: Value = serde_json::from_str(
        &std::fs::read_to_string(
            dir.path()
                .join(".replay-sync/output")
                .join(s["key"].as_str().unwrap()),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert_eq!(list[1]["since"], "2024-01-02T00:00:00Z");
    assert!(
        api.requests().is_empty(),
        "planning reads nothing from the API"
    );
}

#[test]
fn audit_event_file_heals_and_counts_what_the_buffer_missed() {
    let records = std::sync::Arc::new(std::sync::Mutex::new(vec![
        common::fixture::user("a", "2024-01-15T10:00:00Z"),
        common::fixture::user("b", "2024-01-15T11:00:00Z"),
    ]));
    let api = common::fixture::shared_records_api(records.clone(), common::fixture::Paging::None);
    let dir = tempfile::tempdir().unwrap();
    let env = [("API_URL", api.url("/users"))];
    let first = summary(&run(dir.path(), &env, &["invoke"]));
    assert_eq!(first["new_cursor"], "2024-01-15T11:00:00Z");
    // A row stamped 3 hours before the cursor reaches the replica only now: the 2-hour
    // buffer's next run does not re-read that far back.
    records
        .lock()
        .unwrap()
        .push(common::fixture::user("late", "2024-01-15T08:00:00Z"));
    let normal = summary(&run(dir.path(), &env, &["invoke"]));
    assert_eq!(normal["records_written"], 0, "{normal}");
    let out = run(
        dir.path(),
        &env,
        &["invoke", "--event", &event("audit.json")],
    );
    let audit = summary(&out);
    assert_eq!(
        audit["since"], "2024-01-14T11:00:00Z",
        "24 hours before the cursor"
    );
    assert_eq!(
        audit["records_written"], 1,
        "only what the lake lacks: {audit}"
    );
    assert_eq!(audit["records_skipped"], 2);
    assert_eq!(audit["records_missed_by_buffer"], 1);
    assert_eq!(audit["max_missed_lateness_seconds"], 3.0 * 3600.0);
    assert_eq!(
        audit["new_cursor"], "2024-01-15T11:00:00Z",
        "not moved back"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#""RecordsMissedByBuffer":1"#),
        "the metric: {err}"
    );
}
