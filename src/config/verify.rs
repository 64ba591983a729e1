//! Verification by query (SPEC §8): where each provider's query API is, how
//! fast it may be asked, and what each tenant section asks of it: its
//! credentials and its policy.

use std::num::NonZeroU32;
use std::time::Duration;

use super::raw::{HasApi, RawApi, RawProviders, RawTenantOen, RawTenantSinopac, RawTenantTapPay};
use super::validate::Problems;
use crate::domain::Secret;
use crate::routing::Provider;

/// What a tenant section does with the provider's query API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryPolicy {
    /// Delivered as received (`X-Payrelay-Verified: none`).
    None,
    /// Queried, and delivered whatever the answer, the header saying it.
    Mark,
    /// Delivered only once the provider confirmed it.
    Query,
}

impl QueryPolicy {
    pub fn queries(self) -> bool {
        self != Self::None
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Mark => "mark",
            Self::Query => "query",
        }
    }
}

/// One provider's query API.
#[derive(Debug, Clone)]
pub struct ProviderApi {
    /// The base URL, without a trailing slash for Funpoint, Oen and TapPay;
    /// SinoPac's ends in `/` (`{base}Nonce`, `{base}Order`).
    pub base: String,
    pub timeout: Duration,
    /// Queries per second per provider account (merchant, token, shop).
    pub per_second: NonZeroU32,
}

#[derive(Debug, Clone)]
pub struct Apis {
    pub funpoint: ProviderApi,
    pub oen: ProviderApi,
    pub sinopac: ProviderApi,
    pub tappay: ProviderApi,
}

impl Apis {
    pub fn of(&self, p: Provider) -> &ProviderApi {
        match p {
            Provider::Funpoint => &self.funpoint,
            Provider::Oen => &self.oen,
            Provider::Sinopac => &self.sinopac,
            Provider::TapPay => &self.tappay,
        }
    }
}

/// The production hosts (SPEC §8). SinoPac's production APIM host is not
/// public; this is the one its older samples use (see the README).
const DEFAULT_BASE: [(Provider, &str); 4] = [
    (Provider::Funpoint, "https://payment.funpoint.com.tw"),
    (Provider::Oen, "https://payment-api.oen.tw"),
    (Provider::Sinopac, "https://funbiz.sinopac.com/QPay.WebAPI/api/"),
    (Provider::TapPay, "https://prod.tappaysdk.com"),
];

pub(super) fn apis(p: &mut Problems, raw: &RawProviders) -> Apis {
    let mut one = |provider: Provider, section: &dyn HasApi| api(p, provider, section.api());
    Apis {
        funpoint: one(Provider::Funpoint, &raw.funpoint),
        oen: one(Provider::Oen, &raw.oen),
        sinopac: one(Provider::Sinopac, &raw.sinopac),
        tappay: one(Provider::TapPay, &raw.tappay),
    }
}

fn api(p: &mut Problems, provider: Provider, raw: RawApi) -> ProviderApi {
    let at = format!("providers.{}", provider.name());
    let default = DEFAULT_BASE.iter().find(|(p, _)| *p == provider).map_or("", |(_, b)| b);
    let mut base = raw.api_base.filter(|b| !b.is_empty()).unwrap_or_else(|| default.to_owned());
    match reqwest::Url::parse(&base) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
        _ => p.push(format!("{at}.api_base"), format!("{base:?} is not an http(s) URL")),
    }
    if provider == Provider::Sinopac {
        if !base.ends_with('/') {
            base.push('/');
        }
    } else {
        base.truncate(base.trim_end_matches('/').len());
    }
    let timeout = p.duration(&format!("{at}.query_timeout"), &raw.query_timeout);
    let per_second = u32::try_from(raw.queries_per_second).ok().and_then(NonZeroU32::new).unwrap_or_else(|| {
        p.push(format!("{at}.queries_per_second"), "must be a whole number from 1");
        NonZeroU32::MIN
    });
    ProviderApi { base, timeout, per_second }
}

impl super::Tenant {
    /// What this tenant's section for `provider` does with its query API.
    pub fn query_policy(&self, provider: Provider) -> QueryPolicy {
        match provider {
            Provider::Funpoint => self.funpoint.as_ref().map(|f| f.query),
            Provider::Oen => self.oen.as_ref().map(|o| o.verify),
            Provider::Sinopac => self.sinopac.as_ref().map(|s| s.verify),
            Provider::TapPay => self.tappay.as_ref().map(|t| t.verify),
        }
        .unwrap_or(QueryPolicy::None)
    }
}

/// The longest `query_timeout` among the providers some tenant queries.
pub(super) fn slowest_query(table: &super::RoutingTable, apis: &Apis) -> Option<Duration> {
    Provider::ALL
        .into_iter()
        .filter(|&p| table.tenants().iter().any(|t| t.query_policy(p).queries()))
        .map(|p| apis.of(p).timeout)
        .max()
}

/// `[reconcile]` (SPEC §9): when an order with no payment result is asked
/// about, how often again, and when the reconciler gives up on it.
#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    pub after: Duration,
    pub give_up: Duration,
    pub retry: Vec<Duration>,
    pub per_merchant_per_second: NonZeroU32,
}

pub(super) fn reconcile(p: &mut Problems, raw: &super::raw::RawReconcile) -> ReconcileConfig {
    let retry = raw.retry.iter().enumerate().map(|(i, s)| p.duration(&format!("reconcile.retry[{i}]"), s)).collect();
    ReconcileConfig {
        after: p.duration("reconcile.after", &raw.after),
        give_up: p.duration("reconcile.give_up", &raw.give_up),
        retry,
        per_merchant_per_second: u32::try_from(raw.per_merchant_per_second)
            .ok()
            .and_then(NonZeroU32::new)
            .unwrap_or_else(|| {
                p.push("reconcile.per_merchant_per_second", "must be a whole number from 1");
                NonZeroU32::MIN
            }),
    }
}

/// A key of a tenant's provider section that holds a credential: only
/// `${VAR}`s may fill it.
pub(super) fn is_credential_key(key: &str) -> bool {
    const KEYS: [&str; 6] = ["api_token", "partner_key", "hash_a1", "hash_a2", "hash_b1", "hash_b2"];
    KEYS.contains(&key)
}

/// `verify` of an Oen, SinoPac or TapPay section: `"query"` by default
/// when the credentials are set, else `"none"`; querying needs them.
fn policy(p: &mut Problems, at: &str, raw: Option<String>, credentials: bool) -> QueryPolicy {
    let policy = match raw.as_deref() {
        None | Some("") => return if credentials { QueryPolicy::Query } else { QueryPolicy::None },
        Some("query") => QueryPolicy::Query,
        Some("mark") => QueryPolicy::Mark,
        Some("none") => QueryPolicy::None,
        Some(other) => {
            p.push(format!("{at}.verify"), format!("{other:?} must be \"query\", \"mark\" or \"none\""));
            return QueryPolicy::None;
        }
    };
    if policy.queries() && !credentials {
        p.push(format!("{at}.verify"), format!("{:?} needs the section's credentials", policy.as_str()));
    }
    policy
}

fn secret(v: Option<String>) -> Option<Secret> {
    v.filter(|s| !s.is_empty()).map(Secret::new)
}

/// `[tenants.oen]`: its token and policy.
pub(super) fn oen(p: &mut Problems, at: &str, o: &mut RawTenantOen) -> (Option<Secret>, QueryPolicy) {
    let token = secret(o.api_token.take());
    let policy = policy(p, &format!("{at}: oen"), o.verify.take(), token.is_some());
    (token, policy)
}

/// What TapPay's Record API needs of a tenant.
#[derive(Debug, Clone)]
pub struct TapPayCredentials {
    pub partner_key: Secret,
    /// The merchant the records must name.
    pub merchant_id: String,
}

pub(super) fn tappay(p: &mut Problems, at: &str, t: &mut RawTenantTapPay) -> (Option<TapPayCredentials>, QueryPolicy) {
    let at = format!("{at}: tappay");
    let credentials = match (secret(t.partner_key.take()), t.merchant_id.take().filter(|m| !m.is_empty())) {
        (Some(partner_key), Some(merchant_id)) => Some(TapPayCredentials { partner_key, merchant_id }),
        (None, None) => None,
        _ => {
            p.push(&at, "partner_key and merchant_id go together: set both or neither");
            None
        }
    };
    let policy = policy(p, &at, t.verify.take(), credentials.is_some());
    (credentials, policy)
}

/// SinoPac's HashID, made from the four hash values: hex(A1 ⊕ A2) ‖
/// hex(B1 ⊕ B2), uppercase (32 characters, the AES key).
#[derive(Debug, Clone)]
pub struct SinopacKeys {
    pub hash_id: Secret,
}

impl SinopacKeys {
    pub fn from_parts(a1: &str, a2: &str, b1: &str, b2: &str) -> Result<Self, String> {
        let half = |x: &str, y: &str| -> Result<String, String> {
            let (x, y) = (hex8(x)?, hex8(y)?);
            Ok(x.iter().zip(y).map(|(a, b)| format!("{:02X}", a ^ b)).collect())
        };
        Ok(Self { hash_id: Secret::new(half(a1, a2)? + &half(b1, b2)?) })
    }
}

fn hex8(s: &str) -> Result<[u8; 8], String> {
    let mut out = [0u8; 8];
    if s.len() != 16 {
        return Err("each hash value is 16 hexadecimal digits".into());
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
            .map_err(|_| "each hash value is 16 hexadecimal digits".to_owned())?;
    }
    Ok(out)
}

pub(super) fn sinopac(p: &mut Problems, at: &str, s: &mut RawTenantSinopac) -> (Option<SinopacKeys>, QueryPolicy) {
    let at = format!("{at}: sinopac");
    let parts =
        [s.hash_a1.take(), s.hash_a2.take(), s.hash_b1.take(), s.hash_b2.take()].map(|v| v.filter(|v| !v.is_empty()));
    let keys = match &parts {
        [Some(a1), Some(a2), Some(b1), Some(b2)] => p.take(&at, SinopacKeys::from_parts(a1, a2, b1, b2)),
        [None, None, None, None] => None,
        _ => {
            p.push(&at, "hash_a1, hash_a2, hash_b1 and hash_b2 go together: set all four or none");
            None
        }
    };
    let policy = policy(p, &at, s.verify.take(), keys.is_some());
    (keys, policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_id_is_the_xor_of_the_four_values() {
        // The test vector of providers-query.md (recomputed there).
        let k = SinopacKeys::from_parts("4D9709D699CA40EE", "5A4FEF83140C4E9E", "BC74301945134CB4", "961F67F8FCA44AB9")
            .unwrap();
        assert_eq!(k.hash_id.expose(), "17D8E6558DC60E702A6B57E1B9B7060D");
        assert!(SinopacKeys::from_parts("4D97", "5A4FEF83140C4E9E", "BC74301945134CB4", "961F67F8FCA44AB9").is_err());
        assert!(
            SinopacKeys::from_parts("ZZ9709D699CA40EE", "5A4FEF83140C4E9E", "BC74301945134CB4", "961F67F8FCA44AB9")
                .is_err()
        );
    }
}
