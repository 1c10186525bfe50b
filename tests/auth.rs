//! API credentials against the playground's own auth endpoints (it prints its credentials at
//! start-up): a bearer token from the environment, an API key from Secrets Manager (moto).
//! The credential never appears in the output or the logs.

mod common;

use std::process::{Command, Output};

use common::peers::{self, Peer};
use serde_json::Value;

/// The credential the playground printed after `label` (a UUID). Its Flask reloader runs
/// the module again in the serving child, which makes and prints new credentials: the last
/// ones printed are the live ones.
fn credential(pg: &Peer, label: &str) -> String {
    let log = std::fs::read_to_string(&pg.log).unwrap();
    let at = log
        .rfind(label)
        .unwrap_or_else(|| panic!("the playground did not print {label:?}:\n{log}"));
    log[at + label.len()..].chars().take(36).collect()
}

fn run(env: &[(&str, String)]) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_replay-sync"));
    cmd.env_clear().current_dir(dir.path()).arg("invoke");
    for (k, v) in env {
        cmd.env(k, v);
    }
    (cmd.output().unwrap(), dir)
}

fn all_output(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn bearer_token_from_the_environment() {
    let pg = peers::playground();
    let token = credential(pg, "Bearer Token: ");
    let url = format!("{}/auth/http_bearer", pg.url());

    let (out, _dir) = run(&[("API_URL", url.clone()), ("API_AUTH_TOKEN", token.clone())]);
    assert!(out.status.success(), "{}", all_output(&out));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        s["records_written"], 20,
        "the bearer endpoint serves 20 users"
    );
    assert!(
        !all_output(&out).contains(&token),
        "the token is never printed"
    );

    // Without it: a clear 401, at once.
    let (out, _dir) = run(&[("API_URL", url.clone())]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HTTP 401") && err.contains("Authorization header is missing"),
        "{err}"
    );

    // A wrong one: the same, and the wrong token is not echoed either.
    let (out, _dir) = run(&[("API_URL", url), ("API_AUTH_TOKEN", "not-the-token".into())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!all_output(&out).contains("not-the-token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_from_secrets_manager() {
    let pg = peers::playground();
    let key = credential(pg, "API Key: ");
    let client = aws_sdk_secretsmanager::Client::new(&common::moto_sdk_config());
    let name = peers::unique("api-key");
    let arn = client
        .create_secret()
        .name(&name)
        .secret_string(serde_json::json!({"token": key}).to_string())
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let mut env = vec![
        ("API_URL", format!("{}/auth/api_key", pg.url())),
        ("API_AUTH_SECRET_ARN", arn.clone()),
        ("API_AUTH_SCHEME", "apiKey".into()),
    ];
    env.extend(common::moto_env());
    let (out, _dir) = tokio::task::spawn_blocking(move || run(&env))
        .await
        .unwrap();
    assert!(out.status.success(), "{}", all_output(&out));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["records_written"], 20);
    assert!(!all_output(&out).contains(&key), "the key is never printed");

    // A secret that does not exist fails at start-up, naming the variable.
    let mut env = vec![
        ("API_URL", format!("{}/auth/api_key", pg.url())),
        ("API_AUTH_SECRET_ARN", format!("{arn}-missing")),
    ];
    env.extend(common::moto_env());
    let (out, _dir) = tokio::task::spawn_blocking(move || run(&env))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("API_AUTH_SECRET_ARN"));
}

/// The `Username: … Password: …` the playground printed on the last line naming `endpoint`.
fn user_password(pg: &Peer, endpoint: &str) -> (String, String) {
    let log = std::fs::read_to_string(&pg.log).unwrap();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains(endpoint) && l.contains("Username: "))
        .unwrap_or_else(|| panic!("the playground did not print {endpoint}'s credentials:\n{log}"));
    let after = &line[line.find("Username: ").unwrap() + 10..];
    let user = after.split_whitespace().next().unwrap().to_string();
    let password = after[after.find("Password: ").unwrap() + 10..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    (user, password)
}

/// `API_AUTH=basic` with `user:password`, and `API_AUTH=session` (a login, then its token as
/// `Token …`) against the playground's own endpoints (issue 21). Neither the password nor
/// the token is printed.
#[test]
fn basic_and_session_logins_against_the_playground() {
    let pg = peers::playground();
    let (user, password) = user_password(pg, "auth/http_basic");
    let (out, _dir) = run(&[
        ("API_URL", format!("{}/auth/http_basic", pg.url())),
        ("API_AUTH", "basic".into()),
        ("API_AUTH_TOKEN", format!("{user}:{password}")),
    ]);
    assert!(out.status.success(), "{}", all_output(&out));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["records_written"], 20);
    assert!(!all_output(&out).contains(&password));

    let (user, password) = user_password(pg, "auth/session_token/login");
    let session = |credential: String| {
        run(&[
            ("API_URL", format!("{}/auth/session_token/data", pg.url())),
            ("API_AUTH", "session".into()),
            (
                "API_LOGIN_URL",
                format!("{}/auth/session_token/login", pg.url()),
            ),
            ("API_AUTH_SCHEME", "Token".into()),
            ("API_AUTH_TOKEN", credential),
        ])
    };
    let (out, _dir) = session(format!(
        r#"{{"username": "{user}", "password": "{password}"}}"#
    ));
    assert!(out.status.success(), "{}", all_output(&out));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["records_written"], 20);
    assert!(!all_output(&out).contains(&password));

    // A wrong password: the login is refused, clearly, and nothing of it is printed.
    let (out, _dir) = session(format!("{user}:wrong-{password}"));
    assert_eq!(out.status.code(), Some(1), "{}", all_output(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HTTP 401") && err.contains("API_LOGIN_URL"),
        "{err}"
    );
    assert!(!all_output(&out).contains(&password));
}

/// `API_AUTH=oauth2` against a fixture token endpoint: the token is fetched once, sent as
/// `Bearer`, fetched again when the API refuses it mid-run (401) — and a run whose renewed
/// token is refused too fails clearly after exactly one renewal. Tokens the API echoes are
/// never printed (issue 21).
#[test]
fn oauth2_tokens_are_fetched_once_renewed_after_a_401_and_never_printed() {
    use common::fixture::{FixtureApi, Response, user};
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::{Arc, Mutex};

    // Tokens tok-1, tok-2, …; the API accepts only the newest one issued, and revokes the
    // first as soon as page 2 is asked for (`revoke`), or refuses every token (`refuse_all`).
    let run_with = |revoke: bool, refuse_all: bool| {
        let issued = Arc::new(AtomicUsize::new(0));
        let valid = Arc::new(Mutex::new(String::new()));
        let (i2, v2) = (issued.clone(), valid.clone());
        let rows: Vec<Value> = (0..6)
            .map(|i| user(&format!("o{i}"), &format!("2024-01-15T10:0{i}:00Z")))
            .collect();
        let api = FixtureApi::start(move |req, _| {
            if req.path == "/token" {
                let n = i2.fetch_add(1, SeqCst) + 1;
                *v2.lock().unwrap() = format!("Bearer tok-{n}-secret");
                return Response::json(&serde_json::json!({
                    "access_token": format!("tok-{n}-secret"), "token_type": "bearer", "expires_in": 3600
                }));
            }
            let sent = req
                .headers
                .iter()
                .find_map(|h| {
                    h.strip_prefix("authorization: ")
                        .or_else(|| h.strip_prefix("Authorization: "))
                })
                .unwrap_or("")
                .to_string();
            let page: usize = req.param("page").and_then(|p| p.parse().ok()).unwrap_or(1);
            if revoke && page == 2 && sent.ends_with("tok-1-secret") {
                *v2.lock().unwrap() = "revoked".into();
            }
            if refuse_all || sent != *v2.lock().unwrap() {
                return Response::raw(401, format!(r#"{{"error": "token {sent} is not valid"}}"#));
            }
            common::fixture::records_page(&rows, common::fixture::Paging::BodyField(2), req)
        });
        let (out, _dir) = run(&[
            ("API_URL", api.url("/data")),
            ("API_NEXT_PAGE_FIELD", "next".into()),
            ("API_AUTH", "oauth2".into()),
            ("API_TOKEN_URL", api.url("/token")),
            ("API_AUTH_TOKEN", "client-7:client-s3cret".into()),
        ]);
        (out, issued.load(SeqCst))
    };

    let (out, issued) = run_with(false, false);
    assert!(out.status.success(), "{}", all_output(&out));
    assert_eq!(issued, 1, "one token per cold start");

    let (out, issued) = run_with(true, false);
    assert!(out.status.success(), "{}", all_output(&out));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["records_written"], 6, "{s}");
    assert_eq!(issued, 2, "renewed once after the 401");
    assert!(
        !all_output(&out).contains("-secret"),
        "{}",
        all_output(&out)
    );

    let (out, issued) = run_with(false, true);
    assert_eq!(out.status.code(), Some(1), "{}", all_output(&out));
    assert_eq!(issued, 2, "one renewal, then the second 401 fails the run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HTTP 401"), "{err}");
    assert!(
        !all_output(&out).contains("-secret"),
        "{}",
        all_output(&out)
    );
    assert!(!all_output(&out).contains("client-s3cret"));
}

/// An OAuth2 token is renewed a little before `expires_in` says it ends, without waiting
/// for the API to refuse it (issue 21).
#[test]
fn oauth2_tokens_are_renewed_before_they_expire() {
    use common::fixture::{FixtureApi, Response, user};
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::{Arc, Mutex};
    let issued = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let valid = Arc::new(Mutex::new(Vec::<(String, std::time::Instant)>::new()));
    let (i2, r2, v2) = (issued.clone(), refused.clone(), valid.clone());
    let rows: Vec<Value> = (0..6)
        .map(|i| user(&format!("e{i}"), &format!("2024-01-15T10:0{i}:00Z")))
        .collect();
    let api = FixtureApi::start(move |req, _| {
        if req.path == "/token" {
            let n = i2.fetch_add(1, SeqCst) + 1;
            let token = format!("tok-{n}-secret");
            // Valid for one second.
            v2.lock().unwrap().push((
                format!("Bearer {token}"),
                std::time::Instant::now() + std::time::Duration::from_secs(1),
            ));
            return Response::json(&serde_json::json!({"access_token": token, "expires_in": 1}));
        }
        let sent = req
            .headers
            .iter()
            .find_map(|h| {
                h.split_once(": ")
                    .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            })
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        let ok = v2
            .lock()
            .unwrap()
            .iter()
            .any(|(t, until)| *t == sent && std::time::Instant::now() < *until);
        if !ok {
            r2.fetch_add(1, SeqCst);
            return Response::raw(401, r#"{"error": "expired"}"#);
        }
        common::fixture::records_page(&rows, common::fixture::Paging::BodyField(2), req)
            .delayed(std::time::Duration::from_millis(600))
    });
    let (out, _dir) = run(&[
        ("API_URL", api.url("/data")),
        ("API_NEXT_PAGE_FIELD", "next".into()),
        ("API_AUTH", "oauth2".into()),
        ("API_TOKEN_URL", api.url("/token")),
        (
            "API_AUTH_TOKEN",
            r#"{"client_id": "c", "client_secret": "s"}"#.into(),
        ),
    ]);
    assert!(out.status.success(), "{}", all_output(&out));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["records_written"], 6, "{s}");
    assert!(issued.load(SeqCst) >= 2, "renewed as it expired");
    assert_eq!(refused.load(SeqCst), 0, "never sent an expired token");
}
