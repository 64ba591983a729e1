//! The one place HTML pages are rendered: askama templates plus the headers
//! every page carries (no caching, no sniffing, no referrer, a strict CSP).

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
    let origins: Vec<&str> = allowed.iter().map(|o| o.as_str()).collect();
    let csp = format!(
        "default-src 'none'; script-src {}; form-action {}; base-uri 'none'",
        *AUTOSUBMIT_JS_HASH,
        origins.join(" ")
    );
    render(StatusCode::OK, &page, &csp)
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
    let mut response = match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed to render");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    };
    let headers = response.headers_mut();
    no_store(headers);
    if let Ok(v) = HeaderValue::from_str(csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    response
}

fn no_store(headers: &mut http::HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}
