//! Wiring: builds the adapters named by the [`Config`] once (at cold start) and runs the
//! engine for each invocation. Shared by the Lambda runtime, `cargo lambda watch` and the
//! local `replay-sync invoke` mode, so all three run the same handler.

use serde_json::Value;
use tracing::{error, info};

use crate::config::streams::{self, Location};
use crate::config::{Config, OutputLocation, StateLocation, TokenSource};
use crate::error::{Error, Result};
use crate::event::{BackfillStep, STREAM_FIELD, parse_backfill, parse_event, take_stream};
pub use crate::sink::any::AnySink;
use crate::source::auth::Auth;
use crate::source::http::HttpSource;
pub use crate::state::any::AnyState;
use crate::sync::{Engine, Invocation, Planned, RunSummary, Settings, SliceOutcome};

/// Everything an invocation needs, built once: the state store and the output the streams
/// share, and each stream's settings and API client.
pub struct App {
    pub state: AnyState,
    pub sink: AnySink,
    streams: Vec<Stream>,
    aws: Option<aws_config::SdkConfig>,
}

/// One stream: its configuration and settings, and its API client — built on the stream's
/// first invocation, so that one stream's unreadable credential fails that stream only.
struct Stream {
    config: Config,
    settings: Settings,
    source: tokio::sync::OnceCell<HttpSource>,
}

impl App {
    /// The deployment the environment describes: the streams of `STREAMS_CONFIG` (a path or
    /// `s3://BUCKET/KEY`), or the one stream of the variables (`SYNC_ID`); checked against
    /// `STREAM_NAMES` when the template sets it.
    pub async fn from_env() -> Result<App> {
        let env = |k: &str| {
            std::env::var(k)
                .ok()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let mut aws = None;
        let configs = match env("STREAMS_CONFIG") {
            None => vec![Config::from_env()?],
            Some(value) => {
                let text = match streams::location(&value)? {
                    Location::Path(path) => std::fs::read_to_string(&path).map_err(|e| {
                        Error::config(
                            "STREAMS_CONFIG",
                            format!("cannot read {}: {e}", path.display()),
                        )
                    })?,
                    Location::S3 { bucket, key } => {
                        let loaded = load_aws().await;
                        let text = read_s3_text(&loaded, &bucket, &key).await?;
                        aws = Some(loaded);
                        text
                    }
                };
                let described = streams::parse(&text)?;
                streams::configs(&described, &env)?
                    .into_iter()
                    .map(|(_, c)| c)
                    .collect()
            }
        };
        if let Some(deployed) = env(streams::STREAM_NAMES_VAR) {
            let names: Vec<String> = configs.iter().map(|c| c.sync_id.clone()).collect();
            streams::check_deployed(&deployed, &names)?;
        }
        App::new(configs, aws).await
    }

    /// Builds the shared clients for `configs` (one per stream; the state store and the
    /// output are the deployment's, so the first stream's). The AWS configuration
    /// (credentials, region, `AWS_ENDPOINT_URL*`) is loaded only when a DynamoDB table, an S3
    /// bucket or a Secrets Manager secret needs it.
    pub async fn new(configs: Vec<Config>, aws: Option<aws_config::SdkConfig>) -> Result<App> {
        let first = configs
            .first()
            .ok_or_else(|| Error::config("STREAMS_CONFIG", "no stream"))?;
        let needs_aws = matches!(first.state, StateLocation::DynamoDb { .. })
            || matches!(first.output, OutputLocation::S3 { .. })
            || configs.iter().any(|c| {
                matches!(
                    c.api.auth.as_ref().map(|a| &a.token),
                    Some(TokenSource::SecretsManager { .. })
                )
            });
        let aws = match (aws, needs_aws) {
            (Some(aws), _) => Some(aws),
            (None, true) => Some(load_aws().await),
            (None, false) => None,
        };
        let state = AnyState::open(&first.state, aws.as_ref())?;
        let sink = AnySink::open(&first.output, aws.as_ref())?;
        let mut streams: Vec<Stream> = configs
            .into_iter()
            .map(|config| Stream {
                settings: Settings {
                    sync_id: config.sync_id.clone(),
                    buffer: config.buffer,
                    batch: config.batch,
                    deadline_margin: config.deadline_margin,
                    fingerprint_max: config.fingerprint_max,
                    fetch_concurrency: config.fetch_concurrency,
                    format: config.format,
                    audit: config.audit,
                },
                config,
                source: tokio::sync::OnceCell::new(),
            })
            .collect();
        streams.sort_by(|a, b| a.settings.sync_id.cmp(&b.settings.sync_id));
        // A single stream's client is built now, as it always was: a bad credential fails the
        // cold start. Several streams build theirs on first use, each failing alone.
        if let [one] = streams.as_slice() {
            one.source(aws.as_ref()).await?;
        }
        Ok(App {
            state,
            sink,
            streams,
            aws,
        })
    }

    /// The streams' names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.streams
            .iter()
            .map(|s| s.settings.sync_id.as_str())
            .collect()
    }

    /// The stream `name` selects; without a name, the only stream. An unknown name, or none
    /// when there are several, is an invalid event naming the streams.
    fn stream(&self, name: Option<&str>) -> Result<&Stream> {
        let names = || self.names().join(", ");
        match (name, self.streams.as_slice()) {
            (None, [one]) => Ok(one),
            (None, _) => Err(Error::event(
                STREAM_FIELD,
                format!(
                    "this deployment syncs several streams ({}): name one, e.g. {{\"stream\": \"{}\"}}",
                    names(),
                    self.names().first().copied().unwrap_or_default()
                ),
            )),
            (Some(name), all) => all
                .iter()
                .find(|s| s.settings.sync_id == name)
                .ok_or_else(|| {
                    Error::event(
                        STREAM_FIELD,
                        format!("no stream {name:?}; the streams are: {}", names()),
                    )
                }),
        }
    }

    /// The engine of stream `name` (see [`App::handle`] for the choice), its API client built
    /// if it was not yet.
    pub async fn engine(
        &self,
        name: Option<&str>,
    ) -> Result<Engine<'_, AnyState, HttpSource, AnySink>> {
        let stream = self.stream(name)?;
        Ok(Engine {
            state: &self.state,
            source: stream.source(self.aws.as_ref()).await?,
            sink: &self.sink,
            settings: &stream.settings,
        })
    }

    /// Handles one invocation payload: picks the stream it names (`"stream"`, or the only
    /// one), validates the event, runs the sync (or the backfill step it asks for), logs
    /// the summary (or the failure) as one structured line.
    pub async fn handle(&self, event: &Value, invocation: &Invocation) -> Result<Outcome> {
        let (name, event) = match take_stream(event) {
            Ok(taken) => taken,
            Err(e) => {
                let result = Err(e);
                self.log(None, &result);
                return result;
            }
        };
        let result = async {
            let engine = self.engine(name.as_deref()).await?;
            match parse_backfill(&event) {
                Some(step) => match step? {
                    BackfillStep::Plan(start) => engine
                        .backfill_plan(&start, invocation)
                        .await
                        .map(Outcome::Planned),
                    BackfillStep::Slice(task) => engine
                        .backfill_slice(&task, invocation)
                        .await
                        .map(Outcome::Slice),
                    BackfillStep::Commit { backfill_id } => engine
                        .backfill_commit(&backfill_id, invocation)
                        .await
                        .map(|s| Outcome::Run(Box::new(s))),
                },
                None => engine
                    .run(&parse_event(&event)?, invocation)
                    .await
                    .map(|s| Outcome::Run(Box::new(s))),
            }
        }
        .await
        // Whatever an adapter let through, the credential and emails stop here: this is
        // what the log, the local command and Lambda's invocation error (and so a
        // dead-letter queue) get.
        .map_err(|e| self.scrub(name.as_deref(), e));
        self.log(name.as_deref(), &result);
        result
    }

    /// `e` with the credentials of the stream `name` (its client's, if built) scrubbed.
    pub fn scrub(&self, name: Option<&str>, e: Error) -> Error {
        match self.stream(name).ok().and_then(|s| s.source.get()) {
            Some(source) => e.scrubbed(source.secrets()),
            None => e.scrubbed(&Default::default()),
        }
    }

    /// The invocation's one structured line.
    pub fn log(&self, name: Option<&str>, result: &Result<Outcome>) {
        let stream = self
            .stream(name)
            .map(|s| s.settings.sync_id.as_str())
            .unwrap_or_else(|_| name.unwrap_or(""));
        match result {
            Ok(Outcome::Run(s)) => log_summary(s),
            Ok(other) => info!(
                sync_id = %stream,
                step = %serde_json::to_string(other).unwrap_or_default(),
                "backfill step finished"
            ),
            Err(e) => error!(
                sync_id = %stream,
                error_type = e.kind(),
                error = %e,
                "run failed; the cursor was not moved past durable data"
            ),
        }
    }
}

impl Stream {
    /// The stream's API client, built (and its credential read) on first use.
    async fn source(&self, aws: Option<&aws_config::SdkConfig>) -> Result<&HttpSource> {
        self.source
            .get_or_try_init(|| build_source(&self.config, aws))
            .await
    }
}

async fn load_aws() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// The API client of `config`, with its credential (read from Secrets Manager if so
/// configured).
async fn build_source(config: &Config, aws: Option<&aws_config::SdkConfig>) -> Result<HttpSource> {
    let mut source = HttpSource::new(config.api.clone())?;
    if let Some(auth) = &config.api.auth {
        let (credential, var) = match &auth.token {
            TokenSource::Env(secret) => (secret.0.clone(), "API_AUTH_TOKEN"),
            TokenSource::SecretsManager { secret_id } => {
                let aws = aws.ok_or_else(|| {
                    Error::config("API_AUTH_SECRET_ARN", "needs the AWS configuration")
                })?;
                let client = aws_sdk_secretsmanager::Client::new(aws);
                let whole = auth.kind.has_parts();
                let token = fetch_token(&client, secret_id, whole).await?;
                (token, "API_AUTH_SECRET_ARN")
            }
        };
        let (auth, secrets) = Auth::new(auth, &credential, var)?;
        source = source.with_auth(auth, &secrets);
    }
    Ok(source)
}

/// The text of the streams file at `s3://bucket/key`.
async fn read_s3_text(aws: &aws_config::SdkConfig, bucket: &str, key: &str) -> Result<String> {
    let fail = |why: String| {
        Error::config(
            "STREAMS_CONFIG",
            format!("cannot read s3://{bucket}/{key}: {why}"),
        )
    };
    let out = crate::sink::any::s3_client(aws)
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| fail(aws_smithy_types::error::display::DisplayErrorContext(&e).to_string()))?;
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| fail(e.to_string()))?
        .into_bytes();
    String::from_utf8(bytes.to_vec()).map_err(|_| fail("not UTF-8 text".into()))
}

/// What an invocation returns: a run's summary (a backfill's commit is one), or a backfill
/// step's answer.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(untagged)]
pub enum Outcome {
    Run(Box<RunSummary>),
    Planned(Planned),
    Slice(SliceOutcome),
}

impl Outcome {
    /// The run summary, if this is one (it becomes metrics).
    pub fn summary(&self) -> Option<&RunSummary> {
        match self {
            Outcome::Run(s) => Some(s),
            _ => None,
        }
    }
}

fn log_summary(s: &RunSummary) {
    info!(
        sync_id = %s.sync_id,
        status = s.status.as_str(),
        since = s.since.as_deref().unwrap_or(""),
        previous_cursor = s.previous_cursor.as_deref().unwrap_or(""),
        new_cursor = s.new_cursor.as_deref().unwrap_or(""),
        records_fetched = s.counts.records_fetched,
        records_written = s.counts.records_written,
        records_rejected = s.counts.records_rejected,
        objects = s.objects.len(),
        pages = s.counts.pages,
        checkpoints = s.checkpoints,
        duration_ms = s.duration_ms,
        summary = %serde_json::to_string(s).unwrap_or_default(),
        "run finished"
    );
}

/// Reads the API credential from Secrets Manager: the secret string itself, or its `token`
/// field when it is a JSON object — or, for a credential of several parts (`whole`), the
/// string as it is (`user:password`, or JSON). Called once per cold start; the value is
/// never logged.
async fn fetch_token(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
    whole: bool,
) -> Result<String> {
    let fail = |message: String| Error::Config {
        var: "API_AUTH_SECRET_ARN".into(),
        message,
    };
    let out = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| {
            fail(format!(
                "cannot read the secret {secret_id}: {}",
                aws_smithy_types::error::display::DisplayErrorContext(&e)
            ))
        })?;
    let text = out
        .secret_string()
        .ok_or_else(|| fail(format!("the secret {secret_id} has no string value")))?;
    let token = match serde_json::from_str::<serde_json::Value>(text) {
        _ if whole => text.trim().to_string(),
        Ok(serde_json::Value::Object(o)) => o
            .get("token")
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                fail(format!(
                    "the JSON secret {secret_id} has no string field \"token\""
                ))
            })?,
        _ => text.trim().to_string(),
    };
    if token.is_empty() {
        return Err(fail(format!("the secret {secret_id} is empty")));
    }
    Ok(token)
}

/// The Lambda edge: serves the runtime API with [`App::handle`].
pub async fn serve_lambda(app: App) -> std::result::Result<(), lambda_runtime::Error> {
    use lambda_runtime::{LambdaEvent, service_fn};
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let invocation = Invocation::new(
            event.context.request_id.clone(),
            remaining_before(event.context.deadline()),
        );
        let outcome = app
            .handle(&event.payload, &invocation)
            .await
            .map_err(InvocationError)?;
        // Lambda's stdout goes to CloudWatch Logs, which extracts the metrics.
        if let Some(summary) = outcome.summary() {
            println!("{}", crate::metrics::emf_line(summary));
        }
        Ok::<_, InvocationError>(outcome)
    }))
    .await
}

/// The time left before the invocation's deadline. A deadline already past at the start (as
/// `cargo lambda watch` can send) is treated as unknown rather than as "no time left".
pub fn remaining_before(deadline: std::time::SystemTime) -> Option<std::time::Duration> {
    deadline.duration_since(std::time::SystemTime::now()).ok()
}

/// An engine error as Lambda sees it: `errorType` is [`crate::Error::kind`].
#[derive(Debug)]
pub struct InvocationError(pub crate::Error);

impl From<InvocationError> for lambda_runtime::Diagnostic {
    fn from(e: InvocationError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.0.kind().to_string(),
            error_message: e.0.to_string(),
        }
    }
}

/// Sets up logging on stderr (stdout carries the local mode's summary): JSON when
/// `AWS_LAMBDA_LOG_FORMAT=JSON`, level from `RUST_LOG` or `AWS_LAMBDA_LOG_LEVEL` (default info).
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .map(|l| l.to_lowercase())
        .unwrap_or_else(|_| "info".into());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    if json {
        builder.json().flatten_event(true).without_time().init();
    } else {
        builder.with_ansi(false).init();
    }
}
