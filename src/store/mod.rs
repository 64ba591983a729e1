//! The durable outbox. Accepting a callback is one transaction (dedup check,
//! insert, commit) and only then is the provider answered; the delivery
//! worker claims due rows with a lease, records each attempt, and moves a
//! row to `delivered` or `dead`. The store is the queue: nothing about a
//! callback lives only in memory.
//!
//! [`Store`] is the one interface. Below it everything is written once:
//! one writer (`writer.rs`, group commit), one SQL module (`sql.rs` for the
//! statements, `ops.rs` for what each operation does), one row mapping
//! (`rows.rs`); `backend.rs` holds only what SQLite (`sqlite.rs`, the
//! embedded default) and PostgreSQL (`postgres.rs`, several instances)
//! spell differently.

mod backend;
mod checkouts;
mod engine;
mod later;
mod ops;
mod orders;
mod post;
mod postgres;
mod records;
mod rows;
mod sql;
mod sqlite;
mod sqlite_writer;
mod types;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use engine::Engine;
pub use orders::{NewOrder, Order, OrderClaim, OrderEvent, OrderFilter, OrderMove, OrderQueried, OrderState};
pub use post::open_here as open_post_here;
use postgres::PgBackend;
use sqlite::SqliteBackend;
pub use types::*;

use crate::config::{StorageConfig, StorageUrl};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Db(#[from] sqlx::Error),
    #[error("storage: cannot create {path}: {source}")]
    CreateDir { path: String, source: std::io::Error },
    #[error("storage: the writer has stopped")]
    WriterGone,
    #[error("storage: cannot start the writer: {0}")]
    Writer(std::io::Error),
    #[error("storage: no answer within {0:?}")]
    Timeout(Duration),
    #[error("storage: the writer is behind ({0} writes wait already)")]
    Behind(usize),
}

/// The callback store, whichever backend the config names.
#[derive(Clone)]
pub struct Store(Backends);

#[derive(Clone)]
enum Backends {
    Sqlite(Engine<SqliteBackend>),
    Postgres(Engine<PgBackend>),
}

/// The same call on whichever backend this is.
macro_rules! backend {
    ($self:ident, $s:ident => $call:expr) => {
        match &$self.0 {
            Backends::Sqlite($s) => $call,
            Backends::Postgres($s) => $call,
        }
    };
}

impl Store {
    pub async fn open(storage: &StorageConfig) -> Result<Self, StoreError> {
        Self::open_as(storage, false).await
    }

    /// Opens the store of a gateway that may be running (`payrelay
    /// reconcile`): its leases are left alone.
    pub async fn open_beside_a_server(storage: &StorageConfig) -> Result<Self, StoreError> {
        Self::open_as(storage, true).await
    }

    async fn open_as(storage: &StorageConfig, beside: bool) -> Result<Self, StoreError> {
        match &storage.url {
            StorageUrl::Sqlite { path } => {
                Ok(Self(Backends::Sqlite(Engine::start(SqliteBackend::open(path).await?, beside).await?)))
            }
            StorageUrl::Postgres(url) => {
                let backend = PgBackend::open(url.expose(), storage.pool_size, storage.connect_timeout).await?;
                Ok(Self(Backends::Postgres(Engine::start(backend, beside).await?)))
            }
        }
    }

    /// The clock the store stamps its rows with (and judges dedup windows
    /// by): the system's, which a test can move forward.
    pub fn clock(&self) -> &Clock {
        backend!(self, s => s.clock())
    }

    /// Dedup check and insert, committed durably before this returns.
    pub async fn accept(&self, new: NewCallback) -> Result<Accepted, StoreError> {
        backend!(self, s => s.accept(new).await)
    }

    /// Leases up to `limit` pending callbacks whose next attempt is due.
    pub async fn claim_due(&self, owner: &str, lease: Duration, limit: usize) -> Result<Vec<Claimed>, StoreError> {
        backend!(self, s => s.claim(owner, lease, limit, None).await)
    }

    /// Leases one pending callback now, whatever its schedule (inline
    /// delivery, replay); `None` if it is not pending or is leased elsewhere.
    pub async fn claim_one(
        &self,
        id: &CallbackId,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Claimed>, StoreError> {
        backend!(self, s => Ok(s.claim(owner, lease, 1, Some(id.as_str())).await?.into_iter().next()))
    }

    /// Records one attempt and its consequence, releasing the lease.
    pub async fn record(&self, seq: i64, attempt: AttemptRecord, outcome: Outcome) -> Result<(), StoreError> {
        backend!(self, s => s.record(seq, attempt, outcome).await)
    }

    /// The same, without waiting for the commit (within 20 ms, with the
    /// writer's next batch): the error returned is only that the writer is
    /// gone or too far behind to queue it; a failure to commit is logged by
    /// the writer. Either way the lease runs out and the attempt is made
    /// again (at least once).
    pub async fn record_later(&self, seq: i64, attempt: AttemptRecord, outcome: Outcome) -> Result<(), StoreError> {
        backend!(self, s => s.record_later(seq, attempt, outcome).await)
    }

    /// Keeps what the provider's query API said of pending callback `seq`
    /// and moves it on (`false`: it was not pending any more).
    pub async fn verify_note(&self, seq: i64, note: VerifyNote) -> Result<bool, StoreError> {
        backend!(self, s => s.verify_note(seq, note).await)
    }

    /// Hands a relayed checkout to the writer for the ledger (SPEC §9): it
    /// is committed with the next batch, within 20 ms, and before any
    /// callback written after it. A failure to commit is logged and counted
    /// by the writer; an error here means the writer is gone.
    pub async fn checkout(&self, order: NewOrder) -> Result<(), StoreError> {
        backend!(self, s => s.checkout(order).await)
    }

    /// Leases the orders due for a reconciliation query that `which` names.
    pub async fn claim_orders(&self, which: OrderClaim) -> Result<Vec<Order>, StoreError> {
        backend!(self, s => s.claim_orders(which).await)
    }

    /// Keeps what a reconciliation query found and releases the order.
    pub async fn queried(&self, q: OrderQueried) -> Result<u64, StoreError> {
        backend!(self, s => s.queried(q).await)
    }

    pub async fn orders(&self, filter: &OrderFilter) -> Result<Vec<Order>, StoreError> {
        backend!(self, s => s.orders(filter).await)
    }

    /// (tenant, order number) of the orders the reconciler made a payment for since `since`.
    pub async fn reconciled_since(&self, since: i64) -> Result<Vec<(String, String)>, StoreError> {
        backend!(self, s => s.reconciled_since(since).await)
    }

    /// An order and its timeline.
    pub async fn order(
        &self,
        tenant: &str,
        merchant_trade_no: &str,
    ) -> Result<Option<(Order, Vec<OrderEvent>)>, StoreError> {
        backend!(self, s => s.order(tenant, merchant_trade_no).await)
    }

    /// Gives back every lease `owner` holds (shutdown).
    pub async fn release(&self, owner: &str) -> Result<u64, StoreError> {
        backend!(self, s => s.release(owner).await)
    }

    /// Puts a `dead` callback back in the queue, due now (its attempts are
    /// kept and counting goes on). `false` if it is not dead.
    pub async fn requeue(&self, id: &CallbackId) -> Result<bool, StoreError> {
        Ok(self.replay(Replay::One { id: id.clone(), from: vec![Status::Dead] }).await? > 0)
    }

    /// Puts callbacks back in the queue, due now; how many moved. Attempts
    /// are kept and their numbering goes on.
    pub async fn replay(&self, what: Replay) -> Result<u64, StoreError> {
        backend!(self, s => s.replay(what).await)
    }

    pub async fn purge(&self, policy: PurgePolicy) -> Result<Purged, StoreError> {
        backend!(self, s => s.purge(policy).await)
    }

    pub async fn get(&self, id: &CallbackId) -> Result<Option<CallbackDetail>, StoreError> {
        backend!(self, s => s.get(id).await)
    }

    pub async fn list(&self, filter: &ListFilter) -> Result<Vec<CallbackSummary>, StoreError> {
        backend!(self, s => s.list(filter).await)
    }

    /// Counts by status, and the oldest pending callback's receive time.
    pub async fn stats(&self) -> Result<Stats, StoreError> {
        backend!(self, s => s.stats().await)
    }

    /// Does storage answer? (`/readyz`)
    pub async fn ping(&self) -> Result<(), StoreError> {
        backend!(self, s => s.ping().await)
    }

    /// Closes the connections after the last write has been committed.
    pub async fn close(&self) {
        backend!(self, s => s.close().await)
    }
}

/// The system clock plus an offset that only moves forward: what a test
/// advances instead of sleeping through a dedup window.
#[derive(Clone, Default)]
pub struct Clock(Arc<AtomicI64>);

impl Clock {
    pub fn now_ms(&self) -> i64 {
        now_ms().saturating_add(self.0.load(Ordering::Relaxed))
    }

    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(ms(by), Ordering::Relaxed);
    }
}

/// Unix time in milliseconds: what every timestamp in the store is.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

pub fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
