//! # replay-sync
//!
//! An AWS Lambda (and a local command) that keeps an S3 data lake in step with an HTTP API
//! served from a lagging read replica. Each run loads the cursor, re-reads everything updated
//! since `cursor − buffer` (the buffer catches rows that reached the replica late), writes
//! the records as JSON Lines objects (upserts keyed by `id`), writes a manifest, and moves
//! the cursor with a conditional write fenced by a lease, so duplicate, concurrent and
//! retried invocations have one effect.
//!
//! # Layout
//!
//! The engine — [`config`], [`event`], [`window`] (time math and every format of time),
//! [`fields`] (where records keep their key and time: `ID_FIELD`, `CURSOR_FIELD`,
//! `CURSOR_FORMAT`), [`json`] (the one-pass fast path for
//! records), [`record`], [`batch`], [`fingerprint`] (what the overlap already wrote),
//! [`format`](mod@format) (how a batch becomes bytes: JSON Lines, gzip, zstd), [`sync`] (one module per
//! phase: the run and its lease, plan, fetch, time slices, the objects in flight, commit,
//! backfills, the summary) — knows nothing of AWS, HTTP or Lambda: it talks to three ports.
//!
//! * [`source`]: [`source::Source`]; the response parser ([`source::page`], records handed
//!   out as their bytes arrive) and paging ([`source::paging`]: one module per
//!   `API_PAGINATION` kind behind one seam, and the completeness check), both pure; the HTTP
//!   adapter (transport, retries) and authentication beside it ([`source::auth`]);
//! * [`state`]: [`state::StateStore`], with DynamoDB and file adapters;
//! * [`sink`]: [`sink::Sink`] and the write-once rule ([`sink::put_once`]), with S3 and
//!   directory adapters;
//! * [`app`]: wiring from [`config::Config`] to adapters, the Lambda edge, logging;
//! * [`metrics`]: the summary as CloudWatch metrics (Embedded Metric Format);
//! * [`cli`]: the local `replay-sync invoke` and `replay-sync backfill` commands;
//! * `failpoint`: fault injection for the crash tests (`REPLAY_SYNC_FAILPOINT`).
//!
//! `src/main.rs` only chooses between the Lambda runtime and the local mode.

pub mod app;
pub mod batch;
pub mod cli;
pub mod config;
pub mod error;
pub mod event;
mod failpoint;
pub mod fields;
pub mod fingerprint;
pub mod format;
pub mod json;
pub mod metrics;
pub mod record;
pub mod redact;
pub mod sink;
pub mod source;
pub mod state;
pub mod sync;
pub mod window;

pub use config::Config;
pub use error::{Error, Result};
pub use event::RunRequest;
pub use sync::{Engine, RunSummary, Settings, Status};
