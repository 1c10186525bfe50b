//! Several streams in one deployment (contract v3; issue 22): one `STREAMS_CONFIG` file, the
//! real binary, both backends. Three streams — the playground's users, the playground's
//! companies (keyed by `company_id`), and a fixture API of another shape (records under
//! `items`, keyed by `event_id`, stamped in epoch seconds, paged by page number) — each land
//! every row in their own folder with their own state item; one stream's failure, lease or
//! replay never touches another's.

#[macro_use]
mod common;

use std::collections::{BTreeMap, HashSet};
use std::process::{Command, Output};

use chrono::SubsecRound;
use common::fixture::{FixtureApi, Response};
use common::{Env, Kind, peers};
use replay_sync::state::{Lease, Plan, StateStore, SyncState};
use serde_json::{Value, json};

on_both_backends!(
    three_streams_land_every_row_in_their_own_folder_and_state,
    one_streams_api_down_fails_that_stream_only,
    a_held_lease_on_one_stream_never_blocks_the_others,
    a_manual_replay_of_one_stream_leaves_the_others_untouched,
    a_backfill_of_one_stream_reads_that_stream_only,
);

// Again as a principal holding exactly the template's grants for these streams (its file in
// S3: `tests/iam/principal.py`).
on_aws_with_iam_enforced!(
    three_streams_land_every_row_in_their_own_folder_and_state,
    one_streams_api_down_fails_that_stream_only,
    a_held_lease_on_one_stream_never_blocks_the_others,
    a_manual_replay_of_one_stream_leaves_the_others_untouched,
    a_backfill_of_one_stream_reads_that_stream_only,
);

/// How many rows the fixture stream serves.
const EVENTS: usize = 35;

/// An API of another shape: `{"items": [...]}`, `event_id`, `ts` in epoch seconds, `since`
/// in epoch seconds, page-number paging with the size sent as `per_page`; ends on a short
/// page. 35 rows a minute apart from 2024-01-15T08:00:00Z.
fn events_api() -> FixtureApi {
    let base = 1_705_305_600i64; // 2024-01-15T08:00:00Z
    let rows: Vec<Value> = (0..EVENTS as i64)
        .map(|i| json!({"event_id": format!("e{i:02}"), "ts": base + 60 * i, "kind": "click"}))
        .collect();
    FixtureApi::start(move |req, _| {
        let since: i64 = req
            .param("since")
            .map_or(0, |s| s.parse().expect("epoch s"));
        let page: usize = req.param("page").map_or(1, |p| p.parse().expect("page"));
        let size: usize = req
            .param("per_page")
            .map_or(10, |p| p.parse().expect("size"));
        let sel: Vec<&Value> = rows
            .iter()
            .filter(|r| r["ts"].as_i64().unwrap() >= since)
            .collect();
        let items: Vec<&Value> = sel
            .iter()
            .skip((page - 1) * size)
            .take(size)
            .copied()
            .collect();
        Response::json(&json!({ "items": items }))
    })
}

/// The streams file: users and companies from the playground, events from `events`; and
/// `extra` appended (another stream's table).
fn streams_file(events: &FixtureApi, extra: &str) -> String {
    let pg = peers::playground().url();
    format!(
        r#"
[streams.users]
API_URL = "{pg}/incremental/timestamp"

[streams.companies]
api_url = "{pg}/cursors/companies"
id_field = "company_id"
API_SINCE_PARAM = "updated_since"
BUFFER_HOURS = 6

[streams.events]
API_URL = "{events}"
API_RECORDS_FIELD = "items"
ID_FIELD = "event_id"
CURSOR_FIELD = "ts"
CURSOR_FORMAT = "epoch_s"
API_SINCE_FORMAT = "epoch_s"
API_PAGINATION = "page_number"
API_PAGE_SIZE = 10
API_LIMIT_PARAM = "per_page"
{extra}"#,
        events = events.url("/events"),
    )
}

/// A deployment of `env` with the streams file `text`: the file locally (a directory
/// backend), or an S3 object (`s3://…`, on AWS).
struct Deployment {
    vars: Vec<(&'static str, String)>,
    dir: tempfile::TempDir,
}

async fn deploy(env: &Env, text: &str) -> Deployment {
    let dir = tempfile::tempdir().unwrap();
    let mut vars = env.vars.clone();
    let location = match &env.lake {
        common::Lake::S3 { client, bucket, .. } => {
            client
                .put_object()
                .bucket(bucket)
                .key("config/streams.toml")
                .body(text.as_bytes().to_vec().into())
                .send()
                .await
                .expect("put the streams file");
            format!("s3://{bucket}/config/streams.toml")
        }
        common::Lake::Dir(_) => {
            let path = dir.path().join("streams.toml");
            std::fs::write(&path, text).unwrap();
            path.to_string_lossy().into_owned()
        }
    };
    vars.push(("STREAMS_CONFIG", location));
    Deployment { vars, dir }
}

impl Deployment {
    /// Runs `replay-sync ARGS` (with `events`, each `(name, JSON)`, written to files
    /// whose paths replace `@name` in the arguments).
    fn run(&self, args: &[&str], events: &[(&str, Value)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_replay-sync"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .current_dir(self.dir.path());
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        for a in args {
            match events.iter().find(|(n, _)| a.strip_prefix('@') == Some(*n)) {
                Some((name, ev)) => {
                    let path = self.dir.path().join(format!("{name}.json"));
                    std::fs::write(&path, ev.to_string()).unwrap();
                    cmd.arg(path);
                }
                None => {
                    cmd.arg(a);
                }
            }
        }
        cmd.output().expect("run replay-sync")
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The stdout of a run of every stream: its summaries by name.
fn by_stream(out: &Output) -> BTreeMap<String, Value> {
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(out)
        )
    });
    v.as_object()
        .expect("an object by stream")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The ids landed in stream `name`'s folder (its data objects only), read at `field`.
async fn landed(env: &Env, name: &str, field: &str) -> Vec<String> {
    let keys: Vec<String> = env
        .keys()
        .await
        .into_iter()
        .filter(|k| k.split('/').any(|seg| seg == name))
        .filter(|k| k.contains(".jsonl") && !k.contains("/_"))
        .collect();
    env.lines(&keys)
        .await
        .iter()
        .map(|l| match &l[field] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

/// Every company the playground serves, by id.
fn companies() -> HashSet<String> {
    let body = peers::http_get(
        peers::playground().port,
        "/cursors/companies?updated_since=1970-01-01T00:00:00Z",
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["company_id"].to_string())
        .collect()
}

fn users() -> HashSet<String> {
    peers::playground_users(peers::playground())
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect()
}

async fn three_streams_land_every_row_in_their_own_folder_and_state(kind: Kind) {
    let env = Env::new(kind).await;
    let api = events_api();
    let d = deploy(&env, &streams_file(&api, "")).await;

    let out = d.run(&["invoke"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let runs = by_stream(&out);
    assert_eq!(
        runs.keys().collect::<Vec<_>>(),
        ["companies", "events", "users"]
    );
    for (name, s) in &runs {
        assert_eq!(s["status"], "completed", "{name}: {s}");
        assert_eq!(s["sync_id"], name.as_str(), "{s}");
        assert!(s["records_written"].as_u64().unwrap() > 0, "{name}: {s}");
        assert_eq!(s["records_rejected"], 0, "{name}: {s}");
        for key in s["objects"].as_array().unwrap() {
            let key = key.as_str().unwrap();
            assert!(
                key.split('/').any(|seg| seg == name),
                "{name} writes in its own folder PREFIX/{name}/: {key}"
            );
        }
    }
    // Every row, each in its own stream, exactly once.
    let users_landed = landed(&env, "users", "id").await;
    assert_eq!(
        users_landed.iter().cloned().collect::<HashSet<_>>(),
        users()
    );
    assert_eq!(users_landed.len(), users().len(), "once each");
    let companies_landed = landed(&env, "companies", "company_id").await;
    assert_eq!(
        companies_landed.iter().cloned().collect::<HashSet<_>>(),
        companies()
    );
    assert!(!companies().is_empty());
    // Another shape's lines carry their key as `_record_id` (what the stream's Glue table
    // and its latest_by_id query partition by).
    assert_eq!(
        landed(&env, "companies", "_record_id")
            .await
            .into_iter()
            .collect::<HashSet<_>>(),
        companies()
    );
    let events_landed = landed(&env, "events", "event_id").await;
    assert_eq!(events_landed.len(), EVENTS, "{events_landed:?}");
    assert_eq!(events_landed.iter().collect::<HashSet<_>>().len(), EVENTS);
    // On S3, each fingerprint set carries the tag the lifecycle rule expires it by.
    if let common::Lake::S3 { client, bucket, .. } = &env.lake {
        let sets: Vec<String> = env
            .keys()
            .await
            .into_iter()
            .filter(|k| k.contains("/_fingerprints/"))
            .collect();
        assert_eq!(sets.len(), 3, "a set per stream: {sets:?}");
        let (k, v) = replay_sync::sink::s3::FINGERPRINT_TAG
            .split_once('=')
            .unwrap();
        for key in &sets {
            let tags = client
                .get_object_tagging()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap();
            assert!(
                tags.tag_set()
                    .iter()
                    .any(|t| t.key() == k && t.value() == v),
                "{key}: {:?}",
                tags.tag_set()
            );
        }
    }
    // Each its own state item, its own cursor and buffer.
    for name in ["users", "companies", "events"] {
        let st = env.state.load(name).await.unwrap();
        assert!(st.cursor.is_some(), "{name}: {st:?}");
        assert_eq!(st.version, 1, "{name}: one checkpoint");
    }
    assert_eq!(
        runs["companies"]["buffer_hours"], 6.0,
        "the stream's own buffer"
    );
    assert_eq!(runs["users"]["buffer_hours"], 2.0, "the environment's");
    assert_eq!(
        env.state.load(&env.sync_id).await.unwrap(),
        SyncState::default(),
        "SYNC_ID is not a stream when a file names them"
    );

    // A second run writes nothing new in any stream.
    let out = d.run(&["invoke"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    for (name, s) in by_stream(&out) {
        assert_eq!(s["status"], "completed", "{name}: {s}");
        assert!(
            s["records_fetched"].as_u64().unwrap() > 0,
            "{name} re-read its buffer: {s}"
        );
        if name != "companies" {
            assert_eq!(s["records_written"], 0, "{name}: {s}");
        }
    }
    // The playground touches its companies every few seconds (a new updatedAt): those are
    // new versions; what the second run wrote is only those, no version twice.
    let versions = landed(&env, "companies", "updatedAt").await;
    let ids = landed(&env, "companies", "company_id").await;
    let pairs: HashSet<(String, String)> = ids.into_iter().zip(versions).collect();
    assert_eq!(
        pairs.len(),
        landed(&env, "companies", "company_id").await.len(),
        "no company version written twice: {pairs:?}"
    );
    // One stream by name: the summary alone, as with a single stream.
    let out = d.run(&["invoke", "--stream", "events"], &[]);
    let s = common::summary(&out);
    assert_eq!(
        (s["sync_id"].as_str(), s["status"].as_str()),
        (Some("events"), Some("completed"))
    );
    assert_eq!(env.state.load("events").await.unwrap().version, 3);
    assert_eq!(env.state.load("users").await.unwrap().version, 2);
}

async fn one_streams_api_down_fails_that_stream_only(kind: Kind) {
    let env = Env::new(kind).await;
    let api = events_api();
    let down = "\n[streams.down]\nAPI_URL = \"http://127.0.0.1:9/nothing\"\nAPI_MAX_ATTEMPTS = 1\n";
    let d = deploy(&env, &streams_file(&api, down)).await;

    let out = d.run(&["invoke"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let runs = by_stream(&out);
    assert_eq!(
        runs["down"]["error_type"], "UpstreamUnreachable",
        "{}",
        runs["down"]
    );
    for name in ["users", "companies", "events"] {
        assert_eq!(runs[name]["status"], "completed", "{name}: {}", runs[name]);
        assert!(runs[name]["records_written"].as_u64().unwrap() > 0);
    }
    assert_eq!(env.state.load("down").await.unwrap().cursor, None);
    // Alone, as its schedule invokes it: that invocation fails, another's does not.
    let out = d.run(&["invoke", "--stream", "down"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("UpstreamUnreachable"),
        "{}",
        stderr(&out)
    );
    let out = d.run(&["invoke", "--stream", "users"], &[]);
    assert_eq!(common::summary(&out)["status"], "completed");
}

async fn a_held_lease_on_one_stream_never_blocks_the_others(kind: Kind) {
    let env = Env::new(kind).await;
    let api = events_api();
    let d = deploy(&env, &streams_file(&api, "")).await;
    // Another invocation holds the lease on users for ten minutes.
    let now = chrono::Utc::now().trunc_subsecs(3);
    let lease = Lease {
        owner: "a-stuck-invocation".into(),
        expires_at: now + chrono::TimeDelta::minutes(10),
    };
    let plan = Plan {
        version: 0,
        since: None,
        until: now,
    };
    assert!(
        env.state
            .try_lease("users", &SyncState::default(), &lease, &plan)
            .await
            .unwrap()
    );

    let out = d.run(&["invoke"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let runs = by_stream(&out);
    assert_eq!(runs["users"]["status"], "skipped", "{}", runs["users"]);
    assert_eq!(runs["users"]["records_written"], 0);
    for name in ["companies", "events"] {
        assert_eq!(runs[name]["status"], "completed", "{name}: {}", runs[name]);
        assert!(runs[name]["records_written"].as_u64().unwrap() > 0);
    }
    let users = env.state.load("users").await.unwrap();
    assert_eq!(users.lease, Some(lease), "the lease is its holder's still");
    assert_eq!(users.cursor, None);
}

async fn a_manual_replay_of_one_stream_leaves_the_others_untouched(kind: Kind) {
    let env = Env::new(kind).await;
    let api = events_api();
    let d = deploy(&env, &streams_file(&api, "")).await;
    assert!(d.run(&["invoke"], &[]).status.success());
    let before: Vec<SyncState> = {
        let mut v = Vec::new();
        for name in ["companies", "users"] {
            v.push(env.state.load(name).await.unwrap());
        }
        v
    };
    let replay = json!({
        "stream": "events",
        "state_override": {"last_timestamp": "2024-01-15T08:20:00Z"},
        "rewind": true
    });
    let out = d.run(&["invoke", "--event", "@replay"], &[("replay", replay)]);
    let s = common::summary(&out);
    assert_eq!(s["sync_id"], "events");
    assert_eq!(s["status"], "completed", "{s}");
    assert!(s["records_fetched"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(env.state.load("events").await.unwrap().version, 2);
    let mut after = Vec::new();
    for name in ["companies", "users"] {
        after.push(env.state.load(name).await.unwrap());
    }
    assert_eq!(before, after, "the other streams' state is untouched");

    // The same replay naming a stream that does not exist: refused, naming the streams.
    let bad = json!({"stream": "evnts", "dry_run": true});
    let out = d.run(&["invoke", "--event", "@bad"], &[("bad", bad)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("InvalidEvent") && err.contains("companies, events, users"),
        "{err}"
    );
    // --stream and an event naming another: refused.
    let other = json!({"stream": "users", "dry_run": true});
    let out = d.run(
        &["invoke", "--stream", "events", "--event", "@other"],
        &[("other", other)],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

async fn a_backfill_of_one_stream_reads_that_stream_only(kind: Kind) {
    let env = Env::new(kind).await;
    let api = events_api();
    let d = deploy(&env, &streams_file(&api, "")).await;
    // Several streams: a backfill must name one.
    let out = d.run(&["backfill", "--from", "2024-01-15T00:00:00Z"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("name one"), "{}", stderr(&out));

    let out = d.run(
        &[
            "backfill",
            "--stream",
            "events",
            "--from",
            "2024-01-15T00:00:00Z",
            "--to",
            "2024-01-16T00:00:00Z",
        ],
        &[],
    );
    let s = common::summary(&out);
    assert_eq!(s["sync_id"], "events");
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["records_written"], EVENTS as u64, "{s}");
    assert_eq!(landed(&env, "events", "event_id").await.len(), EVENTS);
    assert!(landed(&env, "users", "id").await.is_empty());
    for name in ["companies", "users"] {
        assert_eq!(
            env.state.load(name).await.unwrap(),
            SyncState::default(),
            "{name}"
        );
    }
}

/// Start-up validation through the binary: each bad file is one line on stderr naming the
/// stream and the key, exit 2, nothing read or written.
#[test]
fn a_bad_streams_file_is_one_line_naming_the_stream_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let case = |text: &str, extra: &[(&str, &str)]| -> String {
        let path = dir.path().join("streams.toml");
        std::fs::write(&path, text).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_replay-sync"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .current_dir(dir.path())
            .env("STREAMS_CONFIG", &path)
            .env("API_AUTH_TOKEN", "tok-s3cret")
            .env("API_AUTH", "header")
            .env(
                "STATE_STORE",
                format!("file://{}", dir.path().join("s.json").display()),
            )
            .env("OUTPUT", format!("file://{}", out_dir.display()))
            .arg("invoke");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(out.stdout.is_empty());
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(!err.contains("tok-s3cret"), "{err}");
        err
    };
    let url = "API_URL = \"http://127.0.0.1:9/x\"\n";
    let e = case(&format!("[streams.users]\n{url}APIURL = \"x\"\n"), &[]);
    assert!(
        e.contains("stream `users`") && e.contains("`APIURL`"),
        "{e}"
    );
    let e = case(
        &format!("[streams.users]\n{url}[streams.users]\n{url}"),
        &[],
    );
    assert!(e.contains("STREAMS_CONFIG") && e.contains("line 3"), "{e}");
    let e = case(&format!("[streams.\"us ers\"]\n{url}"), &[]);
    assert!(
        e.contains("stream `us ers`") && e.contains("Glue table"),
        "{e}"
    );
    let e = case(
        &format!("[streams.users]\n{url}BUFFER_HOURS = \"two\"\n"),
        &[],
    );
    assert!(e.contains("stream `users`: BUFFER_HOURS"), "{e}");
    let e = case(
        &format!("[streams.users]\n{url}API_AUTH_TOKEN = 7\nAPI_PAGINATION = \"sideways\"\n"),
        &[],
    );
    assert!(e.contains("stream `users`: API_PAGINATION"), "{e}");
    let e = case(
        &format!("[streams.users]\n{url}"),
        &[("STREAM_NAMES", "users,orders")],
    );
    assert!(e.contains("STREAM_NAMES") && e.contains("orders"), "{e}");
    let e = case("", &[]);
    assert!(e.contains("no [streams.NAME]"), "{e}");
    let missing = dir.path().join("nope.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_replay-sync"))
        .env_clear()
        .env("STREAMS_CONFIG", &missing)
        .env("OUTPUT", format!("file://{}", out_dir.display()))
        .arg("invoke")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));
    assert!(!out_dir.exists(), "nothing written");
}

/// Without a streams file the environment is the one stream it always was: an event
/// naming that stream (`SYNC_ID`) works, another name is refused naming it.
#[test]
fn without_a_file_the_environment_is_the_one_stream() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_replay-sync"))
            .env_clear()
            .current_dir(dir.path())
            .env(
                "API_URL",
                format!("{}/incremental/timestamp", peers::playground().url()),
            )
            .env("SYNC_ID", "people")
            .env("STREAM_NAMES", "people")
            .args(args)
            .output()
            .unwrap()
    };
    let s = common::summary(&run(&["invoke", "--stream", "people"]));
    assert_eq!(
        (s["sync_id"].as_str(), s["status"].as_str()),
        (Some("people"), Some("completed"))
    );
    assert!(s["records_written"].as_u64().unwrap() > 0);
    let out = run(&["invoke", "--stream", "users"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no stream \"users\"; the streams are: people"),
        "{}",
        stderr(&out)
    );
}
