//! What every handler and the delivery worker share: the current config
//! (swapped whole on reload), the one outbound HTTP client, the store, and
//! the queue that hands fresh callbacks to the delivery worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use std::time::Instant;

use tokio::sync::mpsc;

use super::throttle::Throttle;
use crate::config::Config;
use crate::delivery::Handoff;
use crate::store::{Claimed, Store};

/// Failed admin logins allowed per address per minute.
const ADMIN_FAILURES_PER_MINUTE: u32 = 10;

/// Freshly stored callbacks waiting for a delivery slot; beyond this they
/// wait in the store for their lease to run out.
const HANDOFF_QUEUE: usize = 10_000;

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: ArcSwap<Config>,
    client: reqwest::Client,
    store: Store,
    instance_id: String,
    handoff: mpsc::Sender<Handoff>,
    /// Refused callbacks kept per source address (`server.refused_per_minute`).
    refused: Throttle,
    admin_failures: Throttle,
    /// Set by the purger when young unroutable rows alone fill their caps:
    /// new unroutable callbacks are then answered but not kept.
    unroutable_full: AtomicBool,
}

impl AppState {
    /// The state, and the receiving end of the hand-off queue for the worker.
    pub fn new(config: Config, client: reqwest::Client, store: Store) -> (Self, mpsc::Receiver<Handoff>) {
        // Names this process's leases in the store.
        let instance_id = format!("{}-{}", std::process::id(), uuid::Uuid::now_v7().simple());
        let (handoff, rx) = mpsc::channel(HANDOFF_QUEUE);
        let refused = Throttle::per_minute(config.server.refused_per_minute);
        let inner = Inner {
            config: ArcSwap::from_pointee(config),
            client,
            store,
            instance_id,
            handoff,
            refused,
            admin_failures: Throttle::per_minute(ADMIN_FAILURES_PER_MINUTE),
            unroutable_full: AtomicBool::new(false),
        };
        (Self { inner: Arc::new(inner) }, rx)
    }

    /// Gives a freshly stored, leased callback to the worker. When the
    /// queue is full the row is still in the store, leased: the worker
    /// claims it once the lease runs out.
    pub fn hand_off(&self, callback: Claimed) {
        let id = callback.id.clone();
        if self.inner.handoff.try_send(Handoff { callback, leased_at: Instant::now() }).is_err() {
            tracing::debug!(delivery = %id, "delivery queue full; the worker takes it after its lease");
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

    pub fn refused_throttle(&self) -> &Throttle {
        &self.inner.refused
    }

    pub fn admin_failure_throttle(&self) -> &Throttle {
        &self.inner.admin_failures
    }

    pub fn unroutable_full(&self) -> bool {
        self.inner.unroutable_full.load(Ordering::Relaxed)
    }

    pub fn set_unroutable_full(&self, full: bool) {
        self.inner.unroutable_full.store(full, Ordering::Relaxed);
    }
}
