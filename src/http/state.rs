//! What every handler and the delivery worker share: the current config
//! (swapped whole on reload), the one outbound HTTP client, the store, and
//! the worker's wake-up bell.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use crate::config::Config;
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: ArcSwap<Config>,
    client: reqwest::Client,
    store: Store,
    wake: Notify,
    instance_id: String,
}

impl AppState {
    pub fn new(config: Config, client: reqwest::Client, store: Store) -> Self {
        // Names this process's leases in the store.
        let instance_id = format!("{}-{}", std::process::id(), uuid::Uuid::now_v7().simple());
        Self {
            inner: Arc::new(Inner {
                config: ArcSwap::from_pointee(config),
                client,
                store,
                wake: Notify::new(),
                instance_id,
            }),
        }
    }

    /// The table in force now. Hold it for one request: a reload in the
    /// meantime does not change what this request sees.
    pub fn config(&self) -> Arc<Config> {
        self.inner.config.load_full()
    }

    pub fn replace_config(&self, config: Config) {
        self.inner.config.store(Arc::new(config));
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.inner.client
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    /// Tells the delivery worker there is work (a callback was stored, an
    /// attempt finished).
    pub fn wake_worker(&self) {
        self.inner.wake.notify_one();
    }

    pub async fn worker_woken(&self) {
        self.inner.wake.notified().await;
    }
}
