//! The order ledger and the reconciler (SPEC §9) end to end: a checkout is
//! relayed, and then its notification comes, or never does. The
//! reconciler runs on an injected clock (`reconcile_at`), the provider's
//! QueryTradeInfo is the loopback mock of `provider_api.rs`.

use std::time::Duration;

use payrelay::store::{OrderFilter, OrderState};

use crate::helpers::*;
use crate::provider_api::*;

const WAIT: Duration = Duration::from_secs(10);
const ORDER: &str = "T2024112201";
const ADMIN: &str = "ledger-test-admin-token-0123456789abcdef";

struct Shop {
    f: Fixture,
    api: ProviderApi,
}

impl Shop {
    async fn start() -> Self {
        let api = ProviderApi::start().await;
        // The budget counts real seconds; the rounds here run on an injected clock.
        let extra = format!("[admin]\ntoken = \"{ADMIN}\"\n[reconcile]\nper_merchant_per_second = 100\n");
        let (tenant, provider) = (MockServer::start().await, MockServer::start().await);
        let config = shop_config(&tenant.url(), &provider.url(), "").replace(
            &format!("payment_origins = [\"{}\"]", provider.url()),
            &format!("payment_origins = [\"{}\"]\napi_base = \"{}\"\n{extra}", provider.url(), api.url()),
        );
        let app = spawn_app(&config).await;
        Self { f: Fixture { app, tenant, provider }, api }
    }

    /// A relayed checkout of ORDER (100, by card); then the shop answers
    /// its notifications `1|OK`.
    async fn checkout(&self) {
        self.f.tenant_answers("Credit", "");
        assert_eq!(self.f.app.post_form("/funpoint/checkout", CHECKOUT).await.status(), 200);
        self.f.tenant.reply(Reply::text(200, "1|OK"));
    }

    /// ORDER as the ledger has it. A checkout reaches the ledger with the
    /// writer's next batch (within 20 ms), so this waits a bounded time.
    async fn order(&self) -> payrelay::store::Order {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some((order, _)) = self.f.app.state.store().order("shop", ORDER).await.unwrap() {
                return order;
            }
            assert!(tokio::time::Instant::now() < deadline, "the order never reached the ledger");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A reconciliation round `ahead` from now.
    async fn reconcile_in(&self, ahead: Duration) -> Vec<payrelay::reconcile::Reconciled> {
        let now = payrelay::store::now_ms() + i64::try_from(ahead.as_millis()).unwrap();
        payrelay::reconcile::reconcile_at(self.f.app.state.worker(), now).await.unwrap()
    }

    /// The notifications the shop received for ORDER.
    fn notifications(&self) -> Vec<Received> {
        let mine = |r: &Received| r.form().iter().any(|(k, v)| k == "MerchantTradeNo" && v == ORDER);
        self.f.tenant.received().into_iter().filter(|r| r.path_and_query == "/funpoint_r.php" && mine(r)).collect()
    }

    async fn admin(&self, path: &str) -> serde_json::Value {
        let res = self.f.app.client.get(self.f.app.url(path)).bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        res.json().await.unwrap()
    }
}

#[tokio::test]
async fn a_paid_order_whose_notification_never_came_reaches_the_shop_signed_with_its_keys() {
    need_backend!();
    let shop = Shop::start().await;
    shop.checkout().await;
    let order = shop.order().await;
    assert_eq!(
        (order.state, order.amount, order.payment_type.as_deref()),
        (OrderState::Checkout, Some(100), Some("Credit"))
    );
    assert!(shop.reconcile_in(Duration::from_secs(60)).await.is_empty(), "not asked before [reconcile] after (15m)");
    assert!(shop.api.queries().is_empty());

    // Funpoint has it paid; its notification was lost.
    shop.api.funpoint_trade(ORDER, "1", "100", "2411221530450001");
    let done = shop.reconcile_in(Duration::from_secs(16 * 60)).await;
    assert_eq!(done.len(), 1);
    assert!(done[0].found_paid, "{done:?}");
    eventually("the made notification at the shop", WAIT, || !shop.notifications().is_empty()).await;
    let got = &shop.notifications()[0];
    assert_eq!(got.header("x-payrelay-source"), Some("reconcile"));
    assert_eq!(got.header("x-payrelay-event"), Some("paid"));
    let fields = got.form();
    let field = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap_or_default();
    assert_eq!((field("RtnCode"), field("TradeAmt"), field("TradeNo")), ("1", "100", "2411221530450001"));
    // The shop's own check (the stage keys) accepts it.
    use payrelay::domain::{CheckMac, HashAlgorithm, HashKeys, Secret};
    let keys = HashKeys { key: Secret::new(STAGE_KEY), iv: Secret::new(STAGE_IV) };
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert!(CheckMac::verify(pairs, &keys, HashAlgorithm::Sha256, field("CheckMacValue")));
    let order = shop.order().await;
    assert_eq!(order.state, OrderState::Paid);
    assert!(order.reconciled_at_ms.is_some() && order.next_query_at_ms.is_none());

    // Funpoint's real notification arrives late: 1|OK, not delivered again.
    let late = notification_with(ORDER, "2411221530450001", "交易成功", &[("TradeAmt", "100")]);
    let res = shop.f.app.post_form("/funpoint/notify", &late).await;
    assert_eq!(res.text().await.unwrap(), "1|OK");
    assert_eq!(shop.reconcile_in(Duration::from_secs(3 * 86_400)).await.len(), 0, "a paid order is never asked again");
    tokio::task::yield_now().await;
    assert_eq!(shop.notifications().len(), 1, "the shop got the payment once");
}

#[tokio::test]
async fn an_order_whose_notification_arrives_is_never_queried_and_a_late_failure_leaves_it_paid() {
    need_backend!();
    let shop = Shop::start().await;
    shop.checkout().await;
    let paid = notification_with(ORDER, "T9", "交易成功", &[("TradeAmt", "100")]);
    assert_eq!(shop.f.app.post_form("/funpoint/notify", &paid).await.text().await.unwrap(), "1|OK");
    eventually("the delivery", WAIT, || shop.notifications().len() == 1).await;
    assert_eq!(shop.notifications()[0].header("x-payrelay-event"), Some("paid"));
    assert_eq!(shop.notifications()[0].header("x-payrelay-source"), Some("provider"));
    assert_eq!(shop.order().await.state, OrderState::Paid);
    // A failure notice after it (a resend gone wrong, a forgery with the MAC): still paid.
    let failed = notification_with(ORDER, "T9", "交易失敗", &[("TradeAmt", "100"), ("RtnCode", "10100058")]);
    assert_eq!(shop.f.app.post_form("/funpoint/notify", &failed).await.text().await.unwrap(), "1|OK");
    eventually("the failure delivered as an event", WAIT, || shop.notifications().len() == 2).await;
    assert_eq!(shop.notifications()[1].header("x-payrelay-event"), Some("failed"));
    assert_eq!(shop.order().await.state, OrderState::Paid, "a paid order never moves back");
    assert!(shop.reconcile_in(Duration::from_secs(16 * 60)).await.is_empty());
    assert!(shop.api.queries().is_empty(), "an order with a payment result is never queried");
}

#[tokio::test]
async fn an_unpaid_order_is_closed_and_nothing_is_delivered() {
    need_backend!();
    let shop = Shop::start().await;
    shop.checkout().await;
    shop.api.funpoint_trade(ORDER, "0", "100", "");
    let done = shop.reconcile_in(Duration::from_secs(16 * 60)).await;
    assert!(!done[0].found_paid && done[0].detail.contains("TradeStatus 0"), "{done:?}");
    let order = shop.order().await;
    assert_eq!((order.state, order.query_tries), (OrderState::Checkout, 1));
    assert!(order.next_query_at_ms.is_some(), "asked again on the schedule");
    // Still unpaid when the reconciler gives up (3 days): closed as expired.
    let done = shop.reconcile_in(Duration::from_secs(3 * 86_400 + 60)).await;
    assert!(done[0].detail.contains("closed"), "{done:?}");
    let order = shop.order().await;
    assert_eq!(order.state, OrderState::Expired);
    assert!(order.next_query_at_ms.is_none());
    assert!(shop.notifications().is_empty(), "nothing delivered for an unpaid order");
}

#[tokio::test]
async fn a_403_pauses_the_merchant_for_30_minutes() {
    need_backend!();
    let shop = Shop::start().await;
    shop.checkout().await;
    shop.api.outage(Some(Outage { status: 403, retry_after: None, hang: None }));
    let at = payrelay::store::now_ms() + 16 * 60_000;
    shop.reconcile_in(Duration::from_secs(16 * 60)).await;
    let order = shop.order().await;
    let pause = order.next_query_at_ms.unwrap() - at;
    assert!((29 * 60_000..=31 * 60_000).contains(&pause), "paused {pause} ms");
    assert_eq!(order.query_tries, 0, "a pause the provider asked for does not count");
    assert!(order.last_query.unwrap().contains("403"));
}

#[tokio::test]
async fn one_search_answers_did_order_x_get_paid_and_did_the_shop_get_it() {
    need_backend!();
    let shop = Shop::start().await;
    shop.checkout().await;
    let paid = notification_with(ORDER, "T9", "交易成功", &[("TradeAmt", "100")]);
    shop.f.app.post_form("/funpoint/notify", &paid).await;
    eventually("the delivery", WAIT, || shop.notifications().len() == 1).await;

    let other = notification("OTHER00001", "T8", "交易成功");
    shop.f.app.post_form("/funpoint/notify", &other).await;
    let found = shop.admin(&format!("/admin/api/callbacks?q={ORDER}")).await;
    assert_eq!(found["items"].as_array().unwrap().len(), 1, "only the order's callback: {found}");
    let orders = shop.admin("/admin/api/orders?q=T20241122").await;
    assert_eq!(orders["items"][0]["state"], "paid", "{orders}");
    let deadline = tokio::time::Instant::now() + WAIT;
    let order = loop {
        let order = shop.admin(&format!("/admin/api/orders/shop/{ORDER}")).await;
        if order["timeline"].as_array().unwrap().iter().any(|e| e["kind"] == "delivery") {
            break order;
        }
        assert!(tokio::time::Instant::now() < deadline, "no delivery in the timeline: {order}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let kinds: Vec<&str> = order["timeline"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["checkout", "callback", "delivery"], "{order}");
    assert_eq!(order["timeline"][2]["detail"], "HTTP 200");
    // The console answers the same question in one search.
    let html = |path: String| {
        let req = shop.f.app.client.get(shop.f.app.url(&path)).bearer_auth(ADMIN);
        async move { req.send().await.unwrap().text().await.unwrap() }
    };
    let found = html("/admin/orders?q=T20241122".to_owned()).await;
    assert!(found.contains(&format!("/admin/orders/shop/{ORDER}")) && found.contains(">paid<"), "{found}");
    let page = html(format!("/admin/orders/shop/{ORDER}")).await;
    assert!(
        page.contains("kind-checkout") && page.contains("kind-callback") && page.contains("kind-delivery"),
        "{page}"
    );
    let callbacks = html(format!("/admin?q={ORDER}")).await;
    assert_eq!(callbacks.matches("class=\"open\"").count(), 1, "{callbacks}");
    let nothing = OrderFilter { q: Some("NOPE".into()), limit: 10, ..Default::default() };
    assert!(shop.f.app.state.store().orders(&nothing).await.unwrap().is_empty());
}

#[tokio::test]
async fn two_instances_on_one_database_query_each_order_once() {
    need_backend!();
    if !crate::POSTGRES {
        return; // several instances share a store only on PostgreSQL
    }
    let api = ProviderApi::start().await;
    let (tenant, provider) = (MockServer::start().await, MockServer::start().await);
    let config = shop_config(&tenant.url(), &provider.url(), "")
        .replace(
            &format!("payment_origins = [\"{}\"]", provider.url()),
            &format!(
                "payment_origins = [\"{}\"]\napi_base = \"{}\"\nqueries_per_second = 100",
                provider.url(),
                api.url()
            ),
        )
        .replacen("[[tenants]]", "[reconcile]\nper_merchant_per_second = 100\n\n[[tenants]]", 1);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let (one, two) = (spawn_app_on(&config, &db).await, spawn_app_on(&config, &db).await);
    for i in 0..20 {
        let order = format!("R{i:08}01");
        let form = format!(
            r#"{{"payment_url":"{}/Cashier/AioCheckOut/V5","payment_value":{{"MerchantID":"1000031","MerchantTradeNo":"{order}","TotalAmount":100,"ChoosePayment":"Credit"}}}}"#,
            provider.url()
        );
        tenant.reply(Reply::json(form));
        assert_eq!(one.post_form("/funpoint/checkout", CHECKOUT).await.status(), 200);
        api.funpoint_trade(&order, "0", "100", "");
    }
    let now = payrelay::store::now_ms() + 16 * 60_000;
    let (a, b) = tokio::join!(
        payrelay::reconcile::reconcile_at(one.state.worker(), now),
        payrelay::reconcile::reconcile_at(two.state.worker(), now)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 20, "every due order asked, by one instance or the other");
    let queries = api.queries();
    let mut asked: Vec<String> = queries
        .iter()
        .filter_map(|(_, body)| body.split('&').find_map(|kv| kv.strip_prefix("MerchantTradeNo=")).map(str::to_owned))
        .collect();
    asked.sort();
    let before = asked.len();
    asked.dedup();
    assert_eq!((before, asked.len()), (20, 20), "each order queried exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payrelay_reconcile_lists_what_is_due_and_asks_only_without_dry_run() {
    need_backend!();
    let api = ProviderApi::start().await;
    let (tenant, provider) = (MockServer::start().await, MockServer::start().await);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("payrelay.db");
    let config = shop_config(&tenant.url(), &provider.url(), "")
        .replace(
            &format!("payment_origins = [\"{}\"]", provider.url()),
            &format!("payment_origins = [\"{}\"]\napi_base = \"{}\"", provider.url(), api.url()),
        )
        .replacen("[[tenants]]", "[reconcile]\nafter = \"0s\"\n\n[[tenants]]", 1);
    let app = spawn_app_on(&config, &db).await;
    let f = Fixture { app, tenant, provider };
    f.tenant_answers("Credit", "");
    assert_eq!(f.app.post_form("/funpoint/checkout", CHECKOUT).await.status(), 200);
    api.funpoint_trade(ORDER, "10200095", "100", "");
    // The gateway stops: its own reconciler (after = 0s) would race the command's.
    f.app.stop().await;
    let cfg = dir.path().join("routes.toml");
    std::fs::write(&cfg, format!("[storage]\nurl = \"{}\"\n{config}", store_url_for(&db))).unwrap();
    let run = move |dry: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_payrelay"));
        cmd.args(["reconcile", "--config", cfg.to_str().unwrap()]);
        if dry {
            cmd.arg("--dry-run");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let other = {
        let cfg = dir.path().join("routes.toml");
        move || {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_payrelay"))
                .args(["reconcile", "--config", cfg.to_str().unwrap(), "--tenant", "other"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    let (dry, other, wet) = tokio::task::spawn_blocking(move || (run(true), other(), run(false))).await.unwrap();
    assert!(other.contains("0 order(s) due"), "another tenant's round asks nothing: {other}");
    assert!(dry.contains("1 order(s) due") && dry.contains(ORDER), "{dry}");
    assert!(wet.contains("10200095"), "{wet}");
    assert_eq!(api.queries().len(), 1, "only the run without --dry-run asked Funpoint");
    let again = spawn_app_on(&config, &db).await;
    let order = again.state.store().order("shop", ORDER).await.unwrap().unwrap().0;
    assert_eq!(order.state, OrderState::Failed);
}

#[tokio::test]
async fn a_lost_period_of_a_recurring_order_is_found_and_delivered_once() {
    need_backend!();
    let shop = Shop::start().await;
    // A daily card subscription of three periods.
    shop.f.tenant_answers("Credit", r#","PeriodAmount":300,"PeriodType":"D","Frequency":1,"ExecTimes":3"#);
    assert_eq!(shop.f.app.post_form("/funpoint/checkout", CHECKOUT).await.status(), 200);
    shop.f.tenant.reply(Reply::text(200, "1|OK"));
    let paid = notification_with(ORDER, "T9", "交易成功", &[("TradeAmt", "100")]);
    shop.f.app.post_form("/funpoint/notify", &paid).await;
    // Period 2 comes; period 3's notification is lost.
    let period = |k: &str, gwsr: &str| {
        sign_fields(&[
            ("MerchantID", STAGE_MERCHANT),
            ("MerchantTradeNo", ORDER),
            ("StoreID", ""),
            ("RtnCode", "1"),
            ("RtnMsg", "交易成功"),
            ("PeriodType", "D"),
            ("Frequency", "1"),
            ("ExecTimes", "3"),
            ("Amount", "300"),
            ("Gwsr", gwsr),
            ("ProcessDate", "2026/12/02 10:00:00"),
            ("AuthCode", "770002"),
            ("FirstAuthAmount", "300"),
            ("TotalSuccessTimes", k),
            ("SimulatePaid", "0"),
        ])
    };
    assert_eq!(shop.f.app.post_form("/funpoint/notify", &period("2", "11002")).await.text().await.unwrap(), "1|OK");
    eventually("the payment and period 2", WAIT, || shop.notifications().len() == 2).await;
    assert!(shop.notifications().iter().any(|r| r.header("x-payrelay-event") == Some("period_paid")));
    let order = shop.order().await;
    assert_eq!(order.state, OrderState::Paid);
    assert!(order.next_query_at_ms.is_some(), "a recurring order is looked at again after its period");

    shop.api.funpoint_periods(ORDER, 3, 3);
    let done = shop.reconcile_in(Duration::from_secs(2 * 86_400)).await;
    assert!(done[0].found_paid && done[0].detail.contains("periods 3"), "{done:?}");
    eventually("period 3 made", WAIT, || shop.notifications().len() == 3).await;
    let made = shop.notifications().into_iter().find(|r| r.header("x-payrelay-source") == Some("reconcile")).unwrap();
    assert_eq!(made.header("x-payrelay-event"), Some("period_paid"));
    let fields = made.form();
    let field = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    assert_eq!(
        (field("TotalSuccessTimes"), field("Gwsr"), field("Amount")),
        ("3".into(), "11003".into(), "300".into())
    );
    use payrelay::domain::{CheckMac, HashAlgorithm, HashKeys, Secret};
    let keys = HashKeys { key: Secret::new(STAGE_KEY), iv: Secret::new(STAGE_IV) };
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert!(
        CheckMac::verify(pairs, &keys, HashAlgorithm::Sha256, &field("CheckMacValue")),
        "the shop's check accepts it"
    );
    assert!(shop.order().await.next_query_at_ms.is_none(), "all periods paid: nothing more to look for");

    // Funpoint's own period-3 notification, late: 1|OK, not delivered again.
    assert_eq!(shop.f.app.post_form("/funpoint/notify", &period("3", "11003")).await.text().await.unwrap(), "1|OK");
    assert!(shop.reconcile_in(Duration::from_secs(5 * 86_400)).await.is_empty());
    assert_eq!(shop.notifications().len(), 3);
}
