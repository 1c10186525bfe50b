//! Time slices against an API that takes its time: `FETCH_CONCURRENCY=8` against one stream,
//! measured in the same run, and peak memory as the data grows.
//!
//!     cargo bench --bench slices                 # speed-ups, then memory (about 2 minutes)
//!     cargo bench --bench slices -- speed        # only the speed-ups
//!     cargo bench --bench slices -- memory       # only the memory table
//!     LATENCY_MS=50 cargo bench --bench slices -- speed
//!     cargo bench --bench slices -- backfill     # a month by `backfill` against one stream
//!     cargo bench --bench slices -- bytes        # bytes per record: none, gzip, zstd
//!     cargo bench --bench slices -- streams      # three streams in one invoke, one slow
//!
//! A fixture API on 127.0.0.1 serves N user records (~341 bytes each, 1,000 a page) sorted by
//! `updatedAt`, filtered by `since <= updatedAt < until`, each page answered after
//! `LATENCY_MS` (default 100), the next page named in the body. The real release binary
//! (`replay-sync invoke`, file state, directory output) reads:
//!
//! * **spread**: 100,000 rows spread evenly over the 30 days of the window;
//! * **dense**: the same rows all within 2 hours of those 30 days;
//! * **full**: a first (full) sync of the spread rows: no lower bound to cut from.
//!
//! Memory: peak RSS (`VmHWM`) of a spread read of 10,000 to 1,000,000 rows with no latency,
//! at `FETCH_CONCURRENCY` 1, 4 (the default) and 8, and with batches four times larger.

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

mod common;

const PER_PAGE: usize = 1000;

/// Rows sorted by `updatedAt`: (time in seconds, JSON text).
struct Rows {
    at: Vec<i64>,
    json: Vec<String>,
}

impl Rows {
    /// `n` user rows of varied content (names, emails, addresses, jobs drawn from lists and
    /// random numbers, as a real users table has), spread over `span` from `start`: what the
    /// compression figures are measured on (the throughput rows repeat themselves too much).
    fn varied(n: usize, start: DateTime<Utc>, span: TimeDelta) -> Rows {
        const FIRST: [&str; 16] = [
            "Ada", "Brian", "Chloe", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jamal",
            "Kofi", "Lena", "Mateo", "Nadia", "Oscar", "Priya",
        ];
        const LAST: [&str; 16] = [
            "Okafor",
            "Lindqvist",
            "Moreau",
            "Tanaka",
            "Silva",
            "Kowalski",
            "Haddad",
            "Nguyen",
            "Fischer",
            "Romero",
            "Petrov",
            "Mensah",
            "O'Brien",
            "Rossi",
            "Yilmaz",
            "Chen",
        ];
        const STREETS: [&str; 8] = [
            "Maple Ave",
            "Harbour Rd",
            "Kingsway",
            "Elm St",
            "Rue de la Paix",
            "Birch Lane",
            "Station Rd",
            "Canal St",
        ];
        const JOBS: [&str; 8] = [
            "Data Engineer",
            "Nurse",
            "Quantity Surveyor",
            "Teacher",
            "Pilot",
            "Chef",
            "Accountant",
            "Architect",
        ];
        let mut rng = fastrand::Rng::with_seed(42);
        let step = span.num_milliseconds() as f64 / n as f64;
        let mut at = Vec::with_capacity(n);
        let mut json = Vec::with_capacity(n);
        for i in 0..n {
            let t = start + TimeDelta::milliseconds((i as f64 * step) as i64);
            let t = t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
            let (f, l) = (FIRST[rng.usize(..16)], LAST[rng.usize(..16)]);
            let created = start - TimeDelta::seconds(rng.i64(0..400_000_000));
            json.push(
                serde_json::json!({
                    "id": format!("{:08x}-{:04x}-{:04x}", rng.u32(..), rng.u16(..), rng.u16(..)),
                    "name": format!("{f} {l}"),
                    "email": format!("{}.{}{}@{}.example.com", f.to_lowercase(), l.to_lowercase(), rng.u16(..1000), ["mail", "post", "inbox", "web"][rng.usize(..4)]),
                    "address": format!("{} {}, Apt {}\n{} {:05}", rng.u16(1..9999), STREETS[rng.usize(..8)], rng.u8(1..200), ["Springfield", "Riverton", "Lakeside", "Fairview"][rng.usize(..4)], rng.u32(..99999)),
                    "company": format!("{} {} {}", LAST[rng.usize(..16)], ["Holdings", "Labs", "& Sons", "Group"][rng.usize(..4)], ["Ltd", "Inc", "GmbH", "SA"][rng.usize(..4)]),
                    "job": JOBS[rng.usize(..8)],
                    "createdAt": created.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    "updatedAt": t,
                })
                .to_string(),
            );
            at.push(replay_sync::window::parse_ts(&t).unwrap().timestamp());
        }
        Rows { at, json }
    }

    /// `n` rows from `start`, `step` apart.
    fn new(n: usize, start: DateTime<Utc>, span: TimeDelta) -> Rows {
        let step = span.num_milliseconds() as f64 / n as f64;
        let mut at = Vec::with_capacity(n);
        let mut json = Vec::with_capacity(n);
        for i in 0..n {
            let t = start + TimeDelta::milliseconds((i as f64 * step) as i64);
            let t = t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
            at.push(replay_sync::window::parse_ts(&t).unwrap().timestamp());
            json.push(common::record_at(i, &t));
        }
        Rows { at, json }
    }
}

fn serve(rows: Arc<Rows>, latency: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let rows = rows.clone();
            std::thread::spawn(move || handle(conn, &rows, latency));
        }
    });
    port
}

/// HTTP/1.1 with keep-alive: one request after another on the connection.
fn handle(conn: TcpStream, rows: &Rows, latency: Duration) {
    conn.set_nodelay(true).ok();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    loop {
        let Some(target) = common::next_request(&mut reader) else {
            return;
        };
        let target = target.as_str();
        let url = url::Url::parse(&format!("http://x{target}")).unwrap();
        let param = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let time = |name: &str| {
            param(name).map(|v| replay_sync::window::parse_ts(&v).unwrap().timestamp())
        };
        let from = time("since").map_or(0, |s| rows.at.partition_point(|&t| t < s));
        let to = time("until").map_or(rows.at.len(), |u| rows.at.partition_point(|&t| t < u));
        let page: usize = param("page").and_then(|p| p.parse().ok()).unwrap_or(0);
        let start = (from + page * PER_PAGE).min(to);
        let end = (start + PER_PAGE).min(to);
        let mut body = String::with_capacity((end - start) * 345 + 200);
        body.push_str(r#"{"data":["#);
        for (k, r) in rows.json[start..end].iter().enumerate() {
            if k > 0 {
                body.push(',');
            }
            body.push_str(r);
        }
        body.push_str("],\"next\":");
        if end < to {
            let mut next = url.clone();
            let kept: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(k, _)| k != "page")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            next.query_pairs_mut()
                .clear()
                .extend_pairs(kept)
                .append_pair("page", &(page + 1).to_string());
            body.push_str(&format!(
                "\"{}?{}\"}}",
                next.path(),
                next.query().unwrap_or("")
            ));
        } else {
            body.push_str("null}");
        }
        std::thread::sleep(latency);
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        if conn.write_all(head.as_bytes()).is_err() || conn.write_all(body.as_bytes()).is_err() {
            return;
        }
    }
}

/// One run of the binary against `port`: a state whose cursor puts the window start at
/// `since` (none: a full sync), `FETCH_CONCURRENCY=slots`, more `extra` environment.
fn run(
    port: u16,
    since: Option<DateTime<Utc>>,
    slots: usize,
    extra: &[(&str, &str)],
) -> (Duration, u64, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    if let Some(s) = since {
        // The buffer (2 h) back from the cursor is the window start.
        let cursor = replay_sync::window::format_ts(s + TimeDelta::hours(2));
        std::fs::write(
            &state,
            format!(r#"{{"user": {{"last_timestamp": "{cursor}", "version": 1}}}}"#),
        )
        .unwrap();
    }
    let api = format!("http://127.0.0.1:{port}/users");
    let slots = slots.to_string();
    let state = format!("file://{}", state.display());
    let out = format!("file://{}/out", dir.path().display());
    let mut env = vec![
        ("API_URL", api.as_str()),
        ("API_NEXT_PAGE_FIELD", "next"),
        ("API_UNTIL_PARAM", "until"),
        ("FETCH_CONCURRENCY", slots.as_str()),
        ("STATE_STORE", state.as_str()),
        ("OUTPUT", out.as_str()),
    ];
    env.extend_from_slice(extra);
    // Allocator and batch knobs for experiments pass through.
    let malloc: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("MALLOC_") || k.starts_with("BATCH_"))
        .collect();
    env.extend(malloc.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    common::invoke(env)
}

fn speed(latency: Duration) {
    let n = 100_000;
    let now = Utc::now();
    let start = now - TimeDelta::days(30);
    let spread = Arc::new(Rows::new(n, start, TimeDelta::days(30)));
    let dense = Arc::new(Rows::new(
        n,
        start + TimeDelta::days(11),
        TimeDelta::hours(2),
    ));
    println!(
        "{n} rows, {PER_PAGE} a page, {} ms a page; FETCH_CONCURRENCY 8 against 1, same run",
        latency.as_millis()
    );
    println!(
        "{:>8} {:>12} {:>12} {:>9} {:>8} {:>8}",
        "case", "1 stream s", "8 slices s", "speed-up", "pages 1", "pages 8"
    );
    for (case, rows, since) in [
        ("spread", &spread, Some(start)),
        ("dense", &dense, Some(start)),
        ("full", &spread, None),
    ] {
        let port = serve(rows.clone(), latency);
        let (one, _, s1) = run(port, since, 1, &[]);
        let (eight, _, s8) = run(port, since, 8, &[]);
        for s in [&s1, &s8] {
            assert_eq!(s["records_written"].as_u64(), Some(n as u64), "{s}");
            assert_eq!(s["records_fetched"].as_u64(), Some(n as u64), "{s}");
        }
        println!(
            "{:>8} {:>12.2} {:>12.2} {:>8.1}x {:>8} {:>8}",
            case,
            one.as_secs_f64(),
            eight.as_secs_f64(),
            one.as_secs_f64() / eight.as_secs_f64(),
            s1["pages"],
            s8["pages"]
        );
    }
}

/// A month of 100,000 rows at 50 ms a page: `replay-sync backfill --concurrency 8` (daily
/// slices) against one `invoke` stream reading the same month, in the same run.
fn backfill() {
    let n = 100_000;
    let latency = Duration::from_millis(50);
    let now = Utc::now();
    let start = now - TimeDelta::days(30);
    let port = serve(Arc::new(Rows::new(n, start, TimeDelta::days(30))), latency);
    let (stream, _, s1) = run(port, Some(start), 1, &[]);
    let api = format!("http://127.0.0.1:{port}/users");
    let from = replay_sync::window::format_ts(start);
    let to = replay_sync::window::format_ts(now);
    // With `--to`, and without it (sliced up to the planning time, the top slice open).
    let mut timed = Vec::new();
    for to in [Some(to.as_str()), None] {
        let dir = tempfile::tempdir().unwrap();
        let state = format!("file://{}/state.json", dir.path().display());
        let out = format!("file://{}/out", dir.path().display());
        let env = vec![
            ("API_URL", api.as_str()),
            ("API_NEXT_PAGE_FIELD", "next"),
            ("API_UNTIL_PARAM", "until"),
            ("STATE_STORE", state.as_str()),
            ("OUTPUT", out.as_str()),
        ];
        let mut args = vec!["backfill", "--from", &from];
        if let Some(to) = to {
            args.extend(["--to", to]);
        }
        args.extend(["--slice-hours", "24", "--concurrency", "8"]);
        let (bf, _, s8) = common::run_bin(&args, env);
        for s in [&s1, &s8] {
            assert_eq!(s["records_written"].as_u64(), Some(n as u64), "{s}");
        }
        timed.push(bf);
    }
    println!(
        "a month of {n} rows, {} ms a page: one invoke stream {:.2} s; backfill --concurrency 8 with --to {:.2} s ({:.1}x), without --to {:.2} s ({:.1}x)",
        latency.as_millis(),
        stream.as_secs_f64(),
        timed[0].as_secs_f64(),
        stream.as_secs_f64() / timed[0].as_secs_f64(),
        timed[1].as_secs_f64(),
        stream.as_secs_f64() / timed[1].as_secs_f64()
    );
}

/// Bytes per record of 100,000 varied users for each `OUTPUT_COMPRESSION`, and the time the
/// run took (no latency), in the same run.
fn bytes() {
    let n = 100_000;
    let start = Utc::now() - TimeDelta::days(30);
    let rows = Arc::new(Rows::varied(n, start, TimeDelta::days(30)));
    let raw: usize = rows.json.iter().map(|j| j.len() + 1).sum();
    let port = serve(rows, Duration::ZERO);
    println!(
        "{n} varied users, {:.1} bytes each as the API sends them",
        raw as f64 / n as f64
    );
    println!(
        "{:>6} {:>12} {:>10} {:>8}",
        "codec", "bytes/record", "vs none", "run s"
    );
    let mut plain = 0.0;
    for codec in ["none", "gzip", "zstd"] {
        let dir = tempfile::tempdir().unwrap();
        let api = format!("http://127.0.0.1:{port}/users");
        let state = format!("file://{}/state.json", dir.path().display());
        let out = format!("file://{}/out", dir.path().display());
        let env = vec![
            ("API_URL", api.as_str()),
            ("API_NEXT_PAGE_FIELD", "next"),
            ("OUTPUT_COMPRESSION", codec),
            ("STATE_STORE", state.as_str()),
            ("OUTPUT", out.as_str()),
        ];
        let (took, _, s) = common::invoke(env);
        assert_eq!(s["records_written"].as_u64(), Some(n as u64), "{s}");
        let size: u64 = std::fs::read_dir(dir.path().join("out/user"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        let per = size as f64 / n as f64;
        if codec == "none" {
            plain = per;
        }
        println!(
            "{codec:>6} {per:>12.1} {:>9.1}x {:>8.2}",
            plain / per,
            took.as_secs_f64()
        );
    }
}

/// Three streams from one file (issue 22): two APIs answering a page after 50 ms, one after
/// 400 ms, 20,000 rows each. Each fast stream read alone, then all three by one `invoke`
/// (every stream at once, as their schedules would run them): what a fast stream took with
/// the slow one beside it, against alone, and the whole run against the three one after the
/// other — in the same run.
fn streams() {
    let n = 20_000;
    let start = Utc::now() - TimeDelta::days(30);
    let rows = Arc::new(Rows::new(n, start, TimeDelta::days(30)));
    let (fast, slow) = (Duration::from_millis(50), Duration::from_millis(400));
    let ports = [
        ("fast_a", serve(rows.clone(), fast)),
        ("fast_b", serve(rows.clone(), fast)),
        ("slow", serve(rows, slow)),
    ];
    let file: String = ports
        .iter()
        .map(|(name, port)| {
            format!(
                "[streams.{name}]\nAPI_URL = \"http://127.0.0.1:{port}/users\"\nAPI_NEXT_PAGE_FIELD = \"next\"\n"
            )
        })
        .collect();
    let run_streams = |args: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("streams.toml");
        std::fs::write(&path, &file).unwrap();
        let streams = path.to_string_lossy().into_owned();
        let state = format!("file://{}/state.json", dir.path().display());
        let out = format!("file://{}/out", dir.path().display());
        let env = vec![
            ("STREAMS_CONFIG", streams.as_str()),
            ("STATE_STORE", state.as_str()),
            ("OUTPUT", out.as_str()),
        ];
        let mut all = vec!["invoke"];
        all.extend_from_slice(args);
        common::run_bin(&all, env)
    };
    // Each alone: the run's own duration (as the summary reports it, like the runs in one
    // invoke below), and the process's wall time for the sum.
    let mut alone = Vec::new();
    let mut walls = Vec::new();
    for (name, _) in &ports {
        let (wall, _, s) = run_streams(&["--stream", name]);
        assert_eq!(s["records_written"].as_u64(), Some(n as u64), "{s}");
        alone.push(Duration::from_millis(s["duration_ms"].as_u64().unwrap()));
        walls.push(wall);
    }
    let (together, _, s) = run_streams(&[]);
    let took = |name: &str| {
        assert_eq!(s[name]["records_written"].as_u64(), Some(n as u64), "{s}");
        s[name]["duration_ms"].as_u64().unwrap() as f64 / 1000.0
    };
    let one_after_another: f64 = walls.iter().map(Duration::as_secs_f64).sum();
    println!(
        "3 streams of {n} rows, 1,000 a page; two APIs at {} ms a page, one at {} ms",
        fast.as_millis(),
        slow.as_millis()
    );
    println!(
        "fast_a alone {:.2} s; in one invoke with the others {:.2} s ({:.2}x alone)",
        alone[0].as_secs_f64(),
        took("fast_a"),
        took("fast_a") / alone[0].as_secs_f64()
    );
    println!(
        "fast_b alone {:.2} s; with the others {:.2} s; slow alone {:.2} s, with the others {:.2} s",
        alone[1].as_secs_f64(),
        took("fast_b"),
        alone[2].as_secs_f64(),
        took("slow")
    );
    println!(
        "the three one after another {:.2} s; in one invoke {:.2} s ({:.1}x)",
        one_after_another,
        together.as_secs_f64(),
        one_after_another / together.as_secs_f64()
    );
}

fn memory() {
    println!("peak RSS of a spread read with no latency (MB)");
    type Case<'a> = (&'a str, usize, &'a [(&'a str, &'a str)]);
    let cases: [Case; 4] = [
        ("1 stream", 1, &[]),
        ("4 slices (default)", 4, &[]),
        ("8 slices", 8, &[]),
        (
            "4 slices, batches 4x larger",
            4,
            &[
                ("BATCH_MAX_RECORDS", "40000"),
                ("BATCH_MAX_BYTES", "33554432"),
            ],
        ),
    ];
    print!("{:>32}", "rows");
    let sizes = [10_000, 100_000, 1_000_000];
    for n in sizes {
        print!(" {n:>10}");
    }
    println!();
    let now = Utc::now();
    let start = now - TimeDelta::days(30);
    let data: Vec<(u16, usize)> = sizes
        .iter()
        .map(|&n| {
            let rows = Arc::new(Rows::new(n, start, TimeDelta::days(30)));
            (serve(rows, Duration::ZERO), n)
        })
        .collect();
    for (label, slots, extra) in cases {
        print!("{label:>32}");
        for &(port, n) in &data {
            let (_, kib, s) = run(port, Some(start), slots, extra);
            assert_eq!(s["records_written"].as_u64(), Some(n as u64), "{s}");
            print!(" {:>10.1}", kib as f64 / 1024.0);
        }
        println!();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let only = |what: &str| {
        !args
            .iter()
            .any(|a| ["speed", "memory", "backfill", "bytes", "streams"].contains(&a.as_str()))
            || args.iter().any(|a| a == what)
    };
    let latency = Duration::from_millis(
        std::env::var("LATENCY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100),
    );
    if only("speed") {
        speed(latency);
    }
    if only("backfill") {
        backfill();
    }
    if only("bytes") {
        bytes();
    }
    if only("streams") {
        streams();
    }
    if only("memory") {
        memory();
    }
}
