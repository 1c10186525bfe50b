//! A fixture API on 127.0.0.1:0 for what the playground does not cover: chosen records,
//! bad bodies, error statuses, paging. Plain HTTP/1.1 over std sockets, one thread per
//! connection, `Connection: close`. Every request is recorded for assertions.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub target: String,
    pub query: Vec<(String, String)>,
    /// The request's header lines, as sent (`Name: value`).
    pub headers: Vec<String>,
}

impl Request {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send only this many bytes of the body (with the full Content-Length), then close.
    pub truncate_to: Option<usize>,
    /// Wait this long before answering.
    pub delay: std::time::Duration,
}

impl Response {
    pub fn json(v: &Value) -> Self {
        Response::raw(200, v.to_string())
    }

    pub fn raw(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.into(),
            truncate_to: None,
            delay: std::time::Duration::ZERO,
        }
    }

    pub fn truncated(mut self, to: usize) -> Self {
        self.truncate_to = Some(to);
        self
    }

    pub fn delayed(mut self, d: std::time::Duration) -> Self {
        self.delay = d;
        self
    }

    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
}

type Handler = dyn Fn(&Request, usize) -> Response + Send + Sync;

pub struct FixtureApi {
    pub port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl FixtureApi {
    /// Serves `handler(request, index_of_request)`.
    pub fn start(handler: impl Fn(&Request, usize) -> Response + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fixture");
        let port = listener.local_addr().expect("addr").port();
        let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (reqs, stop2) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (reqs, handler) = (reqs.clone(), handler.clone());
                std::thread::spawn(move || serve(conn, &reqs, &*handler));
            }
        });
        FixtureApi {
            port,
            requests,
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for FixtureApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(mut conn: TcpStream, reqs: &Mutex<Vec<Request>>, handler: &Handler) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" {
            break;
        }
        headers.push(h.trim_end().to_string());
    }
    let (path, q) = target.split_once('?').unwrap_or((&target, ""));
    let req = Request {
        path: path.to_string(),
        target: target.clone(),
        query: url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect(),
        headers,
    };
    let index = {
        let mut r = reqs.lock().expect("lock");
        r.push(req.clone());
        r.len() - 1
    };
    let resp = handler(&req, index);
    std::thread::sleep(resp.delay);
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        resp.status,
        resp.body.len()
    );
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = conn.write_all(head.as_bytes());
    let end = resp
        .truncate_to
        .unwrap_or(resp.body.len())
        .min(resp.body.len());
    let _ = conn.write_all(&resp.body[..end]);
}

/// How a records fixture pages.
#[derive(Debug, Clone, Copy)]
pub enum Paging {
    /// One page with every record.
    None,
    /// `per_page` records a page; the next page's URL in the body field `next`.
    BodyField(usize),
    /// `per_page` records a page; the next page's URL in a `Link: <…>; rel="next"` header.
    LinkHeader(usize),
}

/// A fixture serving `records` like the playground: `updatedAt >= since` (parsed as RFC 3339)
/// and, given `until`, `updatedAt < until`, sorted by `updatedAt`, under `data`. Records are served as given (bad ones included).
pub fn records_api(records: Vec<Value>, paging: Paging) -> FixtureApi {
    shared_records_api(Arc::new(Mutex::new(records)), paging)
}

/// [`records_api`] over records the test can change between runs.
pub fn shared_records_api(records: Arc<Mutex<Vec<Value>>>, paging: Paging) -> FixtureApi {
    FixtureApi::start(move |req, _| records_page(&records.lock().expect("records"), paging, req))
}

/// The response of [`records_api`] to `req`: the page of `records` it asks for, sorted by
/// `updatedAt` (ascending, or descending with `?order=desc` in the API URL).
pub fn records_page(records: &[Value], paging: Paging, req: &Request) -> Response {
    {
        let bound = |name: &str| {
            req.param(name).map(|s| {
                DateTime::parse_from_rfc3339(s)
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_else(|_| panic!("the fixture got an unparsable {name}"))
            })
        };
        let (since, until) = (bound("since"), bound("until"));
        let mut sel: Vec<&Value> = records
            .iter()
            .filter(|r| {
                let at = r["updatedAt"]
                    .as_str()
                    .and_then(|u| DateTime::parse_from_rfc3339(u).ok());
                match at {
                    Some(u) => since.is_none_or(|s| u >= s) && until.is_none_or(|t| u < t),
                    // Bad records come back on every request without an upper bound (the
                    // worst case); with one, as in SQL, a row without a comparable
                    // updatedAt is in no range.
                    None => until.is_none(),
                }
            })
            .collect();
        sel.sort_by_key(|r| r["updatedAt"].as_str().unwrap_or("").to_string());
        if req.param("order") == Some("desc") {
            sel.reverse();
        }
        let per_page = match paging {
            Paging::None => usize::MAX,
            Paging::BodyField(n) | Paging::LinkHeader(n) => n,
        };
        let page: usize = req.param("page").and_then(|p| p.parse().ok()).unwrap_or(1);
        let start = (page - 1).saturating_mul(per_page).min(sel.len());
        let end = start.saturating_add(per_page).min(sel.len());
        let next = (end < sel.len()).then(|| page_link(req, page + 1));
        let data: Vec<&Value> = sel[start..end].to_vec();
        // `?latency_ms=N` in the API URL: every page takes that long, like a real API.
        let latency = std::time::Duration::from_millis(
            req.param("latency_ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        );
        let response = match paging {
            Paging::BodyField(_) => Response::json(&json!({"data": data, "next": next})),
            Paging::LinkHeader(_) => {
                let r = Response::json(&json!({"data": data}));
                match next {
                    Some(n) => r.header("Link", &format!("<{n}>; rel=\"next\"")),
                    None => r,
                }
            }
            Paging::None => Response::json(&json!({"data": data})),
        };
        response.delayed(latency)
    }
}

/// A user record like the playground's.
pub fn user(id: &str, updated_at: &str) -> Value {
    json!({
        "id": id,
        "name": format!("Name {id}"),
        "email": format!("{id}@example.com"),
        "address": "1 Main St\nTown",
        "createdAt": "2024-01-01T00:00:00Z",
        "updatedAt": updated_at,
    })
}

/// How an API reads its bounds and writes its times, for the edge tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edges {
    /// `since <= t < until`, times written as they are.
    Inclusive,
    /// `updated_after`-style: `since < t <= until`.
    UpdatedAfter,
    /// `since <= t < until` on the true time, written rounded up to the whole second (as
    /// APIs that serialise without fractions do).
    RoundsUp,
}

/// A row of [`edges_page`]: its true time (milliseconds) and id.
pub fn edge_user(id: &str, ms: i64) -> (i64, Value) {
    (ms, user(id, ""))
}

/// The page of `rows` that `req` asks for, read with `edges`, sorted by true time (ties by
/// id), `per_page` a page with a `Link` to the next; `updatedAt` is written per `edges`.
pub fn edges_page(rows: &[(i64, Value)], edges: Edges, per_page: usize, req: &Request) -> Response {
    let bound = |name: &str| {
        req.param(name).map(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.timestamp_millis())
                .unwrap_or_else(|_| panic!("the fixture got an unparsable {name}"))
        })
    };
    let (since, until) = (bound("since"), bound("until"));
    let mut sel: Vec<&(i64, Value)> = rows
        .iter()
        .filter(|(t, _)| match edges {
            Edges::UpdatedAfter => since.is_none_or(|s| *t > s) && until.is_none_or(|u| *t <= u),
            _ => since.is_none_or(|s| *t >= s) && until.is_none_or(|u| *t < u),
        })
        .collect();
    sel.sort_by(|a, b| (a.0, a.1["id"].as_str()).cmp(&(b.0, b.1["id"].as_str())));
    let page: usize = req.param("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let start = ((page - 1) * per_page).min(sel.len());
    let end = (start + per_page).min(sel.len());
    let data: Vec<Value> = sel[start..end]
        .iter()
        .map(|(t, v)| {
            let ms = if edges == Edges::RoundsUp {
                (t + 999).div_euclid(1000) * 1000
            } else {
                *t
            };
            let at = DateTime::from_timestamp_millis(ms).expect("a time");
            let mut v = v.clone();
            v["updatedAt"] = at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .into();
            v
        })
        .collect();
    let r = Response::json(&json!({ "data": data }));
    let latency = req
        .param("latency_ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let r = r.delayed(std::time::Duration::from_millis(latency));
    if end < sel.len() {
        r.header(
            "Link",
            &format!("<{}>; rel=\"next\"", page_link(req, page + 1)),
        )
    } else {
        r
    }
}

/// The link to page `page` of the request `req` answers: its path and query, `page` set.
fn page_link(req: &Request, page: usize) -> String {
    let mut q: Vec<(String, String)> = req
        .query
        .iter()
        .filter(|(k, _)| k != "page")
        .cloned()
        .collect();
    q.push(("page".into(), page.to_string()));
    let qs = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(q)
        .finish();
    format!("{}?{qs}", req.path)
}
