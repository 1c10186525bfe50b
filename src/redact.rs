//! Keeping the API credential and personal data out of every message.
//!
//! A hostile or careless API can echo the request back: its headers in a 401 body, the
//! credential in a next-page URL, users' emails in an error. Whatever it sends, what we print
//! (error messages, retry warnings, logs, the Lambda invocation error that lands in a
//! dead-letter queue) passes through [`Secrets::scrub`]: every known form of the credential
//! becomes `***` and every email address `[email]`.
//!
//! The known forms of a credential are the value itself, as a JSON string would escape it
//! (`\/`, `\"`, `\uXXXX`), percent-encoded, and — for a URL's user-info, which HTTP clients
//! send as `Authorization: Basic …` — the Base64 of `user:password`.

use std::borrow::Cow;
use std::sync::Arc;

/// What to scrub: the credential's forms (longest first). Cheap to clone.
#[derive(Clone, Default)]
pub struct Secrets {
    needles: Arc<Vec<String>>,
    /// Forms of credentials learnt while running (a session or OAuth2 token), shared by
    /// every clone.
    learned: Arc<std::sync::RwLock<Vec<String>>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} forms)", self.needles.len())
    }
}

impl Secrets {
    /// Scrubs `values` (credentials; empty ones are ignored) in all their forms.
    pub fn new<I, S>(values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut needles = Vec::new();
        for v in values {
            let v = v.as_ref();
            if v.is_empty() {
                continue;
            }
            needles.push(v.to_string());
            // As a JSON serialiser may write it: `"` and `\` escaped, `/` as `\/`, and
            // anything beyond ASCII as `\uXXXX`.
            let json = serde_json::to_string(v).unwrap_or_default();
            let json = json.trim_matches('"').to_string();
            for form in [json, ascii_json(v, false), ascii_json(v, true)] {
                needles.push(form.replace('/', "\\/"));
                needles.push(form);
            }
            needles.push(url::form_urlencoded::byte_serialize(v.as_bytes()).collect());
            needles.push(percent_all(v));
        }
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        needles.dedup();
        needles.retain(|n| !n.is_empty());
        Secrets {
            needles: Arc::new(needles),
            learned: Arc::default(),
        }
    }

    /// Scrubs `value` too from now on, in every clone of this set (a token fetched while
    /// running).
    pub fn learn(&self, value: &str) {
        let forms = Secrets::new([value]).needles;
        let mut learned = self.learned.write().unwrap_or_else(|e| e.into_inner());
        learned.extend(forms.iter().cloned());
        learned.sort_by_key(|n| std::cmp::Reverse(n.len()));
        learned.dedup();
    }

    /// The secrets of an API URL's user-info (`https://user:password@host/`): the user, the
    /// password (decoded), and the Basic credential an HTTP client makes of them.
    pub fn of_url(url: &url::Url) -> Vec<String> {
        let user = percent_decode(url.username());
        let password = url.password().map(percent_decode);
        if user.is_empty() && password.is_none() {
            return Vec::new();
        }
        let basic = base64(format!("{user}:{}", password.as_deref().unwrap_or("")).as_bytes());
        let mut out = vec![user, basic];
        out.extend(password);
        out
    }

    /// Adds more secrets (e.g. a token fetched after start-up).
    pub fn with<I, S>(&self, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut all: Vec<String> = self.needles.iter().cloned().collect();
        all.extend(values.into_iter().map(|v| v.as_ref().to_string()));
        Secrets {
            learned: self.learned.clone(),
            ..Secrets::new(all)
        }
    }

    /// `text` with every form of every credential replaced by `***` and every email address
    /// by `[email]`.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out: Cow<'a, str> = Cow::Borrowed(text);
        let learned = self.learned.read().unwrap_or_else(|e| e.into_inner());
        for n in self.needles.iter().chain(learned.iter()) {
            if out.contains(n.as_str()) {
                out = Cow::Owned(out.replace(n.as_str(), "***"));
            }
        }
        match mask_emails(&out) {
            Cow::Borrowed(_) => out,
            Cow::Owned(s) => Cow::Owned(s),
        }
    }
}

/// The URL without its query string, credentials or email addresses, for messages and logs.
pub fn url(url: &url::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    let mut s = mask_emails(u.as_str()).into_owned();
    if url.query().is_some() {
        s.push_str("?…");
    }
    s
}

/// `text` with each email address (`local@domain.tld`, also with `@` percent-encoded as
/// `%40`) replaced by `[email]`.
pub fn mask_emails(text: &str) -> Cow<'_, str> {
    if !text.contains('@') && !text.contains("%40") {
        return Cow::Borrowed(text);
    }
    let b = text.as_bytes();
    let local = |c: u8| c.is_ascii_alphanumeric() || b"._%+-'".contains(&c);
    let domain = |c: u8| c.is_ascii_alphanumeric() || c == b'.' || c == b'-';
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        let at_len = if b[i] == b'@' {
            1
        } else if b[i..].starts_with(b"%40") {
            3
        } else {
            i += 1;
            continue;
        };
        let mut start = i;
        while start > copied && local(b[start - 1]) {
            start -= 1;
        }
        let mut end = i + at_len;
        while end < b.len() && domain(b[end]) {
            end += 1;
        }
        let host = text[i + at_len..end].trim_end_matches(['.', '-']);
        let end = i + at_len + host.len();
        if start < i && host.contains('.') && !host.starts_with('.') {
            out.push_str(&text[copied..start]);
            out.push_str("[email]");
            copied = end;
            i = end;
        } else {
            i += at_len;
        }
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// JSON string body with every character beyond ASCII as `\uXXXX` (surrogate pairs too),
/// in lower or upper case hex.
fn ascii_json(v: &str, upper: bool) -> String {
    let mut out = String::new();
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    if upper {
                        out.push_str(&format!("\\u{u:04X}"));
                    } else {
                        out.push_str(&format!("\\u{u:04x}"));
                    }
                }
            }
        }
    }
    out
}

/// Every byte that is not unreserved (RFC 3986), percent-encoded in upper case.
fn percent_all(v: &str) -> String {
    let mut out = String::new();
    for &c in v.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Standard Base64 with padding (RFC 4648 §4).
pub(crate) fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_the_credential_is_scrubbed() {
        let s = Secrets::new(["tok/en\"é+1"]);
        for echoed in [
            r#"{"headers":{"Authorization":"Bearer tok/en\"é+1"}}"#,
            r#"{"Authorization":"Bearer tok\/en\"\u00e9+1"}"#,
            "next=/x?key=tok%2Fen%22%C3%A9%2B1",
            r#"{"h":"Bearer tok\/en\"\u00E9+1"}"#,
            "raw tok/en\"é+1 end",
        ] {
            let out = s.scrub(echoed);
            assert!(out.contains("***"), "{echoed} -> {out}");
            assert!(!out.contains("tok"), "{echoed} -> {out}");
        }
    }

    #[test]
    fn url_user_info_and_its_basic_value() {
        let u = url::Url::parse("https://ann:p%40ss@api.example.com/x").unwrap();
        let forms = Secrets::of_url(&u);
        assert!(forms.contains(&"p@ss".to_string()));
        // base64("ann:p@ss")
        assert!(forms.contains(&"YW5uOnBAc3M=".to_string()), "{forms:?}");
        let s = Secrets::new(forms);
        let out = s.scrub(r#"{"authorization":"Basic YW5uOnBAc3M="}"#);
        assert!(!out.contains("YW5u"), "{out}");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
    }

    #[test]
    fn redaction_drops_query_and_credentials() {
        let u =
            url::Url::parse("https://user:pw@api.example.com/x?api_key=secret&since=1").unwrap();
        let r = url(&u);
        assert!(!r.contains("secret") && !r.contains("pw"), "{r}");
        assert!(r.starts_with("https://api.example.com/x"), "{r}");
    }

    #[test]
    fn emails_are_masked() {
        assert_eq!(
            mask_emails("user ann.lee+x@mail.example.com. failed"),
            "user [email]. failed"
        );
        assert_eq!(
            mask_emails("/users/ann%40example.org/p2"),
            "/users/[email]/p2"
        );
        assert_eq!(mask_emails("a @ b, x@y, @home"), "a @ b, x@y, @home");
        assert_eq!(mask_emails("no at all"), "no at all");
        assert_eq!(mask_emails("é@ü.de"), "é@ü.de");
    }
}
