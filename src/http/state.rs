//! What every handler shares: the current config (swapped whole on
//! reload, the same one the worker reads), the delivery worker's context
//! (client, store, lease owner) and the hand-off queue's producer end, and
//! the HTTP layer's own per-address throttles.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::delivery::{Handle, Worker};
use crate::store::Store;
use crate::throttle::Throttle;

/// Failed admin logins allowed per address per minute.
const ADMIN_FAILURES_PER_MINUTE: u32 = 10;

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<ArcSwap<Config>>,
    worker: Worker,
    handoff: Handle,
    /// Refused callbacks kept per source address (`server.refused_per_minute`).
    refused: Throttle,
    admin_failures: Throttle,
    /// Duplicates of delivered callbacks, answered from memory.
    recent: crate::relay::Recent,
}

impl AppState {
    /// `config` is the one the worker reads too (a reload swaps both).
    pub fn new(config: Arc<ArcSwap<Config>>, worker: Worker, handoff: Handle) -> Self {
        let refused = Throttle::per_minute(config.load().server.refused_per_minute);
        let admin_failures = Throttle::per_minute(ADMIN_FAILURES_PER_MINUTE);
        let recent = crate::relay::Recent::default();
        Self { inner: Arc::new(Inner { config, worker, handoff, refused, admin_failures, recent }) }
    }

    pub fn recent(&self) -> &crate::relay::Recent {
        &self.inner.recent
    }

    /// The hand-off queue's producer end (freshly stored callbacks).
    pub fn handoff(&self) -> &Handle {
        &self.inner.handoff
    }

    /// The table in force now. Hold it for one request: a reload in the
    /// meantime does not change what this request sees.
    pub fn config(&self) -> Arc<Config> {
        self.inner.config.load_full()
    }

    pub fn replace_config(&self, config: Config) {
        self.inner.config.store(Arc::new(config));
    }

    /// The delivery worker's context (inline delivery, replay, purge).
    pub fn worker(&self) -> &Worker {
        &self.inner.worker
    }

    pub fn client(&self) -> &reqwest::Client {
        self.inner.worker.client()
    }

    /// Deliveries, tenant API calls and the CVS post.
    pub fn outbound(&self) -> &crate::outbound::Outbound {
        self.inner.worker.outbound()
    }

    pub fn store(&self) -> &Store {
        self.inner.worker.store()
    }

    pub fn instance_id(&self) -> &str {
        self.inner.worker.owner()
    }

    pub fn refused_throttle(&self) -> &Throttle {
        &self.inner.refused
    }

    pub fn admin_failure_throttle(&self) -> &Throttle {
        &self.inner.admin_failures
    }

    pub fn unroutable_full(&self) -> bool {
        self.inner.worker.unroutable_full()
    }

    /// The HTTP layer's upkeep, after each purge: forget idle addresses.
    pub fn forget_idle(&self) {
        self.inner.refused.forget_idle();
        self.inner.admin_failures.forget_idle();
    }
}
