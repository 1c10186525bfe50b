//! The local mode: `replay-sync invoke [--event FILE]` runs one invocation through the same
//! handler as Lambda, prints the run summary JSON on stdout and exits 0 for every success
//! status. Logs go to stderr.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use crate::app::{App, Outcome};
use crate::config::Config;
use crate::event::BackfillStart;
use crate::sync::Invocation;

/// What `replay-sync --version` prints.
pub const VERSION: &str = concat!("replay-sync ", env!("CARGO_PKG_VERSION"));

pub const USAGE: &str = "\
usage: replay-sync invoke [--event FILE] [--request-id ID] [--timeout SECONDS]
       replay-sync backfill --from TS [--to TS] [--slice-hours H] [--concurrency N]
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
    let timeout = args.timeout();
    let invocation = Invocation::new(
        args.request_id.unwrap_or_else(Invocation::random_id),
        Some(timeout),
    );
    finish(app.handle(&event, &invocation).await)
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
    while let Some(arg) = it.next() {
        let mut value = |what: &str| {
            it.next()
                .map(str::to_string)
                .ok_or_else(|| format!("{arg} needs {what}"))
        };
        match arg {
            "--from" => start.from = value("a timestamp")?,
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
    Ok(Some(BackfillArgs { start, concurrency }))
}

/// `replay-sync backfill …`: plan, slices and commit in this process.
async fn backfill(args: &[String]) -> ExitCode {
    let args = match usage(parse_backfill_args(args)) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let app = match Config::from_env() {
        Ok(config) => App::new(config).await,
        Err(e) => Err(e),
    };
    let app = match app {
        Ok(a) => a,
        Err(e) => {
            eprintln!("replay-sync: {e}");
            return ExitCode::from(2);
        }
    };
    // No deadline: each slice is read to its end in one go.
    let invocation = Invocation::new(Invocation::random_id(), None);
    let result = app
        .engine()
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
        .map_err(|e| e.scrubbed(app.source.secrets()));
    app.log(&result);
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
