//! `GET /admin/api/callbacks`, `GET /admin/api/callbacks/{id}`,
//! `POST /admin/api/callbacks/{id}/replay`, and the bulk
//! `POST /admin/api/tenants/{tenant}/replay-dead`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::replay::{self, ReplayError};
use crate::domain::time::rfc3339;
use crate::http::AppState;
use crate::store::{AttemptRecord, CallbackDetail, CallbackId, CallbackSummary, ListFilter, Status};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    pub status: Option<String>,
    pub tenant: Option<String>,
    pub provider: Option<String>,
    /// An order number (or routing key, or callback id) to search for.
    pub q: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

impl ListQuery {
    /// The store's filter, or what is wrong with the query. Empty values
    /// mean "any" (what an HTML form sends for an unset filter).
    pub fn filter(&self) -> Result<ListFilter, String> {
        let given = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
        let status = match given(&self.status) {
            Some(s) => Some(Status::parse(&s).ok_or_else(|| format!("unknown status {s:?}"))?),
            None => None,
        };
        let limit = match given(&self.limit) {
            Some(l) => l.parse::<u32>().ok().filter(|&n| n >= 1).ok_or_else(|| format!("bad limit {l:?}"))?,
            None => DEFAULT_LIMIT,
        };
        let before_seq = match given(&self.cursor) {
            Some(c) => Some(c.parse::<i64>().map_err(|_| format!("bad cursor {c:?}"))?),
            None => None,
        };
        Ok(ListFilter {
            status,
            tenant: given(&self.tenant),
            provider: given(&self.provider),
            limit: limit.min(MAX_LIMIT),
            before_seq,
            q: given(&self.q),
        })
    }
}

/// The cursor of the page after `items`, if there may be one.
pub fn next_cursor(items: &[CallbackSummary], limit: u32) -> Option<String> {
    (items.len() == limit as usize).then(|| items.last().map(|i| i.seq.to_string())).flatten()
}

pub fn item(s: &CallbackSummary) -> Value {
    json!({
        "id": s.id,
        "provider": s.provider,
        "tenant": s.tenant,
        "status": s.status.as_str(),
        "attempts": s.attempts,
        "received_at": rfc3339(s.received_at_ms),
        "last_error": s.last_error,
    })
}

fn attempt(a: &AttemptRecord) -> Value {
    json!({
        "n": a.n,
        "at": rfc3339(a.at_ms),
        "status_code": a.status_code,
        "duration_ms": a.duration_ms,
        "error": a.error,
    })
}

fn detail_json(config: &crate::config::Config, d: &CallbackDetail) -> Value {
    let mut v = item(&d.summary);
    if let Value::Object(map) = &mut v {
        let (outcome, detail) = crate::verify::shown(config, d);
        map.insert("verification".into(), json!({ "outcome": outcome, "detail": detail }));
        map.insert("content_type".into(), json!(d.content_type));
        map.insert("body".into(), json!(String::from_utf8_lossy(&d.body)));
        map.insert("attempts".into(), Value::Array(d.attempts.iter().map(attempt).collect()));
    }
    v
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn store_error(e: &crate::store::StoreError) -> Response {
    tracing::error!(error = %e, "admin: storage failed");
    error(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable")
}

pub async fn list(State(state): State<AppState>, Query(q): Query<ListQuery>) -> Response {
    let filter = match q.filter() {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    match state.store().list(&filter).await {
        Ok(items) => Json(json!({
            "items": items.iter().map(item).collect::<Vec<_>>(),
            "next": next_cursor(&items, filter.limit),
        }))
        .into_response(),
        Err(e) => store_error(&e),
    }
}

pub async fn detail(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Some(id) = CallbackId::parse(&id) else { return error(StatusCode::NOT_FOUND, "no such callback") };
    match state.store().get(&id).await {
        Ok(Some(d)) => Json(detail_json(&state.config(), &d)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such callback"),
        Err(e) => store_error(&e),
    }
}

pub async fn replay(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match replay::one(&state, &id).await {
        Ok(d) => (StatusCode::ACCEPTED, Json(item(&d.summary))).into_response(),
        Err(e) => replay_error(&e),
    }
}

pub async fn replay_dead(State(state): State<AppState>, Path(tenant): Path<String>) -> Response {
    match replay::dead_of(&state, &tenant).await {
        Ok(n) => (StatusCode::ACCEPTED, Json(json!({ "tenant": tenant, "replayed": n }))).into_response(),
        Err(e) => replay_error(&e),
    }
}

fn replay_error(e: &ReplayError) -> Response {
    match e {
        ReplayError::NotFound => error(StatusCode::NOT_FOUND, "no such callback"),
        ReplayError::Rejected | ReplayError::StillUnroutable(_) | ReplayError::Refused(_) => {
            error(StatusCode::CONFLICT, &e.to_string())
        }
        ReplayError::Store(e) => store_error(e),
    }
}
