//! The demo shop, a tenant as a real shop would be one: its product page
//! posts the five checkout fields to the gateway; its payment API (what the
//! gateway calls) checks the one-time token and signs a Funpoint form; its
//! notify paths check what the gateway delivers and move the order; its
//! result page shows what the browser brought back, and its orders page
//! what the server notifications said.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::pages;
use crate::domain::time::taipei;
use crate::domain::{CheckMac, HashAlgorithm, HashKeys};
use crate::form::FormFields;
use crate::store::now_ms;

pub struct Product {
    pub id: &'static str,
    pub name: &'static str,
    pub name_en: &'static str,
    pub price: u32,
    pub recurring: bool,
}

pub const PRODUCTS: [Product; 3] = [
    Product {
        id: "beans", name: "阿里山咖啡豆 250g", name_en: "Alishan coffee beans", price: 480, recurring: false
    },
    Product { id: "drip", name: "濾掛咖啡 10 入", name_en: "Drip bags ×10", price: 250, recurring: false },
    Product { id: "monthly", name: "每月咖啡豆訂閱", name_en: "Monthly beans", price: 300, recurring: true },
];

/// The demo shop's paths, as the demo's routes table names them.
pub const API_PATH: &str = "/api/payment";
pub const NOTIFY_PATH: &str = "/notify/funpoint";
pub const RESULT_PATH: &str = "/result";
/// The order suffix and checkout domain code of the demo tenant.
pub const SUFFIX: &str = "01";
pub const DOMAIN: &str = "demo";

pub struct Order {
    pub no: String,
    pub at: String,
    pub product: &'static Product,
    pub method: String,
    pub state: &'static str,
    pub code: Option<String>,
    pub periods: u32,
    pub notes: Vec<String>,
}

pub(super) struct Shared {
    pub merchant_id: String,
    pub keys: HashKeys,
    /// Where payment forms post (the sandbox's AioCheckOut).
    pub payment_url: String,
    pub gateway: Mutex<String>,
    pub tokens: Mutex<HashSet<String>>,
    pub orders: Mutex<Vec<Order>>,
    pub others: Mutex<Vec<String>>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(super) type State = axum::extract::State<Arc<Shared>>;

pub struct Shop {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

impl Shop {
    pub async fn start(
        listen: SocketAddr,
        merchant_id: &str,
        keys: HashKeys,
        payment_url: String,
    ) -> anyhow::Result<Self> {
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            merchant_id: merchant_id.into(),
            keys,
            payment_url,
            gateway: Mutex::default(),
            tokens: Mutex::default(),
            orders: Mutex::default(),
            others: Mutex::default(),
        });
        let app = Router::new()
            .route("/", get(pages::products))
            .route("/style.css", get(crate::sandbox::style))
            .route("/orders", get(pages::orders))
            .route(RESULT_PATH, post(pages::result))
            .route(API_PATH, post(payment_api))
            .route(NOTIFY_PATH, post(notify))
            .route("/oen/notify", post(other_notify))
            .route("/tappay/notify", post(other_notify))
            .route("/sinopac/notify", post(other_notify))
            .layer(DefaultBodyLimit::max(64 * 1024))
            .with_state(shared.clone());
        let stop = CancellationToken::new();
        let until = stop.clone();
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(until.cancelled_owned()).await {
                tracing::error!(error = %e, "the demo shop stopped serving");
            }
        });
        Ok(Self { addr, shared, stop, server })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The gateway the shop's checkout posts to and its forms name.
    pub fn use_gateway(&self, url: &str) {
        *lock(&self.shared.gateway) = url.trim_end_matches('/').to_owned();
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.server.await;
    }
}

/// One-time checkout tokens: issued with the product page, taken by the API.
pub(super) fn issue_token(shared: &Shared) -> String {
    let token = super::random_hex(16);
    let mut tokens = lock(&shared.tokens);
    if tokens.len() > 10_000 {
        tokens.clear();
    }
    tokens.insert(token.clone());
    token
}

fn refuse(why: &str) -> Response {
    (StatusCode::FORBIDDEN, axum::Json(json!({ "error": why }))).into_response()
}

/// The tenant API of SPEC §3.1 step 5: the five fields in, the signed
/// Funpoint form out.
async fn payment_api(axum::extract::State(shared): State, body: Bytes) -> Response {
    let Ok(form) = FormFields::parse(&body) else { return refuse("not a form") };
    let get = |k: &str| form.get(k).unwrap_or_default().to_owned();
    if !lock(&shared.tokens).remove(&get("token")) {
        return refuse("unknown or used token");
    }
    let Some(product) = PRODUCTS.iter().find(|p| p.id == get("foran")) else { return refuse("no such product") };
    let method = get("serverid");
    let allowed: &[&str] = if product.recurring { &["Credit"] } else { &["Credit", "ATM", "CVS"] };
    if !allowed.contains(&method.as_str()) {
        return refuse("that payment method is not offered for this product");
    }
    let buyer: String = get("lastan").chars().take(20).collect();
    let now = now_ms();
    let no = {
        let mut orders = lock(&shared.orders);
        let stamp: String = taipei(now).chars().filter(char::is_ascii_digit).skip(2).collect();
        let no = format!("DM{stamp}{:04}{SUFFIX}", orders.len() % 10_000);
        orders.push(Order {
            no: no.clone(),
            at: taipei(now),
            product,
            method: method.clone(),
            state: "checkout",
            code: None,
            periods: 0,
            notes: Vec::new(),
        });
        no
    };
    let value = payment_value(&shared, product, &method, &no, &buyer, now);
    axum::Json(json!({ "payment_url": shared.payment_url, "payment_value": value })).into_response()
}

fn payment_value(shared: &Shared, product: &Product, method: &str, no: &str, buyer: &str, now: i64) -> Value {
    let gateway = lock(&shared.gateway).clone();
    let notify = format!("{gateway}/funpoint/notify");
    let back = format!("{gateway}/funpoint/return");
    let mut f: Vec<(&str, String)> = vec![
        ("MerchantID", shared.merchant_id.clone()),
        ("MerchantTradeNo", no.into()),
        ("MerchantTradeDate", taipei(now)),
        ("PaymentType", "aio".into()),
        ("TotalAmount", product.price.to_string()),
        ("TradeDesc", "payrelay demo".into()),
        ("ItemName", product.name.into()),
        ("ReturnURL", notify.clone()),
        ("ChoosePayment", method.into()),
        ("EncryptType", "1".into()),
        ("OrderResultURL", back.clone()),
        ("CustomField1", buyer.into()),
    ];
    if method != "Credit" {
        f.extend([("PaymentInfoURL", notify.clone()), ("ClientRedirectURL", back)]);
    }
    if product.recurring {
        f.extend([
            ("PeriodAmount", product.price.to_string()),
            ("PeriodType", "M".into()),
            ("Frequency", "1".into()),
            ("ExecTimes", "12".into()),
            ("PeriodReturnURL", notify),
        ]);
    }
    let mac = CheckMac::compute(f.iter().map(|(k, v)| (*k, v.as_str())), &shared.keys, HashAlgorithm::Sha256);
    f.push(("CheckMacValue", mac.as_str().to_owned()));
    Value::Object(f.into_iter().map(|(k, v)| (k.to_owned(), Value::String(v))).collect::<Map<_, _>>())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("-")
}

/// What the gateway delivered, in one line for the orders page.
fn note(headers: &HeaderMap, what: &str) -> String {
    format!(
        "{} · {} · event {} · source {} · verified {} · attempt {}",
        taipei(now_ms())[11..].to_owned(),
        what,
        header(headers, "x-payrelay-event"),
        header(headers, "x-payrelay-source"),
        header(headers, "x-payrelay-verified"),
        header(headers, "x-payrelay-attempt"),
    )
}

/// The shop's Funpoint notify path: the MAC checked with its own keys (a
/// shop should, whoever relays), the order moved, `1|OK`.
async fn notify(axum::extract::State(shared): State, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(form) = FormFields::parse(&body) else { return (StatusCode::BAD_REQUEST, "0|Bad Request").into_response() };
    let mac = form.get("CheckMacValue").unwrap_or_default();
    if !CheckMac::verify(form.unique(), &shared.keys, HashAlgorithm::Sha256, mac) {
        return (StatusCode::BAD_REQUEST, "0|CheckMacValue Error").into_response();
    }
    let get = |k: &str| form.get(k).unwrap_or_default();
    let event = header(&headers, "x-payrelay-event");
    let line = note(&headers, &format!("RtnCode {} {}", get("RtnCode"), get("RtnMsg")));
    let mut orders = lock(&shared.orders);
    let Some(order) = orders.iter_mut().find(|o| o.no == get("MerchantTradeNo")) else {
        drop(orders);
        lock(&shared.others).insert(0, format!("Funpoint, unknown order {}: {line}", get("MerchantTradeNo")));
        return "1|OK".into_response();
    };
    match event {
        "paid" => order.state = "paid",
        "period_paid" => order.periods = get("TotalSuccessTimes").parse().unwrap_or(order.periods),
        "code_issued" if order.state != "paid" => {
            order.state = "code_issued";
            order.code = Some(if get("vAccount").is_empty() {
                format!("CVS {} · until {}", get("PaymentNo"), get("ExpireDate"))
            } else {
                format!("ATM {} {} · until {}", get("BankCode"), get("vAccount"), get("ExpireDate"))
            });
        }
        "failed" if order.state != "paid" => order.state = "failed",
        _ => {}
    }
    if event == "paid" && order.product.recurring {
        order.periods = order.periods.max(1);
    }
    order.notes.push(line);
    "1|OK".into_response()
}

/// Oen, TapPay and SinoPac notify paths: noted, 200.
async fn other_notify(
    uri: http::Uri,
    headers: HeaderMap,
    axum::extract::State(shared): State,
    body: Bytes,
) -> Response {
    let text: String = String::from_utf8_lossy(&body).chars().take(160).collect();
    let line = note(&headers, &format!("{} {text}", uri.path()));
    let mut others = lock(&shared.others);
    others.insert(0, line);
    others.truncate(100);
    (StatusCode::OK, axum::Json(json!({"ok": true}))).into_response()
}
