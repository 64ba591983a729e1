//! A store on one backend: the writer's handle for writes, the backend's
//! read connections for reads. The same code for SQLite and PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::backend::Backend;
use super::later::{Later, Pushed};
use super::ops;
use super::orders::{self, NewOrder, Order, OrderClaim, OrderEvent, OrderFilter, OrderQueried};
use super::sql::Sql;
use super::types::*;
use super::writer::{self, Op};
use super::{Clock, StoreError};

/// A write not answered by then is reported as failed (the provider will
/// resend); notify paths must answer within 5 s even when storage hangs.
const WRITE_TIMEOUT: Duration = Duration::from_secs(4);

pub(super) struct Engine<B: Backend> {
    backend: Arc<B>,
    sql: Arc<Sql>,
    writer: mpsc::Sender<Op>,
    later: Arc<Later>,
    clock: Clock,
}

impl<B: Backend> Clone for Engine<B> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            sql: self.sql.clone(),
            writer: self.writer.clone(),
            later: self.later.clone(),
            clock: self.clock.clone(),
        }
    }
}

impl<B: Backend> Engine<B> {
    /// Migrates the store and starts its writer.
    /// `beside_a_server`: a command-line tool opening the store of a running
    /// gateway leaves that gateway's leases alone.
    pub(super) async fn start(backend: B, beside_a_server: bool) -> Result<Self, StoreError> {
        let sql = Arc::new(Sql::new(B::dialect()));
        let mut conn = backend.write_conn().await?;
        ops::migrate(&mut conn, &sql, !beside_a_server).await?;
        let (backend, clock, later) = (Arc::new(backend), Clock::default(), Arc::new(Later::default()));
        let writer = writer::spawn(backend.clone(), sql.clone(), clock.clone(), later.clone(), conn)
            .map_err(StoreError::Writer)?;
        Ok(Self { backend, sql, writer, later, clock })
    }

    pub(super) fn clock(&self) -> &Clock {
        &self.clock
    }

    async fn call<T>(&self, op: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Op) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.writer.send(op(tx)).await.map_err(|_| StoreError::WriterGone)?;
        Self::answer(rx).await
    }

    /// Queues an op that may wait for the writer's next batch, waking the
    /// writer only when [`Later`] asks for it.
    async fn defer(&self, op: Op) -> Result<(), StoreError> {
        match self.later.push(op) {
            Pushed::Queued => Ok(()),
            Pushed::Nudge => self.writer.send(Op::Nudge).await.map_err(|_| StoreError::WriterGone),
            Pushed::Full => Err(StoreError::Behind(super::later::LATER_CAP)),
        }
    }

    async fn answer<T>(rx: oneshot::Receiver<Result<T, StoreError>>) -> Result<T, StoreError> {
        match tokio::time::timeout(WRITE_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(StoreError::WriterGone),
            Err(_) => Err(StoreError::Timeout(WRITE_TIMEOUT)),
        }
    }

    pub(super) async fn accept(&self, new: NewCallback) -> Result<Accepted, StoreError> {
        let post = super::post::Post::here();
        self.call(|reply| Op::Accept(Box::new(new), reply, post)).await
    }

    pub(super) async fn claim(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
        id: Option<&str>,
    ) -> Result<Vec<Claimed>, StoreError> {
        let (owner, id) = (owner.to_owned(), id.map(str::to_owned));
        self.call(|reply| Op::Claim { owner, lease, limit, id, reply }).await
    }

    pub(super) async fn record(&self, seq: i64, attempt: AttemptRecord, outcome: Outcome) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.defer(Op::Record { seq, attempt, outcome, reply: Some(reply) }).await?;
        Self::answer(rx).await
    }

    pub(super) async fn record_later(
        &self,
        seq: i64,
        attempt: AttemptRecord,
        outcome: Outcome,
    ) -> Result<(), StoreError> {
        self.defer(Op::Record { seq, attempt, outcome, reply: None }).await
    }

    pub(super) async fn release(&self, owner: &str) -> Result<u64, StoreError> {
        let owner = owner.to_owned();
        self.call(|reply| Op::Release { owner, reply }).await
    }

    pub(super) async fn verify_note(&self, seq: i64, note: VerifyNote) -> Result<bool, StoreError> {
        Ok(self.call(|reply| Op::Verify { seq, note, reply }).await? > 0)
    }

    pub(super) async fn checkout(&self, order: NewOrder) -> Result<(), StoreError> {
        self.defer(Op::Checkout(Box::new(order))).await
    }

    pub(super) async fn claim_orders(&self, which: OrderClaim) -> Result<Vec<Order>, StoreError> {
        self.call(|reply| Op::ClaimOrders(which, reply)).await
    }

    pub(super) async fn queried(&self, q: OrderQueried) -> Result<u64, StoreError> {
        self.call(|reply| Op::Queried(q, reply)).await
    }

    pub(super) async fn orders(&self, f: &OrderFilter) -> Result<Vec<Order>, StoreError> {
        Ok(orders::list(self.backend.read_conn().await?, &self.sql.orders, f).await?)
    }

    pub(super) async fn reconciled_since(&self, since: i64) -> Result<Vec<(String, String)>, StoreError> {
        Ok(orders::reconciled_since(self.backend.read_conn().await?, &self.sql.orders, since).await?)
    }

    pub(super) async fn order(&self, tenant: &str, mtn: &str) -> Result<Option<(Order, Vec<OrderEvent>)>, StoreError> {
        Ok(orders::get(self.backend.read_conn().await?, &self.sql.orders, tenant, mtn).await?)
    }

    pub(super) async fn replay(&self, what: Replay) -> Result<u64, StoreError> {
        self.call(|reply| Op::Replay { what, reply }).await
    }

    pub(super) async fn purge(&self, policy: PurgePolicy) -> Result<Purged, StoreError> {
        self.call(|reply| Op::Purge(policy, reply)).await
    }

    pub(super) async fn get(&self, id: &CallbackId) -> Result<Option<CallbackDetail>, StoreError> {
        Ok(ops::get(self.backend.read_conn().await?, &self.sql, id.as_str()).await?)
    }

    pub(super) async fn list(&self, filter: &ListFilter) -> Result<Vec<CallbackSummary>, StoreError> {
        Ok(ops::list(self.backend.read_conn().await?, &self.sql, filter).await?)
    }

    pub(super) async fn stats(&self) -> Result<Stats, StoreError> {
        Ok(ops::stats(self.backend.read_conn().await?, &self.sql).await?)
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.backend.read_conn().await?;
        super::backend::Conn::execute(&mut conn, &self.sql.ping, Vec::new()).await?;
        Ok(())
    }

    /// Closes the connections after the last write has been committed.
    pub(super) async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.writer.send(Op::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
        self.backend.close().await;
    }
}
