//! `POST /funpoint/notify` (SPEC §3.3): what the provider hears, what the
//! store keeps, and the exact bytes the tenant receives.

use std::time::Duration;

use payrelay::store::Status;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(10);

async fn post(app: &TestApp, path: &str, body: &str) -> (u16, String, String) {
    // Funpoint labels its form "text/html".
    let res =
        app.client.post(app.url(path)).header("content-type", "text/html").body(body.to_owned()).send().await.unwrap();
    let status = res.status().as_u16();
    let ct = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, ct, res.text().await.unwrap())
}

#[tokio::test]
async fn an_accepted_notification_is_answered_1_ok_and_delivered_byte_for_byte() {
    need_backend!();
    let f = Fixture::start().await;
    let body = notification("FP24112215304501", "2411221530123456", "交易成功");
    let (status, ct, text) = post(&f.app, "/funpoint/notify", &body).await;
    assert_eq!((status, text.as_str()), (200, "1|OK"));
    assert!(ct.starts_with("text/plain"), "{ct}");

    eventually("the delivery", WAIT, || !f.tenant.received().is_empty()).await;
    let got = &f.tenant.received()[0];
    assert_eq!(got.method, "POST");
    assert_eq!(got.path_and_query, "/funpoint_r.php");
    assert_eq!(got.body, body.as_bytes(), "the tenant must get the exact bytes");
    assert_eq!(got.header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(got.header("x-payrelay-attempt"), Some("1"));
    assert_eq!(got.header("x-forwarded-for"), Some("127.0.0.1"));
    assert!(got.header("x-payrelay-simulated").is_none());
    assert!(got.header("webhook-signature").is_none(), "no forward secret, no signature");
    let id = got.header("x-payrelay-delivery").unwrap().to_owned();

    let row = f.app.until_status(&id, Status::Delivered, WAIT).await;
    assert_eq!(row.summary.tenant.as_deref(), Some("shop"));
    assert_eq!(row.summary.provider.name(), "funpoint");
    assert_eq!(row.body, body.as_bytes());
    assert_eq!(row.content_type.as_deref(), Some("text/html"));
    assert_eq!(row.attempts.len(), 1);
    assert_eq!(row.attempts[0].status_code, Some(200));
}

#[tokio::test]
async fn the_path_and_legacy_forms_route_the_same() {
    need_backend!();
    let f = Fixture::start().await;
    for (i, path) in ["/funpoint/notify/shop", "/payment_background_funpoint_receive.php"].iter().enumerate() {
        let body = notification("FP24112215304501", &format!("24112215301{i}"), "交易成功");
        let (status, _, text) = post(&f.app, path, &body).await;
        assert_eq!((status, text.as_str()), (200, "1|OK"), "{path}");
    }
    eventually("both deliveries", WAIT, || f.tenant.received().len() == 2).await;
}

#[tokio::test]
async fn a_stray_percent_is_taken_literally_and_passed_on_untouched() {
    need_backend!();
    let f = Fixture::start().await;
    // Sign the decoded value "100%"; send it with a bare '%' as a browser would.
    let signed = sign_fields(&[
        ("MerchantID", STAGE_MERCHANT),
        ("MerchantTradeNo", "P01"),
        ("ItemName", "100%"),
        ("RtnCode", "1"),
    ]);
    let raw = signed.replace("100%25", "100%");
    assert!(raw.contains("ItemName=100%&"));
    let (status, _, text) = post(&f.app, "/funpoint/notify", &raw).await;
    assert_eq!((status, text.as_str()), (200, "1|OK"));
    eventually("the delivery", WAIT, || !f.tenant.received().is_empty()).await;
    assert_eq!(f.tenant.received()[0].body, raw.as_bytes());
}

/// Sends one good notification and waits for it: once it has arrived, the
/// worker has passed anything sent before it, so "nothing else arrived" is
/// an observation, not a guess.
async fn nothing_else_reached(f: &Fixture, before: usize) {
    let body = notification("FP99999999999901", "sentinel", "交易成功");
    let (status, _, _) = post(&f.app, "/funpoint/notify", &body).await;
    assert_eq!(status, 200);
    eventually("the sentinel", WAIT, || f.tenant.received().iter().any(|r| r.body == body.as_bytes())).await;
    assert_eq!(f.tenant.received().len(), before + 1, "a refused callback reached the tenant");
}

#[tokio::test]
async fn forged_or_missing_mac_and_wrong_merchant_are_rejected() {
    need_backend!();
    let f = Fixture::start().await;
    let good = notification("FP24112215304501", "T1", "交易成功");
    let forged = good.replace("TradeAmt=1200", "TradeAmt=1");
    let unsigned: String = good.split('&').filter(|p| !p.starts_with("CheckMacValue=")).collect::<Vec<_>>().join("&");
    let wrong_merchant = notification_with("FP24112215304501", "T2", "交易成功", &[("MerchantID", "3002607")]);
    let cases = [
        (forged.as_str(), "0|CheckMacValue Error"),
        (unsigned.as_str(), "0|CheckMacValue Error"),
        (wrong_merchant.as_str(), "0|MerchantID Error"),
    ];
    for (body, want) in cases {
        let (status, _, text) = post(&f.app, "/funpoint/notify", body).await;
        assert_eq!((status, text.as_str()), (400, want));
    }
    let rows = f.app.rows().await;
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.status == Status::Rejected && r.tenant.as_deref() == Some("shop")), "{rows:?}");
    nothing_else_reached(&f, 0).await;
}

#[tokio::test]
async fn unknown_suffix_unknown_tenant_and_mismatch() {
    need_backend!();
    let f = Fixture::start().await;
    let unknown_suffix = notification("FP24112215304577", "T1", "交易成功");
    let (status, _, text) = post(&f.app, "/funpoint/notify", &unknown_suffix).await;
    assert_eq!((status, text.as_str()), (400, "0|Unknown order suffix"));

    let good = notification("FP24112215304501", "T2", "交易成功");
    let (status, _, text) = post(&f.app, "/funpoint/notify/nope", &good).await;
    assert_eq!((status, text.as_str()), (400, "0|Unknown tenant"));

    // Tenant "other" (suffix 02) named in the path, an order of "shop" (01).
    let (status, _, text) = post(&f.app, "/funpoint/notify/other", &good).await;
    assert_eq!((status, text.as_str()), (400, "0|Tenant mismatch"));

    let mut rows = f.app.rows().await;
    rows.reverse();
    let got: Vec<(Status, Option<&str>)> = rows.iter().map(|r| (r.status, r.tenant.as_deref())).collect();
    assert_eq!(got, [(Status::Unroutable, None), (Status::Unroutable, None), (Status::Rejected, Some("other"))]);
    assert!(rows[0].last_error.as_deref().unwrap().contains("77"));
    nothing_else_reached(&f, 0).await;
}

#[tokio::test]
async fn unparseable_bodies_are_400_and_not_stored() {
    need_backend!();
    let f = Fixture::start().await;
    for body in ["RtnCode=1&RtnMsg=paid", "MerchantTradeNo=%FF%FE01", ""] {
        let (status, _, text) = post(&f.app, "/funpoint/notify", body).await;
        assert_eq!((status, text.as_str()), (400, "0|Bad Request"), "{body:?}");
    }
    let res = f
        .app
        .client
        .post(f.app.url("/funpoint/notify"))
        .body(b"MerchantTradeNo=A01&x=\xff".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(f.app.rows().await.is_empty());
    assert!(f.tenant.received().is_empty());
}

#[tokio::test]
async fn a_resend_with_a_new_rtnmsg_is_acknowledged_and_not_delivered_twice() {
    need_backend!();
    let f = Fixture::start().await;
    let first = notification("FP24112215304501", "2411221530123456", "交易成功");
    let resend = notification("FP24112215304501", "2411221530123456", "paid");
    assert_ne!(first, resend, "the resend's RtnMsg and CheckMacValue differ");
    for body in [&first, &resend, &first] {
        let (status, _, text) = post(&f.app, "/funpoint/notify", body).await;
        assert_eq!((status, text.as_str()), (200, "1|OK"));
    }
    // A different TradeNo is a different payment.
    let other = notification("FP24112215304501", "2411221530999999", "交易成功");
    assert_eq!(post(&f.app, "/funpoint/notify", &other).await.2, "1|OK");
    eventually("two deliveries", WAIT, || f.tenant.received().len() >= 2).await;
    nothing_else_reached(&f, 2).await;
    let bodies: Vec<_> = f.tenant.received().iter().map(|r| r.body.clone()).collect();
    assert!(bodies.contains(&first.clone().into()) && bodies.contains(&other.clone().into()));
    assert_eq!(f.app.rows().await.len(), 3, "the resends are not stored again");
}

#[tokio::test]
async fn simulated_payments_are_flagged_or_dropped() {
    need_backend!();
    let f = Fixture::start().await;
    let simulated = notification_with("FP24112215304501", "S1", "交易成功", &[("SimulatePaid", "1")]);
    assert_eq!(post(&f.app, "/funpoint/notify", &simulated).await.2, "1|OK");
    eventually("the delivery", WAIT, || !f.tenant.received().is_empty()).await;
    assert_eq!(f.tenant.received()[0].header("x-payrelay-simulated"), Some("1"));

    let tenant = MockServer::start().await;
    let config = shop_config(&tenant.url(), "http://127.0.0.1:1", "")
        .replace("domain_codes = [\"shop\"]", "domain_codes = [\"shop\"]\ndrop_simulated = true");
    let app = spawn_app(&config).await;
    let (status, _, text) = post(&app, "/funpoint/notify", &simulated).await;
    assert_eq!((status, text.as_str()), (200, "1|OK"), "dropped, but acknowledged so Funpoint stops resending");
    let rows = app.rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, Status::Rejected);
    let real = notification("FP24112215304501", "R1", "交易成功");
    assert_eq!(post(&app, "/funpoint/notify", &real).await.2, "1|OK");
    eventually("the real payment", WAIT, || !tenant.received().is_empty()).await;
    assert_eq!(tenant.received().len(), 1);
    assert_eq!(tenant.received()[0].body, real.as_bytes());
}

#[tokio::test]
async fn deliveries_are_signed_per_standard_webhooks() {
    need_backend!();
    use base64::Engine as _;
    use hmac::{KeyInit, Mac};
    let tenant = MockServer::start().await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let config = shop_config(&tenant.url(), "http://127.0.0.1:1", "")
        .replace("domain_codes = [\"shop\"]", &format!("domain_codes = [\"shop\"]\nforward_secret = \"{secret}\""));
    let app = spawn_app(&config).await;
    let body = notification("FP24112215304501", "W1", "交易成功");
    assert_eq!(post(&app, "/funpoint/notify", &body).await.2, "1|OK");
    eventually("the delivery", WAIT, || !tenant.received().is_empty()).await;
    let got = &tenant.received()[0];
    let id = got.header("webhook-id").unwrap();
    assert_eq!(Some(id), got.header("x-payrelay-delivery"));
    let ts: i64 = got.header("webhook-timestamp").unwrap().parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((now - ts).abs() < 60);
    // Verify as a tenant would, from the spec, with nothing of payrelay's.
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.decode(secret.trim_start_matches("whsec_")).unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&got.body);
    let expected = format!("v1,{}", b64.encode(mac.finalize().into_bytes()));
    assert_eq!(got.header("webhook-signature"), Some(expected.as_str()));
}

#[tokio::test]
async fn many_concurrent_notifications_are_each_stored_and_delivered() {
    need_backend!();
    let f = Fixture::start().await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let client = f.app.client.clone();
        let url = f.app.url("/funpoint/notify");
        tasks.spawn(async move {
            let body = notification(&format!("C{i:06}01"), &format!("T{i}"), "交易成功");
            let res = client.post(url).body(body).send().await.unwrap();
            (res.status().as_u16(), res.text().await.unwrap())
        });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap(), (200, "1|OK".to_owned()));
    }
    eventually("200 deliveries", WAIT, || f.tenant.received().len() >= 200).await;
    let mut orders: Vec<String> = f
        .tenant
        .received()
        .iter()
        .map(|r| r.form().into_iter().find(|(k, _)| k == "MerchantTradeNo").unwrap().1)
        .collect();
    orders.sort();
    orders.dedup();
    assert_eq!(orders.len(), 200);
}

#[tokio::test]
async fn readyz_answers_when_storage_does() {
    need_backend!();
    let f = Fixture::start().await;
    let res = f.app.client.get(f.app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

/// A gateway whose dedup window is one hour, its tenant, a notification.
async fn one_hour_window() -> (MockServer, TestApp, String) {
    let tenant = MockServer::start().await;
    let config = shop_config(&tenant.url(), "http://127.0.0.1:1", "")
        .replace("timeout = \"700ms\"", "timeout = \"700ms\"\ndedup_window = \"1h\"");
    let app = spawn_app(&config).await;
    (tenant, app, notification("FP24112215304501", "T1", "交易成功"))
}

#[tokio::test]
async fn a_resend_after_the_dedup_window_is_a_new_callback() {
    need_backend!();
    let (tenant, app, body) = one_hour_window().await;
    assert_eq!(post(&app, "/funpoint/notify", &body).await.2, "1|OK");
    assert_eq!(post(&app, "/funpoint/notify", &body).await.2, "1|OK");
    eventually("the first delivery", WAIT, || tenant.received().len() == 1).await;
    assert_eq!(app.rows().await.len(), 1, "inside the window: one callback");
    // The store's clock moves past the window (no sleep).
    app.state.store().clock().advance(Duration::from_secs(3601));
    assert_eq!(post(&app, "/funpoint/notify", &body).await.2, "1|OK");
    eventually("the second delivery", WAIT, || tenant.received().len() == 2).await;
    let rows = app.rows().await;
    assert_eq!(rows.len(), 2, "outside the window: a new callback");
    assert_ne!(tenant.received()[0].header("x-payrelay-delivery"), tenant.received()[1].header("x-payrelay-delivery"));
}

/// Resends of a delivered callback are answered from memory (issue 14);
/// the dedup window still ends on the store's clock.
#[tokio::test]
async fn a_resend_answered_from_memory_still_ends_with_the_window() {
    need_backend!();
    let (tenant, app, body) = one_hour_window().await;
    assert_eq!(post(&app, "/funpoint/notify", &body).await.2, "1|OK");
    app.until_status(&app.rows().await[0].id, Status::Delivered, WAIT).await;
    for _ in 0..3 {
        assert_eq!(post(&app, "/funpoint/notify", &body).await.2, "1|OK");
    }
    assert_eq!((app.rows().await.len(), tenant.received().len()), (1, 1), "resends: not stored, not delivered");
    app.state.store().clock().advance(Duration::from_secs(3601));
    assert_eq!(post(&app, "/funpoint/notify", &body).await.2, "1|OK");
    eventually("the second delivery", WAIT, || tenant.received().len() == 2).await;
    assert_eq!(app.rows().await.len(), 2, "outside the window: a new callback, whatever memory said");
}
