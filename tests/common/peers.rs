//! Real peers for the integration tests, started from the project's `.venv/` (installed by
//! `scripts/test.sh`) on 127.0.0.1 ports of their own.
//!
//! Each peer runs in its own process group under a small bash watchdog whose stdin is a pipe
//! from the test process: when the test process exits (however it exits), the pipe closes
//! and the watchdog kills the whole group by its id. Nothing outlives the tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A program installed in the project's virtualenv.
pub fn venv_bin(name: &str) -> PathBuf {
    let p = project_dir().join(".venv/bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: run scripts/test.sh (it installs the test peers into .venv/)",
        p.display()
    );
    p
}

/// A free port on 127.0.0.1 (released just before the peer binds it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// A running peer process group.
pub struct Peer {
    pub port: u16,
    pub name: &'static str,
    pub log: PathBuf,
    watchdog: Child,
    _dir: tempfile::TempDir,
}

impl Peer {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts `program args…` (with `{port}` in args replaced) with HOME and the working
    /// directory in a fresh temporary directory, and waits until `ready_path` answers HTTP.
    pub fn start(name: &'static str, program: PathBuf, args: &[&str], ready_path: &str) -> Peer {
        Peer::start_in(name, program, args, ready_path, |cmd, dir| {
            cmd.current_dir(dir).env("HOME", dir);
        })
    }

    /// Like [`Peer::start`], with `setup` choosing the working directory and environment
    /// (it gets the peer's temporary directory).
    pub fn start_in(
        name: &'static str,
        program: PathBuf,
        args: &[&str],
        ready_path: &str,
        setup: impl FnOnce(&mut Command, &std::path::Path),
    ) -> Peer {
        let peer = Peer::spawn(name, program, args, setup);
        peer.wait_ready(ready_path, Duration::from_secs(60));
        peer
    }

    /// Starts `program args…` (with `{port}` in args replaced by a free port) under the
    /// watchdog, without waiting for anything (a process that serves no port of its own,
    /// such as a Lambda function polling the runtime API).
    pub fn spawn(
        name: &'static str,
        program: PathBuf,
        args: &[&str],
        setup: impl FnOnce(&mut Command, &std::path::Path),
    ) -> Peer {
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        // The playground checks PyPI for a newer version once a day, keyed by a file in
        // $HOME: mark it as checked so that start-up needs no network.
        let marker = dir.path().join(".ft_api_playground");
        std::fs::create_dir_all(&marker).ok();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        std::fs::write(marker.join("_last_version_check"), now.to_string()).ok();

        let log = dir.path().join(format!("{name}.log"));
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("{port}", &port.to_string()))
            .collect();
        let script = r#"set -m
log="$1"; shift
"$@" >"$log" 2>&1 </dev/null &
pid=$!
read -r _
kill -TERM -- "-$pid" 2>/dev/null
sleep 1
kill -KILL -- "-$pid" 2>/dev/null
exit 0"#;
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(script)
            .arg("peer-watchdog")
            .arg(&log)
            .arg(&program)
            .args(&args)
            .env("PYTHONUNBUFFERED", "1");
        setup(&mut cmd, dir.path());
        let watchdog = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Peer {
            port,
            name,
            log,
            watchdog,
            _dir: dir,
        }
    }

    /// Waits until `path` answers HTTP. Only for servers that start at once: nothing that
    /// compiles may be waited for with a fixed limit.
    fn wait_ready(&self, path: &str, limit: Duration) {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if http_status(self.port, path).is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{} did not answer on 127.0.0.1:{} within {limit:?}; its log:\n{}",
            self.name,
            self.port,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Waits until the peer accepts TCP connections on its port (for a server whose every
    /// path may wait on something, such as the Lambda runtime API).
    pub fn wait_listening(&self, limit: Duration) {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} did not listen on 127.0.0.1:{} within {limit:?}; its log:\n{}",
            self.name,
            self.port,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Stops the peer now (instead of at process exit).
    pub fn stop(mut self) {
        drop(self.watchdog.stdin.take());
        let _ = self.watchdog.wait();
    }
}

/// A bare `GET path` over a plain socket; the status code if anything answered.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut line = String::new();
    BufReader::new(&mut s).read_line(&mut line).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A bare `GET path`: the body (for small test answers).
pub fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("write");
    let mut all = String::new();
    s.read_to_string(&mut all).expect("read");
    all.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// The DynamoDB + S3 emulator shared by the tests of this binary (unique table and bucket
/// names per test keep them apart).
pub fn moto() -> &'static Peer {
    static MOTO: OnceLock<Peer> = OnceLock::new();
    MOTO.get_or_init(|| {
        Peer::start(
            "moto",
            venv_bin("moto_server"),
            &["-H", "127.0.0.1", "-p", "{port}"],
            "/moto-api/",
        )
    })
}

/// A second moto server with IAM enforced (`tests/iam/principal.py`): the access keys of an
/// `admin` user (set-up and reads) and of a `function` user holding exactly the statements
/// `template.yaml` gives the sync function.
pub struct MotoIam {
    pub peer: Peer,
    pub admin: (String, String),
    pub function: (String, String),
}

pub fn moto_iam() -> &'static MotoIam {
    static MOTO_IAM: OnceLock<MotoIam> = OnceLock::new();
    MOTO_IAM.get_or_init(|| {
        let peer = Peer::start(
            "moto-iam",
            venv_bin("moto_server"),
            &["-H", "127.0.0.1", "-p", "{port}"],
            "/moto-api/",
        );
        let out = Command::new(venv_bin("python"))
            .arg(project_dir().join("tests/iam/principal.py"))
            .arg(peer.url())
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .output()
            .expect("run tests/iam/principal.py");
        assert!(
            out.status.success(),
            "tests/iam/principal.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let keys: serde_json::Value = serde_json::from_slice(&out.stdout).expect("keys JSON");
        let pair = |who: &str| {
            (
                keys[who]["key"].as_str().unwrap().to_string(),
                keys[who]["secret"].as_str().unwrap().to_string(),
            )
        };
        MotoIam {
            admin: pair("admin"),
            function: pair("function"),
            peer,
        }
    })
}

/// The seed's API, shared by the tests of this binary. It serves random users, fixed for the
/// life of the process.
pub fn playground() -> &'static Peer {
    static PLAYGROUND: OnceLock<Peer> = OnceLock::new();
    PLAYGROUND.get_or_init(|| start_playground(&[]))
}

/// A playground of one's own, with extra arguments (e.g. `--rate-limit`).
pub fn start_playground(extra: &[&str]) -> Peer {
    let mut args = vec!["start", "--port", "{port}"];
    args.extend_from_slice(extra);
    Peer::start(
        "playground",
        venv_bin("playground"),
        &args,
        "/incremental/timestamp?since=2999-01-01T00:00:00Z",
    )
}

/// Every user the playground serves (a direct read, for comparison).
///
/// Without `since`, the playground sorts its one list of users in place, from several
/// server threads, and CPython shows a list as empty while it is being sorted: a read that
/// overlaps a full sync can come back empty (seen once in CI). So this read asks with a
/// `since` before every user (the playground then sorts a copy: it empties nothing for
/// others), and reads until two reads agree on a non-empty list.
pub fn playground_users(peer: &Peer) -> Vec<serde_json::Value> {
    // `None` for an answer without users (a rate-limited playground says 429).
    let read = || {
        let body = http_get(
            peer.port,
            "/incremental/timestamp?since=1970-01-01T00:00:00Z",
        );
        serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["data"].as_array().cloned())
    };
    let mut last = None;
    for _ in 0..40 {
        let now = read();
        if now.as_ref().is_some_and(|u| !u.is_empty()) && now == last {
            return now.unwrap_or_default();
        }
        if now.is_some() {
            last = now;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    panic!("the playground did not serve the same users twice in a row");
}

/// A name unique in this process and across runs: for tables, buckets, sync ids.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..10_000)
    )
}
