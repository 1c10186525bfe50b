//! The local mode: `replay-sync invoke [--event FILE]` runs one invocation through the same
//! handler as Lambda, prints the run summary JSON on stdout and exits 0 for every success
//! status. Logs go to stderr.

use std::process::ExitCode;

use serde_json::Value;

use crate::app::App;
use crate::config::Config;

pub const USAGE: &str = "\
usage: replay-sync invoke [--event FILE]

Runs one sync invocation locally with the configuration in the environment (API_URL,
STATE_STORE, OUTPUT, ... see README.md) and prints the run summary as JSON on stdout.
FILE is an invocation event (events/*.json); '-' reads it from standard input; without
--event the run is a scheduled run. Exit status: 0 on success (completed, partial,
skipped, conflict, dry_run), 1 when the run failed, 2 for bad usage or configuration.

Under AWS Lambda or `cargo lambda watch` (AWS_LAMBDA_RUNTIME_API set) the binary serves
the Lambda runtime API instead.";

/// Runs the local mode with `args` (without the program name).
pub async fn main(args: &[String]) -> ExitCode {
    let event_path = match parse_args(args) {
        Ok(Some(p)) => p,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("replay-sync: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let event = match read_event(event_path.as_deref()) {
        Ok(e) => e,
        Err(msg) => {
            eprintln!("replay-sync: {msg}");
            return ExitCode::from(2);
        }
    };
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("replay-sync: {e}");
            return ExitCode::from(2);
        }
    };
    let app = match App::new(config).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("replay-sync: {e}");
            return ExitCode::from(2);
        }
    };
    match app.handle(&event, None).await {
        Ok(summary) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&summary).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("replay-sync: {}: {e}", e.kind());
            ExitCode::from(1)
        }
    }
}

/// `Ok(None)` asks for help; `Ok(Some(path))` runs with that event (`None`: scheduled).
fn parse_args(args: &[String]) -> Result<Option<Option<String>>, String> {
    let mut it = args.iter().map(String::as_str);
    match it.next() {
        Some("invoke") => {}
        None | Some("-h" | "--help" | "help") => return Ok(None),
        Some(other) => return Err(format!("unknown command {other:?}")),
    }
    let mut event = None;
    while let Some(arg) = it.next() {
        match arg {
            "--event" | "-e" | "--data-file" => {
                let v = it
                    .next()
                    .ok_or_else(|| format!("{arg} needs a file name"))?;
                event = Some(v.to_string());
            }
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(event))
}

fn read_event(path: Option<&str>) -> Result<Value, String> {
    let text = match path {
        None => return Ok(Value::Null),
        Some("-") => std::io::read_to_string(std::io::stdin())
            .map_err(|e| format!("reading the event from stdin: {e}"))?,
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("reading the event {p}: {e}"))?,
    };
    serde_json::from_str(&text).map_err(|e| format!("the event is not valid JSON: {e}"))
}
