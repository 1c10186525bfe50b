//! A real account's IAM, where moto does not show it: S3 answers a GET of a missing key
//! with 403 to a caller that may not list the bucket, and every AWS call the function makes
//! must be granted by the role `template.yaml` gives it (as CloudFormation sees it, through
//! the SAM translator).

mod common;

use common::fixture::{FixtureApi, Response};
use replay_sync::sink::Sink;
use replay_sync::sink::s3::S3Sink;

/// An S3 endpoint that answers every GET of an object with 403 AccessDenied, as S3 answers a
/// caller without s3:ListBucket, and lists `present` under the asked prefix.
fn denying_s3(present: &'static [&'static str]) -> FixtureApi {
    FixtureApi::start(move |req, _| {
        if req.param("list-type") == Some("2") {
            let prefix = req.param("prefix").unwrap_or("").to_string();
            let keys: String = present
                .iter()
                .filter(|k| k.starts_with(&prefix))
                .map(|k| format!("<Contents><Key>{k}</Key><Size>1</Size></Contents>"))
                .collect();
            let body = format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>lake</Name><Prefix>{prefix}</Prefix><MaxKeys>1</MaxKeys><IsTruncated>false</IsTruncated>{keys}</ListBucketResult>"#
            );
            return Response::raw(200, body).header("Content-Type", "application/xml");
        }
        Response::raw(
            403,
            r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"#,
        )
        .header("Content-Type", "application/xml")
    })
}

fn sink(api: &FixtureApi) -> S3Sink {
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(api.url(""))
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .build();
    S3Sink::new(aws_sdk_s3::Client::from_conf(conf), "lake", "raw/api")
}

/// A GET answered 403 reads as "absent" when the listing of the prefix (which the function
/// may read) does not show the key — a backfill's plan not yet written — and stays an
/// access-denied error when it does (issue 20, 9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_answered_403_reads_as_absent_a_denied_one_fails() {
    let api = denying_s3(&["raw/api/user/_backfills/b/plan.json"]);
    let s = sink(&api);
    let missing = s.get("raw/api/user/_backfills/a/plan.json").await;
    assert!(matches!(missing, Ok(None)), "{missing:?}");
    let denied = s
        .get("raw/api/user/_backfills/b/plan.json")
        .await
        .unwrap_err();
    assert_eq!(denied.kind(), "OutputError");
    let text = denied.to_string();
    assert!(text.contains("s3:ListBucket"), "{text}");
    assert!(
        api.requests()
            .iter()
            .any(|r| r.param("list-type") == Some("2")),
        "the listing was asked"
    );
}

/// The function's grants from the transformed template, with the stack's names filled in
/// (`tests/iam/policy.py`).
fn grants(params: &str) -> serde_json::Value {
    let out = std::process::Command::new(common::peers::venv_bin("python"))
        .arg(common::peers::project_dir().join("tests/iam/policy.py"))
        .arg(params)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .expect("run tests/iam/policy.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("grants JSON")
}

/// `pattern` (IAM's `*` and `?`) matches `text`.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            (pi, ti) = (pi + 1, ti + 1);
        } else if pi < p.len() && p[pi] == '*' {
            (star, mark, pi) = (Some(pi), ti, pi + 1);
        } else if let Some(s) = star {
            (pi, mark, ti) = (s + 1, mark + 1, mark + 1);
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Whether a statement of `grants` allows `action` on `resource` in the request context
/// `ctx` (`s3:prefix` for a listing or a GET that may miss, `dynamodb:LeadingKeys` for an
/// item's key). The conditions this test reads: `StringLike` and `ForAllValues:StringEquals`.
fn allowed(grants: &serde_json::Value, action: &str, resource: &str, ctx: &[(&str, &str)]) -> bool {
    let strings = |v: &serde_json::Value| -> Vec<String> {
        match v {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        }
    };
    let value = |key: &str| ctx.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    grants["statements"].as_array().unwrap().iter().any(|s| {
        s["Effect"] == "Allow"
            && strings(&s["Action"]).iter().any(|a| glob(a, action))
            && strings(&s["Resource"]).iter().any(|r| glob(r, resource))
            && match s.get("Condition") {
                None => true,
                Some(c) => c.as_object().unwrap().iter().all(|(op, kv)| {
                    kv.as_object()
                        .unwrap()
                        .iter()
                        .all(|(key, want)| match op.as_str() {
                            "StringLike" => {
                                value(key).is_some_and(|v| strings(want).iter().any(|w| glob(w, v)))
                            }
                            // A request without the key would pass it in IAM: this test asks
                            // every request to carry what it is about.
                            "ForAllValues:StringEquals" => {
                                value(key).is_some_and(|v| strings(want).iter().any(|w| w == v))
                            }
                            _ => panic!("a condition this test does not read: {c}"),
                        })
                }),
            }
    })
}

/// The AWS operations the code calls: `.op()` in every file of `src/` that uses an SDK, for
/// each operation that SDK has (read from the SDK crate's own `operation/` folder).
fn calls_in_src() -> std::collections::BTreeSet<(String, String)> {
    let lock = std::fs::read_to_string(common::peers::project_dir().join("Cargo.lock")).unwrap();
    let version = |krate: &str| {
        let needle = format!("name = \"{krate}\"\nversion = \"");
        let at = lock
            .find(&needle)
            .unwrap_or_else(|| panic!("{krate} in Cargo.lock"));
        let v = &lock[at + needle.len()..];
        v[..v.find('"').unwrap()].to_string()
    };
    let home = std::env::var("CARGO_HOME")
        .unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap()));
    let mut found = std::collections::BTreeSet::new();
    for (krate, module) in [
        ("aws-sdk-dynamodb", "aws_sdk_dynamodb"),
        ("aws-sdk-s3", "aws_sdk_s3"),
        ("aws-sdk-secretsmanager", "aws_sdk_secretsmanager"),
    ] {
        let dir = format!("{krate}-{}", version(krate));
        let ops: Vec<String> = std::fs::read_dir(format!("{home}/registry/src"))
            .expect("the cargo registry")
            .flatten()
            .map(|index| index.path().join(&dir).join("src/operation"))
            .find(|p| p.is_dir())
            .and_then(|p| std::fs::read_dir(p).ok())
            .unwrap_or_else(|| panic!("{dir}'s sources in {home}/registry/src"))
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(ops.len() > 10, "{krate}: {ops:?}");
        let mut stack = vec![common::peers::project_dir().join("src")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap();
                if !text.contains(module) {
                    continue;
                }
                for op in &ops {
                    if text.contains(&format!(".{op}()")) {
                        found.insert((krate.to_string(), op.clone()));
                    }
                }
            }
        }
    }
    found
}

/// Every AWS call in `src/` is granted by the role the template gives the function — on
/// the resources the stack names, within the output prefix — and a GET that may miss
/// (every `get_object`: the sink reads a missing key as "absent") has `s3:ListBucket` for
/// its key, without which S3 answers 403 (issue 20, 9). A call added to the code without
/// its grant, or unknown to this test, fails here.
#[test]
fn every_aws_call_the_code_makes_is_granted_by_the_template() {
    let secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:api-AbCdEf";
    for streams in ["user", "users,order_items,events"] {
        let g = grants(&format!(
            r#"{{"ApiAuthSecretArn": "{secret}", "OutputPrefix": "raw/api", "Streams": "{streams}"}}"#
        ));
        for stream in streams.split(',') {
            calls_are_granted(&g, stream, secret);
        }
        // And nothing outside the streams' own prefixes, state items or secret.
        let table = "arn:aws:dynamodb:us-east-1:123456789012:table/state";
        let other = [("dynamodb:LeadingKeys", "other")];
        assert!(!allowed(&g, "dynamodb:UpdateItem", table, &other));
        for prefix in [
            "raw/api/other/x.jsonl",
            "other/user/x.jsonl",
            "raw/api/x.jsonl",
        ] {
            let object = format!("arn:aws:s3:::lake/{prefix}");
            assert!(!allowed(&g, "s3:PutObject", &object, &[]), "{prefix}");
            let listing = [("s3:prefix", prefix)];
            assert!(!allowed(&g, "s3:ListBucket", "arn:aws:s3:::lake", &listing));
        }
        let own = [("dynamodb:LeadingKeys", "user")];
        assert!(!allowed(&g, "dynamodb:DeleteItem", table, &own));
        let other_table = "arn:aws:dynamodb:us-east-1:123456789012:table/other";
        assert!(!allowed(&g, "dynamodb:UpdateItem", other_table, &own));
    }
}

/// Every call in `src/` is granted to the function for `stream`.
fn calls_are_granted(g: &serde_json::Value, stream: &str, secret: &str) {
    let table = "arn:aws:dynamodb:us-east-1:123456789012:table/state";
    let item = [("dynamodb:LeadingKeys", stream)];
    let key = format!("raw/api/{stream}/_backfills/backfill-x/plan.json");
    let object = format!("arn:aws:s3:::lake/{key}");
    let listing = [("s3:prefix", key.as_str())];
    // What each call needs: (action, resource, request context).
    type Need<'a> = (&'static str, String, &'a [(&'a str, &'a str)]);
    let needs = |op: &str| -> Vec<Need> {
        match op {
            "get_item" => vec![("dynamodb:GetItem", table.into(), &item)],
            "update_item" => vec![("dynamodb:UpdateItem", table.into(), &item)],
            // Fingerprint sets go with a tag (the lifecycle rule's filter).
            "put_object" => vec![
                ("s3:PutObject", object.clone(), &[]),
                ("s3:PutObjectTagging", object.clone(), &[]),
            ],
            "get_object" => vec![
                ("s3:GetObject", object.clone(), &[]),
                ("s3:ListBucket", "arn:aws:s3:::lake".into(), &listing),
            ],
            "list_objects_v2" => vec![("s3:ListBucket", "arn:aws:s3:::lake".into(), &listing)],
            "get_secret_value" => vec![("secretsmanager:GetSecretValue", secret.into(), &[])],
            other => panic!(
                "an AWS call this test does not know: {other}; say what it needs here and grant it in template.yaml"
            ),
        }
    };
    let calls = calls_in_src();
    assert!(calls.len() >= 5, "{calls:?}");
    for (_, op) in &calls {
        for (action, resource, ctx) in needs(op) {
            assert!(
                allowed(g, action, &resource, ctx),
                "{op} of {stream} needs {action} on {resource} ({ctx:?}); the template grants {:#}",
                g["statements"]
            );
        }
    }
}

#[test]
fn glob_reads_iam_patterns() {
    assert!(glob("arn:aws:s3:::lake/raw/*", "arn:aws:s3:::lake/raw/a/b"));
    assert!(!glob("arn:aws:s3:::lake/raw/*", "arn:aws:s3:::lake/other"));
    assert!(glob("s3:*", "s3:GetObject"));
    assert!(glob("a?c", "abc") && !glob("a?c", "ac"));
}
