//! One round of reconciliation, and the task that runs a round every
//! second: claim the orders due for a query (a lease, so that on PostgreSQL
//! each order is asked by one instance at a time), ask Funpoint about each
//! within the merchant's query budget, and act on the verified answer.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, Tenant};
use crate::delivery::Worker;
use crate::form::FormFields;
use crate::store::{NewCallback, Order, OrderClaim, OrderMove, OrderQueried, OrderState, Status, StoreError};
use crate::verify::Verdict;

/// Orders asked about in one round.
const ROUND: usize = 32;
/// How long one instance holds an order it is asking about.
const LEASE: Duration = Duration::from_secs(60);
const EVERY: Duration = Duration::from_secs(1);

/// What a round did with one order (for `payrelay reconcile` and the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    pub tenant: String,
    pub merchant_trade_no: String,
    pub detail: String,
    /// A notification was made and queued for the shop.
    pub found_paid: bool,
}

/// Runs a round every second until `shutdown`.
pub async fn run_reconciler(worker: Worker, shutdown: CancellationToken) {
    // What earlier runs (and other instances) reconciled, before the first
    // notification of this run is answered.
    worker.made().refresh(worker.store(), worker.store().clock().now_ms()).await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
        if let Err(e) = reconcile_at(&worker, worker.store().clock().now_ms()).await {
            tracing::warn!(error = %e, "reconciliation round failed; trying again");
        }
    }
}

/// One round at `now` (an injected clock in tests).
pub async fn reconcile_at(worker: &Worker, now: i64) -> Result<Vec<Reconciled>, StoreError> {
    reconcile_tenant_at(worker, now, None).await
}

/// One round at `now` for one tenant's orders only, or every tenant's.
pub async fn reconcile_tenant_at(
    worker: &Worker,
    now: i64,
    tenant: Option<&str>,
) -> Result<Vec<Reconciled>, StoreError> {
    let config = worker.config();
    worker.made().refresh(worker.store(), now).await;
    let until = now + crate::store::ms(LEASE);
    let which =
        OrderClaim { owner: worker.owner().to_owned(), now, until, limit: ROUND, tenant: tenant.map(str::to_owned) };
    let due = worker.store().claim_orders(which).await?;
    let mut done = Vec::with_capacity(due.len());
    for order in due {
        let (queried, found_paid) = one(worker, &config, &order, now).await;
        let detail = queried.detail.clone();
        if let Err(e) = worker.store().queried(queried).await {
            crate::metrics::reconcile_error("store");
            tracing::error!(order = order.merchant_trade_no, error = %e, "cannot keep the reconciliation's outcome");
        }
        tracing::info!(tenant = order.tenant, order = order.merchant_trade_no, detail, "order reconciled");
        done.push(Reconciled { tenant: order.tenant, merchant_trade_no: order.merchant_trade_no, detail, found_paid });
    }
    Ok(done)
}

pub(super) fn outcome(
    order: &Order,
    state: Option<OrderState>,
    next: Option<i64>,
    counts: bool,
    detail: String,
) -> OrderQueried {
    OrderQueried {
        tenant: order.tenant.clone(),
        merchant_trade_no: order.merchant_trade_no.clone(),
        state,
        next_query_at: next,
        counts,
        detail,
    }
}

/// Asks about one order and says what follows; `true` when a payment was
/// found and its notification made.
async fn one(worker: &Worker, config: &Config, order: &Order, now: i64) -> (OrderQueried, bool) {
    let close = |state, detail: &str| outcome(order, state, None, false, detail.to_owned());
    let Some(tenant) = config.table.tenant(&order.tenant) else {
        return (close(None, "the tenant is no longer in the routing table"), false);
    };
    let Some(section) = tenant.funpoint.as_ref() else {
        return (close(None, "the tenant has no Funpoint section"), false);
    };
    let (Some(keys), Some(merchant)) = (&section.keys, &section.merchant_id) else {
        return (close(None, "the tenant has no Funpoint keys or merchant_id to query with"), false);
    };
    let account = crate::verify::account(tenant, crate::routing::Provider::Funpoint);
    if let Err(wait) = worker.budget().take(&account, config.reconcile.per_merchant_per_second) {
        let detail = "waiting for the merchant's query budget".to_owned();
        return (outcome(order, None, Some(now + crate::store::ms(wait) + 1), false, detail), false);
    }
    let api = config.apis.of(crate::routing::Provider::Funpoint);
    let m = crate::verify::FunpointMerchant { id: merchant, keys, alg: section.encrypt_type };
    let mtn = &order.merchant_trade_no;
    if order.state == OrderState::Paid && order.period_ms.is_some() {
        return match crate::verify::funpoint_period_info(worker.client(), api, &m, mtn).await {
            Ok(info) => super::periods::judge(worker, config, tenant, order, &info, now).await,
            Err(verdict) => (unanswered(worker, config, order, &account, verdict, now), false),
        };
    }
    let answer = crate::verify::funpoint_trade_info(worker.client(), api, &m, mtn).await;
    match answer {
        Ok(found) => judge(worker, config, tenant, order, &found, now).await,
        Err(verdict) => (unanswered(worker, config, order, &account, verdict, now), false),
    }
}

/// No usable answer: asked again on the schedule (a pause the provider
/// asked for, such as Funpoint's 403, does not count against it).
fn unanswered(worker: &Worker, config: &Config, order: &Order, account: &str, v: Verdict, now: i64) -> OrderQueried {
    crate::metrics::reconcile_error("query");
    if let Some(pause) = v.retry_after {
        worker.budget().pause(account, pause);
        return outcome(order, None, Some(now + crate::store::ms(pause)), false, v.detail);
    }
    let next = next_try(config, order, now);
    outcome(order, next.map_or(Some(OrderState::Expired), |_| None), next, true, v.detail)
}

/// When to ask again, or `None` when the reconciler gives up on the order.
fn next_try(config: &Config, order: &Order, now: i64) -> Option<i64> {
    let give_up = order.created_at_ms + crate::store::ms(config.reconcile.give_up);
    let wait = config.reconcile.retry.get(usize::try_from(order.query_tries).unwrap_or(usize::MAX))?;
    let at = now + crate::store::ms(*wait);
    (now < give_up).then_some(at.min(give_up))
}

async fn judge(
    worker: &Worker,
    config: &Config,
    tenant: &Tenant,
    order: &Order,
    found: &FormFields,
    now: i64,
) -> (OrderQueried, bool) {
    let status = found.get("TradeStatus").unwrap_or_default();
    let amount = found.get("TradeAmt").and_then(|a| a.trim().parse::<i64>().ok());
    match status {
        "1" if order.amount.is_some() && amount != order.amount => {
            let detail =
                format!("paid at Funpoint, but for {amount:?}, not the checkout's {:?}: nothing made", order.amount);
            (outcome(order, None, None, true, detail), false)
        }
        "1" => match make_notification(worker, config, tenant, order, found).await {
            Ok(()) => {
                crate::metrics::reconciled_found(tenant.id.as_str());
                let detail =
                    "TradeStatus 1: paid at Funpoint with no notification delivered; notification made".to_owned();
                // A recurring order is looked at again after its next period.
                let next = order.period_ms.map(|p| now + p);
                (outcome(order, Some(OrderState::Paid), next, true, detail), true)
            }
            Err(e) => {
                crate::metrics::reconcile_error("store");
                let detail = format!("paid at Funpoint, but the notification could not be stored ({e}); asking again");
                (outcome(order, None, Some(now + 60_000), false, detail), false)
            }
        },
        "10200095" => (
            outcome(
                order,
                Some(OrderState::Failed),
                None,
                true,
                "TradeStatus 10200095: the buyer never chose a method".to_owned(),
            ),
            false,
        ),
        other => {
            let expired = order.state == OrderState::CodeIssued && order.next_query_at_ms.is_some_and(|at| at <= now);
            let next = if expired { None } else { next_try(config, order, now) };
            let detail =
                format!("TradeStatus {other}: not paid{}", if next.is_none() { "; closed as expired" } else { "" });
            (outcome(order, next.map_or(Some(OrderState::Expired), |_| None), next, true, detail), false)
        }
    }
}

/// The ReturnURL notification Funpoint would have sent, from its verified
/// answer, signed with the tenant's keys so that the shop's own check
/// accepts it; stored and queued like any callback (`X-Payrelay-Source:
/// reconcile`), moving the order to paid in the same transaction.
async fn make_notification(
    worker: &Worker,
    config: &Config,
    tenant: &Tenant,
    order: &Order,
    found: &FormFields,
) -> Result<(), StoreError> {
    let get = |k: &str| found.get(k).unwrap_or_default().to_owned();
    let mut fields: Vec<(&str, String)> = vec![
        ("MerchantID", get("MerchantID")),
        ("MerchantTradeNo", order.merchant_trade_no.clone()),
        ("StoreID", get("StoreID")),
        ("RtnCode", "1".to_owned()),
        ("RtnMsg", "交易成功".to_owned()),
        ("TradeNo", get("TradeNo")),
        ("TradeAmt", get("TradeAmt")),
        ("PaymentDate", get("PaymentDate")),
        ("PaymentType", get("PaymentType")),
        ("PaymentTypeChargeFee", get("PaymentTypeChargeFee")),
        ("TradeDate", get("TradeDate")),
        ("SimulatePaid", "0".to_owned()),
    ];
    for k in ["CustomField1", "CustomField2", "CustomField3", "CustomField4"] {
        fields.push((k, get(k)));
    }
    let paid = OrderMove {
        merchant_trade_no: order.merchant_trade_no.clone(),
        state: OrderState::Paid,
        next_query_at: None,
        reconciled: true,
        event: "paid",
        period: None,
    };
    store_made(worker, config, tenant, order, fields, paid).await
}

/// Signs `fields` with the tenant's keys, stores them as a callback made
/// by the reconciler (`X-Payrelay-Source: reconcile`) for the worker to
/// deliver, and moves the order in the same transaction.
pub(super) async fn store_made(
    worker: &Worker,
    config: &Config,
    tenant: &Tenant,
    order: &Order,
    mut fields: Vec<(&str, String)>,
    moved: OrderMove,
) -> Result<(), StoreError> {
    if let Some(section) = tenant.funpoint.as_ref()
        && let Some(keys) = section.keys.as_ref()
    {
        let mac =
            crate::domain::CheckMac::compute(fields.iter().map(|(k, v)| (*k, v.as_str())), keys, section.encrypt_type);
        fields.push(("CheckMacValue", mac.as_str().to_owned()));
    }
    let body = crate::form::encode(fields.iter().map(|(k, v)| (*k, v.as_str())));
    let provider = crate::providers::of(crate::routing::Provider::Funpoint);
    let parsed = provider.parse(body.as_bytes(), None);
    let dedup = parsed.as_ref().and_then(|p| crate::providers::tenant_dedup_key(provider, tenant, p));
    let callback = NewCallback {
        provider: crate::routing::Provider::Funpoint,
        tenant: Some(tenant.id.to_string()),
        status: Status::Pending,
        reason: None,
        content_type: Some("application/x-www-form-urlencoded".to_owned()),
        body: bytes::Bytes::from(body),
        remote_addr: None,
        simulated: false,
        dedup: dedup.map(|key| crate::store::DedupKey { key, window: config.delivery.dedup_window }),
        path_tenant: None,
        lease: None,
        order_key: Some(order.merchant_trade_no.clone()),
        source: Some("reconcile"),
        order: Some(moved),
    };
    worker.store().accept(callback).await?;
    worker.made().add(tenant.id.as_str(), &order.merchant_trade_no);
    Ok(())
}
