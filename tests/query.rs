//! The README's deduplicating DuckDB query, run as written (only the path changes) over what
//! two real runs wrote: one row per id, the newest version of each.

mod common;

use std::sync::{Arc, Mutex};

use common::fixture::{Paging, shared_records_api, user};
use common::{Env, Kind, peers, source};
use replay_sync::format::Format;
use serde_json::Value;

fn readme_query() -> String {
    readme_query_at("<!-- dedup-query:")
}

fn readme_query_at(marker: &str) -> String {
    let readme = std::fs::read_to_string(peers::project_dir().join("README.md")).unwrap();
    let after = readme
        .split(marker)
        .nth(1)
        .expect("README has the dedup-query marker");
    let sql = after
        .split("```sql")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a sql block");
    assert!(
        sql.contains("'.replay-sync/output/user/*.jsonl*'"),
        "the query reads the default output"
    );
    sql.to_string()
}

/// Runs `sql` in DuckDB (the project's `.venv/`): its rows as JSON objects of strings, or
/// DuckDB's error.
fn duckdb(sql: &str) -> Result<Vec<Value>, String> {
    let script = r#"
import json, sys, duckdb
rel = duckdb.sql(sys.stdin.read().rstrip().rstrip(';'))
cols = rel.columns
print(json.dumps([dict(zip(cols, map(str, row))) for row in rel.fetchall()]))
"#;
    let mut child = std::process::Command::new(peers::venv_bin("python"))
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_query_returns_the_newest_version_of_each_id() {
    newest_version_of_each_id(Format::Jsonl).await;
}

/// The same query, as written, over compressed output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_query_reads_gzip_and_zstd_output() {
    common::compressed(
        Format::JsonlGzip,
        newest_version_of_each_id(Format::JsonlGzip),
    )
    .await;
    common::compressed(
        Format::JsonlZstd,
        newest_version_of_each_id(Format::JsonlZstd),
    )
    .await;
}

async fn newest_version_of_each_id(format: Format) {
    let env = Env::new(Kind::File).await;
    let records = Arc::new(Mutex::new(vec![
        user("a", "2024-01-15T10:00:00Z"),
        user("b", "2024-01-15T10:30:00Z"),
        user("c", "2024-01-15T11:00:00Z"),
    ]));
    let api = shared_records_api(records.clone(), Paging::None);
    let src = source(&api.url("/x"));
    let first = env.scheduled(&src).await;
    assert_eq!(first.counts.records_written, 3);

    // "a" changes; "d" appears late on the replica, stamped before the cursor.
    {
        let mut r = records.lock().unwrap();
        // Offset form on purpose: 13:30+02:00 is 11:30Z, newer than a's 10:00Z.
        r[0] = user("a", "2024-01-15T13:30:00+02:00");
        r[0]["name"] = "renamed".into();
        r.push(user("d", "2024-01-15T10:45:00Z"));
    }
    let second = env.scheduled(&src).await;
    assert_eq!(
        second.counts.records_fetched, 4,
        "the buffer re-reads b and c"
    );
    assert_eq!(
        second.counts.records_written, 2,
        "a's change and late d are written; b and c are already in the lake"
    );
    assert_eq!(second.counts.records_skipped, 2);
    assert_eq!(
        second.counts.late_records, 1,
        "d is stamped before the cursor: late"
    );
    assert_eq!(
        second.counts.max_lateness_seconds,
        15.0 * 60.0,
        "11:00 − 10:45"
    );

    let common::Lake::Dir(root) = &env.lake else {
        unreachable!()
    };
    let dir = root.join(&env.sync_id);
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('_'))
        .collect();
    assert!(
        names.iter().all(|n| n.ends_with(format.extension())),
        "objects as {format:?}: {names:?}"
    );
    let path = dir.join("*.jsonl*");
    let sql = readme_query().replace(".replay-sync/output/user/*.jsonl*", path.to_str().unwrap());
    let rows = duckdb(&sql).expect("the README query failed");

    let total_lines = env
        .lines(&[first.objects.clone(), second.objects.clone()].concat())
        .await
        .len();
    assert_eq!(total_lines, 5, "the lake holds two versions of a");
    assert_eq!(rows.len(), 4, "one row per id: {rows:?}");
    let a = rows.iter().find(|r| r["id"] == "a").expect("a");
    assert_eq!(a["name"], "renamed", "the newest version of a");
    assert!(rows.iter().any(|r| r["id"] == "d"), "the late row is there");
    assert!(
        rows.iter().all(|r| r.get("rn").is_none()),
        "helper column excluded"
    );
}

/// A record that brings its own `_synced_at`, or holds a key twice, once made DuckDB refuse
/// every object of the glob (`duplicate key "_synced_at"`). Now such records are quarantined
/// with a reason, and both the data and the rejected objects read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_records_leave_the_lake_readable() {
    let env = Env::new(Kind::File).await;
    let body = r#"{"data": [
        {"id": "good", "updatedAt": "2024-01-15T10:00:00Z", "name": "A"},
        {"id": "own-stamp", "updatedAt": "2024-01-15T10:00:00Z", "_synced_at": "2099-01-01T00:00:00Z"},
        {"id": "dup-field", "updatedAt": "2024-01-15T10:00:00Z", "name": "x", "name": "y"},
        {"id": "dup-nested", "updatedAt": "2024-01-15T10:00:00Z", "address": {"city": "a", "city": "b"}},
        {"id": "good-2", "updatedAt": "2024-01-15T11:00:00Z", "name": "B", "address": {"_synced_at": 1}}
    ]}"#;
    let api =
        common::fixture::FixtureApi::start(move |_, _| common::fixture::Response::raw(200, body));
    let s = env.scheduled(&source(&api.url("/x"))).await;
    assert_eq!(
        (s.counts.records_written, s.counts.records_rejected),
        (2, 3),
        "{s:?}"
    );

    let common::Lake::Dir(root) = &env.lake else {
        unreachable!()
    };
    for key in s.objects.iter().chain(&s.rejected_objects) {
        let text = std::fs::read_to_string(root.join(key)).unwrap();
        for line in text.lines() {
            assert_eq!(replay_sync::record::duplicate_key(line), None, "{line}");
        }
    }
    let data = root.join(&env.sync_id).join("*.jsonl");
    let sql = readme_query().replace(".replay-sync/output/user/*.jsonl", data.to_str().unwrap());
    let rows = duckdb(&sql).unwrap_or_else(|e| panic!("DuckDB refused the data: {e}"));
    let mut ids: Vec<&str> = rows.iter().filter_map(|r| r["id"].as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["good", "good-2"]);

    let rejected = root.join(&env.sync_id).join("_rejected").join("*.jsonl");
    let rows = duckdb(&format!(
        "SELECT reason, record, record_text FROM read_json_auto('{}') ORDER BY reason",
        rejected.display()
    ))
    .unwrap_or_else(|e| panic!("DuckDB refused the rejected records: {e}"));
    assert_eq!(rows.len(), 3, "{rows:?}");
    let text: Vec<&Value> = rows
        .iter()
        .map(|r| &r["record_text"])
        .filter(|t| t.as_str().is_some_and(|t| t != "None"))
        .collect();
    assert_eq!(
        text.len(),
        2,
        "the two records with a key twice, kept as text: {rows:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r["reason"].as_str().unwrap().contains("own `_synced_at`")),
        "{rows:?}"
    );
}

/// The README's query for another shape (nested `meta.id`, `meta.ts` in epoch
/// milliseconds): lines carry `_record_id` and `_cursor`, and the query as written finds the
/// newest version of each id (issues 21, 22).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_query_for_another_shape_orders_by_cursor() {
    use common::fixture::{FixtureApi, Response};
    let env = Env::new(Kind::File).await;
    let rows = Arc::new(Mutex::new(vec![
        serde_json::json!({"meta": {"id": "a", "ts": 1_705_312_800_000i64}, "v": 1}),
        serde_json::json!({"meta": {"id": "b", "ts": "1705314600000"}, "v": 1}),
    ]));
    let r = rows.clone();
    let api = FixtureApi::start(move |_, _| {
        Response::json(&serde_json::json!({"data": *r.lock().unwrap()}))
    });
    let url = api.url("/x");
    let cfg = replay_sync::Config::from_lookup(|k| match k {
        "API_URL" => Some(url.clone()),
        "ID_FIELD" => Some("meta.id".into()),
        "CURSOR_FIELD" => Some("meta.ts".into()),
        "CURSOR_FORMAT" => Some("epoch_ms".into()),
        "API_PAGINATION" => Some("none".into()),
        _ => None,
    })
    .unwrap();
    let src = replay_sync::source::http::HttpSource::new(cfg.api).unwrap();
    let first = env.scheduled(&src).await;
    assert_eq!(first.counts.records_written, 2);
    let lines = env.lines(&first.objects).await;
    assert_eq!(
        lines[0]["_cursor"], "2024-01-15T10:00:00.000Z",
        "{:?}",
        lines[0]
    );
    assert_eq!(lines[0]["_record_id"], "a", "{:?}", lines[0]);
    // "a" changes, an hour later.
    rows.lock().unwrap()[0] =
        serde_json::json!({"meta": {"id": "a", "ts": 1_705_316_400_000i64}, "v": 2});
    let second = env.scheduled(&src).await;
    assert_eq!(second.counts.records_written, 1, "{second:?}");

    let common::Lake::Dir(root) = &env.lake else {
        unreachable!()
    };
    let path = root.join(&env.sync_id).join("*.jsonl*");
    let sql = readme_query_at("<!-- dedup-query-shaped:")
        .replace(".replay-sync/output/user/*.jsonl*", path.to_str().unwrap());
    let got = duckdb(&sql).expect("the README query failed");
    assert_eq!(got.len(), 2, "one row per id: {got:?}");
    let a = got
        .iter()
        .find(|r| r["meta"].as_str().unwrap_or("").contains("'a'"))
        .unwrap();
    assert_eq!(a["v"], "2", "the newest version of a: {got:?}");
}
