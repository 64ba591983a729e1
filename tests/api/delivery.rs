//! The delivery worker (SPEC §3.3 step 6): retries with rising attempt
//! numbers and a stable id, `dead` after the last wait, resumption after a
//! restart, `ack = "delivered"`, Retry-After, and retention.

use std::time::Duration;

use payrelay::store::{PurgePolicy, Status};

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(10);

async fn notify(app: &TestApp, body: &str) -> (u16, String) {
    let res = app.client.post(app.url("/funpoint/notify")).body(body.to_owned()).send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn stored_id(app: &TestApp) -> String {
    app.rows().await.first().expect("nothing stored").id.to_string()
}

fn attempts_seen(tenant: &MockServer) -> Vec<(String, String)> {
    tenant
        .received()
        .iter()
        .map(|r| {
            (r.header("x-payrelay-delivery").unwrap().to_owned(), r.header("x-payrelay-attempt").unwrap().to_owned())
        })
        .collect()
}

#[tokio::test]
async fn a_failing_tenant_is_retried_until_it_answers() {
    need_backend!();
    for (what, failure) in [
        ("500", Reply::text(500, "oops")),
        ("200 without 1|OK", Reply::text(200, "OK")),
        ("timeout", Reply::text(200, "1|OK").with_delay(Duration::from_millis(1500))),
    ] {
        let f = Fixture::start().await;
        f.tenant.reply(failure);
        assert_eq!(notify(&f.app, &notification("FP01", "T1", "交易成功")).await, (200, "1|OK".into()));
        eventually("two failed attempts", WAIT, || f.tenant.received().len() >= 2).await;
        f.tenant.reply(Reply::text(200, "1|OK"));
        let id = stored_id(&f.app).await;
        let row = f.app.until_status(&id, Status::Delivered, WAIT).await;

        let seen = attempts_seen(&f.tenant);
        assert!(seen.iter().all(|(d, _)| *d == id), "{what}: the delivery id changed: {seen:?}");
        let numbers: Vec<u32> = seen.iter().map(|(_, n)| n.parse().unwrap()).collect();
        assert_eq!(numbers, (1..=numbers.len() as u32).collect::<Vec<_>>(), "{what}");
        assert!(f.tenant.received().iter().all(|r| r.body == f.tenant.received()[0].body));
        let recorded: Vec<u32> = row.attempts.iter().map(|a| a.n).collect();
        assert_eq!(recorded, numbers, "{what}: every attempt is kept");
        assert!(row.attempts[..row.attempts.len() - 1].iter().all(|a| a.error.is_some()), "{what}");
        assert!(row.attempts.last().unwrap().error.is_none());
    }
}

#[tokio::test]
async fn dead_after_the_last_wait() {
    need_backend!();
    let f = Fixture::start().await; // retry = 100ms, 200ms, 300ms: four attempts
    f.tenant.reply(Reply::text(503, "down"));
    notify(&f.app, &notification("FP01", "T1", "交易成功")).await;
    let id = stored_id(&f.app).await;
    let row = f.app.until_status(&id, Status::Dead, WAIT).await;
    assert_eq!(row.attempts.len(), 4);
    assert_eq!(row.summary.attempts, 4);
    assert_eq!(row.attempts.iter().map(|a| a.status_code).collect::<Vec<_>>(), vec![Some(503); 4]);
    assert_eq!(row.summary.last_error.as_deref(), Some("HTTP 503"));
    assert_eq!(f.tenant.received().len(), 4);
    // The waits between attempts follow the schedule (each ±10%).
    let at: Vec<i64> = row.attempts.iter().map(|a| a.at_ms).collect();
    for (i, want) in [100, 200, 300].iter().enumerate() {
        let gap = at[i + 1] - at[i];
        assert!(gap >= want * 9 / 10, "wait {i} was {gap} ms, want about {want}");
    }

    // Funpoint resends it (new RtnMsg) once the tenant is back: the dead
    // original comes back into the queue and is delivered, same id.
    f.tenant.reply(Reply::text(200, "1|OK"));
    assert_eq!(notify(&f.app, &notification("FP01", "T1", "paid")).await, (200, "1|OK".into()));
    let row = f.app.until_status(&id, Status::Delivered, WAIT).await;
    assert_eq!(row.attempts.len(), 5);
    let last = f.tenant.received().last().cloned().unwrap();
    assert_eq!(last.header("x-payrelay-delivery"), Some(id.as_str()));
    assert_eq!(last.header("x-payrelay-attempt"), Some("5"));
    assert_eq!(f.app.rows().await.len(), 1);
    // The first attempt's event came from the relay's reading of the
    // callback, the later ones' from the stored body: the same.
    let received = f.tenant.received();
    let events: Vec<Option<&str>> = received.iter().map(|r| r.header("x-payrelay-event")).collect();
    assert_eq!(events, [Some("paid"); 5]);
}

#[tokio::test]
async fn a_longer_retry_after_is_honoured() {
    need_backend!();
    let tenant = MockServer::start().await;
    let config = shop_config(&tenant.url(), "http://127.0.0.1:1", "")
        .replace(r#"retry = ["100ms", "200ms", "300ms"]"#, r#"retry = ["100ms", "5s"]"#);
    let app = spawn_app(&config).await;
    tenant.reply(Reply::text(503, "busy").with_header("retry-after", "2"));
    notify(&app, &notification("FP01", "T1", "交易成功")).await;
    eventually("the first attempt", WAIT, || !tenant.received().is_empty()).await;
    let id = stored_id(&app).await;
    let d = app.until_attempts(&id, 1, WAIT).await;
    let wait = d.next_attempt_at_ms.unwrap() - d.attempts[0].at_ms;
    assert!((2000..2500).contains(&wait), "asked for 2 s, got {wait} ms");

    // Shorter than the schedule: the schedule wins.
    let app = spawn_app(&config).await;
    tenant.reply(Reply::text(503, "busy").with_header("retry-after", "0"));
    notify(&app, &notification("FP01", "T2", "交易成功")).await;
    let id = stored_id(&app).await;
    let d = app.until_attempts(&id, 1, WAIT).await;
    let wait = d.next_attempt_at_ms.unwrap() - d.attempts[0].at_ms;
    assert!((80..600).contains(&wait), "{wait} ms");
}

#[tokio::test]
async fn pending_retries_resume_after_a_restart() {
    need_backend!();
    let tenant = MockServer::start().await;
    let config = shop_config(&tenant.url(), "http://127.0.0.1:1", "")
        .replace(r#"retry = ["100ms", "200ms", "300ms"]"#, r#"retry = ["1s", "1s", "1s"]"#);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("payrelay.db");
    tenant.reply(Reply::text(500, "down"));
    let app = spawn_app_on(&config, &db).await;
    notify(&app, &notification("FP01", "T1", "交易成功")).await;
    eventually("the first attempt", WAIT, || tenant.received().len() == 1).await;
    let id = stored_id(&app).await;
    app.stop().await;

    tenant.reply(Reply::text(200, "1|OK"));
    let app = spawn_app_on(&config, &db).await;
    let row = app.until_status(&id, Status::Delivered, WAIT).await;
    let seen = attempts_seen(&tenant);
    assert_eq!(seen, [(id.clone(), "1".into()), (id.clone(), "2".into())], "attempt numbers count on across restarts");
    assert_eq!(row.attempts.len(), 2);
}

/// An attempt still waiting on its tenant when the gateway is told to stop
/// is finished and recorded before the store closes, not cut off and left
/// to its lease (after a restart: delivered once, one attempt, nothing sent
/// again).
#[tokio::test]
async fn a_delivery_in_flight_when_the_gateway_stops_is_finished_and_recorded() {
    need_backend!();
    let tenant = MockServer::start().await;
    let config = shop_config(&tenant.url(), "http://127.0.0.1:1", "");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("payrelay.db");
    tenant.reply(Reply::text(200, "1|OK").with_delay(Duration::from_millis(400)));
    let app = spawn_app_on(&config, &db).await;
    assert_eq!(notify(&app, &notification("FP01", "T1", "交易成功")).await, (200, "1|OK".into()));
    eventually("the first attempt", WAIT, || tenant.received().len() == 1).await;
    let id = stored_id(&app).await;
    tokio::time::timeout(WAIT, app.stop()).await.expect("the stop waited past its grace");

    let app = spawn_app_on(&config, &db).await;
    let row = app.detail(&id).await;
    assert_eq!(row.summary.status, Status::Delivered, "{row:?}");
    assert_eq!(row.attempts.len(), 1, "{row:?}");
    assert!(row.attempts[0].error.is_none(), "{row:?}");
    tokio::task::yield_now().await;
    assert_eq!(tenant.received().len(), 1, "sent again after the restart");
    app.stop().await;
}

#[tokio::test]
async fn ack_delivered_answers_by_the_first_attempt() {
    need_backend!();
    let tenant = MockServer::start().await;
    let config = shop_config(&tenant.url(), "http://127.0.0.1:1", "")
        .replace("domain_codes = [\"shop\"]", "domain_codes = [\"shop\"]\nack = \"delivered\"");
    let app = spawn_app(&config).await;

    // Tenant up: 1|OK only once it has the callback.
    assert_eq!(notify(&app, &notification("FP01", "T1", "交易成功")).await, (200, "1|OK".into()));
    assert_eq!(tenant.received().len(), 1, "answered before the tenant had it");

    // Tenant down: 503 0|Tenant unavailable, and the callback stays stored and retried.
    tenant.reply(Reply::text(500, "down"));
    let body = notification("FP01", "T2", "交易成功");
    assert_eq!(notify(&app, &body).await, (503, "0|Tenant unavailable".into()));
    let id = stored_id(&app).await;
    assert_eq!(app.detail(&id).await.summary.status, Status::Pending);

    // Funpoint resends while the tenant is still down: still 503, no new row.
    eventually("a retry", WAIT, || tenant.received().len() >= 3).await;
    let resend = notification("FP01", "T2", "paid");
    let (status, _) = notify(&app, &resend).await;
    assert_eq!(status, 503);

    // Tenant back: the worker delivers it; a later resend hears 1|OK.
    tenant.reply(Reply::text(200, "1|OK"));
    app.until_status(&id, Status::Delivered, WAIT).await;
    assert_eq!(notify(&app, &resend).await, (200, "1|OK".into()));
    assert_eq!(app.rows().await.len(), 2);

    // A tenant slower than inline_timeout: 503 within about inline_timeout.
    let slow = shop_config(&tenant.url(), "http://127.0.0.1:1", "")
        .replace("domain_codes = [\"shop\"]", "domain_codes = [\"shop\"]\nack = \"delivered\"")
        .replace("timeout = \"700ms\"", "timeout = \"2s\"\ninline_timeout = \"300ms\"");
    let app = spawn_app(&slow).await;
    tenant.reply(Reply::text(200, "1|OK").with_delay(Duration::from_secs(1)));
    let started = std::time::Instant::now();
    assert_eq!(notify(&app, &notification("FP01", "T3", "交易成功")).await, (503, "0|Tenant unavailable".into()));
    assert!(started.elapsed() < Duration::from_millis(900), "{:?}", started.elapsed());
    // The attempt went on and was recorded.
    let id = stored_id(&app).await;
    app.until_status(&id, Status::Delivered, WAIT).await;
}

#[tokio::test]
async fn retention_purges_old_delivered_rows_and_caps_rejected_ones() {
    need_backend!();
    let f = Fixture::start().await;
    for i in 0..3 {
        notify(&f.app, &notification("FP01", &format!("D{i}"), "交易成功")).await;
    }
    for i in 0..5 {
        let forged = notification("FP01", &format!("R{i}"), "交易成功").replace("TradeAmt=1200", "TradeAmt=1");
        assert_eq!(notify(&f.app, &forged).await.0, 400);
    }
    eventually("three deliveries", WAIT, || f.tenant.received().len() == 3).await;
    for r in f.app.rows().await.iter().filter(|r| r.status != Status::Rejected) {
        f.app.until_status(&r.id, Status::Delivered, WAIT).await;
    }
    let store = f.app.state.store();
    // Nothing is old enough yet.
    let kept = PurgePolicy::simple(payrelay::store::now_ms(), Duration::from_secs(3600), 100);
    assert_eq!(store.purge(kept).await.unwrap(), Default::default());
    let newest_rejected: Vec<String> =
        f.app.rows().await.iter().filter(|r| r.status == Status::Rejected).take(2).map(|r| r.id.to_string()).collect();

    // The purge as it runs a minute from now (an injected clock, no sleep).
    let later = payrelay::store::now_ms() + 60_000;
    let purged = store.purge(PurgePolicy::simple(later, Duration::from_secs(1), 2)).await.unwrap();
    assert_eq!((purged.delivered, purged.rejected), (3, 3));
    let left: Vec<String> = f.app.rows().await.iter().map(|r| r.id.to_string()).collect();
    assert_eq!(left, newest_rejected, "the newest rejected rows stay");
    // With its row gone, the same notification is new again.
    assert_eq!(notify(&f.app, &notification("FP01", "D0", "交易成功")).await, (200, "1|OK".into()));
    eventually("a fourth delivery", WAIT, || f.tenant.received().len() == 4).await;
}
