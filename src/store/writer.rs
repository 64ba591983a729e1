//! The one writer of a store, the same for both backends: a task that owns
//! the writing connection, takes whatever requests are waiting, runs them
//! in one transaction and commits once. Callbacks that arrive while a
//! commit is in flight share the next one (group commit), so durable
//! throughput grows with concurrency while each request is answered only
//! after its own row is committed.
//!
//! Attempt records need not be on disk before anything is answered (a lost
//! one means an attempt made again), and neither need the ledger's
//! checkouts (a lost one means one order not reconciled: the gateway died
//! within [`RECORD_DELAY`] of relaying it); both wait up to that long
//! instead of paying a commit of their own. Checkouts ride with the next
//! batch of accepts and run before them, so a callback always finds the
//! order it names. Attempt records wait out their window (or ride with a
//! claim): in a batch of accepts their pages would lengthen the commit a
//! provider waits for. Such ops are not sent on the writer's channel but put
//! in [`Later`]: only the first of a window wakes the writer (a wake-up per
//! checkout cost more than its row).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::backend::{Backend, Conn};
use super::later::Later;
use super::ops;
use super::orders::{self, NewOrder, Order, OrderClaim, OrderQueried};
use super::post::{Post, Round};
use super::sql::Sql;
use super::types::*;
use super::{Clock, StoreError};

/// Most requests committed in one transaction.
pub(super) const MAX_BATCH: usize = 512;
/// How long an attempt record may wait for accepts to share a commit with.
pub(super) const RECORD_DELAY: Duration = Duration::from_millis(20);

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub(super) enum Op {
    /// With the post of the runtime that asked, if it opened one.
    Accept(Box<NewCallback>, Reply<Accepted>, Option<Post>),
    Claim {
        owner: String,
        lease: Duration,
        limit: usize,
        id: Option<String>,
        reply: Reply<Vec<Claimed>>,
    },
    Record {
        seq: i64,
        attempt: AttemptRecord,
        outcome: Outcome,
        /// `None`: nobody waits; a failure is logged here.
        reply: Option<Reply<()>>,
    },
    Release {
        owner: String,
        reply: Reply<u64>,
    },
    Verify {
        seq: i64,
        note: VerifyNote,
        reply: Reply<u64>,
    },
    Replay {
        what: Replay,
        reply: Reply<u64>,
    },
    Purge(PurgePolicy, Reply<Purged>),
    /// Not answered: a failure is logged and counted here.
    Checkout(Box<NewOrder>),
    ClaimOrders(OrderClaim, Reply<Vec<Order>>),
    Queried(OrderQueried, Reply<u64>),
    Close(oneshot::Sender<()>),
    /// Ops are waiting in [`Later`].
    Nudge,
}

/// What one op produced, before its reply is sent.
enum Done {
    Accepted(Accepted),
    Claimed(Vec<Claimed>),
    Recorded,
    Count(u64),
    Purged(Purged),
    Orders(Vec<Order>),
}

struct Writer<B: Backend> {
    backend: Arc<B>,
    sql: Arc<Sql>,
    clock: Clock,
    later: Arc<Later>,
    /// Kept between batches; `None` after a failure, taken afresh next time.
    conn: Option<B::WriteConn>,
}

/// Starts the writer: a task, or a thread of its own with a one-thread
/// runtime for a backend whose connection blocks ([`Backend::WRITER_THREAD`]).
pub(super) fn spawn<B: Backend>(
    backend: Arc<B>,
    sql: Arc<Sql>,
    clock: Clock,
    later: Arc<Later>,
    conn: B::WriteConn,
) -> std::io::Result<mpsc::Sender<Op>> {
    let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
    let writer = Writer { backend, sql, clock, later, conn: Some(conn) };
    if !B::WRITER_THREAD {
        tokio::spawn(writer.run(rx));
        return Ok(tx);
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
    std::thread::Builder::new().name("store-writer".into()).spawn(move || runtime.block_on(writer.run(rx)))?;
    Ok(tx)
}

impl<B: Backend> Writer<B> {
    async fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        let mut batch: Vec<Op> = Vec::with_capacity(MAX_BATCH);
        loop {
            let next = match self.later.due() {
                None => rx.recv().await,
                Some(at) => match tokio::time::timeout_at(at, rx.recv()).await {
                    Ok(op) => op,
                    Err(_) => {
                        self.run_batch(self.later.take()).await;
                        continue;
                    }
                },
            };
            let Some(first) = next else {
                self.run_batch(self.later.take()).await;
                return;
            };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            // A Close is answered after the writes it came with are committed.
            let mut close = None;
            let mut ops = Vec::with_capacity(batch.len());
            for op in batch.drain(..) {
                match op {
                    Op::Close(tx) => close = Some(tx),
                    Op::Nudge => {}
                    other => ops.push(other),
                }
            }
            if close.is_some() || self.later.full() {
                ops.append(&mut self.later.take());
            } else if ops.iter().any(|op| matches!(op, Op::Accept(..))) {
                ops.append(&mut self.later.for_accepts(tokio::time::Instant::now()));
            } else if !ops.is_empty() {
                // Claims, replays, purges: nobody waits on these at the
                // door; what waits rides with them.
                ops.append(&mut self.later.take());
            }
            self.run_batch(ops).await;
            if let Some(done) = close {
                drop(self.conn.take());
                let _ = done.send(());
                return;
            }
        }
    }

    /// Runs every op in one transaction. If the transaction fails as a
    /// whole, each op is run again in its own, so that one bad op (or a
    /// deadlock with another instance's batch) fails only itself.
    async fn run_batch(&mut self, ops: Vec<Op>) {
        if ops.is_empty() {
            return;
        }
        if ops.len() > 1 {
            match self.transaction(&ops).await {
                Ok(results) => {
                    let mut round = Round::default();
                    ops.into_iter().zip(results).for_each(|(op, r)| answer(op, Ok(r), &mut round));
                    return;
                }
                Err(e) => tracing::warn!(error = %e, ops = ops.len(), "batched write failed; retrying one by one"),
            }
        }
        for op in ops {
            let mut round = Round::default();
            match self.transaction(std::slice::from_ref(&op)).await {
                Ok(mut results) => answer(op, Ok(results.remove(0)), &mut round),
                Err(e) => answer(op, Err(e), &mut round),
            }
        }
    }

    async fn transaction(&mut self, ops: &[Op]) -> Result<Vec<Done>, sqlx::Error> {
        let mut c = match self.conn.take() {
            Some(c) => c,
            None => self.backend.write_conn().await?,
        };
        if let Err(e) = c.execute(&self.sql.begin, Vec::new()).await {
            c.discard();
            return Err(e);
        }
        let result = batch(&mut c, &self.sql, ops, self.clock.now_ms()).await;
        let (conn, result) = ops::finish(c, &self.sql, result).await;
        self.conn = conn;
        result
    }
}

/// The ops of one transaction: accepts and records in multi-row
/// statements, the rest one by one, each op's result in its place.
async fn batch<C: Conn>(c: &mut C, sql: &Sql, ops: &[Op], now: i64) -> Result<Vec<Done>, sqlx::Error> {
    let checkouts: Vec<&NewOrder> =
        ops.iter().filter_map(|op| if let Op::Checkout(o) = op { Some(&**o) } else { None }).collect();
    super::checkouts::all(c, &sql.orders, &checkouts).await?;
    let accepts: Vec<&NewCallback> =
        ops.iter().filter_map(|op| if let Op::Accept(n, ..) = op { Some(&**n) } else { None }).collect();
    let mut accepted = ops::accept_all(c, sql, &accepts, now).await?.into_iter();
    let records: Vec<(i64, &AttemptRecord, Outcome)> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Record { seq, attempt, outcome, .. } => Some((*seq, attempt, *outcome)),
            _ => None,
        })
        .collect();
    super::records::record_all(c, sql, &records).await?;
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        results.push(match op {
            Op::Accept(..) => {
                Done::Accepted(accepted.next().ok_or_else(|| sqlx::Error::Protocol("accept result missing".into()))?)
            }
            Op::Record { .. } | Op::Checkout(_) => Done::Recorded,
            Op::Claim { owner, lease, limit, id, .. } => {
                Done::Claimed(ops::claim(c, sql, owner, *lease, *limit, id.as_deref(), now).await?)
            }
            Op::Release { owner, .. } => Done::Count(c.execute(&sql.release, vec![owner.as_str().into()]).await?),
            Op::Verify { seq, note, .. } => Done::Count(ops::verify_note(c, sql, *seq, note, now).await?),
            Op::Replay { what, .. } => Done::Count(ops::replay(c, sql, what, now).await?),
            Op::Purge(policy, _) => Done::Purged(ops::purge(c, sql, policy).await?),
            Op::ClaimOrders(which, _) => Done::Orders(orders::claim(c, &sql.orders, which).await?),
            Op::Queried(q, _) => Done::Count(orders::queried(c, &sql.orders, q, now).await?),
            Op::Close(_) | Op::Nudge => continue,
        });
    }
    Ok(results)
}

/// Sends `op` its result; an accept's through `round` (its runtime's post,
/// woken once for the whole batch when `round` is dropped).
fn answer(op: Op, result: Result<Done, sqlx::Error>, round: &mut Round) {
    fn picked<T>(r: Result<Done, sqlx::Error>, pick: impl FnOnce(Done) -> Option<T>) -> Result<T, StoreError> {
        let r = r.and_then(|d| pick(d).ok_or_else(|| sqlx::Error::Protocol("writer answered the wrong kind".into())));
        r.map_err(StoreError::from)
    }
    fn send<T>(tx: Reply<T>, r: Result<Done, sqlx::Error>, pick: impl FnOnce(Done) -> Option<T>) {
        let _ = tx.send(picked(r, pick));
    }
    match op {
        Op::Accept(_, tx, post) => {
            let r = picked(result, |d| if let Done::Accepted(a) = d { Some(a) } else { None });
            round.answer(post.as_ref(), tx, r);
        }
        Op::Claim { reply, .. } => send(reply, result, |d| if let Done::Claimed(c) = d { Some(c) } else { None }),
        Op::Record { reply: Some(reply), .. } => send(reply, result, |d| matches!(d, Done::Recorded).then_some(())),
        Op::Record { seq, reply: None, .. } => {
            if let Err(e) = result {
                tracing::error!(seq, error = %e, "cannot record a delivery attempt; it will be made again after the lease");
            }
        }
        Op::Queried(_, reply) => send(reply, result, |d| if let Done::Count(n) = d { Some(n) } else { None }),
        Op::ClaimOrders(_, reply) => send(reply, result, |d| if let Done::Orders(o) = d { Some(o) } else { None }),
        Op::Release { reply, .. } | Op::Replay { reply, .. } | Op::Verify { reply, .. } => {
            send(reply, result, |d| if let Done::Count(n) = d { Some(n) } else { None })
        }
        Op::Purge(_, tx) => send(tx, result, |d| if let Done::Purged(p) = d { Some(p) } else { None }),
        Op::Checkout(order) => {
            if let Err(e) = result {
                tracing::error!(tenant = order.tenant, order = order.merchant_trade_no, error = %e, "cannot record the checkout in the order ledger; it will not be reconciled");
                crate::metrics::reconcile_error("ledger_write");
            }
        }
        Op::Close(tx) => {
            let _ = tx.send(());
        }
        Op::Nudge => {}
    }
}
