//! The operator's side (SPEC §5): the admin API and console behind the
//! token, replay (one, and every dead one of a tenant), and `/metrics`.

use std::time::Duration;

use payrelay::store::Status;
use serde_json::Value;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(15);
pub const TOKEN: &str = "adm-7f3e9c1d-token-0123456789abcdef";

/// The shop fixture with the admin side on; shop's deliveries go to a port
/// that is bound but never answers until `MockServer::start_on(listener)`.
pub struct Ops {
    pub app: TestApp,
    pub down: Option<std::net::TcpListener>,
    pub other: MockServer,
}

pub fn ops_config(shop_url: &str, other_url: &str, extra: &str) -> String {
    let shop = shop_tenant(shop_url);
    format!(
        r#"
[delivery]
timeout = "300ms"
retry = ["50ms", "50ms"]

[admin]
token = "{TOKEN}"

{shop}

[[tenants]]
id = "other"
base_url = "{other_url}"
allow_http = true
order_suffix = "02"
[tenants.funpoint]
verify = "none"
{extra}
"#
    )
}

impl Ops {
    pub async fn start() -> Self {
        let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other = MockServer::start().await;
        let app = spawn_app(&ops_config(&format!("http://{}", down.local_addr().unwrap()), &other.url(), "")).await;
        Self { app, down: Some(down), other }
    }

    pub async fn api(&self, method: reqwest::Method, path: &str) -> (u16, Value) {
        let res = self.app.client.request(method, self.app.url(path)).bearer_auth(TOKEN).send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.api(reqwest::Method::GET, path).await
    }

    pub async fn notify(&self, body: &str) -> u16 {
        self.app.post_form("/funpoint/notify", body).await.status().as_u16()
    }
}

#[tokio::test]
async fn without_a_token_configured_the_admin_side_is_404() {
    need_backend!();
    let f = Fixture::start().await;
    for path in ["/admin", "/admin/api/callbacks", "/admin/callbacks/x"] {
        let res = f.app.client.get(f.app.url(path)).bearer_auth("anything").send().await.unwrap();
        assert_eq!(res.status().as_u16(), 404, "{path}");
    }
}

#[tokio::test]
async fn bearer_or_basic_with_the_token_and_anything_else_is_401() {
    need_backend!();
    let ops = Ops::start().await;
    let url = ops.app.url("/admin/api/callbacks");
    let c = &ops.app.client;
    assert_eq!(c.get(&url).bearer_auth(TOKEN).send().await.unwrap().status().as_u16(), 200);
    assert_eq!(c.get(&url).basic_auth("ops", Some(TOKEN)).send().await.unwrap().status().as_u16(), 200);
    assert_eq!(c.get(ops.app.url("/admin")).basic_auth("", Some(TOKEN)).send().await.unwrap().status().as_u16(), 200);
    for res in [
        c.get(&url).send().await.unwrap(),
        c.get(&url).bearer_auth("adm-wrong").send().await.unwrap(),
        c.get(&url).basic_auth(TOKEN, None::<&str>).send().await.unwrap(),
        c.get(&url).header("authorization", format!("Token {TOKEN}")).send().await.unwrap(),
        c.get(ops.app.url("/admin")).send().await.unwrap(),
    ] {
        assert_eq!(res.status().as_u16(), 401);
        let challenge = res.headers().get("www-authenticate").unwrap().to_str().unwrap();
        assert!(challenge.starts_with("Basic realm="), "{challenge}");
    }
}

#[tokio::test]
async fn the_list_is_newest_first_filtered_and_paged_by_cursor() {
    need_backend!();
    let ops = Ops::start().await;
    for i in 0..5 {
        assert_eq!(ops.notify(&notification(&format!("A{i}01"), &format!("T{i}"), "paid")).await, 200);
    }
    assert_eq!(ops.notify(&notification("B02", "T9", "paid")).await, 200); // other
    assert_eq!(ops.notify(&notification("C99", "T8", "paid")).await, 400); // unroutable
    assert_eq!(ops.notify(&notification_with("D01", "T7", "paid", &[("TradeAmt", "1")])).await, 200);

    let (status, all) = ops.get("/admin/api/callbacks").await;
    assert_eq!(status, 200);
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), 8);
    assert_eq!(all["next"], Value::Null);
    let first = &items[0];
    for key in ["id", "provider", "tenant", "status", "attempts", "received_at", "last_error"] {
        assert!(first.get(key).is_some(), "{key} in {first}");
    }
    let times: Vec<&str> = items.iter().map(|i| i["received_at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
    assert!(times[0].ends_with('Z') && times[0].len() == 24, "RFC 3339: {}", times[0]);
    let unroutable = items.iter().find(|i| i["status"] == "unroutable").unwrap();
    assert_eq!(unroutable["tenant"], Value::Null);

    let (_, other) = ops.get("/admin/api/callbacks?tenant=other").await;
    assert_eq!(other["items"].as_array().unwrap().len(), 1);
    let (_, unr) = ops.get("/admin/api/callbacks?status=unroutable&provider=funpoint").await;
    assert_eq!(unr["items"].as_array().unwrap().len(), 1);
    let (_, none) = ops.get("/admin/api/callbacks?provider=oen").await;
    assert!(none["items"].as_array().unwrap().is_empty());

    // Pages of 3 cover all 8 once, in order.
    let mut seen = Vec::new();
    let mut path = "/admin/api/callbacks?limit=3".to_owned();
    loop {
        let (status, page) = ops.get(&path).await;
        assert_eq!(status, 200);
        seen.extend(page["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_owned()));
        match page["next"].as_str() {
            Some(cursor) => path = format!("/admin/api/callbacks?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    let ids: Vec<String> = items.iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(seen, ids);

    for bad in ["status=paid", "limit=0", "limit=x", "cursor=abc"] {
        let (status, body) = ops.get(&format!("/admin/api/callbacks?{bad}")).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body["error"].is_string());
    }
}

#[tokio::test]
async fn detail_has_the_raw_body_and_every_attempt() {
    need_backend!();
    let ops = Ops::start().await;
    let body = notification("E01", "T1", "交易成功");
    assert_eq!(ops.notify(&body).await, 200);
    let id = ops.app.rows().await[0].id.clone();
    ops.app.until_status(&id, Status::Dead, WAIT).await;

    let (status, d) = ops.get(&format!("/admin/api/callbacks/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(d["body"], body.as_str(), "the raw body as text");
    assert_eq!(d["content_type"], "application/x-www-form-urlencoded");
    assert_eq!(d["status"], "dead");
    assert_eq!(d["attempts"].as_array().unwrap().len(), 3, "retry has two waits: three attempts");
    let a = &d["attempts"][0];
    assert_eq!(a["n"], 1);
    assert!(a["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(a["status_code"], Value::Null);
    assert!(a["duration_ms"].as_u64().unwrap() >= 250, "{a}");
    assert!(a["error"].as_str().unwrap().contains("timed out"), "{a}");
    assert_eq!(d["last_error"], d["attempts"][2]["error"]);

    let (status, _) = ops.get("/admin/api/callbacks/0190a0a0-0000-7000-8000-000000000000").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_dead_callback_replayed_is_delivered_once_the_tenant_is_up() {
    need_backend!();
    let mut ops = Ops::start().await;
    let body = notification("F01", "T1", "paid");
    assert_eq!(ops.notify(&body).await, 200);
    let id = ops.app.rows().await[0].id.clone();
    ops.app.until_status(&id, Status::Dead, WAIT).await;

    let shop = MockServer::start_on(ops.down.take().unwrap()).await;
    let (status, item) = ops.api(reqwest::Method::POST, &format!("/admin/api/callbacks/{id}/replay")).await;
    assert_eq!(status, 202);
    assert_eq!((item["id"].as_str(), item["status"].as_str()), (Some(id.as_str()), Some("pending")));
    let d = ops.app.until_status(&id, Status::Delivered, WAIT).await;
    assert_eq!(d.attempts.len(), 4, "the numbering goes on");
    let got = shop.received();
    let last = got.last().unwrap();
    assert_eq!(last.body, body.as_bytes());
    assert_eq!(last.header("x-payrelay-attempt"), Some("4"));
    assert_eq!(last.header("x-payrelay-delivery"), Some(id.as_str()));
}

#[tokio::test]
async fn rejected_is_never_replayed_and_unroutable_is_routed_with_todays_table() {
    need_backend!();
    let ops = Ops::start().await;
    let forged = notification("G01", "T1", "paid").replace("CheckMacValue=", "CheckMacValue=00");
    assert_eq!(ops.notify(&forged).await, 400);
    let unroutable = notification("G03", "T2", "paid");
    assert_eq!(ops.notify(&unroutable).await, 400);
    let rows = ops.app.rows().await;
    let rejected = rows.iter().find(|r| r.status == Status::Rejected).unwrap().id.clone();
    let lost = rows.iter().find(|r| r.status == Status::Unroutable).unwrap().id.clone();

    let (status, body) = ops.api(reqwest::Method::POST, &format!("/admin/api/callbacks/{rejected}/replay")).await;
    assert_eq!(status, 409);
    assert!(body["error"].as_str().unwrap().contains("rejected"));
    let (status, body) = ops.api(reqwest::Method::POST, &format!("/admin/api/callbacks/{lost}/replay")).await;
    assert_eq!(status, 409, "no tenant has suffix 03 yet");
    assert!(body["error"].as_str().unwrap().contains("unroutable"), "{body}");

    // Today's table gains the tenant with suffix 03.
    let third = MockServer::start().await;
    let shop_url = format!("http://{}", ops.down.as_ref().unwrap().local_addr().unwrap());
    let extra = format!(
        "\n[[tenants]]\nid = \"third\"\nbase_url = \"{}\"\nallow_http = true\norder_suffix = \"03\"\n[tenants.funpoint]\nverify = \"none\"\n",
        third.url()
    );
    let config = payrelay::config::parse(&ops_config(&shop_url, &ops.other.url(), &extra), &|_| None).unwrap();
    let mut config = config;
    config.server.listen = ops.app.state.config().server.listen;
    config.storage.url = ops.app.state.config().storage.url.clone();
    ops.app.state.replace_config(config);

    let (status, item) = ops.api(reqwest::Method::POST, &format!("/admin/api/callbacks/{lost}/replay")).await;
    assert_eq!(status, 202, "{item}");
    assert_eq!(item["tenant"], "third");
    ops.app.until_status(&lost, Status::Delivered, WAIT).await;
    assert_eq!(third.received()[0].body, unroutable.as_bytes());
    assert_eq!(ops.app.detail(&rejected).await.summary.status, Status::Rejected);
}

#[tokio::test]
async fn every_dead_callback_of_a_tenant_is_replayed_at_once() {
    need_backend!();
    let mut ops = Ops::start().await;
    for i in 0..3 {
        assert_eq!(ops.notify(&notification(&format!("H{i}01"), &format!("T{i}"), "paid")).await, 200);
    }
    for r in ops.app.rows().await {
        ops.app.until_status(&r.id, Status::Dead, WAIT).await;
    }
    let shop = MockServer::start_on(ops.down.take().unwrap()).await;
    let (status, body) = ops.api(reqwest::Method::POST, "/admin/api/tenants/shop/replay-dead").await;
    assert_eq!((status, body["replayed"].as_u64()), (202, Some(3)));
    for r in ops.app.rows().await {
        ops.app.until_status(&r.id, Status::Delivered, WAIT).await;
    }
    // Connections left waiting in the port's backlog by the failed attempts
    // are answered too once it serves; what counts is each one's 4th attempt.
    let mut fourth: Vec<String> = shop
        .received()
        .iter()
        .filter(|r| r.header("x-payrelay-attempt") == Some("4"))
        .map(|r| r.header("x-payrelay-delivery").unwrap().to_owned())
        .collect();
    fourth.sort();
    let mut ids: Vec<String> = ops.app.rows().await.into_iter().map(|r| r.id.to_string()).collect();
    ids.sort();
    assert_eq!(fourth, ids);
    let (_, body) = ops.api(reqwest::Method::POST, "/admin/api/tenants/shop/replay-dead").await;
    assert_eq!(body["replayed"], 0);
}

#[tokio::test]
async fn the_console_lists_masks_hash_fields_and_refuses_cross_site_posts() {
    need_backend!();
    let ops = Ops::start().await;
    let body = notification("K01", "T1", "paid");
    assert_eq!(ops.notify(&body).await, 200);
    let id = ops.app.rows().await[0].id.clone();
    let c = &ops.app.client;

    let res = c.get(ops.app.url("/admin?status=pending")).basic_auth("ops", Some(TOKEN)).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let csp = res.headers().get("content-security-policy").unwrap().to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"), "{csp}");
    let html = res.text().await.unwrap();
    assert!(html.contains(&format!("/admin/callbacks/{id}")), "{html}");
    assert!(html.contains("id=\"count-pending\""));

    let res = c.get(ops.app.url(&format!("/admin/callbacks/{id}"))).bearer_auth(TOKEN).send().await.unwrap();
    let html = res.text().await.unwrap();
    let mac = body.rsplit_once("CheckMacValue=").unwrap().1;
    assert!(html.contains("MerchantTradeNo = K01"), "{html}");
    assert!(!html.contains(mac), "the CheckMacValue is masked");
    assert!(html.contains("CheckMacValue = ") && html.contains("(masked)"));
    assert!(html.contains("id=\"replay\""));

    let replay = ops.app.url(&format!("/admin/callbacks/{id}/replay"));
    let res = c.post(&replay).bearer_auth(TOKEN).header("origin", "https://evil.example").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 403);
    let res = c.post(&replay).bearer_auth(TOKEN).header("sec-fetch-site", "cross-site").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 403);
    let res =
        c.post(&replay).bearer_auth(TOKEN).header("origin", format!("http://{}", ops.app.addr)).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(res.headers().get("location").unwrap(), &format!("/admin/callbacks/{id}?done=replayed"));
}

#[tokio::test]
async fn metrics_count_callbacks_deliveries_failures_and_dead_by_provider_and_tenant() {
    need_backend!();
    let ops = Ops::start().await;
    assert_eq!(ops.notify(&notification("M01", "T1", "paid")).await, 200); // shop: hangs → dead
    assert_eq!(ops.notify(&notification("M02", "T2", "paid")).await, 200); // other: delivered
    assert_eq!(ops.notify(&notification("M02", "T2", "paid")).await, 200); // duplicate
    assert_eq!(ops.notify(&notification("M99", "T3", "paid")).await, 400); // unroutable
    for r in ops.app.rows().await.iter().filter(|r| r.tenant.as_deref() == Some("shop")) {
        ops.app.until_status(&r.id, Status::Dead, WAIT).await;
    }
    let other_id = ops.app.rows().await.iter().find(|r| r.tenant.as_deref() == Some("other")).unwrap().id.clone();
    ops.app.until_status(&other_id, Status::Delivered, WAIT).await;

    let res = ops.app.client.get(ops.app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.headers().get("content-type").unwrap().to_str().unwrap().starts_with("text/plain"));
    let text = res.text().await.unwrap();
    // Several gateways share one recorder in this test process: read the
    // series of this test's tenants and look for at-least values.
    let value = |prefix: &str, labels: &[&str]| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix) && labels.iter().all(|lab| l.contains(lab)))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum()
    };
    let fp = "provider=\"funpoint\"";
    assert!(
        value("payrelay_callbacks_received_total", &[fp, "tenant=\"shop\"", "outcome=\"stored\""]) >= 1.0,
        "{text}"
    );
    assert!(value("payrelay_callbacks_received_total", &[fp, "tenant=\"other\"", "outcome=\"duplicate\""]) >= 1.0);
    assert!(value("payrelay_callbacks_received_total", &[fp, "tenant=\"-\"", "outcome=\"unroutable\""]) >= 1.0);
    assert!(value("payrelay_deliveries_total", &[fp, "tenant=\"other\""]) >= 1.0);
    assert!(value("payrelay_delivery_failures_total", &[fp, "tenant=\"shop\""]) >= 3.0);
    assert!(value("payrelay_callbacks_dead_total", &[fp, "tenant=\"shop\""]) >= 1.0);
    assert!(value("payrelay_delivery_attempt_seconds_count", &[fp]) >= 4.0);
    assert!(text.contains("payrelay_delivery_attempt_seconds_bucket{provider=\"funpoint\",le=\"0.5\"}"));
    assert_eq!(value("payrelay_callbacks{", &["status=\"dead\""]), 1.0, "this gateway's own store");
    assert!(value("payrelay_http_requests_total", &["route=\"/{provider}/notify\"", "status=\"200\""]) >= 3.0);
    assert!(text.contains("payrelay_oldest_pending_age_seconds"));
}
