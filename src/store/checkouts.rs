//! The ledger's checkouts of one writer batch, in multi-row statements: an
//! upsert and an event insert per chunk instead of two statements per
//! checkout (issue 14: each statement opened its cursors on the table and
//! every index, and began its own statement journal).

use super::backend::{Arg, Conn};
use super::orders::{NewOrder, OrderSql, OrderState};
use super::sql::{Sql, in_chunks, values};

type Result<T> = std::result::Result<T, sqlx::Error>;

const CHECKOUT_COLS: usize = 11;
const EVENT_COLS: usize = 6;

/// The orders of `rows` checkouts.
pub(super) fn upsert(rows: usize) -> String {
    format!(
        "INSERT INTO orders (tenant, merchant_trade_no, merchant_id, amount, payment_type, state, created_at,
             updated_at, next_query_at, period_ms, exec_times)
         {}
         ON CONFLICT (tenant, merchant_trade_no) DO UPDATE SET merchant_id = excluded.merchant_id,
             amount = excluded.amount, payment_type = excluded.payment_type, updated_at = excluded.updated_at,
             next_query_at = excluded.next_query_at, period_ms = excluded.period_ms,
             exec_times = excluded.exec_times
         WHERE orders.state = 'checkout'",
        values(CHECKOUT_COLS, rows)
    )
}

/// The events of `rows` checkouts.
pub(super) fn events(rows: usize) -> String {
    format!(
        "INSERT {{or_fail}} INTO order_events (tenant, merchant_trade_no, at, kind, callback_id, detail) {}",
        values(EVENT_COLS, rows)
    )
}

/// The checkouts of one batch, in two multi-row statements per chunk: the
/// orders (an order checked out twice in the batch once: created when it
/// first was, with the last one's details, as one upsert after the other
/// would leave it — PostgreSQL refuses to touch a row twice in one
/// statement) and every checkout's event.
pub(super) async fn all<C: Conn>(c: &mut C, sql: &OrderSql, all: &[&NewOrder]) -> Result<()> {
    let orders = one_per_order(all);
    for chunk in in_chunks(&orders) {
        let mut args = Vec::with_capacity(chunk.len() * CHECKOUT_COLS);
        for &(created, o) in chunk {
            args.extend([
                Arg::from(o.tenant.as_str()),
                Arg::from(o.merchant_trade_no.as_str()),
                Arg::from(o.merchant_id.as_deref()),
                Arg::from(o.amount),
                Arg::from(o.payment_type.as_deref()),
                Arg::from(OrderState::Checkout.as_str()),
                Arg::from(created),
                Arg::from(o.at),
                Arg::from(o.first_query_at),
                Arg::from(o.recurring.map(|(p, _)| p)),
                Arg::from(o.recurring.map(|(_, n)| n)),
            ]);
        }
        c.execute(&Sql::sized(&sql.checkouts, chunk.len()), args).await?;
    }
    for chunk in in_chunks(all) {
        let mut args = Vec::with_capacity(chunk.len() * EVENT_COLS);
        for o in chunk {
            let detail = detail(o);
            args.extend([
                Arg::from(o.tenant.as_str()),
                Arg::from(o.merchant_trade_no.as_str()),
                Arg::from(o.at),
                Arg::from("checkout"),
                Arg::from(None::<&str>),
                Arg::Text(Some(detail)),
            ]);
        }
        c.execute(&Sql::sized(&sql.checkout_events, chunk.len()), args).await?;
    }
    Ok(())
}

/// The event's detail, `{payment_type} {amount}` (`-` and 0 when not
/// given), spelled without the formatter (~800 instructions a checkout on
/// the writer's thread, issue 14).
fn detail(o: &NewOrder) -> String {
    let payment_type = o.payment_type.as_deref().unwrap_or("-");
    let mut digits = itoa::Buffer::new();
    let amount = digits.format(o.amount.unwrap_or_default());
    let mut detail = String::with_capacity(payment_type.len() + 1 + amount.len());
    detail.push_str(payment_type);
    detail.push(' ');
    detail.push_str(amount);
    detail
}

/// Each order once, in the order first checked out: when it first was
/// (its `created_at`), with its last checkout's details.
fn one_per_order<'a>(all: &[&'a NewOrder]) -> Vec<(i64, &'a NewOrder)> {
    // foldhash, seeded per map: SipHash was ~300 instructions a checkout.
    let mut index: std::collections::HashMap<(&str, &str), usize, _> =
        std::collections::HashMap::with_capacity_and_hasher(all.len(), foldhash::fast::RandomState::default());
    let mut orders: Vec<(i64, &NewOrder)> = Vec::with_capacity(all.len());
    for &o in all {
        match index.entry((o.tenant.as_str(), o.merchant_trade_no.as_str())) {
            std::collections::hash_map::Entry::Occupied(i) => orders[*i.get()].1 = o,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(orders.len());
                orders.push((o.at, o));
            }
        }
    }
    orders
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detail_is_the_payment_type_and_the_amount() {
        let mut o = order("t", "A1", 1990);
        assert_eq!(detail(&o), "- 1990");
        o.payment_type = Some("Credit".into());
        o.amount = Some(-5);
        assert_eq!(detail(&o), "Credit -5");
        o.amount = None;
        assert_eq!(detail(&o), "Credit 0");
        o.amount = Some(i64::MIN);
        assert_eq!(detail(&o), format!("Credit {}", i64::MIN));
    }

    fn order(tenant: &str, no: &str, at: i64) -> NewOrder {
        NewOrder {
            tenant: tenant.into(),
            merchant_trade_no: no.into(),
            merchant_id: None,
            amount: Some(at),
            payment_type: None,
            at,
            first_query_at: at,
            recurring: None,
        }
    }

    #[test]
    fn an_order_checked_out_twice_is_one_row_from_its_first_time_with_its_last_details() {
        let all =
            [order("a", "1", 10), order("b", "1", 11), order("a", "1", 12), order("a", "2", 13), order("a", "1", 14)];
        let refs: Vec<&NewOrder> = all.iter().collect();
        let once: Vec<(i64, &str, &str, i64)> = one_per_order(&refs)
            .into_iter()
            .map(|(created, o)| (created, o.tenant.as_str(), o.merchant_trade_no.as_str(), o.at))
            .collect();
        assert_eq!(once, [(10, "a", "1", 14), (11, "b", "1", 11), (13, "a", "2", 13)]);
    }
}
