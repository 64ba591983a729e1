//! The order ledger's reconciler (SPEC §9): every relayed Funpoint checkout
//! is an order; a callback naming it moves it along; an order that has seen
//! no payment result some time after its checkout is asked about at
//! Funpoint (QueryTradeInfo, the answer MAC-checked), and a payment whose
//! every notification was lost is found and made into the notification the
//! shop would have received.

mod cli;
mod run;

pub use cli::command;

pub use run::{Reconciled, reconcile_at, run_reconciler};

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
        "paid" => OrderState::Paid,
        "code_issued" => OrderState::CodeIssued,
        "failed" => OrderState::Failed,
        // A period of a recurring order says nothing new of the order itself.
        _ => return None,
    };
    let next_query_at = match state {
        OrderState::CodeIssued => parsed.field("ExpireDate").and_then(|d| expiry_ms(&d)),
        _ => None,
    };
    Some(OrderMove { merchant_trade_no, state, next_query_at, reconciled: false, event })
}

/// Did the reconciler already make and queue this result (a payment) for
/// this order? Then the provider's own late notification is acknowledged
/// and not delivered again (SPEC §9). A ledger that cannot be read lets
/// the notification through: a duplicate is better than a loss.
pub async fn already_made(store: &crate::store::Store, tenant: &crate::config::Tenant, m: Option<&OrderMove>) -> bool {
    let Some(m) = m.filter(|m| m.state == OrderState::Paid) else { return false };
    match store.order(tenant.id.as_str(), &m.merchant_trade_no).await {
        Ok(Some((order, _))) => order.state == OrderState::Paid && order.reconciled_at_ms.is_some(),
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
