//! The local mode: `replay-sync invoke [--event FILE]` runs one invocation through the same
//! handler as Lambda, prints the run summary JSON on stdout and exits 0 for every success
//! status. Logs go to stderr.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use crate::app::{App, Outcome};
use crate::event::BackfillStart;
use crate::sync::Invocation;

/// What `replay-sync --version` prints.
pub const VERSION: &str = concat!("replay-sync ", env!("CARGO_PKG_VERSION"));

pub const USAGE: &str = "\
usage: replay-sync invoke [--stream NAME] [--event FILE] [--request-id ID] [--timeout SECONDS]
       replay-sync backfill [--stream NAME] --from TS [--to TS] [--slice-hours H] [--concurrency N]
       replay-sync --version

Runs one sync invocation locally with the configuration in the environment (API_URL,
STATE_STORE, OUTPUT, ... see README.md) and prints the run summary as JSON on stdout.
FILE is an invocation event (events/*.json); '-' reads it from standard input; without
--event the run is a scheduled run.
--request-id plays Lambda's request id: it owns the run's lease, and giving the id of an
invocation that crashed resumes it (its lease and its plan); default: a new random id.
--timeout plays the Lambda timeout: the run stops fetching shortly before it and
returns status partial (the next run goes on); default: 900 (Lambda's maximum, so a
local run is bounded too, whatever the API does).
--stream picks one stream of a STREAMS_CONFIG file (as {\"stream\": NAME} in the event
does). invoke without one, when the file has several, runs each (at once) and prints
an object of their summaries by name: one stream's failure fails only its own entry,
and the exit status is then 1. backfill needs --stream when there are several.
backfill reads [--from, --to) (default --to: now) in slices of --slice-hours (default 24;
with API_UNTIL_PARAM, else one slice), --concurrency at once (default 8), then takes one
checkpoint: the plan, slices and commit the state machine runs in AWS, in one process.
A line per slice done goes to stderr, the summary to stdout. Run again after a crash or
a kill, it goes on from the slices already done and converges on the same keys.
Exit status: 0 on success (completed, partial, skipped, conflict, dry_run), 1 when the
run failed, 2 for bad usage: arguments, configuration or the event (nothing was read
or written).

Under AWS Lambda or `cargo lambda watch` (AWS_LAMBDA_RUNTIME_API set) the binary serves
the Lambda runtime API instead.";

/// Runs the local mode with `args` (without the program name).
pub async fn main(args: &[String]) -> ExitCode {
    if matches!(
        args.first().map(String::as_str),
        Some("-V" | "--version" | "version")
    ) {
        println!("{VERSION}");
        return ExitCode::SUCCESS;
    }
    if args.first().map(String::as_str) == Some("backfill") {
        return backfill(&args[1..]).await;
    }
    let args = match usage(parse_args(args)) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let event = match read_event(args.event.as_deref()) {
        Ok(e) => e,
        Err(msg) => {
            eprintln!("replay-sync: {msg}");
            return ExitCode::from(2);
        }
    };
    let app = match App::from_env().await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("replay-sync: {e}");
            return ExitCode::from(2);
        }
    };
    let timeout = args.timeout();
    let invocation = Invocation::new(
        args.request_id.unwrap_or_else(Invocation::random_id),
        Some(timeout),
    );
    let event = match args.stream {
        Some(name) => match crate::event::take_stream(&event) {
            Ok((Some(other), _)) if other != name => {
                eprintln!("replay-sync: --stream {name} but the event names the stream {other}");
                return ExitCode::from(2);
            }
            _ => with_stream(event, &name),
        },
        None => event,
    };
    let named = matches!(crate::event::take_stream(&event), Ok((Some(_), _)));
    if named || app.names().len() == 1 {
        return finish(app.handle(&event, &invocation).await);
    }
    every_stream(&app, &event, &invocation).await
}

/// `event` naming the stream `name` (a scheduled run when there is no event).
fn with_stream(event: Value, name: &str) -> Value {
    match event {
        Value::Object(mut o) => {
            o.insert(
                crate::event::STREAM_FIELD.into(),
                Value::String(name.to_string()),
            );
            Value::Object(o)
        }
        _ => serde_json::json!({ crate::event::STREAM_FIELD: name }),
    }
}

/// Runs `event` on every stream at once; prints their outcomes by name. Exit 1 if any
/// failed (2 if the event itself was refused).
async fn every_stream(app: &App, event: &Value, invocation: &Invocation) -> ExitCode {
    let runs = app.names().into_iter().map(|name| async move {
        let result = app
            .handle(&with_stream(event.clone(), name), invocation)
            .await;
        (name, result)
    });
    let results = futures_util::future::join_all(runs).await;
    let mut out = serde_json::Map::new();
    let mut code = ExitCode::SUCCESS;
    for (name, result) in results {
        let entry = match result {
            Ok(outcome) => {
                if let Some(summary) = outcome.summary() {
                    eprintln!("{}", crate::metrics::emf_line(summary));
                }
                serde_json::to_value(&outcome).unwrap_or_default()
            }
            Err(e) => {
                eprintln!("replay-sync: {name}: {}: {e}", e.kind());
                code = match e {
                    crate::Error::Event { .. } => ExitCode::from(2),
                    _ if code == ExitCode::SUCCESS => ExitCode::from(1),
                    _ => code,
                };
                serde_json::json!({"error_type": e.kind(), "error": e.to_string()})
            }
        };
        out.insert(name.to_string(), entry);
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&Value::Object(out)).unwrap_or_default()
    );
    code
}

/// Parsed arguments, or the exit: help asked for (0), or bad usage (2, with the usage).
fn usage<A>(parsed: Result<Option<A>, String>) -> Result<A, ExitCode> {
    match parsed {
        Ok(Some(a)) => Ok(a),
        Ok(None) => {
            println!("{USAGE}");
            Err(ExitCode::SUCCESS)
        }
        Err(msg) => {
            eprintln!("replay-sync: {msg}\n\n{USAGE}");
            Err(ExitCode::from(2))
        }
    }
}

/// The arguments of `backfill`.
#[derive(Debug, PartialEq)]
struct BackfillArgs {
    start: BackfillStart,
    concurrency: usize,
    stream: Option<String>,
}

fn parse_backfill_args(args: &[String]) -> Result<Option<BackfillArgs>, String> {
    let mut it = args.iter().map(String::as_str);
    let mut start = BackfillStart {
        from: String::new(),
        to: None,
        slice_hours: None,
        max_concurrency: None,
    };
    let mut concurrency = 8;
    let mut stream = None;
    while let Some(arg) = it.next() {
        let mut value = |what: &str| {
            it.next()
                .map(str::to_string)
                .ok_or_else(|| format!("{arg} needs {what}"))
        };
        match arg {
            "--from" => start.from = value("a timestamp")?,
            "--stream" => stream = Some(value("a stream's name")?),
            "--to" => start.to = Some(value("a timestamp")?),
            "--slice-hours" => {
                let v = value("a number of hours")?;
                start.slice_hours = Some(
                    v.parse::<f64>()
                        .map_err(|_| format!("--slice-hours expects hours, got {v:?}"))?,
                );
            }
            "--concurrency" => {
                let v = value("a number")?;
                concurrency = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=256).contains(n))
                    .ok_or_else(|| format!("--concurrency expects 1 to 256, got {v:?}"))?;
            }
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if start.from.is_empty() {
        return Err("backfill needs --from".into());
    }
    start.max_concurrency = Some(concurrency as u32);
    Ok(Some(BackfillArgs {
        start,
        concurrency,
        stream,
    }))
}

/// `replay-sync backfill …`: plan, slices and commit in this process.
async fn backfill(args: &[String]) -> ExitCode {
    let args = match usage(parse_backfill_args(args)) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let app = match App::from_env().await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("replay-sync: {e}");
            return ExitCode::from(2);
        }
    };
    let stream = args.stream.as_deref();
    let engine = match app.engine(stream).await {
        Ok(engine) => engine,
        Err(e) => {
            let result = Err(app.scrub(stream, e));
            app.log(stream, &result);
            return finish(result);
        }
    };
    // No deadline: each slice is read to its end in one go.
    let invocation = Invocation::new(Invocation::random_id(), None);
    let result = engine
        .backfill(&args.start, &invocation, args.concurrency, |done, total, out, slice| {
            eprintln!(
                "backfill: slice {done}/{total} done ({} .. {}): {} records written in {} objects",
                slice.since,
                slice.until.as_deref().unwrap_or("the end"),
                out.records_written,
                out.objects
            );
        })
        .await
        .map(|s| Outcome::Run(Box::new(s)))
        .map_err(|e| app.scrub(stream, e));
    app.log(stream, &result);
    finish(result)
}

/// Prints an outcome and chooses the exit status.
fn finish(result: crate::Result<Outcome>) -> ExitCode {
    match result {
        Ok(outcome) => {
            if let Some(summary) = outcome.summary() {
                eprintln!("{}", crate::metrics::emf_line(summary));
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&outcome).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("replay-sync: {}: {e}", e.kind());
            // A bad event is bad usage, like bad arguments: refused before any I/O.
            match e {
                crate::Error::Event { .. } => ExitCode::from(2),
                _ => ExitCode::from(1),
            }
        }
    }
}

/// A local run without `--timeout` is bounded like the longest Lambda invocation.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(900);

/// The arguments of `invoke`.
#[derive(Debug, Default, PartialEq)]
struct Args {
    /// The event file (`None`: a scheduled run).
    event: Option<String>,
    /// The stream (`--stream`).
    stream: Option<String>,
    request_id: Option<String>,
    timeout: Option<Duration>,
}

impl Args {
    /// The run's time limit: `--timeout`, or [`DEFAULT_TIMEOUT`].
    fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }
}

/// `Ok(None)` asks for help.
fn parse_args(args: &[String]) -> Result<Option<Args>, String> {
    let mut it = args.iter().map(String::as_str);
    match it.next() {
        Some("invoke") => {}
        None | Some("-h" | "--help" | "help") => return Ok(None),
        Some(other) => return Err(format!("unknown command {other:?}")),
    }
    let mut out = Args::default();
    while let Some(arg) = it.next() {
        let mut value = |what: &str| {
            it.next()
                .map(str::to_string)
                .ok_or_else(|| format!("{arg} needs {what}"))
        };
        match arg {
            "--event" | "-e" | "--data-file" => out.event = Some(value("a file name")?),
            "--stream" => out.stream = Some(value("a stream's name")?),
            "--request-id" => {
                let id = value("an id")?;
                if id.is_empty() {
                    return Err("--request-id needs a non-empty id".into());
                }
                out.request_id = Some(id);
            }
            "--timeout" => {
                let v = value("a number of seconds")?;
                let secs = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
                    .ok_or_else(|| {
                        format!("--timeout expects seconds (0 < s <= 86400), got {v:?}")
                    })?;
                out.timeout = Some(Duration::from_secs_f64(secs));
            }
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(out))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Args {
        let a: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        parse_args(&a).unwrap().unwrap()
    }

    #[test]
    fn a_local_run_is_bounded_like_the_longest_lambda_invocation() {
        assert_eq!(args(&["invoke"]).timeout(), Duration::from_secs(900));
        assert_eq!(
            args(&["invoke", "--timeout", "4"]).timeout(),
            Duration::from_secs(4)
        );
        assert!(parse_args(&["invoke".into(), "--timeout".into(), "0".into()]).is_err());
    }
}
