//! `TryFrom<RawConfig> for Config`: every value checked, every problem of
//! the file reported at once, naming the tenant and field.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::index::index;
use super::raw::*;
use super::table::*;
use super::urls::{BaseUrl, StorageUrl};
use super::verify::{self, QueryPolicy};
use crate::domain::{ConfigDuration, ForwardSecret, HashAlgorithm, HashKeys, Origin, Secret, TenantId};

/// Every problem found, each naming where it is.
#[derive(Debug, Default)]
pub(super) struct Problems(Vec<String>);

impl Problems {
    pub(super) fn push(&mut self, at: impl std::fmt::Display, msg: impl std::fmt::Display) {
        self.0.push(format!("{at}: {msg}"));
    }

    /// Keeps the value of `r`, or records its error and gives `None`.
    pub(super) fn take<T>(&mut self, at: impl std::fmt::Display, r: Result<T, String>) -> Option<T> {
        r.map_err(|e| self.push(at, e)).ok()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn duration(&mut self, at: &str, s: &str) -> Duration {
        self.take(at, ConfigDuration::parse(s)).map_or(Duration::from_secs(1), |d| d.0)
    }
}

fn check_path(p: &mut Problems, at: impl std::fmt::Display, path: String) -> String {
    if !path.starts_with('/') {
        p.push(at, format!("{path:?} must start with '/'"));
    }
    path
}

fn parse_cidr(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not an IP address or CIDR"))
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

impl TryFrom<RawConfig> for Config {
    type Error = Vec<String>;

    fn try_from(mut raw: RawConfig) -> Result<Self, Self::Error> {
        let raw_tenants = std::mem::take(&mut raw.tenants);
        assemble(raw, |p| tenants(p, raw_tenants))
    }
}

/// The config from `raw` (its tenants left out) and the tenants `checked`
/// gives: already checked one by one where a table is read in sections, so
/// that each tenant is read and checked while its text is at hand (issue
/// 14's start-up), or checked here from the raw tenants. Its problems come
/// after the other sections' and before the cross-tenant ones, as always.
pub(super) fn assemble(
    raw: RawConfig,
    checked: impl FnOnce(&mut Problems) -> Vec<Tenant>,
) -> Result<Config, Vec<String>> {
    let mut p = Problems::default();
    let server = server(&mut p, raw.server);
    let storage = storage(&mut p, raw.storage);
    let delivery = delivery(&mut p, raw.delivery);
    if storage.lease <= delivery.timeout {
        // An attempt still in flight when its lease ends could be handed
        // out again, and the tenant would get it twice.
        p.push("storage.lease", format!("must be longer than delivery.timeout ({:?})", delivery.timeout));
    }
    let admin = admin(&mut p, raw.admin);
    let notify_limits = notify_limits(&mut p, &raw.providers);
    let apis = super::verify::apis(&mut p, &raw.providers);
    let reconcile = super::verify::reconcile(&mut p, &raw.reconcile);

    let funpoint = FunpointSettings {
        payment_origins: raw
            .providers
            .funpoint
            .payment_origins
            .iter()
            .enumerate()
            .filter_map(|(i, s)| p.take(format_args!("providers.funpoint.payment_origins[{i}]"), Origin::parse(s)))
            .collect(),
        order_suffix_len: suffix_len(
            &mut p,
            "providers.funpoint.order_suffix_len",
            raw.providers.funpoint.order_suffix_len,
        ),
    };
    let tappay_suffix_len =
        suffix_len(&mut p, "providers.tappay.order_suffix_len", raw.providers.tappay.order_suffix_len);
    let tenants = checked(&mut p);
    let table = index(&mut p, funpoint, tappay_suffix_len, tenants);
    if let Some(slowest) = verify::slowest_query(&table, &apis)
        && storage.lease <= delivery.timeout + slowest
    {
        // A query and the attempt after it run under one lease.
        p.push(
            "storage.lease",
            "must be longer than delivery.timeout plus the query_timeout of every provider queried",
        );
    }
    if p.0.is_empty() {
        Ok(Config { server, storage, delivery, admin, table, notify_limits, apis, reconcile })
    } else {
        Err(p.0)
    }
}

/// A count that must be at least 1.
fn positive(p: &mut Problems, at: &str, n: u64) -> usize {
    match usize::try_from(n) {
        Ok(n) if n > 0 => n,
        _ => {
            p.push(at, "must be a positive number");
            1
        }
    }
}

fn server(p: &mut Problems, raw: RawServer) -> ServerConfig {
    let server = ServerConfig {
        listen: p
            .take("server.listen", raw.listen.parse().map_err(|_| format!("{:?} is not address:port", raw.listen)))
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
        max_body_bytes: positive(p, "server.max_body_bytes", raw.max_body_bytes),
        request_timeout: p.duration("server.request_timeout", &raw.request_timeout),
        legacy_paths: raw.legacy_paths,
        trusted_proxies: raw
            .trusted_proxies
            .iter()
            .enumerate()
            .filter_map(|(i, s)| p.take(format_args!("server.trusted_proxies[{i}]"), parse_cidr(s)))
            .collect(),
        max_connections: positive(p, "server.max_connections", raw.max_connections),
        outbound_proxy: non_empty(raw.outbound_proxy).and_then(|u| match reqwest::Url::parse(&u) {
            Ok(_) => Some(Secret::new(u)),
            Err(_) => {
                p.push("server.outbound_proxy", "is not an absolute URL");
                None
            }
        }),
        refused_per_minute: u32::try_from(positive(p, "server.refused_per_minute", raw.refused_per_minute))
            .unwrap_or(u32::MAX),
    };
    if server.request_timeout.is_zero() {
        p.push("server.request_timeout", "must be longer than 0");
    }
    server
}

fn storage(p: &mut Problems, raw: RawStorage) -> StorageConfig {
    let storage = StorageConfig {
        url: p
            .take("storage.url", StorageUrl::parse(&raw.url))
            .unwrap_or(StorageUrl::Sqlite { path: "data/payrelay.db".into() }),
        retention: p.duration("storage.retention", &raw.retention),
        keep_rejected: raw.keep_rejected,
        keep_rejected_bytes: raw.keep_rejected_bytes,
        keep_unroutable: raw.keep_unroutable,
        keep_unroutable_bytes: raw.keep_unroutable_bytes,
        unroutable_min_age: p.duration("storage.unroutable_min_age", &raw.unroutable_min_age),
        dead_retention: p.duration("storage.dead_retention", &raw.dead_retention),
        lease: p.duration("storage.lease", &raw.lease),
        pool_size: raw.pool_size,
        connect_timeout: p.duration("storage.connect_timeout", &raw.connect_timeout),
    };
    if storage.lease.is_zero() {
        p.push("storage.lease", "must be longer than 0");
    }
    if !(2..=1000).contains(&storage.pool_size) {
        p.push("storage.pool_size", "must be between 2 and 1000");
    }
    if storage.connect_timeout.is_zero() || storage.connect_timeout > Duration::from_secs(4) {
        // A provider must hear an answer (503) within 5 s while the
        // database is unreachable (SPEC §6).
        p.push("storage.connect_timeout", "must be longer than 0 and at most 4s");
    }
    storage
}

fn delivery(p: &mut Problems, raw: RawDelivery) -> DeliveryConfig {
    let delivery = DeliveryConfig {
        timeout: p.duration("delivery.timeout", &raw.timeout),
        retry: raw.retry.iter().enumerate().map(|(i, s)| p.duration(&format!("delivery.retry[{i}]"), s)).collect(),
        dedup_window: p.duration("delivery.dedup_window", &raw.dedup_window),
        inline_timeout: p.duration("delivery.inline_timeout", &raw.inline_timeout),
    };
    if delivery.timeout.is_zero() {
        p.push("delivery.timeout", "must be longer than 0");
    }
    delivery
}

fn admin(p: &mut Problems, raw: RawAdmin) -> AdminConfig {
    let admin = AdminConfig { token: non_empty(raw.token).map(Secret::new) };
    if let Some(token) = &admin.token
        && token.expose().trim().chars().count() < MIN_ADMIN_TOKEN
    {
        p.push("admin.token", format!("must be at least {MIN_ADMIN_TOKEN} characters (e.g. openssl rand -hex 24)"));
    }
    admin
}

fn notify_limits(p: &mut Problems, raw: &RawProviders) -> NotifyLimits {
    let mut limit = |at: &str, n: u64| match usize::try_from(n) {
        Ok(n @ 256..) => n,
        _ => {
            p.push(at, "must be at least 256 bytes");
            256
        }
    };
    NotifyLimits {
        funpoint: limit("providers.funpoint.max_body_bytes", raw.funpoint.max_body_bytes),
        oen: limit("providers.oen.max_body_bytes", raw.oen.max_body_bytes),
        sinopac: limit("providers.sinopac.max_body_bytes", raw.sinopac.max_body_bytes),
        tappay: limit("providers.tappay.max_body_bytes", raw.tappay.max_body_bytes),
    }
}

fn suffix_len(p: &mut Problems, at: &str, n: u64) -> usize {
    match usize::try_from(n) {
        Ok(n @ 1..=32) => n,
        _ => {
            p.push(at, "must be between 1 and 32");
            2
        }
    }
}

/// Validates one tenant's own fields; cross-tenant rules are in `index`.
/// Each tenant checked on its own, a large table in two halves on two
/// threads (issue 14's start-up); the problems keep the tenants' order.
fn tenants(p: &mut Problems, raw: Vec<RawTenant>) -> Vec<Tenant> {
    let mut tenants = Vec::with_capacity(raw.len());
    let halves = super::halves(raw, |from, raw| {
        let mut q = Problems::default();
        let checked: Vec<Tenant> = raw.into_iter().enumerate().map(|(i, t)| tenant(&mut q, from + i, t)).collect();
        (q, checked)
    });
    for (q, checked) in halves {
        p.0.extend(q.0);
        tenants.extend(checked);
    }
    tenants
}

pub(super) fn tenant(p: &mut Problems, i: usize, t: RawTenant) -> Tenant {
    let at = if t.id.is_empty() { format!("tenants[{i}]") } else { format!("tenant {:?}", t.id) };
    // On a bad id or base_url the tenant is still indexed under stand-ins,
    // so that the cross-tenant rules report their problems in the same run
    // (the config is refused anyway).
    let id = p.take(format_args!("{at}: id"), TenantId::parse(&t.id)).unwrap_or_else(|| TenantId::stand_in(&t.id));
    let base_url = p
        .take(format_args!("{at}: base_url"), BaseUrl::parse(&t.base_url, t.allow_http))
        .unwrap_or_else(BaseUrl::stand_in);
    let origins = t.origins.iter().filter_map(|o| p.take(format_args!("{at}: origins"), Origin::parse(o))).collect();
    routing_keys(p, &at, &t);
    let ack = ack_mode(p, &at, &t.ack);
    let forward_secret = t
        .forward_secret
        .as_deref()
        .filter(|s| !s.is_empty())
        .and_then(|s| p.take(format_args!("{at}: forward_secret"), ForwardSecret::parse(s)));

    let funpoint = t.funpoint.map(|f| funpoint_section(p, &at, f));
    let oen = t.oen.map(|o| oen_section(p, &at, o));
    let sinopac = t.sinopac.map(|s| sinopac_section(p, &at, s));
    let tappay = t.tappay.map(|s| tappay_section(p, &at, s));

    Tenant {
        id,
        base_url,
        domain_codes: t.domain_codes,
        order_suffix: t.order_suffix,
        origins,
        ack,
        forward_secret,
        drop_simulated: t.drop_simulated,
        funpoint,
        oen,
        sinopac,
        tappay,
    }
}

fn oen_section(p: &mut Problems, at: &str, mut o: RawTenantOen) -> OenTenant {
    let (api_token, verify) = verify::oen(p, at, &mut o);
    OenTenant {
        merchant_id: non_empty(o.merchant_id),
        notify_path: check_path(p, format_args!("{at}: oen.notify_path"), o.notify_path),
        api_token,
        verify,
    }
}

fn sinopac_section(p: &mut Problems, at: &str, mut s: RawTenantSinopac) -> SinopacTenant {
    let (keys, verify) = verify::sinopac(p, at, &mut s);
    SinopacTenant {
        shop_no: non_empty(s.shop_no),
        notify_path: check_path(p, format_args!("{at}: sinopac.notify_path"), s.notify_path),
        return_path: check_path(p, format_args!("{at}: sinopac.return_path"), s.return_path),
        keys,
        verify,
    }
}

fn tappay_section(p: &mut Problems, at: &str, mut s: RawTenantTapPay) -> TapPayTenant {
    let (credentials, verify) = verify::tappay(p, at, &mut s);
    TapPayTenant {
        notify_path: check_path(p, format_args!("{at}: tappay.notify_path"), s.notify_path),
        return_path: check_path(p, format_args!("{at}: tappay.return_path"), s.return_path),
        credentials,
        verify,
    }
}

/// Domain codes and the order suffix: present means not empty.
fn routing_keys(p: &mut Problems, at: &str, t: &RawTenant) {
    for code in &t.domain_codes {
        if code.is_empty() {
            p.push(format!("{at}: domain_codes"), "an empty domain code is never sent");
        }
    }
    if let Some(s) = &t.order_suffix
        && s.is_empty()
    {
        p.push(format!("{at}: order_suffix"), "must not be empty (leave it out instead)");
    }
}

fn ack_mode(p: &mut Problems, at: &str, ack: &str) -> AckMode {
    match ack {
        "stored" => AckMode::Stored,
        "delivered" => AckMode::Delivered,
        other => {
            p.push(format!("{at}: ack"), format!("{other:?} must be \"stored\" or \"delivered\""));
            AckMode::Stored
        }
    }
}

/// A tenant's `[tenants.funpoint]` section (SPEC §2 and §7).
fn funpoint_section(p: &mut Problems, at: &str, f: RawTenantFunpoint) -> FunpointTenant {
    let keys = match (non_empty(f.hash_key), non_empty(f.hash_iv)) {
        (Some(key), Some(iv)) => Some(HashKeys { key: Secret::new(key), iv: Secret::new(iv) }),
        (None, None) => None,
        (Some(_), None) => {
            p.push(format!("{at}: funpoint.hash_iv"), "hash_key is set but hash_iv is not; set both or neither");
            None
        }
        (None, Some(_)) => {
            p.push(format!("{at}: funpoint.hash_key"), "hash_iv is set but hash_key is not; set both or neither");
            None
        }
    };
    let (verify, query) = match f.verify.as_str() {
        "mac" => (FunpointVerify::Mac, QueryPolicy::None),
        "query" => (FunpointVerify::Mac, QueryPolicy::Query),
        "none" => (FunpointVerify::None, QueryPolicy::None),
        other => {
            p.push(format!("{at}: funpoint.verify"), format!("{other:?} must be \"mac\", \"query\" or \"none\""));
            (FunpointVerify::Mac, QueryPolicy::None)
        }
    };
    if query.queries() && (keys.is_none() || non_empty(f.merchant_id.clone()).is_none()) {
        p.push(format!("{at}: funpoint.verify"), "\"query\" needs hash_key, hash_iv and merchant_id");
    }
    let encrypt_type = match f.encrypt_type {
        1 => HashAlgorithm::Sha256,
        0 => HashAlgorithm::Md5,
        other => {
            p.push(format!("{at}: funpoint.encrypt_type"), format!("{other} must be 1 (SHA-256) or 0 (MD5)"));
            HashAlgorithm::Sha256
        }
    };
    FunpointTenant {
        merchant_id: non_empty(f.merchant_id),
        keys,
        verify,
        query,
        encrypt_type,
        api_path: check_path(p, format_args!("{at}: funpoint.api_path"), f.api_path),
        notify_path: check_path(p, format_args!("{at}: funpoint.notify_path"), f.notify_path),
        result_path: check_path(p, format_args!("{at}: funpoint.result_path"), f.result_path),
    }
}
