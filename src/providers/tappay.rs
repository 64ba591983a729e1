//! TapPay: unsigned JSON notifications (the backend notify URL), routed by
//! the `order_number` suffix like Funpoint's order numbers, or by the tenant
//! in the path.

use http::StatusCode;

use super::{Parsed, Provider, parse_json_object};
use crate::config::Tenant;
use crate::routing;

pub struct TapPay;

impl Provider for TapPay {
    fn kind(&self) -> routing::Provider {
        routing::Provider::TapPay
    }

    fn routing_key(&self) -> (&'static str, routing::KeyKind) {
        ("order_number", routing::KeyKind::OrderSuffix)
    }

    fn serves(&self, tenant: &Tenant) -> bool {
        tenant.tappay.is_some()
    }

    fn find<'t>(&self, table: &'t crate::config::RoutingTable, key: &str) -> Option<&'t Tenant> {
        table.tappay_by_order(key)
    }

    fn suffix_len(&self, table: &crate::config::RoutingTable) -> usize {
        table.tappay_suffix_len
    }

    /// A JSON object, whatever the Content-Type says.
    fn parse(&self, body: &[u8], _content_type: Option<&str>) -> Option<Parsed> {
        parse_json_object(body)
    }

    /// `rec_trade_id`, `status` and the routing key `order_number`; no
    /// dedup without a `rec_trade_id`.
    fn dedup_key(&self, parsed: &Parsed) -> Option<String> {
        parsed.dedup_over("rec_trade_id", &["rec_trade_id", "status", "order_number"])
    }

    fn conflict_fields(&self) -> &'static [&'static str] {
        &["amount", "currency"]
    }

    fn event(&self, parsed: &Parsed) -> &'static str {
        match parsed.field("status").as_deref() {
            Some("0") => "paid",
            Some(_) => "failed",
            None => "other",
        }
    }

    fn order_field(&self) -> Option<&'static str> {
        Some("order_number")
    }

    /// The key covers `order_number`.
    fn dedup_covers_order(&self) -> bool {
        true
    }

    fn ack(&self) -> (StatusCode, String) {
        (StatusCode::OK, r#"{"status":0}"#.to_owned())
    }

    fn notify_path<'t>(&self, tenant: &'t Tenant) -> Option<&'t str> {
        tenant.tappay.as_ref().map(|t| t.notify_path.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(body: &str) -> Option<String> {
        TapPay.dedup_key(&TapPay.parse(body.as_bytes(), None).unwrap())
    }

    #[test]
    fn dedup_on_trade_and_status() {
        let paid = r#"{"rec_trade_id":"D1","order_number":"A01","status":0,"msg":"Success","amount":100}"#;
        let resend = r#"{"rec_trade_id":"D1","order_number":"A01","status":0,"msg":"OK","amount":100}"#;
        assert_eq!(key(paid), key(resend));
        assert_ne!(key(paid), key(r#"{"rec_trade_id":"D1","order_number":"A01","status":-1}"#));
        assert_ne!(key(paid), key(r#"{"rec_trade_id":"D2","order_number":"A01","status":0}"#));
        assert_eq!(key(r#"{"order_number":"A01","status":0}"#), None);
    }
}
