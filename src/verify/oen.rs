//! Oen's `GET /transactions/{id}` with the tenant's bearer token: `code`
//! S0000 and the transaction's `status` (`charged` or `claimed` is paid;
//! `initiated`, `charging` not yet). The token only sees its own domain's
//! transactions, so an answer is already the tenant's merchant's. Oen's
//! production API answers only allow-listed IPs: a 403 says so.

use serde_json::Value;

use super::{Verdict, claimed, disagreement, json_text as text, send};
use crate::config::{ProviderApi, Tenant};
use crate::providers::Parsed;

pub(super) async fn query(client: &reqwest::Client, api: &ProviderApi, tenant: &Tenant, parsed: &Parsed) -> Verdict {
    let Some(token) = tenant.oen.as_ref().and_then(|o| o.api_token.as_ref()) else {
        return Verdict::unavailable("the tenant has no Oen api_token");
    };
    let id = match claimed(parsed, "id") {
        Ok(id) => id,
        Err(v) => return v,
    };
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Verdict::contradicted("the callback's id is not a transaction id");
    }
    let url = format!("{}/transactions/{id}", api.base);
    let answer = match send(client.get(url).bearer_auth(token.expose()), api).await {
        Ok(a) => a,
        Err(v) => return v,
    };
    let json: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    let code = json.get("code").and_then(Value::as_str).unwrap_or_default();
    let verdict = match answer.status.as_u16() {
        200 if code == "S0000" => judge(parsed, &id, json.get("data").unwrap_or(&Value::Null)),
        400 if code == "V0001" => Verdict::not_yet("V0001: no such transaction (yet) for this token"),
        401 => Verdict::unavailable("HTTP 401: Oen refuses the api_token"),
        403 => Verdict::unavailable("HTTP 403: is this gateway's egress IP on the merchant's Oen allow-list?"),
        status => Verdict::unavailable(format!("HTTP {status}, code {code:?}")),
    };
    verdict.saying(&answer.body)
}

/// Does the transaction `data` agree with the callback?
fn judge(parsed: &Parsed, id: &str, data: &Value) -> Verdict {
    if text(data, "transactionId").as_deref() != Some(id) && text(data, "id").as_deref() != Some(id) {
        return Verdict::contradicted("the answer is about another transaction");
    }
    if let Some(differs) = disagreement(parsed, data, "orderId", "Oen") {
        return differs;
    }
    let status = text(data, "status").unwrap_or_default();
    let paid = matches!(status.as_str(), "charged" | "claimed");
    let claims_paid = parsed.field("success").as_deref() != Some("false")
        && parsed.field("status").is_none_or(|s| matches!(s.as_ref(), "charged" | "claimed"));
    match (claims_paid, status.as_str()) {
        (true, _) if paid => Verdict::confirmed(format!("status {status}")),
        (true, "initiated" | "charging" | "authorized") => Verdict::not_yet(format!("status {status}")),
        (true, _) => Verdict::contradicted(format!("status {status:?} at Oen")),
        (false, _) if paid => Verdict::contradicted(format!("a failure notice for a transaction Oen says is {status}")),
        (false, _) => Verdict::confirmed(format!("status {status} (not paid, as the callback says)")),
    }
}
