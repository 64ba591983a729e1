//! The admin console in a real headless Chromium, driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`): log in, filter to `dead`,
//! open one, press Replay, and see it become `delivered` once the tenant
//! is up. `.ci/run` installs both and sets `PAYRELAY_BROWSER_TESTS=required`;
//! elsewhere the test says it is skipped when chromedriver is missing.

use std::time::Duration;

use payrelay::store::Status;

use crate::admin::{Ops, TOKEN};
use crate::helpers::*;
use crate::webdriver::{Driver, browser_or_skip};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_replays_a_dead_callback_in_a_real_browser() {
    need_backend!();
    let Some(driver) = browser_or_skip() else { return };
    let mut ops = Ops::start().await;
    let body = notification("W01", "T1", "paid");
    assert_eq!(ops.notify(&body).await, 200);
    let id = ops.app.rows().await[0].id.clone();
    assert_eq!(ops.notify(&notification("W02", "T2", "paid")).await, 200); // other: delivered
    let forged = notification("W301", "T3", "paid").replace("CheckMacValue=", "CheckMacValue=00");
    assert_eq!(ops.notify(&forged).await, 400); // shop: rejected
    assert_eq!(ops.notify(&notification("W09", "T4", "paid")).await, 400); // unroutable
    ops.app.until_status(&id, Status::Dead, Duration::from_secs(15)).await;

    let b = Driver::start(&driver).await;
    // Log in: the browser's Basic credentials (any user name, the token).
    b.go(&format!("http://ops:{TOKEN}@{}/admin", ops.app.addr)).await;
    assert!(b.text("#count-dead").await.contains('1'));
    // The console as an operator sees it, for the README.
    let png = b.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"));
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin-console.png");
    std::fs::write(&out, png).unwrap();
    eprintln!("console screenshot: {}", out.display());

    // Filter to dead.
    b.click("#filter-status option[value=dead]").await;
    b.click("#apply").await;
    b.until_url("status=dead").await;
    let table = b.text("#callbacks").await;
    assert!(table.contains("dead") && table.contains("shop"), "{table}");
    assert!(!table.contains("delivered") && !table.contains("rejected"), "only dead rows: {table}");

    // Open it, bring the tenant up, press Replay.
    b.click("#callbacks a.open").await;
    b.until_url(&format!("/admin/callbacks/{id}")).await;
    assert_eq!(b.text("#status").await, "dead");
    assert!(b.text("#body").await.contains("MerchantTradeNo = W01"));
    let shop = MockServer::start_on(ops.down.take().unwrap()).await;
    b.click("#replay").await;
    b.until_url("done=replayed").await;
    assert!(b.text("#notice").await.contains("Queued again"));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        b.go(&format!("http://{}/admin/callbacks/{id}", ops.app.addr)).await;
        if b.text("#status").await == "delivered" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {} after replay", b.text("#status").await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(shop.received().iter().any(|r| r.body == body.as_bytes() && r.header("x-payrelay-attempt") == Some("4")));
    assert!(b.text("#attempts").await.contains("200"));
}
