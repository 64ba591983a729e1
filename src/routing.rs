//! Which tenant a callback belongs to. The answer is the same for the
//! `route` dry run, the notify endpoints and the browser returns, so the
//! rule lives in one place; the facts it uses (each provider's routing key,
//! how it matches, the tenant's section) are the provider's own, in
//! `src/providers/`.

use std::fmt;

use crate::config::{RoutingTable, Tenant, suffix_of};
use crate::providers::Provider as ProviderImpl;

/// A client-chosen value as it goes into an error (logged, stored as the
/// row's reason): at most 64 characters.
fn cut(value: &str) -> String {
    crate::telemetry::cut(value, 64).into_owned()
}

/// The providers payrelay knows, by their path segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Funpoint,
    Oen,
    Sinopac,
    TapPay,
}

/// How a provider's payload key finds its tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// The last `order_suffix_len` characters of an order number are a
    /// tenant's `order_suffix`.
    OrderSuffix,
    /// The key equals the tenant's configured merchant id / shop number.
    Merchant,
}

impl Provider {
    pub const ALL: [Provider; 4] = [Provider::Funpoint, Provider::Oen, Provider::Sinopac, Provider::TapPay];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Funpoint => "funpoint",
            Self::Oen => "oen",
            Self::Sinopac => "sinopac",
            Self::TapPay => "tappay",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A tenant found, and the key that found it (for logs and `route`).
#[derive(Debug)]
pub struct RouteMatch<'a, 'k> {
    pub tenant: &'a Tenant,
    pub matched_by: MatchedBy<'k>,
}

/// What found the tenant, written out only when shown: every callback is
/// routed, and the text was built for each (~900 instructions, issue 14)
/// though only `payrelay route` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchedBy<'k> {
    /// The tenant named in the path.
    PathTenant(&'k str),
    /// The order number's suffix.
    Suffix { key: &'static str, suffix: &'k str },
    /// The merchant key's value.
    Key { key: &'static str, value: &'k str },
}

impl fmt::Display for MatchedBy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PathTenant(id) => write!(f, "path tenant {id:?}"),
            Self::Suffix { key, suffix } => write!(f, "{key} suffix {suffix:?}"),
            Self::Key { key, value } => write!(f, "{key} {value:?}"),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    /// The payload lacks the routing key (and no tenant is named in the path).
    #[error("the callback has no {0} (a provider that leaves it out needs the /{{provider}}/notify/{{tenant_id}} URL)")]
    MissingKey(&'static str),
    /// No tenant with that provider's section claims the payload's key.
    #[error("no {provider} tenant has order suffix {suffix:?}")]
    UnknownSuffix { provider: &'static str, suffix: String },
    /// No tenant with that provider's section has the payload's merchant key.
    #[error("no {provider} tenant has {key} {value:?}")]
    UnknownKey { provider: &'static str, key: &'static str, value: String },
    /// The path names a tenant that does not exist or lacks the provider's section.
    #[error("no tenant {tenant:?} takes {provider} callbacks")]
    UnknownTenant { provider: &'static str, tenant: String },
    /// The path's tenant and the payload's key disagree.
    #[error("tenant {tenant:?} does not take {key} {value:?}")]
    TenantMismatch { tenant: String, key: &'static str, value: String },
}

impl RouteError {
    /// Unroutable callbacks are kept as `unroutable`; a mismatch is `rejected`.
    pub fn is_unroutable(&self) -> bool {
        !matches!(self, Self::TenantMismatch { .. })
    }
}

/// Routes a callback of `provider` by its payload key, or by the tenant
/// named in the path (`/{provider}/notify/{tenant_id}`). With a path tenant,
/// a payload key present must agree with it: an order number must end in the
/// tenant's suffix when it has one; a merchant key must equal the tenant's
/// configured one when it has one. Only tenants with the provider's section
/// are considered.
pub fn route<'a, 'k, P: ProviderImpl + ?Sized>(
    table: &'a RoutingTable,
    provider: &P,
    key: Option<&'k str>,
    path_tenant: Option<&'k str>,
) -> Result<RouteMatch<'a, 'k>, RouteError> {
    let (key_name, kind) = provider.routing_key();
    let name = provider.name();
    let len = provider.suffix_len(table);
    if let Some(id) = path_tenant {
        let tenant = table
            .tenant(id)
            .filter(|t| provider.serves(t))
            .ok_or_else(|| RouteError::UnknownTenant { provider: name, tenant: cut(id) })?;
        let agrees = match (kind, key) {
            (_, None) => true,
            (KeyKind::OrderSuffix, Some(order)) => {
                tenant.order_suffix.as_deref().is_none_or(|suffix| suffix_of(order, len) == Some(suffix))
            }
            (KeyKind::Merchant, Some(value)) => provider.merchant_key(tenant).is_none_or(|expected| expected == value),
        };
        if !agrees {
            return Err(RouteError::TenantMismatch {
                tenant: id.to_owned(),
                key: key_name,
                value: cut(key.unwrap_or_default()),
            });
        }
        return Ok(RouteMatch { tenant, matched_by: MatchedBy::PathTenant(id) });
    }
    let value = key.ok_or(RouteError::MissingKey(key_name))?;
    match (provider.find(table, value), kind) {
        (Some(tenant), KeyKind::OrderSuffix) => Ok(RouteMatch {
            tenant,
            matched_by: MatchedBy::Suffix { key: key_name, suffix: suffix_of(value, len).unwrap_or_default() },
        }),
        (Some(tenant), KeyKind::Merchant) => {
            Ok(RouteMatch { tenant, matched_by: MatchedBy::Key { key: key_name, value } })
        }
        (None, KeyKind::OrderSuffix) => {
            Err(RouteError::UnknownSuffix { provider: name, suffix: cut(suffix_of(value, len).unwrap_or(value)) })
        }
        (None, KeyKind::Merchant) => Err(RouteError::UnknownKey { provider: name, key: key_name, value: cut(value) }),
    }
}

/// Routes a Funpoint callback by its `MerchantTradeNo` (see [`route`]).
pub fn funpoint<'a, 'k>(
    table: &'a RoutingTable,
    merchant_trade_no: Option<&'k str>,
    path_tenant: Option<&'k str>,
) -> Result<RouteMatch<'a, 'k>, RouteError> {
    route(table, crate::providers::of(Provider::Funpoint), merchant_trade_no, path_tenant)
}
