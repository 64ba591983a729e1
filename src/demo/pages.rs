//! The demo shop's pages: products (each a checkout form posting the five
//! fields to the gateway), the result page the gateway relays the browser
//! to, and the orders page, refreshed every two seconds without a script.

use askama::Template;
use axum::body::Bytes;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};

use super::shop::{DOMAIN, Order, PRODUCTS, State, issue_token, lock};
use crate::form::FormFields;
use crate::http::page::render;

fn csp(gateway: &str) -> String {
    format!(
        "default-src 'none'; style-src 'self'; form-action 'self' {gateway}; base-uri 'none'; frame-ancestors 'none'"
    )
}

struct ProductCard {
    id: &'static str,
    name: &'static str,
    name_en: &'static str,
    price: u32,
    recurring: bool,
    token: String,
}

#[derive(Template)]
#[template(path = "demo/products.html")]
struct ProductsPage {
    products: Vec<ProductCard>,
    checkout: String,
    domain: &'static str,
}

pub async fn products(axum::extract::State(shared): State) -> Response {
    let gateway = lock(&shared.gateway).clone();
    let products = PRODUCTS
        .iter()
        .map(|p| ProductCard {
            id: p.id,
            name: p.name,
            name_en: p.name_en,
            price: p.price,
            recurring: p.recurring,
            token: issue_token(&shared),
        })
        .collect();
    let page = ProductsPage { products, checkout: format!("{gateway}/funpoint/checkout"), domain: DOMAIN };
    let mut response = render(StatusCode::OK, &page, &csp(&gateway));
    // The gateway checks the checkout's `Origin` (SPEC §3.1 step 4); under
    // `no-referrer` a browser sends `Origin: null` instead of the shop's.
    response.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("strict-origin-when-cross-origin"));
    response
}

#[derive(Template)]
#[template(path = "demo/result.html")]
struct ResultPage {
    order_no: String,
    amount: String,
    says: String,
    code: Option<String>,
    state: &'static str,
}

/// The result path: the browser's word, beside the order's state.
pub async fn result(axum::extract::State(shared): State, body: Bytes) -> Response {
    let form = FormFields::parse(&body).unwrap_or_default();
    let get = |k: &str| form.get(k).unwrap_or_default().to_owned();
    let says = match get("RtnCode").as_str() {
        "1" => "付款成功 paid".to_owned(),
        "2" => "已取得 ATM 帳號 ATM account issued".to_owned(),
        "10100073" => "已取得超商代碼 CVS code issued".to_owned(),
        other => format!("付款未完成 not paid ({other} {})", get("RtnMsg")),
    };
    let code = match (get("vAccount"), get("PaymentNo")) {
        (acc, _) if !acc.is_empty() => {
            Some(format!("銀行 bank {} · 帳號 account {acc} · 期限 until {}", get("BankCode"), get("ExpireDate")))
        }
        (_, no) if !no.is_empty() => Some(format!("超商代碼 CVS code {no} · 期限 until {}", get("ExpireDate"))),
        _ => None,
    };
    let order_no = get("MerchantTradeNo");
    let state = lock(&shared.orders).iter().find(|o| o.no == order_no).map_or("unknown", |o| o.state);
    let page = ResultPage { order_no, amount: get("TradeAmt"), says, code, state };
    let gateway = lock(&shared.gateway).clone();
    render(StatusCode::OK, &page, &csp(&gateway))
}

struct OrderRow {
    no: String,
    at: String,
    item: &'static str,
    amount: u32,
    method: String,
    state: &'static str,
    code: Option<String>,
    periods: u32,
    notes: Vec<String>,
}

impl OrderRow {
    fn of(o: &Order) -> Self {
        Self {
            no: o.no.clone(),
            at: o.at.clone(),
            item: o.product.name,
            amount: o.product.price,
            method: o.method.clone(),
            state: o.state,
            code: o.code.clone(),
            periods: o.periods,
            notes: o.notes.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "demo/orders.html")]
struct OrdersPage {
    orders: Vec<OrderRow>,
    others: Vec<String>,
}

pub async fn orders(axum::extract::State(shared): State) -> Response {
    let orders = lock(&shared.orders).iter().rev().map(OrderRow::of).collect();
    let others = lock(&shared.others).clone();
    let gateway = lock(&shared.gateway).clone();
    render(StatusCode::OK, &OrdersPage { orders, others }, &csp(&gateway))
}
