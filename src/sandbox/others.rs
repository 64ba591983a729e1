//! The sandbox Oen Tech, TapPay and SinoPac: a button sends a webhook for a
//! new payment (genuine: the provider's ledger holds it paid; forged: the
//! ledger holds it failed, and the webhook claims success, as someone who
//! found the notify URL would), and their query APIs answer from the ledger
//! with the public test credentials below.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::Path;
use axum::response::{IntoResponse, Redirect, Response};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::{Shared, State, pages, send};
use crate::verify::sinopac_envelope as envelope;

/// The sandbox's own test credentials (not anybody's real ones).
pub const OEN_MERCHANT: &str = "sandbox-shop";
pub const OEN_TOKEN: &str = "sandbox-oen-token";
pub const TAPPAY_PARTNER_KEY: &str = "partner_sandbox_key";
pub const TAPPAY_MERCHANT: &str = "sandbox_TAISHIN";
pub const SINOPAC_SHOP: &str = "NA0249_001";
/// providers-query.md's HashID test vector, as A1, A2, B1, B2.
pub const SINOPAC_PARTS: [&str; 4] = ["4D9709D699CA40EE", "5A4FEF83140C4E9E", "BC74301945134CB4", "961F67F8FCA44AB9"];
const SINOPAC_HASH_ID: &str = "17D8E6558DC60E702A6B57E1B9B7060D";
/// Every sandbox payment of these three providers is of this amount.
const AMOUNT: u64 = 1200;
/// TapPay routes by order-number suffix: the demo shop's.
const TAPPAY_SUFFIX: &str = "01";

#[derive(Default)]
pub struct Ledger {
    n: u64,
    oen: HashMap<String, Value>,
    tappay: Vec<Value>,
    sinopac: HashMap<String, Value>,
}

/// `POST /send/{oen|tappay|sinopac}/{paid|forged}`.
pub async fn send(axum::extract::State(shared): State, Path((provider, kind)): Path<(String, String)>) -> Response {
    let Some(base) = shared.webhooks() else {
        return pages::error(StatusCode::CONFLICT, "webhooks are off: start the sandbox with --webhooks URL");
    };
    let genuine = match kind.as_str() {
        "paid" => true,
        "forged" => false,
        _ => return pages::error(StatusCode::NOT_FOUND, "paid or forged"),
    };
    let stamp: String =
        crate::domain::time::taipei(crate::store::now_ms()).chars().filter(char::is_ascii_digit).collect();
    let n = {
        let mut ledger = shared.others();
        if ledger.n >= super::MAX_TRADES as u64 {
            drop(ledger);
            return pages::error(StatusCode::INSUFFICIENT_STORAGE, "the sandbox is full: restart it");
        }
        ledger.n += 1;
        ledger.n
    };
    let what = if genuine { "webhook" } else { "forged webhook" };
    match provider.as_str() {
        "oen" => oen(&shared, &base, &stamp, n, genuine, what),
        "tappay" => tappay(&shared, &base, &stamp, n, genuine, what),
        "sinopac" => sinopac(&shared, &base, n, genuine, what),
        _ => return pages::error(StatusCode::NOT_FOUND, "oen, tappay or sinopac"),
    }
    Redirect::to("/#others").into_response()
}

fn oen(shared: &Arc<Shared>, base: &str, stamp: &str, n: u64, genuine: bool, what: &str) {
    let id = format!("SBX{stamp}{n:010}");
    let order = format!("OEN{stamp}{n:03}");
    let status = if genuine { "charged" } else { "failed" };
    let data = json!({"id": format!("P{stamp}{n:04}"), "transactionId": id, "orderId": order, "amount": AMOUNT,
        "currency": "TWD", "status": status});
    shared.others().oen.insert(id.clone(), data);
    let body = json!({"purpose": "charge", "id": id, "status": "charged", "success": true, "merchantId": OEN_MERCHANT,
        "orderId": order, "amount": AMOUNT, "currency": "TWD"});
    send::webhook(shared, format!("Oen {what} · {order}"), format!("{base}/oen/notify"), body, true);
}

fn tappay(shared: &Arc<Shared>, base: &str, stamp: &str, n: u64, genuine: bool, what: &str) {
    let rec = format!("D{stamp}{n:04}");
    let order = format!("TP{}{n:04}{TAPPAY_SUFFIX}", &stamp[2..8]);
    let record = json!({"rec_trade_id": rec, "order_number": order, "amount": AMOUNT, "merchant_id": TAPPAY_MERCHANT,
        "record_status": if genuine { 0 } else { -1 }, "auth_code": "123456", "currency": "TWD"});
    shared.others().tappay.push(record);
    let body = json!({"rec_trade_id": rec, "auth_code": "123456", "bank_transaction_id": format!("TP{stamp}{n}"),
        "order_number": order, "amount": AMOUNT, "status": 0, "msg": "Success"});
    send::webhook(shared, format!("TapPay {what} · {order}"), format!("{base}/tappay/notify"), body, false);
}

fn sinopac(shared: &Arc<Shared>, base: &str, n: u64, genuine: bool, what: &str) {
    let token = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(format!("sandbox-{n}-{}", nonce()).as_bytes()));
    let order = format!("SP{n:06}");
    let ts = json!({"APType": "PayOut", "TSNo": format!("NA0249{n:08}"), "OrderNo": order, "ShopNo": SINOPAC_SHOP,
        "PayType": "C", "Amount": (AMOUNT * 100).to_string(), "Status": if genuine { "S" } else { "F" },
        "Description": if genuine { "" } else { "授權失敗 declined" }});
    shared.others().sinopac.insert(token.clone(), ts);
    let body = json!({"ShopNo": SINOPAC_SHOP, "PayToken": token});
    send::webhook(shared, format!("SinoPac {what} · {order}"), format!("{base}/sinopac/notify"), body, false);
}

fn outage(shared: &Shared) -> Option<Response> {
    shared.outage().then(|| (StatusCode::SERVICE_UNAVAILABLE, "sandbox outage").into_response())
}

/// Oen's `GET /transactions/{id}` (bearer token).
pub async fn oen_transaction(
    axum::extract::State(shared): State,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = outage(&shared) {
        return r;
    }
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok());
    if bearer != Some(&format!("Bearer {OEN_TOKEN}")) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"code": "A0001", "message": "Unauthorized"})))
            .into_response();
    }
    match shared.others().oen.get(&id) {
        Some(data) => axum::Json(json!({"code": "S0000", "data": data, "message": ""})).into_response(),
        None => (StatusCode::BAD_REQUEST, axum::Json(json!({"code": "V0001", "message": "not found"}))).into_response(),
    }
}

/// TapPay's Record API, filtered by `rec_trade_id`.
pub async fn tappay_query(axum::extract::State(shared): State, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = outage(&shared) {
        return r;
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    if key != Some(TAPPAY_PARTNER_KEY) || req["partner_key"] != TAPPAY_PARTNER_KEY {
        return axum::Json(json!({"status": 2, "msg": "Invalid partner_key"})).into_response();
    }
    let rec = req["filters"]["rec_trade_id"].as_str().unwrap_or_default();
    let records: Vec<Value> = shared.others().tappay.iter().filter(|r| r["rec_trade_id"] == rec).cloned().collect();
    axum::Json(json!({"status": 0, "msg": "Success", "records_per_page": 10, "page": 0, "total_page_count": 1,
        "number_of_transactions": records.len(), "trade_records": records}))
    .into_response()
}

pub async fn sinopac_nonce(axum::extract::State(shared): State) -> Response {
    if let Some(r) = outage(&shared) {
        return r;
    }
    axum::Json(json!({"Nonce": nonce()})).into_response()
}

fn nonce() -> String {
    format!("{:016X}{:016X}", fastrand::u64(..), fastrand::u64(..))
}

/// SinoPac's `Order` endpoint, `APIService: OrderPayQuery` only: the
/// envelope opened and its Sign checked, the answer sealed the same way.
pub async fn sinopac_order(axum::extract::State(shared): State, body: Bytes) -> Response {
    if let Some(r) = outage(&shared) {
        return r;
    }
    let refuse = |why: &str| (StatusCode::BAD_REQUEST, axum::Json(json!({"Status": "F", "Description": why})));
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let nonce_in = req["Nonce"].as_str().unwrap_or_default();
    let Some(plain) = envelope::decrypt(SINOPAC_HASH_ID, nonce_in, req["Message"].as_str().unwrap_or_default()) else {
        return refuse("E0002 the Message does not decrypt").into_response();
    };
    let message: Value = serde_json::from_slice(&plain).unwrap_or(Value::Null);
    let sign = envelope::sign(&message, nonce_in, SINOPAC_HASH_ID);
    if !sign.eq_ignore_ascii_case(req["Sign"].as_str().unwrap_or_default()) || req["APIService"] != "OrderPayQuery" {
        return refuse("E0003 Sign or APIService").into_response();
    }
    let token = message["PayToken"].as_str().unwrap_or_default();
    let result = match shared.others().sinopac.get(token) {
        Some(ts) => json!({"ShopNo": message["ShopNo"], "PayToken": token, "Date": "202612021735", "Status": "S",
            "Description": "S0000 – 處理成功", "TSResultContent": ts}),
        None => json!({"ShopNo": message["ShopNo"], "PayToken": token, "Status": "F", "Description": "E0999 查無資料"}),
    };
    let answer_nonce = nonce();
    let Some(sealed) = envelope::encrypt(SINOPAC_HASH_ID, &answer_nonce, result.to_string().as_bytes()) else {
        return refuse("E0001").into_response();
    };
    axum::Json(json!({"Version": "1.0.0", "ShopNo": message["ShopNo"], "APIService": "OrderPayQuery",
        "Sign": envelope::sign(&result, &answer_nonce, SINOPAC_HASH_ID), "Nonce": answer_nonce, "Message": sealed}))
    .into_response()
}
