//! Mock provider query APIs (SPEC §8): one real HTTP server on loopback
//! answering Funpoint's QueryTradeInfo (form, MAC-signed), Oen's
//! transactions, TapPay's Record API and SinoPac's Nonce + Order (AES-CBC
//! envelope, written here from the published description, not with the
//! gateway's code), from a ledger each test fills. A test can also make it
//! fail (status, `Retry-After`) or hang.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut as _, BlockEncryptMut as _, KeyIvInit as _};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::helpers::{STAGE_IV, STAGE_KEY, STAGE_MERCHANT};

pub const OEN_TOKEN: &str = "oen-test-token";
pub const TAPPAY_KEY: &str = "partner_test_key";
pub const TAPPAY_MERCHANT: &str = "shop_TAISHIN";
/// The HashID of providers-query.md's test vector, and its four parts.
pub const SINOPAC_HASH_ID: &str = "17D8E6558DC60E702A6B57E1B9B7060D";
pub const SINOPAC_PARTS: [&str; 4] = ["4D9709D699CA40EE", "5A4FEF83140C4E9E", "BC74301945134CB4", "961F67F8FCA44AB9"];

/// A failure the API answers every request with, until cleared.
#[derive(Clone, Debug)]
pub struct Outage {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub hang: Option<Duration>,
}

#[derive(Default)]
struct Ledger {
    /// MerchantTradeNo → (TradeStatus, TradeAmt, TradeNo).
    funpoint: HashMap<String, (String, String, String)>,
    /// MerchantTradeNo → QueryCreditCardPeriodInfo's JSON answer.
    funpoint_periods: HashMap<String, Value>,
    /// Funpoint answers with a MAC made with the wrong key.
    funpoint_bad_mac: bool,
    oen: HashMap<String, Value>,
    tappay: Vec<Value>,
    /// PayToken → TSResultContent.
    sinopac: HashMap<String, Value>,
    outage: Option<Outage>,
    /// Every query: (path, body).
    queries: Vec<(String, String)>,
}

#[derive(Clone)]
pub struct ProviderApi {
    pub addr: SocketAddr,
    ledger: Arc<Mutex<Ledger>>,
}

type Shared = State<Arc<Mutex<Ledger>>>;

impl ProviderApi {
    pub async fn start() -> Self {
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let app = Router::new()
            .route("/Cashier/QueryTradeInfo/V5", post(funpoint))
            .route("/Cashier/QueryCreditCardPeriodInfo", post(funpoint_periods))
            .route("/transactions/{id}", get(oen))
            .route("/tpc/transaction/query", post(tappay))
            .route("/sinopac/Nonce", post(sinopac_nonce))
            .route("/sinopac/Order", post(sinopac_order))
            .with_state(ledger.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, ledger }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `[providers.*] api_base` lines pointing every provider here.
    pub fn providers_toml(&self) -> String {
        let u = self.url();
        format!(
            "[providers.funpoint]\napi_base = \"{u}\"\nqueries_per_second = 50\nquery_timeout = \"1s\"\n\
             [providers.oen]\napi_base = \"{u}\"\nqueries_per_second = 50\nquery_timeout = \"1s\"\n\
             [providers.tappay]\napi_base = \"{u}\"\nqueries_per_second = 50\nquery_timeout = \"1s\"\n\
             [providers.sinopac]\napi_base = \"{u}/sinopac/\"\nqueries_per_second = 50\nquery_timeout = \"1s\"\n"
        )
    }

    fn with<T>(&self, f: impl FnOnce(&mut Ledger) -> T) -> T {
        f(&mut self.ledger.lock().unwrap())
    }

    pub fn funpoint_trade(&self, order: &str, status: &str, amount: &str, trade_no: &str) {
        self.with(|l| l.funpoint.insert(order.into(), (status.into(), amount.into(), trade_no.into())));
    }

    /// A recurring order of `times` periods, of which `paid` have been charged.
    pub fn funpoint_periods(&self, order: &str, times: u32, paid: u32) {
        let log: Vec<Value> = (1..=paid)
            .map(|k| json!({"RtnCode": 1, "amount": 300, "gwsr": 11_000 + k, "process_date": format!("2026/12/0{k} 10:00:00"),
                "auth_code": format!("77{k:04}"), "TradeNo": format!("PT{k}")}))
            .collect();
        let info = json!({"RtnCode": 1, "PeriodType": "D", "Frequency": 1, "ExecTimes": times, "PeriodAmount": 300,
            "TotalSuccessTimes": paid, "TotalSuccessAmount": 300 * paid, "ExecStatus": if paid < times { "1" } else { "2" },
            "ExecLog": log});
        self.with(|l| l.funpoint_periods.insert(order.into(), info));
    }

    pub fn funpoint_bad_mac(&self) {
        self.with(|l| l.funpoint_bad_mac = true);
    }

    pub fn oen_transaction(&self, id: &str, order: &str, amount: u64, status: &str) {
        let data = json!({"id": "P20261202AB12CD34", "transactionId": id, "orderId": order, "amount": amount, "status": status});
        self.with(|l| l.oen.insert(id.into(), data));
    }

    pub fn tappay_record(&self, rec: &str, order: &str, amount: u64, record_status: i64) {
        let record = json!({"rec_trade_id": rec, "order_number": order, "amount": amount,
            "merchant_id": TAPPAY_MERCHANT, "record_status": record_status, "auth_code": "123456"});
        self.with(|l| l.tappay.push(record));
    }

    pub fn sinopac_payment(&self, token: &str, shop: &str, status: &str) {
        let ts = json!({"APType": "PayOut", "TSNo": "NA024900000123", "OrderNo": "C2026120200001", "ShopNo": shop,
            "PayType": "C", "Amount": "50000", "Status": status, "Description": ""});
        self.with(|l| l.sinopac.insert(token.into(), ts));
    }

    pub fn outage(&self, outage: Option<Outage>) {
        self.with(|l| l.outage = outage);
    }

    /// The queries received so far: (path, body).
    pub fn queries(&self) -> Vec<(String, String)> {
        self.with(|l| l.queries.clone())
    }
}

/// Notes the query and answers the outage, if one is set.
async fn intake(ledger: &Arc<Mutex<Ledger>>, path: &str, body: &[u8]) -> Option<Response> {
    let outage = {
        let mut l = ledger.lock().unwrap();
        l.queries.push((path.to_owned(), String::from_utf8_lossy(body).into_owned()));
        l.outage.clone()
    }?;
    if let Some(hang) = outage.hang {
        tokio::time::sleep(hang).await;
    }
    let mut r = (StatusCode::from_u16(outage.status).unwrap(), "unavailable").into_response();
    if let Some(secs) = outage.retry_after {
        r.headers_mut().insert("retry-after", secs.to_string().parse().unwrap());
    }
    Some(r)
}

fn stage_keys() -> payrelay::domain::HashKeys {
    use payrelay::domain::Secret;
    payrelay::domain::HashKeys { key: Secret::new(STAGE_KEY), iv: Secret::new(STAGE_IV) }
}

async fn funpoint(State(ledger): Shared, body: Bytes) -> Response {
    if let Some(r) = intake(&ledger, "/Cashier/QueryTradeInfo/V5", &body).await {
        return r;
    }
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let alg = payrelay::domain::HashAlgorithm::Sha256;
    let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mac = form.get("CheckMacValue").map(String::as_str).unwrap_or_default();
    if form.get("MerchantID").map(String::as_str) != Some(STAGE_MERCHANT)
        || !payrelay::domain::CheckMac::verify(fields, &stage_keys(), alg, mac)
    {
        return (StatusCode::OK, "CheckMacValue Error").into_response();
    }
    let order = form.get("MerchantTradeNo").cloned().unwrap_or_default();
    let (trade, bad_mac) = {
        let l = ledger.lock().unwrap();
        (l.funpoint.get(&order).cloned(), l.funpoint_bad_mac)
    };
    let (status, amount, trade_no) = trade.unwrap_or_else(|| ("10200047".into(), "0".into(), String::new()));
    let mut answer = vec![
        ("MerchantID", STAGE_MERCHANT.to_owned()),
        ("MerchantTradeNo", order),
        ("StoreID", String::new()),
        ("TradeNo", trade_no),
        ("TradeAmt", amount),
        ("PaymentDate", "2026/12/02 10:00:00".to_owned()),
        ("PaymentType", "Credit_CreditCard".to_owned()),
        ("TradeStatus", status),
        ("ItemName", "咖啡豆 x 1".to_owned()),
    ];
    let mut keys = stage_keys();
    if bad_mac {
        keys.key = payrelay::domain::Secret::new("WrongKeyWrongKey");
    }
    let mac = payrelay::domain::CheckMac::compute(answer.iter().map(|(k, v)| (*k, v.as_str())), &keys, alg);
    answer.push(("CheckMacValue", mac.as_str().to_owned()));
    let text = form_urlencoded::Serializer::new(String::new()).extend_pairs(answer).finish();
    (StatusCode::OK, [("content-type", "text/html")], text).into_response()
}

async fn funpoint_periods(State(ledger): Shared, body: Bytes) -> Response {
    if let Some(r) = intake(&ledger, "/Cashier/QueryCreditCardPeriodInfo", &body).await {
        return r;
    }
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mac = form.get("CheckMacValue").map(String::as_str).unwrap_or_default();
    let alg = payrelay::domain::HashAlgorithm::Sha256;
    if !payrelay::domain::CheckMac::verify(fields, &stage_keys(), alg, mac) {
        return (StatusCode::OK, "CheckMacValue Error").into_response();
    }
    let order = form.get("MerchantTradeNo").cloned().unwrap_or_default();
    match ledger.lock().unwrap().funpoint_periods.get(&order) {
        Some(info) => axum::Json(info.clone()).into_response(),
        None => axum::Json(json!({"RtnCode": 0, "ExecLog": []})).into_response(),
    }
}

async fn oen(State(ledger): Shared, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Some(r) = intake(&ledger, &format!("/transactions/{id}"), b"").await {
        return r;
    }
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {OEN_TOKEN}")) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"code": "A0001", "message": "token"}))).into_response();
    }
    match ledger.lock().unwrap().oen.get(&id) {
        Some(data) => axum::Json(json!({"code": "S0000", "data": data, "message": ""})).into_response(),
        None => (StatusCode::BAD_REQUEST, axum::Json(json!({"code": "V0001", "message": "not found"}))).into_response(),
    }
}

async fn tappay(State(ledger): Shared, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = intake(&ledger, "/tpc/transaction/query", &body).await {
        return r;
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let key_ok =
        headers.get("x-api-key").and_then(|v| v.to_str().ok()) == Some(TAPPAY_KEY) && req["partner_key"] == TAPPAY_KEY;
    if !key_ok {
        return axum::Json(json!({"status": 2, "msg": "Invalid partner_key"})).into_response();
    }
    let rec = req["filters"]["rec_trade_id"].as_str().unwrap_or_default().to_owned();
    let records: Vec<Value> =
        ledger.lock().unwrap().tappay.iter().filter(|r| r["rec_trade_id"] == rec.as_str()).cloned().collect();
    axum::Json(json!({"status": 0, "msg": "Success", "records_per_page": 10, "page": 0, "total_page_count": 1,
        "number_of_transactions": records.len(), "trade_records": records}))
    .into_response()
}

// SinoPac's envelope, from providers-query.md's appendix.

fn iv(nonce: &str) -> Vec<u8> {
    let hex = hex::encode_upper(Sha256::digest(nonce.as_bytes()));
    hex.as_bytes()[hex.len() - 16..].to_vec()
}

fn sign(message: &Value, nonce: &str) -> String {
    let mut pairs: Vec<String> = message
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v.is_string() && v.as_str() != Some("") || v.is_number())
        .map(|(k, v)| format!("{k}={}", v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
        .collect();
    pairs.sort();
    hex::encode_upper(Sha256::digest(format!("{}{nonce}{SINOPAC_HASH_ID}", pairs.join("&")).as_bytes()))
}

async fn sinopac_nonce(State(ledger): Shared, body: Bytes) -> Response {
    if let Some(r) = intake(&ledger, "/sinopac/Nonce", &body).await {
        return r;
    }
    axum::Json(json!({"Nonce": format!("NONCE{}", fastrand::u64(..))})).into_response()
}

async fn sinopac_order(State(ledger): Shared, body: Bytes) -> Response {
    if let Some(r) = intake(&ledger, "/sinopac/Order", &body).await {
        return r;
    }
    let req: Value = serde_json::from_slice(&body).unwrap();
    let nonce = req["Nonce"].as_str().unwrap();
    let sealed = hex::decode(req["Message"].as_str().unwrap()).unwrap();
    let plain = cbc::Decryptor::<aes::Aes256>::new_from_slices(SINOPAC_HASH_ID.as_bytes(), &iv(nonce))
        .unwrap()
        .decrypt_padded_vec_mut::<Pkcs7>(&sealed)
        .unwrap();
    let message: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(req["Sign"].as_str().unwrap(), sign(&message, nonce), "the gateway's Sign");
    assert_eq!(req["APIService"], "OrderPayQuery");
    let token = message["PayToken"].as_str().unwrap_or_default();
    let result = match ledger.lock().unwrap().sinopac.get(token) {
        Some(ts) => json!({"ShopNo": message["ShopNo"], "PayToken": token, "Date": "202612021735", "Status": "S",
            "Description": "S0000 – 處理成功", "TSResultContent": ts}),
        None => json!({"ShopNo": message["ShopNo"], "PayToken": token, "Status": "F", "Description": "E0999 查無資料"}),
    };
    let answer_nonce = format!("ANSWER{}", fastrand::u64(..));
    let sealed = cbc::Encryptor::<aes::Aes256>::new_from_slices(SINOPAC_HASH_ID.as_bytes(), &iv(&answer_nonce))
        .unwrap()
        .encrypt_padded_vec_mut::<Pkcs7>(result.to_string().as_bytes());
    axum::Json(json!({"Version": "1.0.0", "ShopNo": message["ShopNo"], "APIService": "OrderPayQuery",
        "Sign": sign(&result, &answer_nonce), "Nonce": answer_nonce, "Message": hex::encode_upper(sealed)}))
    .into_response()
}
