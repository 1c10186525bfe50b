//! The Lambda runtime API, for real: `cargo lambda watch --only-lambda-apis` (from the
//! project's `.venv/`) serves the runtime API as Lambda does, the binary this test build
//! already compiled polls it (as `bootstrap` does in Lambda, through
//! `AWS_LAMBDA_RUNTIME_API`), and `cargo lambda invoke --data-file events/…` delivers the
//! sample events. The function uses DynamoDB and S3 on moto.
//!
//! Nothing here compiles: `cargo lambda watch` without `--only-lambda-apis` would build the
//! crate again (other features than the test build), which took longer than any fixed wait
//! on a fresh 2-core machine.

mod common;

use std::process::Command;

use common::peers::{self, Peer};
use serde_json::Value;

/// The name the function is invoked by.
const FUNCTION: &str = "replay-sync";

struct Lambda {
    watch: Peer,
    /// The function process (its stdout and stderr: what CloudWatch Logs would get).
    function: Peer,
}

impl Lambda {
    fn start(env: &[(&str, String)]) -> Lambda {
        let args = [
            "lambda",
            "watch",
            "--only-lambda-apis",
            "-A",
            "127.0.0.1",
            "-P",
            "{port}",
            "--timeout",
            "600",
        ];
        let watch = Peer::spawn(
            "cargo-lambda-watch",
            peers::venv_bin("cargo-lambda"),
            &args,
            |cmd, _| {
                // cargo-lambda reads the project's metadata; it builds nothing here.
                cmd.current_dir(peers::project_dir());
            },
        );
        // Every path of the runtime API may wait for an event: a connection is the sign.
        watch.wait_listening(std::time::Duration::from_secs(60));
        let runtime_api = format!("http://127.0.0.1:{}/.rt/{FUNCTION}", watch.port);
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let function = Peer::spawn(
            "function",
            std::path::PathBuf::from(env!("CARGO_BIN_EXE_replay-sync")),
            &[],
            move |cmd, dir| {
                cmd.current_dir(dir)
                    .env_clear()
                    .env("HOME", dir)
                    .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                    // What the Lambda service sets for a function.
                    .env("AWS_LAMBDA_RUNTIME_API", &runtime_api)
                    .env("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)
                    .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
                    .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
                    .envs(env);
            },
        );
        Lambda { watch, function }
    }

    /// `cargo lambda invoke` with a payload argument; stdout and stderr, and success.
    fn invoke(&self, payload: &[&str]) -> (bool, String, String) {
        let out = Command::new(peers::venv_bin("cargo-lambda"))
            .args(["lambda", "invoke", FUNCTION, "-A", "127.0.0.1", "-P"])
            .arg(self.watch.port.to_string())
            .args(["--output-format", "json"])
            .args(payload)
            .current_dir(peers::project_dir())
            .output()
            .expect("run cargo lambda invoke");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn invoke_file(&self, event: &str) -> Value {
        let path = peers::project_dir().join("events").join(event);
        let (ok, stdout, stderr) = self.invoke(&["--data-file", path.to_str().unwrap()]);
        assert!(
            ok,
            "invoke {event} failed:\n{stderr}\nfunction log:\n{}",
            std::fs::read_to_string(&self.function.log).unwrap_or_default()
        );
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not a summary ({e}): {stdout}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_through_the_lambda_runtime_api() {
    let table = peers::unique("state");
    let bucket = peers::unique("lake");
    common::create_table(&table).await;
    common::create_bucket(&bucket).await;
    let users = peers::playground_users(peers::playground());
    let mut env = vec![
        (
            "API_URL",
            format!("{}/incremental/timestamp", peers::playground().url()),
        ),
        ("STATE_STORE", format!("dynamodb://{table}")),
        ("OUTPUT", format!("s3://{bucket}/raw")),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
    ];
    env.extend(common::moto_env());
    let lambda = tokio::task::spawn_blocking(move || Lambda::start(&env))
        .await
        .unwrap();
    let lambda = std::sync::Arc::new(lambda);
    let invoke = |event: &'static str| {
        let l = lambda.clone();
        async move {
            tokio::task::spawn_blocking(move || l.invoke_file(event))
                .await
                .unwrap()
        }
    };

    // The scheduled event: a full sync of every user into S3, checkpointed in DynamoDB.
    let s = invoke("scheduled.json").await;
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["trigger"], "scheduled");
    assert_eq!(s["records_written"].as_u64().unwrap(), users.len() as u64);
    assert!(s["records_written"].as_u64().unwrap() > 0);
    let lake = common::Lake::S3 {
        client: common::s3_client(),
        bucket: bucket.clone(),
        prefix: "raw".into(),
    };
    let keys = lake.keys().await;
    for k in s["objects"].as_array().unwrap() {
        assert!(
            keys.contains(&k.as_str().unwrap().to_string()),
            "{k} is in S3: {keys:?}"
        );
    }

    // The metrics line went to the function's stdout (CloudWatch Logs, here its log).
    let log = std::fs::read_to_string(&lambda.function.log).unwrap_or_default();
    assert!(
        log.contains(r#""Namespace":"ReplaySync""#) && log.contains(r#""RecordsWritten":"#),
        "EMF on stdout:\n{log}"
    );

    // The same scheduled event delivered again: recognised by its id, nothing done.
    let dup = invoke("scheduled.json").await;
    assert_eq!(dup["status"], "skipped", "{dup}");
    assert_eq!(lake.keys().await, keys, "a duplicate wrote nothing");

    // The dry run: fetches, writes nothing.
    let d = invoke("dry-run.json").await;
    assert_eq!(d["status"], "dry_run");
    assert!(d["records_fetched"].as_u64().unwrap() > 0);
    assert_eq!(lake.keys().await, keys, "a dry run wrote nothing");

    // The manual replay: from the override with the event's buffer.
    let r = invoke("manual-replay.json").await;
    assert_eq!(r["status"], "completed");
    assert_eq!(r["since"], "2024-01-15T04:30:00Z");
    assert_eq!(
        r["new_cursor"], s["new_cursor"],
        "the replay did not move the cursor back"
    );
    assert_eq!(r["state_version"], 2);
    // A manual event has no id: the runtime API's request id owned the lease and names it.
    let state =
        replay_sync::state::dynamodb::DynamoStateStore::new(common::dynamodb_client(), &table);
    let item = replay_sync::state::StateStore::load(&state, "user")
        .await
        .unwrap();
    let inv = item.last_invocation.unwrap_or_default();
    assert!(
        !inv.is_empty() && !inv.starts_with("local-") && !inv.starts_with("53dc4d37"),
        "the Lambda request id: {inv:?}"
    );
    assert_eq!(item.lease, None);

    // A typo is an invocation error with a type and a message, and nothing is written.
    let l = lambda.clone();
    let (ok, _out, err) =
        tokio::task::spawn_blocking(move || l.invoke(&["--data-ascii", r#"{"dry_rn": true}"#]))
            .await
            .unwrap();
    assert!(!ok, "a bad event fails the invocation");
    assert!(
        err.contains("InvalidEvent") && err.contains("dry_rn"),
        "{err}"
    );
    // The replay's data objects and its manifest. It rewrote the same rows, so the
    // fingerprint set the state names already says it all: no new set (storage does not
    // grow by a set per run).
    assert!(!r["objects"].as_array().unwrap().is_empty());
    assert_eq!(
        lake.keys().await.len(),
        keys.len() + r["objects"].as_array().unwrap().len() + 1
    );
    let fingerprint_sets = lake
        .keys()
        .await
        .into_iter()
        .filter(|k| k.contains("/_fingerprints/"))
        .count();
    assert_eq!(fingerprint_sets, 1);

    // The backfill's first step: the slice list lands in S3 where the state machine's Map
    // reads it (one slice: the playground takes no upper bound).
    let p = invoke("backfill-plan.json").await;
    assert_eq!(p["bucket"], bucket.as_str(), "{p}");
    assert_eq!(p["slices"], 1, "{p}");
    let key = p["key"].as_str().unwrap();
    assert!(key.starts_with("raw/user/_backfills/"), "{key}");
    let list: Value = serde_json::from_slice(&lake.get(key).await).unwrap();
    assert_eq!(list[0]["since"], "2024-01-01T00:00:00Z");
    assert_eq!(
        list[0]["until"],
        Value::Null,
        "read to the end, as one slice"
    );
}

/// Several streams through the runtime API, the streams file in S3 as a deployment may keep
/// it: each invocation runs the stream it names (a schedule's input keeps the event id, so a
/// duplicate delivery is skipped), one stream's failure is that invocation's only, and an
/// event that names no stream, or an unknown one, is refused naming the streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_streams_through_the_lambda_runtime_api() {
    let table = peers::unique("state");
    let bucket = peers::unique("lake");
    common::create_table(&table).await;
    common::create_bucket(&bucket).await;
    let file = format!(
        "[streams.users]\nAPI_URL = \"{}/incremental/timestamp\"\n\n[streams.down]\nAPI_URL = \"http://127.0.0.1:9/nothing\"\nAPI_MAX_ATTEMPTS = 1\n",
        peers::playground().url()
    );
    common::s3_client()
        .put_object()
        .bucket(&bucket)
        .key("config/streams.toml")
        .body(file.into_bytes().into())
        .send()
        .await
        .unwrap();
    let mut env = vec![
        (
            "STREAMS_CONFIG",
            format!("s3://{bucket}/config/streams.toml"),
        ),
        ("STREAM_NAMES", "users,down".to_string()),
        ("STATE_STORE", format!("dynamodb://{table}")),
        ("OUTPUT", format!("s3://{bucket}/raw")),
    ];
    env.extend(common::moto_env());
    let lambda = tokio::task::spawn_blocking(move || Lambda::start(&env))
        .await
        .unwrap();
    let lambda = std::sync::Arc::new(lambda);
    let invoke = |payload: String| {
        let l = lambda.clone();
        async move {
            tokio::task::spawn_blocking(move || l.invoke(&["--data-ascii", &payload]))
                .await
                .unwrap()
        }
    };
    let scheduled = |id: &str| {
        format!(
            r#"{{"id": "{id}", "time": "2024-01-15T10:30:00Z", "detail-type": "Scheduled Event", "source": "aws.events", "stream": "users"}}"#
        )
    };
    let (ok, out, err) = invoke(scheduled("5b1f7a0e-0000-4000-8000-000000000001")).await;
    assert!(ok, "{err}");
    let s: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (s["sync_id"].as_str(), s["status"].as_str()),
        (Some("users"), Some("completed"))
    );
    assert_eq!(s["trigger"], "scheduled");
    assert!(s["records_written"].as_u64().unwrap() > 0, "{s}");

    // The other stream's API is down: its invocation fails, and only it.
    let (ok, _, err) = invoke(r#"{"stream": "down"}"#.into()).await;
    assert!(!ok);
    assert!(err.contains("UpstreamUnreachable"), "{err}");
    // The same schedule tick delivered twice: skipped; the next tick runs.
    let (ok, out, err) = invoke(scheduled("5b1f7a0e-0000-4000-8000-000000000001")).await;
    assert!(ok, "{err}");
    let s: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["status"], "skipped", "{s}");
    let (ok, out, err) = invoke(scheduled("5b1f7a0e-0000-4000-8000-000000000002")).await;
    assert!(ok, "{err}");
    let s: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["records_written"], 0, "nothing new: {s}");

    for bad in [
        r#"{"dry_run": true}"#,
        r#"{"stream": "user", "dry_run": true}"#,
    ] {
        let (ok, _, err) = invoke(bad.into()).await;
        assert!(!ok, "{bad}");
        // cargo-lambda wraps the message: compare its words.
        let words = err
            .replace(['│', '\n'], " ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            words.contains("InvalidEvent") && words.contains("(down, users)")
                || words.contains("the streams are: down, users"),
            "{bad}: {err}"
        );
    }
}
