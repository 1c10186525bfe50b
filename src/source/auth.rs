//! How requests are authenticated (`API_AUTH`), beside the transport: a header with a fixed
//! credential (`header`, `basic`), a query parameter (`query`), or a token that a login
//! (`session`) or the OAuth2 client-credentials grant (`oauth2`) hands out. A token is fetched
//! on first use (once per cold start), renewed shortly before `expires_in` says it ends, and
//! after a 401: once — a token just fetched that is refused fails the run. Neither the
//! credential nor a token is ever printed: each joins the scrubbed secrets the moment it is
//! known, whatever the login endpoint echoes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use tokio::time::Instant;
use url::Url;

use crate::config::{AuthConfig, AuthKind};
use crate::error::{Error, Result};
use crate::redact::{Secrets, base64, url as redact};

/// How each request is authenticated.
pub enum Auth {
    None,
    Header(HeaderName, HeaderValue),
    Query(String, String),
    Token(Box<TokenAuth>),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credential.
        f.write_str(match self {
            Auth::None => "Auth::None",
            Auth::Header(..) => "Auth::Header(***)",
            Auth::Query(..) => "Auth::Query(***)",
            Auth::Token(_) => "Auth::Token(***)",
        })
    }
}

/// A token from a login or a token endpoint, kept and renewed.
pub struct TokenAuth {
    grant: Grant,
    header: HeaderName,
    scheme: Option<String>,
    current: tokio::sync::Mutex<Option<Token>>,
    generation: AtomicU64,
    /// The next token fetched replaces one the API refused.
    renewing: std::sync::atomic::AtomicBool,
}

enum Grant {
    Session {
        url: Url,
        username: String,
        password: String,
        field: String,
    },
    OAuth2 {
        url: Url,
        client_id: String,
        client_secret: String,
        scope: Option<String>,
    },
}

#[derive(Clone)]
struct Token {
    value: HeaderValue,
    /// When to fetch a new one (`None`: when refused).
    renew_at: Option<Instant>,
    generation: u64,
    /// It replaced a refused token and no request has succeeded with it yet.
    renewal: bool,
}

/// Which token a request carried.
#[derive(Debug, Clone, Copy)]
pub struct Used {
    generation: u64,
    /// It replaced a refused token, unproven: a 401 with it ends the renewals.
    renewal: bool,
}

/// A failure to get a token, and whether another attempt may succeed.
pub struct LoginFailed {
    pub error: Error,
    pub retriable: bool,
}

/// The two parts of a credential: JSON with the two named fields, or `a:b`. The message
/// never quotes the credential.
fn parts(credential: &str, names: (&str, &str), var: &str) -> Result<(String, String)> {
    if let Ok(serde_json::Value::Object(o)) = serde_json::from_str(credential) {
        let get = |k: &str| o.get(k).and_then(|v| v.as_str()).map(str::to_string);
        if let (Some(a), Some(b)) = (get(names.0), get(names.1)) {
            return Ok((a, b));
        }
        return Err(Error::config(
            var,
            format!(
                "the JSON credential needs string fields \"{}\" and \"{}\"",
                names.0, names.1
            ),
        ));
    }
    match credential.split_once(':') {
        Some((a, b)) if !a.is_empty() => Ok((a.to_string(), b.to_string())),
        _ => Err(Error::config(
            var,
            format!(
                "expected the credential as {0}:{1} or JSON {{\"{0}\": …, \"{1}\": …}}",
                names.0, names.1
            ),
        )),
    }
}

impl Auth {
    /// The authentication `auth` describes, with its credential; and every string to scrub.
    pub fn new(auth: &AuthConfig, credential: &str, var: &str) -> Result<(Auth, Vec<String>)> {
        let header = || {
            HeaderName::from_bytes(auth.header.as_bytes())
                .map_err(|_| Error::config("API_AUTH_HEADER", "is not a valid HTTP header name"))
        };
        let value = |text: String| {
            // The message must not quote the credential.
            HeaderValue::from_str(&text)
                .map(|mut v| {
                    v.set_sensitive(true);
                    v
                })
                .map_err(|_| {
                    Error::config(
                        var,
                        "the credential has characters an HTTP header cannot carry",
                    )
                })
        };
        let token_auth = |grant: Grant| -> Result<Auth> {
            Ok(Auth::Token(Box::new(TokenAuth {
                grant,
                header: header()?,
                scheme: auth.scheme.clone(),
                current: tokio::sync::Mutex::new(None),
                generation: AtomicU64::new(0),
                renewing: std::sync::atomic::AtomicBool::new(false),
            })))
        };
        Ok(match &auth.kind {
            AuthKind::Header => {
                let text = match &auth.scheme {
                    Some(s) => format!("{s} {credential}"),
                    None => credential.to_string(),
                };
                let secrets = vec![text.clone(), credential.to_string()];
                (Auth::Header(header()?, value(text)?), secrets)
            }
            AuthKind::Basic => {
                let (user, password) = parts(credential, ("username", "password"), var)?;
                let basic = base64(format!("{user}:{password}").as_bytes());
                let text = format!("Basic {basic}");
                let secrets = vec![text.clone(), basic, user, password];
                let name = HeaderName::from_static("authorization");
                (Auth::Header(name, value(text)?), secrets)
            }
            AuthKind::Query { param } => (
                Auth::Query(param.clone(), credential.to_string()),
                vec![credential.to_string()],
            ),
            AuthKind::Session {
                login_url,
                token_field,
            } => {
                let (username, password) = parts(credential, ("username", "password"), var)?;
                let secrets = vec![username.clone(), password.clone()];
                let grant = Grant::Session {
                    url: login_url.clone(),
                    username,
                    password,
                    field: token_field.clone(),
                };
                (token_auth(grant)?, secrets)
            }
            AuthKind::OAuth2 { token_url, scope } => {
                let (client_id, client_secret) =
                    parts(credential, ("client_id", "client_secret"), var)?;
                let secrets = vec![client_secret.clone()];
                let grant = Grant::OAuth2 {
                    url: token_url.clone(),
                    client_id,
                    client_secret,
                    scope: scope.clone(),
                };
                (token_auth(grant)?, secrets)
            }
        })
    }

    /// `req` with a fixed credential (a token's is added by [`TokenAuth::apply`]).
    pub fn fixed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Auth::Header(name, value) => req.header(name, value),
            Auth::Query(param, value) => req.query(&[(param, value)]),
            Auth::None | Auth::Token(_) => req,
        }
    }

    pub fn token(&self) -> Option<&TokenAuth> {
        match self {
            Auth::Token(t) => Some(t),
            _ => None,
        }
    }
}

impl TokenAuth {
    /// `req` with the current token, fetched first when there is none or it is about to end.
    pub async fn apply(
        &self,
        client: &reqwest::Client,
        req: reqwest::RequestBuilder,
        secrets: &Secrets,
    ) -> std::result::Result<(reqwest::RequestBuilder, Used), LoginFailed> {
        let mut current = self.current.lock().await;
        let valid = current
            .as_ref()
            .filter(|t| t.renew_at.is_none_or(|at| Instant::now() < at))
            .cloned();
        let token = match valid {
            Some(t) => t,
            None => {
                let t = self.fetch(client, secrets).await?;
                *current = Some(t.clone());
                t
            }
        };
        let used = Used {
            generation: token.generation,
            renewal: token.renewal,
        };
        Ok((req.header(&self.header, token.value), used))
    }

    /// After a 401 with the token `used`: forgets it (the next request fetches another), and
    /// says whether trying again may help — not when that token already replaced a refused
    /// one without a request succeeding with it (a second 401 ends the run).
    pub async fn refused(&self, used: Used) -> bool {
        let mut current = self.current.lock().await;
        let dropped = current
            .as_ref()
            .is_some_and(|t| t.generation == used.generation);
        if dropped {
            *current = None;
        }
        if used.renewal {
            return false;
        }
        // Only a token dropped here makes the next one a renewal: another read (a slice) may
        // have replaced it already, and the next request then carries that one.
        if dropped {
            self.renewing.store(true, Ordering::Relaxed);
        }
        true
    }

    /// A request with the token `used` succeeded: it is proven.
    pub async fn accepted(&self, used: Used) {
        if used.renewal
            && let Some(t) = self.current.lock().await.as_mut()
            && t.generation == used.generation
        {
            t.renewal = false;
        }
    }

    /// The request that asks for a token, the field of the answer that holds it, and the
    /// variable naming where it goes.
    fn token_request(
        &self,
        client: &reqwest::Client,
    ) -> (&Url, reqwest::RequestBuilder, &str, &'static str) {
        match &self.grant {
            Grant::Session {
                url,
                username,
                password,
                field,
            } => {
                let body = serde_json::json!({"username": username, "password": password});
                let req = client.post(url.clone()).json(&body);
                (url, req, field.as_str(), "API_LOGIN_URL")
            }
            Grant::OAuth2 {
                url,
                client_id,
                client_secret,
                scope,
            } => {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                form.append_pair("grant_type", "client_credentials")
                    .append_pair("client_id", client_id)
                    .append_pair("client_secret", client_secret);
                if let Some(s) = scope {
                    form.append_pair("scope", s);
                }
                let req = client
                    .post(url.clone())
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(form.finish());
                (url, req, "access_token", "API_TOKEN_URL")
            }
        }
    }

    /// Fetches a token. Every failure is scrubbed of the credential; 429, 5xx and broken
    /// connections may be tried again.
    async fn fetch(
        &self,
        client: &reqwest::Client,
        secrets: &Secrets,
    ) -> std::result::Result<Token, LoginFailed> {
        let (url, req, field, var) = self.token_request(client);
        let fail = |error: Error, retriable: bool| LoginFailed {
            error: error.scrubbed(secrets),
            retriable,
        };
        let broke = |what: &str, e: &dyn std::fmt::Display| {
            let message = format!("the token {what} ({var}): {e}");
            fail(
                Error::Transport {
                    url: redact(url),
                    attempts: 1,
                    message,
                },
                true,
            )
        };
        let resp = req
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| broke("request failed", &e.without_url()))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| broke("response broke off", &e))?;
        if !(200..300).contains(&status) {
            let excerpt: String = String::from_utf8_lossy(&body).chars().take(120).collect();
            let error = Error::Upstream {
                status,
                url: redact(url),
                attempts: 1,
                excerpt: format!("the token request was refused ({var}): {excerpt}"),
            };
            return Err(fail(error, status == 429 || status >= 500));
        }
        self.read_token(&body, field, var, secrets)
            .map_err(|message| {
                fail(
                    Error::MalformedResponse {
                        url: redact(url),
                        message,
                    },
                    false,
                )
            })
    }

    /// The token in a successful answer, learnt by `secrets` before anything else is done
    /// with it; renewed a little before it ends (a tenth of its life, at most 30 s, before).
    fn read_token(
        &self,
        body: &[u8],
        field: &str,
        var: &str,
        secrets: &Secrets,
    ) -> std::result::Result<Token, String> {
        let json: serde_json::Value = serde_json::from_slice(body)
            .map_err(|_| format!("the token response is not JSON ({var})"))?;
        let pointer = format!("/{}", field.replace('.', "/"));
        let token = json
            .pointer(&pointer)
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("the token response has no string `{field}` ({var})"))?;
        secrets.learn(token);
        let text = match &self.scheme {
            Some(s) => format!("{s} {token}"),
            None => token.to_string(),
        };
        secrets.learn(&text);
        let mut value = HeaderValue::from_str(&text)
            .map_err(|_| "the token has characters an HTTP header cannot carry".to_string())?;
        value.set_sensitive(true);
        let renew_at = json
            .get("expires_in")
            .and_then(|e| {
                e.as_f64()
                    .or_else(|| e.as_str().and_then(|s| s.parse().ok()))
            })
            .filter(|s| *s > 0.0)
            .map(|s| {
                let life = Duration::from_secs_f64(s.min(1e7));
                Instant::now() + life - (life / 10).min(Duration::from_secs(30))
            });
        Ok(Token {
            value,
            renew_at,
            generation: self.generation.fetch_add(1, Ordering::Relaxed) + 1,
            renewal: self.renewing.swap(false, Ordering::Relaxed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_with_two_parts_are_read_without_being_quoted() {
        let p = |c: &str| parts(c, ("username", "password"), "API_AUTH_TOKEN");
        assert_eq!(p("ann:s3cr:et").unwrap(), ("ann".into(), "s3cr:et".into()));
        assert_eq!(
            p(r#"{"username": "ann", "password": "pw"}"#).unwrap(),
            ("ann".into(), "pw".into())
        );
        let e = p("hunter2").unwrap_err().to_string();
        assert!(
            e.contains("username:password") && !e.contains("hunter2"),
            "{e}"
        );
        let e = p(r#"{"user": "ann"}"#).unwrap_err().to_string();
        assert!(e.contains("\"username\""), "{e}");
    }
}
