//! `scripts/demo.sh`, the README's first command, as a user runs it — twice: each demo starts
//! from a clean state of its own (the playground makes new random users at every start, and
//! two demos' data once mixed), and labels its runs truthfully. It syncs two streams of the
//! playground (users and companies) from one streams file, a summary line for each.

mod common;

use std::process::Command;

use common::peers;
use serde_json::Value;

fn demo() -> (String, Vec<Value>) {
    demo_with(&[], &[])
}

/// The demo's log and its runs' outputs: each an object of summaries by stream.
fn demo_with(env: &[(&str, &str)], args: &[&str]) -> (String, Vec<Value>) {
    // Demos share the project's .replay-sync/demo/: one at a time.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new("bash")
        .arg(peers::project_dir().join("scripts/demo.sh"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(peers::project_dir())
        // The binary this test build made: the script builds nothing then.
        .env("REPLAY_SYNC_BIN", env!("CARGO_BIN_EXE_replay-sync"))
        .env_remove("STATE_STORE")
        .env_remove("OUTPUT")
        .output()
        .expect("run scripts/demo.sh");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "demo failed:\n{err}");
    let summaries: Vec<Value> = serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter::<Value>()
        .map(|v| v.expect("a summary"))
        .collect();
    (err, summaries)
}

#[test]
fn each_demo_starts_clean_and_says_what_it_does() {
    for _ in 0..2 {
        let (log, runs) = demo();
        assert_eq!(runs.len(), 2, "two runs: {runs:?}");
        assert!(
            log.contains("== run 1 (no state yet: a full sync)"),
            "{log}"
        );
        // Two streams in each run, a line for each.
        for run in &runs {
            let names: Vec<&String> = run.as_object().unwrap().keys().collect();
            assert_eq!(names, ["companies", "user"], "{run}");
        }
        let companies = runs[0]["companies"]["records_written"].as_u64().unwrap();
        assert!(companies > 0, "{runs:?}");
        assert_eq!(runs[0]["companies"]["status"], "completed");
        assert!(
            log.contains(&format!("   companies: completed, {companies} written of ")),
            "{log}"
        );
        assert!(
            log.contains(&format!("{companies} distinct companies")),
            "{log}"
        );
        let (first, second) = (&runs[0]["user"], &runs[1]["user"]);
        assert_eq!(first["status"], "completed");
        assert_eq!(first["since"], Value::Null, "a full sync");
        let users = first["records_written"].as_u64().unwrap();
        assert!(users > 0);
        assert!(
            log.contains(&format!(
                "   user: completed, {users} written of {users} read"
            )),
            "{log}"
        );
        assert_eq!(second["previous_cursor"], first["new_cursor"]);
        assert!(second["since"].is_string(), "the incremental run");
        // The deduplicated count is this demo's users, not two demos' mixed.
        assert!(
            log.contains(&format!("{users} distinct users")),
            "{users} users in this demo:\n{log}"
        );
    }
}

/// The README's own variations of the demo end in its query, not in DuckDB's "No files
/// found": compressed output (the query reads `*.jsonl*`), and a dry run (nothing to query,
/// said plainly) (issue 20, 11).
#[test]
fn the_demo_queries_compressed_output_and_says_when_a_dry_run_wrote_nothing() {
    let (log, runs) = demo_with(&[("OUTPUT_COMPRESSION", "gzip")], &[]);
    let users = runs[0]["user"]["records_written"].as_u64().unwrap();
    assert!(users > 0);
    assert!(
        runs[0]["user"]["objects"][0]
            .as_str()
            .unwrap()
            .ends_with(".jsonl.gz"),
        "{runs:?}"
    );
    assert!(log.contains(&format!("{users} distinct users")), "{log}");

    let (log, runs) = demo_with(&[], &["--event", "events/dry-run.json"]);
    assert_eq!(runs[0]["user"]["status"], "dry_run", "{runs:?}");
    assert_eq!(runs[0]["companies"]["status"], "dry_run", "{runs:?}");
    assert!(
        log.contains("no data objects to query (a dry run writes none)"),
        "{log}"
    );
}
