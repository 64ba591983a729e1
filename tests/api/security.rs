//! The attacks of the 2026-12-02 security review
//! (`../shared/reviews/security-2026-12-02.md`), each replayed against the
//! running gateway on loopback: forged, tampered and flooded callbacks, and
//! the hardening findings. Each test names its finding.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use payrelay::store::Status;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(10);
pub const ADMIN_TOKEN: &str = "sec-review-admin-token-0123456789abcdef";

/// shop (suffix 01, stage keys, drop_simulated), nokeys (suffix 02, a
/// Funpoint section without keys), open (suffix 03, `verify = "none"`),
/// legacy (suffix 04, stage keys, MD5 only), and alpha/beta taking Oen and
/// TapPay (suffixes 11/22). `extra` goes in front (server/storage keys).
fn config(shop: &str, other: &str, extra: &str) -> String {
    format!(
        r#"
{extra}
[delivery]
timeout = "700ms"
retry = ["1h", "1h", "1h"]

[admin]
token = "{ADMIN_TOKEN}"

[[tenants]]
id = "shop"
base_url = "{shop}"
allow_http = true
order_suffix = "01"
drop_simulated = true
[tenants.funpoint]
merchant_id = "{STAGE_MERCHANT}"
hash_key = "{STAGE_KEY}"
hash_iv = "{STAGE_IV}"

[[tenants]]
id = "nokeys"
base_url = "{other}"
allow_http = true
order_suffix = "02"
[tenants.funpoint]

[[tenants]]
id = "open"
base_url = "{other}"
allow_http = true
order_suffix = "03"
[tenants.funpoint]
verify = "none"

[[tenants]]
id = "legacy"
base_url = "{other}"
allow_http = true
order_suffix = "04"
[tenants.funpoint]
hash_key = "{STAGE_KEY}"
hash_iv = "{STAGE_IV}"
encrypt_type = 0

[[tenants]]
id = "alpha"
base_url = "{shop}"
allow_http = true
order_suffix = "11"
[tenants.oen]
merchant_id = "alpha-shop"
[tenants.tappay]

[[tenants]]
id = "beta"
base_url = "{other}"
allow_http = true
order_suffix = "22"
[tenants.oen]
merchant_id = "beta-shop"
[tenants.tappay]
"#
    )
}

struct Gw {
    app: TestApp,
    shop: MockServer,
    other: MockServer,
}

impl Gw {
    async fn start(extra: &str) -> Self {
        let (shop, other) = (MockServer::start().await, MockServer::start().await);
        let app = spawn_app(&config(&shop.url(), &other.url(), extra)).await;
        Self { app, shop, other }
    }

    async fn post(&self, path: &str, body: &str) -> (u16, String) {
        let res = self.app.client.post(self.app.url(path)).body(body.to_owned()).send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    async fn count(&self, status: Status) -> usize {
        self.app.rows().await.iter().filter(|r| r.status == status).count()
    }

    /// Nothing more arrives: a barrier callback sent after the ones under
    /// test reaches `alpha` (shop's server), and the worker handles callbacks
    /// in order of arrival, so whatever had been queued before would be there.
    async fn settle(&self, seen: usize) {
        let barrier = format!(r#"{{"rec_trade_id":"BARRIER{seen}","status":0,"order_number":"B{seen}11"}}"#);
        assert_eq!(self.post("/tappay/notify", &barrier).await.0, 200);
        eventually("the barrier delivery", WAIT, || {
            self.shop.received().iter().any(|r| r.body.as_ref() == barrier.as_bytes())
        })
        .await;
    }
}

fn raw(addr: &std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(request);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn body_of(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

// F1: a form with thousands of fields costs linear time and is refused.

#[tokio::test]
async fn f1_a_notify_with_hundreds_of_fields_or_an_oversized_body_is_refused_in_the_grammar() {
    need_backend!();
    let g = Gw::start("").await;
    let mut many = String::from("MerchantTradeNo=CPU0001");
    for i in 0..1500 {
        many.push_str(&format!("&k{i}"));
    }
    assert!(many.len() < 8192, "under the Funpoint body limit: {}", many.len());
    assert_eq!(g.post("/funpoint/notify", &many).await, (400, "0|Bad Request".to_owned()));
    let (status, page) = g.post("/funpoint/return", &many).await;
    assert_eq!(status, 400, "{page}");
    // A Funpoint notify is under 2 KB: 20 KB is refused before parsing.
    let big = format!("MerchantTradeNo=X01&pad={}", "a".repeat(20_000));
    assert_eq!(g.post("/funpoint/notify", &big).await, (413, "0|Request Too Large".to_owned()));
    assert_eq!(g.count(Status::Pending).await + g.count(Status::Rejected).await, 0);
}

// Every answer on a notify path is in the provider's grammar (SPEC §4).

// Blocking sockets below: the gateway needs a worker thread of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_paths_answer_even_middleware_errors_in_the_grammar() {
    need_backend!();
    let g = Gw::start("").await;
    let addr = g.app.addr;
    let declared =
        |path: &str| format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\nConnection: close\r\n\r\n");
    let a = raw(&addr, declared("/funpoint/notify").as_bytes());
    assert!(a.starts_with("HTTP/1.1 413"), "{a}");
    assert_eq!(body_of(&a), "0|Request Too Large");
    let a = raw(&addr, declared("/oen/notify/alpha").as_bytes());
    assert!(a.starts_with("HTTP/1.1 413"), "{a}");
    assert_eq!(body_of(&a), r#"{"error":"Request Too Large"}"#);
    let a = raw(&addr, declared(payrelay::http::LEGACY_NOTIFY).as_bytes());
    assert_eq!(body_of(&a), "0|Request Too Large");

    let res = g.app.client.get(g.app.url("/funpoint/notify")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 405);
    assert_eq!(res.text().await.unwrap(), "0|Method Not Allowed");
    let res = g.app.client.put(g.app.url("/tappay/notify/alpha")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 405);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.text().await.unwrap(), r#"{"error":"Method Not Allowed"}"#);
}

// F4: a Funpoint tenant without keys fails closed.

#[tokio::test]
async fn f4_a_funpoint_tenant_without_keys_refuses_forged_notifications() {
    need_backend!();
    let g = Gw::start("").await;
    let forged = "MerchantTradeNo=FORGED00002&RtnCode=1&TradeAmt=99999&CheckMacValue=whatever";
    assert_eq!(g.post("/funpoint/notify", forged).await, (400, "0|CheckMacValue Error".to_owned()));
    assert_eq!(g.post(payrelay::http::LEGACY_NOTIFY, forged).await, (400, "0|CheckMacValue Error".to_owned()));
    let rows = g.app.rows().await;
    assert!(rows.iter().all(|r| r.status == Status::Rejected && r.tenant.as_deref() == Some("nokeys")), "{rows:?}");
    // verify = "none" says so explicitly, and then it is accepted unverified.
    assert_eq!(g.post("/funpoint/notify", "MerchantTradeNo=OPEN00003&RtnCode=1").await, (200, "1|OK".to_owned()));
    // The browser return with a CheckMacValue, for a tenant without keys.
    let (status, page) = g.post("/funpoint/return", "MerchantTradeNo=R02&RtnCode=1&CheckMacValue=AB").await;
    assert_eq!(status, 400);
    assert!(page.contains("8000213"), "{page}");
    g.settle(0).await;
    assert!(g.other.received().iter().all(|r| !r.body.starts_with(b"MerchantTradeNo=FORGED")));
    assert!(g.other.received().iter().any(|r| r.body.as_ref() == b"MerchantTradeNo=OPEN00003&RtnCode=1"));
}

// F2 + F9: one spelling per field.

#[tokio::test]
async fn f2_f9_a_signed_body_extended_or_respelled_is_never_delivered() {
    need_backend!();
    let g = Gw::start("").await;
    let genuine = notification("CHEAP0001", "T1", "Succeeded");
    assert_eq!(g.post("/funpoint/notify", &genuine).await, (200, "1|OK".to_owned()));
    // Prepended duplicates: the MAC still checks over the last values.
    let polluted = format!("MerchantTradeNo=EXPENSIVE0001&TradeAmt=99999&{genuine}");
    assert_eq!(g.post("/funpoint/notify", &polluted).await, (400, "0|Bad Request".to_owned()));
    // A value with another case: the MAC is case-blind; dedup must be too.
    let recased = genuine.replace("Credit_CreditCard", "credit_CreditCard");
    assert_ne!(recased, genuine);
    assert_eq!(g.post("/funpoint/notify", &recased).await, (200, "1|OK".to_owned()));
    // A key with another case: `simulatepaid` slips past drop_simulated.
    let simulated = notification_with("SIM0001", "T2", "paid", &[("SimulatePaid", "1")]);
    assert_eq!(g.post("/funpoint/notify", &simulated).await, (200, "1|OK".to_owned()));
    let renamed = simulated.replace("SimulatePaid=1", "simulatepaid=1");
    assert_eq!(g.post("/funpoint/notify", &renamed).await, (400, "0|Bad Request".to_owned()));
    let twice_by_case = format!("{genuine}&merchanttradeno=X01");
    assert_eq!(g.post("/funpoint/notify", &twice_by_case).await, (400, "0|Bad Request".to_owned()));
    let (status, _) = g.post("/funpoint/return", &polluted).await;
    assert_eq!(status, 400);

    g.settle(0).await;
    let got: Vec<_> = g.shop.received().into_iter().filter(|r| r.path_and_query == "/funpoint_r.php").collect();
    assert_eq!(got.len(), 1, "only the genuine one, once: {got:?}");
    assert_eq!(got[0].body.as_ref(), genuine.as_bytes());
}

// F14: the tenant's encrypt_type decides the algorithm.

#[tokio::test]
async fn f14_the_algorithm_is_the_tenants_not_the_senders() {
    need_backend!();
    use payrelay::domain::{CheckMac, HashAlgorithm, HashKeys, Secret};
    let g = Gw::start("").await;
    let keys = HashKeys { key: Secret::new(STAGE_KEY), iv: Secret::new(STAGE_IV) };
    let signed = |order: &str, alg| {
        let fields = [("MerchantTradeNo", order), ("RtnCode", "1"), ("TradeAmt", "10")];
        let mac = CheckMac::compute(fields, &keys, alg);
        payrelay::form::encode(fields.into_iter().chain([("CheckMacValue", mac.as_str())]))
    };
    let md5_for_sha = signed("MD5AT0001", HashAlgorithm::Md5);
    assert_eq!(g.post("/funpoint/notify", &md5_for_sha).await, (400, "0|CheckMacValue Error".to_owned()));
    assert_eq!(g.post("/funpoint/notify", &signed("MD5LEGACY04", HashAlgorithm::Md5)).await.0, 200);
    assert_eq!(
        g.post("/funpoint/notify", &signed("SHALEGACY04", HashAlgorithm::Sha256)).await,
        (400, "0|CheckMacValue Error".to_owned())
    );
}

// F3: dedup per tenant; a differing "duplicate" is kept for the operator.

#[tokio::test]
async fn f3_a_forged_callback_for_another_tenant_does_not_swallow_the_genuine_one() {
    need_backend!();
    let g = Gw::start("").await;
    let forged = r#"{"rec_trade_id":"D20261202A","status":0,"order_number":"ATTACK22","amount":1}"#;
    assert_eq!(g.post("/tappay/notify", forged).await.0, 200);
    let genuine = r#"{"rec_trade_id":"D20261202A","status":0,"order_number":"REAL0011","amount":100}"#;
    assert_eq!(g.post("/tappay/notify", genuine).await, (200, r#"{"status":0}"#.to_owned()));
    let forged_oen = r#"{"purpose":"charge","id":"ch_9","status":"charged","success":true,"merchantId":"beta-shop"}"#;
    assert_eq!(g.post("/oen/notify", forged_oen).await.0, 200);
    let genuine_oen = forged_oen.replace("beta-shop", "alpha-shop");
    assert_eq!(g.post("/oen/notify", &genuine_oen).await, (200, r#"{"code":"S0000"}"#.to_owned()));
    // The same transaction and order again for alpha, with another amount.
    let conflicting = genuine.replace("\"amount\":100", "\"amount\":99999");
    assert_eq!(g.post("/tappay/notify", &conflicting).await.0, 200);
    // An honest resend, byte for byte: a plain duplicate.
    assert_eq!(g.post("/tappay/notify", genuine).await.0, 200);

    g.settle(0).await;
    let alpha = g.shop.received();
    assert_eq!(alpha.iter().filter(|r| r.body.as_ref() == genuine.as_bytes()).count(), 1);
    assert_eq!(alpha.iter().filter(|r| r.body.as_ref() == genuine_oen.as_bytes()).count(), 1);
    assert!(alpha.iter().all(|r| r.body.as_ref() != conflicting.as_bytes()));
    let rows = g.app.rows().await;
    let kept = rows.iter().find(|r| r.status == Status::Rejected).expect("the conflicting copy is kept");
    assert_eq!(kept.tenant.as_deref(), Some("alpha"));
    assert!(kept.last_error.as_deref().unwrap_or_default().contains("amount"), "{kept:?}");
    assert_eq!(g.app.detail(&kept.id).await.body.as_ref(), conflicting.as_bytes());
}

/// Duplicates of a delivered callback are answered from memory (issue 14):
/// a copy with another amount must still reach the store and be kept.
#[tokio::test]
async fn f3_a_conflicting_copy_is_kept_even_when_resends_are_answered_from_memory() {
    need_backend!();
    let g = Gw::start("").await;
    let genuine = r#"{"rec_trade_id":"D20261202M","status":0,"order_number":"MEM00011","amount":100}"#;
    assert_eq!(g.post("/tappay/notify", genuine).await.0, 200);
    g.app.until_status(&g.app.rows().await[0].id, Status::Delivered, WAIT).await;
    // Honest resends: the first is judged by the store, the next from memory.
    for _ in 0..3 {
        assert_eq!(g.post("/tappay/notify", genuine).await, (200, r#"{"status":0}"#.to_owned()));
    }
    let conflicting = genuine.replace("\"amount\":100", "\"amount\":1");
    assert_eq!(g.post("/tappay/notify", &conflicting).await.0, 200);
    g.settle(0).await;
    assert_eq!(g.shop.received().iter().filter(|r| r.body.as_ref() == genuine.as_bytes()).count(), 1);
    let rows = g.app.rows().await;
    let kept = rows.iter().find(|r| r.status == Status::Rejected).expect("the conflicting copy is kept");
    assert_eq!(g.app.detail(&kept.id).await.body.as_ref(), conflicting.as_bytes());
    assert_eq!(rows.len(), 3, "the original, the conflicting copy, the barrier: no resend stored");
}

#[tokio::test]
async fn f3_a_conflicting_copy_that_cannot_be_kept_is_not_acknowledged() {
    need_backend!();
    // It may be the genuine one (a forgery came first): if it cannot be put
    // on disk for the operator, the provider must try again.
    let g = Gw::start("[server]\nrefused_per_minute = 1").await;
    let first = r#"{"rec_trade_id":"DC1","status":0,"order_number":"C0011","amount":1}"#;
    assert_eq!(g.post("/tappay/notify", first).await.0, 200);
    // The address's one refused callback a minute is used up.
    assert_eq!(g.post("/tappay/notify", r#"{"rec_trade_id":"X","order_number":"C0099"}"#).await.0, 400);
    let second = first.replace("\"amount\":1", "\"amount\":100");
    assert_eq!(g.post("/tappay/notify", &second).await, (429, r#"{"error":"Too Many Requests"}"#.to_owned()));
}

// F5 + F7: refused callbacks are rate-limited and capped.

#[tokio::test]
async fn f5_refused_callbacks_from_one_address_are_rate_limited() {
    need_backend!();
    let g = Gw::start("[server]\nrefused_per_minute = 5").await;
    let mut answers = Vec::new();
    for i in 0..12 {
        answers.push(g.post("/oen/notify", &format!(r#"{{"id":"j{i}","merchantId":"nobody"}}"#)).await);
    }
    assert!(answers[..5].iter().all(|a| a == &(400, r#"{"error":"Unknown merchantId"}"#.to_owned())), "{answers:?}");
    assert!(answers[5..].iter().all(|a| a == &(429, r#"{"error":"Too Many Requests"}"#.to_owned())), "{answers:?}");
    assert_eq!(g.count(Status::Unroutable).await, 5);
    // Genuine traffic from that address is not limited.
    let ok = r#"{"id":"ok1","purpose":"charge","status":"charged","merchantId":"alpha-shop"}"#;
    assert_eq!(g.post("/oen/notify", ok).await.0, 200);
}

#[tokio::test]
async fn f5_f7_caps_keep_rejected_small_and_young_unroutable_safe() {
    need_backend!();
    let g = Gw::start(
        "[storage]\nkeep_rejected = 3\nkeep_rejected_bytes = 100000\nkeep_unroutable = 2\nunroutable_min_age = \"1h\"\n",
    )
    .await;
    let genuine = r#"{"purpose":"charge","id":"ch_real","status":"charged","merchantId":"new-shop"}"#;
    assert_eq!(g.post("/oen/notify", genuine).await.0, 400);
    for i in 0..8 {
        let junk = format!(r#"{{"id":"junk{i}","merchantId":"x{i}","pad":"{}"}}"#, "z".repeat(30_000));
        assert_eq!(g.post("/oen/notify", &junk).await.0, 400);
        let forged = format!("MerchantTradeNo=F{i}02&pad={}", "y".repeat(4000));
        assert_eq!(g.post("/funpoint/notify", &forged).await.0, 400);
    }
    let purged = payrelay::delivery::purge_at(g.app.state.worker(), payrelay::store::now_ms()).await.unwrap();
    assert!(purged.rejected >= 5, "{purged:?}");
    let rows = g.app.rows().await;
    let rejected: Vec<_> = rows.iter().filter(|r| r.status == Status::Rejected).collect();
    assert!(rejected.len() <= 3, "{rejected:?}");
    // 8 × 30 KB of junk after one genuine webhook, all younger than an hour:
    // over the cap, none is evicted (the genuine one stays), and once the
    // caps are full further unroutables are not kept. (The purger's own
    // first round may have found the caps full already, part-way through.)
    assert_eq!(purged.unroutable, 0, "{purged:?}");
    assert!(purged.unroutable_full, "{purged:?}");
    let unroutable: Vec<_> = rows.iter().filter(|r| r.status == Status::Unroutable).collect();
    assert!(unroutable.len() >= 2, "{unroutable:?}");
    let oldest = unroutable.last().unwrap();
    assert_eq!(g.app.detail(&oldest.id).await.body.as_ref(), genuine.as_bytes());
    assert_eq!(g.post("/oen/notify", r#"{"id":"late","merchantId":"late"}"#).await.0, 400);
    assert_eq!(g.count(Status::Unroutable).await, unroutable.len(), "the store is full of young unroutables");
}

#[tokio::test]
async fn f5_the_byte_cap_and_dead_retention_purge() {
    need_backend!();
    let g = Gw::start(
        "[storage]\nkeep_rejected_bytes = 10000\nkeep_unroutable = 1\nunroutable_min_age = \"1m\"\ndead_retention = \"1m\"\n",
    )
    .await;
    for i in 0..6 {
        let forged = format!("MerchantTradeNo=B{i}02&pad={}", "y".repeat(3000));
        assert_eq!(g.post("/funpoint/notify", &forged).await.0, 400);
        assert_eq!(g.post("/oen/notify", &format!(r#"{{"id":"u{i}","merchantId":"none"}}"#)).await.0, 400);
    }
    // The purge as it will run two minutes from now (an injected clock).
    payrelay::delivery::purge_at(g.app.state.worker(), payrelay::store::now_ms() + 120_000).await.unwrap();
    let rows = g.app.rows().await;
    let rejected: Vec<_> = rows.iter().filter(|r| r.status == Status::Rejected).collect();
    assert_eq!(rejected.len(), 3, "3 × 3 KB fit in 10 000 bytes: {rejected:?}");
    assert_eq!(rows.iter().filter(|r| r.status == Status::Unroutable).count(), 1);
}

// F6: a replayed unroutable callback gets what a fresh one gets.

#[tokio::test]
async fn f6_replaying_an_unroutable_callback_drops_simulations_and_keeps_dedup() {
    need_backend!();
    let g = Gw::start("").await;
    let simulated = notification_with("SIM0007", "T7", "paid", &[("SimulatePaid", "1")]);
    let real = notification("REAL0007", "T8", "paid");
    assert_eq!(g.post("/funpoint/notify", &simulated).await, (400, "0|Unknown order suffix".to_owned()));
    assert_eq!(g.post("/funpoint/notify", &real).await.0, 400);
    assert_eq!(g.app.rows().await.len(), 2);
    let id_of = |order: &str| {
        let order = order.to_owned();
        let app = &g.app;
        async move {
            for r in app.rows().await {
                if app.detail(&r.id).await.body.windows(order.len()).any(|w| w == order.as_bytes()) {
                    return r.id;
                }
            }
            panic!("no row for {order}")
        }
    };
    // The operator adds shop7 (suffix 07, drops simulations) and reloads.
    let text = config(&g.shop.url(), &g.other.url(), "").replace(
        "[[tenants]]\nid = \"nokeys\"",
        &format!(
            "[[tenants]]\nid = \"shop7\"\nbase_url = \"{}\"\nallow_http = true\norder_suffix = \"07\"\ndrop_simulated = true\n[tenants.funpoint]\nhash_key = \"{STAGE_KEY}\"\nhash_iv = \"{STAGE_IV}\"\n\n[[tenants]]\nid = \"nokeys\"",
            g.shop.url()
        ),
    );
    let mut new = payrelay::config::parse(&text, &|_| None).unwrap();
    new.storage = g.app.state.config().storage.clone();
    g.app.state.replace_config(new);

    let replay = |id: String| {
        let (client, url) = (g.app.client.clone(), g.app.url(&format!("/admin/api/callbacks/{id}/replay")));
        async move { client.post(url).bearer_auth(ADMIN_TOKEN).send().await.unwrap().status().as_u16() }
    };
    let sim_id = id_of("SIM0007").await;
    assert_eq!(replay(sim_id.to_string()).await, 409);
    assert_eq!(g.app.detail(&sim_id).await.summary.status, Status::Rejected);
    let real_id = id_of("REAL0007").await;
    assert_eq!(replay(real_id.to_string()).await, 202);
    g.app.until_status(&real_id, Status::Delivered, WAIT).await;
    // Funpoint resends it: a duplicate of the replayed one, not a new delivery.
    assert_eq!(g.post("/funpoint/notify", &notification("REAL0007", "T8", "resent")).await.0, 200);
    g.settle(0).await;
    let to_shop7: Vec<_> = g.shop.received().into_iter().filter(|r| r.path_and_query == "/funpoint_r.php").collect();
    assert_eq!(to_shop7.len(), 1, "{to_shop7:?}");
    assert_eq!(to_shop7[0].body.as_ref(), real.as_bytes());
}

// F8: resends on an ack = "delivered" tenant cannot burn the schedule.

#[tokio::test]
async fn f8_resends_to_an_inline_tenant_do_not_burn_the_retry_schedule() {
    need_backend!();
    let text = config("http://127.0.0.1:1", "http://127.0.0.1:1", "").replace(
        "id = \"alpha\"\nbase_url = \"http://127.0.0.1:1\"",
        "id = \"alpha\"\nbase_url = \"http://127.0.0.1:1\"\nack = \"delivered\"",
    );
    let app = spawn_app(&text).await;
    let body = r#"{"rec_trade_id":"INLINE1","status":0,"order_number":"IN0011"}"#;
    let post =
        || async { app.client.post(app.url("/tappay/notify")).body(body).send().await.unwrap().status().as_u16() };
    assert_eq!(post().await, 503);
    let id = app.rows().await[0].id.clone();
    app.until_attempts(&id, 1, WAIT).await;
    for _ in 0..5 {
        assert_eq!(post().await, 503);
    }
    let d = app.detail(&id).await;
    assert_eq!(d.summary.status, Status::Pending, "{:?}", d.attempts);
    assert_eq!(d.attempts.len(), 1, "resends made no attempts of their own before the next is due");
}

// F10: request ids and echoed values are bounded.

#[tokio::test]
async fn f10_a_forged_or_huge_request_id_is_replaced() {
    need_backend!();
    let g = Gw::start("").await;
    for bad in ["x} provider=\"funpoint\" delivery=\"FAKE\"", &"a".repeat(6000)] {
        let res = g.app.client.get(g.app.url("/healthz")).header("x-request-id", bad).send().await.unwrap();
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(id, bad);
        assert!(id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'), "{id}");
    }
    let res = g.app.client.get(g.app.url("/healthz")).header("x-request-id", "nginx-abc-123").send().await.unwrap();
    assert_eq!(res.headers()["x-request-id"], "nginx-abc-123");
    // A 5 000-character merchant key is not echoed whole into the row.
    let long = "m".repeat(5000);
    assert_eq!(g.post("/oen/notify", &format!(r#"{{"id":"l","merchantId":"{long}"}}"#)).await.0, 400);
    let row = g.app.rows().await.into_iter().find(|r| r.status == Status::Unroutable).unwrap();
    assert!(row.last_error.unwrap_or_default().len() < 300);
}

// F11: the CVS passthrough is boxed in.

#[tokio::test]
async fn f11_the_cvs_passthrough_is_sandboxed_and_redirects_only_to_payment_origins() {
    need_backend!();
    let f = Fixture::start().await;
    f.tenant_answers("CVS", "");
    f.provider
        .reply(Reply::text(200, "<html><script>steal()</script></html>").with_header("content-type", "text/html"));
    let res = f.app.post_form("/funpoint/checkout", CHECKOUT).await;
    assert_eq!(res.status().as_u16(), 200);
    let csp = res.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("sandbox") && !csp.contains("allow-same-origin"), "{csp}");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(res.headers()["referrer-policy"], "no-referrer");

    f.provider.reply(Reply::text(302, "").with_header("location", "https://evil.example/phish"));
    let res = f.app.post_form("/funpoint/checkout", CHECKOUT).await;
    assert!(res.headers().get("location").is_none());
    assert_eq!(res.status().as_u16(), 502);
    assert!(res.text().await.unwrap().contains("8000208"));
    let allowed = format!("{}/Cashier/Paid", f.provider.url());
    f.provider.reply(Reply::text(302, "").with_header("location", allowed.clone()));
    let res = f.app.post_form("/funpoint/checkout", CHECKOUT).await;
    assert_eq!(res.status().as_u16(), 302);
    assert_eq!(res.headers()["location"], allowed.as_str());
}

// F12: the store is private.

#[tokio::test]
async fn f12_the_sqlite_store_is_created_private() {
    if crate::POSTGRES {
        return;
    }
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data").join("payrelay.db");
    let app = spawn_app_on(&shop_tenant("http://127.0.0.1:1"), &db).await;
    assert_eq!(app.post_form("/funpoint/notify", &notification("P0001", "T1", "paid")).await.status().as_u16(), 200);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(db.parent().unwrap()), 0o700);
    assert_eq!(mode(&db), 0o600);
    assert_eq!(mode(&db.with_file_name("payrelay.db-wal")), 0o600);
    app.stop().await;
}

// F15: the admin side.

#[tokio::test]
async fn f15_admin_answers_are_not_cached_notices_are_fixed_and_guessing_is_throttled() {
    need_backend!();
    let g = Gw::start("").await;
    let res = g.app.client.get(g.app.url("/admin/api/callbacks")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let page = |q: &str| {
        let (c, u) = (g.app.client.clone(), g.app.url(&format!("/admin?{q}")));
        async move { c.get(u).bearer_auth(ADMIN_TOKEN).send().await.unwrap().text().await.unwrap() }
    };
    let p = page("done=replayed-URGENT:%20re-enter%20your%20token%20at%20evil.example").await;
    assert!(!p.contains("URGENT") && !p.contains("evil.example"), "{p}");
    assert!(page("done=replayed-7").await.contains("7 dead callbacks"));
    let p = page("status=dead&tenant=..%2Fcallbacks%2Fx%2Freplay%3Fx%3D").await;
    assert!(!p.contains("action=\"/admin/tenants/../"), "{p}");
    // CSRF: an https Origin is not this plain-http origin.
    let res = g
        .app
        .client
        .post(g.app.url("/admin/api/tenants/shop/replay-dead"))
        .bearer_auth(ADMIN_TOKEN)
        .header("origin", format!("https://{}", g.app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);
    // Guessing: after a few wrong tokens the address is slowed down.
    let mut codes = Vec::new();
    for i in 0..30 {
        let res = g.app.client.get(g.app.url("/admin")).bearer_auth(format!("guess-{i}")).send().await.unwrap();
        codes.push(res.status().as_u16());
    }
    assert_eq!(codes[0], 401);
    assert_eq!(*codes.last().unwrap(), 429, "{codes:?}");
}

// F16 + F17: no environment proxies; a cap on connections.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f16_an_environment_proxy_is_not_used_for_deliveries() {
    need_backend!();
    let (tenant, proxy) = (MockServer::start().await, MockServer::start().await);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, shop_tenant(&tenant.url())).unwrap();
    let proxy_url = proxy.url();
    let env =
        [("HTTP_PROXY", proxy_url.as_str()), ("http_proxy", proxy_url.as_str()), ("ALL_PROXY", proxy_url.as_str())];
    // Killed when dropped, also when an assertion below fails.
    let served = Served::start_with_env(&path, &env);
    let body = notification("PX0001", "T1", "paid");
    let res =
        reqwest::Client::new().post(format!("http://{}/funpoint/notify", served.addr)).body(body.clone()).send().await;
    assert_eq!(res.unwrap().status().as_u16(), 200);
    eventually("the delivery", WAIT, || tenant.received().iter().any(|r| r.body.as_ref() == body.as_bytes())).await;
    drop(served);
    assert!(proxy.received().is_empty(), "the proxy saw {:?}", proxy.received());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f17_connections_over_the_cap_are_refused_at_once() {
    need_backend!();
    let g = Gw::start("[server]\nmax_connections = 3").await;
    // Three keep-alive connections, each answered once: all three are held.
    let mut idle: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(g.app.addr).unwrap()).collect();
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut buf = [0u8; 256];
        assert!(s.read(&mut buf).unwrap() > 0);
    }
    let mut extra = TcpStream::connect(g.app.addr).unwrap();
    extra.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = [0u8; 64];
    let n = extra.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer: {:?}", String::from_utf8_lossy(&buf[..n]));
    drop(idle);
    let ok = eventually_ok(&g.app).await;
    assert!(ok);
}

async fn eventually_ok(app: &TestApp) -> bool {
    for _ in 0..100 {
        if let Ok(r) = app.client.get(app.url("/healthz")).send().await
            && r.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

// The warnings and refusals of `check` (F4, F13, F15).

fn check(config: &str, env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_payrelay"));
    cmd.args(["check", "--config", path.to_str().unwrap()]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o.status.success(), text)
}

#[test]
fn f4_check_warns_for_every_funpoint_tenant_that_does_not_verify() {
    let (ok, out) = check(&config("http://127.0.0.1:1", "http://127.0.0.1:1", ""), &[]);
    assert!(ok, "{out}");
    let warnings: Vec<&str> = out.lines().filter(|l| l.starts_with("warning:")).collect();
    assert!(warnings.iter().any(|l| l.contains("nokeys") && l.contains("refuses")), "{out}");
    assert!(warnings.iter().any(|l| l.contains("open") && l.contains("unverified")), "{out}");
    assert!(!warnings.iter().any(|l| l.contains("\"shop\"")), "{out}");
    // The repository's own table with no variables: every tenant warned about.
    let repo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/routes.toml")).unwrap();
    let (ok, out) = check(&repo, &[]);
    assert!(ok, "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("warning:") && l.contains("refuses")).count(), 5, "{out}");
}

#[test]
fn f13_f15_check_masks_secrets_and_refuses_a_weak_admin_token() {
    let pg = "[storage]\nurl = \"postgres://u:DBPASSWORD123@127.0.0.1:1/x?sslmode=disable&password=QUERYPW\"\n";
    let (_, out) = check(pg, &[]);
    assert!(!out.contains("QUERYPW") && !out.contains("DBPASSWORD123"), "{out}");
    let typed = "[storage]\nkeep_rejected = \"${PAYRELAY_TEST_SECRET}\"\n";
    let (ok, out) = check(typed, &[("PAYRELAY_TEST_SECRET", "TOKENVALUE_SHOULD_NOT_SHOW")]);
    assert!(!ok);
    assert!(!out.contains("TOKENVALUE_SHOULD_NOT_SHOW"), "{out}");
    let (ok, out) = check("[admin]\ntoken = \"short-token\"\n", &[]);
    assert!(!ok && out.contains("admin.token"), "{out}");
    let (ok, out) = check("[admin]\ntoken = \"${PAYRELAY_TEST_SECRET}\"\n", &[("PAYRELAY_TEST_SECRET", " ")]);
    assert!(!ok && !out.contains("TOKENVALUE"), "{out}");
}
