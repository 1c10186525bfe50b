//! Shared test support: real peers, a fixture API, and the two backends (file; DynamoDB + S3
//! on moto) behind one interface so that one scenario suite runs on both.
#![allow(dead_code)]

/// Defines each scenario `fn name(kind: Kind)` as two tests, `file::name` (file state,
/// directory output) and `aws::name` (DynamoDB and S3 in moto).
#[allow(unused_macros)]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod file {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Kind::File).await
                }
            )*
        }
        mod aws {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Kind::Aws).await
                }
            )*
        }
    };
}

/// [`on_both_backends`], and again with the window read in time slices (`API_UNTIL_PARAM`
/// set, `FETCH_CONCURRENCY` 2 on the file backend and 8 on AWS): what holds for one stream
/// holds for slices.
#[allow(unused_macros)]
macro_rules! on_both_backends_and_sliced {
    ($($name:ident),* $(,)?) => {
        on_both_backends!($($name),*);
        mod file_sliced {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::common::sliced(2, super::$name(super::Kind::File)).await
                }
            )*
        }
        mod aws_sliced {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::common::sliced(8, super::$name(super::Kind::Aws)).await
                }
            )*
        }
    };
}

/// The tests again with the output compressed: gzip and zstd, on both backends
/// (`OUTPUT_COMPRESSION`), as `compressed::<test>::{file,aws}_{gzip,zstd}`.
#[allow(unused_macros)]
macro_rules! on_both_backends_compressed {
    ($($name:ident),* $(,)?) => {
        mod compressed {
            use replay_sync::format::Format;
            $(
                mod $name {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn file_gzip() {
                        super::super::common::compressed(super::Format::JsonlGzip, super::super::$name(super::super::Kind::File)).await
                    }
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn file_zstd() {
                        super::super::common::compressed(super::Format::JsonlZstd, super::super::$name(super::super::Kind::File)).await
                    }
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn aws_gzip() {
                        super::super::common::compressed(super::Format::JsonlGzip, super::super::$name(super::super::Kind::Aws)).await
                    }
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn aws_zstd() {
                        super::super::common::compressed(super::Format::JsonlZstd, super::super::$name(super::super::Kind::Aws)).await
                    }
                }
            )*
        }
    };
}

/// The scenarios again on DynamoDB + S3 in a moto that enforces IAM, as a principal holding
/// exactly the template's grants to the function (`aws_iam::<test>`): see [`iam_enforced`].
#[allow(unused_macros)]
macro_rules! on_aws_with_iam_enforced {
    ($($name:ident),* $(,)?) => {
        mod aws_iam {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::common::iam_enforced(super::$name(super::Kind::Aws)).await
                }
            )*
        }
    };
}

pub mod fixture;
pub mod peers;
pub mod replica;

use std::path::PathBuf;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use replay_sync::app::{AnySink, AnyState};
use replay_sync::config::{ApiConfig, BatchLimits, Config};
use replay_sync::event::RunRequest;
use replay_sync::sink::{dir::DirSink, s3::S3Sink};
use replay_sync::source::http::HttpSource;
use replay_sync::state::{
    Checkpoint, Commit, Lease, Plan, StateStore, SyncState, dynamodb::DynamoStateStore,
    file::FileStateStore,
};
use replay_sync::sync::Invocation;
use replay_sync::{Engine, RunSummary, Settings};
use serde_json::Value;

/// Which backends a scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Aws,
}

/// One isolated backend: a state store, a sink, and a way to read what landed.
pub struct Env {
    pub kind: Kind,
    pub state: AnyState,
    pub sink: AnySink,
    pub lake: Lake,
    pub sync_id: String,
    /// The environment that points a `replay-sync` process at this backend.
    pub vars: Vec<(&'static str, String)>,
    _dir: Option<tempfile::TempDir>,
}

/// A state item as stored, whatever the backend.
pub enum RawState {
    File(Option<Vec<u8>>),
    Aws(Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>),
}

/// Reads the output back, whatever the backend.
pub enum Lake {
    Dir(PathBuf),
    S3 {
        client: aws_sdk_s3::Client,
        bucket: String,
        prefix: String,
    },
}

/// The tests' own view of moto (set-up, reads): the shared server, or — in a test run
/// [`iam_enforced`] — the IAM-enforced one as its `admin`.
pub fn moto_sdk_config() -> aws_config::SdkConfig {
    if iam() {
        let m = peers::moto_iam();
        sdk_config(m.peer.url(), &m.admin)
    } else {
        sdk_config(peers::moto().url(), &("test".into(), "test".into()))
    }
}

/// What the function itself uses: in a test run [`iam_enforced`], the `function` user that
/// holds exactly the template's grants; else as [`moto_sdk_config`].
pub fn function_sdk_config() -> aws_config::SdkConfig {
    if iam() {
        let m = peers::moto_iam();
        sdk_config(m.peer.url(), &m.function)
    } else {
        moto_sdk_config()
    }
}

fn sdk_config(endpoint: String, (key, secret): &(String, String)) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            aws_sdk_dynamodb::config::Credentials::new(key, secret, None, None, "tests"),
        ))
        .build()
}

/// The environment that points a `replay-sync` process at moto (as the function).
pub fn moto_env() -> Vec<(&'static str, String)> {
    let (url, (key, secret)) = if iam() {
        let m = peers::moto_iam();
        (m.peer.url(), m.function.clone())
    } else {
        (peers::moto().url(), ("test".into(), "test".into()))
    };
    vec![
        ("AWS_ENDPOINT_URL", url),
        ("AWS_ACCESS_KEY_ID", key),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

pub fn s3_client() -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(&moto_sdk_config())
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

pub fn dynamodb_client() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&moto_sdk_config())
}

/// Creates a state table (`sync_id` string key) on moto.
pub async fn create_table(name: &str) {
    dynamodb_client()
        .create_table()
        .table_name(name)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("sync_id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("sync_id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create table on moto");
}

pub async fn create_bucket(name: &str) {
    s3_client()
        .create_bucket()
        .bucket(name)
        .send()
        .await
        .expect("create bucket on moto");
}

impl Env {
    pub async fn new(kind: Kind) -> Env {
        let sync_id = peers::unique("sync");
        match kind {
            Kind::File => {
                let dir = tempfile::tempdir().expect("tempdir");
                let out = dir.path().join("output");
                let state = dir.path().join("state/state.json");
                let vars = vec![
                    ("STATE_STORE", format!("file://{}", state.display())),
                    ("OUTPUT", format!("file://{}", out.display())),
                    ("SYNC_ID", sync_id.clone()),
                ];
                Env {
                    kind,
                    state: AnyState::File(FileStateStore::new(state)),
                    sink: AnySink::Dir(DirSink::new(&out)),
                    lake: Lake::Dir(out),
                    sync_id,
                    vars,
                    _dir: Some(dir),
                }
            }
            Kind::Aws => {
                let table = peers::unique("state");
                let bucket = peers::unique("lake");
                create_table(&table).await;
                create_bucket(&bucket).await;
                let mut vars = moto_env();
                vars.extend([
                    ("STATE_STORE", format!("dynamodb://{table}")),
                    ("OUTPUT", format!("s3://{bucket}/raw/api")),
                    ("SYNC_ID", sync_id.clone()),
                ]);
                // The function's own clients (the template's grants only, under IAM).
                let function = function_sdk_config();
                let s3 = aws_sdk_s3::Client::from_conf(
                    aws_sdk_s3::config::Builder::from(&function)
                        .force_path_style(true)
                        .build(),
                );
                Env {
                    kind,
                    state: AnyState::DynamoDb(DynamoStateStore::new(
                        aws_sdk_dynamodb::Client::new(&function),
                        &table,
                    )),
                    sink: AnySink::S3(S3Sink::new(s3, &bucket, "raw/api")),
                    lake: Lake::S3 {
                        client: s3_client(),
                        bucket,
                        prefix: "raw/api".into(),
                    },
                    sync_id,
                    vars,
                    _dir: None,
                }
            }
        }
    }

    pub fn settings(&self) -> Settings {
        Settings {
            sync_id: self.sync_id.clone(),
            buffer: chrono::TimeDelta::hours(2),
            batch: BatchLimits::default(),
            deadline_margin: std::time::Duration::from_secs(30),
            fingerprint_max: 500_000,
            fetch_concurrency: slices(),
            format: compression(),
            audit: chrono::TimeDelta::hours(24),
        }
    }

    /// Runs the engine with `source` and this backend.
    pub async fn run_with<S: replay_sync::source::Source>(
        &self,
        source: &S,
        settings: &Settings,
        req: &RunRequest,
    ) -> replay_sync::Result<RunSummary> {
        self.run_on(&self.state, source, settings, req).await
    }

    /// A scheduled run with this backend's default settings, which must succeed.
    pub async fn scheduled<S: replay_sync::source::Source>(&self, source: &S) -> RunSummary {
        self.run_with(source, &self.settings(), &RunRequest::scheduled())
            .await
            .unwrap_or_else(|e| panic!("the scheduled run failed: {e}"))
    }

    /// Runs the engine with another state store (a wrapper around this one).
    pub async fn run_on<St: StateStore, S: replay_sync::source::Source>(
        &self,
        state: &St,
        source: &S,
        settings: &Settings,
        req: &RunRequest,
    ) -> replay_sync::Result<RunSummary> {
        let inv = Invocation::new(Invocation::random_id(), None);
        self.run_as(state, source, settings, req, &inv).await
    }

    /// Runs the engine as the invocation `inv`.
    pub async fn run_as<St: StateStore, S: replay_sync::source::Source>(
        &self,
        state: &St,
        source: &S,
        settings: &Settings,
        req: &RunRequest,
        inv: &Invocation,
    ) -> replay_sync::Result<RunSummary> {
        Engine {
            state,
            source,
            sink: &self.sink,
            settings,
        }
        .run(req, inv)
        .await
    }

    /// The state item exactly as stored (to put it back later, as a point-in-time restore
    /// would).
    pub async fn raw_state(&self) -> RawState {
        match self.kind {
            Kind::File => RawState::File(std::fs::read(self.state_path()).ok()),
            Kind::Aws => RawState::Aws(
                dynamodb_client()
                    .get_item()
                    .table_name(self.table())
                    .key(
                        "sync_id",
                        aws_sdk_dynamodb::types::AttributeValue::S(self.sync_id.clone()),
                    )
                    .consistent_read(true)
                    .send()
                    .await
                    .expect("get item")
                    .item,
            ),
        }
    }

    /// Puts back what [`Env::raw_state`] read.
    pub async fn restore_state(&self, raw: RawState) {
        match raw {
            RawState::File(Some(bytes)) => std::fs::write(self.state_path(), bytes).unwrap(),
            RawState::File(None) => {
                let _ = std::fs::remove_file(self.state_path());
            }
            RawState::Aws(Some(item)) => {
                dynamodb_client()
                    .put_item()
                    .table_name(self.table())
                    .set_item(Some(item))
                    .send()
                    .await
                    .expect("put item");
            }
            RawState::Aws(None) => {
                dynamodb_client()
                    .delete_item()
                    .table_name(self.table())
                    .key(
                        "sync_id",
                        aws_sdk_dynamodb::types::AttributeValue::S(self.sync_id.clone()),
                    )
                    .send()
                    .await
                    .expect("delete item");
            }
        }
    }

    /// Writes the state item as an operator's hand edit would: `fields` (strings and
    /// numbers) and nothing else.
    pub async fn put_raw_state(&self, fields: Value) {
        let fields = fields.as_object().expect("an object").clone();
        match self.kind {
            Kind::File => {
                let path = self.state_path();
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                let doc = serde_json::json!({ self.sync_id.clone(): fields });
                std::fs::write(path, doc.to_string()).unwrap();
            }
            Kind::Aws => {
                use aws_sdk_dynamodb::types::AttributeValue as A;
                let mut item = std::collections::HashMap::new();
                item.insert("sync_id".to_string(), A::S(self.sync_id.clone()));
                for (k, v) in fields {
                    let v = match v {
                        Value::String(s) => A::S(s),
                        Value::Number(n) => A::N(n.to_string()),
                        other => panic!("{k}: {other} is not a string or a number"),
                    };
                    item.insert(k, v);
                }
                self.restore_state(RawState::Aws(Some(item))).await;
            }
        }
    }

    fn var(&self, name: &str) -> &str {
        self.vars
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .expect("set for this backend")
    }

    fn state_path(&self) -> PathBuf {
        PathBuf::from(self.var("STATE_STORE").trim_start_matches("file://"))
    }

    fn table(&self) -> String {
        self.var("STATE_STORE")
            .trim_start_matches("dynamodb://")
            .to_string()
    }

    pub async fn state(&self) -> SyncState {
        self.state.load(&self.sync_id).await.expect("load state")
    }

    /// The stored cursor and version.
    pub async fn cursor_version(&self) -> (Option<chrono::DateTime<chrono::Utc>>, u64) {
        let s = self.state().await;
        assert_eq!(s.lease, None, "no run holds the state between runs");
        (s.cursor, s.version)
    }

    /// Keys below the sync id's folder, relative to the output root, sorted.
    pub async fn keys(&self) -> Vec<String> {
        self.lake.keys().await
    }

    /// Reads a key as reported in a summary.
    pub async fn get(&self, key: &str) -> Vec<u8> {
        self.lake.get(key).await
    }

    /// Every data line (parsed) of the objects listed.
    pub async fn lines(&self, keys: &[String]) -> Vec<Value> {
        let mut out = Vec::new();
        for k in keys {
            let body = decompressed(k, self.get(k).await);
            let text = String::from_utf8(body).expect("UTF-8 object");
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "{k} must end with a newline"
            );
            for line in text.lines() {
                out.push(
                    serde_json::from_str(line)
                        .unwrap_or_else(|e| panic!("{k}: bad JSON line ({e}): {line}")),
                );
            }
        }
        out
    }
}

impl Lake {
    /// Every key in the output (as a summary reports keys), sorted.
    pub async fn keys(&self) -> Vec<String> {
        match self {
            Lake::Dir(root) => {
                let mut out = Vec::new();
                let mut stack = vec![root.clone()];
                while let Some(d) = stack.pop() {
                    let Ok(rd) = std::fs::read_dir(&d) else {
                        continue;
                    };
                    for e in rd.flatten() {
                        let p = e.path();
                        if p.is_dir() {
                            stack.push(p);
                        } else {
                            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                            out.push(rel);
                        }
                    }
                }
                out.sort();
                out
            }
            Lake::S3 { client, bucket, .. } => {
                let mut out = Vec::new();
                let mut pages = client
                    .list_objects_v2()
                    .bucket(bucket)
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    for o in page.expect("list objects").contents() {
                        out.push(o.key().unwrap_or_default().to_string());
                    }
                }
                out.sort();
                out
            }
        }
    }

    /// Replaces the object at `key` (as a hand edit or an older version would leave it).
    pub async fn put(&self, key: &str, body: Vec<u8>) {
        match self {
            Lake::Dir(root) => std::fs::write(root.join(key), body).unwrap(),
            Lake::S3 { client, bucket, .. } => {
                client
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .body(body.into())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
            }
        }
    }

    pub async fn get(&self, key: &str) -> Vec<u8> {
        match self {
            Lake::Dir(root) => {
                std::fs::read(root.join(key)).unwrap_or_else(|e| panic!("read {key}: {e}"))
            }
            Lake::S3 { client, bucket, .. } => client
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("get {key}: {e:?}"))
                .body
                .collect()
                .await
                .expect("body")
                .into_bytes()
                .to_vec(),
        }
    }
}

thread_local! {
    static IAM: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static SLICES: std::cell::Cell<usize> = const { std::cell::Cell::new(1) };
    static COMPRESSION: std::cell::Cell<replay_sync::format::Format> =
        const { std::cell::Cell::new(replay_sync::format::Format::Jsonl) };
}

/// Whether the test running on this thread talks to the IAM-enforced moto ([`iam_enforced`]).
pub fn iam() -> bool {
    IAM.with(|c| c.get())
}

/// Runs `test` against a moto that enforces IAM, the engine acting as a principal that holds
/// exactly the statements `template.yaml` gives the function (read from the template as the
/// SAM translator gives it to CloudFormation): a call the template does not grant fails the
/// test with 403, as it would fail in a real account.
pub async fn iam_enforced<F: std::future::Future>(test: F) -> F::Output {
    IAM.with(|c| c.set(true));
    let out = test.await;
    IAM.with(|c| c.set(false));
    out
}

/// `OUTPUT_COMPRESSION` of the test running on this thread (set by [`compressed`]).
pub fn compression() -> replay_sync::format::Format {
    COMPRESSION.with(|c| c.get())
}

/// Runs `test` with its output stored in `format`.
pub async fn compressed<F: std::future::Future>(
    format: replay_sync::format::Format,
    test: F,
) -> F::Output {
    COMPRESSION.with(|c| c.set(format));
    let out = test.await;
    COMPRESSION.with(|c| c.set(replay_sync::format::Format::Jsonl));
    out
}

/// The JSON Lines of the object at `key`, decompressed as its extension says.
pub fn decompressed(key: &str, body: Vec<u8>) -> Vec<u8> {
    use replay_sync::format::{GZIP, ZSTD, lines_of};
    let kind = if key.ends_with(".gz") {
        GZIP
    } else if key.ends_with(".zst") {
        ZSTD
    } else {
        return body;
    };
    lines_of(kind, &body).unwrap_or_else(|| panic!("{key} does not decompress"))
}

/// `FETCH_CONCURRENCY` of the test running on this thread (1: one stream): set by
/// [`sliced`] around a test's body, read by [`source`] (which then sends `until`) and
/// [`Env::settings`]. A test's body runs on its own thread (`block_on`).
pub fn slices() -> usize {
    SLICES.with(|s| s.get())
}

/// `limits` for each slice's batches: a run in `n` slices gives each slice `1/n` of its
/// batch limits, so a test that counts objects asks for `n` times as much.
pub fn per_slice(limits: BatchLimits) -> BatchLimits {
    BatchLimits {
        max_records: limits.max_records * slices(),
        max_bytes: limits.max_bytes * slices(),
    }
}

/// Runs `test` with its window read in `n` time slices at once.
pub async fn sliced<F: std::future::Future>(n: usize, test: F) -> F::Output {
    SLICES.with(|s| s.set(n));
    let out = test.await;
    SLICES.with(|s| s.set(1));
    out
}

/// An HTTP source for `url` with the defaults of the contract (sending `until` in a
/// [`sliced`] test).
pub fn source(url: &str) -> HttpSource {
    source_with(url, |_| {})
}

pub fn source_with(url: &str, tweak: impl FnOnce(&mut ApiConfig)) -> HttpSource {
    let mut api = Config::from_lookup(|k| (k == "API_URL").then(|| url.to_string()))
        .expect("config")
        .api;
    if slices() > 1 {
        api.until_param = Some("until".into());
    }
    tweak(&mut api);
    HttpSource::new(api).expect("source")
}

/// A manual request with an override, for replays.
pub fn manual() -> RunRequest {
    RunRequest {
        trigger: replay_sync::event::Trigger::Manual,
        ..RunRequest::scheduled()
    }
}

pub fn ts(s: &str) -> chrono::DateTime<chrono::Utc> {
    replay_sync::window::parse_ts(s).expect("timestamp")
}

/// Checkpoints `cursor` the way a run does (lease, then fenced checkpoint), as `owner`.
pub async fn commit<S: StateStore>(
    store: &S,
    sync_id: &str,
    cursor: Option<chrono::DateTime<chrono::Utc>>,
    owner: &str,
) -> Checkpoint {
    let seen = store.load(sync_id).await.expect("load");
    let now = chrono::Utc::now();
    let lease = Lease {
        owner: owner.into(),
        expires_at: now + chrono::TimeDelta::minutes(5),
    };
    let plan = Plan {
        version: seen.version,
        since: None,
        until: now,
    };
    assert!(
        store
            .try_lease(sync_id, &seen, &lease, &plan)
            .await
            .expect("lease")
    );
    store
        .checkpoint(
            sync_id,
            &Commit {
                expected: seen.version,
                owner,
                cursor,
                run_id: owner,
                invocation: Some(owner),
                fingerprints: None,
                done: &replay_sync::state::DoneRanges::default(),
            },
        )
        .await
        .expect("checkpoint")
}

/// `events/scheduled.json` with another event id (another tick of the schedule), written to
/// a file in `dir`; returns its path.
#[allow(dead_code)]
pub fn scheduled_event(dir: &std::path::Path, id: &str) -> String {
    let path = peers::project_dir().join("events/scheduled.json");
    let mut ev: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    ev["id"] = id.into();
    let file = dir.join(format!("{id}.json"));
    std::fs::write(&file, ev.to_string()).unwrap();
    file.to_string_lossy().into_owned()
}

/// The run summary a `replay-sync invoke` process printed (it must have succeeded).
#[allow(dead_code)]
pub fn summary(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not the summary JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}
