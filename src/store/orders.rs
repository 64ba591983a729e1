//! The order ledger in the store (SPEC §9): what each relayed checkout
//! became, written once for both backends like the rest of the store. A
//! callback that names an order moves it in the same transaction that
//! stores the callback; the state only ever moves up
//! (`checkout → code_issued → failed | expired → paid`), so a late or
//! repeated notice cannot move a paid order back.

use std::sync::Arc;

use super::backend::{Arg, Conn, Dialect};
use super::rows::Cols;
use super::sql::CHUNKS;
use super::types::*;

type Result<T> = std::result::Result<T, sqlx::Error>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OrderState {
    Checkout,
    CodeIssued,
    Failed,
    Expired,
    Paid,
}

impl OrderState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Checkout => "checkout",
            Self::CodeIssued => "code_issued",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Paid => "paid",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Checkout, Self::CodeIssued, Self::Failed, Self::Expired, Self::Paid]
            .into_iter()
            .find(|v| v.as_str() == s)
    }

    /// A payment result came: nothing more to ask the provider.
    pub fn is_closed(self) -> bool {
        matches!(self, Self::Paid | Self::Failed | Self::Expired)
    }
}

/// The SQL rank of a state column or value: the state only moves up.
fn rank(expr: &str) -> String {
    format!(
        "(CASE {expr} WHEN 'paid' THEN 4 WHEN 'failed' THEN 3 WHEN 'expired' THEN 3 WHEN 'code_issued' THEN 1 ELSE 0 END)"
    )
}

/// A relayed checkout, recorded before the buyer gets the payment form.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub tenant: String,
    pub merchant_trade_no: String,
    pub merchant_id: Option<String>,
    pub amount: Option<i64>,
    pub payment_type: Option<String>,
    /// When the buyer checked out (the order's `created_at`): the writer
    /// commits it a little later, with its next batch.
    pub at: i64,
    /// When the reconciler first asks, if no payment result came by then.
    pub first_query_at: i64,
    /// A recurring order: (how long after a payment the next period is
    /// looked for, how many periods in all).
    pub recurring: Option<(i64, i64)>,
}

/// What a stored callback does to its order.
#[derive(Debug, Clone)]
pub struct OrderMove {
    pub merchant_trade_no: String,
    pub state: OrderState,
    /// For an issued ATM/CVS code: ask when it expires.
    pub next_query_at: Option<i64>,
    /// The callback was made by the reconciler.
    pub reconciled: bool,
    /// The event it represents (`paid`, `code_issued`, …), for the timeline.
    pub event: &'static str,
    /// A period notification: its `TotalSuccessTimes`.
    pub period: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub tenant: String,
    pub merchant_trade_no: String,
    pub merchant_id: Option<String>,
    pub amount: Option<i64>,
    pub payment_type: Option<String>,
    pub state: OrderState,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub next_query_at_ms: Option<i64>,
    pub query_tries: u32,
    pub last_query: Option<String>,
    pub reconciled_at_ms: Option<i64>,
    /// A recurring order: how long after a payment the next period is looked for.
    pub period_ms: Option<i64>,
    pub exec_times: Option<i64>,
}

/// One line of an order's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderEvent {
    pub at_ms: i64,
    /// `checkout`, `callback`, `query`.
    pub kind: String,
    pub callback_id: Option<String>,
    pub detail: Option<String>,
}

/// Which due orders one reconciliation round leases, and until when.
#[derive(Debug, Clone)]
pub struct OrderClaim {
    pub owner: String,
    /// The round's time (an injected clock in tests).
    pub now: i64,
    pub until: i64,
    pub limit: usize,
    /// Only this tenant's orders (`payrelay reconcile --tenant`).
    pub tenant: Option<String>,
}

/// What one reconciliation query found, and what follows for its order.
#[derive(Debug, Clone)]
pub struct OrderQueried {
    pub tenant: String,
    pub merchant_trade_no: String,
    /// The state the answer moves the order to (still only upwards).
    pub state: Option<OrderState>,
    /// Ask again then; `None`: never again.
    pub next_query_at: Option<i64>,
    /// Whether the query counts against the schedule (a paused merchant's does not).
    pub counts: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub tenant: Option<String>,
    pub state: Option<OrderState>,
    /// An order number (exact), or a part of one.
    pub q: Option<String>,
    pub limit: u32,
    /// Only orders created before this (the cursor of the previous page).
    pub before_ms: Option<i64>,
    /// Only orders due for a query at this time.
    pub due_at: Option<i64>,
}

const ORDER_COLS: &str = "tenant, merchant_trade_no, merchant_id, amount, payment_type, state, created_at, updated_at,
    next_query_at, query_tries, last_query, reconciled_at, period_ms, exec_times";

/// The ledger's statements, spelled for one backend.
pub(super) struct OrderSql {
    /// A batch's checkouts, one statement per [`super::sql::CHUNKS`] size.
    pub(super) checkouts: Vec<Arc<str>>,
    pub(super) checkout_events: Vec<Arc<str>>,
    moved: Arc<str>,
    event: Arc<str>,
    claim: Arc<str>,
    queried: Arc<str>,
    list: Arc<str>,
    get: Arc<str>,
    timeline: Arc<str>,
    reconciled_since: Arc<str>,
}

impl OrderSql {
    pub(super) fn new(spell: &dyn Fn(&str) -> Arc<str>, d: &Dialect) -> Self {
        let sized = |f: &dyn Fn(usize) -> String| CHUNKS.iter().map(|&n| spell(&f(n))).collect::<Vec<_>>();
        let new_rank = rank("$3");
        let old_rank = rank("state");
        Self {
            checkouts: sized(&super::checkouts::upsert),
            checkout_events: sized(&super::checkouts::events),
            moved: spell(&format!(
                "UPDATE orders SET
                     state = CASE WHEN {new_rank} > {old_rank} THEN $3 ELSE state END,
                     next_query_at = CASE WHEN $3 = 'paid' AND period_ms IS NOT NULL THEN $4 + period_ms
                                          WHEN {new_rank} >= 3 OR {old_rank} >= 3 THEN NULL
                                          WHEN $3 = 'code_issued' AND {old_rank} < 1 THEN $5 ELSE next_query_at END,
                     reconciled_at = CASE WHEN $6 THEN $4 ELSE reconciled_at END,
                     updated_at = $4
                 WHERE tenant = $1 AND merchant_trade_no = $2"
            )),
            event: spell(
                "INSERT INTO order_events (tenant, merchant_trade_no, at, kind, callback_id, detail)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            ),
            claim: spell(&format!(
                "UPDATE orders SET query_owner = $1, query_until = $2
                 WHERE (tenant, merchant_trade_no) IN (
                     SELECT tenant, merchant_trade_no FROM orders
                     WHERE next_query_at <= $3 AND (query_until IS NULL OR query_until < $3)
                       AND (CAST($5 AS TEXT) IS NULL OR tenant = $5)
                     ORDER BY next_query_at LIMIT $4 {})
                 RETURNING {ORDER_COLS}",
                d.skip_locked
            )),
            queried: spell(&format!(
                "UPDATE orders SET
                     state = CASE WHEN $3 IS NOT NULL AND {new_rank} > {old_rank} THEN $3 ELSE state END,
                     next_query_at = $4, query_tries = query_tries + $5, last_query = $6, updated_at = $7,
                     query_owner = NULL, query_until = NULL
                 WHERE tenant = $1 AND merchant_trade_no = $2"
            )),
            list: spell(&format!(
                "SELECT {ORDER_COLS} FROM orders
                 WHERE (CAST($1 AS TEXT) IS NULL OR tenant = $1) AND (CAST($2 AS TEXT) IS NULL OR state = $2)
                   AND (CAST($3 AS TEXT) IS NULL OR merchant_trade_no LIKE $3)
                   AND (CAST($4 AS BIGINT) IS NULL OR created_at < $4)
                   AND (CAST($6 AS BIGINT) IS NULL OR next_query_at <= $6)
                 ORDER BY created_at DESC LIMIT $5"
            )),
            get: spell(&format!("SELECT {ORDER_COLS} FROM orders WHERE tenant = $1 AND merchant_trade_no = $2")),
            reconciled_since: spell("SELECT tenant, merchant_trade_no FROM orders WHERE reconciled_at >= $1"),
            timeline: spell(
                "SELECT at, kind, callback_id, detail FROM order_events
                 WHERE tenant = $1 AND merchant_trade_no = $2 ORDER BY at, kind <> 'checkout', kind",
            ),
        }
    }
}

fn order(r: &impl Cols) -> Result<Order> {
    let state = r.text("state")?;
    Ok(Order {
        tenant: r.text("tenant")?,
        merchant_trade_no: r.text("merchant_trade_no")?,
        merchant_id: r.opt_text("merchant_id")?,
        amount: r.opt_int("amount")?,
        payment_type: r.opt_text("payment_type")?,
        state: OrderState::parse(&state)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown order state {state:?} in the store").into()))?,
        created_at_ms: r.int("created_at")?,
        updated_at_ms: r.int("updated_at")?,
        next_query_at_ms: r.opt_int("next_query_at")?,
        query_tries: u32::try_from(r.int("query_tries")?).unwrap_or(u32::MAX),
        last_query: r.opt_text("last_query")?,
        reconciled_at_ms: r.opt_int("reconciled_at")?,
        period_ms: r.opt_int("period_ms")?,
        exec_times: r.opt_int("exec_times")?,
    })
}

async fn event<C: Conn>(
    c: &mut C,
    sql: &OrderSql,
    (tenant, mtn): (&str, &str),
    at: i64,
    kind: &str,
    id: Option<&str>,
    detail: &str,
) -> Result<()> {
    let args =
        vec![Arg::from(tenant), Arg::from(mtn), Arg::from(at), Arg::from(kind), Arg::from(id), Arg::from(detail)];
    c.execute(&sql.event, args).await.map(drop)
}

/// The order move of a callback just stored as `id` for `tenant`.
pub(super) async fn moved<C: Conn>(
    c: &mut C,
    sql: &OrderSql,
    tenant: &str,
    id: &CallbackId,
    m: &OrderMove,
    now: i64,
) -> Result<()> {
    let args = vec![
        Arg::from(tenant),
        Arg::from(m.merchant_trade_no.as_str()),
        Arg::from(m.state.as_str()),
        Arg::from(now),
        Arg::from(m.next_query_at),
        Arg::from(m.reconciled),
    ];
    if c.execute(&sql.moved, args).await? == 0 {
        return Ok(()); // not a relayed checkout: no order to move
    }
    let what = match m.period {
        Some(k) => format!("{} #{k}", m.event),
        None => m.event.to_owned(),
    };
    let detail = if m.reconciled { format!("{what} (made by the reconciler)") } else { what };
    event(c, sql, (tenant, &m.merchant_trade_no), now, "callback", Some(id.as_str()), &detail).await
}

pub(super) async fn claim<C: Conn>(c: &mut C, sql: &OrderSql, w: &OrderClaim) -> Result<Vec<Order>> {
    let args = vec![
        Arg::from(w.owner.as_str()),
        Arg::from(w.until),
        Arg::from(w.now),
        Arg::from(i64::try_from(w.limit).unwrap_or(i64::MAX)),
        Arg::from(w.tenant.as_deref()),
    ];
    c.fetch(&sql.claim, args).await?.iter().map(order).collect()
}

pub(super) async fn queried<C: Conn>(c: &mut C, sql: &OrderSql, q: &OrderQueried, now: i64) -> Result<u64> {
    let args = vec![
        Arg::from(q.tenant.as_str()),
        Arg::from(q.merchant_trade_no.as_str()),
        Arg::from(q.state.map(OrderState::as_str)),
        Arg::from(q.next_query_at),
        Arg::from(i64::from(q.counts)),
        Arg::from(q.detail.as_str()),
        Arg::from(now),
    ];
    let n = c.execute(&sql.queried, args).await?;
    event(c, sql, (&q.tenant, &q.merchant_trade_no), now, "query", None, &q.detail).await?;
    Ok(n)
}

pub(super) async fn list<C: Conn>(mut c: C, sql: &OrderSql, f: &OrderFilter) -> Result<Vec<Order>> {
    let pattern = f.q.as_deref().map(|q| format!("%{}%", q.replace(['%', '_'], "")));
    let args = vec![
        Arg::from(f.tenant.as_deref()),
        Arg::from(f.state.map(OrderState::as_str)),
        Arg::from(pattern.as_deref()),
        Arg::from(f.before_ms),
        Arg::from(i64::from(f.limit)),
        Arg::from(f.due_at),
    ];
    c.fetch(&sql.list, args).await?.iter().map(order).collect()
}

/// The orders the reconciler made a payment for since `since` (unix ms).
pub(super) async fn reconciled_since<C: Conn>(mut c: C, sql: &OrderSql, since: i64) -> Result<Vec<(String, String)>> {
    let rows = c.fetch(&sql.reconciled_since, vec![Arg::from(since)]).await?;
    rows.iter().map(|r| Ok((r.text("tenant")?, r.text("merchant_trade_no")?))).collect()
}

/// The order and its timeline.
pub(super) async fn get<C: Conn>(
    mut c: C,
    sql: &OrderSql,
    tenant: &str,
    mtn: &str,
) -> Result<Option<(Order, Vec<OrderEvent>)>> {
    let key = || vec![Arg::from(tenant), Arg::from(mtn)];
    let Some(row) = c.fetch(&sql.get, key()).await?.into_iter().next() else { return Ok(None) };
    let events = c
        .fetch(&sql.timeline, key())
        .await?
        .iter()
        .map(|r| {
            Ok(OrderEvent {
                at_ms: r.int("at")?,
                kind: r.text("kind")?,
                callback_id: r.opt_text("callback_id")?,
                detail: r.opt_text("detail")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some((order(&row)?, events)))
}
