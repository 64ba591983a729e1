//! `GET /admin` (list with filters and counts), `GET /admin/callbacks/{id}`
//! (detail: the body pretty-printed with hash fields masked, every attempt,
//! a Replay button), and the two replay forms. Server-rendered, no script.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::{HeaderValue, StatusCode, header};

use super::api::{ListQuery, next_cursor};
use super::replay::{self, ReplayError};
use crate::domain::time::{age, rfc3339};
use crate::form::FormFields;
use crate::http::{AppState, page};
use crate::routing::Provider;
use crate::store::{CallbackDetail, CallbackId, Status, now_ms};

const CSP: &str = "default-src 'none'; style-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
const STYLE: &str = include_str!("../../../templates/admin/style.css");
const STATUSES: [&str; 5] = ["pending", "delivered", "dead", "rejected", "unroutable"];

struct Row {
    id: String,
    provider: String,
    tenant: String,
    status: &'static str,
    attempts: u32,
    age: String,
    received_at: String,
    last_error: String,
}

#[derive(Template)]
#[template(path = "admin/list.html")]
struct ListPage {
    rows: Vec<Row>,
    counts: Vec<(String, u64)>,
    statuses: [&'static str; 5],
    providers: Vec<&'static str>,
    status: String,
    provider: String,
    tenant: String,
    q: String,
    /// The bulk replay form's action, the tenant percent-encoded into it.
    tenant_action: String,
    next: Option<String>,
    notice: Option<String>,
    error: Option<String>,
}

struct AttemptRow {
    n: u32,
    at: String,
    status_code: String,
    duration_ms: u64,
    error: String,
    excerpt: String,
}

#[derive(Template)]
#[template(path = "admin/detail.html")]
struct DetailPage {
    id: String,
    status: &'static str,
    provider: String,
    tenant: String,
    received_at: String,
    age: String,
    remote_addr: String,
    content_type: String,
    next_attempt: String,
    last_error: String,
    verified: &'static str,
    verify_detail: String,
    replayable: bool,
    body_kind: &'static str,
    body: String,
    attempts: Vec<AttemptRow>,
    notice: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct Notice {
    done: Option<String>,
}

fn notice_text(n: &Notice) -> Option<String> {
    match n.done.as_deref()? {
        "replayed" => Some("Queued again: the worker delivers it within a second.".to_owned()),
        // Only a count: anything else would be text a link could put on the page.
        other => other
            .strip_prefix("replayed-")
            .and_then(|n| n.parse::<u64>().ok())
            .map(|n| format!("{n} dead callbacks queued again.")),
    }
}

fn html(status: StatusCode, page: &impl Template) -> Response {
    page::render(status, page, CSP)
}

pub async fn style() -> Response {
    let mut response = STYLE.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    response
}

pub async fn list(State(state): State<AppState>, Query(q): Query<ListQuery>, Query(notice): Query<Notice>) -> Response {
    let given = |v: &Option<String>| v.as_deref().unwrap_or_default().trim().to_owned();
    let mut page = ListPage {
        rows: Vec::new(),
        counts: Vec::new(),
        statuses: STATUSES,
        providers: Provider::ALL.iter().map(|p| p.name()).collect(),
        status: given(&q.status),
        provider: given(&q.provider),
        tenant: given(&q.tenant),
        q: given(&q.q),
        tenant_action: format!("/admin/tenants/{}/replay-dead", encode_path(&given(&q.tenant))),
        next: None,
        notice: notice_text(&notice),
        error: None,
    };
    let filter = match q.filter() {
        Ok(f) => f,
        Err(e) => {
            page.error = Some(e);
            return html(StatusCode::BAD_REQUEST, &page);
        }
    };
    let store = state.store();
    let (items, stats) = match tokio::try_join!(store.list(&filter), store.stats()) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, "admin: storage failed");
            page.error = Some("Storage does not answer.".to_owned());
            return html(StatusCode::SERVICE_UNAVAILABLE, &page);
        }
    };
    page.counts = STATUSES
        .iter()
        .map(|&s| {
            let n = stats.by_status.iter().find(|(st, _)| st.as_str() == s).map_or(0, |(_, n)| *n);
            (s.to_owned(), n)
        })
        .collect();
    let now = now_ms();
    page.next = next_cursor(&items, filter.limit).map(|cursor| {
        let query = crate::form::encode(
            [
                ("status", &page.status),
                ("provider", &page.provider),
                ("tenant", &page.tenant),
                ("q", &page.q),
                ("cursor", &cursor),
            ]
            .into_iter()
            .filter(|(_, v)| !v.is_empty()),
        );
        format!("/admin?{query}")
    });
    page.rows = items.into_iter().map(|s| Row::of(s, now)).collect();
    html(StatusCode::OK, &page)
}

impl Row {
    fn of(s: crate::store::CallbackSummary, now: i64) -> Self {
        Self {
            age: age(now - s.received_at_ms),
            received_at: rfc3339(s.received_at_ms),
            id: s.id.to_string(),
            provider: s.provider.to_string(),
            tenant: s.tenant.unwrap_or_else(|| "—".to_owned()),
            status: s.status.as_str(),
            attempts: s.attempts,
            last_error: s.last_error.unwrap_or_default(),
        }
    }
}

pub async fn detail(State(state): State<AppState>, Path(id): Path<String>, Query(notice): Query<Notice>) -> Response {
    let Some(id) = CallbackId::parse(&id) else { return (StatusCode::NOT_FOUND, "no such callback\n").into_response() };
    let d = match state.store().get(&id).await {
        Ok(Some(d)) => d,
        Ok(None) => return (StatusCode::NOT_FOUND, "no such callback\n").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "admin: storage failed");
            return (StatusCode::SERVICE_UNAVAILABLE, "storage does not answer\n").into_response();
        }
    };
    let (body_kind, body) = pretty_masked(&d);
    let (verified, verify_detail) = crate::verify::shown(&state.config(), &d);
    let s = &d.summary;
    let page = DetailPage {
        id: s.id.to_string(),
        status: s.status.as_str(),
        provider: s.provider.to_string(),
        tenant: s.tenant.clone().unwrap_or_else(|| "— (unroutable)".to_owned()),
        received_at: rfc3339(s.received_at_ms),
        age: age(now_ms() - s.received_at_ms),
        remote_addr: d.remote_addr.clone().unwrap_or_else(|| "?".to_owned()),
        content_type: d.content_type.clone().unwrap_or_else(|| "(none)".to_owned()),
        next_attempt: match (s.status, d.next_attempt_at_ms) {
            (Status::Pending, Some(at)) => rfc3339(at),
            _ => "—".to_owned(),
        },
        last_error: s.last_error.clone().unwrap_or_else(|| "—".to_owned()),
        verified,
        verify_detail,
        replayable: s.status != Status::Rejected,
        body_kind,
        body,
        attempts: d
            .attempts
            .iter()
            .map(|a| AttemptRow {
                n: a.n,
                at: rfc3339(a.at_ms),
                status_code: a.status_code.map_or_else(|| "—".to_owned(), |c| c.to_string()),
                duration_ms: a.duration_ms,
                error: a.error.clone().unwrap_or_default(),
                excerpt: a.response_excerpt.clone().unwrap_or_default(),
            })
            .collect(),
        notice: notice_text(&notice),
    };
    html(StatusCode::OK, &page)
}

pub async fn replay(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match replay::one(&state, &id).await {
        Ok(_) => Redirect::to(&format!("/admin/callbacks/{}?done=replayed", encode_path(&id))).into_response(),
        Err(e) => replay_error(&e),
    }
}

pub async fn replay_dead(State(state): State<AppState>, Path(tenant): Path<String>) -> Response {
    match replay::dead_of(&state, &tenant).await {
        Ok(n) => Redirect::to(&format!(
            "/admin?status=dead&{}&done=replayed-{n}",
            crate::form::encode([("tenant", tenant.as_str())])
        ))
        .into_response(),
        Err(e) => replay_error(&e),
    }
}

fn replay_error(e: &ReplayError) -> Response {
    let status = match e {
        ReplayError::NotFound => StatusCode::NOT_FOUND,
        ReplayError::Rejected | ReplayError::StillUnroutable(_) | ReplayError::Refused(_) => StatusCode::CONFLICT,
        ReplayError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, format!("{e}\n")).into_response()
}

pub(super) fn encode_path(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Field names whose values the console never shows whole.
fn masked(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "checkmacvalue" || n == "token" || ["hash", "secret", "password", "mac"].iter().any(|w| n.contains(w))
}

fn mask(value: &str) -> String {
    let head: String = value.chars().take(4).collect();
    if value.chars().count() > 4 { format!("{head}…(masked)") } else { "(masked)".to_owned() }
}

/// The body for reading: JSON pretty-printed, a form one field a line,
/// hash fields masked; anything else as text.
fn pretty_masked(d: &CallbackDetail) -> (&'static str, String) {
    if crate::providers::looks_like_json(&d.body)
        && let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&d.body)
    {
        mask_json(&mut v);
        return ("JSON", serde_json::to_string_pretty(&v).unwrap_or_default());
    }
    if let Ok(form) = FormFields::parse(&d.body)
        && !form.is_empty()
    {
        let lines: Vec<String> = form
            .iter()
            .map(|(k, v)| if masked(k) { format!("{k} = {}", mask(v)) } else { format!("{k} = {v}") })
            .collect();
        return ("Form fields, in the order received", lines.join("\n"));
    }
    ("Raw text", String::from_utf8_lossy(&d.body).into_owned())
}

fn mask_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if masked(k) && !val.is_object() && !val.is_array() {
                    let text = match &*val {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    *val = serde_json::Value::String(mask(&text));
                } else {
                    mask_json(val);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_json),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_fields_are_masked() {
        assert!(masked("CheckMacValue") && masked("HashKey") && masked("hash_iv") && masked("token"));
        assert!(!masked("PayToken") && !masked("MerchantTradeNo") && !masked("merchantId"));
        let mut v = serde_json::json!({"id": "x", "token": "tok_live_5d9f", "card": {"hashed": 1234567}});
        mask_json(&mut v);
        assert_eq!(v, serde_json::json!({"id": "x", "token": "tok_…(masked)", "card": {"hashed": "1234…(masked)"}}));
    }
}
