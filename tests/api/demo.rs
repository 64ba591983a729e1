//! `payrelay demo` and `payrelay sandbox` (issue 15): a whole payment
//! clicked through in headless Chromium — card, ATM paid later, a lost
//! notification found by the reconciler — and, over plain HTTP, the
//! sandbox behaving as Funpoint does (resends until `1|OK`, truthful
//! queries) and forged webhooks never reaching the shop. The demo always
//! runs on its own SQLite store, so only this (SQLite) binary has it.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use payrelay::demo::{Demo, DemoOptions};
use payrelay::domain::{CheckMac, HashAlgorithm, HashKeys, Secret};
use payrelay::sandbox::{Sandbox, SandboxOptions};

use crate::helpers::*;
use crate::webdriver::{Driver, browser_or_skip};

const WITHIN: Duration = Duration::from_secs(20);

async fn demo() -> Demo {
    let options = DemoOptions {
        reconcile_after: Duration::from_secs(2),
        resend: vec![Duration::from_millis(500)],
        ..DemoOptions::default()
    };
    Demo::start(options).await.expect("the demo starts")
}

/// Buys `product` paying with `method` from the shop's page, and lands on
/// the sandbox's payment page; returns the order number.
async fn buy(b: &Driver, demo: &Demo, product: &str, method: &str) -> String {
    b.go(&format!("{}/", demo.shop.url())).await;
    b.click(&format!("#method-{product} option[value={method}]")).await;
    b.click(&format!("#checkout-{product}")).await;
    b.until_url("/pay/").await;
    b.text("#order-no").await
}

/// The order's row on the shop's orders page, once it holds `part`.
async fn shop_order(b: &Driver, demo: &Demo, order: &str, part: &str) -> String {
    b.go(&format!("{}/orders", demo.shop.url())).await;
    b.until_text(&format!("#order-{order}"), part, WITHIN).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_pays_by_card_and_the_shop_and_the_console_show_it_delivered() {
    let Some(driver) = browser_or_skip() else { return };
    let demo = demo().await;
    let b = Driver::start(&driver).await;
    b.go(&format!("{}/", demo.shop.url())).await;
    b.save_screenshot("demo-shop.png").await;

    let order = buy(&b, &demo, "beans", "Credit").await;
    assert!(order.ends_with("01") && order.len() <= 20, "{order}");
    assert_eq!(b.text("#amount").await, "480");
    b.save_screenshot("demo-sandbox-pay.png").await;
    b.click("#pay-card").await;
    // Funpoint bounces the browser to OrderResultURL: the gateway relays it
    // to the shop's result page.
    b.until_url("/result").await;
    assert!(b.text("#result-says").await.contains("paid"));

    let row = shop_order(&b, &demo, &order, "verified query").await;
    assert!(row.contains("paid") && row.contains("event paid") && row.contains("source provider"), "{row}");
    b.save_screenshot("demo-shop-orders.png").await;
    // The same page on a phone.
    b.call(reqwest::Method::POST, "/window/rect", Some(serde_json::json!({"width": 390, "height": 844}))).await;
    b.go(&format!("{}/orders", demo.shop.url())).await;
    b.until_text(&format!("#order-{order}"), "paid", WITHIN).await;
    b.save_screenshot("demo-phone.png").await;
    b.call(reqwest::Method::POST, "/window/rect", Some(serde_json::json!({"width": 1280, "height": 900}))).await;

    // The console: the order's callback, delivered.
    let (host, token) = (demo.gateway.trim_start_matches("http://"), &demo.admin_token);
    b.go(&format!("http://demo:{token}@{host}/admin?q={order}")).await;
    let table = b.text("#callbacks").await;
    assert!(table.contains("delivered") && table.contains("demo-shop"), "{table}");
    b.save_screenshot("demo-console.png").await;
    drop(b);
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atm_order_shows_its_account_and_the_shop_updates_when_it_is_paid_later() {
    let Some(driver) = browser_or_skip() else { return };
    let demo = demo().await;
    let b = Driver::start(&driver).await;
    let order = buy(&b, &demo, "drip", "ATM").await;
    b.click("#pay-atm").await;
    // ClientRedirectURL → the gateway → the shop's result page, with the account.
    b.until_url("/result").await;
    let code = b.text("#result-code").await;
    assert!(code.contains("812") && code.contains("9103"), "{code}");
    let row = shop_order(&b, &demo, &order, "code_issued").await;
    assert!(row.contains("ATM 812 9103") && row.contains("event code_issued"), "{row}");

    // The money arrives: pressed on the sandbox's page.
    b.go(&format!("{}/", demo.sandbox.url())).await;
    b.click("#trades tr.state-code_issued .pay-later").await;
    b.until_url("#trade-").await;
    let row = shop_order(&b, &demo, &order, "event paid").await;
    assert!(row.contains("paid") && row.contains("verified query"), "{row}");
    drop(b);
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_whose_notification_is_lost_is_found_by_the_reconciler_and_reaches_the_shop() {
    let Some(driver) = browser_or_skip() else { return };
    let demo = demo().await;
    let b = Driver::start(&driver).await;
    let order = buy(&b, &demo, "beans", "Credit").await;
    b.click("#pay-lose").await;
    b.until_url("/result").await;
    // The browser says paid; no notification came, so the shop does not
    // believe it yet.
    assert!(b.text("#result-says").await.contains("paid"));
    assert_eq!(b.text("#result-state").await, "checkout");
    assert!(!demo.sandbox.sent().iter().any(|s| s.what.contains(&order)), "nothing was sent for {order}");

    let row = shop_order(&b, &demo, &order, "source reconcile").await;
    assert!(row.contains("paid") && row.contains("event paid") && row.contains("verified query"), "{row}");
    b.go(&format!("{}/", demo.sandbox.url())).await;
    assert!(b.text("#trades").await.contains("notification lost"));
    b.save_screenshot("demo-sandbox.png").await;

    // The console's order page: paid, found by reconciliation, delivered.
    let (host, token) = (demo.gateway.trim_start_matches("http://"), &demo.admin_token);
    b.go(&format!("http://demo:{token}@{host}/admin/orders/demo-shop/{order}")).await;
    assert_eq!(b.text("#order-state").await, "paid");
    let timeline = b.text("#timeline").await;
    assert!(timeline.contains("delivered"), "{timeline}");
    b.save_screenshot("demo-console-order.png").await;
    drop(b);
    demo.stop().await;
}

fn keys() -> HashKeys {
    HashKeys { key: Secret::new(STAGE_KEY), iv: Secret::new(STAGE_IV) }
}

fn mac_holds(fields: &[(String, String)]) -> bool {
    let mac = fields.iter().find(|(k, _)| k == "CheckMacValue").map(|(_, v)| v.as_str()).unwrap_or_default();
    let rest = fields.iter().filter(|(k, _)| k != "CheckMacValue").map(|(k, v)| (k.as_str(), v.as_str()));
    CheckMac::verify(rest, &keys(), HashAlgorithm::Sha256, mac)
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
}

#[tokio::test]
async fn the_sandbox_resends_until_answered_1_ok_and_answers_queries_truthfully() {
    let shop = MockServer::start().await;
    shop.reply(Reply::text(500, "oops"));
    let mut options = SandboxOptions::stage("127.0.0.1:0".parse().unwrap());
    options.resend = vec![Duration::from_millis(400), Duration::from_millis(400)];
    let sandbox = Sandbox::start(options).await.unwrap();
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let notify = format!("{}/notify", shop.url());
    let form = sign_fields(&[
        ("MerchantID", STAGE_MERCHANT),
        ("MerchantTradeNo", "SBX2026120200101"),
        ("MerchantTradeDate", "2026/12/02 10:00:00"),
        ("PaymentType", "aio"),
        ("TotalAmount", "720"),
        ("TradeDesc", "t"),
        ("ItemName", "咖啡"),
        ("ReturnURL", &notify),
        ("ChoosePayment", "Credit"),
        ("EncryptType", "1"),
    ]);
    let checkout = |body: String| client.post(format!("{}/Cashier/AioCheckOut/V5", sandbox.url())).body(body).send();
    let forged = form.replace("TotalAmount=720", "TotalAmount=1");
    assert_eq!(checkout(forged).await.unwrap().status(), 400, "a form the keys did not sign is refused");
    let page = checkout(form).await.unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()["location"], "/pay/0");
    assert_eq!(client.post(format!("{}/pay/0/card", sandbox.url())).send().await.unwrap().status(), 200);

    // Answered 500: resent, with RtnMsg changed and signed anew.
    eventually("the first notification", WITHIN, || !shop.received().is_empty()).await;
    shop.reply(Reply::text(200, "1|OK"));
    eventually("a resend", WITHIN, || shop.received().len() >= 2).await;
    let (first, second) = (shop.received()[0].form(), shop.received()[1].form());
    assert!(mac_holds(&first) && mac_holds(&second));
    assert_eq!((field(&first, "RtnCode"), field(&first, "TradeAmt")), ("1", "720"));
    assert_eq!((field(&first, "RtnMsg"), field(&second, "RtnMsg")), ("交易成功", "paid"));
    eventually("the sent log", WITHIN, || sandbox.sent().first().is_some_and(|s| s.answer == "200 1|OK")).await;
    assert_eq!(sandbox.sent().len(), 2, "no resend after 1|OK");

    // "Send a forged one": not signed with the keys, and sent once.
    client.post(format!("{}/trades/0/forge", sandbox.url())).send().await.unwrap();
    eventually("the forgery", WITHIN, || shop.received().len() == 3).await;
    let forgery = shop.received()[2].form();
    assert!(!mac_holds(&forgery) && field(&forgery, "TradeAmt") == "1");

    // QueryTradeInfo: signed, truthful; an outage answers 503.
    let query = |order: &str| {
        let body = sign_fields(&[
            ("MerchantID", STAGE_MERCHANT),
            ("MerchantTradeNo", order),
            ("TimeStamp", "1764640000"),
            ("PlatformID", ""),
        ]);
        client.post(format!("{}/Cashier/QueryTradeInfo/V5", sandbox.url())).body(body).send()
    };
    let answer: Vec<(String, String)> =
        form_urlencoded::parse(query("SBX2026120200101").await.unwrap().text().await.unwrap().as_bytes())
            .into_owned()
            .collect();
    assert!(mac_holds(&answer));
    assert_eq!((field(&answer, "TradeStatus"), field(&answer, "TradeAmt")), ("1", "720"));
    let unknown = query("NOSUCHORDER01").await.unwrap().text().await.unwrap();
    let unknown: Vec<(String, String)> = form_urlencoded::parse(unknown.as_bytes()).into_owned().collect();
    assert!(mac_holds(&unknown) && !["0", "1"].contains(&field(&unknown, "TradeStatus")), "{unknown:?}");
    client.post(format!("{}/outage", sandbox.url())).send().await.unwrap();
    assert_eq!(query("SBX2026120200101").await.unwrap().status(), 503);
    sandbox.stop().await;
}

/// The attack: a hostile page the developer visits posts to the sandbox on
/// 127.0.0.1 to make it pay, forge or send webhooks.
#[tokio::test]
async fn a_page_on_another_site_cannot_press_the_sandboxs_buttons() {
    let receiver = MockServer::start().await;
    let mut options = SandboxOptions::stage("127.0.0.1:0".parse().unwrap());
    options.webhooks = Some(receiver.url());
    let sandbox = Sandbox::start(options).await.unwrap();
    let client = payrelay::startup::http_client().unwrap();
    let press = |path: &str, header: (&'static str, String)| {
        client.post(format!("{}{path}", sandbox.url())).header(header.0, header.1).send()
    };
    let evil = ("origin", "http://evil.example".to_owned());
    let cross = ("sec-fetch-site", "cross-site".to_owned());
    for (path, header) in [("/send/oen/paid", evil.clone()), ("/send/tappay/forged", cross.clone()), ("/outage", cross)]
    {
        let r = press(path, header).await.unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    assert_eq!(press("/pay/0/card", evil).await.unwrap().status(), 403);
    // The page itself (same origin) still works.
    let own = ("origin", sandbox.url());
    assert_eq!(press("/send/oen/paid", own).await.unwrap().status(), 303);
    eventually("the one webhook", WITHIN, || !receiver.received().is_empty()).await;
    assert_eq!(receiver.received().len(), 1);
    assert_eq!(receiver.received()[0].path_and_query, "/oen/notify");
    sandbox.stop().await;
}

#[tokio::test]
async fn forged_webhooks_from_the_sandbox_are_never_delivered_to_the_demo_shop() {
    let demo = demo().await;
    let client = payrelay::startup::http_client().unwrap();
    for send in ["oen/paid", "oen/forged", "tappay/paid", "tappay/forged", "sinopac/paid", "sinopac/forged"] {
        let r = client.post(format!("{}/send/{send}", demo.sandbox.url())).send().await.unwrap();
        assert_eq!(r.status(), 303, "{send}: back to the sandbox page");
    }
    let admin = |status: &str| {
        client
            .get(format!("{}/admin/api/callbacks?status={status}", demo.gateway))
            .bearer_auth(&demo.admin_token)
            .send()
    };
    let count = |v: &serde_json::Value| v["items"].as_array().map_or(0, Vec::len);
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let delivered: serde_json::Value = admin("delivered").await.unwrap().json().await.unwrap();
        let rejected: serde_json::Value = admin("rejected").await.unwrap().json().await.unwrap();
        if count(&delivered) == 3 && count(&rejected) == 3 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "delivered {delivered}, rejected {rejected}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent = demo.sandbox.sent();
    let order_of = |what: &str| {
        sent.iter().find(|s| s.what.starts_with(what)).unwrap().what.rsplit(' ').next().unwrap().to_owned()
    };
    let page = client.get(format!("{}/orders", demo.shop.url())).send().await.unwrap().text().await.unwrap();
    for provider in ["Oen", "TapPay"] {
        let genuine = order_of(&format!("{provider} webhook"));
        let forged = order_of(&format!("{provider} forged"));
        assert!(page.contains(&genuine), "{provider}'s genuine {genuine} reached the shop");
        assert!(!page.contains(&forged), "{provider}'s forged {forged} never reaches the shop");
    }
    // SinoPac's webhook names no order: one of its two reached the shop.
    for path in ["/oen/notify", "/tappay/notify", "/sinopac/notify"] {
        assert_eq!(page.matches(path).count(), 1, "{path} once: {page}");
    }
    demo.stop().await;
}

/// The command under test, killed if the test fails before it stops it.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Child {
    fn spawn(args: &[&str]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_payrelay"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self(child)
    }

    /// SIGINT, as Ctrl-C sends; then the exit status (bounded wait).
    async fn interrupt(&mut self, what: &str) -> std::process::ExitStatus {
        assert!(Command::new("kill").args(["-INT", &self.0.id().to_string()]).status().unwrap().success());
        let deadline = std::time::Instant::now() + WITHIN;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "{what} did not stop on SIGINT");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Reads the child's stdout until a line starting with `label` (bounded).
fn line_with(lines: &mut impl Iterator<Item = std::io::Result<String>>, label: &str) -> String {
    for line in lines.by_ref().take(40) {
        let line = line.unwrap();
        if line.trim_start().starts_with(label) {
            return line;
        }
    }
    panic!("no {label:?} line");
}

fn url_in(line: &str) -> String {
    line.split_whitespace().find(|w| w.starts_with("http://")).unwrap().trim_end_matches('/').to_owned()
}

#[tokio::test]
async fn payrelay_demo_prints_its_urls_and_ctrl_c_stops_it_and_removes_its_store() {
    let client = payrelay::startup::http_client().unwrap();
    let mut child = Child::spawn(&["demo"]);
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let shop = url_in(&line_with(&mut lines, "shop"));
    let sandbox = url_in(&line_with(&mut lines, "sandbox"));
    let console = line_with(&mut lines, "console");
    let store = line_with(&mut lines, "store");
    let dir = std::path::PathBuf::from(store.split_whitespace().nth(1).unwrap());
    assert!(dir.join("payrelay.db").exists() && dir.join("routes.toml").exists());
    let token = console.rsplit(' ').next().unwrap();
    assert!(token.len() >= 32, "{console}");

    let page = client.get(format!("{shop}/")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Demo Coffee") && page.contains("/funpoint/checkout"), "{page}");
    assert_eq!(client.get(format!("{sandbox}/")).send().await.unwrap().status(), 200);
    let gateway = url_in(&console).trim_end_matches("/admin").to_owned();
    let admin = client.get(format!("{gateway}/admin/api/orders")).bearer_auth(token).send();
    assert_eq!(admin.await.unwrap().status(), 200);

    assert!(child.interrupt("payrelay demo").await.success());
    assert!(!dir.exists(), "the demo's store is removed");
}

#[tokio::test]
async fn payrelay_sandbox_serves_its_page_until_ctrl_c() {
    let client = payrelay::startup::http_client().unwrap();
    let mut child = Child::spawn(&["sandbox", "--listen", "127.0.0.1:0", "--webhooks", "http://127.0.0.1:1"]);
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let url = url_in(&line_with(&mut lines, "page"));
    let page = client.get(format!("{url}/")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Sandbox") && page.contains("send-oen"), "{page}");
    assert!(child.interrupt("payrelay sandbox").await.success());

    // It posts wherever a form says: never on an address other machines reach.
    let refused =
        Command::new(env!("CARGO_BIN_EXE_payrelay")).args(["sandbox", "--listen", "0.0.0.0:0"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a loopback address"));
}
