//! Several streams in one deployment (`STREAMS_CONFIG`, contract v3; issue 22): one TOML
//! file, a table `[streams.NAME]` per stream whose keys are the variables' names (any case),
//! each stream inheriting from the environment what it does not set. The stream's name is
//! its sync id (its state item and its folder `PREFIX/NAME/`). The file is validated whole:
//! an unknown key, a name that cannot be a folder and a Glue table, or one stream's bad
//! setting fails with one line naming the stream and the key.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// The variables a stream may set (what is per API and per table; the state store, the
/// output and the streams file itself are the deployment's).
pub const PER_STREAM: &[&str] = &[
    "API_URL",
    "API_SINCE_PARAM",
    "API_UNTIL_PARAM",
    "API_RECORDS_FIELD",
    "API_NEXT_PAGE_FIELD",
    "API_PAGINATION",
    "API_PAGE_PARAM",
    "API_FIRST_PAGE",
    "API_OFFSET_PARAM",
    "API_LIMIT_PARAM",
    "API_PAGE_SIZE",
    "API_CURSOR_PARAM",
    "API_NEXT_CURSOR_FIELD",
    "API_SINCE_FIRST_PAGE_ONLY",
    "API_COUNTS",
    "API_SINCE_FORMAT",
    "ID_FIELD",
    "CURSOR_FIELD",
    "CURSOR_FORMAT",
    "API_AUTH",
    "API_AUTH_TOKEN",
    "API_AUTH_SECRET_ARN",
    "API_AUTH_HEADER",
    "API_AUTH_SCHEME",
    "API_AUTH_PARAM",
    "API_LOGIN_URL",
    "API_LOGIN_TOKEN_FIELD",
    "API_TOKEN_URL",
    "API_SCOPE",
    "API_TIMEOUT_SECONDS",
    "API_MAX_ATTEMPTS",
    "MAX_RECORD_BYTES",
    "BUFFER_HOURS",
    "AUDIT_HOURS",
    "FETCH_CONCURRENCY",
    "OUTPUT_COMPRESSION",
    "BATCH_MAX_RECORDS",
    "BATCH_MAX_BYTES",
    "FINGERPRINT_MAX",
    "DEADLINE_MARGIN_SECONDS",
];

/// One stream of the file: its name and the variables it sets (upper-cased names, values
/// as text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    pub name: String,
    pub vars: BTreeMap<String, String>,
}

impl StreamSettings {
    /// The stream's view of the configuration: its own variables, then `env`'s; its name is
    /// its `SYNC_ID`.
    pub fn lookup<'a>(
        &'a self,
        env: &'a impl Fn(&str) -> Option<String>,
    ) -> impl Fn(&str) -> Option<String> + 'a {
        move |k: &str| match k {
            "SYNC_ID" => Some(self.name.clone()),
            _ => self.vars.get(k).cloned().or_else(|| env(k)),
        }
    }
}

/// Reads a streams file's text: every stream, in name order. Errors name the stream and the
/// key (never a value: a credential may be one).
pub fn parse(text: &str) -> Result<Vec<StreamSettings>> {
    let bad = |message: String| Error::config("STREAMS_CONFIG", message);
    let doc: toml::Table = toml::from_str(text).map_err(|e| {
        // toml's message quotes the offending line: keep only where it is.
        let at = e
            .span()
            .map(|s| {
                let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                format!(" (line {line})")
            })
            .unwrap_or_default();
        bad(format!("not a valid TOML document{at}: {}", e.message()))
    })?;
    for key in doc.keys() {
        if key != "streams" {
            return Err(bad(format!(
                "unknown top-level key `{key}`: streams are tables [streams.NAME]"
            )));
        }
    }
    let Some(streams) = doc.get("streams") else {
        return Err(bad("no [streams.NAME] table".into()));
    };
    let streams = streams
        .as_table()
        .ok_or_else(|| bad("`streams` must be tables [streams.NAME]".into()))?;
    if streams.is_empty() {
        return Err(bad("no [streams.NAME] table".into()));
    }
    let mut out = Vec::new();
    let mut folded: BTreeMap<String, String> = BTreeMap::new();
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    for (name, table) in streams {
        check_name(name).map_err(|why| bad(format!("stream `{name}`: {why}")))?;
        // Two names one Glue table would hold (`a-b` and `a_b`, `Users` and `users`).
        let table_name = name.to_ascii_lowercase().replace(['-', '.'], "_");
        if let Some(other) = folded.insert(table_name.clone(), name.clone()) {
            return Err(bad(format!(
                "streams `{other}` and `{name}` would share the Glue table `{table_name}`"
            )));
        }
        // The template names each stream's resources with its letters and digits
        // (CloudFormation's `&{Stream}`): `a_b` and `ab` would be one resource.
        let logical: String = name.chars().filter(char::is_ascii_alphanumeric).collect();
        if let Some(other) = ids.insert(logical.clone(), name.clone()) {
            return Err(bad(format!(
                "streams `{other}` and `{name}` would share the template's resources (named {logical}): rename one"
            )));
        }
        let table = table
            .as_table()
            .ok_or_else(|| bad(format!("stream `{name}` must be a table [streams.{name}]")))?;
        let mut vars = BTreeMap::new();
        for (key, value) in table {
            let var = key.to_ascii_uppercase();
            if !PER_STREAM.contains(&var.as_str()) {
                return Err(bad(format!(
                    "stream `{name}`: unknown key `{key}` (a stream sets the API's and the table's variables, e.g. API_URL, ID_FIELD, BUFFER_HOURS)"
                )));
            }
            if vars.contains_key(&var) {
                return Err(bad(format!("stream `{name}`: `{key}` is set twice")));
            }
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => {
                    return Err(bad(format!(
                        "stream `{name}`: `{key}` must be a string, a number or a boolean"
                    )));
                }
            };
            vars.insert(var, text);
        }
        out.push(StreamSettings {
            name: name.clone(),
            vars,
        });
    }
    Ok(out)
}

/// A stream's name is its folder and its sync id, and (lower case, `_` for `-` and `.`) its
/// Glue table: letters, digits, `_` and `-`, starting with a letter, at most 100.
fn check_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err("a stream's name is its folder and its Glue table: letters, digits, _ and -, starting with a letter, at most 100".into())
    }
}

/// Where a streams file is: a local (or packaged) path, or an S3 object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Path(std::path::PathBuf),
    S3 { bucket: String, key: String },
}

/// Reads `STREAMS_CONFIG`'s value.
pub fn location(value: &str) -> Result<Location> {
    let value = value.trim();
    match value.strip_prefix("s3://") {
        Some(rest) => match rest.split_once('/') {
            Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => Ok(Location::S3 {
                bucket: bucket.to_string(),
                key: key.to_string(),
            }),
            _ => Err(Error::config(
                "STREAMS_CONFIG",
                format!("expected s3://BUCKET/KEY or a path, got {value:?}"),
            )),
        },
        None if value.is_empty() => Err(Error::config("STREAMS_CONFIG", "is empty")),
        None => Ok(Location::Path(value.into())),
    }
}

/// The variable in which a deployment names its streams (the template's `Streams`).
pub const STREAM_NAMES_VAR: &str = "STREAM_NAMES";

/// Checks that the streams a deployment schedules (`STREAM_NAMES`, comma-separated) are the
/// streams its configuration describes: a scheduled stream missing from the file would fail
/// every run, a stream of the file with no schedule would never run.
pub fn check_deployed(deployed: &str, described: &[String]) -> Result<()> {
    let mut want: Vec<&str> = deployed
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    want.sort_unstable();
    want.dedup();
    let mut have: Vec<&str> = described.iter().map(String::as_str).collect();
    have.sort_unstable();
    if want == have {
        return Ok(());
    }
    let missing: Vec<&str> = want.iter().filter(|w| !have.contains(w)).copied().collect();
    let extra: Vec<&str> = have.iter().filter(|h| !want.contains(h)).copied().collect();
    let mut why = Vec::new();
    if !missing.is_empty() {
        why.push(format!(
            "the deployment schedules {} but the configuration does not describe {}",
            missing.join(", "),
            if missing.len() == 1 { "it" } else { "them" }
        ));
    }
    if !extra.is_empty() {
        why.push(format!(
            "the configuration describes {} but the deployment does not schedule {}",
            extra.join(", "),
            if extra.len() == 1 { "it" } else { "them" }
        ));
    }
    Err(Error::config(
        STREAM_NAMES_VAR,
        format!(
            "{} (the template's Streams parameter must name exactly the streams of STREAMS_CONFIG, or SYNC_ID without one)",
            why.join("; ")
        ),
    ))
}

/// Every stream's configuration, each checked: the first stream with a bad setting fails
/// naming itself and the variable.
pub fn configs(
    streams: &[StreamSettings],
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<(String, crate::Config)>> {
    streams
        .iter()
        .map(|s| {
            let get = s.lookup(env);
            crate::Config::from_lookup(get)
                .map(|c| (s.name.clone(), c))
                .map_err(|e| match e {
                    Error::Config { var, message } => Error::Config {
                        var: format!("stream `{}`: {var}", s.name),
                        message,
                    },
                    other => other,
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[streams.users]
API_URL = "http://127.0.0.1:5001/incremental/timestamp"
buffer_hours = 6

[streams.companies]
api_url = "http://127.0.0.1:5001/cursors/companies"
ID_FIELD = "company_id"
API_SINCE_PARAM = "updated_since"
FETCH_CONCURRENCY = 2
"#;

    #[test]
    fn streams_inherit_the_environment_and_take_their_name_as_sync_id() {
        let streams = parse(FILE).unwrap();
        assert_eq!(
            streams.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["companies", "users"]
        );
        let env = |k: &str| match k {
            "OUTPUT" => Some("s3://lake/raw".to_string()),
            "BUFFER_HOURS" => Some("2".to_string()),
            "SYNC_ID" => Some("ignored".to_string()),
            _ => None,
        };
        let configs = configs(&streams, &env).unwrap();
        let (name, users) = &configs[1];
        assert_eq!(name, "users");
        assert_eq!(users.sync_id, "users");
        assert_eq!(
            users.buffer,
            chrono::TimeDelta::hours(6),
            "the stream's own"
        );
        let (_, companies) = &configs[0];
        assert_eq!(
            companies.buffer,
            chrono::TimeDelta::hours(2),
            "the environment's"
        );
        assert_eq!(companies.api.fields.id.as_str(), "company_id");
        assert_eq!(companies.fetch_concurrency, 2);
        assert!(matches!(
            companies.output,
            crate::config::OutputLocation::S3 { .. }
        ));
    }

    #[test]
    fn locations_and_the_deployed_names() {
        assert_eq!(
            location("s3://cfg/streams/prod.toml").unwrap(),
            Location::S3 {
                bucket: "cfg".into(),
                key: "streams/prod.toml".into()
            }
        );
        assert_eq!(
            location("/opt/streams.toml").unwrap(),
            Location::Path("/opt/streams.toml".into())
        );
        assert!(location("s3://bucket-only").is_err());
        assert!(location(" ").is_err());
        let names = vec!["companies".to_string(), "users".to_string()];
        check_deployed("users,companies", &names).unwrap();
        check_deployed(" users , companies ,", &names).unwrap();
        let e = check_deployed("users,orders", &names)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("STREAM_NAMES")
                && e.contains("schedules orders")
                && e.contains("describes companies"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_file_fails_with_one_line_naming_the_stream_and_the_key() {
        let env = |_: &str| None::<String>;
        let case = |text: &str| {
            parse(text)
                .and_then(|s| configs(&s, &env).map(|_| ()))
                .unwrap_err()
                .to_string()
        };
        let e = case("[streams.users]\nAPI_URL = \"http://h/x\"\nAPI_UTL = 1\n");
        assert!(
            e.contains("stream `users`") && e.contains("unknown key `API_UTL`"),
            "{e}"
        );
        let e = case(
            "[streams.users]\nAPI_URL = \"http://h/x\"\n[streams.users]\nAPI_URL = \"http://h/y\"\n",
        );
        assert!(e.contains("STREAMS_CONFIG") && e.contains("line"), "{e}");
        let e = case("[streams.\"9lives\"]\nAPI_URL = \"http://h/x\"\n");
        assert!(e.contains("stream `9lives`") && e.contains("folder"), "{e}");
        let e = case(
            "[streams.a-b]\nAPI_URL = \"http://h/x\"\n[streams.a_b]\nAPI_URL = \"http://h/y\"\n",
        );
        assert!(e.contains("share the Glue table `a_b`"), "{e}");
        let e = case(
            "[streams.ab]\nAPI_URL = \"http://h/x\"\n[streams.a_b]\nAPI_URL = \"http://h/y\"\n",
        );
        assert!(
            e.contains("share the template's resources (named ab)"),
            "{e}"
        );
        let e = case("[streams.users]\nAPI_URL = \"http://h/x\"\nBUFFER_HOURS = -1\n");
        assert!(e.contains("stream `users`: BUFFER_HOURS"), "{e}");
        let e = case("[streams.users]\nSTATE_STORE = \"file://x\"\n");
        assert!(e.contains("unknown key `STATE_STORE`"), "{e}");
        let e = case("[streams.users]\napi_url = \"http://h/x\"\nAPI_URL = \"http://h/y\"\n");
        assert!(e.contains("set twice"), "{e}");
        let e = case("users = 1\n");
        assert!(e.contains("unknown top-level key `users`"), "{e}");
        let e = case("[streams.users]\nAPI_AUTH_TOKEN = \"s3cret\"\nAPI_URL = 7\n");
        assert!(!e.contains("s3cret"), "{e}");
    }
}
