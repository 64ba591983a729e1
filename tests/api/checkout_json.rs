//! `POST /funpoint/checkout.json` and its legacy alias, SPEC §3.2: the
//! payment form as JSON, errors as JSON, and CORS exactly as specified.

use crate::helpers::*;

const PATHS: [&str; 2] = ["/funpoint/checkout.json", "/payment_background_funpoint_payment.php"];

#[tokio::test]
async fn answers_payment_value_exactly_as_the_tenant_sent_it() {
    need_backend!();
    let f = Fixture::start().await;
    let url = format!("{}/Cashier/AioCheckOut/V5", f.provider.url());
    let value = r#"{ "MerchantID":"1000031", "TotalAmount": 100, "Amount2":1.50, "ItemName":"\u624b\u6a5f\u6bbc", "ChoosePayment":"CVS" }"#;
    f.tenant.reply(Reply::json(format!(r#"{{"payment_url":"{url}","payment_value":{value},"other":1}}"#)));
    for path in PATHS {
        let res = f.app.post_form(path, CHECKOUT).await;
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.headers()["content-type"], "application/json");
        assert_eq!(res.text().await.unwrap(), value, "{path}");
    }
    // No CVS side effect on this path.
    assert!(f.provider.received().is_empty());
}

#[tokio::test]
async fn errors_are_json_with_the_same_status() {
    need_backend!();
    let f = Fixture::start().await;
    for path in PATHS {
        let res = f.app.post_form(path, "foran=f&serverid=s").await;
        assert_eq!(res.status(), 400);
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(v["error"]["code"], "8000203");
        assert!(v["error"]["message"].is_string());

        let res = f.app.post_from("https://evil.example", path, CHECKOUT).await;
        assert_eq!(res.status(), 403);
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(v["error"]["code"], "8000210");
    }
}

fn allow_origins(res: &reqwest::Response) -> Vec<String> {
    res.headers().get_all("access-control-allow-origin").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

fn varies_on_origin(res: &reqwest::Response) -> bool {
    res.headers()
        .get_all("vary")
        .iter()
        .any(|v| v.to_str().unwrap().split(',').any(|p| p.trim().eq_ignore_ascii_case("origin")))
}

#[tokio::test]
async fn a_tenant_origin_gets_exactly_one_allow_origin_on_every_answer() {
    need_backend!();
    let f = Fixture::start().await;
    f.tenant_answers("Credit", "");
    for path in PATHS {
        // Success, and an error: both carry the header.
        for body in [CHECKOUT, "foran=f"] {
            let res = f.app.post_from("https://shop.example", path, body).await;
            assert_eq!(allow_origins(&res), ["https://shop.example"], "{path} {body}");
            assert!(varies_on_origin(&res));
        }
        // Any tenant's origin is allowed by CORS (the 8000210 check is per tenant).
        let res = f.app.post_from("https://other.example", path, CHECKOUT).await;
        assert_eq!(res.status(), 403);
        assert_eq!(allow_origins(&res), ["https://other.example"]);
    }
}

#[tokio::test]
async fn other_origins_get_no_cors_headers_but_vary() {
    need_backend!();
    let f = Fixture::start().await;
    f.tenant_answers("Credit", "");
    for path in PATHS {
        let res = f.app.post_from("https://evil.example", path, CHECKOUT).await;
        assert!(allow_origins(&res).is_empty());
        assert!(varies_on_origin(&res));
        let res = f.app.post_form(path, CHECKOUT).await;
        assert!(allow_origins(&res).is_empty());
        assert!(varies_on_origin(&res));
    }
    // The page path is not a CORS endpoint at all.
    let res = f.app.post_from("https://shop.example", "/funpoint/checkout", CHECKOUT).await;
    assert!(allow_origins(&res).is_empty());
}

#[tokio::test]
async fn preflight_is_204_with_methods_and_headers_for_tenant_origins_only() {
    need_backend!();
    let f = Fixture::start().await;
    for path in PATHS {
        let res = f
            .app
            .client
            .request(reqwest::Method::OPTIONS, f.app.url(path))
            .header("origin", "https://shop.example")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
        assert_eq!(allow_origins(&res), ["https://shop.example"]);
        assert_eq!(res.headers()["access-control-allow-methods"], "POST");
        assert_eq!(res.headers()["access-control-allow-headers"], "Content-Type");
        assert!(varies_on_origin(&res));

        let res = f
            .app
            .client
            .request(reqwest::Method::OPTIONS, f.app.url(path))
            .header("origin", "https://evil.example")
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert!(allow_origins(&res).is_empty());
        assert!(res.headers().get("access-control-allow-methods").is_none());
        assert!(res.headers().get("access-control-allow-headers").is_none());
    }
    assert!(f.tenant.received().is_empty());
}
