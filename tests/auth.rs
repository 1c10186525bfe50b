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
