//! `POST /funpoint/return` and its legacy alias, SPEC §3.4: the browser
//! goes on to the tenant's result page with only the fields of its RtnCode.

use payrelay::domain::{CheckMac, HashAlgorithm, HashKeys, Secret};
use scraper::{Html, Selector};

use crate::helpers::*;

fn stage_keys() -> HashKeys {
    HashKeys { key: Secret::new(STAGE_KEY), iv: Secret::new(STAGE_IV) }
}

/// A form body signed with the stage keys.
fn signed(fields: &[(&str, &str)]) -> String {
    let mac = CheckMac::compute(fields.iter().copied(), &stage_keys(), HashAlgorithm::Sha256);
    let mut all: Vec<(&str, &str)> = fields.to_vec();
    all.push(("CheckMacValue", mac.as_str()));
    payrelay::form::encode(all)
}

fn relayed(html: &str) -> (String, Vec<(String, String)>) {
    let doc = Html::parse_document(html);
    let form = doc
        .select(&Selector::parse("form#payment_data").unwrap())
        .next()
        .unwrap_or_else(|| panic!("no form in {html}"));
    let fields = form
        .select(&Selector::parse("input[type=hidden]").unwrap())
        .map(|i| (i.value().attr("name").unwrap().to_owned(), i.value().attr("value").unwrap().to_owned()))
        .collect();
    (form.value().attr("action").unwrap().to_owned(), fields)
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

const COMMON: [(&str, &str); 6] = [
    ("MerchantID", STAGE_MERCHANT),
    ("MerchantTradeNo", "FP24112215304501"),
    ("StoreID", ""),
    ("TradeNo", "2411221530123456"),
    ("TradeAmt", "1200"),
    ("PaymentDate", "2024/11/22 15:31:00"),
];

async fn post_return(f: &Fixture, path: &str, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut fields: Vec<(&str, &str)> = COMMON.to_vec();
    fields.extend_from_slice(extra);
    f.app.post_form(path, &signed(&fields)).await
}

#[tokio::test]
async fn atm_code_issued_passes_its_six_fields() {
    need_backend!();
    let f = Fixture::start().await;
    let res = post_return(
        &f,
        "/funpoint/return",
        &[
            ("RtnCode", "2"),
            ("RtnMsg", "Get VirtualAccount Succeeded"),
            ("BankCode", "812"),
            ("vAccount", "9103522175887271"),
            ("ExpireDate", "2024/11/25"),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let csp = res.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains(&format!("form-action {}", f.tenant.url())), "{csp}");
    let (action, fields) = relayed(&res.text().await.unwrap());
    assert_eq!(action, format!("{}/funpoint_payok.php", f.tenant.url()));
    assert_eq!(
        fields,
        pairs(&[
            ("MerchantTradeNo", "FP24112215304501"),
            ("RtnCode", "2"),
            ("ExpireDate", "2024/11/25"),
            ("BankCode", "812"),
            ("vAccount", "9103522175887271"),
            ("TradeAmt", "1200")
        ])
    );
    assert!(f.tenant.received().is_empty(), "the browser return must not call the tenant server-side");
}

#[tokio::test]
async fn cvs_code_issued_passes_its_five_fields() {
    need_backend!();
    let f = Fixture::start().await;
    let res = post_return(
        &f,
        "/funpoint/return",
        &[
            ("RtnCode", "10100073"),
            ("RtnMsg", "Get CVS Code Succeeded."),
            ("PaymentNo", "LLL22251222"),
            ("ExpireDate", "2024/11/29 15:30:00"),
            ("Barcode1", ""),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    let (_, fields) = relayed(&res.text().await.unwrap());
    assert_eq!(
        fields,
        pairs(&[
            ("MerchantTradeNo", "FP24112215304501"),
            ("RtnCode", "10100073"),
            ("ExpireDate", "2024/11/29 15:30:00"),
            ("PaymentNo", "LLL22251222"),
            ("TradeAmt", "1200")
        ])
    );
}

#[tokio::test]
async fn any_other_code_passes_four_fields_and_hostile_text_is_escaped() {
    need_backend!();
    let f = Fixture::start().await;
    let hostile = r#"交易成功 "><script>alert(1)</script>"#;
    let res = post_return(
        &f,
        "/payment_background_funpoint_receive_mid.php",
        &[("RtnCode", "1"), ("RtnMsg", hostile), ("SimulatePaid", "0")],
    )
    .await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(!html.contains("<script>alert(1)"));
    let (_, fields) = relayed(&html);
    assert_eq!(
        fields,
        pairs(&[("MerchantTradeNo", "FP24112215304501"), ("RtnCode", "1"), ("RtnMsg", hostile), ("TradeAmt", "1200")])
    );
}

#[tokio::test]
async fn absent_fields_are_left_out_and_empty_ones_passed_on() {
    need_backend!();
    let f = Fixture::start().await;
    // No CheckMacValue at all: nothing to verify, relayed as received.
    let res = f.app.post_form("/funpoint/return", "MerchantTradeNo=X01&RtnCode=2&BankCode=&TradeAmt=5").await;
    assert_eq!(res.status(), 200);
    let (_, fields) = relayed(&res.text().await.unwrap());
    assert_eq!(fields, pairs(&[("MerchantTradeNo", "X01"), ("RtnCode", "2"), ("BankCode", ""), ("TradeAmt", "5")]));
}

#[tokio::test]
async fn a_wrong_checkmacvalue_is_8000213() {
    need_backend!();
    let f = Fixture::start().await;
    let good = signed(&[("MerchantTradeNo", "FP01"), ("RtnCode", "1"), ("TradeAmt", "100")]);
    let forged = good.replace("TradeAmt=100", "TradeAmt=1");
    let res = f.app.post_form("/funpoint/return", &forged).await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("8000213"));
    let res = f.app.post_form("/funpoint/return", "MerchantTradeNo=FP01&RtnCode=1&CheckMacValue=").await;
    assert_eq!(res.status(), 400);
    assert_eq!(f.app.post_form("/funpoint/return", &good).await.status(), 200);
}

#[tokio::test]
async fn an_unknown_order_suffix_is_8000212() {
    need_backend!();
    let f = Fixture::start().await;
    for body in ["MerchantTradeNo=FP99&RtnCode=1", "RtnCode=1", "MerchantTradeNo=1", "MerchantTradeNo=%FF01"] {
        let res = f.app.post_form("/funpoint/return", body).await;
        assert_eq!(res.status(), 400, "{body}");
        assert!(res.text().await.unwrap().contains("8000212"), "{body}");
    }
}

#[tokio::test]
async fn a_tenant_without_keys_refuses_a_checkmacvalue_unless_it_says_verify_none() {
    need_backend!();
    // SPEC §7: tenant "other" (suffix 02) has no keys and verifies by
    // default, so nothing it is sent verifies.
    let f = Fixture::start().await;
    let res = f.app.post_form("/funpoint/return", "MerchantTradeNo=FP02&RtnCode=1&CheckMacValue=WRONG").await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("8000213"));
    // Without a CheckMacValue there is nothing to check.
    let res = f.app.post_form("/funpoint/return", "MerchantTradeNo=FP02&RtnCode=1").await;
    assert_eq!(res.status(), 200);
    // With verify = "none" it relays without checking.
    let f = Fixture::with_extra("verify = \"none\"").await;
    let res = f.app.post_form("/funpoint/return", "MerchantTradeNo=FP02&RtnCode=1&CheckMacValue=WRONG").await;
    assert_eq!(res.status(), 200);
    let (action, _) = relayed(&res.text().await.unwrap());
    assert_eq!(action, "https://other.example/funpoint_payok.php");
}
