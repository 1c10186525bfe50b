//! Wiring: builds the adapters named by the [`Config`] once (at cold start) and runs the
//! engine for each invocation. Shared by the Lambda runtime, `cargo lambda watch` and the
//! local `replay-sync invoke` mode, so all three run the same handler.

use serde_json::Value;
use tracing::{error, info};

use crate::config::{Config, OutputLocation, StateLocation, TokenSource};
use crate::error::{Error, Result};
use crate::event::{BackfillStep, parse_backfill, parse_event};
pub use crate::sink::any::AnySink;
use crate::source::auth::Auth;
use crate::source::http::HttpSource;
pub use crate::state::any::AnyState;
use crate::sync::{Engine, Invocation, Planned, RunSummary, Settings, SliceOutcome};

/// Everything an invocation needs, built once.
pub struct App {
    pub settings: Settings,
    pub state: AnyState,
    pub sink: AnySink,
    pub source: HttpSource,
}

impl App {
    /// Builds the clients for `config`. The AWS configuration (credentials, region,
    /// `AWS_ENDPOINT_URL*`) is loaded only when a DynamoDB or S3 location is configured.
    pub async fn new(config: Config) -> Result<App> {
        // Loaded once, and only when a DynamoDB table, an S3 bucket or a Secrets Manager
        // secret needs it.
        let needs_aws = matches!(config.state, StateLocation::DynamoDb { .. })
            || matches!(config.output, OutputLocation::S3 { .. })
            || matches!(
                config.api.auth.as_ref().map(|a| &a.token),
                Some(TokenSource::SecretsManager { .. })
            );
        let aws = match needs_aws {
            true => Some(aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await),
            false => None,
        };
        let state = AnyState::open(&config.state, aws.as_ref())?;
        let sink = AnySink::open(&config.output, aws.as_ref())?;
        let mut source = HttpSource::new(config.api.clone())?;
        if let Some(auth) = &config.api.auth {
            let (credential, var) = match &auth.token {
                TokenSource::Env(secret) => (secret.0.clone(), "API_AUTH_TOKEN"),
                TokenSource::SecretsManager { secret_id } => {
                    let aws = aws.as_ref().ok_or_else(|| {
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
        Ok(App {
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
            state,
            sink,
            source,
        })
    }

    /// The engine over this app's adapters.
    pub fn engine(&self) -> Engine<'_, AnyState, HttpSource, AnySink> {
        Engine {
            state: &self.state,
            source: &self.source,
            sink: &self.sink,
            settings: &self.settings,
        }
    }

    /// Handles one invocation payload: validates the event, runs the sync (or the backfill
    /// step it asks for), logs the summary (or the failure) as one structured line.
    pub async fn handle(&self, event: &Value, invocation: &Invocation) -> Result<Outcome> {
        let result = async {
            let engine = self.engine();
            match parse_backfill(event) {
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
                    .run(&parse_event(event)?, invocation)
                    .await
                    .map(|s| Outcome::Run(Box::new(s))),
            }
        }
        .await
        // Whatever an adapter let through, the credential and emails stop here: this is
        // what the log, the local command and Lambda's invocation error (and so a
        // dead-letter queue) get.
        .map_err(|e| e.scrubbed(self.source.secrets()));
        self.log(&result);
        result
    }

    /// The invocation's one structured line.
    pub fn log(&self, result: &Result<Outcome>) {
        match result {
            Ok(Outcome::Run(s)) => log_summary(s),
            Ok(other) => info!(
                sync_id = %self.settings.sync_id,
                step = %serde_json::to_string(other).unwrap_or_default(),
                "backfill step finished"
            ),
            Err(e) => error!(
                sync_id = %self.settings.sync_id,
                error_type = e.kind(),
                error = %e,
                "run failed; the cursor was not moved past durable data"
            ),
        }
    }
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
