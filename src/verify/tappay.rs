//! TapPay's Record API (`POST /tpc/transaction/query`, `x-api-key` and the
//! partner key in the body) filtered by the callback's `rec_trade_id`:
//! `status` 0 with exactly one record, whose `order_number`, `amount` and
//! `merchant_id` agree. `record_status` −1 is an error (failed), 3 refunded.

use serde_json::{Value, json};

use super::{Verdict, claimed, disagreement, json_text as text, send};
use crate::config::{ProviderApi, Tenant};
use crate::providers::Parsed;

pub(super) async fn query(client: &reqwest::Client, api: &ProviderApi, tenant: &Tenant, parsed: &Parsed) -> Verdict {
    let Some(creds) = tenant.tappay.as_ref().and_then(|t| t.credentials.as_ref()) else {
        return Verdict::unavailable("the tenant has no TapPay partner_key");
    };
    let rec = match claimed(parsed, "rec_trade_id") {
        Ok(r) => r,
        Err(v) => return v,
    };
    let body = json!({
        "partner_key": creds.partner_key.expose(),
        "records_per_page": 10,
        "page": 0,
        "filters": { "rec_trade_id": rec.as_ref() },
    });
    let request = client
        .post(format!("{}/tpc/transaction/query", api.base))
        .header("x-api-key", creds.partner_key.expose())
        .json(&body);
    let answer = match send(request, api).await {
        Ok(a) => a,
        Err(v) => return v,
    };
    if !answer.status.is_success() {
        return Verdict::unavailable(format!("HTTP {}", answer.status.as_u16())).saying(&answer.body);
    }
    let json: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    let verdict = match json.get("status").and_then(Value::as_i64) {
        Some(0) => judge(parsed, &rec, &creds.merchant_id, &json),
        Some(status) => Verdict::unavailable(format!("TapPay status {status}")),
        None => Verdict::unavailable("the answer is not TapPay's"),
    };
    verdict.saying(&answer.body)
}

fn judge(parsed: &Parsed, rec: &str, merchant: &str, json: &Value) -> Verdict {
    let records: Vec<&Value> = json
        .get("trade_records")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter(|r| text(r, "rec_trade_id").as_deref() == Some(rec)).collect())
        .unwrap_or_default();
    let record = match records.as_slice() {
        [] => return Verdict::not_yet("no record with this rec_trade_id"),
        [one] => *one,
        _ => return Verdict::contradicted("more than one record with this rec_trade_id"),
    };
    if text(record, "merchant_id").as_deref() != Some(merchant) {
        return Verdict::contradicted("the record is another merchant's");
    }
    if let Some(differs) = disagreement(parsed, record, "order_number", "TapPay") {
        return differs;
    }
    let record_status = record.get("record_status").and_then(Value::as_i64);
    let claims_paid = parsed.field("status").as_deref().is_none_or(|s| s == "0");
    match (claims_paid, record_status) {
        (true, Some(-1)) => Verdict::contradicted("record_status -1 (failed)"),
        (true, Some(3)) => Verdict::contradicted("record_status 3 (refunded)"),
        (true, Some(s)) => Verdict::confirmed(format!("record_status {s}")),
        (true, None) => Verdict::contradicted("the record has no record_status"),
        (false, Some(-1)) => Verdict::confirmed("record_status -1 (failed, as the callback says)"),
        (false, s) => Verdict::contradicted(format!("a failure notice for a record TapPay holds as {s:?}")),
    }
}
