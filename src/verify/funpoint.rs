//! Funpoint's QueryTradeInfo/V5 (FP137 pp.29–31): a form signed with the
//! tenant's CheckMacValue keys; the answer is a form too, MAC-checked with
//! the same keys before anything in it is believed. `TradeStatus` 1 is
//! paid, 0 unpaid (an issued ATM/CVS code waits here), 10200095 the buyer
//! never chose a method.

use super::{Verdict, claimed, same_amount, send};
use crate::config::{ProviderApi, Tenant};
use crate::domain::{CheckMac, HashAlgorithm, HashKeys};
use crate::form::FormFields;
use crate::providers::Parsed;

/// What a Funpoint server callback claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// ReturnURL, RtnCode 1.
    Paid,
    /// ReturnURL with any other RtnCode.
    Failed,
    /// PaymentInfoURL: an ATM account or CVS code was issued.
    CodeIssued,
    /// PeriodReturnURL: one period of a recurring order (no TradeNo).
    Period,
}

fn claim(parsed: &Parsed) -> Claim {
    let rtn = parsed.field("RtnCode").unwrap_or_default();
    if parsed.field("TradeNo").is_none() && parsed.field("TotalSuccessTimes").is_some() {
        Claim::Period
    } else if rtn == "1" {
        Claim::Paid
    } else if rtn == "2"
        || rtn == "10100073"
        || parsed.field("vAccount").is_some()
        || parsed.field("PaymentNo").is_some()
    {
        Claim::CodeIssued
    } else {
        Claim::Failed
    }
}

pub(super) async fn query(client: &reqwest::Client, api: &ProviderApi, tenant: &Tenant, parsed: &Parsed) -> Verdict {
    let Some(section) = &tenant.funpoint else { return Verdict::unavailable("the tenant has no Funpoint section") };
    let (Some(keys), Some(merchant)) = (&section.keys, &section.merchant_id) else {
        return Verdict::unavailable("the tenant has no Funpoint keys or merchant_id to query with");
    };
    let order = match claimed(parsed, "MerchantTradeNo") {
        Ok(o) => o,
        Err(v) => return v,
    };
    let m = Merchant { id: merchant, keys, alg: section.encrypt_type };
    match trade_info(client, api, &m, &order).await {
        Ok(found) => {
            let text = crate::form::encode(found.iter());
            judge(claim(parsed), parsed, merchant, &found).saying(text.as_bytes())
        }
        Err(v) => v,
    }
}

/// Whose keys ask Funpoint: a merchant and its CheckMacValue keys.
pub struct Merchant<'a> {
    pub id: &'a str,
    pub keys: &'a HashKeys,
    pub alg: HashAlgorithm,
}

/// POSTs the signed query form for `order` to `path`; a 403 (the ECPay
/// family's "too fast: wait 30 minutes") is a verdict that asks for that pause.
async fn ask(
    client: &reqwest::Client,
    api: &ProviderApi,
    m: &Merchant<'_>,
    path: &str,
    order: &str,
) -> Result<super::Answer, Verdict> {
    let request = request_form(m.id, order, crate::store::now_ms() / 1000, m.keys, m.alg);
    let answer = send(client.post(format!("{}{path}", api.base)).form(&request), api).await?;
    if answer.status == http::StatusCode::FORBIDDEN {
        let mut v = Verdict::unavailable("HTTP 403: querying too fast; this merchant pauses 30 minutes");
        v.retry_after = Some(std::time::Duration::from_secs(30 * 60));
        return Err(v.saying(&answer.body));
    }
    Ok(answer)
}

/// QueryTradeInfo for `order`: the answer's fields once its CheckMacValue
/// verified, or the verdict of "unavailable" that says why not.
pub async fn trade_info(
    client: &reqwest::Client,
    api: &ProviderApi,
    m: &Merchant<'_>,
    order: &str,
) -> Result<FormFields, Verdict> {
    let answer = ask(client, api, m, "/Cashier/QueryTradeInfo/V5", order).await?;
    if !answer.status.is_success() {
        return Err(Verdict::unavailable(format!("HTTP {}", answer.status.as_u16())).saying(&answer.body));
    }
    let Ok(found) = FormFields::parse(&answer.body) else {
        return Err(Verdict::unavailable("the answer is not a form").saying(&answer.body));
    };
    let mac_ok = found
        .get(crate::domain::checkmac::FIELD)
        .is_some_and(|mac| CheckMac::verify(found.unique(), m.keys, m.alg, mac));
    if !mac_ok {
        return Err(Verdict::unavailable("the answer's CheckMacValue does not verify").saying(&answer.body));
    }
    Ok(found)
}

/// QueryCreditCardPeriodInfo for a recurring `order` (FP137 pp.34–37): its
/// JSON answer (which carries no MAC), or the verdict that says why not.
pub async fn period_info(
    client: &reqwest::Client,
    api: &ProviderApi,
    m: &Merchant<'_>,
    order: &str,
) -> Result<serde_json::Value, Verdict> {
    let answer = ask(client, api, m, "/Cashier/QueryCreditCardPeriodInfo", order).await?;
    match serde_json::from_slice::<serde_json::Value>(&answer.body) {
        Ok(v) if answer.status.is_success() && v.get("ExecLog").is_some_and(serde_json::Value::is_array) => Ok(v),
        _ => Err(Verdict::unavailable(format!("HTTP {}: no ExecLog in the answer", answer.status.as_u16()))
            .saying(&answer.body)),
    }
}

/// The QueryTradeInfo request for `order` at unix time `now`.
pub(crate) fn request_form(
    merchant: &str,
    order: &str,
    now: i64,
    keys: &HashKeys,
    alg: HashAlgorithm,
) -> Vec<(&'static str, String)> {
    let mut form = vec![
        ("MerchantID", merchant.to_owned()),
        ("MerchantTradeNo", order.to_owned()),
        ("TimeStamp", now.to_string()),
        ("PlatformID", String::new()),
    ];
    let mac = CheckMac::compute(form.iter().map(|(k, v)| (*k, v.as_str())), keys, alg);
    form.push(("CheckMacValue", mac.as_str().to_owned()));
    form
}

/// Does the verified answer `found` agree with what the callback claims?
fn judge(claim: Claim, parsed: &Parsed, merchant: &str, found: &FormFields) -> Verdict {
    let get = |k: &str| found.get(k).unwrap_or_default();
    let status = get("TradeStatus");
    if get("MerchantID") != merchant || Some(get("MerchantTradeNo")) != parsed.field("MerchantTradeNo").as_deref() {
        return Verdict::contradicted("the answer names another merchant or order");
    }
    let amount = parsed.field("TradeAmt");
    if claim != Claim::Period && amount.as_deref().is_some_and(|a| !same_amount(a, get("TradeAmt"))) {
        return Verdict::contradicted(format!(
            "amount {} in the callback, {} at Funpoint",
            amount.unwrap_or_default(),
            get("TradeAmt")
        ));
    }
    let trade_no = parsed.field("TradeNo");
    if trade_no.as_deref().is_some_and(|t| !get("TradeNo").is_empty() && t != get("TradeNo")) {
        return Verdict::contradicted("the TradeNo differs from Funpoint's");
    }
    match (claim, status) {
        (Claim::Paid | Claim::Period, "1") => Verdict::confirmed("TradeStatus 1 (paid)"),
        (Claim::Paid | Claim::Period, "0") => Verdict::not_yet("TradeStatus 0 (not paid yet)"),
        (Claim::CodeIssued, "0" | "1") => {
            Verdict::confirmed(format!("TradeStatus {status}: the order exists, same amount"))
        }
        (Claim::Failed, "1") => Verdict::contradicted("a failure notice for an order Funpoint says is paid"),
        (Claim::Failed, _) => Verdict::confirmed(format!("TradeStatus {status} (not paid)")),
        (_, "10200095") => Verdict::contradicted("TradeStatus 10200095: the buyer never chose a payment method"),
        (_, other) => Verdict::contradicted(format!("TradeStatus {other:?}")),
    }
}
