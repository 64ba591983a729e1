//! A local stand-in for the payment providers, so that a whole payment can
//! be clicked through on a laptop (issue 15): Funpoint's AioCheckOut page
//! and its server notifications, signed with the public stage keys and
//! resent as Funpoint resends them; Oen Tech, TapPay and SinoPac webhooks
//! (genuine and forged); and every provider's query API, answering
//! truthfully from what was done on its pages. `payrelay sandbox` runs it
//! alone for a shop's dev setup; `payrelay demo` runs it beside a gateway
//! and a demo shop. It is never a production component: it holds
//! everything in memory and says "sandbox" on every page.

mod funpoint;
mod others;
mod pages;
mod send;
mod trades;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use others::{OEN_MERCHANT, OEN_TOKEN, SINOPAC_PARTS, SINOPAC_SHOP, TAPPAY_MERCHANT, TAPPAY_PARTNER_KEY};
pub use pages::style;

use crate::domain::{HashKeys, Secret};

/// Funpoint's public stage merchant (`../shared/vectors/README.md`).
pub const STAGE_MERCHANT: &str = "1000031";
pub const STAGE_HASH_KEY: &str = "265flDjIvesceXWM";
pub const STAGE_HASH_IV: &str = "pOOvhGd1V2pJbjfX";

/// How long a sandbox request body may be, and a sandbox call may take.
const MAX_BODY: usize = 64 * 1024;
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The sandbox page shows the latest this many sends.
const LOG_LINES: usize = 200;
/// It keeps at most this many trades (and as many other payments).
const MAX_TRADES: usize = 10_000;

#[derive(Debug, Clone)]
pub struct SandboxOptions {
    pub listen: SocketAddr,
    /// The Funpoint merchant whose forms are taken and whose keys sign.
    pub merchant_id: String,
    pub keys: HashKeys,
    /// Where Oen, TapPay and SinoPac webhooks go: `{webhooks}/oen/notify` …
    /// (the gateway; `None` until it is known).
    pub webhooks: Option<String>,
    /// Waits between Funpoint's resends of a notification not answered
    /// `1|OK` (Funpoint waits minutes; the sandbox is quicker).
    pub resend: Vec<Duration>,
}

impl SandboxOptions {
    /// The stage merchant on `listen`.
    pub fn stage(listen: SocketAddr) -> Self {
        Self {
            listen,
            merchant_id: STAGE_MERCHANT.into(),
            keys: HashKeys { key: Secret::new(STAGE_HASH_KEY), iv: Secret::new(STAGE_HASH_IV) },
            webhooks: None,
            resend: vec![Duration::from_secs(5), Duration::from_secs(15), Duration::from_secs(60)],
        }
    }
}

/// One line of the sandbox's "sent" log.
#[derive(Debug, Clone)]
pub struct Sent {
    pub at: String,
    pub what: String,
    pub to: String,
    pub answer: String,
}

pub(crate) struct Shared {
    merchant_id: String,
    keys: HashKeys,
    resend: Vec<Duration>,
    webhooks: Mutex<Option<String>>,
    client: reqwest::Client,
    trades: Mutex<Vec<trades::Trade>>,
    others: Mutex<others::Ledger>,
    log: Mutex<VecDeque<Sent>>,
    outage: AtomicBool,
    stop: CancellationToken,
    tasks: TaskTracker,
}

type State = axum::extract::State<Arc<Shared>>;

impl Shared {
    fn trades(&self) -> MutexGuard<'_, Vec<trades::Trade>> {
        lock(&self.trades)
    }

    fn others(&self) -> MutexGuard<'_, others::Ledger> {
        lock(&self.others)
    }

    fn webhooks(&self) -> Option<String> {
        lock(&self.webhooks).clone()
    }

    fn outage(&self) -> bool {
        self.outage.load(Ordering::Relaxed)
    }

    fn note(&self, sent: Sent) {
        let mut log = lock(&self.log);
        log.push_front(sent);
        log.truncate(LOG_LINES);
    }
}

/// A poisoned lock still holds a usable ledger: a panicking handler must
/// not take the sandbox down with it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running sandbox.
pub struct Sandbox {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Sandbox {
    pub async fn start(options: SandboxOptions) -> anyhow::Result<Self> {
        let listener =
            TcpListener::bind(options.listen).await.with_context(|| format!("cannot listen on {}", options.listen))?;
        let addr = listener.local_addr()?;
        let client = crate::startup::http_client()?;
        let shared = Arc::new(Shared {
            merchant_id: options.merchant_id,
            keys: options.keys,
            resend: options.resend,
            webhooks: Mutex::new(options.webhooks),
            client,
            trades: Mutex::default(),
            others: Mutex::default(),
            log: Mutex::default(),
            outage: AtomicBool::new(false),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        let app = router(shared.clone());
        let stop = shared.stop.clone();
        let server = tokio::spawn(async move {
            let serving = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(e) = serving.await {
                tracing::error!(error = %e, "the sandbox stopped serving");
            }
        });
        Ok(Self { addr, shared, server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets where Oen, TapPay and SinoPac webhooks go.
    pub fn send_webhooks_to(&self, base: &str) {
        *lock(&self.shared.webhooks) = Some(base.trim_end_matches('/').to_owned());
    }

    /// What the sandbox has sent so far, newest first.
    pub fn sent(&self) -> Vec<Sent> {
        lock(&self.shared.log).iter().cloned().collect()
    }

    /// Stops serving and sending (pending resends are dropped).
    pub async fn stop(self) {
        self.shared.stop.cancel();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
        let _ = self.server.await;
    }
}

fn router(shared: Arc<Shared>) -> Router {
    // The page's own buttons: a page elsewhere must not press them (a
    // developer's browser on a hostile site would otherwise pay, forge and
    // send webhooks from here). AioCheckOut comes from the shop's site by
    // design, and the query APIs from servers.
    let buttons = Router::new()
        .route("/outage", post(pages::toggle_outage))
        .route("/pay/{n}/{action}", post(funpoint::buyer_action))
        .route("/trades/{n}/{action}", post(funpoint::merchant_action))
        .route("/send/{provider}/{kind}", post(others::send))
        .route_layer(axum::middleware::from_fn(same_site));
    Router::new()
        .route("/", get(pages::index))
        .route("/style.css", get(pages::style))
        .route("/Cashier/AioCheckOut/V5", post(funpoint::checkout))
        .route("/pay/{n}", get(funpoint::pay_page))
        .merge(buttons)
        .route("/Cashier/QueryTradeInfo/V5", post(funpoint::query_trade_info))
        .route("/Cashier/QueryCreditCardPeriodInfo", post(funpoint::query_period_info))
        .route("/transactions/{id}", get(others::oen_transaction))
        .route("/tpc/transaction/query", post(others::tappay_query))
        .route("/sinopac/Nonce", post(others::sinopac_nonce))
        .route("/sinopac/Order", post(others::sinopac_order))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

async fn same_site(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    if crate::http::cross_site(request.headers(), "http") {
        return pages::error(http::StatusCode::FORBIDDEN, "refused: a button of this page pressed from another site");
    }
    next.run(request).await
}

#[derive(Debug, clap::Args)]
pub struct SandboxArgs {
    /// Where the sandbox listens.
    #[arg(long, default_value = "127.0.0.1:8070")]
    pub listen: SocketAddr,
    /// Where Oen, TapPay and SinoPac webhooks go (`URL/oen/notify` …):
    /// a local payrelay, or a shop's own dev server. Off when absent.
    #[arg(long, value_name = "URL")]
    pub webhooks: Option<String>,
    /// The Funpoint merchant whose forms it takes (default: the public
    /// stage merchant and keys).
    #[arg(long, requires_all = ["hash_key", "hash_iv"])]
    pub merchant_id: Option<String>,
    #[arg(long, requires = "merchant_id")]
    pub hash_key: Option<String>,
    #[arg(long, requires = "merchant_id")]
    pub hash_iv: Option<String>,
    /// Waits between resends of a notification not answered `1|OK`.
    #[arg(long, value_delimiter = ',', default_value = "5s,15s,60s", value_parser = crate::demo::duration)]
    pub resend: Vec<Duration>,
}

/// `payrelay sandbox`: the providers alone, until Ctrl-C.
pub async fn command(args: SandboxArgs) -> std::process::ExitCode {
    // It posts wherever a form's ReturnURL says and answers with test keys:
    // never a service for other machines.
    if !args.listen.ip().is_loopback() {
        eprintln!(
            "payrelay sandbox: --listen {} is not a loopback address; the sandbox serves this machine only",
            args.listen
        );
        return std::process::ExitCode::FAILURE;
    }
    let mut options = SandboxOptions::stage(args.listen);
    if let (Some(id), Some(key), Some(iv)) = (args.merchant_id, args.hash_key, args.hash_iv) {
        options.merchant_id = id;
        options.keys = HashKeys { key: Secret::new(key), iv: Secret::new(iv) };
    }
    options.webhooks = args.webhooks.map(|w| w.trim_end_matches('/').to_owned());
    options.resend = args.resend;
    match run(options).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("payrelay sandbox: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `payrelay sandbox`: the providers alone, until Ctrl-C.
async fn run(options: SandboxOptions) -> anyhow::Result<()> {
    let webhooks = options.webhooks.clone();
    let sandbox = Sandbox::start(options).await?;
    let url = sandbox.url();
    println!("payrelay sandbox — stand-in payment providers on {url} (Ctrl-C stops it)");
    println!("  page (pay, resend, forge, outage)   {url}/");
    println!("  Funpoint payment_url                {url}/Cashier/AioCheckOut/V5");
    println!("  [providers.funpoint|oen|tappay] api_base = \"{url}\"");
    println!("  [providers.sinopac] api_base        = \"{url}/sinopac/\"");
    println!("  Funpoint merchant                   {merchant}", merchant = sandbox.shared.merchant_id);
    match webhooks {
        Some(w) => println!("  Oen/TapPay/SinoPac webhooks go to   {w}/{{oen,tappay,sinopac}}/notify"),
        None => println!("  Oen/TapPay/SinoPac webhooks: off (--webhooks URL turns them on)"),
    }
    crate::cli::shutdown_signal().await;
    sandbox.stop().await;
    Ok(())
}
