//! The order ledger's reconciler (SPEC §9): every relayed Funpoint checkout
//! is an order; a callback naming it moves it along; an order that has seen
//! no payment result some time after its checkout is asked about at
//! Funpoint (QueryTradeInfo, the answer MAC-checked), and a payment whose
//! every notification was lost is found and made into the notification the
//! shop would have received.

mod cli;
mod periods;
mod run;

pub use cli::command;

pub use run::{Reconciled, reconcile_at, reconcile_tenant_at, run_reconciler};

use crate::providers::{Parsed, Provider};
use crate::store::{OrderMove, OrderState};

/// What a callback does to the order it names (Funpoint only: its
/// checkouts are the ones relayed). An issued ATM/CVS code is asked about
/// again when it expires.
pub fn order_move(provider: &dyn Provider, parsed: &Parsed) -> Option<OrderMove> {
    if provider.kind() != crate::routing::Provider::Funpoint {
        return None;
    }
    let merchant_trade_no = parsed.field("MerchantTradeNo")?.into_owned();
    let event = provider.event(parsed);
    let state = match event {
        // A period paid proves the order paid too (its first notification may be the one lost).
        "paid" | "period_paid" => OrderState::Paid,
        "code_issued" => OrderState::CodeIssued,
        "failed" => OrderState::Failed,
        _ => return None,
    };
    let period = (event == "period_paid").then(|| parsed.field("TotalSuccessTimes")?.trim().parse().ok()).flatten();
    let next_query_at = match state {
        OrderState::CodeIssued => parsed.field("ExpireDate").and_then(|d| expiry_ms(&d)),
        _ => None,
    };
    Some(OrderMove { merchant_trade_no, state, next_query_at, reconciled: false, event, period })
}

/// A recurring checkout's (period + `after`, in ms; periods in all), from
/// its PeriodType (D, M, Y), Frequency and ExecTimes; `None` for a one-off
/// order. Months count as 30 days and years as 365: the reconciler only
/// needs to look some time after each period is due.
pub fn recurring(
    kind: Option<&str>,
    frequency: Option<&str>,
    times: Option<&str>,
    after: std::time::Duration,
) -> Option<(i64, i64)> {
    let days = match kind?.trim() {
        "D" => 1,
        "M" => 30,
        "Y" => 365,
        _ => return None,
    };
    let frequency: i64 = frequency?.trim().parse().ok().filter(|f| *f > 0)?;
    let times: i64 = times?.trim().parse().ok().filter(|t| *t > 1)?;
    Some((days * frequency * 86_400_000 + crate::store::ms(after), times))
}

/// The orders the reconciler made a payment for, kept in memory so that a
/// payment notification — the hot path — reads the ledger only for those.
/// This instance adds what it makes at once; each reconciliation round adds
/// what other instances made since the last one (so on PostgreSQL a real
/// notification within about a second of another instance's
/// reconciliation can be delivered a second time).
#[derive(Default)]
pub struct Made {
    orders: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
    since: std::sync::atomic::AtomicI64,
}

impl Made {
    pub fn add(&self, tenant: &str, order: &str) {
        if let Ok(mut o) = self.orders.lock() {
            o.insert((tenant.to_owned(), order.to_owned()));
        }
    }

    fn contains(&self, tenant: &str, order: &str) -> bool {
        self.orders.lock().is_ok_and(|o| o.contains(&(tenant.to_owned(), order.to_owned())))
    }

    /// Adds the orders reconciled since the last refresh (a round's first step).
    pub async fn refresh(&self, store: &crate::store::Store, now: i64) {
        use std::sync::atomic::Ordering;
        let since = self.since.load(Ordering::Relaxed);
        if let Ok(found) = store.reconciled_since(since).await {
            for (tenant, order) in found {
                self.add(&tenant, &order);
            }
            // A little overlap: a row committed just before `now` is not missed.
            self.since.store(now - 5_000, Ordering::Relaxed);
        }
    }
}

/// Did the reconciler already make and queue this result (a payment) for
/// this order? Then the provider's own late notification is acknowledged
/// and not delivered again (SPEC §9). A ledger that cannot be read lets
/// the notification through: a duplicate is better than a loss.
pub async fn already_made(
    worker: &crate::delivery::Worker,
    tenant: &crate::config::Tenant,
    m: Option<&OrderMove>,
) -> bool {
    let Some(m) = m.filter(|m| m.state == OrderState::Paid) else { return false };
    if !worker.made().contains(tenant.id.as_str(), &m.merchant_trade_no) {
        return false;
    }
    let store = worker.store();
    let made = match m.period {
        Some(k) => format!("{} #{k} (made by the reconciler)", m.event),
        None => format!("{} (made by the reconciler)", m.event),
    };
    match Box::pin(store.order(tenant.id.as_str(), &m.merchant_trade_no)).await {
        Ok(Some((_, events))) => {
            events.iter().any(|e| e.kind == "callback" && e.detail.as_deref() == Some(made.as_str()))
        }
        _ => false,
    }
}

/// Funpoint's ExpireDate (`yyyy/MM/dd` for ATM: the end of that day;
/// `yyyy/MM/dd HH:mm:ss` for CVS), Taiwan time, as unix ms.
pub fn expiry_ms(text: &str) -> Option<i64> {
    let (date, time) = text.trim().split_once(' ').unwrap_or((text.trim(), "23:59:59"));
    let mut d = date.split('/').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next().flatten().unwrap_or(0));
    let days = crate::domain::time::days_from_civil(y, m, day)?;
    // Taiwan is UTC+8 all year.
    Some(((days * 86_400 + hh * 3_600 + mm * 60 + ss) - 8 * 3_600) * 1_000)
}
