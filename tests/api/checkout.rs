//! `POST /funpoint/checkout` and its legacy alias, SPEC §3.1.

use std::time::Duration;

use scraper::{Html, Selector};

use crate::helpers::*;

async fn error_code(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let html = res.text().await.unwrap();
    let doc = Html::parse_document(&html);
    let code = doc
        .select(&Selector::parse("#error_code").unwrap())
        .next()
        .map(|e| e.text().collect::<String>())
        .unwrap_or_else(|| panic!("no error code in {html}"));
    (status, code)
}

#[tokio::test]
async fn each_missing_or_empty_field_has_its_code_in_order() {
    need_backend!();
    let f = Fixture::start().await;
    let cases = [
        ("", "8000201"),
        ("serverid=s&lastan=l&token=t&domain=shop", "8000201"),
        ("foran=&serverid=s&lastan=l&token=t&domain=shop", "8000201"),
        ("foran=f&lastan=l&token=t&domain=shop", "8000202"),
        ("foran=f&serverid=s&token=t&domain=shop", "8000203"),
        ("foran=f&serverid=s&lastan=l&domain=shop", "8000204"),
        ("foran=f&serverid=s&lastan=l&token=t&domain=", "8000205"),
    ];
    for (body, want) in cases {
        let res = f.app.post_form("/funpoint/checkout", body).await;
        let (status, code) = error_code(res).await;
        assert_eq!((status, code.as_str()), (400, want), "body {body:?}");
    }
    // The page shows the PHP original's message.
    let html = f.app.post_form("/funpoint/checkout", "foran=f").await.text().await.unwrap();
    assert!(html.contains("伺服器資料錯誤-8000202。"), "{html}");
    assert!(f.tenant.received().is_empty(), "the tenant was called for an invalid checkout");
}

#[tokio::test]
async fn a_field_over_512_bytes_is_8000211() {
    need_backend!();
    let f = Fixture::start().await;
    let long = "x".repeat(513);
    let res =
        f.app.post_form("/funpoint/checkout", &format!("foran=f&serverid={long}&lastan=l&token=t&domain=shop")).await;
    assert_eq!(error_code(res).await, (400, "8000211".into()));
    // 512 bytes is fine (and 171 CJK characters, 513 bytes, are not).
    f.tenant_answers("Credit", "");
    let ok = "y".repeat(512);
    let res =
        f.app.post_form("/funpoint/checkout", &format!("foran={ok}&serverid=s&lastan=l&token=t&domain=shop")).await;
    assert_eq!(res.status(), 200);
    let cjk = "%E4%BA%A4".repeat(171);
    let res =
        f.app.post_form("/funpoint/checkout", &format!("foran={cjk}&serverid=s&lastan=l&token=t&domain=shop")).await;
    assert_eq!(error_code(res).await, (400, "8000211".into()));
}

#[tokio::test]
async fn unknown_domain_is_8000206_and_never_becomes_a_url() {
    need_backend!();
    let f = Fixture::start().await;
    for domain in ["nope", "127.0.0.1", "evil.example%2Fx"] {
        let res = f
            .app
            .post_form("/funpoint/checkout", &format!("foran=f&serverid=s&lastan=l&token=t&domain={domain}"))
            .await;
        assert_eq!(error_code(res).await, (400, "8000206".into()));
    }
    assert!(f.tenant.received().is_empty());
}

#[tokio::test]
async fn errors_are_json_when_asked() {
    need_backend!();
    let f = Fixture::start().await;
    let res = f
        .app
        .client
        .post(f.app.url("/funpoint/checkout"))
        .header("accept", "application/json")
        .body("foran=f&serverid=s&lastan=l&token=t&domain=nope")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "8000206");
    assert!(v["error"]["message"].as_str().unwrap().contains("8000206"));
}

#[tokio::test]
async fn origin_must_be_one_of_the_tenants() {
    need_backend!();
    let f = Fixture::start().await;
    f.tenant_answers("Credit", "");
    let post = |origin: &'static str| f.app.post_from(origin, "/funpoint/checkout", CHECKOUT);
    let res = post("https://evil.example").await;
    assert_eq!(error_code(res).await, (403, "8000210".into()));
    // Another tenant's origin is not this tenant's.
    let res = post("https://other.example").await;
    assert_eq!(error_code(res).await, (403, "8000210".into()));
    let res = post("null").await;
    assert_eq!(error_code(res).await, (403, "8000210".into()));
    assert!(f.tenant.received().is_empty());
    assert_eq!(post("https://shop.example").await.status(), 200);
    // No Origin header (a top-level form post from an old browser): allowed.
    assert_eq!(f.app.post_form("/funpoint/checkout", CHECKOUT).await.status(), 200);
}

#[tokio::test]
async fn the_tenant_api_gets_the_five_fields_and_the_buyer_address() {
    need_backend!();
    let f = Fixture::start().await;
    f.tenant_answers("Credit", "");
    let res = f
        .app
        .post_form("/funpoint/checkout", "token=tok-secret-4&domain=shop&foran=f1&extra=1&serverid=s2&lastan=l3")
        .await;
    assert_eq!(res.status(), 200);
    let got = f.tenant.received();
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path_and_query, "/funpoint_api.php?action=funpoint");
    assert_eq!(req.header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(req.body, "foran=f1&serverid=s2&lastan=l3&token=tok-secret-4&domain=shop");
    // The buyer is the peer; a forged X-Forwarded-For from an untrusted peer is ignored.
    assert_eq!(req.header("x-forwarded-for"), Some("127.0.0.1"));
    let res = f
        .app
        .client
        .post(f.app.url("/funpoint/checkout"))
        .header("x-forwarded-for", "6.6.6.6")
        .body(CHECKOUT)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(f.tenant.received()[1].header("x-forwarded-for"), Some("127.0.0.1"));
}

#[tokio::test]
async fn a_trusted_proxy_passes_the_buyer_address_on() {
    need_backend!();
    let tenant = MockServer::start().await;
    let provider = MockServer::start().await;
    let config = shop_config(&tenant.url(), &provider.url(), "")
        .replace("[delivery]", "[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\n[delivery]");
    let app = spawn_app(&config).await;
    let f = Fixture { app, tenant, provider };
    f.tenant_answers("Credit", "");
    let res = f
        .app
        .client
        .post(f.app.url("/funpoint/checkout"))
        .header("x-forwarded-for", "203.0.113.7")
        .body(CHECKOUT)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(f.tenant.received()[0].header("x-forwarded-for"), Some("203.0.113.7"));
}

#[tokio::test]
async fn every_tenant_api_failure_is_8000207() {
    need_backend!();
    let f = Fixture::start().await;
    let url = format!("{}/Cashier/AioCheckOut/V5", f.provider.url());
    let cases = [
        ("500", Reply::text(500, "oops")),
        ("404", Reply::text(404, "no such page")),
        ("redirect", Reply::text(302, "")),
        ("not JSON", Reply::text(200, "<html>PHP Warning</html>")),
        ("empty", Reply::json("")),
        ("no payment_url", Reply::json(r#"{"payment_value":{"ChoosePayment":"Credit"}}"#)),
        ("payment_url not a string", Reply::json(r#"{"payment_url":1,"payment_value":{"ChoosePayment":"Credit"}}"#)),
        ("no payment_value", Reply::json(format!(r#"{{"payment_url":"{url}"}}"#))),
        ("payment_value not an object", Reply::json(format!(r#"{{"payment_url":"{url}","payment_value":"x"}}"#))),
        (
            "timeout",
            Reply::json(format!(r#"{{"payment_url":"{url}","payment_value":{{}}}}"#))
                .with_delay(Duration::from_millis(1500)),
        ),
    ];
    for (what, reply) in cases {
        f.tenant.reply(reply);
        let res = f.app.post_form("/funpoint/checkout", CHECKOUT).await;
        assert_eq!(error_code(res).await, (502, "8000207".into()), "{what}");
    }
}

#[tokio::test]
async fn an_unreachable_tenant_is_8000207() {
    need_backend!();
    let provider = MockServer::start().await;
    let app = spawn_app(&shop_config(&closed_port_url().await, &provider.url(), "")).await;
    let res = app.post_form("/funpoint/checkout", CHECKOUT).await;
    assert_eq!(error_code(res).await, (502, "8000207".into()));
    let res = app.post_form("/funpoint/checkout.json", CHECKOUT).await;
    assert_eq!(res.status(), 502);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "8000207");
}

#[tokio::test]
async fn a_payment_url_outside_payment_origins_is_8000208() {
    need_backend!();
    let f = Fixture::start().await;
    for url in [
        "https://evil.example/Cashier",
        "https://payment.funpoint.com.tw.evil.example/",
        &format!("https://{}/x", f.provider.addr),
    ] {
        f.tenant
            .reply(Reply::json(format!(r#"{{"payment_url":"{url}","payment_value":{{"ChoosePayment":"Credit"}}}}"#)));
        let res = f.app.post_form("/funpoint/checkout", CHECKOUT).await;
        assert_eq!(error_code(res).await, (502, "8000208".into()), "{url}");
    }
}

fn inputs(html: &str) -> (String, Vec<(String, String)>) {
    let doc = Html::parse_document(html);
    let form = doc.select(&Selector::parse("form#payment_data").unwrap()).next().expect("no form#payment_data");
    assert_eq!(form.value().attr("method"), Some("post"));
    let action = form.value().attr("action").unwrap().to_owned();
    let fields = form
        .select(&Selector::parse("input[type=hidden]").unwrap())
        .map(|i| (i.value().attr("name").unwrap().to_owned(), i.value().attr("value").unwrap().to_owned()))
        .collect();
    (action, fields)
}

#[tokio::test]
async fn the_form_page_holds_every_field_in_order_with_its_headers() {
    need_backend!();
    let f = Fixture::start().await;
    f.tenant_answers("Credit", r#","Amount2":1.50,"Big":12345678901234567890,"Flag":true,"Nothing":null"#);
    let res = f.app.post_form("/funpoint/checkout", CHECKOUT).await;
    assert_eq!(res.status(), 200);
    let h = res.headers().clone();
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    let html = res.text().await.unwrap();
    let (action, fields) = inputs(&html);
    assert_eq!(action, format!("{}/Cashier/AioCheckOut/V5", f.provider.url()));
    let want = [
        ("MerchantID", "1000031"),
        ("MerchantTradeNo", "T2024112201"),
        ("TotalAmount", "100"),
        ("ChoosePayment", "Credit"),
        ("Amount2", "1.50"),
        ("Big", "12345678901234567890"),
        ("Flag", "true"),
        ("Nothing", ""),
    ];
    let want: Vec<(String, String)> = want.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(fields, want);

    // CSP: the form may go only to the payment origin, and the one script
    // runs by its hash.
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains(&format!("form-action {}", f.provider.url())), "{csp}");
    let doc = Html::parse_document(&html);
    let scripts: Vec<String> = doc.select(&Selector::parse("script").unwrap()).map(|s| s.text().collect()).collect();
    assert_eq!(scripts.len(), 1);
    use base64::Engine as _;
    use sha2::Digest as _;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(scripts[0].as_bytes()));
    assert!(csp.contains(&format!("script-src 'sha256-{hash}'")), "{csp}");
    assert!(!csp.contains("unsafe-inline"));
    assert!(scripts[0].contains("payment_data") && scripts[0].contains("submit()"));
    // A visible button for browsers without script. (A parser with
    // scripting on reads <noscript> as raw text, hence the text check.)
    let noscript =
        doc.select(&Selector::parse("form#payment_data noscript").unwrap()).next().expect("no noscript in the form");
    let inside: String = noscript.text().collect();
    assert!(inside.contains("<button type=\"submit\">"), "{inside}");
}

#[tokio::test]
async fn hostile_values_are_escaped_and_round_trip() {
    need_backend!();
    let f = Fixture::start().await;
    let hostile = [
        r#""><script>alert(1)</script>"#,
        "it's & \"quoted\" <b>",
        "手機殼 付款 測試",
        "emoji 💳🎉",
        "</form><form action=https://evil.example>",
        "&amp; &lt;",
    ];
    let mut extra = String::new();
    for (i, v) in hostile.iter().enumerate() {
        extra.push_str(&format!(",{}:{}", serde_json::json!(format!("k{i}\"><x>")), serde_json::json!(v)));
    }
    f.tenant_answers("ATM", &extra);
    let html = f.app.post_form("/funpoint/checkout", CHECKOUT).await.text().await.unwrap();
    assert!(!html.contains("<script>alert(1)"), "unescaped script in {html}");
    assert!(!html.contains("<form action=https://evil"), "unescaped form in {html}");
    let (_, fields) = inputs(&html);
    for (i, v) in hostile.iter().enumerate() {
        assert!(fields.contains(&(format!("k{i}\"><x>"), v.to_string())), "{v} did not round-trip: {fields:?}");
    }
    let doc = Html::parse_document(&html);
    assert_eq!(doc.select(&Selector::parse("form").unwrap()).count(), 1);
    assert_eq!(doc.select(&Selector::parse("script").unwrap()).count(), 1);
}

#[tokio::test]
async fn cvs_is_posted_server_side_and_the_providers_answer_passed_through() {
    need_backend!();
    let f = Fixture::start().await;
    f.tenant_answers("CVS", r#","ItemName":"手機殼 & 殼","StoreExpireDate":7"#);
    f.provider.reply(Reply {
        content_type: "text/html; charset=utf-8",
        ..Reply::text(200, "<html>CVS 代碼 LLL12345</html>")
    });
    let res = f.app.post_form("/funpoint/checkout", CHECKOUT).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(res.text().await.unwrap(), "<html>CVS 代碼 LLL12345</html>");
    let got = f.provider.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path_and_query, "/Cashier/AioCheckOut/V5");
    assert_eq!(got[0].header("content-type"), Some("application/x-www-form-urlencoded"));
    let want: Vec<(String, String)> = [
        ("MerchantID", "1000031"),
        ("MerchantTradeNo", "T2024112201"),
        ("TotalAmount", "100"),
        ("ChoosePayment", "CVS"),
        ("ItemName", "手機殼 & 殼"),
        ("StoreExpireDate", "7"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(got[0].form(), want);

    // The provider's error status is passed through as well.
    f.provider.reply(Reply::text(400, "bad params"));
    let res = f.app.post_form("/funpoint/checkout", CHECKOUT).await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.text().await.unwrap(), "bad params");
}

#[tokio::test]
async fn cvs_with_the_provider_unreachable_is_8000207() {
    need_backend!();
    let tenant = MockServer::start().await;
    let provider_url = closed_port_url().await;
    let app = spawn_app(&shop_config(&tenant.url(), &provider_url, "")).await;
    tenant.reply(Reply::json(format!(
        r#"{{"payment_url":"{provider_url}/x","payment_value":{{"ChoosePayment":"CVS"}}}}"#
    )));
    let res = app.post_form("/funpoint/checkout", CHECKOUT).await;
    assert_eq!(error_code(res).await, (502, "8000207".into()));
}

#[tokio::test]
async fn the_legacy_php_path_is_the_same_checkout() {
    need_backend!();
    let f = Fixture::start().await;
    f.tenant_answers("Credit", "");
    let res = f.app.post_form("/payment_background_funpoint.php", CHECKOUT).await;
    assert_eq!(res.status(), 200);
    let (action, fields) = inputs(&res.text().await.unwrap());
    assert!(action.ends_with("/Cashier/AioCheckOut/V5"));
    assert_eq!(fields.len(), 4);
    let res = f.app.post_form("/payment_background_funpoint.php", "foran=f").await;
    assert_eq!(error_code(res).await, (400, "8000202".into()));
}

#[tokio::test]
async fn legacy_paths_off_means_404() {
    need_backend!();
    let tenant = MockServer::start().await;
    let provider = MockServer::start().await;
    let config = shop_config(&tenant.url(), &provider.url(), "")
        .replace("[delivery]", "[server]\nlegacy_paths = false\n[delivery]");
    let app = spawn_app(&config).await;
    for path in [
        "/payment_background_funpoint.php",
        "/payment_background_funpoint_payment.php",
        "/payment_background_funpoint_receive_mid.php",
        "/payment_background_funpoint_receive.php",
    ] {
        assert_eq!(app.post_form(path, CHECKOUT).await.status(), 404, "{path}");
    }
    assert!(tenant.received().is_empty());
    assert_eq!(app.post_form("/funpoint/checkout", "").await.status(), 400);
}
