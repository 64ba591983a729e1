//! The sandbox's pages (askama, escaped, a strict CSP, no script): its home
//! page with every trade and what was sent, and Funpoint's payment page.

use askama::Template;
use axum::response::{IntoResponse, Redirect, Response};
use http::{StatusCode, header};

use super::trades::{CodeKind, Trade, TradeState};
use super::{Sent, State};
use crate::http::page::render;

const CSP: &str = "default-src 'none'; style-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
pub const STYLE: &str = include_str!("../../templates/demo/style.css");

pub async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

#[derive(Template)]
#[template(path = "sandbox/error.html")]
struct ErrorPage<'a> {
    message: &'a str,
}

pub fn error(status: StatusCode, message: &str) -> Response {
    render(status, &ErrorPage { message }, CSP)
}

#[derive(Template)]
#[template(path = "sandbox/pay.html")]
struct PayPage<'a> {
    n: usize,
    merchant: &'a str,
    order_no: &'a str,
    item: &'a str,
    amount: &'a str,
    period: Option<String>,
    state: &'static str,
    code: Option<String>,
    waiting: bool,
    card: bool,
    atm: bool,
    cvs: bool,
    back: Option<&'a str>,
}

pub fn pay(t: &Trade) -> Response {
    let back = Some(t.field("ClientBackURL")).filter(|u| u.starts_with("http://") || u.starts_with("https://"));
    let page = PayPage {
        n: t.n,
        merchant: t.field("MerchantID"),
        order_no: t.order_no(),
        item: t.field("ItemName"),
        amount: t.field("TotalAmount"),
        period: period(t),
        state: t.state.as_str(),
        code: code(t),
        waiting: t.state == TradeState::Unpaid,
        card: t.offers("Credit"),
        atm: t.offers("ATM"),
        cvs: t.offers("CVS"),
        back,
    };
    render(StatusCode::OK, &page, CSP)
}

fn period(t: &Trade) -> Option<String> {
    t.is_recurring().then(|| {
        format!(
            "NT$ {} × {} ({}{}) · {}/{}",
            t.field("PeriodAmount"),
            t.field("ExecTimes"),
            t.field("Frequency"),
            t.field("PeriodType"),
            t.periods,
            t.field("ExecTimes")
        )
    })
}

fn code(t: &Trade) -> Option<String> {
    t.code.as_ref().map(|c| match c.kind {
        CodeKind::Atm => format!("ATM 銀行 bank {} 帳號 account {} · 期限 until {}", c.bank, c.number, c.expire),
        CodeKind::Cvs => format!("超商代碼 CVS code {} · 期限 until {}", c.number, c.expire),
    })
}

struct TradeRow {
    n: usize,
    order_no: String,
    item: String,
    amount: String,
    method: String,
    state: &'static str,
    code: Option<String>,
    periods: Option<String>,
    lost: bool,
    waiting: bool,
    can_pay: bool,
    can_period: bool,
    can_resend: bool,
}

impl TradeRow {
    fn of(t: &Trade) -> Self {
        let exec: u32 = t.field("ExecTimes").parse().unwrap_or(0);
        Self {
            n: t.n,
            order_no: t.order_no().into(),
            item: t.field("ItemName").into(),
            amount: t.field("TotalAmount").into(),
            method: if t.payment_type.is_empty() { t.field("ChoosePayment").into() } else { t.payment_type.into() },
            state: t.state.as_str(),
            code: code(t),
            periods: t.is_recurring().then(|| format!("期數 periods {}/{}", t.periods, exec)),
            lost: t.lost,
            waiting: t.state == TradeState::Unpaid,
            can_pay: t.state == TradeState::CodeIssued,
            can_period: t.state == TradeState::Paid && t.is_recurring() && !t.lost && t.periods < exec,
            can_resend: t.state != TradeState::Unpaid,
        }
    }
}

#[derive(Template)]
#[template(path = "sandbox/index.html")]
struct IndexPage {
    merchant: String,
    outage: bool,
    trades: Vec<TradeRow>,
    checkout_url: String,
    webhooks: bool,
    providers: [(&'static str, &'static str); 3],
    sent: Vec<Sent>,
}

pub async fn index(axum::extract::State(shared): State, headers: http::HeaderMap) -> Response {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    let trades = shared.trades().iter().rev().map(TradeRow::of).collect();
    let page = IndexPage {
        merchant: shared.merchant_id.clone(),
        outage: shared.outage(),
        trades,
        checkout_url: format!("http://{host}/Cashier/AioCheckOut/V5"),
        webhooks: shared.webhooks().is_some(),
        providers: [("oen", "Oen Tech"), ("tappay", "TapPay"), ("sinopac", "永豐 SinoPac")],
        sent: super::lock(&shared.log).iter().cloned().collect(),
    };
    render(StatusCode::OK, &page, CSP)
}

pub async fn toggle_outage(axum::extract::State(shared): State) -> Response {
    shared.outage.fetch_xor(true, std::sync::atomic::Ordering::Relaxed);
    Redirect::to("/").into_response()
}
