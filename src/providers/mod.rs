//! One file per payment provider, behind one small trait: how to parse its
//! callback, find the tenant, verify it, key it for dedup, answer it, and
//! what counts as the tenant having taken it. The notify endpoint and the
//! delivery worker are written once against [`Provider`].

mod dedup;
pub mod funpoint;
pub mod oen;
pub mod sinopac;
pub mod tappay;

use std::borrow::Cow;

use http::StatusCode;
use sha2::{Digest, Sha256};

use crate::config::{NotifyLimits, RoutingTable, Tenant};
use crate::form::FormFields;
use crate::routing::{self, KeyKind, RouteError};

pub use dedup::{led_by_order, tenant_dedup_key};

/// A callback body, parsed the way its provider sends it.
#[derive(Debug)]
pub enum Parsed {
    Form(FormFields),
    /// Always a JSON object.
    Json(serde_json::Value),
}

impl Parsed {
    /// A top-level field as text: a form value, a JSON string's contents, or
    /// the JSON text of a number or boolean. JSON `null`, arrays, objects
    /// and absent fields are `None`.
    pub fn field(&self, name: &str) -> Option<Cow<'_, str>> {
        match self {
            Self::Form(f) => f.get(name).map(Cow::Borrowed),
            Self::Json(v) => match v.get(name)? {
                serde_json::Value::String(s) => Some(Cow::Borrowed(s.as_str())),
                serde_json::Value::Number(n) => Some(Cow::Owned(n.to_string())),
                serde_json::Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
                _ => None,
            },
        }
    }

    /// A dedup key over `fields` (name and value of those present), or
    /// `None` when `identity` is absent: a callback that carries nothing to
    /// tell it apart from others is never taken for a resend.
    pub fn dedup_over(&self, identity: &str, fields: &[&str]) -> Option<String> {
        self.field(identity)?;
        let present: Vec<(&str, Cow<'_, str>)> = fields.iter().filter_map(|&n| self.field(n).map(|v| (n, v))).collect();
        Some(crate::domain::hex::lower(&Sha256::digest(
            crate::form::encode(present.iter().map(|(k, v)| (*k, v.as_ref()))).as_bytes(),
        )))
    }
}

/// A JSON object, or `None` (not UTF-8, not JSON, or not an object).
pub fn parse_json_object(body: &[u8]) -> Option<Parsed> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v @ serde_json::Value::Object(_)) => Some(Parsed::Json(v)),
        _ => None,
    }
}

/// Does the body look like JSON (its first non-blank byte is `{`)?
pub fn looks_like_json(body: &[u8]) -> bool {
    body.trim_ascii_start().first() == Some(&b'{')
}

/// Why a routed callback is refused (stored as `rejected`, never delivered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// What the provider is told (in its own grammar) and the store keeps.
    pub message: &'static str,
}

pub trait Provider: Send + Sync + 'static {
    /// Which provider this is (its path segment and routing key).
    fn kind(&self) -> routing::Provider;

    /// The path segment: `/{name}/notify`.
    fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// The payload field that routes, and how it matches a tenant.
    fn routing_key(&self) -> (&'static str, KeyKind);

    /// Does the tenant take this provider's callbacks (has its section)?
    fn serves(&self, tenant: &Tenant) -> bool;

    /// A key-routed provider's merchant key of `tenant`, when configured.
    fn merchant_key<'t>(&self, _tenant: &'t Tenant) -> Option<&'t str> {
        None
    }

    /// The tenant whose key (order suffix or merchant key) `key` is.
    fn find<'t>(&self, table: &'t RoutingTable, key: &str) -> Option<&'t Tenant>;

    /// How many trailing characters of an order number are the suffix.
    fn suffix_len(&self, table: &RoutingTable) -> usize {
        table.funpoint.order_suffix_len
    }

    /// Parses the raw body. `None`: unparseable (400, nothing stored).
    fn parse(&self, body: &[u8], content_type: Option<&str>) -> Option<Parsed>;

    /// Finds the tenant, by the payload's routing key or the path's tenant.
    fn route<'t>(
        &self,
        table: &'t RoutingTable,
        parsed: &Parsed,
        path_tenant: Option<&str>,
    ) -> Result<&'t Tenant, RouteError> {
        let (key, _) = self.routing_key();
        routing::route(table, self, parsed.field(key).as_deref(), path_tenant).map(|m| m.tenant)
    }

    /// Checks what the provider signs, or what the tenant pins. Providers
    /// that sign nothing accept everything routed.
    fn verify(&self, _tenant: &Tenant, _parsed: &Parsed) -> Result<(), Rejection> {
        Ok(())
    }

    /// The business key a provider's resends share (`None`: no dedup).
    /// Scoped to the tenant by [`tenant_dedup_key`].
    fn dedup_key(&self, parsed: &Parsed) -> Option<String>;

    /// Fields outside the dedup key in which a resend never differs from
    /// its original (amounts, order ids): a "duplicate" that differs in one
    /// is kept for the operator instead of being taken for a resend.
    fn conflict_fields(&self) -> &'static [&'static str] {
        &[]
    }

    /// A back-office test with no money moved (Funpoint `SimulatePaid=1`).
    fn simulated(&self, _parsed: &Parsed) -> bool {
        false
    }

    /// The acknowledgement of a stored callback.
    fn ack(&self) -> (StatusCode, String);

    /// What the callback means to the shop (`X-Payrelay-Event`, SPEC §9):
    /// `paid`, `code_issued`, `period_paid`, `failed` or `other`.
    fn event(&self, _parsed: &Parsed) -> &'static str {
        "other"
    }

    /// The field that names the shop's order (the admin search finds
    /// callbacks by it; Funpoint's is the order ledger's key).
    fn order_field(&self) -> Option<&'static str> {
        None
    }

    /// Does [`dedup_key`](Self::dedup_key) cover the
    /// [`order_field`](Self::order_field)'s value (in any case, if the key
    /// folds case)? Then the stored key leads with it ([`tenant_dedup_key`]).
    fn dedup_covers_order(&self) -> bool {
        false
    }

    /// An error answer on a notify path, in the provider's grammar
    /// (`{"error": "<message>"}` unless the provider says otherwise).
    fn error(&self, message: &str) -> String {
        serde_json::json!({ "error": message }).to_string()
    }

    /// The content type of the provider's answers.
    fn answer_content_type(&self) -> &'static str {
        "application/json"
    }

    /// The tenant's notify URL path, if the tenant takes this provider.
    fn notify_path<'t>(&self, tenant: &'t Tenant) -> Option<&'t str>;

    /// The Content-Type a delivery carries: the one received, or, when the
    /// provider sent none, what the body is.
    fn delivery_content_type(&self, received: Option<&str>, body: &[u8]) -> String {
        match received {
            Some(ct) => ct.to_owned(),
            None if looks_like_json(body) => "application/json".to_owned(),
            None => "application/x-www-form-urlencoded".to_owned(),
        }
    }

    /// Did the tenant take the delivery? Any 2xx, unless the provider says
    /// otherwise.
    fn tenant_took_it(&self, status: StatusCode, body: &[u8]) -> bool {
        let _ = body;
        status.is_success()
    }
}

/// The first of the provider's conflict fields that `new` and `original`
/// (callbacks sharing one dedup key) both carry, with different values. A
/// field one of them leaves out is no conflict: resends differ in shape.
pub fn conflict(provider: &dyn Provider, new: &Parsed, original: &Parsed) -> Option<&'static str> {
    provider.conflict_fields().iter().copied().find(|&f| match (new.field(f), original.field(f)) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    })
}

/// The largest notify body `provider` takes (`[providers.<name>] max_body_bytes`).
pub fn body_limit(provider: &dyn Provider, limits: &NotifyLimits) -> usize {
    match provider.kind() {
        routing::Provider::Funpoint => limits.funpoint,
        routing::Provider::Oen => limits.oen,
        routing::Provider::Sinopac => limits.sinopac,
        routing::Provider::TapPay => limits.tappay,
    }
}

/// The message a routing failure answers with.
pub fn route_message(e: &RouteError) -> String {
    match e {
        RouteError::MissingKey(key) => format!("Missing {key}"),
        RouteError::UnknownSuffix { .. } => "Unknown order suffix".to_owned(),
        RouteError::UnknownKey { key, .. } => format!("Unknown {key}"),
        RouteError::UnknownTenant { .. } => "Unknown tenant".to_owned(),
        RouteError::TenantMismatch { .. } => "Tenant mismatch".to_owned(),
    }
}

static FUNPOINT: funpoint::Funpoint = funpoint::Funpoint;
static OEN: oen::Oen = oen::Oen;
static SINOPAC: sinopac::Sinopac = sinopac::Sinopac;
static TAPPAY: tappay::TapPay = tappay::TapPay;

/// The registry: every provider payrelay serves, by path segment.
pub fn by_name(name: &str) -> Option<&'static dyn Provider> {
    routing::Provider::parse(name).map(of)
}

/// The implementation of a provider.
pub fn of(kind: routing::Provider) -> &'static dyn Provider {
    match kind {
        routing::Provider::Funpoint => &FUNPOINT,
        routing::Provider::Oen => &OEN,
        routing::Provider::Sinopac => &SINOPAC,
        routing::Provider::TapPay => &TAPPAY,
    }
}

pub fn all() -> impl Iterator<Item = &'static dyn Provider> {
    routing::Provider::ALL.into_iter().map(of)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn table() -> RoutingTable {
        let text = r#"
[[tenants]]
id = "a"
base_url = "https://a.example"
order_suffix = "01"
[tenants.funpoint]
merchant_id = "1000031"
hash_key = "265flDjIvesceXWM"
hash_iv = "pOOvhGd1V2pJbjfX"
[tenants.oen]
merchant_id = "a-shop"
[tenants.sinopac]
shop_no = "NA0249_001"
[tenants.tappay]
"#;
        match crate::config::parse(text, &|_| None) {
            Ok(c) => c.table,
            Err(e) => panic!("{e}"),
        }
    }

    /// Everything the notify endpoint asks of a provider, on one body.
    fn exercise(table: &RoutingTable, provider: &dyn Provider, body: &[u8], path_tenant: Option<&str>) {
        let _ = provider.delivery_content_type(None, body);
        let Some(parsed) = provider.parse(body, Some("application/json")) else { return };
        let _ = provider.dedup_key(&parsed);
        let _ = provider.simulated(&parsed);
        if let Ok(tenant) = provider.route(table, &parsed, path_tenant) {
            let _ = provider.verify(tenant, &parsed);
            let _ = provider.notify_path(tenant);
        }
    }

    /// Field names the providers read, and some they do not.
    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("MerchantTradeNo".to_owned()),
            Just("CheckMacValue".to_owned()),
            Just("MerchantID".to_owned()),
            Just("SimulatePaid".to_owned()),
            Just("merchantId".to_owned()),
            Just("id".to_owned()),
            Just("ShopNo".to_owned()),
            Just("PayToken".to_owned()),
            Just("order_number".to_owned()),
            Just("rec_trade_id".to_owned()),
            Just("status".to_owned()),
            any::<String>(),
        ]
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            any::<f64>().prop_map(|n| serde_json::json!(n)),
            any::<String>().prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::vec((name(), inner), 0..4)
                    .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn no_parser_panics_on_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..512), path in proptest::option::of("[a-z]{1,3}")) {
            let table = table();
            for provider in all() {
                exercise(&table, provider, &body, path.as_deref());
            }
        }

        #[test]
        fn no_provider_panics_on_arbitrary_field_values(fields in prop::collection::vec((name(), any::<String>()), 0..8)) {
            let table = table();
            let form = crate::form::encode(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let json = serde_json::Value::Object(
                fields.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect(),
            )
            .to_string();
            for provider in all() {
                for body in [form.as_bytes(), json.as_bytes()] {
                    exercise(&table, provider, body, None);
                    exercise(&table, provider, body, Some("a"));
                }
            }
        }

        #[test]
        fn no_provider_panics_on_arbitrary_json(value in json_value()) {
            let table = table();
            let body = value.to_string();
            for provider in all() {
                exercise(&table, provider, body.as_bytes(), None);
                exercise(&table, provider, body.as_bytes(), Some("a"));
            }
        }

        /// A form or JSON body that routes: the key found is the one sent.
        #[test]
        fn the_field_read_is_the_field_sent(value in "[^\u{0}]{0,40}") {
            let form = crate::form::encode([("ShopNo", value.as_str())]);
            let json = serde_json::json!({ "ShopNo": value }).to_string();
            let sinopac = of(routing::Provider::Sinopac);
            for body in [form.as_bytes(), json.as_bytes()] {
                let parsed = sinopac.parse(body, None);
                prop_assert!(parsed.is_some());
                prop_assert_eq!(parsed.and_then(|p| p.field("ShopNo").map(|v| v.into_owned())), Some(value.clone()));
            }
        }
    }
}
