//! Wiring: `Application::build` binds the listener (port 0 works, for
//! tests), builds the one HTTP client and the shared state; `run` serves
//! until the shutdown future resolves. Tests and `payrelay serve` use the
//! same path.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

use tokio_util::sync::CancellationToken;

use arc_swap::ArcSwap;

use crate::config::{self, Config, ConfigError};
use crate::delivery::{self, Handle, Worker};
use crate::http::{self, AppState};
use crate::store::Store;

/// How long in-flight requests get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

pub struct Application {
    listener: TcpListener,
    state: AppState,
    handoff: tokio::sync::mpsc::Receiver<delivery::Handoff>,
    router: http::App,
    header_timeout: Duration,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        if crate::metrics::handle().is_none() {
            tracing::warn!("another metrics recorder is installed; /metrics answers 503");
        }
        // Reading the system's CA certificates and migrating a new store both
        // take milliseconds: side by side (start-up, issue 14).
        let proxy = config.server.outbound_proxy.clone();
        // The certificates read once, for reqwest and the direct client.
        let client = tokio::task::spawn_blocking(move || {
            let tls = crate::outbound::tls()?;
            let reqwest = http_client_with(proxy.as_ref(), tls.clone())?;
            anyhow::Ok(match proxy {
                Some(_) => crate::outbound::Outbound::from(reqwest),
                None => crate::outbound::Outbound::with_tls(reqwest, tls),
            })
        });
        let store = Store::open(&config.storage)
            .await
            .with_context(|| format!("cannot open storage {}", config.storage.url.display_masked()))?;
        let client = client.await.context("building the outbound client")??;
        log_warnings(&config);
        let header_timeout = config.server.request_timeout;
        let (max_body, request_timeout) = (config.server.max_body_bytes, config.server.request_timeout);
        let config = std::sync::Arc::new(ArcSwap::from_pointee(config));
        let (handle, handoff) = Handle::channel();
        let state = AppState::new(config.clone(), Worker::new(config, client, store), handle);
        let router = http::router(state.clone(), max_body, request_timeout);
        Ok(Self { listener, state, handoff, router, header_timeout })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves, delivers and purges until `shutdown` resolves; then stops
    /// accepting, finishes in-flight requests, lets the worker finish its
    /// attempts and give back its leases, and closes the store.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let background = CancellationToken::new();
        tokio::spawn(http::timers::keep_close(background.clone().cancelled_owned()));
        let worker = tokio::spawn(delivery::run_worker(self.state.worker().clone(), self.handoff, background.clone()));
        let upkeep = self.state.clone();
        let purger = tokio::spawn(delivery::run_purger(self.state.worker().clone(), background.clone(), move || {
            upkeep.forget_idle()
        }));
        let reconciler =
            tokio::spawn(crate::reconcile::run_reconciler(self.state.worker().clone(), background.clone()));
        match self.listener.local_addr() {
            Ok(addr) => tracing::info!(%addr, "payrelay listening"),
            Err(e) => tracing::info!(error = %e, "payrelay listening (address unknown)"),
        }
        let max_connections = self.state.config().server.max_connections;
        http::serve(self.listener, self.router, self.header_timeout, max_connections, SHUTDOWN_GRACE, shutdown).await;
        background.cancel();
        let _ = worker.await;
        let _ = purger.await;
        let _ = reconciler.await;
        self.state.store().close().await;
        tracing::info!("payrelay stopped");
    }
}

/// The one outbound client, with no proxy (see [`http_client_via`]).
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    http_client_via(None)
}

/// The one outbound client: rustls on ring, redirects never followed (a
/// tenant or provider answering 3xx is an answer, not a hop), bounded
/// connects. Per-call timeouts are set by each caller from the config.
/// Proxies from the environment (`HTTP_PROXY` …) are never used: a stray
/// variable would send every delivery, signature and checkout token through
/// it. `[server] outbound_proxy` names one explicitly.
pub fn http_client_via(proxy: Option<&crate::domain::Secret>) -> anyhow::Result<reqwest::Client> {
    http_client_with(proxy, crate::outbound::tls()?)
}

/// [`http_client_via`] over `tls` (from [`crate::outbound::tls`]), offering
/// HTTP/1.1 by ALPN as reqwest does with its own.
pub(crate) fn http_client_with(
    proxy: Option<&crate::domain::Secret>,
    mut tls: rustls::ClientConfig,
) -> anyhow::Result<reqwest::Client> {
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let builder = match proxy {
        Some(url) => reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(url.expose()).context("server.outbound_proxy is not a usable proxy URL")?),
        None => reqwest::Client::builder().no_proxy(),
    };
    builder
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("payrelay/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the HTTP client")
}

/// SIGHUP: load and validate the file; swap the table whole only if it is
/// valid, otherwise keep the old one. Settings bound at start (listen
/// address, body limit, request timeout, storage) need a restart.
pub fn reload(state: &AppState, path: &Path) -> Result<(), ConfigError> {
    let loaded = config::load(path);
    crate::metrics::reload(loaded.is_ok());
    let new = loaded?;
    let old = state.config();
    if new.server.listen != old.server.listen
        || new.server.max_body_bytes != old.server.max_body_bytes
        || new.server.request_timeout != old.server.request_timeout
    {
        tracing::warn!("server.listen, max_body_bytes and request_timeout take effect only after a restart");
    }
    log_warnings(&new);
    state.replace_config(new);
    Ok(())
}

/// What `check` warns about, in the log at start and on every reload.
fn log_warnings(config: &Config) {
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
}
