//! The order ledger in the console (SPEC §9): `GET /admin/orders` (search
//! by order number, filter by state and tenant) and `GET
//! /admin/orders/{tenant}/{merchant_trade_no}` (the order and its
//! timeline). Server-rendered from the same data as the admin API.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use super::orders::{OrdersQuery, with_timeline};
use crate::domain::time::{age, rfc3339};
use crate::http::{AppState, page};
use crate::store::now_ms;

const CSP: &str = "default-src 'none'; style-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
const STATES: [&str; 5] = ["checkout", "code_issued", "paid", "failed", "expired"];

struct OrderRow {
    tenant: String,
    merchant_trade_no: String,
    link: String,
    amount: String,
    payment_type: String,
    state: &'static str,
    /// "yes" when the reconciler made its payment's notification.
    reconciled: &'static str,
    age: String,
    created_at: String,
    last_query: String,
}

#[derive(Template)]
#[template(path = "admin/orders.html")]
struct OrdersPage {
    rows: Vec<OrderRow>,
    states: [&'static str; 5],
    state: String,
    tenant: String,
    q: String,
    error: Option<String>,
}

struct TimelineRow {
    at: String,
    kind: String,
    callback: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "admin/order.html")]
struct OrderPage {
    tenant: String,
    merchant_trade_no: String,
    state: String,
    amount: String,
    payment_type: String,
    created_at: String,
    reconciled: String,
    next_query: String,
    timeline: Vec<TimelineRow>,
}

pub async fn list(State(state): State<AppState>, Query(q): Query<OrdersQuery>) -> Response {
    let given = |v: &Option<String>| v.as_deref().unwrap_or_default().trim().to_owned();
    let mut page = OrdersPage {
        rows: Vec::new(),
        states: STATES,
        state: given(&q.state),
        tenant: given(&q.tenant),
        q: given(&q.q),
        error: None,
    };
    let filter = match q.filter() {
        Ok(f) => f,
        Err(e) => {
            page.error = Some(e);
            return page::render(StatusCode::BAD_REQUEST, &page, CSP);
        }
    };
    match state.store().orders(&filter).await {
        Ok(orders) => {
            let now = now_ms();
            page.rows = orders
                .into_iter()
                .map(|o| OrderRow {
                    link: format!(
                        "/admin/orders/{}/{}",
                        super::console::encode_path(&o.tenant),
                        super::console::encode_path(&o.merchant_trade_no)
                    ),
                    amount: o.amount.map_or_else(|| "—".to_owned(), |a| a.to_string()),
                    payment_type: o.payment_type.unwrap_or_default(),
                    state: o.state.as_str(),
                    reconciled: if o.reconciled_at_ms.is_some() { "yes" } else { "" },
                    age: age(now - o.created_at_ms),
                    created_at: rfc3339(o.created_at_ms),
                    last_query: o.last_query.unwrap_or_default(),
                    tenant: o.tenant,
                    merchant_trade_no: o.merchant_trade_no,
                })
                .collect();
            page::render(StatusCode::OK, &page, CSP)
        }
        Err(e) => {
            tracing::error!(error = %e, "admin: storage failed");
            page.error = Some("Storage does not answer.".to_owned());
            page::render(StatusCode::SERVICE_UNAVAILABLE, &page, CSP)
        }
    }
}

pub async fn detail(State(state): State<AppState>, Path((tenant, mtn)): Path<(String, String)>) -> Response {
    let v = match with_timeline(&state, &tenant, &mtn).await {
        Ok(Some(v)) => v,
        Ok(None) => return (StatusCode::NOT_FOUND, "no such order\n").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "admin: storage failed");
            return (StatusCode::SERVICE_UNAVAILABLE, "storage does not answer\n").into_response();
        }
    };
    let text = |k: &str| match &v[k] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "—".to_owned(),
        other => other.to_string(),
    };
    let timeline = v["timeline"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .map(|e| TimelineRow {
                    at: e["at"].as_str().unwrap_or_default().to_owned(),
                    kind: e["kind"].as_str().unwrap_or_default().to_owned(),
                    callback: e["callback"].as_str().unwrap_or_default().to_owned(),
                    detail: e["detail"].as_str().unwrap_or_default().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    let page = OrderPage {
        tenant: text("tenant"),
        merchant_trade_no: text("merchant_trade_no"),
        state: text("state"),
        amount: text("amount"),
        payment_type: text("payment_type"),
        created_at: text("created_at"),
        reconciled: text("reconciled_at"),
        next_query: text("next_query_at"),
        timeline,
    };
    page::render(StatusCode::OK, &page, CSP)
}
