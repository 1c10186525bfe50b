//! Probes of a hostile API and a careless operator: what once leaked a credential, made the
//! lake unreadable, lost checkpoints, panicked or ran forever. Each case is what a user or an
//! API did; each assertion fails without its fix.

#[macro_use]
mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::fixture::{self, FixtureApi, Paging, Response, user};
use common::{Env, Kind, manual, source, ts};
use replay_sync::{RunRequest, Status};
use serde_json::{Value, json};

on_both_backends!(
    half_a_lease_reads_as_no_lease,
    a_version_that_cannot_be_incremented_is_refused,
    a_cursor_in_year_zero_sends_a_valid_since,
    a_retry_from_a_restored_state_converges_on_the_same_keys,
);

/// Runs the binary in `cwd` with only `env` (plus PATH and HOME), JSON logs on.
fn run(cwd: &Path, env: &[(&str, String)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_replay-sync"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", cwd)
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .current_dir(cwd)
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run replay-sync")
}

fn all_output(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// An API that answers every request with `status` and a body that echoes the request's
/// headers and URL back, with a user's email, as some frameworks' debug pages do.
fn echoing_api(status: u16) -> FixtureApi {
    FixtureApi::start(move |req, _| {
        let body = json!({
            "error": "denied for ann.lee@example.com",
            "request": {"target": req.target, "headers": req.headers},
        });
        Response::raw(status, body.to_string())
    })
}

fn assert_clean(out: &Output, secrets: &[&str]) {
    let all = all_output(out);
    for s in secrets {
        assert!(!all.contains(s), "{s:?} was printed:\n{all}");
    }
    assert!(
        !all.contains("ann.lee@example.com"),
        "an email was printed:\n{all}"
    );
}

#[test]
fn a_bearer_token_echoed_in_an_error_body_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let token = "tok-3f9a/2b+Q==";
    let api = echoing_api(401);
    let out = run(
        dir.path(),
        &[
            ("API_URL", api.url("/x?key=tok-3f9a")),
            ("API_AUTH_TOKEN", token.into()),
        ],
        &["invoke"],
    );
    assert_eq!(out.status.code(), Some(1));
    // The API did get it, and did echo it.
    let sent = &api.requests()[0].headers;
    assert!(sent.iter().any(|h| h.contains(token)), "{sent:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HTTP 401") && err.contains("***"), "{err}");
    assert_clean(&out, &[token, "3f9a", "tok-3f9a\\/2b"]);
}

#[test]
fn an_api_key_header_echoed_by_every_retry_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let key = "k3y-7c1d-e8f0";
    let api = echoing_api(500);
    let out = run(
        dir.path(),
        &[
            ("API_URL", api.url("/x")),
            ("API_AUTH_TOKEN", key.into()),
            ("API_AUTH_SCHEME", "none".into()),
            ("API_AUTH_HEADER", "X-Api-Key".into()),
            ("API_MAX_ATTEMPTS", "3".into()),
        ],
        &["invoke"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(api.requests().len(), 3, "retried");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("retrying API request").count(),
        2,
        "each retry warns: {err}"
    );
    assert_clean(&out, &[key]);
}

#[test]
fn url_user_info_and_its_basic_value_are_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let api = echoing_api(403);
    let url = api
        .url("/x")
        .replace("http://", "http://svc-user:pa55%2Fw0rd@");
    let out = run(dir.path(), &[("API_URL", url)], &["invoke"]);
    assert_eq!(out.status.code(), Some(1));
    let sent = &api.requests()[0].headers;
    // base64("svc-user:pa55/w0rd")
    let basic = "c3ZjLXVzZXI6cGE1NS93MHJk";
    assert!(
        sent.iter().any(|h| h.contains(basic)),
        "the client sent Basic: {sent:?}"
    );
    assert_clean(&out, &[basic, "pa55", "svc-user"]);
}

#[test]
fn emails_and_tokens_in_a_next_page_url_are_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let api = FixtureApi::start(|req, _| {
        if req.path == "/x" {
            Response::raw(
                200,
                r#"{"data": [], "next": "/users/ann.lee@example.com/tok-99aa/p2?token=tok-99aa"}"#,
            )
        } else {
            Response::raw(404, "no page for ann.lee@example.com")
        }
    });
    let out = run(
        dir.path(),
        &[
            ("API_URL", api.url("/x")),
            ("API_NEXT_PAGE_FIELD", "next".into()),
            ("API_AUTH_TOKEN", "tok-99aa".into()),
        ],
        &["invoke"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(api.requests().len(), 2, "the next page was requested");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/users/[email]/***/p2"), "{err}");
    assert_clean(&out, &["tok-99aa"]);
}

#[test]
fn a_state_file_named_like_its_lock_keeps_its_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let api = fixture::records_api(vec![user("a", "2024-01-15T10:00:00Z")], Paging::None);
    let state = dir.path().join("state.lock");
    let env = [
        ("API_URL", api.url("/x")),
        ("STATE_STORE", format!("file://{}", state.display())),
    ];
    for version in 1..=2 {
        let s = common::summary(&run(dir.path(), &env, &["invoke"]));
        assert_eq!(s["status"], "completed");
        let doc: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
        assert_eq!(doc["user"]["version"], version, "{doc}");
    }
    assert!(dir.path().join("state.lock.lock").exists());
}

#[test]
fn a_record_larger_than_max_record_bytes_is_quarantined_with_its_id_and_size() {
    let dir = tempfile::tempdir().unwrap();
    // The id comes first, as APIs usually send it: it is found in the head kept.
    let body = format!(
        r#"{{"data": [{}, {{"id": "huge", "updatedAt": "2024-01-15T10:30:00Z", "blob": "{}"}}]}}"#,
        user("a", "2024-01-15T10:00:00Z"),
        "x".repeat(3 << 20)
    );
    let api = FixtureApi::start(move |_, _| Response::raw(200, body.clone()));
    let out = run(
        dir.path(),
        &[
            ("API_URL", api.url("/x")),
            ("MAX_RECORD_BYTES", "1000000".into()),
        ],
        &["invoke"],
    );
    let s = common::summary(&out);
    assert_eq!(
        (
            s["records_written"].as_u64(),
            s["records_rejected"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let key = s["rejected_objects"][0].as_str().unwrap();
    let line = std::fs::read_to_string(dir.path().join(".replay-sync/output").join(key)).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["id"], "huge");
    assert!(v["bytes"].as_u64().unwrap() > 3 << 20, "{v}");
    assert!(v["reason"].as_str().unwrap().contains("MAX_RECORD_BYTES"));
    assert!(
        line.len() < 1000,
        "the content is not kept: {} bytes",
        line.len()
    );
    // The cursor still moves over the good record (the oversized one is in _rejected/).
    assert_eq!(s["new_cursor"], "2024-01-15T10:00:00Z");
}

#[test]
fn a_body_that_drips_forever_ends_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    // One byte a second: no read ever times out, the body never ends.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten().take(4) {
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut conn = conn;
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"data\": [";
                if conn.write_all(head.as_bytes()).is_err() {
                    return;
                }
                for _ in 0..60 {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    if conn.write_all(b" ").is_err() {
                        return;
                    }
                }
            });
        }
    });
    let t0 = std::time::Instant::now();
    let out = run(
        dir.path(),
        &[("API_URL", format!("http://127.0.0.1:{port}/x"))],
        &["invoke", "--timeout", "4"],
    );
    let s = common::summary(&out);
    assert_eq!(s["status"], "partial", "{s}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn stale_temporary_files_of_a_killed_writer_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join(".replay-sync/output/user");
    std::fs::create_dir_all(&out_dir).unwrap();
    let state_dir = dir.path().join(".replay-sync");
    // What SIGKILL during a write leaves: a process id that no longer runs.
    let dead = {
        let mut c = Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    };
    let stale_object = out_dir.join(format!(".x-00000.jsonl.tmp-{dead}-123"));
    let stale_state = state_dir.join(format!(".state.json.tmp-{dead}-456"));
    std::fs::write(&stale_object, "half an object").unwrap();
    std::fs::write(&stale_state, "half a state").unwrap();
    // A live process's file (this test's own process) younger than an hour stays.
    let live = out_dir.join(format!(".y.jsonl.tmp-{}-789", std::process::id()));
    std::fs::write(&live, "in flight").unwrap();

    let api = fixture::records_api(vec![user("a", "2024-01-15T10:00:00Z")], Paging::None);
    let s = common::summary(&run(dir.path(), &[("API_URL", api.url("/x"))], &["invoke"]));
    assert_eq!(s["records_written"], 1);
    assert!(
        !stale_object.exists(),
        "the object's temporary file is gone"
    );
    assert!(!stale_state.exists(), "the state's temporary file is gone");
    assert!(live.exists(), "a running process's file is left alone");
}

async fn half_a_lease_reads_as_no_lease(kind: Kind) {
    let env = Env::new(kind).await;
    let api = fixture::records_api(vec![user("a", "2024-01-15T10:00:00Z")], Paging::None);
    // A hand edit removed the expiry but not the owner.
    env.put_raw_state(
        json!({"version": 3, "last_timestamp": "2024-01-15T09:00:00Z", "lease_owner": "ghost"}),
    )
    .await;
    let s = env.scheduled(&source(&api.url("/x"))).await;
    assert_eq!(s.status, Status::Completed, "{s:?}");
    assert_eq!(s.counts.records_written, 1);
    assert_eq!(
        env.cursor_version().await,
        (Some(ts("2024-01-15T10:00:00Z")), 4)
    );
    // And the reverse half.
    env.put_raw_state(json!({"version": 4, "lease_expires_at": "2099-01-01T00:00:00.000Z"}))
        .await;
    let s = env.scheduled(&source(&api.url("/x"))).await;
    assert_eq!(s.status, Status::Completed, "{s:?}");
}

async fn a_version_that_cannot_be_incremented_is_refused(kind: Kind) {
    let env = Env::new(kind).await;
    let api = fixture::records_api(vec![user("a", "2024-01-15T10:00:00Z")], Paging::None);
    env.put_raw_state(json!({"version": u64::MAX, "last_timestamp": "2024-01-15T09:00:00Z"}))
        .await;
    let err = env
        .run_with(
            &source(&api.url("/x")),
            &env.settings(),
            &RunRequest::scheduled(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "StateStoreError");
    assert!(err.to_string().contains("version"), "{err}");
    assert!(api.requests().is_empty(), "refused before fetching");
    assert_eq!(env.state().await.version, u64::MAX, "not wrapped to 0");
}

async fn a_cursor_in_year_zero_sends_a_valid_since(kind: Kind) {
    let env = Env::new(kind).await;
    // The fixture parses `since` as RFC 3339 and fails the request if it cannot.
    let api = fixture::records_api(vec![user("a", "2024-01-15T10:00:00Z")], Paging::None);
    let req = RunRequest {
        state_override: Some(ts("0000-01-01T01:00:00Z")),
        ..manual()
    };
    let s = env
        .run_with(&source(&api.url("/x")), &env.settings(), &req)
        .await
        .unwrap();
    assert_eq!(s.since.as_deref(), Some("0000-01-01T00:00:00Z"));
    assert_eq!(
        api.requests()[0].param("since"),
        Some("0000-01-01T00:00:00Z")
    );
    assert_eq!(s.counts.records_written, 1);
}

/// Contract: a retried run from the same starting state rewrites the same keys. Put the state
/// item back as it was before a completed run (a crash before the checkpoint, or a
/// point-in-time restore) and run again: the records are the same, only the clock differs.
async fn a_retry_from_a_restored_state_converges_on_the_same_keys(kind: Kind) {
    let env = Env::new(kind).await;
    let api = fixture::records_api(
        (0..7)
            .map(|i| user(&format!("r{i}"), &format!("2024-01-15T10:0{i}:00Z")))
            .collect(),
        Paging::None,
    );
    let src = source(&api.url("/x"));
    let mut settings = env.settings();
    settings.batch.max_records = 3;
    let before = env.raw_state().await;
    let first = env
        .run_with(&src, &settings, &RunRequest::scheduled())
        .await
        .unwrap();
    assert_eq!(first.counts.records_written, 7);
    let keys = env.keys().await;
    assert!(
        keys.len() >= 5,
        "3 data objects, fingerprints, manifest: {keys:?}"
    );
    let bytes_before = env.get(&first.objects[0]).await;

    env.restore_state(before).await;
    // Another clock: the plan is made anew, `_synced_at` differs.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let again = env
        .run_with(&src, &settings, &RunRequest::scheduled())
        .await
        .unwrap();
    assert_eq!(again.status, Status::Completed);
    assert_ne!(again.started_at, first.started_at, "a new plan");
    assert_eq!(again.objects, first.objects);
    assert_eq!(again.manifest, first.manifest);
    assert_eq!(
        env.keys().await,
        keys,
        "no `~1` key beside the first objects"
    );
    assert_eq!(
        env.get(&first.objects[0]).await,
        bytes_before,
        "kept as written"
    );
    assert_eq!(
        env.cursor_version().await,
        (Some(ts("2024-01-15T10:06:00Z")), 1)
    );
}

/// A misconfigured deployment: the error says what to fix (classified where the SDK
/// answered), not only the SDK's account of it.
#[test]
fn a_missing_table_or_bucket_says_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let api = fixture::records_api(vec![user("a", "2024-01-15T10:00:00Z")], Paging::None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = common::peers::unique("lake");
    let table = common::peers::unique("state");
    rt.block_on(common::create_bucket(&bucket));
    rt.block_on(common::create_table(&table));
    let cases = [
        (
            format!("dynamodb://{}", common::peers::unique("no-such-table")),
            format!("s3://{bucket}/raw"),
            "STATE_STORE",
        ),
        (
            format!("dynamodb://{table}"),
            format!("s3://{}/raw", common::peers::unique("no-such-bucket")),
            "OUTPUT",
        ),
    ];
    for (state, output, var) in cases {
        let mut env = common::moto_env();
        env.extend([
            ("API_URL", api.url("/x")),
            ("STATE_STORE", state),
            ("OUTPUT", output),
        ]);
        let out = run(dir.path(), &env, &["invoke"]);
        assert_eq!(out.status.code(), Some(1), "{var}");
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or_default();
        assert!(
            last.contains("does not exist") && last.contains(&format!("fix {var}")),
            "{var}: {last}"
        );
    }
}
