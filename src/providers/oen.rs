//! Oen Tech (應援科技): unsigned JSON webhooks, routed by `merchantId`
//! (the tenant's `[tenants.oen] merchant_id`), or by the tenant in the path
//! for the opt-in events that carry no `merchantId`. Oen retries a failed
//! webhook only twice within about six seconds, so the stored copy is what
//! survives a tenant's outage.

use http::StatusCode;

use super::{Parsed, Provider, parse_json_object};
use crate::config::Tenant;
use crate::routing;

pub struct Oen;

impl Provider for Oen {
    fn kind(&self) -> routing::Provider {
        routing::Provider::Oen
    }

    fn routing_key(&self) -> (&'static str, routing::KeyKind) {
        ("merchantId", routing::KeyKind::Merchant)
    }

    fn serves(&self, tenant: &Tenant) -> bool {
        tenant.oen.is_some()
    }

    fn merchant_key<'t>(&self, tenant: &'t Tenant) -> Option<&'t str> {
        tenant.oen.as_ref()?.merchant_id.as_deref()
    }

    fn find<'t>(&self, table: &'t crate::config::RoutingTable, key: &str) -> Option<&'t Tenant> {
        table.oen_by_merchant(key)
    }

    /// A JSON object, whatever the Content-Type says.
    fn parse(&self, body: &[u8], _content_type: Option<&str>) -> Option<Parsed> {
        parse_json_object(body)
    }

    /// `purpose`, `id`, `status`, `success` and the routing key
    /// `merchantId`; no dedup without an `id`.
    fn dedup_key(&self, parsed: &Parsed) -> Option<String> {
        parsed.dedup_over("id", &["purpose", "id", "status", "success", "merchantId"])
    }

    fn conflict_fields(&self) -> &'static [&'static str] {
        &["amount", "currency", "orderId"]
    }

    fn event(&self, parsed: &Parsed) -> &'static str {
        match parsed.field("status").as_deref() {
            Some("charged" | "claimed") => "paid",
            Some("charging") if parsed.field("paymentInfo").is_some() => "code_issued",
            Some("failed" | "cancelled") => "failed",
            _ if parsed.field("success").as_deref() == Some("false") => "failed",
            _ => "other",
        }
    }

    fn order_field(&self) -> Option<&'static str> {
        Some("orderId")
    }

    fn ack(&self) -> (StatusCode, String) {
        (StatusCode::OK, r#"{"code":"S0000"}"#.to_owned())
    }

    fn notify_path<'t>(&self, tenant: &'t Tenant) -> Option<&'t str> {
        tenant.oen.as_ref().map(|o| o.notify_path.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(body: &str) -> Option<String> {
        Oen.dedup_key(&Oen.parse(body.as_bytes(), None).unwrap())
    }

    #[test]
    fn dedup_ignores_other_fields_and_tells_events_apart() {
        let paid =
            r#"{"purpose":"charge","id":"ch_1","status":"charged","success":true,"merchantId":"m","amount":100}"#;
        let resend = r#"{"merchantId":"m","success":true,"status":"charged","id":"ch_1","purpose":"charge","amount":100,"sentAt":"x"}"#;
        assert_eq!(key(paid), key(resend));
        let failed = r#"{"purpose":"charge","id":"ch_1","status":"failed","success":false,"merchantId":"m"}"#;
        assert_ne!(key(paid), key(failed));
        assert_eq!(key(r#"{"purpose":"token","merchantId":"m"}"#), None);
    }

    #[test]
    fn only_json_objects_parse() {
        assert!(Oen.parse(b"[1,2]", None).is_none());
        assert!(Oen.parse(b"id=1", None).is_none());
        assert!(Oen.parse(b"{\"id\":\"\xff\"}", None).is_none());
        assert!(Oen.parse(b" {} ", None).is_some());
    }
}
