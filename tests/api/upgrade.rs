//! A store made by an earlier version, opened by this one, on this
//! binary's backend: what it stored still counts.

use std::time::Duration;

use bytes::Bytes;
use payrelay::providers::led_by_order;
use payrelay::store::{Accepted, DedupKey, NewCallback, Status};
use sqlx::{Connection as _, Executor as _};

use crate::helpers::*;

/// Runs `statements` on the store at `db` as an earlier version left it.
async fn run(db: &std::path::Path, statements: &[String]) {
    if crate::POSTGRES {
        let mut c = sqlx::PgConnection::connect(&store_url_for(db)).await.unwrap();
        for s in statements {
            c.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(s.clone()))).await.unwrap();
        }
        c.close().await.unwrap();
    } else {
        let url = format!("sqlite://{}?mode=rwc", db.display());
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        c.execute("PRAGMA journal_mode = WAL").await.unwrap();
        for s in statements {
            c.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(s.clone()))).await.unwrap();
        }
        c.close().await.unwrap();
    }
}

/// The schema as migrations 1 to `upto` left it (PostgreSQL has no 2, 3, 7).
fn earlier_schema(upto: i64) -> Vec<String> {
    let scripts: &[(i64, &str)] = if crate::POSTGRES {
        &[
            (1, include_str!("../../src/store/migrations/postgres/0001_init.sql")),
            (4, include_str!("../../src/store/migrations/shared/0004_verification.sql")),
            (5, include_str!("../../src/store/migrations/shared/0005_orders.sql")),
            (6, include_str!("../../src/store/migrations/shared/0006_recurring.sql")),
            (8, include_str!("../../src/store/migrations/postgres/0008_dedup_led_by_order.sql")),
        ]
    } else {
        &[
            (1, include_str!("../../src/store/migrations/sqlite/0001_init.sql")),
            (2, include_str!("../../src/store/migrations/sqlite/0002_path_tenant.sql")),
            (3, include_str!("../../src/store/migrations/sqlite/0003_no_trigger.sql")),
            (4, include_str!("../../src/store/migrations/shared/0004_verification.sql")),
            (5, include_str!("../../src/store/migrations/shared/0005_orders.sql")),
            (6, include_str!("../../src/store/migrations/shared/0006_recurring.sql")),
            (7, include_str!("../../src/store/migrations/sqlite/0007_check_without_in.sql")),
            (8, include_str!("../../src/store/migrations/sqlite/0008_dedup_led_by_order.sql")),
        ]
    };
    let mut out =
        vec!["CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)".to_owned()];
    for (version, script) in scripts.iter().filter(|(v, _)| *v <= upto) {
        out.push((*script).to_owned());
        out.push(format!("INSERT INTO schema_migrations VALUES ({version}, 0)"));
    }
    out
}

fn resend(provider: payrelay::routing::Provider, key: String, order: &str) -> NewCallback {
    NewCallback {
        provider,
        tenant: Some("shop".into()),
        status: Status::Pending,
        reason: None,
        content_type: Some("application/x-www-form-urlencoded".into()),
        body: Bytes::from_static(b"resent"),
        remote_addr: Some("127.0.0.1".into()),
        simulated: false,
        dedup: Some(DedupKey { key, window: Duration::from_secs(7 * 86_400) }),
        path_tenant: None,
        lease: None,
        order_key: Some(order.into()),
        source: None,
        order: None,
    }
}

/// Before migration 8 a stored dedup key was the hash alone; now a Funpoint
/// or TapPay key leads with its order's number. The keys stored before are
/// given the same lead, by the same rule as new ones (`led_by_order`), so a
/// provider's resend arriving after the upgrade is still its original's
/// duplicate — for an order number that may lead one and for one that may
/// not, and for a provider whose keys are not led (Oen).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_after_the_upgrade_finds_its_original() {
    use payrelay::routing::Provider::{Funpoint, Oen, TapPay};
    need_backend!();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("payrelay.db");
    let stored = [
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Funpoint, "Ord-0042", "1".repeat(64)),
        ("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", TapPay, "T_7-01", "2".repeat(64)),
        ("cccccccccccccccccccccccccccccccc", Funpoint, "has space", "3".repeat(64)),
        ("dddddddddddddddddddddddddddddddd", Oen, "o1", "4".repeat(64)),
    ];
    let mut statements = earlier_schema(7);
    for (id, provider, order, hash) in &stored {
        statements.push(format!(
            "INSERT INTO callbacks (id, provider, tenant, status, body, received_at, dedup_key, order_key)
             VALUES ('{id}', '{}', 'shop', 'delivered', 'x', {}, '{hash}', '{order}')",
            provider.name(),
            payrelay::store::now_ms()
        ));
    }
    run(&db, &statements).await;

    let store = open_store(&db).await;
    for (id, provider, order, hash) in stored {
        let key = if provider == Oen { hash.clone() } else { led_by_order(Some(order), hash.clone()) };
        assert_eq!(key.contains('\n'), id.starts_with('a') || id.starts_with('b'), "{id}: {key:?}");
        match store.accept(resend(provider, key, order)).await.unwrap() {
            Accepted::Duplicate { id: original, status, .. } => {
                assert_eq!((original.as_str(), status), (id, Status::Delivered));
            }
            other => panic!("{id}: stored again after the upgrade: {other:?}"),
        }
    }
    let again = led_by_order(Some("Ord-0042"), "1".repeat(64));
    assert!(matches!(store.accept(resend(Funpoint, again, "Ord-0042")).await.unwrap(), Accepted::Duplicate { .. }));
    store.close().await;
}

/// Migrations 9 and 10 keep the purge's index to delivered rows and the
/// status index to settled ones. Rows a store held before them are indexed
/// by them: counted by status, old deliveries and rejected rows over their
/// cap purged after the upgrade, rows of every other status kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_stored_before_the_upgrade_are_still_counted_and_purged() {
    need_backend!();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("payrelay.db");
    let now = payrelay::store::now_ms();
    let day = 86_400_000;
    let rows = [
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "delivered", now - 30 * day),
        ("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "delivered", now - 20 * day),
        ("cccccccccccccccccccccccccccccccc", "delivered", now),
        ("dddddddddddddddddddddddddddddddd", "pending", now - 30 * day),
        ("eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "dead", now - 30 * day),
        ("ffffffffffffffffffffffffffffffff", "rejected", now - 30 * day),
        ("f0000000000000000000000000000000", "rejected", now - 29 * day),
    ];
    let mut statements = earlier_schema(8);
    for (id, status, at) in rows {
        statements.push(format!(
            "INSERT INTO callbacks (id, provider, tenant, status, body, received_at, finished_at)
             VALUES ('{id}', 'funpoint', 'shop', '{status}', 'x', {at}, {now})"
        ));
    }
    run(&db, &statements).await;

    let store = open_store(&db).await;
    let mut counts = store.stats().await.unwrap().by_status;
    counts.retain(|(_, n)| *n > 0);
    counts.sort_by_key(|(s, _)| s.as_str());
    let counts: Vec<(&str, u64)> = counts.iter().map(|(s, n)| (s.as_str(), *n)).collect();
    assert_eq!(counts, [("dead", 1), ("delivered", 3), ("pending", 1), ("rejected", 2)]);
    let policy = payrelay::store::PurgePolicy::simple(now, Duration::from_secs(7 * 86_400), 1);
    let purged = store.purge(policy).await.unwrap();
    assert_eq!((purged.delivered, purged.dead, purged.rejected), (2, 0, 1));
    let left: Vec<String> = store
        .list(&payrelay::store::ListFilter { limit: 100, ..Default::default() })
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id.to_string())
        .collect();
    let kept = ["f0000000000000000000000000000000", "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"];
    assert_eq!(left, [&kept[..], &["dddddddddddddddddddddddddddddddd", "cccccccccccccccccccccccccccccccc"]].concat());
    store.close().await;
}
