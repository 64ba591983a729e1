//! What the delivery worker works with, built in `startup.rs` and shared
//! with the HTTP layer (not taken from it): the config in force (swapped
//! whole on reload), the one outbound client, the store, the name its
//! leases go under; and the producer's end of the hand-off queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use super::Handoff;
use crate::config::Config;
use crate::store::{Claimed, Store};

/// Freshly stored callbacks waiting for a delivery slot; beyond this they
/// wait in the store for their lease to run out.
const HANDOFF_QUEUE: usize = 10_000;

/// The worker's context: cheap to clone, one per process.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<ArcSwap<Config>>,
    client: crate::outbound::Outbound,
    store: Store,
    owner: String,
    /// The query budget per provider account (verification by query).
    budget: crate::verify::Budget,
    /// Orders the reconciler made a payment for (see `reconcile::Made`).
    made: crate::reconcile::Made,
    /// Set by the purger when young unroutable rows alone fill their caps.
    unroutable_full: AtomicBool,
    /// The runtime the worker was made on (the main one), where an attempt
    /// a request starts runs: requests are served on lanes that stop with
    /// the server (`http::lanes`).
    runtime: Option<tokio::runtime::Handle>,
}

impl Worker {
    pub fn new(config: Arc<ArcSwap<Config>>, client: impl Into<crate::outbound::Outbound>, store: Store) -> Self {
        let client = client.into();
        // Names this process's leases in the store.
        let owner = format!("{}-{}", std::process::id(), uuid::Uuid::now_v7().simple());
        let (budget, made) = (crate::verify::Budget::default(), crate::reconcile::Made::default());
        let unroutable_full = AtomicBool::new(false);
        let runtime = tokio::runtime::Handle::try_current().ok();
        Self { inner: Arc::new(Inner { config, client, store, owner, budget, made, unroutable_full, runtime }) }
    }

    /// Runs `task` on the worker's runtime (the current one when the worker
    /// was made outside any).
    pub fn spawn<T: Send + 'static>(
        &self,
        task: impl Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        match &self.inner.runtime {
            Some(runtime) => runtime.spawn(task),
            None => tokio::spawn(task),
        }
    }

    /// The table in force now; hold it for one attempt.
    pub fn config(&self) -> Arc<Config> {
        self.inner.config.load_full()
    }

    /// The reqwest client, for every call but those of [`Self::outbound`].
    pub fn client(&self) -> &reqwest::Client {
        self.inner.client.reqwest()
    }

    /// Deliveries, tenant API calls and the CVS post.
    pub fn outbound(&self) -> &crate::outbound::Outbound {
        &self.inner.client
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn budget(&self) -> &crate::verify::Budget {
        &self.inner.budget
    }

    pub fn made(&self) -> &crate::reconcile::Made {
        &self.inner.made
    }

    /// The lease owner this process claims under.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// Do young unroutable rows fill their caps (so new ones are not kept)?
    pub fn unroutable_full(&self) -> bool {
        self.inner.unroutable_full.load(Ordering::Relaxed)
    }

    pub(super) fn set_unroutable_full(&self, full: bool) {
        self.inner.unroutable_full.store(full, Ordering::Relaxed);
    }
}

/// The producer's end of the hand-off queue (the notify path's).
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Handoff>,
}

impl Handle {
    /// A queue: the handle for producers, the receiver for `run_worker`.
    pub fn channel() -> (Self, mpsc::Receiver<Handoff>) {
        let (tx, rx) = mpsc::channel(HANDOFF_QUEUE);
        (Self { tx }, rx)
    }

    /// Gives a freshly stored, leased callback to the worker. When the
    /// queue is full the row is still in the store, leased: the worker
    /// claims it once the lease runs out.
    pub fn hand_off(&self, callback: Claimed) {
        let id = callback.id.clone();
        if self.tx.try_send(Handoff { callback, leased_at: Instant::now() }).is_err() {
            tracing::debug!(delivery = %id, "delivery queue full; the worker takes it after its lease");
        }
    }
}
