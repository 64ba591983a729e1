//! What every handler shares: the current config (swapped whole on reload)
//! and the one outbound HTTP client.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: ArcSwap<Config>,
    client: reqwest::Client,
}

impl AppState {
    pub fn new(config: Config, client: reqwest::Client) -> Self {
        Self { inner: Arc::new(Inner { config: ArcSwap::from_pointee(config), client }) }
    }

    /// The table in force now. Hold the guard for one request: a reload in
    /// the meantime does not change what this request sees.
    pub fn config(&self) -> Arc<Config> {
        self.inner.config.load_full()
    }

    pub fn replace_config(&self, config: Config) {
        self.inner.config.store(Arc::new(config));
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.inner.client
    }
}
