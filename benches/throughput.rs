//! Throughput and memory of a sync, against a raw pass-through measured in the same run.
//!
//!     cargo bench --bench throughput            # 10 k, 100 k and 1 M records
//!     cargo bench --bench throughput -- 10000   # chosen sizes
//!     cargo bench --bench throughput -- shapes 1000000   # the default shape against a
//!                                               # nested epoch_ms cursor, alternating
//!
//! A fixture API on 127.0.0.1 serves N records (~330 bytes each, 1,000 per page, pages
//! pre-built in memory, the next page named in the body and in a `Link` header). For each N:
//!
//! * raw: fetch every page with reqwest and append its bytes to a file, no parsing (one
//!   fsync at the end);
//! * sync: the real release binary, `replay-sync invoke`, directory output, file state,
//!   run as a child process so that its peak RSS (`VmHWM`) is its own.
//!
//! Reports records/s for both, their ratio, and the sync's peak RSS. Outputs go to the
//! system's temporary directory: `TMPDIR=/dev/shm` takes the disk out of the comparison.

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::record;

const PER_PAGE: usize = 1000;

/// Pre-built page bodies, served from memory.
fn build_pages(n: usize) -> Vec<Vec<u8>> {
    build_pages_of(n, record)
}

/// [`build_pages`] of records made by `record`.
fn build_pages_of(n: usize, record: fn(usize) -> String) -> Vec<Vec<u8>> {
    let pages = n.div_ceil(PER_PAGE);
    (0..pages)
        .map(|p| {
            let mut body = String::with_capacity(PER_PAGE * 340);
            body.push_str(r#"{"data":["#);
            for i in p * PER_PAGE..((p + 1) * PER_PAGE).min(n) {
                if i > p * PER_PAGE {
                    body.push(',');
                }
                body.push_str(&record(i));
            }
            body.push_str("],\"next\":");
            if p + 1 < pages {
                body.push_str(&format!("\"/records?page={}\"}}", p + 1));
            } else {
                body.push_str("null}");
            }
            body.into_bytes()
        })
        .collect()
}

fn serve(pages: Arc<Vec<Vec<u8>>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let pages = pages.clone();
            std::thread::spawn(move || handle(conn, &pages));
        }
    });
    port
}

/// HTTP/1.1 with keep-alive: one request after another on the connection.
fn handle(conn: TcpStream, pages: &[Vec<u8>]) {
    conn.set_nodelay(true).ok();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    loop {
        let Some(target) = common::next_request(&mut reader) else {
            return;
        };
        let target = target.as_str();
        let page: usize = target
            .split("page=")
            .nth(1)
            .and_then(|p| p.split('&').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let Some(body) = pages.get(page) else { return };
        let link = if page + 1 < pages.len() {
            format!("Link: </records?page={}>; rel=\"next\"\r\n", page + 1)
        } else {
            String::new()
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{link}\r\n",
            body.len()
        );
        if conn.write_all(head.as_bytes()).is_err() || conn.write_all(body).is_err() {
            return;
        }
    }
}

/// Fetch every page and write its bytes, following the Link header: no JSON parsing.
/// Removes the outputs of a measurement and flushes what is left dirty (`sync`).
fn settle(dir: &std::path::Path) {
    let _ = std::fs::remove_file(dir.join("raw.json"));
    let _ = std::fs::remove_dir_all(dir.join("out"));
    let _ = std::fs::remove_file(dir.join("state.json"));
    let _ = std::process::Command::new("sync").status();
}

fn raw_pass_through(port: u16, dir: &std::path::Path) -> (Duration, u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let mut out = tokio::fs::File::create(dir.join("raw.json")).await.unwrap();
        let t0 = Instant::now();
        let mut url = format!("http://127.0.0.1:{port}/records?page=0");
        let mut bytes = 0u64;
        loop {
            let resp = client.get(&url).send().await.unwrap();
            let next = resp
                .headers()
                .get("link")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split('<').nth(1)?.split('>').next().map(str::to_string));
            let mut resp = resp;
            while let Some(chunk) = resp.chunk().await.unwrap() {
                bytes += chunk.len() as u64;
                tokio::io::AsyncWriteExt::write_all(&mut out, &chunk)
                    .await
                    .unwrap();
            }
            match next {
                Some(n) => url = format!("http://127.0.0.1:{port}{n}"),
                None => break,
            }
        }
        tokio::io::AsyncWriteExt::flush(&mut out).await.unwrap();
        out.sync_all().await.unwrap();
        (t0.elapsed(), bytes)
    })
}

/// The real binary; returns (elapsed, peak RSS in KiB, summary).
///
/// Peak RSS is the child's own `VmHWM`, polled from /proc once it runs our binary:
/// `wait4`'s `ru_maxrss` would also count the moments between fork and exec, when the child
/// still shares this process's pre-built pages.
fn sync(port: u16, dir: &std::path::Path) -> (Duration, u64, serde_json::Value) {
    sync_with(port, dir, &[])
}

/// [`sync`] with more environment (e.g. a buffer that re-reads everything).
fn sync_with(
    port: u16,
    dir: &std::path::Path,
    extra: &[(&str, &str)],
) -> (Duration, u64, serde_json::Value) {
    let mut env: Vec<(String, String)> = vec![
        (
            "API_URL".into(),
            format!("http://127.0.0.1:{port}/records?page=0"),
        ),
        ("API_NEXT_PAGE_FIELD".into(), "next".into()),
        (
            "STATE_STORE".into(),
            format!("file://{}/state.json", dir.display()),
        ),
        ("OUTPUT".into(), format!("file://{}/out", dir.display())),
    ];
    // Tuning knobs for experiments pass through.
    env.extend(std::env::vars().filter(|(k, _)| {
        k.starts_with("BATCH_")
            || k.starts_with("MALLOC_")
            || k == "FINGERPRINT_MAX"
            || k == "OUTPUT_COMPRESSION"
    }));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    common::invoke(env_key_values(&env))
}

fn env_key_values(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// The default shape (`id`, `updatedAt` in RFC 3339) against a nested `meta.updated_at` in
/// epoch milliseconds, the same records otherwise, alternating five times: median records/s
/// of each and their ratio.
fn shapes(n: usize) {
    let plain = serve(Arc::new(build_pages(n)));
    let nested = serve(Arc::new(build_pages_of(n, common::record_nested)));
    let shape = [
        ("CURSOR_FIELD", "meta.updated_at"),
        ("CURSOR_FORMAT", "epoch_ms"),
    ];
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let (t, _, s) = sync_with(plain, dir.path(), &[]);
        assert_eq!(s["records_written"].as_u64(), Some(n as u64));
        a.push(n as f64 / t.as_secs_f64());
        settle(dir.path());
        let dir = tempfile::tempdir().unwrap();
        let (t, _, s) = sync_with(nested, dir.path(), &shape);
        assert_eq!(s["records_written"].as_u64(), Some(n as u64), "{s}");
        b.push(n as f64 / t.as_secs_f64());
        settle(dir.path());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (ma, mb) = (median(&mut a), median(&mut b));
    println!(
        "{n} records, five alternating runs: default shape median {ma:.0} rec/s, nested epoch_ms {mb:.0} rec/s: {:.2}x",
        mb / ma
    );
}

fn main() {
    if std::env::args().any(|a| a == "shapes") {
        let n = std::env::args()
            .skip(1)
            .find_map(|a| a.parse().ok())
            .unwrap_or(1_000_000);
        return shapes(n);
    }
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect::<Vec<_>>();
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000, 1_000_000]
    } else {
        sizes
    };
    if let Ok(secs) = std::env::var("BENCH_SERVE_ONLY") {
        // Investigation aid: serve the largest size and wait.
        let port = serve(Arc::new(build_pages(sizes[0])));
        println!(
            "serving {} records on http://127.0.0.1:{port}/records?page=0",
            sizes[0]
        );
        std::thread::sleep(Duration::from_secs(secs.parse().unwrap_or(60)));
        return;
    }
    println!(
        "record size ≈ {} bytes, {PER_PAGE} records a page",
        record(123_456).len()
    );
    println!(
        "OUTPUT_COMPRESSION={}",
        std::env::var("OUTPUT_COMPRESSION").unwrap_or_else(|_| "none".into())
    );
    println!(
        "{:>9} {:>12} {:>12} {:>7} {:>11} {:>9} {:>10}",
        "records", "raw rec/s", "sync rec/s", "ratio", "sync MB/s", "peak RSS", "out B/rec"
    );
    for n in sizes {
        let pages = Arc::new(build_pages(n));
        let port = serve(pages.clone());
        let dir = tempfile::tempdir().unwrap();
        // Warm-up (page cache, connection set-up), then measure each once more. Each
        // measurement starts with no dirty pages left by the one before (its output is
        // removed, the rest flushed), so that neither pays for the other's writeback.
        raw_pass_through(port, dir.path());
        settle(dir.path());
        let (raw, bytes) = raw_pass_through(port, dir.path());
        settle(dir.path());
        let (took, rss_kib, summary) = sync(port, dir.path());
        assert_eq!(
            summary["records_written"].as_u64(),
            Some(n as u64),
            "every record landed"
        );
        let raw_rate = n as f64 / raw.as_secs_f64();
        let sync_rate = n as f64 / took.as_secs_f64();
        // The data objects' size (not the manifest, the fingerprints).
        let out: u64 = std::fs::read_dir(dir.path().join("out/user"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        println!(
            "{:>9} {:>12.0} {:>12.0} {:>7.2} {:>11.1} {:>7.1}MB {:>10.1}",
            n,
            raw_rate,
            sync_rate,
            sync_rate / raw_rate,
            bytes as f64 / took.as_secs_f64() / 1e6,
            rss_kib as f64 / 1024.0,
            out as f64 / n as f64
        );
        if n >= 500_000 {
            full_fingerprints(port, dir.path(), n);
        }
    }
}

/// The memory bound with the fingerprint set full (`FINGERPRINT_MAX`, default 500,000 ids):
/// a buffer that covers every record, a first run that fills the set, then a second run that
/// loads it, re-reads every record and skips them all (the steady state of a deep replay).
fn full_fingerprints(port: u16, dir: &std::path::Path, n: usize) {
    settle(dir);
    let deep = [("BUFFER_HOURS", "50000")];
    let (_, first_kib, first) = sync_with(port, dir, &deep);
    assert_eq!(first["records_written"].as_u64(), Some(n as u64));
    let (took, second_kib, second) = sync_with(port, dir, &deep);
    assert!(
        second["records_skipped"].as_u64() > Some(0),
        "the set was loaded and used: {second}"
    );
    println!(
        "{:>9} full fingerprint set: filling run {:.1}MB, next run {:.1}MB ({:.2} s, {} skipped, {} written)",
        n,
        first_kib as f64 / 1024.0,
        second_kib as f64 / 1024.0,
        took.as_secs_f64(),
        second["records_skipped"],
        second["records_written"]
    );
}
