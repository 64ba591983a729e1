//! Verification by query (SPEC §8) end to end: the gateway, a mock shop,
//! and mock provider query APIs on loopback (`provider_api.rs`). What a
//! shop would check: which callbacks it received, their bytes and their
//! `X-Payrelay-Verified`; what the provider heard; the row in the store.

use std::time::Duration;

use base64::Engine as _;
use hmac::KeyInit as _;
use hmac::Mac as _;
use payrelay::store::{Status, Verified};

use crate::helpers::*;
use crate::provider_api::*;

const WAIT: Duration = Duration::from_secs(15);
const ADMIN: &str = "verify-test-admin-token-0123456789abcdef";

/// One tenant taking every provider, each section with its credentials
/// (from `${VAR:-default}`s: credentials come only from the environment).
fn config(shop: &str, api: &ProviderApi, extra: &str) -> String {
    let [a1, a2, b1, b2] = SINOPAC_PARTS;
    format!(
        r#"
[delivery]
timeout = "700ms"
retry = ["100ms", "200ms"]
[admin]
token = "{ADMIN}"
{providers}
[[tenants]]
id = "shop"
base_url = "{shop}"
allow_http = true
order_suffix = "01"
{extra}
[tenants.funpoint]
merchant_id = "{STAGE_MERCHANT}"
hash_key = "{STAGE_KEY}"
hash_iv = "{STAGE_IV}"
verify = "query"
[tenants.oen]
merchant_id = "oen-shop"
api_token = "${{OEN_TOKEN:-{OEN_TOKEN}}}"
[tenants.sinopac]
shop_no = "NA0249_001"
hash_a1 = "${{SP_A1:-{a1}}}"
hash_a2 = "${{SP_A2:-{a2}}}"
hash_b1 = "${{SP_B1:-{b1}}}"
hash_b2 = "${{SP_B2:-{b2}}}"
[tenants.tappay]
partner_key = "${{TAPPAY_KEY:-{TAPPAY_KEY}}}"
merchant_id = "{TAPPAY_MERCHANT}"
"#,
        providers = api.providers_toml()
    )
}

struct Rig {
    app: TestApp,
    shop: MockServer,
    api: ProviderApi,
}

impl Rig {
    async fn start(extra: &str) -> Self {
        let (shop, api) = (MockServer::start().await, ProviderApi::start().await);
        let app = spawn_app(&config(&shop.url(), &api, extra)).await;
        Self { app, shop, api }
    }

    async fn post_json(&self, path: &str, body: &str) -> (u16, String) {
        let res =
            self.app.client.post(self.app.url(path)).header("content-type", "application/json").body(body.to_owned());
        let res = res.send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    /// The id of the stored callback whose body is `body`.
    async fn id_of(&self, body: &str) -> String {
        for row in self.app.rows().await {
            if self.app.detail(&row.id).await.body == body.as_bytes() {
                return row.id.to_string();
            }
        }
        panic!("no stored callback with body {body}")
    }

    /// Posts `body` to `path`, expects the provider's acknowledgement,
    /// waits until the callback reaches `status`; its detail.
    async fn settle(&self, path: &str, body: &str, status: Status) -> payrelay::store::CallbackDetail {
        let (code, _) = if path.starts_with("/funpoint") {
            let res = self.app.post_form(path, body).await;
            (res.status().as_u16(), res.text().await.unwrap())
        } else {
            self.post_json(path, body).await
        };
        assert_eq!(code, 200, "the provider is acknowledged at once, before any query");
        let id = self.id_of(body).await;
        self.app.until_status(&id, status, WAIT).await
    }

    /// What the shop received with this body.
    fn deliveries_of(&self, body: &str) -> Vec<Received> {
        self.shop.received().into_iter().filter(|r| r.body == body.as_bytes()).collect()
    }
}

fn tappay(rec: &str, order: &str, amount: u64) -> String {
    format!(r#"{{"rec_trade_id":"{rec}","order_number":"{order}","amount":{amount},"status":0,"msg":"Success"}}"#)
}

fn verification(d: &payrelay::store::CallbackDetail) -> (Verified, String) {
    d.verification.clone().expect("a verification outcome is kept")
}

#[tokio::test]
async fn a_forged_tappay_notification_is_never_delivered_and_a_genuine_one_once_with_the_header() {
    need_backend!();
    let rig = Rig::start("").await;
    rig.api.tappay_record("D20261202TP0001", "TP000101", 1200, 0);

    let genuine = tappay("D20261202TP0001", "TP000101", 1200);
    let d = rig.settle("/tappay/notify", &genuine, Status::Delivered).await;
    assert_eq!(verification(&d).0, Verified::Confirmed);
    let got = rig.deliveries_of(&genuine);
    assert_eq!(got.len(), 1, "delivered once");
    assert_eq!(got[0].header("x-payrelay-verified"), Some("query"));

    // A real-looking rec_trade_id TapPay never issued: asked on the
    // schedule, never confirmed, never delivered.
    let forged = tappay("D20261202FORGED", "TP000201", 1200);
    let d = rig.settle("/tappay/notify", &forged, Status::Rejected).await;
    let (outcome, detail) = verification(&d);
    assert_eq!(outcome, Verified::NotYet);
    assert!(detail.contains("never confirmed"), "{detail}");
    assert_eq!(d.summary.last_error.as_deref(), Some(detail.as_str()));
    // A genuine rec_trade_id on another order: contradicted at once.
    let stolen = tappay("D20261202TP0001", "TP000301", 1200);
    let d = rig.settle("/tappay/notify", &stolen, Status::Rejected).await;
    assert_eq!(verification(&d).0, Verified::Contradicted);
    assert!(verification(&d).1.contains("TP000301"), "{}", verification(&d).1);
    assert!(rig.deliveries_of(&forged).is_empty() && rig.deliveries_of(&stolen).is_empty());
    // The operator sees the outcome and an excerpt of TapPay's answer; never the partner key.
    let url = rig.app.url(&format!("/admin/api/callbacks/{}", d.summary.id));
    let shown: serde_json::Value =
        rig.app.client.get(url).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    assert_eq!(shown["verification"]["outcome"], "contradicted");
    assert!(shown["verification"]["detail"].as_str().unwrap().contains("trade_records"), "{shown}");
    assert!(!shown.to_string().contains(TAPPAY_KEY));
    // TapPay heard the partner key in the header and the body.
    let asked = rig.api.queries();
    assert!(asked.iter().all(|(path, body)| path == "/tpc/transaction/query" && body.contains(TAPPAY_KEY)));
    assert_eq!(asked.len(), 5, "one query for each of the genuine and the stolen, three for the forged: {asked:?}");
}

#[tokio::test]
async fn funpoint_query_confirms_what_is_paid_and_refuses_the_unpaid_and_the_mismatched() {
    need_backend!();
    let rig = Rig::start("").await;
    rig.api.funpoint_trade("A0000101", "1", "1200", "T1");
    rig.api.funpoint_trade("A0000201", "0", "1200", "T2");
    rig.api.funpoint_trade("A0000301", "1", "999", "T3");
    let paid = notification("A0000101", "T1", "交易成功");
    let d = rig.settle("/funpoint/notify", &paid, Status::Delivered).await;
    assert_eq!(verification(&d).0, Verified::Confirmed);
    assert_eq!(rig.deliveries_of(&paid)[0].header("x-payrelay-verified"), Some("query"));
    let unpaid = notification("A0000201", "T2", "交易成功");
    assert_eq!(verification(&rig.settle("/funpoint/notify", &unpaid, Status::Rejected).await).0, Verified::NotYet);
    let mismatched = notification("A0000301", "T3", "交易成功");
    let d = rig.settle("/funpoint/notify", &mismatched, Status::Rejected).await;
    assert_eq!(verification(&d).0, Verified::Contradicted);
    assert!(verification(&d).1.contains("999"), "{}", verification(&d).1);
    assert_eq!(rig.shop.received().len(), 1, "only the paid one reached the shop");
    // The query was signed with the tenant's keys (the mock checks it) and
    // names the merchant and the order.
    let (_, first) = &rig.api.queries()[0];
    assert!(first.contains("MerchantID=1000031") && first.contains("MerchantTradeNo=A0000101"), "{first}");
}

#[tokio::test]
async fn an_answer_whose_mac_fails_is_unavailable_and_the_callback_ends_dead_not_delivered() {
    need_backend!();
    let rig = Rig::start("").await;
    rig.api.funpoint_trade("A0000401", "1", "1200", "T4");
    rig.api.funpoint_bad_mac();
    let body = notification("A0000401", "T4", "交易成功");
    let d = rig.settle("/funpoint/notify", &body, Status::Dead).await;
    let (outcome, detail) = verification(&d);
    assert_eq!(outcome, Verified::Unavailable);
    assert!(detail.contains("CheckMacValue"), "{detail}");
    assert!(rig.shop.received().is_empty());
    // Dead is replayable; once the provider answers properly it goes through.
    let admin = rig
        .app
        .state
        .store()
        .replay(payrelay::store::Replay::One { id: d.summary.id.clone(), from: vec![Status::Dead] });
    assert_eq!(admin.await.unwrap(), 1);
}

#[tokio::test]
async fn oen_confirms_a_charged_transaction_and_mark_delivers_a_contradicted_one_saying_so() {
    need_backend!();
    let rig = Rig::start("").await;
    rig.api.oen_transaction("2HhndgEquCbDzC5OyVxWSGZmd2l", "A20261202001", 1200, "charged");
    let paid = r#"{"purpose":"charge","id":"2HhndgEquCbDzC5OyVxWSGZmd2l","status":"charged","success":true,"merchantId":"oen-shop","orderId":"A20261202001","amount":1200}"#;
    let d = rig.settle("/oen/notify", paid, Status::Delivered).await;
    assert_eq!(verification(&d).0, Verified::Confirmed);
    assert_eq!(rig.deliveries_of(paid)[0].header("x-payrelay-verified"), Some("query"));
    assert_eq!(rig.api.queries()[0].0, "/transactions/2HhndgEquCbDzC5OyVxWSGZmd2l");

    // The same tenant with verify = "mark": a "charged" claim for a
    // transaction Oen says failed is delivered, marked contradicted.
    let (shop, api) = (MockServer::start().await, ProviderApi::start().await);
    let mark = "merchant_id = \"oen-shop\"\nverify = \"mark\"";
    let app = spawn_app(&config(&shop.url(), &api, "").replace("merchant_id = \"oen-shop\"", mark)).await;
    api.oen_transaction("3JjndgEquCbDzC5OyVxWSGZmd3m", "A20261202002", 1200, "failed");
    let claim = r#"{"purpose":"charge","id":"3JjndgEquCbDzC5OyVxWSGZmd3m","status":"charged","success":true,"merchantId":"oen-shop","orderId":"A20261202002","amount":1200}"#;
    let res = app.client.post(app.url("/oen/notify")).body(claim).send().await.unwrap();
    assert_eq!(res.status(), 200);
    eventually("the marked delivery", WAIT, || !shop.received().is_empty()).await;
    assert_eq!(shop.received()[0].header("x-payrelay-verified"), Some("contradicted"));
}

#[tokio::test]
async fn sinopac_confirms_a_paytoken_the_bank_knows_through_its_envelope_and_never_delivers_one_it_does_not() {
    need_backend!();
    let rig = Rig::start("").await;
    rig.api.sinopac_payment("da1547c3d0d1649af5049125b0880c0e", "NA0249_001", "S");
    let real = r#"{"ShopNo":"NA0249_001","PayToken":"da1547c3d0d1649af5049125b0880c0e"}"#;
    let d = rig.settle("/sinopac/notify", real, Status::Delivered).await;
    let (outcome, detail) = verification(&d);
    assert_eq!(outcome, Verified::Confirmed);
    assert!(detail.contains("C2026120200001"), "the decrypted result is shown: {detail}");
    assert_eq!(rig.deliveries_of(real)[0].header("x-payrelay-verified"), Some("query"));
    let forged = r#"{"ShopNo":"NA0249_001","PayToken":"0000000000000000forgedforgedforg"}"#;
    let d = rig.settle("/sinopac/notify", forged, Status::Rejected).await;
    assert_eq!(verification(&d).0, Verified::NotYet);
    assert!(rig.deliveries_of(forged).is_empty());
    let paths: Vec<String> = rig.api.queries().into_iter().map(|(p, _)| p).collect();
    assert_eq!(&paths[..2], ["/sinopac/Nonce", "/sinopac/Order"], "two round trips per query");
}

#[tokio::test]
async fn a_provider_outage_delays_the_delivery_and_never_loses_it() {
    need_backend!();
    let rig = Rig::start("").await;
    rig.api.tappay_record("D20261202TP0501", "TP000501", 1200, 0);
    rig.api.outage(Some(Outage { status: 503, retry_after: None, hang: None }));
    let body = tappay("D20261202TP0501", "TP000501", 1200);
    assert_eq!(rig.post_json("/tappay/notify", &body).await.0, 200);
    eventually("a query that met the outage", WAIT, || !rig.api.queries().is_empty()).await;
    let id = rig.id_of(&body).await;
    assert_eq!(rig.app.detail(&id).await.summary.status, Status::Pending, "pending while the provider is out");
    rig.api.outage(None);
    let d = rig.app.until_status(&id, Status::Delivered, WAIT).await;
    assert_eq!(verification(&d).0, Verified::Confirmed);
    assert_eq!(rig.deliveries_of(&body).len(), 1);
}

#[tokio::test]
async fn rate_limited_and_hanging_providers_are_unavailable_and_retry_after_is_honoured() {
    need_backend!();
    let rig = Rig::start("").await;
    rig.api.outage(Some(Outage { status: 429, retry_after: Some(3600), hang: None }));
    let body = tappay("D20261202TP0601", "TP000601", 1200);
    assert_eq!(rig.post_json("/tappay/notify", &body).await.0, 200);
    let id = rig.id_of(&body).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let d = loop {
        let d = rig.app.detail(&id).await;
        if d.verification.is_some() {
            break d;
        }
        assert!(tokio::time::Instant::now() < deadline, "never asked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(verification(&d).0, Verified::Unavailable);
    let wait = d.next_attempt_at_ms.unwrap() - payrelay::store::now_ms();
    assert!(wait > 3_500_000, "Retry-After 3600 s honoured, not the 100 ms schedule: {wait} ms");

    // The whole account waits: a second callback is not even asked.
    let second = tappay("D20261202TP0602", "TP060201", 1200);
    let said = rig.post_json("/tappay/notify", &second).await;
    assert_eq!(said.0, 200, "{said:?}");
    let second_id = rig.id_of(&second).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let d = rig.app.detail(&second_id).await;
        if d.next_attempt_at_ms.is_some_and(|at| at - payrelay::store::now_ms() > 3_500_000) {
            assert!(d.summary.last_error.unwrap_or_default().contains("budget"), "deferred, not failed");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the second callback was not deferred with its account");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rig.api.queries().len(), 1, "the paused account was not asked again");

    // A provider that never answers: unavailable after query_timeout (1 s).
    let rig = Rig::start("").await;
    rig.api.outage(Some(Outage { status: 200, retry_after: None, hang: Some(Duration::from_secs(5)) }));
    let hung = tappay("D20261202TP0701", "TP000701", 1200);
    let d = rig.settle("/tappay/notify", &hung, Status::Dead).await;
    assert!(verification(&d).1.contains("no answer within"), "{}", verification(&d).1);
    assert!(rig.shop.received().is_empty());
}

#[tokio::test]
async fn a_tenant_without_credentials_gets_deliveries_marked_none_and_nobody_is_asked() {
    need_backend!();
    let (shop, api) = (MockServer::start().await, ProviderApi::start().await);
    let cfg = config(&shop.url(), &api, "").replace(
        &format!("partner_key = \"${{TAPPAY_KEY:-{TAPPAY_KEY}}}\"\nmerchant_id = \"{TAPPAY_MERCHANT}\"\n"),
        "",
    );
    let app = spawn_app(&cfg).await;
    let body = tappay("D20261202TP0801", "TP000801", 1200);
    let res = app.client.post(app.url("/tappay/notify")).body(body.clone()).send().await.unwrap();
    assert_eq!(res.status(), 200);
    eventually("the delivery", WAIT, || !shop.received().is_empty()).await;
    assert_eq!(shop.received()[0].header("x-payrelay-verified"), Some("none"));
    assert!(api.queries().is_empty());
}

#[tokio::test]
async fn with_a_forward_secret_the_signature_covers_what_the_query_found() {
    need_backend!();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let rig = Rig::start(&format!("forward_secret = \"{secret}\"")).await;
    rig.api.tappay_record("D20261202TP0901", "TP000901", 1200, 0);
    let body = tappay("D20261202TP0901", "TP000901", 1200);
    rig.settle("/tappay/notify", &body, Status::Delivered).await;
    let got = &rig.deliveries_of(&body)[0];
    let id = got.header("webhook-id").unwrap();
    assert_eq!(id, format!("{}.query", got.header("x-payrelay-delivery").unwrap()));
    // Checked as a shop would, with nothing of payrelay's.
    let ts = got.header("webhook-timestamp").unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&b64.decode(&secret[6..]).unwrap()).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&got.body);
    assert_eq!(got.header("webhook-signature").unwrap(), format!("v1,{}", b64.encode(mac.finalize().into_bytes())));
}

#[tokio::test]
async fn credentials_come_only_from_the_environment_and_check_warns_of_unverified_sections() {
    let (shop, api) = (MockServer::start().await, ProviderApi::start().await);
    let literal = config(&shop.url(), &api, "").replace(&format!("${{OEN_TOKEN:-{OEN_TOKEN}}}"), "a-literal-token");
    let problems = payrelay::config::parse(&literal, &|_| None).unwrap_err().problems();
    assert!(problems.iter().any(|p| p.contains("oen.api_token") && p.contains("environment")), "{problems:?}");
    assert!(problems.iter().all(|p| !p.contains("a-literal-token")), "the literal is never echoed: {problems:?}");

    let needs = config(&shop.url(), &api, "")
        .replace(&format!("api_token = \"${{OEN_TOKEN:-{OEN_TOKEN}}}\""), "verify = \"query\"");
    let problems = payrelay::config::parse(&needs, &|_| None).unwrap_err().problems();
    assert!(problems.iter().any(|p| p.contains("oen.verify") && p.contains("credentials")), "{problems:?}");

    let unverified = config(&shop.url(), &api, "").replace(&format!("api_token = \"${{OEN_TOKEN:-{OEN_TOKEN}}}\""), "");
    let warnings = payrelay::config::parse(&unverified, &|_| None).unwrap().warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("[tenants.oen]") && warnings[0].contains("unverified"), "{warnings:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payrelay_verify_asks_the_provider_and_says_what_the_gateway_would_decide() {
    let (shop, api) = (MockServer::start().await, ProviderApi::start().await);
    api.tappay_record("D20261202TP1001", "TP001001", 1200, 0);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("routes.toml");
    std::fs::write(&cfg, config(&shop.url(), &api, "")).unwrap();
    let run = move |rec: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_payrelay"))
            .args(["verify", "--config", cfg.to_str().unwrap(), "tappay", "--tenant", "shop"])
            .args([
                format!("rec_trade_id={rec}"),
                "order_number=TP001001".into(),
                "amount=1200".into(),
                "status=0".into(),
            ])
            .output()
            .unwrap()
    };
    let confirmed = tokio::task::spawn_blocking(move || (run("D20261202TP1001"), run("D20261202NOPE"))).await.unwrap();
    let (yes, no) = confirmed;
    let said = String::from_utf8_lossy(&yes.stdout);
    assert!(yes.status.success() && said.contains("outcome: confirmed") && said.contains("Deliver"), "{said}");
    let said = String::from_utf8_lossy(&no.stdout);
    assert!(!no.status.success() && said.contains("outcome: not_yet"), "{said}");
    assert!(!said.contains(TAPPAY_KEY), "the partner key is never printed");
    assert!(shop.received().is_empty(), "nothing is delivered");
}

// Multi-threaded: the child process's log is read with blocking calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_verification_survives_kill_9_and_the_callback_is_delivered_after_the_restart() {
    need_backend!();
    let (shop, api) = (MockServer::start().await, ProviderApi::start().await);
    api.tappay_record("D20261202TP1101", "TP001101", 1200, 0);
    // TapPay hangs: the query is in flight when the gateway dies.
    api.outage(Some(Outage { status: 503, retry_after: None, hang: Some(Duration::from_secs(30)) }));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("routes.toml");
    // On PostgreSQL the dead instance's lease must run out first (several
    // instances share the store): a short one, longer than a query and an attempt.
    let storage = format!("[storage]\nurl = \"{}\"\nlease = \"4s\"\n", store_url_for(&dir.path().join("payrelay.db")));
    let text = config(&shop.url(), &api, "").replace("query_timeout = \"1s\"", "query_timeout = \"3s\"");
    std::fs::write(&cfg, format!("{storage}{text}")).unwrap();
    let mut served = Served::start(&cfg);
    let body = tappay("D20261202TP1101", "TP001101", 1200);
    let client = payrelay::startup::http_client().unwrap();
    let res = client.post(format!("http://{}/tappay/notify", served.addr)).body(body.clone()).send().await.unwrap();
    assert_eq!(res.status(), 200, "acknowledged before any query");
    eventually("the query in flight", WAIT, || !api.queries().is_empty()).await;
    served.child.kill().unwrap();
    served.child.wait().unwrap();

    api.outage(None);
    let _restarted = Served::start(&cfg);
    eventually("the delivery after the restart", WAIT, || shop.received().iter().any(|r| r.body == body.as_bytes()))
        .await;
    let got: Vec<Received> = shop.received().into_iter().filter(|r| r.body == body.as_bytes()).collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("x-payrelay-verified"), Some("query"));
}

#[tokio::test]
async fn an_oen_id_that_would_change_the_query_path_is_never_sent_and_never_delivered() {
    need_backend!();
    let rig = Rig::start("").await;
    rig.api.oen_transaction("2HhndgEquCbDzC5OyVxWSGZmd2l", "A20261202009", 1200, "charged");
    // An attacker's id that, pasted into the URL, would ask about another path.
    let forged = r#"{"purpose":"charge","id":"../transactions/2HhndgEquCbDzC5OyVxWSGZmd2l","status":"charged","success":true,"merchantId":"oen-shop","orderId":"A20261202009","amount":1200}"#;
    let d = rig.settle("/oen/notify", forged, Status::Rejected).await;
    assert_eq!(verification(&d).0, Verified::Contradicted);
    assert!(rig.api.queries().is_empty(), "nothing was asked: {:?}", rig.api.queries());
    assert!(rig.shop.received().is_empty());
}
