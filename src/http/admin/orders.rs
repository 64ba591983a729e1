//! The order ledger in the admin API (SPEC §9): `GET /admin/api/orders`
//! (by tenant, state, order number) and `GET
//! /admin/api/orders/{tenant}/{merchant_trade_no}` with its timeline —
//! checkout, each callback, each delivery attempt, each query, in time
//! order: "did order X get paid, and did the shop get it?" in one request.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::domain::time::rfc3339;
use crate::http::AppState;
use crate::store::{CallbackId, Order, OrderFilter, OrderState};

const MAX_LIMIT: u32 = 500;

#[derive(Debug, Default, serde::Deserialize)]
pub struct OrdersQuery {
    pub tenant: Option<String>,
    pub state: Option<String>,
    pub q: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

impl OrdersQuery {
    pub fn filter(&self) -> Result<OrderFilter, String> {
        let given = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
        let state = match given(&self.state) {
            Some(s) => Some(OrderState::parse(&s).ok_or_else(|| format!("unknown state {s:?}"))?),
            None => None,
        };
        let limit = match given(&self.limit) {
            Some(l) => l.parse::<u32>().map_err(|_| "limit must be a number".to_owned())?.clamp(1, MAX_LIMIT),
            None => 50,
        };
        let before_ms = match given(&self.cursor) {
            Some(c) => Some(c.parse::<i64>().map_err(|_| "bad cursor".to_owned())?),
            None => None,
        };
        Ok(OrderFilter { tenant: given(&self.tenant), state, q: given(&self.q), limit, before_ms, due_at: None })
    }
}

pub fn order_json(o: &Order) -> Value {
    json!({
        "tenant": o.tenant,
        "merchant_trade_no": o.merchant_trade_no,
        "amount": o.amount,
        "payment_type": o.payment_type,
        "state": o.state.as_str(),
        "created_at": rfc3339(o.created_at_ms),
        "updated_at": rfc3339(o.updated_at_ms),
        "next_query_at": o.next_query_at_ms.map(rfc3339),
        "queries": o.query_tries,
        "last_query": o.last_query,
        "reconciled_at": o.reconciled_at_ms.map(rfc3339),
    })
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn unavailable(e: &crate::store::StoreError) -> Response {
    tracing::error!(error = %e, "admin: storage failed");
    error(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable")
}

pub async fn list(State(state): State<AppState>, Query(q): Query<OrdersQuery>) -> Response {
    let filter = match q.filter() {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    match state.store().orders(&filter).await {
        Ok(items) => {
            let next =
                (items.len() == filter.limit as usize).then(|| items.last().map(|o| o.created_at_ms.to_string()));
            Json(json!({ "items": items.iter().map(order_json).collect::<Vec<_>>(), "next": next.flatten() }))
                .into_response()
        }
        Err(e) => unavailable(&e),
    }
}

/// The order with its timeline; `None` when there is no such order.
pub async fn with_timeline(
    state: &AppState,
    tenant: &str,
    mtn: &str,
) -> Result<Option<Value>, crate::store::StoreError> {
    let Some((order, events)) = state.store().order(tenant, mtn).await? else { return Ok(None) };
    let mut timeline: Vec<(i64, Value)> = Vec::new();
    for e in &events {
        timeline.push((
            e.at_ms,
            json!({"at": rfc3339(e.at_ms), "kind": e.kind, "callback": e.callback_id, "detail": e.detail}),
        ));
        let Some(id) = e.callback_id.as_deref().and_then(CallbackId::parse) else { continue };
        if let Some(d) = state.store().get(&id).await? {
            for a in &d.attempts {
                let detail = match (a.status_code, &a.error) {
                    (_, Some(err)) => err.clone(),
                    (Some(code), None) => format!("HTTP {code}"),
                    (None, None) => String::new(),
                };
                let line = json!({"at": rfc3339(a.at_ms), "kind": "delivery", "callback": id, "attempt": a.n, "detail": detail});
                timeline.push((a.at_ms, line));
            }
        }
    }
    timeline.sort_by_key(|(at, _)| *at);
    let mut v = order_json(&order);
    v["timeline"] = Value::Array(timeline.into_iter().map(|(_, e)| e).collect());
    Ok(Some(v))
}

pub async fn detail(State(state): State<AppState>, Path((tenant, mtn)): Path<(String, String)>) -> Response {
    match with_timeline(&state, &tenant, &mtn).await {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such order"),
        Err(e) => unavailable(&e),
    }
}
