//! The store interface itself, on this binary's backend: dedup under
//! concurrency, leases that never hand a row out twice, attempts, replay,
//! retention.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use payrelay::store::{
    Accepted, AttemptRecord, DedupKey, NewCallback, NewOrder, OrderState, Outcome, PurgePolicy, Replay, Status, Store,
    now_ms,
};

use crate::helpers::*;

async fn open(dir: &tempfile::TempDir) -> Store {
    open_store(&dir.path().join("payrelay.db")).await
}

fn callback(key: Option<&str>, body: &[u8]) -> NewCallback {
    NewCallback {
        provider: payrelay::routing::Provider::Funpoint,
        tenant: Some("shop".into()),
        status: Status::Pending,
        reason: None,
        content_type: Some("text/html".into()),
        body: Bytes::copy_from_slice(body),
        remote_addr: Some("127.0.0.1".into()),
        simulated: false,
        dedup: key.map(|k| DedupKey { key: k.into(), window: Duration::from_secs(3600) }),
        path_tenant: None,
        lease: None,
        order_key: None,
        source: None,
        order: None,
    }
}

fn attempt(n: u32) -> AttemptRecord {
    AttemptRecord {
        n,
        at_ms: now_ms(),
        status_code: Some(500),
        duration_ms: 3,
        error: Some("HTTP 500".into()),
        response_excerpt: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_accepts_store_each_key_once_and_keep_bodies_byte_for_byte() {
    need_backend!();
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let keys = ["a", "b", "a", "c", "b", "a", "c", "d"];
    let mut tasks = tokio::task::JoinSet::new();
    for (i, &k) in keys.iter().enumerate() {
        let store = store.clone();
        let body = format!("MerchantTradeNo={k}01&n={i}&x=\u{4ea4}\u{6613}").into_bytes();
        tasks.spawn(async move { (k.to_owned(), store.accept(callback(Some(k), &body)).await.unwrap()) });
    }
    let mut stored = std::collections::HashMap::new();
    let mut duplicates = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            (k, Accepted::Stored { id, .. }) => assert!(stored.insert(k, id).is_none(), "a key stored twice"),
            (k, Accepted::Duplicate { id, status, .. }) => duplicates.push((k, id, status)),
        }
    }
    assert_eq!(stored.len(), 4);
    assert_eq!(duplicates.len(), 4);
    for (k, id, status) in duplicates {
        assert_eq!(stored[&k], id, "a duplicate names its original");
        assert_eq!(status, Status::Pending);
    }
    let d = store.get(&stored["c"]).await.unwrap().unwrap();
    assert!(d.body.starts_with(b"MerchantTradeNo=c01&n="));
    assert!(d.body.ends_with("&x=\u{4ea4}\u{6613}".as_bytes()));
    // Without a key nothing is deduplicated.
    let first = store.accept(callback(None, b"same")).await.unwrap();
    let second = store.accept(callback(None, b"same")).await.unwrap();
    assert!(matches!((first, second), (Accepted::Stored { .. }, Accepted::Stored { .. })));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_never_hand_a_row_out_twice_while_the_lease_holds() {
    need_backend!();
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    for i in 0..40 {
        store.accept(callback(Some(&format!("k{i}")), b"x")).await.unwrap();
    }
    // Four claimers at once, as four instances would.
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..4 {
        let store = store.clone();
        tasks.spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = store.claim_due(&format!("w{w}"), Duration::from_secs(30), 3).await.unwrap();
                if batch.is_empty() {
                    return got;
                }
                got.extend(batch.into_iter().map(|c| c.id));
            }
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r.unwrap());
    }
    let unique: HashSet<&payrelay::store::CallbackId> = all.iter().collect();
    assert_eq!((all.len(), unique.len()), (40, 40), "every row claimed exactly once");
    assert!(store.claim_due("late", Duration::from_secs(30), 10).await.unwrap().is_empty(), "leases hold");

    // A short lease runs out: the row is handed out again (a dead instance).
    let released = store.release("w0").await.unwrap() + store.release("w1").await.unwrap();
    assert!(released > 0);
    let again = store.claim_due("w9", Duration::from_millis(50), 100).await.unwrap();
    assert_eq!(again.len() as u64, released);
    // Until the 50 ms lease runs out nobody else gets them; then they are
    // claimed again (polled with a bound, no fixed sleep).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let taken_over = loop {
        let got = store.claim_due("w10", Duration::from_secs(30), 100).await.unwrap();
        if !got.is_empty() {
            break got;
        }
        assert!(tokio::time::Instant::now() < deadline, "expired leases were not claimed again");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(taken_over.len() as u64, released, "expired leases are claimed again");
    store.close().await;
}

#[tokio::test]
async fn a_key_past_its_window_on_the_store_clock_is_given_up() {
    need_backend!();
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let Accepted::Stored { id: first, .. } = store.accept(callback(Some("k"), b"1")).await.unwrap() else {
        panic!("not stored")
    };
    let again = store.accept(callback(Some("k"), b"1")).await.unwrap();
    assert!(matches!(again, Accepted::Duplicate { ref id, status: Status::Pending, .. } if *id == first), "{again:?}");
    // The store's clock, not a sleep, moves past the one-hour window.
    store.clock().advance(Duration::from_secs(3601));
    let Accepted::Stored { id: second, .. } = store.accept(callback(Some("k"), b"1")).await.unwrap() else {
        panic!("a key past its window still deduplicated")
    };
    assert_ne!(first, second);
    assert!(store.get(&first).await.unwrap().is_some(), "the old row stays, without its key");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_move_a_callback_on_and_replay_brings_it_back() {
    need_backend!();
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let Accepted::Stored { id, seq } = store.accept(callback(Some("r"), b"body")).await.unwrap() else {
        panic!("not stored")
    };
    store.record(seq, attempt(1), Outcome::RetryAt(now_ms() + 60_000)).await.unwrap();
    let d = store.get(&id).await.unwrap().unwrap();
    assert_eq!((d.summary.status, d.summary.attempts, d.attempts.len()), (Status::Pending, 1, 1));
    assert_eq!(d.summary.last_error.as_deref(), Some("HTTP 500"));
    assert!(store.claim_due("w", Duration::from_secs(30), 10).await.unwrap().is_empty(), "not due yet");
    store.record(seq, attempt(2), Outcome::Dead).await.unwrap();
    assert_eq!(store.get(&id).await.unwrap().unwrap().summary.status, Status::Dead);
    // A late attempt does not move a finished row.
    store.record(seq, attempt(3), Outcome::Delivered).await.unwrap();
    let d = store.get(&id).await.unwrap().unwrap();
    assert_eq!((d.summary.status, d.attempts.len()), (Status::Dead, 3));

    assert_eq!(store.replay(Replay::DeadOf { tenant: "shop".into() }).await.unwrap(), 1);
    let due = store.claim_due("w", Duration::from_secs(30), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    // The counter counts attempts that moved the row (the late one did not).
    assert_eq!((due[0].id.as_str(), due[0].attempts), (id.as_str(), 2), "numbering goes on");
    assert_eq!(store.replay(Replay::One { id: id.clone(), from: vec![Status::Dead] }).await.unwrap(), 0);
    store.close().await;
}

/// The delivery worker's records are queued, not waited for: each is
/// committed within the writer's window all the same (polled with a
/// bound), and a store closed meanwhile commits them before it closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_queued_without_waiting_is_committed_all_the_same() {
    need_backend!();
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let mut seqs = Vec::new();
    for key in ["q1", "q2", "q3"] {
        let Accepted::Stored { id, seq } = store.accept(callback(Some(key), b"body")).await.unwrap() else {
            panic!("not stored")
        };
        seqs.push((id, seq));
    }
    let (first, rest) = seqs.split_first().unwrap();
    store.record_later(first.1, attempt(1), Outcome::Delivered).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let d = store.get(&first.0).await.unwrap().unwrap();
        if d.summary.status == Status::Delivered {
            assert_eq!(d.attempts.len(), 1);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the queued record was never committed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for (_, seq) in rest {
        store.record_later(*seq, attempt(1), Outcome::Delivered).await.unwrap();
    }
    store.close().await;
    let store = open(&dir).await;
    for (id, _) in rest {
        let d = store.get(id).await.unwrap().unwrap();
        assert_eq!((d.summary.status, d.attempts.len()), (Status::Delivered, 1), "committed before the close");
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_keeps_the_newest_rejected_rows_and_recent_deliveries() {
    need_backend!();
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    for i in 0..15 {
        let mut c = callback(None, format!("forged {i}").as_bytes());
        c.status = if i % 2 == 0 { Status::Rejected } else { Status::Unroutable };
        store.accept(c).await.unwrap();
    }
    let Accepted::Stored { seq, .. } = store.accept(callback(Some("p"), b"paid")).await.unwrap() else { panic!() };
    let mut ok = attempt(1);
    ok.status_code = Some(200);
    store.record(seq, ok, Outcome::Delivered).await.unwrap();
    // 8 rejected and 7 unroutable; each kind keeps its newest 5.
    let purged = store.purge(PurgePolicy::simple(now_ms(), Duration::from_secs(3600), 5)).await.unwrap();
    assert_eq!((purged.delivered, purged.rejected, purged.unroutable), (0, 3, 2));
    let rows = store.list(&payrelay::store::ListFilter { limit: 100, ..Default::default() }).await.unwrap();
    assert_eq!(rows.len(), 11);
    assert!(rows.iter().any(|r| r.status == Status::Delivered));
    let kept: Vec<String> = rows.iter().filter(|r| r.status != Status::Delivered).map(|r| r.seq.to_string()).collect();
    assert_eq!(kept.len(), 10, "the newest ten refused rows");
    let received = rows.iter().find(|r| r.status == Status::Delivered).unwrap().received_at_ms;
    let purged = store.purge(PurgePolicy::simple(received + 1, Duration::ZERO, 10)).await.unwrap();
    assert_eq!(purged.delivered, 1, "older than a zero retention");
    store.close().await;
}

/// SQLite only: a store made by an earlier version (migrations 1–6) is
/// opened by this one. Its rows stay; the two CHECKs that listed their
/// values with IN are now comparisons, which allow the same values and
/// refuse others, and an insert no longer builds a temporary index for
/// them (it did: `OpenEphemeral` in every insert's program).
#[tokio::test]
async fn an_earlier_sqlite_store_gets_its_checks_without_a_temporary_index() {
    use sqlx::{Connection as _, Executor as _, Row as _};
    if crate::POSTGRES {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("payrelay.db");
    let earlier = [
        include_str!("../../src/store/migrations/sqlite/0001_init.sql"),
        include_str!("../../src/store/migrations/sqlite/0002_path_tenant.sql"),
        include_str!("../../src/store/migrations/sqlite/0003_no_trigger.sql"),
        include_str!("../../src/store/migrations/shared/0004_verification.sql"),
        include_str!("../../src/store/migrations/shared/0005_orders.sql"),
        include_str!("../../src/store/migrations/shared/0006_recurring.sql"),
    ];
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    c.execute("PRAGMA journal_mode = WAL").await.unwrap();
    c.execute("CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)").await.unwrap();
    for (i, script) in earlier.iter().enumerate() {
        c.execute(*script).await.unwrap();
        sqlx::query("INSERT INTO schema_migrations VALUES (?, 0)").bind(i as i64 + 1).execute(&mut c).await.unwrap();
    }
    const INSERT_A: &str =
        "INSERT INTO callbacks (id, provider, status, body, received_at) VALUES ('a', 'funpoint', 'pending', x'00', 1)";
    const INSERT_B: &str =
        "INSERT INTO callbacks (id, provider, status, body, received_at) VALUES ('b', 'funpoint', 'pending', x'00', 1)";
    const EXPLAIN_B: &str = "EXPLAIN INSERT INTO callbacks (id, provider, status, body, received_at) VALUES ('b', 'funpoint', 'pending', x'00', 1)";
    const BOGUS: &str =
        "INSERT INTO callbacks (id, provider, status, body, received_at) VALUES ('c', 'funpoint', 'bogus', x'00', 1)";
    let ephemeral = |program: Vec<sqlx::sqlite::SqliteRow>| {
        program.iter().any(|r| r.try_get::<String, _>(1).is_ok_and(|op| op == "OpenEphemeral"))
    };
    assert!(ephemeral(sqlx::query(EXPLAIN_B).fetch_all(&mut c).await.unwrap()), "the old schema");
    c.execute(INSERT_A).await.unwrap();
    c.execute("INSERT INTO orders (tenant, merchant_trade_no, state, created_at, updated_at) VALUES ('shop', 'M1', 'paid', 1, 1)")
        .await
        .unwrap();
    c.close().await.unwrap();

    let store = open(&dir).await;
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.by_status.iter().find(|(s, _)| *s == Status::Pending).map(|(_, n)| *n), Some(1), "kept");
    store.close().await;

    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let schema: Vec<String> = sqlx::query_scalar("SELECT sql FROM sqlite_schema WHERE name IN ('callbacks', 'orders')")
        .fetch_all(&mut c)
        .await
        .unwrap();
    assert_eq!(schema.len(), 2);
    assert!(schema.iter().all(|sql| !sql.contains(" IN (") && sql.contains("CHECK (")), "{schema:?}");
    assert!(!ephemeral(sqlx::query(EXPLAIN_B).fetch_all(&mut c).await.unwrap()));
    c.execute(INSERT_B).await.unwrap();
    for status in ["delivered", "dead", "rejected", "unroutable"] {
        sqlx::query("UPDATE callbacks SET status = ? WHERE id = 'b'").bind(status).execute(&mut c).await.unwrap();
    }
    let refused = c.execute(BOGUS).await;
    assert!(refused.unwrap_err().to_string().contains("CHECK constraint failed"));
    let refused = c.execute("UPDATE orders SET state = 'refunded'").await;
    assert!(refused.unwrap_err().to_string().contains("CHECK constraint failed"));
    c.execute("UPDATE orders SET state = 'expired'").await.unwrap();
    let check: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&mut c).await.unwrap();
    assert_eq!(check, "ok");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE merchant_trade_no = 'M1'")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

/// Checkouts that reach the writer together go in multi-row statements: an
/// order checked out twice in one batch is one row, created when it first
/// was and holding the later checkout's details, as one upsert after the
/// other left it, and every checkout keeps its event in the order's
/// timeline.
#[tokio::test]
async fn checkouts_of_one_batch_keep_every_event_and_the_last_details() {
    need_backend!();
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let order = |no: &str, amount: i64, at: i64| NewOrder {
        tenant: "shop".into(),
        merchant_trade_no: no.into(),
        merchant_id: Some("3002607".into()),
        amount: Some(amount),
        payment_type: Some("Credit".into()),
        at,
        first_query_at: at + 60_000,
        recurring: None,
    };
    let t = now_ms();
    // Handed over together: one batch (the writer takes them within 20 ms).
    for (no, amount, at) in [("A01", 100, t), ("B01", 7, t + 1), ("A01", 250, t + 2)] {
        store.checkout(order(no, amount, at)).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let (a, events) = loop {
        if let Some((a, events)) = store.order("shop", "A01").await.unwrap()
            && events.len() == 2
        {
            break (a, events);
        }
        assert!(tokio::time::Instant::now() < deadline, "the checkouts of A01 were not both committed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!((a.created_at_ms, a.updated_at_ms, a.amount, a.state), (t, t + 2, Some(250), OrderState::Checkout));
    assert_eq!(a.next_query_at_ms, Some(t + 2 + 60_000));
    let seen: Vec<(i64, &str, Option<&str>)> =
        events.iter().map(|e| (e.at_ms, e.kind.as_str(), e.detail.as_deref())).collect();
    assert_eq!(seen, [(t, "checkout", Some("Credit 100")), (t + 2, "checkout", Some("Credit 250"))]);
    let (b, events) = store.order("shop", "B01").await.unwrap().expect("B01 committed with them");
    assert_eq!((b.created_at_ms, b.amount, events.len()), (t + 1, Some(7), 1));
}

/// A row that fails in a batch of accepts fails its own callback only: the
/// batch is rolled back whole and each callback tried in a transaction of
/// its own, so every other callback is stored once and nothing of the
/// failed one stays — also on SQLite, whose multi-row insert runs `OR
/// FAIL` (no statement journal) and leaves the rows before the failing one
/// in the transaction it then rolls back. A trigger plays the failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_failing_in_a_batch_of_accepts_fails_only_its_callback() {
    use sqlx::{Connection as _, Executor as _};
    need_backend!();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("payrelay.db");
    let store = open(&dir).await;
    let tenants = |c: Vec<String>| c.into_iter().collect::<HashSet<String>>();
    let stored_tenants: HashSet<String> = if crate::POSTGRES {
        let mut c = sqlx::PgConnection::connect(&crate::pg::database_for(&db)).await.unwrap();
        c.execute(
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                 IF NEW.tenant = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF; RETURN NEW; END $$;
             CREATE TRIGGER poison BEFORE INSERT ON callbacks FOR EACH ROW EXECUTE FUNCTION poison();",
        )
        .await
        .unwrap();
        run_poisoned_batch(&store).await;
        tenants(sqlx::query_scalar("SELECT tenant FROM callbacks").fetch_all(&mut c).await.unwrap())
    } else {
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
        c.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON callbacks WHEN NEW.tenant = 'poison'
             BEGIN SELECT RAISE(FAIL, 'poisoned'); END",
        )
        .await
        .unwrap();
        run_poisoned_batch(&store).await;
        tenants(sqlx::query_scalar("SELECT tenant FROM callbacks").fetch_all(&mut c).await.unwrap())
    };
    let expected: HashSet<String> = (0..48).filter(|&i| i != 30).map(|i| format!("t{i}")).collect();
    assert_eq!(stored_tenants, expected);
}

/// 48 accepts at once (the writer takes all but the first few in batches),
/// the 31st for tenant `poison`: it alone fails; each other is stored.
async fn run_poisoned_batch(store: &Store) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..48 {
        let store = store.clone();
        let mut cb = callback(Some(&format!("K{i:02}")), format!("MerchantTradeNo=K{i:02}").as_bytes());
        cb.tenant = Some(if i == 30 { "poison".into() } else { format!("t{i}") });
        tasks.spawn(async move { (i, store.accept(cb).await) });
    }
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            (30, r) => assert!(r.is_err(), "the poisoned callback was accepted: {r:?}"),
            (i, r) => assert!(matches!(r, Ok(Accepted::Stored { .. })), "callback {i}: {r:?}"),
        }
    }
}
