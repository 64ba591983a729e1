//! Which tenant a callback belongs to. The answer is the same for the
//! `route` dry run, the notify endpoints and the browser returns, so it lives
//! in one place. Each provider adds its routing key here.

use crate::config::{RoutingTable, Tenant, suffix_of};

/// The providers payrelay knows, by their path segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Funpoint,
}

impl Provider {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "funpoint" => Some(Self::Funpoint),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Funpoint => "funpoint",
        }
    }

    pub const ALL: [Provider; 1] = [Provider::Funpoint];
}

/// A tenant found, and the key that found it (for logs and `route`).
#[derive(Debug)]
pub struct RouteMatch<'a> {
    pub tenant: &'a Tenant,
    pub matched_by: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    /// The payload lacks the routing key (and no tenant is named in the path).
    #[error("the callback has no {0}")]
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
        matches!(self, Self::UnknownSuffix { .. } | Self::UnknownKey { .. } | Self::UnknownTenant { .. })
    }
}

/// Routes a Funpoint callback by its `MerchantTradeNo` suffix, or by the
/// tenant named in the path (`/funpoint/notify/{tenant_id}`), in which case
/// an order number must end in that tenant's suffix when it has one.
pub fn funpoint<'a>(
    table: &'a RoutingTable,
    merchant_trade_no: Option<&str>,
    path_tenant: Option<&str>,
) -> Result<RouteMatch<'a>, RouteError> {
    const KEY: &str = "MerchantTradeNo";
    let provider = Provider::Funpoint.name();
    if let Some(id) = path_tenant {
        let tenant = table
            .tenant(id)
            .filter(|t| t.funpoint.is_some())
            .ok_or_else(|| RouteError::UnknownTenant { provider, tenant: id.to_owned() })?;
        if let (Some(suffix), Some(order)) = (&tenant.order_suffix, merchant_trade_no) {
            let len = table.funpoint.order_suffix_len;
            if suffix_of(order, len) != Some(suffix.as_str()) {
                return Err(RouteError::TenantMismatch { tenant: id.to_owned(), key: KEY, value: order.to_owned() });
            }
        }
        return Ok(RouteMatch { tenant, matched_by: format!("path tenant {id:?}") });
    }
    let order = merchant_trade_no.ok_or(RouteError::MissingKey(KEY))?;
    let len = table.funpoint.order_suffix_len;
    match table.funpoint_by_order(order) {
        Some(tenant) => Ok(RouteMatch {
            tenant,
            matched_by: format!("{KEY} suffix {:?}", suffix_of(order, len).unwrap_or_default()),
        }),
        None => Err(RouteError::UnknownSuffix { provider, suffix: suffix_of(order, len).unwrap_or(order).to_owned() }),
    }
}
