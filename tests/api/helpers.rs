//! Test harness: the gateway on port 0 with a temp config, and mock tenants
//! and providers that are real HTTP servers on loopback, recording what
//! they receive and answering what each test sets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
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
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(body: impl Into<String>) -> Self {
        Self {
            status: 200,
            content_type: "application/json",
            body: body.into(),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
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
        Self::serve(TcpListener::bind("127.0.0.1:0").await.unwrap()).await
    }

    /// On a listener bound earlier and not served until now: a tenant that
    /// was down (connections wait unanswered) comes up on the same port, and
    /// no other test can take the port in between.
    pub async fn start_on(listener: std::net::TcpListener) -> Self {
        listener.set_nonblocking(true).unwrap();
        Self::serve(TcpListener::from_std(listener).unwrap()).await
    }

    async fn serve(listener: TcpListener) -> Self {
        let state = Arc::new(Mutex::new(MockState::default()));
        let app = Router::new().fallback(record).with_state(state.clone());
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
    let mut response =
        (StatusCode::from_u16(reply.status).unwrap(), [("content-type", reply.content_type)], reply.body)
            .into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// An address nothing listens on: port 1 on loopback. (A port bound and
/// released could be handed to another test's server meanwhile.)
pub async fn closed_port_url() -> String {
    "http://127.0.0.1:1".to_owned()
}

/// A running gateway; dropped, it shuts down.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub state: payrelay::http::AppState,
    shutdown: Option<oneshot::Sender<()>>,
    stopped: Option<tokio::task::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A POST as a browser page on `origin` would send it.
    pub async fn post_from(&self, origin: &str, path: &str, body: &str) -> reqwest::Response {
        self.client.post(self.url(path)).header("origin", origin).body(body.to_owned()).send().await.unwrap()
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

/// Is this binary's store available? (Always for SQLite; PostgreSQL when a
/// server can be had — `PAYRELAY_POSTGRES_TESTS=required` makes its absence
/// a failure.)
pub fn backend_ready() -> bool {
    if !crate::POSTGRES || crate::pg::available() {
        return true;
    }
    eprintln!("SKIPPED: no PostgreSQL here (apt-get install postgresql, or set PAYRELAY_TEST_DATABASE_URL)");
    false
}

/// The store URL for the store at `db`: that SQLite file, or (PostgreSQL
/// binary) a fresh database, the same one each time for the same `db`.
pub fn store_url_for(db: &std::path::Path) -> String {
    if crate::POSTGRES { crate::pg::database_for(db) } else { format!("sqlite://{}", db.display()) }
}

/// The store at `db` (this binary's backend), opened as the store tests
/// use it: an hour's retention and lease of 30 s, ten refused rows kept.
pub async fn open_store(db: &std::path::Path) -> payrelay::store::Store {
    let storage = payrelay::config::StorageConfig {
        url: storage_url(db),
        retention: Duration::from_secs(3600),
        keep_rejected: 10,
        keep_rejected_bytes: 1 << 20,
        keep_unroutable: 10,
        keep_unroutable_bytes: 1 << 20,
        unroutable_min_age: Duration::from_secs(3600),
        dead_retention: Duration::from_secs(3600),
        lease: Duration::from_secs(30),
        pool_size: 8,
        connect_timeout: Duration::from_secs(3),
    };
    payrelay::store::Store::open(&storage).await.unwrap()
}

pub fn storage_url(db: &std::path::Path) -> payrelay::config::StorageUrl {
    if crate::POSTGRES {
        payrelay::config::StorageUrl::Postgres(payrelay::domain::Secret::new(crate::pg::database_for(db)))
    } else {
        payrelay::config::StorageUrl::Sqlite { path: db.to_owned() }
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
    config.storage.url = storage_url(db);
    let app = Application::build(config).await.unwrap();
    let addr = app.local_addr().unwrap();
    let state = app.state();
    let (tx, rx) = oneshot::channel::<()>();
    let stopped = tokio::spawn(app.run(async {
        let _ = rx.await;
    }));
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    TestApp { addr, client, state, shutdown: Some(tx), stopped: Some(stopped), _dir: None }
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

/// Tenant "shop" (order suffix 01, the Funpoint stage merchant and keys)
/// at `base_url`, as a `[[tenants]]` entry.
pub fn shop_tenant(base_url: &str) -> String {
    format!(
        r#"[[tenants]]
id = "shop"
base_url = "{base_url}"
allow_http = true
order_suffix = "01"
[tenants.funpoint]
merchant_id = "{STAGE_MERCHANT}"
hash_key = "{STAGE_KEY}"
hash_iv = "{STAGE_IV}"
"#
    )
}

pub fn shop_config(tenant_url: &str, provider_url: &str, extra: &str) -> String {
    format!(
        r#"
[delivery]
timeout = "700ms"
retry = ["100ms", "200ms", "300ms"]

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

/// A Funpoint paid notification as Funpoint sends it (field order kept),
/// signed with the stage keys.
pub fn notification(order_no: &str, trade_no: &str, rtn_msg: &str) -> String {
    notification_with(order_no, trade_no, rtn_msg, &[])
}

pub fn notification_with(order_no: &str, trade_no: &str, rtn_msg: &str, extra: &[(&str, &str)]) -> String {
    let mut fields: Vec<(&str, &str)> = vec![
        ("MerchantID", STAGE_MERCHANT),
        ("MerchantTradeNo", order_no),
        ("StoreID", ""),
        ("RtnCode", "1"),
        ("RtnMsg", rtn_msg),
        ("TradeNo", trade_no),
        ("TradeAmt", "1200"),
        ("PaymentDate", "2024/11/22 15:31:02"),
        ("PaymentType", "Credit_CreditCard"),
        ("PaymentTypeChargeFee", "24"),
        ("TradeDate", "2024/11/22 15:30:45"),
        ("SimulatePaid", "0"),
    ];
    for (k, v) in extra {
        match fields.iter_mut().find(|(fk, _)| fk == k) {
            Some(slot) => slot.1 = v,
            None => fields.push((k, v)),
        }
    }
    sign_fields(&fields)
}

/// Appends the CheckMacValue (stage keys) and form-encodes.
pub fn sign_fields(fields: &[(&str, &str)]) -> String {
    use payrelay::domain::{CheckMac, HashAlgorithm, HashKeys, Secret};
    let keys = HashKeys { key: Secret::new(STAGE_KEY), iv: Secret::new(STAGE_IV) };
    let mac = CheckMac::compute(fields.iter().copied(), &keys, HashAlgorithm::Sha256);
    let mut all = fields.to_vec();
    all.push(("CheckMacValue", mac.as_str()));
    payrelay::form::encode(all)
}

/// Polls `check` every 20 ms until it holds, for at most `bound`.
pub async fn eventually(what: &str, bound: Duration, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + bound;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "gave up after {bound:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl TestApp {
    /// Every row in the store, newest first.
    pub async fn rows(&self) -> Vec<payrelay::store::CallbackSummary> {
        let filter = payrelay::store::ListFilter { limit: 10_000, ..Default::default() };
        self.state.store().list(&filter).await.unwrap()
    }

    pub async fn detail(&self, id: impl AsRef<str>) -> payrelay::store::CallbackDetail {
        let id = payrelay::store::CallbackId::parse(id.as_ref()).expect("a callback id");
        self.state.store().get(&id).await.unwrap().unwrap()
    }

    /// Waits until callback `id` has `n` attempts recorded.
    pub async fn until_attempts(
        &self,
        id: impl AsRef<str>,
        n: usize,
        bound: Duration,
    ) -> payrelay::store::CallbackDetail {
        let (id, deadline) = (id.as_ref(), tokio::time::Instant::now() + bound);
        loop {
            let d = self.detail(id).await;
            if d.attempts.len() >= n {
                return d;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "callback {id} has {} attempts after {bound:?}",
                d.attempts.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until callback `id` reaches `status`.
    pub async fn until_status(
        &self,
        id: impl AsRef<str>,
        status: payrelay::store::Status,
        bound: Duration,
    ) -> payrelay::store::CallbackDetail {
        let (id, deadline) = (id.as_ref(), tokio::time::Instant::now() + bound);
        loop {
            let d = self.detail(id).await;
            if d.summary.status == status {
                return d;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "callback {id} is {} after {bound:?}, not {status}",
                d.summary.status
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `payrelay serve` as a child process on a free port, with JSON logs,
/// read by a thread of its own so that the child never blocks on a full pipe.
pub struct Served {
    pub child: std::process::Child,
    pub addr: String,
    log: std::sync::mpsc::Receiver<String>,
    /// Every line read so far (by `wait_for_log` too).
    seen: Vec<String>,
}

impl Served {
    /// Starts on `config`, with its store in the config's folder unless the
    /// config names one.
    pub fn start(config: &std::path::Path) -> Self {
        Self::start_with_env(config, &[])
    }

    /// Likewise, with these environment variables set for the child.
    pub fn start_with_env(config: &std::path::Path, env: &[(&str, &str)]) -> Self {
        let text = std::fs::read_to_string(config).unwrap();
        if !text.contains("[storage]") {
            let db = config.with_file_name("payrelay.db");
            std::fs::write(config, format!("[storage]\nurl = \"{}\"\n{text}", store_url_for(&db))).unwrap();
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_payrelay"))
            .args(["serve", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0", "--log-format", "json"])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, log) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Nobody listens any more: keep draining.
                    continue;
                }
            }
        });
        let mut served = Self { child, addr: String::new(), log, seen: Vec::new() };
        let listening = served.wait_for_log("payrelay listening");
        served.addr = listening["addr"].as_str().unwrap().to_owned();
        served
    }

    pub fn signal(&self, sig: &str) {
        assert!(Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap().success());
    }

    /// Reads log lines until one has `message` (at most 20 s).
    pub fn wait_for_log(&mut self, message: &str) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self.log.recv_timeout(left).unwrap_or_else(|_| panic!("no {message:?} in the log"));
            self.seen.push(line.clone());
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["message"].as_str().is_some_and(|m| m.contains(message))
            {
                return v;
            }
        }
    }

    /// Every log line of the process, from its start until it closes
    /// stderr (after a stop; at most 20 s).
    pub fn drain(&mut self) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut lines = std::mem::take(&mut self.seen);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return lines,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("the log did not end within 20 s"),
            }
        }
    }

    pub fn raw(&self, request: &str) -> String {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
    }

    pub fn checkout(&self, domain: &str) -> String {
        let body = format!("foran=f&serverid=s&lastan=l&token=t&domain={domain}");
        self.raw(&format!(
            "POST /funpoint/checkout.json HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
