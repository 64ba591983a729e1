//! One file per payment provider, behind one small trait: how to parse its
//! callback, find the tenant, verify it, key it for dedup, answer it, and
//! what counts as the tenant having taken it. The notify endpoint and the
//! delivery worker are written once against [`Provider`].

pub mod funpoint;

use http::StatusCode;

use crate::config::{RoutingTable, Tenant};
use crate::form::FormFields;
use crate::routing::RouteError;

/// A callback body, parsed the way its provider sends it.
#[derive(Debug)]
pub enum Parsed {
    Form(FormFields),
    Json(serde_json::Value),
}

/// Why a routed callback is refused (stored as `rejected`, never delivered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// What the provider is told (in its own grammar) and the store keeps.
    pub message: &'static str,
}

pub trait Provider: Send + Sync + 'static {
    /// The path segment: `/{name}/notify`.
    fn name(&self) -> &'static str;

    /// Parses the raw body. `None`: unparseable (400, nothing stored).
    fn parse(&self, body: &[u8], content_type: Option<&str>) -> Option<Parsed>;

    /// Finds the tenant, by the payload's routing key or the path's tenant.
    fn route<'t>(
        &self,
        table: &'t RoutingTable,
        parsed: &Parsed,
        path_tenant: Option<&str>,
    ) -> Result<&'t Tenant, RouteError>;

    /// Checks what the provider signs, or what the tenant pins.
    fn verify(&self, tenant: &Tenant, parsed: &Parsed) -> Result<(), Rejection>;

    /// The business key a provider's resends share.
    fn dedup_key(&self, parsed: &Parsed) -> String;

    /// A back-office test with no money moved (Funpoint `SimulatePaid=1`).
    fn simulated(&self, _parsed: &Parsed) -> bool {
        false
    }

    /// The acknowledgement of a stored callback.
    fn ack(&self) -> (StatusCode, String);

    /// An error answer on a notify path, in the provider's grammar.
    fn error(&self, message: &str) -> String;

    /// The content type of the provider's answers.
    fn answer_content_type(&self) -> &'static str;

    /// The tenant's notify URL path, if the tenant takes this provider.
    fn notify_path<'t>(&self, tenant: &'t Tenant) -> Option<&'t str>;

    /// The Content-Type a delivery carries, given the one received.
    fn delivery_content_type(&self, received: Option<&str>) -> String;

    /// Did the tenant take the delivery?
    fn tenant_took_it(&self, status: StatusCode, body: &[u8]) -> bool {
        let _ = body;
        status.is_success()
    }
}

/// The message a routing failure answers with.
pub fn route_message(e: &RouteError) -> &'static str {
    match e {
        RouteError::MissingKey(_) => "Bad Request",
        RouteError::UnknownSuffix { .. } => "Unknown order suffix",
        RouteError::UnknownKey { .. } => "Unknown merchant",
        RouteError::UnknownTenant { .. } => "Unknown tenant",
        RouteError::TenantMismatch { .. } => "Tenant mismatch",
    }
}

static FUNPOINT: funpoint::Funpoint = funpoint::Funpoint;

/// The registry: every provider payrelay serves, by path segment.
pub fn by_name(name: &str) -> Option<&'static dyn Provider> {
    match name {
        "funpoint" => Some(&FUNPOINT),
        _ => None,
    }
}

pub fn all() -> [&'static dyn Provider; 1] {
    [&FUNPOINT]
}
