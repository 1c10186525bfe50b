//! A lagging read replica behind an HTTP API, on a simulated clock.
//!
//! The primary's log is a list of updates: a row (id) updated at `at` with a replication
//! lag `lag` becomes visible on the replica at `at + lag`, still stamped `updatedAt = at`.
//! The API serves, for each id, the newest update visible at the simulated "now" (newest by
//! `updatedAt`, then by log order), filtered by `since` (inclusive), sorted by `updatedAt`,
//! paged by `Link` headers — like the playground, but late.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use super::fixture::{self, FixtureApi, Paging, user};

#[derive(Debug, Clone)]
pub struct Update {
    pub id: String,
    pub at: DateTime<Utc>,
    pub lag: TimeDelta,
    /// Position in the primary's log: also the content version.
    pub seq: usize,
}

impl Update {
    pub fn visible_at(&self) -> DateTime<Utc> {
        self.at + self.lag
    }

    /// The record the API serves for this update.
    pub fn record(&self) -> Value {
        let mut r = user(&self.id, &replay_sync::window::format_ts(self.at));
        r["seq"] = self.seq.into();
        r
    }
}

#[derive(Debug, Default)]
pub struct Replica {
    now: Mutex<Option<DateTime<Utc>>>,
    log: Mutex<Vec<Update>>,
}

impl Replica {
    pub fn set_now(&self, t: DateTime<Utc>) {
        *self.now.lock().unwrap() = Some(t);
    }

    /// Appends an update to the primary's log.
    pub fn update(&self, id: &str, at: DateTime<Utc>, lag: TimeDelta) {
        let mut log = self.log.lock().unwrap();
        let seq = log.len();
        log.push(Update {
            id: id.to_string(),
            at,
            lag,
            seq,
        });
    }

    pub fn log(&self) -> Vec<Update> {
        self.log.lock().unwrap().clone()
    }

    /// Per id, the newest update visible at `now`.
    pub fn visible(&self, now: DateTime<Utc>) -> std::collections::BTreeMap<String, Update> {
        let mut out: std::collections::BTreeMap<String, Update> = Default::default();
        for u in self.log.lock().unwrap().iter() {
            if u.visible_at() > now {
                continue;
            }
            let newer = out
                .get(&u.id)
                .is_none_or(|cur| (u.at, u.seq) > (cur.at, cur.seq));
            if newer {
                out.insert(u.id.clone(), u.clone());
            }
        }
        out
    }
}

/// The API in front of `replica`, `per_page` records a page.
pub fn api(replica: Arc<Replica>, per_page: usize) -> FixtureApi {
    FixtureApi::start(move |req, _| {
        let now = replica.now.lock().unwrap().expect("set the clock first");
        let rows: Vec<Value> = replica.visible(now).values().map(Update::record).collect();
        fixture::records_page(&rows, Paging::LinkHeader(per_page), req)
    })
}

/// The same replica behind an API of another shape: records `{"meta": {"id", "ts"}, …}`
/// stamped in epoch milliseconds, under `result.items`, paged by `offset`/`limit` with a
/// `total`, bounded by `updated_after` (inclusive) and `updated_before` in epoch
/// milliseconds. Read with [`SHAPED`].
pub fn shaped_api(replica: Arc<Replica>, per_page: usize) -> FixtureApi {
    FixtureApi::start(move |req, _| {
        let now = replica.now.lock().unwrap().expect("set the clock first");
        let bound = |n: &str| req.param(n).map(|v| v.parse::<i64>().expect("epoch ms"));
        let (since, until) = (bound("updated_after"), bound("updated_before"));
        let mut rows: Vec<Update> = replica
            .visible(now)
            .into_values()
            .filter(|u| {
                let ms = u.at.timestamp_millis();
                since.is_none_or(|s| ms >= s) && until.is_none_or(|t| ms < t)
            })
            .collect();
        rows.sort_by_key(|u| (u.at, u.id.clone()));
        let offset: usize = req
            .param("offset")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let page: Vec<Value> = rows
            .iter()
            .skip(offset)
            .take(per_page)
            .map(|u| {
                serde_json::json!({
                    "meta": {"id": u.id, "ts": u.at.timestamp_millis()},
                    "seq": u.seq,
                    "name": format!("Name {}", u.id),
                })
            })
            .collect();
        fixture::Response::json(
            &serde_json::json!({"result": {"items": page}, "total": rows.len()}),
        )
    })
}

/// The variables that read [`shaped_api`].
pub const SHAPED: &[(&str, &str)] = &[
    ("API_RECORDS_FIELD", "result.items"),
    ("ID_FIELD", "meta.id"),
    ("CURSOR_FIELD", "meta.ts"),
    ("CURSOR_FORMAT", "epoch_ms"),
    ("API_SINCE_PARAM", "updated_after"),
    ("API_SINCE_FORMAT", "epoch_ms"),
    ("API_PAGINATION", "offset"),
];
