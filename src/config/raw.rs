//! A serde mirror of routes.toml, field for field, with the defaults of
//! SPEC §2. Nothing here is validated; `super::table` does that. Unknown
//! keys are collected by `serde_ignored` in `super::load` so that every
//! typo in the file is reported at once.

use serde::Deserialize;

fn yes() -> bool {
    true
}

fn s(v: &str) -> String {
    v.to_owned()
}

#[derive(Debug, Deserialize, Default)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub storage: RawStorage,
    #[serde(default)]
    pub delivery: RawDelivery,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub providers: RawProviders,
    #[serde(default)]
    pub tenants: Vec<RawTenant>,
    #[serde(default)]
    pub reconcile: RawReconcile,
}

/// `[reconcile]` (SPEC §9).
#[derive(Debug, Deserialize)]
pub struct RawReconcile {
    #[serde(default = "RawReconcile::default_after")]
    pub after: String,
    #[serde(default = "RawReconcile::default_give_up")]
    pub give_up: String,
    #[serde(default = "RawReconcile::default_retry")]
    pub retry: Vec<String>,
    #[serde(default = "RawApi::default_rate")]
    pub per_merchant_per_second: u64,
}

impl RawReconcile {
    fn default_after() -> String {
        s("15m")
    }
    fn default_give_up() -> String {
        s("3d")
    }
    fn default_retry() -> Vec<String> {
        ["15m", "1h", "6h", "24h"].map(s).to_vec()
    }
}

impl Default for RawReconcile {
    fn default() -> Self {
        Self {
            after: Self::default_after(),
            give_up: Self::default_give_up(),
            retry: Self::default_retry(),
            per_merchant_per_second: RawApi::default_rate(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct RawServer {
    #[serde(default = "RawServer::default_listen")]
    pub listen: String,
    #[serde(default = "RawServer::default_max_body")]
    pub max_body_bytes: u64,
    #[serde(default = "RawServer::default_request_timeout")]
    pub request_timeout: String,
    #[serde(default = "yes")]
    pub legacy_paths: bool,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(default = "RawServer::default_max_connections")]
    pub max_connections: u64,
    pub outbound_proxy: Option<String>,
    #[serde(default = "RawServer::default_refused_per_minute")]
    pub refused_per_minute: u64,
}

impl RawServer {
    fn default_listen() -> String {
        s("127.0.0.1:8080")
    }
    fn default_max_body() -> u64 {
        65536
    }
    fn default_request_timeout() -> String {
        s("15s")
    }
    fn default_max_connections() -> u64 {
        1024
    }
    fn default_refused_per_minute() -> u64 {
        60
    }
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: Self::default_listen(),
            max_body_bytes: Self::default_max_body(),
            request_timeout: Self::default_request_timeout(),
            legacy_paths: true,
            trusted_proxies: Vec::new(),
            max_connections: Self::default_max_connections(),
            outbound_proxy: None,
            refused_per_minute: Self::default_refused_per_minute(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct RawStorage {
    #[serde(default = "RawStorage::default_url")]
    pub url: String,
    #[serde(default = "RawStorage::default_retention")]
    pub retention: String,
    #[serde(default = "RawStorage::default_keep_rejected")]
    pub keep_rejected: u64,
    #[serde(default = "RawStorage::default_keep_rejected_bytes")]
    pub keep_rejected_bytes: u64,
    #[serde(default = "RawStorage::default_keep_rejected")]
    pub keep_unroutable: u64,
    #[serde(default = "RawStorage::default_keep_unroutable_bytes")]
    pub keep_unroutable_bytes: u64,
    #[serde(default = "RawStorage::default_unroutable_min_age")]
    pub unroutable_min_age: String,
    #[serde(default = "RawStorage::default_dead_retention")]
    pub dead_retention: String,
    #[serde(default = "RawStorage::default_lease")]
    pub lease: String,
    #[serde(default = "RawStorage::default_pool_size")]
    pub pool_size: u32,
    #[serde(default = "RawStorage::default_connect_timeout")]
    pub connect_timeout: String,
}

impl RawStorage {
    fn default_url() -> String {
        s("sqlite://data/payrelay.db")
    }
    fn default_retention() -> String {
        s("90d")
    }
    fn default_keep_rejected() -> u64 {
        10_000
    }
    fn default_keep_rejected_bytes() -> u64 {
        64 << 20
    }
    fn default_keep_unroutable_bytes() -> u64 {
        256 << 20
    }
    fn default_unroutable_min_age() -> String {
        s("7d")
    }
    fn default_dead_retention() -> String {
        s("30d")
    }
    fn default_lease() -> String {
        s("30s")
    }
    fn default_pool_size() -> u32 {
        8
    }
    fn default_connect_timeout() -> String {
        s("3s")
    }
}

impl Default for RawStorage {
    fn default() -> Self {
        Self {
            url: Self::default_url(),
            retention: Self::default_retention(),
            keep_rejected: Self::default_keep_rejected(),
            keep_rejected_bytes: Self::default_keep_rejected_bytes(),
            keep_unroutable: Self::default_keep_rejected(),
            keep_unroutable_bytes: Self::default_keep_unroutable_bytes(),
            unroutable_min_age: Self::default_unroutable_min_age(),
            dead_retention: Self::default_dead_retention(),
            lease: Self::default_lease(),
            pool_size: Self::default_pool_size(),
            connect_timeout: Self::default_connect_timeout(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct RawDelivery {
    #[serde(default = "RawDelivery::default_timeout")]
    pub timeout: String,
    #[serde(default = "RawDelivery::default_retry")]
    pub retry: Vec<String>,
    #[serde(default = "RawDelivery::default_dedup_window")]
    pub dedup_window: String,
    #[serde(default = "RawDelivery::default_inline_timeout")]
    pub inline_timeout: String,
}

impl RawDelivery {
    fn default_timeout() -> String {
        s("10s")
    }
    fn default_retry() -> Vec<String> {
        ["10s", "1m", "5m", "30m", "2h", "6h", "12h", "24h"].map(s).to_vec()
    }
    fn default_dedup_window() -> String {
        s("7d")
    }
    fn default_inline_timeout() -> String {
        s("5s")
    }
}

impl Default for RawDelivery {
    fn default() -> Self {
        Self {
            timeout: Self::default_timeout(),
            retry: Self::default_retry(),
            dedup_window: Self::default_dedup_window(),
            inline_timeout: Self::default_inline_timeout(),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct RawAdmin {
    pub token: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub struct RawProviders {
    #[serde(default)]
    pub funpoint: RawFunpointProvider,
    #[serde(default)]
    pub tappay: RawSuffixProvider,
    #[serde(default)]
    pub oen: RawJsonProvider,
    #[serde(default)]
    pub sinopac: RawJsonProvider,
}

/// A notify body larger than this is refused (413) before it is parsed.
fn json_body_limit() -> u64 {
    32 * 1024
}

fn form_body_limit() -> u64 {
    8 * 1024
}

/// A provider's query API (SPEC §8): where it is (the production URL when
/// unset), how long a query may take, how many per second per account.
#[derive(Debug, Deserialize)]
pub struct RawApi {
    pub api_base: Option<String>,
    #[serde(default = "RawApi::default_timeout")]
    pub query_timeout: String,
    #[serde(default = "RawApi::default_rate")]
    pub queries_per_second: u64,
}

impl RawApi {
    fn default_timeout() -> String {
        s("10s")
    }
    fn default_rate() -> u64 {
        1
    }
}

impl Default for RawApi {
    fn default() -> Self {
        Self { api_base: None, query_timeout: Self::default_timeout(), queries_per_second: Self::default_rate() }
    }
}

#[derive(Debug, Deserialize)]
pub struct RawJsonProvider {
    #[serde(default = "json_body_limit")]
    pub max_body_bytes: u64,
    pub api_base: Option<String>,
    #[serde(default = "RawApi::default_timeout")]
    pub query_timeout: String,
    #[serde(default = "RawApi::default_rate")]
    pub queries_per_second: u64,
}

impl Default for RawJsonProvider {
    fn default() -> Self {
        let api = RawApi::default();
        Self {
            max_body_bytes: json_body_limit(),
            api_base: api.api_base,
            query_timeout: api.query_timeout,
            queries_per_second: api.queries_per_second,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct RawFunpointProvider {
    #[serde(default = "RawFunpointProvider::default_origins")]
    pub payment_origins: Vec<String>,
    #[serde(default = "two")]
    pub order_suffix_len: u64,
    #[serde(default = "form_body_limit")]
    pub max_body_bytes: u64,
    pub api_base: Option<String>,
    #[serde(default = "RawApi::default_timeout")]
    pub query_timeout: String,
    #[serde(default = "RawApi::default_rate")]
    pub queries_per_second: u64,
}

fn two() -> u64 {
    2
}

impl RawFunpointProvider {
    fn default_origins() -> Vec<String> {
        vec![s("https://payment.funpoint.com.tw"), s("https://payment-stage.funpoint.com.tw")]
    }
}

impl Default for RawFunpointProvider {
    fn default() -> Self {
        let api = RawApi::default();
        Self {
            payment_origins: Self::default_origins(),
            order_suffix_len: 2,
            max_body_bytes: form_body_limit(),
            api_base: api.api_base,
            query_timeout: api.query_timeout,
            queries_per_second: api.queries_per_second,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct RawSuffixProvider {
    #[serde(default = "two")]
    pub order_suffix_len: u64,
    #[serde(default = "json_body_limit")]
    pub max_body_bytes: u64,
    pub api_base: Option<String>,
    #[serde(default = "RawApi::default_timeout")]
    pub query_timeout: String,
    #[serde(default = "RawApi::default_rate")]
    pub queries_per_second: u64,
}

impl Default for RawSuffixProvider {
    fn default() -> Self {
        let api = RawApi::default();
        Self {
            order_suffix_len: 2,
            max_body_bytes: json_body_limit(),
            api_base: api.api_base,
            query_timeout: api.query_timeout,
            queries_per_second: api.queries_per_second,
        }
    }
}

/// The query API settings of each provider section, read alike.
pub trait HasApi {
    fn api(&self) -> RawApi;
}

macro_rules! has_api {
    ($($t:ty),*) => {$(
        impl HasApi for $t {
            fn api(&self) -> RawApi {
                RawApi {
                    api_base: self.api_base.clone(),
                    query_timeout: self.query_timeout.clone(),
                    queries_per_second: self.queries_per_second,
                }
            }
        }
    )*};
}

has_api!(RawFunpointProvider, RawSuffixProvider, RawJsonProvider);

pub use super::raw_tenant::*;
