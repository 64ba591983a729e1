//! Sinopac 豐收款: unsigned notifications carrying `ShopNo` and `PayToken`,
//! sent as JSON or as a form (both are accepted whatever the Content-Type
//! says), routed by `ShopNo` (the tenant's `[tenants.sinopac] shop_no`) or
//! by the tenant in the path. The tenant then asks Sinopac's OrderPayQuery
//! with the PayToken.

use http::StatusCode;

use super::{Parsed, Provider, looks_like_json, parse_json_object};
use crate::config::Tenant;
use crate::form::FormFields;
use crate::routing;

pub struct Sinopac;

impl Provider for Sinopac {
    fn kind(&self) -> routing::Provider {
        routing::Provider::Sinopac
    }

    fn routing_key(&self) -> (&'static str, routing::KeyKind) {
        ("ShopNo", routing::KeyKind::Merchant)
    }

    fn serves(&self, tenant: &Tenant) -> bool {
        tenant.sinopac.is_some()
    }

    fn merchant_key<'t>(&self, tenant: &'t Tenant) -> Option<&'t str> {
        tenant.sinopac.as_ref()?.shop_no.as_deref()
    }

    fn find<'t>(&self, table: &'t crate::config::RoutingTable, key: &str) -> Option<&'t Tenant> {
        table.sinopac_by_shop(key)
    }

    /// A JSON object when the body starts with `{`, else a UTF-8 form that
    /// carries `ShopNo` or `PayToken`.
    fn parse(&self, body: &[u8], _content_type: Option<&str>) -> Option<Parsed> {
        if looks_like_json(body) {
            return parse_json_object(body);
        }
        let form = FormFields::parse(body).ok()?;
        (form.get("ShopNo").is_some() || form.get("PayToken").is_some()).then_some(Parsed::Form(form))
    }

    /// `ShopNo` and `PayToken`; no dedup without a `PayToken`.
    fn dedup_key(&self, parsed: &Parsed) -> Option<String> {
        parsed.dedup_over("PayToken", &["ShopNo", "PayToken"])
    }

    /// SinoPac notifies once a payment completes (an ATM transfer arrived, a
    /// card was captured); its query says whether it did.
    fn event(&self, _parsed: &Parsed) -> &'static str {
        "paid"
    }

    fn order_field(&self) -> Option<&'static str> {
        Some("PayToken")
    }

    fn ack(&self) -> (StatusCode, String) {
        (StatusCode::OK, r#"{"Status":"S"}"#.to_owned())
    }

    fn notify_path<'t>(&self, tenant: &'t Tenant) -> Option<&'t str> {
        tenant.sinopac.as_ref().map(|s| s.notify_path.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(body: &str) -> Parsed {
        Sinopac.parse(body.as_bytes(), None).unwrap()
    }

    #[test]
    fn json_and_form_give_the_same_key() {
        let json = parsed(r#"{"ShopNo":"NA0249_001","PayToken":"abc123"}"#);
        let form = parsed("ShopNo=NA0249_001&PayToken=abc123");
        assert_eq!(json.field("ShopNo").as_deref(), Some("NA0249_001"));
        assert_eq!(Sinopac.dedup_key(&json), Sinopac.dedup_key(&form));
        assert_ne!(Sinopac.dedup_key(&json), Sinopac.dedup_key(&parsed("ShopNo=NA0249_001&PayToken=abc124")));
        assert_eq!(Sinopac.dedup_key(&parsed("ShopNo=NA0249_001")), None);
    }

    #[test]
    fn a_form_needs_one_of_its_fields() {
        assert!(Sinopac.parse(b"hello", None).is_none());
        assert!(Sinopac.parse(b"{\"ShopNo\":", None).is_none());
        assert!(Sinopac.parse(b"PayToken=%FF", None).is_none());
    }
}
