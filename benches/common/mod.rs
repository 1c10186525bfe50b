//! What the benchmarks share.

/// Record `i` of the benchmark data: ~341 bytes, user-like fields, one `updatedAt` a
/// second from 2024-02-01T00:00:00Z, so that records come in ascending order (for the first
/// 2.4 million).
#[allow(dead_code)]
pub fn record(i: usize) -> String {
    let (h, m, s) = ((i / 3600) % 24, (i / 60) % 60, i % 60);
    let day = 1 + (i / 86_400) % 28;
    record_at(i, &format!("2024-02-{day:02}T{h:02}:{m:02}:{s:02}Z"))
}

/// Record `i` stamped `updated_at`.
#[allow(dead_code)]
pub fn record_at(i: usize, updated_at: &str) -> String {
    format!(
        concat!(
            r#"{{"id":"u{:010}","name":"Person Number {}","email":"person.{}@example.com","#,
            r#""address":"{} Example Street, Apt {}\nSpringfield, IL 62704","company":"Example Holdings Ltd","#,
            r#""job":"Senior Quantity Surveyor","score":{}.{:03},"active":true,"tags":["alpha","beta"],"#,
            r#""createdAt":"2024-01-01T00:00:00Z","updatedAt":"{}"}}"#
        ),
        i,
        i,
        i,
        i % 9999,
        i % 97,
        i % 100_000,
        i % 1000,
        updated_at
    )
}

/// Runs the real release binary's `replay-sync invoke` with exactly `env` (and `RUST_LOG=warn`);
/// returns (elapsed, peak RSS in KiB, the summary).
///
/// Peak RSS is the child's own `VmHWM`, polled from /proc once it runs our binary:
/// `wait4`'s `ru_maxrss` would also count the moments between fork and exec, when the child
/// still shares this process's pre-built pages.
#[allow(dead_code)]
pub fn invoke(env: Vec<(&str, &str)>) -> (std::time::Duration, u64, serde_json::Value) {
    run_bin(&["invoke"], env)
}

/// [`invoke`] with other arguments (e.g. `backfill …`).
#[allow(dead_code)]
pub fn run_bin(
    args: &[&str],
    env: Vec<(&str, &str)>,
) -> (std::time::Duration, u64, serde_json::Value) {
    use std::time::{Duration, Instant};
    let t0 = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_replay-sync"))
        .args(args)
        .env_clear()
        .env("RUST_LOG", "warn")
        .envs(env)
        .stdout(std::process::Stdio::piped())
        // The metrics line and warnings: shown only if the run fails.
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap());
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap());
    let mut peak_kib = 0u64;
    while child.try_wait().unwrap().is_none() {
        if let Ok(status) = std::fs::read_to_string(&status_path)
            && status
                .lines()
                .next()
                .is_some_and(|l| l.ends_with("replay-sync"))
        {
            let hwm = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0);
            peak_kib = peak_kib.max(hwm);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = t0.elapsed();
    let text = reader.join().unwrap();
    let log = log.join().unwrap();
    (
        elapsed,
        peak_kib,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}\n{log}")),
    )
}

/// The next request on a keep-alive connection: its target (`/path?query`), after reading
/// its headers; `None` once the client has gone.
#[allow(dead_code)]
pub fn next_request(reader: &mut impl std::io::BufRead) -> Option<String> {
    let mut line = String::new();
    if reader.read_line(&mut line).map_or(true, |n| n == 0) {
        return None;
    }
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" {
            break;
        }
    }
    Some(line.split_whitespace().nth(1).unwrap_or("/").to_string())
}

/// Record `i` in another shape: the same fields, its time as epoch milliseconds at
/// `meta.updated_at` instead of `updatedAt` (read with `CURSOR_FIELD=meta.updated_at`,
/// `CURSOR_FORMAT=epoch_ms`).
#[allow(dead_code)]
pub fn record_nested(i: usize) -> String {
    let ms = 1_706_745_600_000u64 + (i as u64 % 2_419_200) * 1000; // 2024-02-01 on
    let plain = record_at(i, "");
    let cut = plain.rfind(r#","updatedAt":"""#).unwrap_or(plain.len() - 1);
    format!(r#"{},"meta":{{"v":1,"updated_at":{ms}}}}}"#, &plain[..cut])
}
