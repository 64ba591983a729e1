//! The sandbox Funpoint: `AioCheckOut/V5` takes the shop's signed form and
//! shows a payment page (pay by card, fail, lose the notification, get an
//! ATM account or a CVS code); each choice sends the notifications Funpoint
//! would send and bounces the browser as Funpoint does. From the sandbox's
//! own page the merchant side: an issued code paid later, the next period
//! of a recurring order, a resend, a forgery. QueryTradeInfo and
//! QueryCreditCardPeriodInfo answer from this ledger.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::Path;
use axum::response::{IntoResponse, Redirect, Response};
use http::StatusCode;
use serde_json::json;

use super::trades::{Code, CodeKind, Fields, Trade, TradeState, forged, signed};
use super::{Shared, State, pages, send};
use crate::domain::time::taipei;
use crate::domain::{CheckMac, HashAlgorithm};
use crate::form::FormFields;
use crate::store::now_ms;

/// What AioCheckOut/V5 requires (FP137 p.10).
const REQUIRED: [&str; 10] = [
    "MerchantID",
    "MerchantTradeNo",
    "MerchantTradeDate",
    "PaymentType",
    "TotalAmount",
    "TradeDesc",
    "ItemName",
    "ReturnURL",
    "ChoosePayment",
    "CheckMacValue",
];

/// The fields of a form the merchant's keys signed, or why not.
fn signed_form(shared: &Shared, body: &[u8]) -> Result<FormFields, String> {
    let form = FormFields::parse(body).map_err(|_| "the form is not UTF-8 form data".to_owned())?;
    let mac = form.get("CheckMacValue").unwrap_or_default();
    if form.get("MerchantID") != Some(shared.merchant_id.as_str()) {
        return Err(format!("MerchantID Error: this sandbox takes merchant {}", shared.merchant_id));
    }
    if !CheckMac::verify(form.unique(), &shared.keys, HashAlgorithm::Sha256, mac) {
        return Err("CheckMacValue Error".into());
    }
    Ok(form)
}

pub async fn checkout(axum::extract::State(shared): State, body: Bytes) -> Response {
    let form = match signed_form(&shared, &body) {
        Ok(f) => f,
        Err(e) => return pages::error(StatusCode::BAD_REQUEST, &e),
    };
    if let Some(missing) = REQUIRED.iter().find(|k| form.get(k).is_none_or(str::is_empty)) {
        return pages::error(StatusCode::BAD_REQUEST, &format!("{missing} is required"));
    }
    let fields: Fields =
        form.unique().into_iter().filter(|(k, _)| *k != "CheckMacValue").map(|(k, v)| (k.into(), v.into())).collect();
    let order = form.get("MerchantTradeNo").unwrap_or_default();
    let n = {
        let mut trades = shared.trades();
        if trades.iter().any(|t| t.order_no() == order) {
            drop(trades);
            return pages::error(StatusCode::BAD_REQUEST, "MerchantTradeNo has been used (訂單編號重複)");
        }
        if trades.len() >= super::MAX_TRADES {
            drop(trades);
            return pages::error(StatusCode::INSUFFICIENT_STORAGE, "the sandbox is full: restart it");
        }
        let n = trades.len();
        trades.push(Trade::new(n, fields, now_ms()));
        n
    };
    Redirect::to(&format!("/pay/{n}")).into_response()
}

fn trade(shared: &Shared, n: usize) -> Option<Trade> {
    shared.trades().get(n).cloned()
}

pub async fn pay_page(axum::extract::State(shared): State, Path(n): Path<usize>) -> Response {
    match trade(&shared, n) {
        Some(t) => pages::pay(&t),
        None => pages::error(StatusCode::NOT_FOUND, "no such trade"),
    }
}

/// The buyer's choice on the payment page.
pub async fn buyer_action(axum::extract::State(shared): State, Path((n, action)): Path<(usize, String)>) -> Response {
    let now = now_ms();
    let updated = {
        let mut trades = shared.trades();
        let Some(t) = trades.get_mut(n).filter(|t| t.state == TradeState::Unpaid) else {
            drop(trades);
            return pages::error(StatusCode::CONFLICT, "this trade is no longer waiting for the buyer");
        };
        let method = if matches!(action.as_str(), "atm" | "cvs") { action.to_uppercase() } else { "Credit".into() };
        if !t.offers(&method) || !matches!(action.as_str(), "card" | "lose" | "fail" | "atm" | "cvs") {
            drop(trades);
            return pages::error(StatusCode::BAD_REQUEST, "this order does not offer that payment method");
        }
        act(t, &action, now);
        t.clone()
    };
    let m = &shared.merchant_id;
    match updated.state {
        TradeState::CodeIssued => {
            notify(&shared, &updated, "PaymentInfoURL", "code issued", updated.payment_info(m));
            bounce(&updated, "ClientRedirectURL", signed(updated.payment_info(m), &shared.keys))
        }
        _ => {
            if !updated.lost {
                notify(&shared, &updated, "ReturnURL", updated.state.as_str(), updated.result(m, rtn_msg(&updated)));
            }
            bounce(&updated, "OrderResultURL", signed(updated.result(m, rtn_msg(&updated)), &shared.keys))
        }
    }
}

fn act(t: &mut Trade, action: &str, now: i64) {
    let expire_days = |d: i64| taipei(now + d * 86_400_000);
    match action {
        "atm" => {
            t.state = TradeState::CodeIssued;
            t.payment_type = "ATM_TAISHIN";
            let account = format!("9103{:012}", 522_000_000 + t.n);
            t.code = Some(Code {
                kind: CodeKind::Atm,
                bank: "812".into(),
                number: account,
                expire: expire_days(3)[..10].into(),
            });
        }
        "cvs" => {
            t.state = TradeState::CodeIssued;
            t.payment_type = "CVS_CVS";
            let number = format!("LLL{:011}", 22_000_000 + t.n);
            t.code = Some(Code { kind: CodeKind::Cvs, bank: String::new(), number, expire: expire_days(7) });
        }
        "fail" => {
            t.state = TradeState::Failed;
            t.payment_type = "Credit_CreditCard";
        }
        _ => {
            t.state = TradeState::Paid;
            t.payment_type = "Credit_CreditCard";
            t.payment_date = taipei(now);
            t.lost = action == "lose";
            t.periods = u32::from(t.is_recurring());
        }
    }
}

fn rtn_msg(t: &Trade) -> &'static str {
    if t.state == TradeState::Paid { "交易成功" } else { "付款失敗" }
}

/// Sends `fields`, signed, to the URL the shop put in the form's `url_field`.
fn notify(shared: &Arc<Shared>, t: &Trade, url_field: &str, what: &str, fields: Fields) {
    let url = t.field(url_field);
    if url.is_empty() {
        return;
    }
    let label = format!("Funpoint {url_field} · {what} · {}", t.order_no());
    send::funpoint(shared, label, url.to_owned(), signed(fields, &shared.keys), true);
}

/// Sends the browser on to the shop's `url_field` with `fields`, or shows
/// the outcome here when the shop gave no such URL.
fn bounce(t: &Trade, url_field: &str, fields: Fields) -> Response {
    let url = t.field(url_field);
    let origin = reqwest::Url::parse(url).ok().and_then(|u| crate::domain::Origin::of_url(&u));
    match origin {
        Some(origin) => {
            let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            crate::http::page::autosubmit(url, &[&origin], &pairs)
        }
        None => pages::pay(t),
    }
}

/// What the merchant side does from the sandbox page.
pub async fn merchant_action(
    axum::extract::State(shared): State,
    Path((n, action)): Path<(usize, String)>,
) -> Response {
    let now = now_ms();
    let t = {
        let mut trades = shared.trades();
        let Some(t) = trades.get_mut(n) else {
            drop(trades);
            return pages::error(StatusCode::NOT_FOUND, "no such trade");
        };
        match (action.as_str(), t.state) {
            ("pay", TradeState::CodeIssued) => {
                t.state = TradeState::Paid;
                t.payment_date = taipei(now);
            }
            ("period", TradeState::Paid) if t.is_recurring() && !t.lost => t.periods += 1,
            ("resend" | "forge", TradeState::Paid | TradeState::Failed | TradeState::CodeIssued) => {}
            _ => {
                drop(trades);
                return pages::error(StatusCode::CONFLICT, "not possible for this trade now");
            }
        }
        t.clone()
    };
    let m = &shared.merchant_id;
    match (action.as_str(), t.state) {
        ("period", _) => notify(&shared, &t, "PeriodReturnURL", "period paid", t.period(m, now)),
        ("forge", _) => {
            let url = t.field("ReturnURL").to_owned();
            let fields = forged(&signed(t.result(m, "交易成功"), &shared.keys));
            send::funpoint(&shared, format!("forged ReturnURL · {}", t.order_no()), url, fields, false);
        }
        (_, TradeState::CodeIssued) => notify(&shared, &t, "PaymentInfoURL", "code issued", t.payment_info(m)),
        _ => notify(&shared, &t, "ReturnURL", t.state.as_str(), t.result(m, rtn_msg(&t))),
    }
    Redirect::to(&format!("/#trade-{n}")).into_response()
}

/// The trade a signed query names, or the answer to give instead.
fn queried(shared: &Shared, body: &[u8]) -> Result<Option<Trade>, (StatusCode, String)> {
    if shared.outage() {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "sandbox outage".into()));
    }
    let form = signed_form(shared, body).map_err(|e| (StatusCode::OK, e))?;
    let order = form.get("MerchantTradeNo").unwrap_or_default();
    Ok(shared.trades().iter().find(|t| t.order_no() == order).cloned())
}

pub async fn query_trade_info(axum::extract::State(shared): State, body: Bytes) -> Response {
    let fields = match queried(&shared, &body) {
        Ok(Some(t)) => t.trade_info(&shared.merchant_id),
        Ok(None) => {
            let order = FormFields::parse(&body).ok().and_then(|f| f.get("MerchantTradeNo").map(str::to_owned));
            vec![
                ("MerchantID".into(), shared.merchant_id.clone()),
                ("MerchantTradeNo".into(), order.unwrap_or_default()),
                ("TradeStatus".into(), "10200047".into()),
                ("TradeAmt".into(), "0".into()),
            ]
        }
        Err(r) => return r.into_response(),
    };
    let text = crate::form::encode(signed(fields, &shared.keys).iter().map(|(k, v)| (k.as_str(), v.as_str())));
    (StatusCode::OK, [("content-type", "text/html; charset=utf-8")], text).into_response()
}

pub async fn query_period_info(axum::extract::State(shared): State, body: Bytes) -> Response {
    let t = match queried(&shared, &body) {
        Ok(Some(t)) if t.is_recurring() => t,
        Ok(_) => return axum::Json(json!({"RtnCode": 0, "ExecLog": []})).into_response(),
        Err(r) => return r.into_response(),
    };
    let amount: u64 = t.field("PeriodAmount").parse().unwrap_or(0);
    let times: u32 = t.field("ExecTimes").parse().unwrap_or(0);
    let log: Vec<_> = (1..=t.periods)
        .map(|k| {
            json!({"RtnCode": 1, "amount": amount, "gwsr": t.gwsr(k), "process_date": t.payment_date,
                "auth_code": format!("77{k:04}"), "TradeNo": format!("{}{k:02}", t.trade_no)})
        })
        .collect();
    axum::Json(json!({"RtnCode": 1, "PeriodType": t.field("PeriodType"), "Frequency": t.field("Frequency"),
        "ExecTimes": times, "PeriodAmount": amount, "TotalSuccessTimes": t.periods,
        "TotalSuccessAmount": amount * u64::from(t.periods), "ExecStatus": if t.periods < times { "1" } else { "2" },
        "ExecLog": log}))
    .into_response()
}
