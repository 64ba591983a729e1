//! The validated, typed configuration: what `serve` runs on and what a
//! SIGHUP swaps whole. Built from the raw mirror by `TryFrom` (validate.rs), which reports
//! every problem of the file at once, naming the tenant and field.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;

pub use super::urls::{BaseUrl, StorageUrl};
pub use super::verify::{QueryPolicy, SinopacKeys, TapPayCredentials};
use crate::domain::{ForwardSecret, HashAlgorithm, HashKeys, Origin, Secret, TenantId};

/// The shortest admin token accepted: a guessable one would open the
/// raw callback bodies to anyone who can reach the port.
pub const MIN_ADMIN_TOKEN: usize = 32;

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub delivery: DeliveryConfig,
    pub admin: AdminConfig,
    pub table: RoutingTable,
    /// Largest notify body per provider (`[providers.<name>] max_body_bytes`).
    pub notify_limits: NotifyLimits,
    /// Each provider's query API (SPEC §8).
    pub apis: super::verify::Apis,
    /// The order ledger's reconciler (SPEC §9).
    pub reconcile: super::verify::ReconcileConfig,
}

#[derive(Debug, Clone, Copy)]
pub struct NotifyLimits {
    pub funpoint: usize,
    pub oen: usize,
    pub sinopac: usize,
    pub tappay: usize,
}

impl Config {
    /// One line per tenant that does not verify what it receives: `check`
    /// prints them, `serve` logs them at start and on reload (SPEC §7).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in self.table.tenants() {
            let unverified = [
                ("oen", t.oen.as_ref().map(|o| o.verify)),
                ("sinopac", t.sinopac.as_ref().map(|s| s.verify)),
                ("tappay", t.tappay.as_ref().map(|s| s.verify)),
            ];
            for (name, _) in unverified.iter().filter(|(_, v)| *v == Some(QueryPolicy::None)) {
                out.push(format!(
                    "tenant {:?}: [tenants.{name}] does not query the provider: its unsigned notifications are delivered unverified (X-Payrelay-Verified: none; set its credentials)",
                    t.id.as_str()
                ));
            }
            let Some(f) = &t.funpoint else { continue };
            match (f.verify, f.keys.is_some()) {
                (FunpointVerify::Mac, false) => out.push(format!(
                    "tenant {:?}: [tenants.funpoint] has no hash_key/hash_iv, so it refuses every Funpoint notification (set the keys, or verify = \"none\" to accept them unverified)",
                    t.id.as_str()
                )),
                (FunpointVerify::None, _) => out.push(format!(
                    "tenant {:?}: [tenants.funpoint] verify = \"none\": Funpoint notifications are delivered unverified",
                    t.id.as_str()
                )),
                (FunpointVerify::Mac, true) => {}
            }
        }
        out
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub legacy_paths: bool,
    pub trusted_proxies: Vec<IpNet>,
    /// Connections served at once; more are closed as soon as accepted.
    pub max_connections: usize,
    /// The only proxy outbound calls use (environment proxies never are).
    pub outbound_proxy: Option<Secret>,
    /// Refused callbacks (unroutable, rejected) kept per source address per
    /// minute; beyond it they are answered 429 and not stored.
    pub refused_per_minute: u32,
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub url: StorageUrl,
    pub retention: Duration,
    pub keep_rejected: u64,
    pub keep_rejected_bytes: u64,
    pub keep_unroutable: u64,
    pub keep_unroutable_bytes: u64,
    /// Unroutable rows younger than this are never purged by the caps.
    pub unroutable_min_age: Duration,
    /// Dead rows finished longer ago than this are purged.
    pub dead_retention: Duration,
    pub lease: Duration,
    /// PostgreSQL only: connections per instance, and how long to wait for
    /// one (also the bound on reaching the server at all).
    pub pool_size: u32,
    pub connect_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub timeout: Duration,
    pub retry: Vec<Duration>,
    pub dedup_window: Duration,
    pub inline_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// `None`: the console and admin API answer 404.
    pub token: Option<Secret>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// Answer the provider once the callback is committed.
    Stored,
    /// Hold the answer until the first delivery attempt ends (SPEC §3.3 step 5).
    Delivered,
}

#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: TenantId,
    pub base_url: BaseUrl,
    pub domain_codes: Vec<String>,
    pub order_suffix: Option<String>,
    pub origins: Vec<Origin>,
    pub ack: AckMode,
    pub forward_secret: Option<ForwardSecret>,
    pub drop_simulated: bool,
    pub funpoint: Option<FunpointTenant>,
    pub oen: Option<OenTenant>,
    pub sinopac: Option<SinopacTenant>,
    pub tappay: Option<TapPayTenant>,
}

/// How a tenant's Funpoint notifications are checked (SPEC §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunpointVerify {
    /// CheckMacValue with the tenant's keys; without keys, refuse.
    Mac,
    /// Accept unverified (said explicitly, warned about).
    None,
}

#[derive(Debug, Clone)]
pub struct FunpointTenant {
    pub merchant_id: Option<String>,
    pub keys: Option<HashKeys>,
    pub verify: FunpointVerify,
    /// `verify = "query"`: after the CheckMacValue, QueryTradeInfo (SPEC §8).
    pub query: QueryPolicy,
    /// The one CheckMacValue algorithm this tenant's merchant uses.
    pub encrypt_type: HashAlgorithm,
    pub api_path: String,
    pub notify_path: String,
    pub result_path: String,
}

#[derive(Debug, Clone)]
pub struct OenTenant {
    pub merchant_id: Option<String>,
    pub notify_path: String,
    pub api_token: Option<Secret>,
    pub verify: QueryPolicy,
}

#[derive(Debug, Clone)]
pub struct SinopacTenant {
    pub shop_no: Option<String>,
    pub notify_path: String,
    pub return_path: String,
    pub keys: Option<SinopacKeys>,
    pub verify: QueryPolicy,
}

#[derive(Debug, Clone)]
pub struct TapPayTenant {
    pub notify_path: String,
    pub return_path: String,
    pub credentials: Option<TapPayCredentials>,
    pub verify: QueryPolicy,
}

#[derive(Debug, Clone)]
pub struct FunpointSettings {
    pub payment_origins: Vec<Origin>,
    pub order_suffix_len: usize,
}

/// The tenants and the indexes callbacks and checkouts are routed by.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    pub funpoint: FunpointSettings,
    pub tappay_suffix_len: usize,
    pub(super) tenants: Vec<Tenant>,
    pub(super) by_id: Index<TenantId>,
    pub(super) by_domain: Index<String>,
    pub(super) funpoint_by_suffix: Index<String>,
    pub(super) tappay_by_suffix: Index<String>,
    pub(super) oen_by_merchant: Index<String>,
    pub(super) sinopac_by_shop: Index<String>,
    /// Every tenant's origins (CORS on checkout.json): looked up, not
    /// searched tenant by tenant.
    pub(super) by_origin: Index<String>,
}

/// A tenant's position by one of its keys. Hashed with foldhash (seeded at
/// start), not SipHash: the keys are the config's, so a request cannot
/// crowd one bucket, and hashing them was the most of indexing a
/// 10,000-tenant table (issue 14's start-up).
pub(super) type Index<K> = HashMap<K, usize, foldhash::fast::RandomState>;

/// The last `n` characters of `s`, or `None` when it is shorter.
pub fn suffix_of(s: &str, n: usize) -> Option<&str> {
    let start = s.char_indices().rev().nth(n.checked_sub(1)?)?.0;
    Some(&s[start..])
}

impl RoutingTable {
    pub fn tenants(&self) -> &[Tenant] {
        &self.tenants
    }

    pub fn tenant(&self, id: &str) -> Option<&Tenant> {
        let id = TenantId::parse(id).ok()?;
        self.by_id.get(&id).map(|&i| &self.tenants[i])
    }

    pub fn by_domain_code(&self, code: &str) -> Option<&Tenant> {
        self.by_domain.get(code).map(|&i| &self.tenants[i])
    }

    /// The Funpoint tenant whose order suffix ends `order_no`.
    pub fn funpoint_by_order(&self, order_no: &str) -> Option<&Tenant> {
        let suffix = suffix_of(order_no, self.funpoint.order_suffix_len)?;
        self.funpoint_by_suffix.get(suffix).map(|&i| &self.tenants[i])
    }

    pub fn tappay_by_order(&self, order_no: &str) -> Option<&Tenant> {
        let suffix = suffix_of(order_no, self.tappay_suffix_len)?;
        self.tappay_by_suffix.get(suffix).map(|&i| &self.tenants[i])
    }

    pub fn oen_by_merchant(&self, merchant_id: &str) -> Option<&Tenant> {
        self.oen_by_merchant.get(merchant_id).map(|&i| &self.tenants[i])
    }

    pub fn sinopac_by_shop(&self, shop_no: &str) -> Option<&Tenant> {
        self.sinopac_by_shop.get(shop_no).map(|&i| &self.tenants[i])
    }

    /// Is `origin` one of any tenant's origins? (CORS on checkout.json.)
    pub fn is_any_tenant_origin(&self, origin: &str) -> bool {
        self.by_origin.contains_key(origin)
    }
}

#[cfg(test)]
mod tests {
    use super::suffix_of;

    #[test]
    fn suffix_counts_characters() {
        assert_eq!(suffix_of("FP24112215304502", 2), Some("02"));
        assert_eq!(suffix_of("訂單01", 2), Some("01"));
        assert_eq!(suffix_of("單號", 1), Some("號"));
        assert_eq!(suffix_of("1", 2), None);
        assert_eq!(suffix_of("12", 2), Some("12"));
        assert_eq!(suffix_of("abc", 0), None);
    }
}
