//! Recurring orders (SPEC §9): Funpoint sends PeriodReturnURL once per
//! period and never again, so some time after each period is due the
//! reconciler reads QueryCreditCardPeriodInfo's ExecLog and makes every
//! successful period whose notification the shop never received.
//!
//! ExecLog's successful executions, in order, are the first authorization
//! (the order's ReturnURL) and then periods 2, 3, …; a PeriodReturnURL
//! carries its `TotalSuccessTimes`, which is that number. The answer
//! carries no MAC (FP137): it is believed because it came over TLS from
//! the configured API, and what is made from it is signed with the
//! tenant's keys like everything the shop receives.

use std::collections::HashSet;

use serde_json::Value;

use super::run::{outcome, store_made};
use crate::config::{Config, Tenant};
use crate::delivery::Worker;
use crate::store::{Order, OrderMove, OrderQueried, OrderState};

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// The periods the shop already received (from the provider or made), by
/// their `TotalSuccessTimes`.
async fn seen(worker: &Worker, order: &Order) -> HashSet<i64> {
    let Ok(Some((_, events))) = worker.store().order(&order.tenant, &order.merchant_trade_no).await else {
        return HashSet::new();
    };
    events
        .iter()
        .filter(|e| e.kind == "callback")
        .filter_map(|e| e.detail.as_deref()?.strip_prefix("period_paid #")?.split(' ').next()?.parse().ok())
        .collect()
}

pub(super) async fn judge(
    worker: &Worker,
    config: &Config,
    tenant: &Tenant,
    order: &Order,
    info: &Value,
    now: i64,
) -> (OrderQueried, bool) {
    let log = info.get("ExecLog").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let paid: Vec<&Value> = log.iter().filter(|e| text(e, "RtnCode") == "1").collect();
    let seen = seen(worker, order).await;
    let mut made = Vec::new();
    for (i, entry) in paid.iter().enumerate().skip(1) {
        let k = i64::try_from(i + 1).unwrap_or(i64::MAX);
        if seen.contains(&k) {
            continue;
        }
        let fields = period_fields(info, order, paid[0], entry, k);
        let moved = OrderMove {
            merchant_trade_no: order.merchant_trade_no.clone(),
            state: OrderState::Paid,
            next_query_at: None,
            reconciled: true,
            event: "period_paid",
            period: Some(k),
        };
        if let Err(e) = store_made(worker, config, tenant, order, fields, moved).await {
            crate::metrics::reconcile_error("store");
            let detail = format!("period {k} paid at Funpoint, but it could not be stored ({e}); asking again");
            return (outcome(order, None, Some(now + 60_000), false, detail), !made.is_empty());
        }
        crate::metrics::reconciled_found(tenant.id.as_str());
        made.push(k.to_string());
    }
    let running = text(info, "ExecStatus") == "1";
    let all = order.exec_times.is_some_and(|n| i64::try_from(paid.len()).unwrap_or(i64::MAX) >= n);
    let next = (running && !all).then(|| now + order.period_ms.unwrap_or(86_400_000));
    let detail = match made.as_slice() {
        [] => format!("{} of {} periods paid, each one delivered", paid.len(), text(info, "ExecTimes")),
        m => format!("periods {} paid at Funpoint with no notification delivered; notifications made", m.join(", ")),
    };
    (outcome(order, None, next, false, detail), !made.is_empty())
}

/// The PeriodReturnURL notification of period `k` (FP137 pp.26–28).
fn period_fields<'a>(info: &Value, order: &Order, first: &Value, entry: &Value, k: i64) -> Vec<(&'a str, String)> {
    vec![
        ("MerchantID", order.merchant_id.clone().unwrap_or_default()),
        ("MerchantTradeNo", order.merchant_trade_no.clone()),
        ("StoreID", String::new()),
        ("RtnCode", "1".to_owned()),
        ("RtnMsg", "交易成功".to_owned()),
        ("PeriodType", text(info, "PeriodType")),
        ("Frequency", text(info, "Frequency")),
        ("ExecTimes", text(info, "ExecTimes")),
        ("Amount", text(entry, "amount")),
        ("Gwsr", text(entry, "gwsr")),
        ("ProcessDate", text(entry, "process_date")),
        ("AuthCode", text(entry, "auth_code")),
        ("FirstAuthAmount", text(first, "amount")),
        ("TotalSuccessTimes", k.to_string()),
        ("SimulatePaid", "0".to_owned()),
    ]
}
