//! Test harness: the gateway on port 0 with a temp config, and mock tenants
//! and providers that are real HTTP servers on loopback, recording what
//! they receive and answering what each test sets.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use payrelay::startup::Application;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The public Funpoint stage credentials (vectors/README.md).
pub const STAGE_MERCHANT: &str = "1000031";
pub const STAGE_KEY: &str = "265flDjIvesceXWM";
pub const STAGE_IV: &str = "pOOvhGd1V2pJbjfX";

/// One request a mock received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }
}

/// What a mock answers: status, content type, body, and an optional delay.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn json(body: impl Into<String>) -> Self {
        Self { status: 200, content_type: "application/json", body: body.into(), delay: Duration::ZERO }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self { status, content_type: "text/plain; charset=utf-8", body: body.into(), delay: Duration::ZERO }
    }

    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Default)]
struct MockState {
    reply: Option<Reply>,
    received: Vec<Received>,
}

/// A real HTTP server on 127.0.0.1 that records every request.
#[derive(Clone)]
pub struct MockServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<MockState>>,
}

impl MockServer {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(MockState::default()));
        let app = Router::new().fallback(record).with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn reply(&self, reply: Reply) {
        self.state.lock().unwrap().reply = Some(reply);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }
}

async fn record(State(state): State<Arc<Mutex<MockState>>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let reply = {
        let mut s = state.lock().unwrap();
        s.received.push(Received {
            method: parts.method.to_string(),
            path_and_query: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
            headers: parts.headers,
            body,
        });
        s.reply.clone().unwrap_or_else(|| Reply::text(200, "1|OK"))
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    (StatusCode::from_u16(reply.status).unwrap(), [("content-type", reply.content_type)], reply.body).into_response()
}

/// An address nothing listens on (bound, then released).
pub async fn closed_port_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

/// A running gateway; dropped, it shuts down.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub state: payrelay::http::AppState,
    pub db: std::path::PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    stopped: Option<tokio::task::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn post_form(&self, path: &str, body: &str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }
}

/// Starts the gateway on 127.0.0.1:0 with `config` (a routes.toml text)
/// and a fresh SQLite store in a temp dir.
pub async fn spawn_app(config: &str) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("payrelay.db");
    let mut app = spawn_app_on(config, &db).await;
    app._dir = Some(dir);
    app
}

/// Starts the gateway on the SQLite file `db` (to restart on the same store).
pub async fn spawn_app_on(config: &str, db: &std::path::Path) -> TestApp {
    let mut config = payrelay::config::parse(config, &|_| None).unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.storage.url = payrelay::config::StorageUrl::Sqlite { path: db.to_owned() };
    let app = Application::build(config).await.unwrap();
    let addr = app.local_addr().unwrap();
    let state = app.state();
    let (tx, rx) = oneshot::channel::<()>();
    let stopped = tokio::spawn(app.run(async {
        let _ = rx.await;
    }));
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    TestApp { addr, client, state, db: db.to_owned(), shutdown: Some(tx), stopped: Some(stopped), _dir: None }
}

impl TestApp {
    /// Graceful stop: in-flight requests finish, the worker releases its
    /// leases, the store is closed. Keeps the temp dir for a restart.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.stopped.take() {
            let _ = handle.await;
        }
        self._dir.take()
    }
}

/// A gateway with one tenant "shop" (domain code `shop`, suffix `01`, the
/// Funpoint stage keys) whose API is `tenant`, and a payment provider at
/// `provider` as the only allowed payment origin. `extra` is appended.
pub struct Fixture {
    pub app: TestApp,
    pub tenant: MockServer,
    pub provider: MockServer,
}

pub fn shop_config(tenant_url: &str, provider_url: &str, extra: &str) -> String {
    format!(
        r#"
[delivery]
timeout = "700ms"

[providers.funpoint]
payment_origins = ["{provider_url}"]

[[tenants]]
id = "shop"
base_url = "{tenant_url}"
allow_http = true
domain_codes = ["shop"]
order_suffix = "01"
origins = ["https://shop.example"]
[tenants.funpoint]
merchant_id = "{STAGE_MERCHANT}"
hash_key = "{STAGE_KEY}"
hash_iv = "{STAGE_IV}"

[[tenants]]
id = "other"
base_url = "https://other.example"
domain_codes = ["other"]
order_suffix = "02"
origins = ["https://other.example"]
[tenants.funpoint]
{extra}
"#
    )
}

impl Fixture {
    pub async fn start() -> Self {
        Self::with_extra("").await
    }

    pub async fn with_extra(extra: &str) -> Self {
        let tenant = MockServer::start().await;
        let provider = MockServer::start().await;
        let app = spawn_app(&shop_config(&tenant.url(), &provider.url(), extra)).await;
        Self { app, tenant, provider }
    }

    /// The tenant API answers a payment form with these `payment_value` entries.
    pub fn tenant_answers(&self, choose_payment: &str, extra_json: &str) {
        let url = format!("{}/Cashier/AioCheckOut/V5", self.provider.url());
        self.tenant.reply(Reply::json(format!(
            r#"{{"payment_url":"{url}","payment_value":{{"MerchantID":"1000031","MerchantTradeNo":"T2024112201","TotalAmount":100,"ChoosePayment":"{choose_payment}"{extra_json}}}}}"#
        )));
    }
}

pub const CHECKOUT: &str = "foran=f1&serverid=s2&lastan=l3&token=tok-secret-4&domain=shop";
