//! The real binary as an operator runs it: a reload under steady load, and
//! the log read for secrets after checkouts, notifications and admin calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::helpers::*;

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ADMIN: &str = "adm-3c5e7a9b-secret-0123456789abcdef";
const CHECKOUT_TOKEN: &str = "tok-9d8c7b6a-buyer-secret";

fn config(dir: &std::path::Path, tenant: &str, provider: &str, extra_tenant: &str) -> String {
    format!(
        r#"[storage]
url = "{db}"

[delivery]
timeout = "2s"
retry = ["100ms"]

[admin]
token = "{ADMIN}"

[providers.funpoint]
payment_origins = ["{provider}"]

[[tenants]]
id = "shop"
base_url = "{tenant}"
allow_http = true
domain_codes = ["shop"]
order_suffix = "01"
forward_secret = "{WHSEC}"
[tenants.funpoint]
merchant_id = "{STAGE_MERCHANT}"
hash_key = "{STAGE_KEY}"
hash_iv = "{STAGE_IV}"
{extra_tenant}"#,
        db = store_url_for(&dir.join("payrelay.db"))
    )
}

async fn post(client: &reqwest::Client, url: String, body: String) -> Result<(u16, String), reqwest::Error> {
    let res = client.post(url).header("content-type", "application/x-www-form-urlencoded").body(body).send().await?;
    let status = res.status().as_u16();
    Ok((status, res.text().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_under_steady_load_drops_nothing_and_the_new_tenant_routes_at_once() {
    need_backend!();
    let tenant = MockServer::start().await;
    let newbie = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("routes.toml");
    std::fs::write(&cfg, config(dir.path(), &tenant.url(), "http://127.0.0.1:18110", "")).unwrap();
    let mut served = tokio::task::block_in_place(|| Served::start(&cfg));
    let base = format!("http://{}", served.addr);
    let client = payrelay::startup::http_client().unwrap();

    // Eight clients posting notifications back to back.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for worker in 0..8 {
        let (client, base, stop, sent) = (client.clone(), base.clone(), stop.clone(), sent.clone());
        load.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let body = notification(&format!("L{worker}x{i}01"), &format!("T{worker}x{i}"), "paid");
                match post(&client, format!("{base}/funpoint/notify"), body).await {
                    Ok((200, text)) if text == "1|OK" => {}
                    other => failures.push(format!("{other:?}")),
                }
                sent.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            failures
        }));
    }
    eventually("load under way", Duration::from_secs(10), || sent.load(Ordering::Relaxed) > 100).await;

    let extra = format!(
        "\n[[tenants]]\nid = \"newbie\"\nbase_url = \"{}\"\nallow_http = true\norder_suffix = \"07\"\n[tenants.funpoint]\nhash_key = \"{STAGE_KEY}\"\nhash_iv = \"{STAGE_IV}\"\n",
        newbie.url()
    );
    std::fs::write(&cfg, config(dir.path(), &tenant.url(), "http://127.0.0.1:18110", &extra)).unwrap();
    let before = sent.load(Ordering::Relaxed);
    served.signal("-HUP");
    tokio::task::block_in_place(|| served.wait_for_log("config reloaded"));
    // Routable right after the reload.
    let (status, text) =
        post(&client, format!("{base}/funpoint/notify"), notification("N07", "T7", "paid")).await.unwrap();
    assert_eq!((status, text.as_str()), (200, "1|OK"));
    eventually("more load after the reload", Duration::from_secs(10), || sent.load(Ordering::Relaxed) > before + 100)
        .await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for task in load {
        failures.extend(task.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        sent.load(Ordering::Relaxed),
        &failures[..failures.len().min(5)]
    );
    eventually("the new tenant's delivery", Duration::from_secs(10), || !newbie.received().is_empty()).await;

    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("payrelay_config_reloads_total{result=\"ok\"} 1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_has_a_line_per_request_and_attempt_and_never_a_secret() {
    need_backend!();
    let tenant = MockServer::start().await;
    let provider = MockServer::start().await;
    let url = format!("{}/Cashier/AioCheckOut/V5", provider.url());
    tenant.reply(Reply::json(format!(
        r#"{{"payment_url":"{url}","payment_value":{{"MerchantID":"1000031","MerchantTradeNo":"S2024112201","TotalAmount":100,"ChoosePayment":"Credit"}}}}"#
    )));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("routes.toml");
    std::fs::write(&cfg, config(dir.path(), &tenant.url(), &provider.url(), "")).unwrap();
    let mut served = tokio::task::block_in_place(|| Served::start(&cfg));
    let base = format!("http://{}", served.addr);
    let client = payrelay::startup::http_client().unwrap();

    let checkout = format!("foran=f1&serverid=s2&lastan=l3&token={CHECKOUT_TOKEN}&domain=shop");
    for path in ["/funpoint/checkout", "/funpoint/checkout.json", "/payment_background_funpoint.php"] {
        let (status, _) = post(&client, format!("{base}{path}"), checkout.clone()).await.unwrap();
        assert_eq!(status, 200, "{path}");
    }
    let (status, _) =
        post(&client, format!("{base}/funpoint/notify"), notification("P01", "T1", "paid")).await.unwrap();
    assert_eq!(status, 200);
    let forged = notification("P01", "T2", "paid").replace("CheckMacValue=", "CheckMacValue=0");
    assert_eq!(post(&client, format!("{base}/funpoint/notify"), forged).await.unwrap().0, 400);
    eventually("the delivery", Duration::from_secs(10), || {
        tenant.received().iter().any(|r| r.path_and_query == "/funpoint_r.php")
    })
    .await;
    let api = client.get(format!("{base}/admin/api/callbacks")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(api.status().as_u16(), 200);
    let wrong =
        client.get(format!("{base}/admin/api/callbacks")).bearer_auth(format!("{ADMIN}x")).send().await.unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let page = client.get(format!("{base}/admin")).basic_auth("ops", Some(ADMIN)).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);

    served.signal("-TERM");
    let lines = tokio::task::block_in_place(|| served.drain());
    let log = lines.join("\n");
    let whsec_key = WHSEC.trim_start_matches("whsec_");
    for secret in [STAGE_KEY, STAGE_IV, WHSEC, whsec_key, ADMIN, CHECKOUT_TOKEN] {
        assert!(!log.contains(secret), "a secret is in the log: {secret}");
    }

    // One line per request, with its request id, and the tenant/provider
    // where there is one; one line per delivery attempt with its outcome.
    let json: Vec<serde_json::Value> = lines.iter().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert_eq!(json.len(), lines.len(), "every line is JSON with --log-format json");
    let responses: Vec<&serde_json::Value> =
        json.iter().filter(|v| v["message"].as_str() == Some("finished processing request")).collect();
    assert!(responses.len() >= 8, "{responses:?}");
    assert!(
        responses.iter().all(|v| v["span"]["request_id"].as_str().is_some_and(|id| id.len() >= 32)),
        "{responses:?}"
    );
    let notify = responses
        .iter()
        .find(|v| v["span"]["path"] == "/funpoint/notify" && v["status"] == 200)
        .expect("the notify request's line");
    assert_eq!(
        (notify["span"]["provider"].as_str(), notify["span"]["tenant"].as_str()),
        (Some("funpoint"), Some("shop"))
    );
    // (The mock tenant answers every path with the payment form, so the
    // attempt fails: its answer is not `1|OK`.)
    // F15: a wrong admin token is logged, with the address it came from.
    let wrong_token = json.iter().find(|v| v["message"] == "admin: wrong token").expect("the wrong token's line");
    assert_eq!(wrong_token["remote"], "127.0.0.1");
    let delivered = json.iter().find(|v| v["message"] == "delivery failed; will retry").expect("the attempt's line");
    assert_eq!(delivered["error"], "the tenant's answer is not an acknowledgement");
    assert_eq!(delivered["tenant"], "shop");
    assert_eq!(delivered["provider"], "funpoint");
    assert!(delivered["delivery"].is_string() && delivered["attempt"] == 1);
}
