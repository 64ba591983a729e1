//! The one place HTML pages are rendered: askama templates plus the headers
//! every page carries (no caching, no sniffing, no referrer, a strict CSP).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::LazyLock;

use askama::Template;
use axum::Json;
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};

use crate::checkout::GatewayError;
use crate::domain::Origin;

/// The page's only script. CSP allows it by its hash, so no nonce is
/// needed and nothing else can run.
const AUTOSUBMIT_JS: &str = "document.getElementById('payment_data').submit();";

static AUTOSUBMIT_JS_HASH: LazyLock<String> =
    LazyLock::new(|| format!("'sha256-{}'", STANDARD.encode(Sha256::digest(AUTOSUBMIT_JS.as_bytes()))));

#[derive(Template)]
#[template(path = "autosubmit.html")]
struct AutoSubmit<'a> {
    title: &'a str,
    button: &'a str,
    action: &'a str,
    fields: &'a [(&'a str, &'a str)],
    script: &'a str,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    code: &'a str,
    message: &'a str,
}

/// An auto-submitting form posting `fields` to `action`. CSP lets the form
/// go only to `allowed` (the action's origin first; browsers apply the same
/// rule to redirects that follow the submission).
pub fn autosubmit(action: &str, allowed: &[&Origin], fields: &[(&str, &str)]) -> Response {
    let page =
        AutoSubmit { title: "正在前往付款頁面…", button: "繼續", action, fields, script: AUTOSUBMIT_JS };
    // Room for the page at once: the template's own text, then each field's
    // line (`<input …>` is ~40 bytes besides the name and value) with some
    // escaping; rendering into askama's guess regrew the page twice or more.
    let room = action.len() + fields.iter().map(|(n, v)| 48 + (n.len() + v.len()) * 9 / 8).sum::<usize>();
    let mut response = rendered(StatusCode::OK, &page, room);
    if let Some(csp) = autosubmit_csp(allowed) {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

/// Policies this thread made last, by their origins.
const KEPT_POLICIES: usize = 8;

thread_local! {
    static POLICIES: RefCell<VecDeque<(Vec<Origin>, HeaderValue)>> = const { RefCell::new(VecDeque::new()) };
}

/// The auto-submitting page's CSP for `allowed`. A checkout's payment
/// origins are nearly always the same few lists, so each thread keeps the
/// last [`KEPT_POLICIES`] it made (formatting and checking one was a
/// fiftieth of a checkout's instructions, issue 14).
fn autosubmit_csp(allowed: &[&Origin]) -> Option<HeaderValue> {
    let same = |kept: &[Origin]| kept.len() == allowed.len() && kept.iter().zip(allowed).all(|(k, a)| k == *a);
    if let Some(csp) = POLICIES.with_borrow(|p| p.iter().find(|(o, _)| same(o)).map(|(_, csp)| csp.clone())) {
        return Some(csp);
    }
    let origins: Vec<&str> = allowed.iter().map(|o| o.as_str()).collect();
    let csp = format!(
        "default-src 'none'; script-src {}; form-action {}; base-uri 'none'",
        *AUTOSUBMIT_JS_HASH,
        origins.join(" ")
    );
    let csp = HeaderValue::from_str(&csp).ok()?;
    POLICIES.with_borrow_mut(|p| {
        if p.len() == KEPT_POLICIES {
            p.pop_front();
        }
        p.push_back((allowed.iter().map(|o| (*o).clone()).collect(), csp.clone()));
    });
    Some(csp)
}

/// An error, as an HTML page or as `{"error":{"code","message"}}`.
pub fn error(err: &GatewayError, json: bool) -> Response {
    let (status, code, message) = (err.status(), err.code(), err.message());
    let mut response = if json {
        let body = serde_json::json!({ "error": { "code": code, "message": message } });
        (status, Json(body)).into_response()
    } else {
        let page = ErrorPage { code, message: &message };
        render(status, &page, "default-src 'none'; form-action 'none'; base-uri 'none'")
    };
    no_store(response.headers_mut());
    response
}

pub(crate) fn render(status: StatusCode, page: &impl Template, csp: &str) -> Response {
    let mut response = rendered(status, page, 0);
    if let Ok(v) = HeaderValue::from_str(csp) {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    response
}

/// `page` with the headers every page carries but its CSP.
fn rendered<T: Template>(status: StatusCode, page: &T, room: usize) -> Response {
    let mut html = String::with_capacity(T::SIZE_HINT + room);
    let mut response = match page.render_into(&mut html) {
        Ok(()) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed to render");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    };
    no_store(response.headers_mut());
    response
}

fn no_store(headers: &mut http::HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

/// askama's HTML escaper, after a quicker look: most text on a page (field
/// names and values, URLs) has none of the five characters it escapes, and
/// askama reads each byte through a table before writing anything (~5% of a
/// checkout, issue 14). Text with one of them goes to askama's escaper
/// whole, so the output is askama's (`askama.toml` names this escaper for
/// `.html` templates; a proptest compares the two).
#[derive(Clone, Copy)]
pub struct HtmlEscaper;

impl askama::filters::Escaper for HtmlEscaper {
    fn write_escaped_str<W: std::fmt::Write>(&self, mut dest: W, text: &str) -> std::fmt::Result {
        if needs_escaping(text.as_bytes()) {
            askama::filters::Html.write_escaped_str(dest, text)
        } else {
            dest.write_str(text)
        }
    }

    fn write_escaped_char<W: std::fmt::Write>(&self, dest: W, c: char) -> std::fmt::Result {
        askama::filters::Html.write_escaped_char(dest, c)
    }
}

/// Does `bytes` hold any of `"&'<>`? Sixteen bytes at a time without an
/// exit inside, which the compiler turns into vector compares.
fn needs_escaping(bytes: &[u8]) -> bool {
    // Each comparison its own 0/1 byte, or'ed: vector compares; a `matches!`
    // here compiles to a shift and a bit test per byte instead.
    let special = |b: u8| {
        u8::from(b == b'"') | u8::from(b == b'&') | u8::from(b == b'\'') | u8::from(b == b'<') | u8::from(b == b'>')
    };
    let any = |chunk: &[u8]| chunk.iter().fold(0, |found, &b| found | special(b)) != 0;
    let mut chunks = bytes.chunks_exact(16);
    if chunks.by_ref().any(any) {
        return true;
    }
    // Most names and values are shorter than sixteen bytes: the rest is
    // looked at the same way, padded with zeros.
    let rest = chunks.remainder();
    let mut last = [0; 16];
    last[..rest.len()].copy_from_slice(rest);
    any(&last)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kept policy is the one its origins make, in their order; another
    /// list (longer, shorter, reordered) gets its own.
    #[test]
    fn each_list_of_origins_gets_its_own_policy() {
        let [a, b, c] =
            ["https://pay.example", "https://pay2.example", "https://pay3.example"].map(|o| Origin::parse(o).unwrap());
        let policy = |allowed: &[&Origin]| autosubmit_csp(allowed).unwrap().to_str().unwrap().to_owned();
        for _ in 0..2 {
            for (allowed, form_action) in [
                (vec![&a], "form-action https://pay.example;"),
                (vec![&a, &b], "form-action https://pay.example https://pay2.example;"),
                (vec![&b, &a], "form-action https://pay2.example https://pay.example;"),
                (vec![&a, &b, &c], "form-action https://pay.example https://pay2.example https://pay3.example;"),
            ] {
                let csp = policy(&allowed);
                assert!(csp.contains(form_action) && csp.contains(&*AUTOSUBMIT_JS_HASH), "{csp}");
            }
        }
        for n in 0..(KEPT_POLICIES + 2) {
            let other = Origin::parse(&format!("https://p{n}.example")).unwrap();
            assert!(policy(&[&other]).contains(&format!("form-action https://p{n}.example;")));
        }
        assert!(policy(&[&a]).contains("form-action https://pay.example;"));
    }

    fn escaped(escaper: impl askama::filters::Escaper, text: &str) -> String {
        let mut out = String::new();
        escaper.write_escaped_str(&mut out, text).unwrap();
        out
    }

    proptest::proptest! {
        /// The same text as askama's escaper, on any text: the five
        /// characters anywhere (either side of each sixteen-byte step),
        /// among plain and non-ASCII text.
        #[test]
        fn escapes_as_askama_does(text in "([\"&'<>]|[a-z0-9 =/:.]{0,17}|[交易\u{1F600}\x00-\x7f])*") {
            proptest::prop_assert_eq!(escaped(HtmlEscaper, &text), escaped(askama::filters::Html, &text));
        }
    }

    /// On the page a value cannot leave its attribute, whichever
    /// sixteen-byte step its quote falls in.
    #[test]
    fn a_hostile_value_stays_in_its_attribute() {
        for pad in 0..20 {
            let value = format!("{}\"><script>alert('x')</script>&", "a".repeat(pad));
            let page = AutoSubmit {
                title: "t",
                button: "b",
                action: "https://pay.example/",
                fields: &[("n", &value)],
                script: "",
            };
            let html = page.render().unwrap();
            let want = format!(
                "value=\"{}&#34;&#62;&#60;script&#62;alert(&#39;x&#39;)&#60;/script&#62;&#38;\"",
                "a".repeat(pad)
            );
            assert!(html.contains(&want), "{html}");
            assert!(!html.contains("<script>alert"), "{html}");
        }
    }
}
