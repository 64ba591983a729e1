//! The validated, typed configuration: what `serve` runs on and what a
//! SIGHUP swaps whole. Built from [`RawConfig`] by `TryFrom`, which reports
//! every problem of the file at once, naming the tenant and field.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use reqwest::Url;

use super::raw::*;
use crate::domain::{ConfigDuration, ForwardSecret, HashAlgorithm, HashKeys, Origin, Secret, TenantId};

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

/// Where callbacks are stored. A PostgreSQL URL may hold a password, so it
/// is kept as a secret and shown with the password masked.
#[derive(Debug, Clone)]
pub enum StorageUrl {
    Sqlite { path: PathBuf },
    Postgres(Secret),
}

impl StorageUrl {
    fn parse(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() || path == ":memory:" {
                return Err("a sqlite URL needs a file path (an in-memory store is not durable)".into());
            }
            Ok(Self::Sqlite { path: PathBuf::from(path) })
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Url::parse(s).map_err(|e| format!("not a valid postgres URL: {e}"))?;
            Ok(Self::Postgres(Secret::new(s)))
        } else {
            Err("must start with sqlite:// or postgres://".into())
        }
    }

    /// For `check` and logs: the URL with any password replaced by `***`.
    pub fn display_masked(&self) -> String {
        match self {
            Self::Sqlite { path } => format!("sqlite://{}", path.display()),
            Self::Postgres(secret) => match Url::parse(secret.expose()) {
                Ok(mut url) => {
                    if url.password().is_some() {
                        let _ = url.set_password(Some("***"));
                    }
                    // libpq also takes the password as a query parameter.
                    if url.query().is_some() {
                        let pairs: Vec<(String, String)> = url
                            .query_pairs()
                            .map(|(k, v)| {
                                let secret =
                                    k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("sslpassword");
                                (k.into_owned(), if secret { "***".to_owned() } else { v.into_owned() })
                            })
                            .collect();
                        url.query_pairs_mut().clear().extend_pairs(pairs);
                    }
                    url.to_string()
                }
                Err(_) => "postgres://***".into(),
            },
        }
    }
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

/// A tenant's base URL, absolute http(s), kept without a trailing slash so
/// that `join` is the plain concatenation SPEC §2 describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    text: String,
    origin: Origin,
}

impl BaseUrl {
    fn parse(s: &str, allow_http: bool) -> Result<Self, String> {
        let url = Url::parse(s).map_err(|e| format!("{s:?} is not an absolute URL: {e}"))?;
        match url.scheme() {
            "https" => {}
            "http" if allow_http => {}
            "http" => return Err(format!("{s:?} is http; use https or set allow_http = true")),
            other => return Err(format!("{s:?} has scheme {other:?}; use https")),
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("{s:?} must not have a query or fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{s:?} must not carry credentials"));
        }
        let origin = Origin::of_url(&url).ok_or_else(|| format!("{s:?} has no host"))?;
        let text = url.as_str().trim_end_matches('/').to_owned();
        Ok(Self { text, origin })
    }

    fn stand_in() -> Self {
        Self { text: "https://invalid.invalid".into(), origin: Origin::stand_in() }
    }

    pub fn join(&self, path: &str) -> String {
        format!("{}{}", self.text, path)
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
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
}

#[derive(Debug, Clone)]
pub struct SinopacTenant {
    pub shop_no: Option<String>,
    pub notify_path: String,
    pub return_path: String,
}

#[derive(Debug, Clone)]
pub struct TapPayTenant {
    pub notify_path: String,
    pub return_path: String,
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
    tenants: Vec<Tenant>,
    by_id: HashMap<TenantId, usize>,
    by_domain: HashMap<String, usize>,
    funpoint_by_suffix: HashMap<String, usize>,
    tappay_by_suffix: HashMap<String, usize>,
    oen_by_merchant: HashMap<String, usize>,
    sinopac_by_shop: HashMap<String, usize>,
}

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
        self.tenants.iter().any(|t| t.origins.iter().any(|o| o.as_str() == origin))
    }
}

/// Every problem found, each naming where it is.
#[derive(Debug, Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, at: impl std::fmt::Display, msg: impl std::fmt::Display) {
        self.0.push(format!("{at}: {msg}"));
    }

    /// Keeps the value of `r`, or records its error and gives `None`.
    fn take<T>(&mut self, at: impl std::fmt::Display, r: Result<T, String>) -> Option<T> {
        r.map_err(|e| self.push(at, e)).ok()
    }

    fn duration(&mut self, at: &str, s: &str) -> Duration {
        self.take(at, ConfigDuration::parse(s)).map_or(Duration::from_secs(1), |d| d.0)
    }
}

fn check_path(p: &mut Problems, at: String, path: String) -> String {
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

    fn try_from(raw: RawConfig) -> Result<Self, Self::Error> {
        let mut p = Problems::default();

        let server = ServerConfig {
            listen: p
                .take(
                    "server.listen",
                    raw.server.listen.parse().map_err(|_| format!("{:?} is not address:port", raw.server.listen)),
                )
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            max_body_bytes: match usize::try_from(raw.server.max_body_bytes) {
                Ok(n) if n > 0 => n,
                _ => {
                    p.push("server.max_body_bytes", "must be a positive number of bytes");
                    1
                }
            },
            request_timeout: p.duration("server.request_timeout", &raw.server.request_timeout),
            legacy_paths: raw.server.legacy_paths,
            trusted_proxies: raw
                .server
                .trusted_proxies
                .iter()
                .enumerate()
                .filter_map(|(i, s)| p.take(format!("server.trusted_proxies[{i}]"), parse_cidr(s)))
                .collect(),
            max_connections: match usize::try_from(raw.server.max_connections) {
                Ok(n) if n > 0 => n,
                _ => {
                    p.push("server.max_connections", "must be a positive number");
                    1
                }
            },
            outbound_proxy: non_empty(raw.server.outbound_proxy).and_then(|u| match reqwest::Url::parse(&u) {
                Ok(_) => Some(Secret::new(u)),
                Err(_) => {
                    p.push("server.outbound_proxy", "is not an absolute URL");
                    None
                }
            }),
            refused_per_minute: match u32::try_from(raw.server.refused_per_minute) {
                Ok(n) if n > 0 => n,
                _ => {
                    p.push("server.refused_per_minute", "must be between 1 and 4294967295");
                    1
                }
            },
        };
        if server.request_timeout.is_zero() {
            p.push("server.request_timeout", "must be longer than 0");
        }

        let storage = StorageConfig {
            url: p
                .take("storage.url", StorageUrl::parse(&raw.storage.url))
                .unwrap_or(StorageUrl::Sqlite { path: "data/payrelay.db".into() }),
            retention: p.duration("storage.retention", &raw.storage.retention),
            keep_rejected: raw.storage.keep_rejected,
            keep_rejected_bytes: raw.storage.keep_rejected_bytes,
            keep_unroutable: raw.storage.keep_unroutable,
            keep_unroutable_bytes: raw.storage.keep_unroutable_bytes,
            unroutable_min_age: p.duration("storage.unroutable_min_age", &raw.storage.unroutable_min_age),
            dead_retention: p.duration("storage.dead_retention", &raw.storage.dead_retention),
            lease: p.duration("storage.lease", &raw.storage.lease),
            pool_size: raw.storage.pool_size,
            connect_timeout: p.duration("storage.connect_timeout", &raw.storage.connect_timeout),
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

        let delivery = DeliveryConfig {
            timeout: p.duration("delivery.timeout", &raw.delivery.timeout),
            retry: raw
                .delivery
                .retry
                .iter()
                .enumerate()
                .map(|(i, s)| p.duration(&format!("delivery.retry[{i}]"), s))
                .collect(),
            dedup_window: p.duration("delivery.dedup_window", &raw.delivery.dedup_window),
            inline_timeout: p.duration("delivery.inline_timeout", &raw.delivery.inline_timeout),
        };
        if delivery.timeout.is_zero() {
            p.push("delivery.timeout", "must be longer than 0");
        }

        if storage.lease <= delivery.timeout {
            // An attempt still in flight when its lease ends could be handed
            // out again, and the tenant would get it twice.
            p.push("storage.lease", format!("must be longer than delivery.timeout ({:?})", delivery.timeout));
        }

        let admin = AdminConfig { token: non_empty(raw.admin.token).map(Secret::new) };
        if let Some(token) = &admin.token
            && token.expose().trim().chars().count() < MIN_ADMIN_TOKEN
        {
            p.push("admin.token", format!("must be at least {MIN_ADMIN_TOKEN} characters (e.g. openssl rand -hex 24)"));
        }
        let limit = |p: &mut Problems, at: &str, n: u64| match usize::try_from(n) {
            Ok(n @ 256..) => n,
            _ => {
                p.push(at, "must be at least 256 bytes");
                256
            }
        };
        let notify_limits = NotifyLimits {
            funpoint: limit(&mut p, "providers.funpoint.max_body_bytes", raw.providers.funpoint.max_body_bytes),
            oen: limit(&mut p, "providers.oen.max_body_bytes", raw.providers.oen.max_body_bytes),
            sinopac: limit(&mut p, "providers.sinopac.max_body_bytes", raw.providers.sinopac.max_body_bytes),
            tappay: limit(&mut p, "providers.tappay.max_body_bytes", raw.providers.tappay.max_body_bytes),
        };

        let funpoint = FunpointSettings {
            payment_origins: raw
                .providers
                .funpoint
                .payment_origins
                .iter()
                .enumerate()
                .filter_map(|(i, s)| p.take(format!("providers.funpoint.payment_origins[{i}]"), Origin::parse(s)))
                .collect(),
            order_suffix_len: suffix_len(
                &mut p,
                "providers.funpoint.order_suffix_len",
                raw.providers.funpoint.order_suffix_len,
            ),
        };
        let tappay_suffix_len =
            suffix_len(&mut p, "providers.tappay.order_suffix_len", raw.providers.tappay.order_suffix_len);

        let tenants: Vec<Tenant> = raw.tenants.into_iter().enumerate().map(|(i, t)| tenant(&mut p, i, t)).collect();

        let table = index(&mut p, funpoint, tappay_suffix_len, tenants);

        if p.0.is_empty() { Ok(Config { server, storage, delivery, admin, table, notify_limits }) } else { Err(p.0) }
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
fn tenant(p: &mut Problems, i: usize, t: RawTenant) -> Tenant {
    let at = if t.id.is_empty() { format!("tenants[{i}]") } else { format!("tenant {:?}", t.id) };
    // On a bad id or base_url the tenant is still indexed under stand-ins,
    // so that the cross-tenant rules report their problems in the same run
    // (the config is refused anyway).
    let id = p.take(format!("{at}: id"), TenantId::parse(&t.id)).unwrap_or_else(|| TenantId::stand_in(&t.id));
    let base_url =
        p.take(format!("{at}: base_url"), BaseUrl::parse(&t.base_url, t.allow_http)).unwrap_or_else(BaseUrl::stand_in);
    let origins = t.origins.iter().filter_map(|o| p.take(format!("{at}: origins"), Origin::parse(o))).collect();
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
    let ack = match t.ack.as_str() {
        "stored" => AckMode::Stored,
        "delivered" => AckMode::Delivered,
        other => {
            p.push(format!("{at}: ack"), format!("{other:?} must be \"stored\" or \"delivered\""));
            AckMode::Stored
        }
    };
    let forward_secret = t
        .forward_secret
        .as_deref()
        .filter(|s| !s.is_empty())
        .and_then(|s| p.take(format!("{at}: forward_secret"), ForwardSecret::parse(s)));

    let funpoint = t.funpoint.map(|f| {
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
        let verify = match f.verify.as_str() {
            "mac" => FunpointVerify::Mac,
            "none" => FunpointVerify::None,
            other => {
                p.push(format!("{at}: funpoint.verify"), format!("{other:?} must be \"mac\" or \"none\""));
                FunpointVerify::Mac
            }
        };
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
            encrypt_type,
            api_path: check_path(p, format!("{at}: funpoint.api_path"), f.api_path),
            notify_path: check_path(p, format!("{at}: funpoint.notify_path"), f.notify_path),
            result_path: check_path(p, format!("{at}: funpoint.result_path"), f.result_path),
        }
    });
    let oen = t.oen.map(|o| OenTenant {
        merchant_id: non_empty(o.merchant_id),
        notify_path: check_path(p, format!("{at}: oen.notify_path"), o.notify_path),
    });
    let sinopac = t.sinopac.map(|s| SinopacTenant {
        shop_no: non_empty(s.shop_no),
        notify_path: check_path(p, format!("{at}: sinopac.notify_path"), s.notify_path),
        return_path: check_path(p, format!("{at}: sinopac.return_path"), s.return_path),
    });
    let tappay = t.tappay.map(|s| TapPayTenant {
        notify_path: check_path(p, format!("{at}: tappay.notify_path"), s.notify_path),
        return_path: check_path(p, format!("{at}: tappay.return_path"), s.return_path),
    });

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

/// Builds the lookup indexes, reporting every value two tenants claim.
fn index(p: &mut Problems, funpoint: FunpointSettings, tappay_suffix_len: usize, tenants: Vec<Tenant>) -> RoutingTable {
    fn claim(p: &mut Problems, map: &mut HashMap<String, usize>, tenants: &[Tenant], what: &str, key: &str, i: usize) {
        if let Some(&other) = map.get(key) {
            p.push(
                format!("tenants {:?} and {:?}", tenants[other].id.as_str(), tenants[i].id.as_str()),
                format!("both claim {what} {key:?}"),
            );
        } else {
            map.insert(key.to_owned(), i);
        }
    }

    let mut by_id = HashMap::new();
    let mut by_domain = HashMap::new();
    let mut all_suffixes = HashMap::new();
    let mut funpoint_by_suffix = HashMap::new();
    let mut tappay_by_suffix = HashMap::new();
    let mut oen_by_merchant = HashMap::new();
    let mut sinopac_by_shop = HashMap::new();

    for (i, t) in tenants.iter().enumerate() {
        if by_id.contains_key(&t.id) {
            p.push(format!("tenant {:?}", t.id.as_str()), "the id is used by more than one tenant");
        } else {
            by_id.insert(t.id.clone(), i);
        }
        for code in &t.domain_codes {
            claim(p, &mut by_domain, &tenants, "domain code", code, i);
        }
        if let Some(suffix) = &t.order_suffix {
            claim(p, &mut all_suffixes, &tenants, "order suffix", suffix, i);
            let len = suffix.chars().count();
            if t.funpoint.is_some() {
                if len != funpoint.order_suffix_len {
                    p.push(
                        format!("tenant {:?}: order_suffix", t.id.as_str()),
                        format!(
                            "{suffix:?} has {len} characters but providers.funpoint.order_suffix_len is {}",
                            funpoint.order_suffix_len
                        ),
                    );
                }
                funpoint_by_suffix.entry(suffix.clone()).or_insert(i);
            }
            if t.tappay.is_some() {
                if len != tappay_suffix_len {
                    p.push(
                        format!("tenant {:?}: order_suffix", t.id.as_str()),
                        format!("{suffix:?} has {len} characters but providers.tappay.order_suffix_len is {tappay_suffix_len}"),
                    );
                }
                tappay_by_suffix.entry(suffix.clone()).or_insert(i);
            }
        }
        if let Some(m) = t.oen.as_ref().and_then(|o| o.merchant_id.as_ref()) {
            claim(p, &mut oen_by_merchant, &tenants, "[tenants.oen] merchant_id", m, i);
        }
        if let Some(s) = t.sinopac.as_ref().and_then(|s| s.shop_no.as_ref()) {
            claim(p, &mut sinopac_by_shop, &tenants, "[tenants.sinopac] shop_no", s, i);
        }
    }

    RoutingTable {
        funpoint,
        tappay_suffix_len,
        tenants,
        by_id,
        by_domain,
        funpoint_by_suffix,
        tappay_by_suffix,
        oen_by_merchant,
        sinopac_by_shop,
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
