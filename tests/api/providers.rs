//! Oen Tech, Sinopac and TapPay (SPEC §4) against a table with several
//! tenants per provider: the answers each provider hears, the rows kept,
//! and what each tenant received, counted against what was acknowledged.

use std::time::Duration;

use payrelay::store::Status;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(10);

/// alpha and beta take every provider and are found by payload keys;
/// gamma has no order suffix and no Oen merchant id (path URLs only);
/// funonly takes Funpoint alone.
fn config(alpha: &str, beta: &str, gamma: &str, funonly: &str) -> String {
    format!(
        r#"
[delivery]
timeout = "700ms"
retry = ["100ms", "200ms", "300ms"]

[[tenants]]
id = "alpha"
base_url = "{alpha}"
allow_http = true
order_suffix = "11"
[tenants.funpoint]
[tenants.oen]
merchant_id = "alpha-shop"
[tenants.sinopac]
shop_no = "NA0249_001"
[tenants.tappay]

[[tenants]]
id = "beta"
base_url = "{beta}"
allow_http = true
order_suffix = "22"
[tenants.oen]
merchant_id = "beta-shop"
notify_path = "/hooks/oen.php"
[tenants.sinopac]
shop_no = "NA0249_002"
[tenants.tappay]
notify_path = "/hooks/tappay.php"
return_path = "/done.php?from=tappay"

[[tenants]]
id = "gamma"
base_url = "{gamma}"
allow_http = true
[tenants.oen]
[tenants.sinopac]
[tenants.tappay]

[[tenants]]
id = "funonly"
base_url = "{funonly}"
allow_http = true
order_suffix = "33"
[tenants.funpoint]
"#
    )
}

struct Shops {
    app: TestApp,
    alpha: MockServer,
    beta: MockServer,
    gamma: MockServer,
    funonly: MockServer,
}

impl Shops {
    async fn start() -> Self {
        let (alpha, beta, gamma, funonly) = (
            MockServer::start().await,
            MockServer::start().await,
            MockServer::start().await,
            MockServer::start().await,
        );
        let app = spawn_app(&config(&alpha.url(), &beta.url(), &gamma.url(), &funonly.url())).await;
        Self { app, alpha, beta, gamma, funonly }
    }

    /// What all four tenants received, not counting barriers.
    fn total_received(&self) -> usize {
        let barriers = self.gamma.received().iter().filter(|r| r.body.starts_with(br#"{"purpose":"barrier""#)).count();
        [&self.alpha, &self.beta, &self.gamma, &self.funonly].iter().map(|m| m.received().len()).sum::<usize>()
            - barriers
    }

    /// A callback posted last and waited for: once gamma has it, a delivery
    /// of anything posted before it would have started too.
    async fn barrier(&self) {
        let n = self.gamma.received().len();
        let body = format!(r#"{{"purpose":"barrier","id":"barrier-{n}","success":true}}"#);
        let (status, _, _) = self.post("/tappay/notify/gamma", "application/json", &body).await;
        assert_eq!(status, 200);
        eventually("the barrier", WAIT, || self.gamma.received().len() > n).await;
    }

    /// Posts `body` with `content_type`; the status, Content-Type and body.
    async fn post(&self, path: &str, content_type: &str, body: &str) -> (u16, String, String) {
        post_raw(&self.app, path, content_type, body.as_bytes()).await
    }

    /// Every row stored, newest first, as (provider, tenant, status).
    async fn stored(&self) -> Vec<(String, Option<String>, Status)> {
        self.app.rows().await.into_iter().map(|r| (r.provider.to_string(), r.tenant, r.status)).collect()
    }
}

async fn post_raw(app: &TestApp, path: &str, content_type: &str, body: &[u8]) -> (u16, String, String) {
    let res =
        app.client.post(app.url(path)).header("content-type", content_type).body(body.to_vec()).send().await.unwrap();
    let status = res.status().as_u16();
    let ct = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, ct, res.text().await.unwrap())
}

const S0000: &str = r#"{"code":"S0000"}"#;

/// An Oen `charge` webhook as Oen sends it (a CVS payment: `paymentInfo`
/// is an object with the store code).
fn oen_charge(merchant: &str, id: &str, status: &str) -> String {
    format!(
        r#"{{"purpose":"charge","merchantId":"{merchant}","id":"{id}","transactionId":"tx_{id}","orderId":"ORD-{id}","amount":1250,"currency":"TWD","status":"{status}","success":true,"paymentType":"cvs","paymentInfo":{{"cvsCode":"LLL24112200123","expiredAt":"2026-11-25T15:59:59.000Z","store":"FAMILY"}},"customId":"訂單 #88 — 咖啡豆","createdAt":"2026-11-22T08:30:00.000Z"}}"#
    )
}

#[tokio::test]
async fn an_oen_charge_is_answered_s0000_and_reaches_only_its_tenant_byte_for_byte() {
    need_backend!();
    let s = Shops::start().await;
    let body = oen_charge("alpha-shop", "ch_9f1c2e", "charged");
    let (status, ct, text) = s.post("/oen/notify", "application/json; charset=utf-8", &body).await;
    assert_eq!((status, text.as_str()), (200, S0000));
    assert_eq!(ct, "application/json");

    eventually("the delivery to alpha", WAIT, || !s.alpha.received().is_empty()).await;
    let got = &s.alpha.received()[0];
    assert_eq!(got.path_and_query, "/oen/notify");
    assert_eq!(got.body, body.as_bytes(), "the tenant must get the exact bytes");
    assert_eq!(got.header("content-type"), Some("application/json; charset=utf-8"), "the provider's Content-Type");
    assert_eq!(got.header("x-payrelay-attempt"), Some("1"));
    assert_eq!(got.header("x-forwarded-for"), Some("127.0.0.1"));
    let id = got.header("x-payrelay-delivery").unwrap().to_owned();
    let row = s.app.until_status(&id, Status::Delivered, WAIT).await;
    assert_eq!((row.summary.provider.name(), row.summary.tenant.as_deref()), ("oen", Some("alpha")));
    assert_eq!(s.total_received(), 1, "nobody else got it");
}

#[tokio::test]
async fn oen_token_subscription_and_opt_in_event_shapes_are_routed() {
    need_backend!();
    let s = Shops::start().await;
    let token = r#"{"purpose":"token","merchantId":"beta-shop","id":"tok_77a0","success":true,"status":"active","token":"tok_live_5d9f","card":{"last4":"4242","brand":"visa"},"customId":"member-31"}"#;
    let schedule = r#"{"purpose":"schedule_subscription","merchantId":"beta-shop","id":"sub_0c3e","success":true,"status":"charged","period":3,"amount":399,"nextChargeAt":"2026-12-22T00:00:00.000Z"}"#;
    // Opt-in events carry no merchantId: only the per-tenant URL can route them.
    let opt_in = r#"{"purpose":"refund","id":"rf_11","success":true,"status":"refunded","amount":100}"#;
    for (path, body) in [("/oen/notify", token), ("/oen/notify", schedule), ("/oen/notify/gamma", opt_in)] {
        let (status, _, text) = s.post(path, "application/json", body).await;
        assert_eq!((status, text.as_str()), (200, S0000), "{path} {body}");
    }
    eventually("three deliveries", WAIT, || s.beta.received().len() == 2 && s.gamma.received().len() == 1).await;
    let beta: Vec<Vec<u8>> = s.beta.received().into_iter().map(|r| r.body.to_vec()).collect();
    assert!(beta.contains(&token.as_bytes().to_vec()) && beta.contains(&schedule.as_bytes().to_vec()));
    assert!(s.beta.received().iter().all(|r| r.path_and_query == "/hooks/oen.php"), "beta's own notify_path");
    assert_eq!(s.gamma.received()[0].body, opt_in.as_bytes());

    // The same opt-in event on the shared URL has nothing to route by.
    let (status, _, text) = s.post("/oen/notify", "application/json", opt_in).await;
    assert_eq!((status, text.as_str()), (400, r#"{"error":"Missing merchantId"}"#));
    let rows = s.stored().await;
    assert_eq!(rows[0], ("oen".to_owned(), None, Status::Unroutable));
    assert_eq!(s.total_received(), 3);
}

#[tokio::test]
async fn an_oen_resend_is_delivered_once_and_a_new_status_is_delivered() {
    need_backend!();
    let s = Shops::start().await;
    let first = oen_charge("alpha-shop", "ch_1", "charged");
    // A resend: the same event, other fields reordered and changed.
    let resend = r#"{"merchantId":"alpha-shop","purpose":"charge","id":"ch_1","status":"charged","success":true,"amount":1250,"createdAt":"2026-11-22T08:30:03.000Z"}"#;
    let refunded = oen_charge("alpha-shop", "ch_1", "refunded");
    for body in [first.as_str(), resend, refunded.as_str(), resend] {
        let (status, _, text) = s.post("/oen/notify", "application/json", body).await;
        assert_eq!((status, text.as_str()), (200, S0000));
    }
    let rows = s.app.rows().await;
    assert_eq!(rows.len(), 2, "the resends were not stored again: {rows:?}");
    for r in &rows {
        s.app.until_status(&r.id, Status::Delivered, WAIT).await;
    }
    s.barrier().await;
    let bodies: Vec<Vec<u8>> = s.alpha.received().into_iter().map(|r| r.body.to_vec()).collect();
    assert_eq!(bodies, vec![first.into_bytes(), refunded.into_bytes()]);
}

#[tokio::test]
async fn an_oen_webhook_sent_while_the_tenant_is_down_arrives_when_it_is_back() {
    need_backend!();
    // alpha's port is bound but not served: connections wait unanswered and
    // time out, as a tenant that hangs would.
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let alpha_url = format!("http://{}", down.local_addr().unwrap());
    let (beta, gamma, funonly) = (MockServer::start().await, MockServer::start().await, MockServer::start().await);
    let app = spawn_app(&config(&alpha_url, &beta.url(), &gamma.url(), &funonly.url())).await;

    let body = oen_charge("alpha-shop", "ch_down", "charged");
    let (status, _, text) = post_raw(&app, "/oen/notify", "application/json", body.as_bytes()).await;
    assert_eq!((status, text.as_str()), (200, S0000), "acknowledged on storage, not on the tenant");
    let id = app.rows().await[0].id.clone();
    let failed = app.until_attempts(&id, 1, WAIT).await;
    assert!(failed.attempts[0].error.is_some(), "{:?}", failed.attempts);
    assert_eq!(failed.summary.status, Status::Pending);

    let alpha = MockServer::start_on(down).await;
    let row = app.until_status(&id, Status::Delivered, WAIT).await;
    assert!(row.attempts.len() >= 2);
    let got = alpha.received();
    assert_eq!(got.last().unwrap().body, body.as_bytes());
    assert_eq!(got.last().unwrap().header("x-payrelay-delivery"), Some(id.as_str()));
}

#[tokio::test]
async fn success_for_oen_sinopac_and_tappay_is_any_2xx_and_a_500_is_retried() {
    need_backend!();
    let s = Shops::start().await;
    s.alpha.reply(Reply::text(204, ""));
    s.beta.reply(Reply::text(500, "oops"));
    let (status, _, _) = s.post("/oen/notify", "application/json", &oen_charge("alpha-shop", "ch_2", "charged")).await;
    assert_eq!(status, 200);
    let (status, _, _) =
        s.post("/tappay/notify", "application/json", r#"{"rec_trade_id":"D2","order_number":"B-22","status":0}"#).await;
    assert_eq!(status, 200);
    let rows = s.app.rows().await;
    let oen = rows.iter().find(|r| r.provider.name() == "oen").unwrap();
    let tappay = rows.iter().find(|r| r.provider.name() == "tappay").unwrap();
    s.app.until_status(&oen.id, Status::Delivered, WAIT).await;
    let d = s.app.until_attempts(&tappay.id, 2, WAIT).await;
    assert_eq!(d.attempts[0].status_code, Some(500));
    s.beta.reply(Reply::text(200, "thanks"));
    let d = s.app.until_status(&tappay.id, Status::Delivered, WAIT).await;
    let got = s.beta.received();
    let numbers: Vec<&str> = got.iter().filter_map(|r| r.header("x-payrelay-attempt")).collect();
    let expected: Vec<String> = (1..=d.attempts.len()).map(|n| n.to_string()).collect();
    assert_eq!(numbers, expected, "attempt numbers rise");
    assert!(
        got.iter().all(|r| r.header("x-payrelay-delivery") == Some(tappay.id.as_str())),
        "the delivery id is stable"
    );
}

#[tokio::test]
async fn sinopac_takes_json_or_form_whatever_the_header_says() {
    need_backend!();
    let s = Shops::start().await;
    let json = r#"{"ShopNo":"NA0249_001","PayToken":"a1b2c3d4e5"}"#;
    let form = "ShopNo=NA0249_002&PayToken=f6g7h8";
    // The headers say the opposite of the bodies.
    let (status, ct, text) = s.post("/sinopac/notify", "text/plain", json).await;
    assert_eq!((status, ct.as_str(), text.as_str()), (200, "application/json", r#"{"Status":"S"}"#));
    let (status, _, text) = s.post("/sinopac/notify", "application/json", form).await;
    assert_eq!((status, text.as_str()), (200, r#"{"Status":"S"}"#));
    // The JSON notification again, as a form: the same ShopNo and PayToken.
    let (status, _, _) =
        s.post("/sinopac/notify", "application/x-www-form-urlencoded", "ShopNo=NA0249_001&PayToken=a1b2c3d4e5").await;
    assert_eq!(status, 200);

    eventually("both deliveries", WAIT, || s.alpha.received().len() == 1 && s.beta.received().len() == 1).await;
    let a = &s.alpha.received()[0];
    assert_eq!((a.path_and_query.as_str(), a.body.as_ref()), ("/sinopac/notify", json.as_bytes()));
    assert_eq!(a.header("content-type"), Some("text/plain"), "delivered with the Content-Type received");
    let b = &s.beta.received()[0];
    assert_eq!(b.body, form.as_bytes());
    assert_eq!(s.stored().await.len(), 2, "the resend was not stored twice");
    s.barrier().await;
    assert_eq!(s.total_received(), 2, "the resend was not delivered");
}

#[tokio::test]
async fn tappay_routes_by_order_suffix_and_dedups_on_trade_and_status() {
    need_backend!();
    let s = Shops::start().await;
    let paid = r#"{"rec_trade_id":"D20261122AbCdEf","auth_code":"123456","bank_transaction_id":"TP20261122A1","order_number":"SHOP-000122","amount":880,"currency":"TWD","status":0,"msg":"Success","transaction_time_millis":1795336200000,"pay_info":{"method":"CREDIT_CARD","masked_credit_card_number":"424242******4242"},"acquirer":"TW_CTBC"}"#;
    let resend = paid.replace(r#""msg":"Success""#, r#""msg":"OK""#);
    let refunded = paid.replace(r#""status":0"#, r#""status":-1"#);
    for body in [paid, resend.as_str(), refunded.as_str()] {
        let (status, ct, text) = s.post("/tappay/notify", "application/json", body).await;
        assert_eq!((status, ct.as_str(), text.as_str()), (200, "application/json", r#"{"status":0}"#));
    }
    // gamma has no order suffix: on its own URL it takes any order number.
    let other = r#"{"rec_trade_id":"D20261122Zz","order_number":"SHOP-000111","status":0}"#;
    let (status, _, _) = s.post("/tappay/notify/gamma", "application/json", other).await;
    assert_eq!(status, 200);
    eventually("the deliveries", WAIT, || s.beta.received().len() == 2 && s.gamma.received().len() == 1).await;
    let beta: Vec<Vec<u8>> = s.beta.received().into_iter().map(|r| r.body.to_vec()).collect();
    assert_eq!(beta.len(), 2);
    assert!(beta.contains(&paid.as_bytes().to_vec()) && beta.contains(&refunded.as_bytes().to_vec()));
    assert!(s.beta.received().iter().all(|r| r.path_and_query == "/hooks/tappay.php"));
    s.barrier().await;
    assert_eq!(s.total_received(), 3);
}

#[tokio::test]
async fn a_payload_that_disagrees_with_the_path_tenant_is_rejected_and_reaches_nobody() {
    need_backend!();
    let s = Shops::start().await;
    let cases = [
        ("/oen/notify/beta", oen_charge("alpha-shop", "ch_x", "charged")),
        ("/sinopac/notify/alpha", r#"{"ShopNo":"NA0249_002","PayToken":"zz"}"#.to_owned()),
        ("/tappay/notify/alpha", r#"{"rec_trade_id":"D9","order_number":"X-22","status":0}"#.to_owned()),
    ];
    for (path, body) in &cases {
        let (status, ct, text) = s.post(path, "application/json", body).await;
        assert_eq!((status, ct.as_str(), text.as_str()), (400, "application/json", r#"{"error":"Tenant mismatch"}"#));
    }
    let rows = s.stored().await;
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.2 == Status::Rejected), "{rows:?}");
    s.barrier().await;
    assert_eq!(s.total_received(), 0);
}

#[tokio::test]
async fn unknown_keys_and_tenants_are_unroutable_and_reach_nobody() {
    need_backend!();
    let s = Shops::start().await;
    let cases = [
        ("/oen/notify", oen_charge("nobody", "ch_u", "charged"), r#"{"error":"Unknown merchantId"}"#),
        ("/oen/notify/funonly", oen_charge("alpha-shop", "ch_v", "charged"), r#"{"error":"Unknown tenant"}"#),
        ("/oen/notify/ghost", oen_charge("alpha-shop", "ch_w", "charged"), r#"{"error":"Unknown tenant"}"#),
        ("/sinopac/notify", r#"{"ShopNo":"NA0000_999","PayToken":"t"}"#.to_owned(), r#"{"error":"Unknown ShopNo"}"#),
        (
            "/tappay/notify",
            r#"{"rec_trade_id":"D1","order_number":"A-33","status":0}"#.to_owned(),
            r#"{"error":"Unknown order suffix"}"#,
        ),
    ];
    for (path, body, answer) in &cases {
        let (status, _, text) = s.post(path, "application/json", body).await;
        assert_eq!((status, text.as_str()), (400, *answer), "{path}");
    }
    let rows = s.stored().await;
    assert_eq!(rows.len(), cases.len());
    assert!(rows.iter().all(|r| r.2 == Status::Unroutable && r.1.is_none()), "{rows:?}");
    s.barrier().await;
    assert_eq!(s.total_received(), 0);
}

#[tokio::test]
async fn unparseable_bodies_get_400_in_the_providers_grammar_and_are_not_stored() {
    need_backend!();
    let s = Shops::start().await;
    let cases: [(&str, &[u8]); 7] = [
        ("/oen/notify", b"merchantId=alpha-shop&id=1"),
        ("/oen/notify", b"[{\"merchantId\":\"alpha-shop\"}]"),
        ("/oen/notify/alpha", b"{\"id\":\"\xff\xfe\"}"),
        ("/sinopac/notify", b"{\"ShopNo\":\"NA0249_001\""),
        ("/sinopac/notify", b"just some text"),
        ("/tappay/notify", b""),
        ("/tappay/notify", b"\"D1\""),
    ];
    for (path, body) in cases {
        let (status, ct, text) = post_raw(&s.app, path, "application/json", body).await;
        assert_eq!((status, ct.as_str(), text.as_str()), (400, "application/json", r#"{"error":"Bad Request"}"#));
    }
    // An unknown provider is no notify path at all.
    let (status, _, _) = s.post("/paypal/notify", "application/json", "{}").await;
    assert_eq!(status, 404);
    assert!(s.stored().await.is_empty());
    assert_eq!(s.total_received(), 0);
}

#[tokio::test]
async fn a_sinopac_browser_return_auto_posts_exactly_the_received_fields() {
    need_backend!();
    let s = Shops::start().await;
    let res =
        s.app.post_form("/sinopac/return", "ShopNo=NA0249_002&PayToken=tok%2B1&Note=%E5%92%96%E5%95%A1&Empty=").await;
    assert_eq!(res.status().as_u16(), 200);
    let csp = res.headers().get("content-security-policy").unwrap().to_str().unwrap().to_owned();
    assert!(csp.contains(&format!("form-action {}", s.beta.url())), "{csp}");
    let html = res.text().await.unwrap();
    assert!(html.contains(&format!(r#"action="{}/sinopac/return""#, s.beta.url())), "{html}");
    let inputs: Vec<&str> = html.matches("<input type=\"hidden\"").collect();
    assert_eq!(inputs.len(), 4, "{html}");
    for expected in [
        r#"name="ShopNo" value="NA0249_002""#,
        r#"name="PayToken" value="tok+1""#,
        r#"name="Note" value="咖啡""#,
        r#"name="Empty" value="""#,
    ] {
        assert!(html.contains(expected), "{expected} in {html}");
    }

    let res = s.app.post_form("/sinopac/return", "ShopNo=NA0000_404&PayToken=x").await;
    assert_eq!(res.status().as_u16(), 400);
    assert!(res.text().await.unwrap().contains("8000216"));
    assert!(s.stored().await.is_empty(), "browser returns are not stored");
}

#[tokio::test]
async fn a_tappay_browser_return_is_a_303_with_the_query_string_unchanged() {
    need_backend!();
    let s = Shops::start().await;
    let query = "rec_trade_id=D20261122AbCdEf&order_number=SHOP-000122&status=0&note=%E5%92%96+x";
    let res = s.app.client.get(s.app.url(&format!("/tappay/return/alpha?{query}"))).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 303);
    let location = res.headers().get("location").unwrap().to_str().unwrap();
    assert_eq!(location, format!("{}/tappay/return?{query}", s.alpha.url()));
    // beta's return_path has a query of its own: the received one follows it.
    let res = s.app.client.get(s.app.url(&format!("/tappay/return/beta?{query}"))).send().await.unwrap();
    assert_eq!(
        res.headers().get("location").unwrap().to_str().unwrap(),
        format!("{}/done.php?from=tappay&{query}", s.beta.url())
    );

    for tenant in ["ghost", "funonly"] {
        let res = s.app.client.get(s.app.url(&format!("/tappay/return/{tenant}?{query}"))).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 404, "{tenant}");
        assert!(res.text().await.unwrap().contains("8000217"));
    }
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    /// Arbitrary bytes, and arbitrary values under the fields the providers
    /// read, posted to every notify path of a running gateway. Arbitrary
    /// bytes always get a 4xx in the provider's grammar; a structured body
    /// gets a 4xx or, when it routes (a path tenant takes events without a
    /// key), the provider's acknowledgement. Never a 5xx; and the tenants
    /// receive exactly what was stored for them.
    #[test]
    fn arbitrary_bodies_on_every_notify_path_get_a_4xx_or_an_ack() {
        need_backend!();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let s = rt.block_on(Shops::start());
        let paths = [
            ("/funpoint/notify", "1|OK"),
            ("/funpoint/notify/alpha", "1|OK"),
            ("/payment_background_funpoint_receive.php", "1|OK"),
            ("/oen/notify", S0000),
            ("/oen/notify/alpha", S0000),
            ("/sinopac/notify", r#"{"Status":"S"}"#),
            ("/sinopac/notify/gamma", r#"{"Status":"S"}"#),
            ("/tappay/notify", r#"{"status":0}"#),
            ("/tappay/notify/beta", r#"{"status":0}"#),
        ];
        let key = prop_oneof![
            Just("MerchantTradeNo"),
            Just("CheckMacValue"),
            Just("merchantId"),
            Just("ShopNo"),
            Just("PayToken"),
            Just("order_number"),
            Just("rec_trade_id"),
        ];
        let structured = prop_oneof![
            prop::collection::vec((key.clone(), any::<String>()), 1..5).prop_map(|f| {
                serde_json::Value::Object(f.into_iter().map(|(k, v)| (k.to_owned(), v.into())).collect())
                    .to_string()
                    .into_bytes()
            }),
            prop::collection::vec((key, any::<String>()), 1..5)
                .prop_map(|f| payrelay::form::encode(f.iter().map(|(k, v)| (*k, v.as_str()))).into_bytes()),
        ];
        let body = prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| (true, b)),
            structured.prop_map(|b| (false, b)),
        ];
        let config = ProptestConfig { cases: 128, ..ProptestConfig::default() };
        let mut runner = proptest::test_runner::TestRunner::new(config);
        runner
            .run(&(0..paths.len(), body), |(i, (raw, body))| {
                let (path, ack) = paths[i];
                let (status, ct, text) = rt.block_on(post_raw(&s.app, path, "text/html", &body));
                if status == 200 && !raw {
                    prop_assert_eq!(text.as_str(), ack, "{}", path);
                    return Ok(());
                }
                prop_assert!((400..500).contains(&status), "{path}: {status} {text}");
                if ack == "1|OK" {
                    prop_assert!(text.starts_with("0|"), "{path}: {text}");
                } else {
                    prop_assert!(ct == "application/json" && text.starts_with(r#"{"error":"#), "{path}: {ct} {text}");
                }
                Ok(())
            })
            .unwrap();
        rt.block_on(async {
            s.barrier().await;
            let rows = s.app.rows().await;
            for r in rows.iter().filter(|r| r.status == Status::Pending) {
                s.app.until_status(&r.id, Status::Delivered, WAIT).await;
            }
            let delivered = s.app.rows().await.iter().filter(|r| r.status == Status::Delivered).count();
            assert_eq!(s.total_received() + 1, delivered, "each tenant got what was stored for it, once");
        });
    }
}
