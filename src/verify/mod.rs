//! Verification by query (SPEC §8): before a callback reaches its shop, the
//! worker asks the provider's own query API whether what the callback
//! claims is true. One file per provider knows its API; this one holds what
//! they share: the verdict, the HTTP call with its bound and timeout, the
//! query budget per provider account, and what follows a verdict.

mod budget;
mod cli;
mod funpoint;
mod oen;
mod sinopac;
mod tappay;

pub(crate) use sinopac::envelope as sinopac_envelope;

use std::time::Duration;

pub use budget::Budget;
pub use cli::command;
pub use funpoint::{
    Merchant as FunpointMerchant, period_info as funpoint_period_info, trade_info as funpoint_trade_info,
};

use crate::config::{Config, ProviderApi, QueryPolicy, Tenant};
use crate::providers::{self, Parsed};
use crate::routing::Provider;
use crate::store::{AfterVerify, Claimed, Verified, VerifyNote};

/// Most of a provider's answer read.
const MAX_ANSWER: usize = 256 * 1024;
/// How much of the answer is kept with the callback (console, admin API).
const EXCERPT_CHARS: usize = 300;

/// What one query found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub verified: Verified,
    /// Why, and an excerpt of what the provider answered.
    pub detail: String,
    /// The provider asked for a pause (`Retry-After`, Funpoint's 403).
    pub retry_after: Option<Duration>,
}

impl Verdict {
    fn new(verified: Verified, detail: impl Into<String>) -> Self {
        Self { verified, detail: detail.into(), retry_after: None }
    }

    pub(crate) fn confirmed(detail: impl Into<String>) -> Self {
        Self::new(Verified::Confirmed, detail)
    }

    pub(crate) fn contradicted(detail: impl Into<String>) -> Self {
        Self::new(Verified::Contradicted, detail)
    }

    pub(crate) fn not_yet(detail: impl Into<String>) -> Self {
        Self::new(Verified::NotYet, detail)
    }

    pub(crate) fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(Verified::Unavailable, detail)
    }

    /// Adds what the provider answered, shortened, to the detail.
    fn saying(mut self, answer: &[u8]) -> Self {
        let text: String = String::from_utf8_lossy(answer).chars().take(EXCERPT_CHARS).collect();
        if !text.is_empty() {
            self.detail = format!("{}; the provider said: {text}", self.detail);
        }
        self
    }
}

/// The query policy of `tenant`'s section for `provider`.
pub fn policy(tenant: &Tenant, provider: Provider) -> QueryPolicy {
    tenant.query_policy(provider)
}

/// The account a query is made for (its budget is its own): the merchant,
/// shop or credential the provider counts by.
pub fn account(tenant: &Tenant, provider: Provider) -> String {
    let key = match provider {
        Provider::Funpoint => tenant.funpoint.as_ref().and_then(|f| f.merchant_id.clone()),
        Provider::Oen => tenant.oen.as_ref().and_then(|o| o.merchant_id.clone()),
        Provider::Sinopac => tenant.sinopac.as_ref().and_then(|s| s.shop_no.clone()),
        Provider::TapPay => tenant.tappay.as_ref().and_then(|t| t.credentials.as_ref().map(|c| c.merchant_id.clone())),
    };
    format!("{}:{}", provider.name(), key.unwrap_or_else(|| format!("tenant {}", tenant.id)))
}

/// Asks `provider` about the callback `body` of `tenant` now.
pub async fn query(
    client: &reqwest::Client,
    config: &Config,
    tenant: &Tenant,
    provider: Provider,
    body: &[u8],
    content_type: Option<&str>,
) -> Verdict {
    let Some(parsed) = providers::of(provider).parse(body, content_type) else {
        return Verdict::contradicted("the stored callback no longer parses");
    };
    let api = config.apis.of(provider);
    match provider {
        Provider::Funpoint => funpoint::query(client, api, tenant, &parsed).await,
        Provider::Oen => oen::query(client, api, tenant, &parsed).await,
        Provider::Sinopac => sinopac::query(client, api, tenant, &parsed).await,
        Provider::TapPay => tappay::query(client, api, tenant, &parsed).await,
    }
}

/// What follows `verdict` for a callback under `policy`, asked for the
/// `tries + 1`-th time, with `retry` the delivery schedule.
pub fn next(policy: QueryPolicy, verdict: &Verdict, tries: u32, retry: &[Duration], now_ms: i64) -> AfterVerify {
    let mark = policy == QueryPolicy::Mark;
    match verdict.verified {
        Verified::Confirmed => AfterVerify::Deliver,
        // "mark" delivers whatever was found, saying it.
        _ if mark => AfterVerify::Deliver,
        Verified::Contradicted => AfterVerify::Reject,
        found => match retry.get(usize::try_from(tries).unwrap_or(usize::MAX)) {
            Some(wait) => {
                let wait = verdict.retry_after.map_or(*wait, |asked| asked.max(*wait));
                AfterVerify::RetryAt(now_ms.saturating_add(crate::store::ms(wait)))
            }
            None if found == Verified::NotYet => AfterVerify::Reject,
            None => AfterVerify::Dead,
        },
    }
}

/// The note kept for `verdict` (a final "not yet" says it was never confirmed).
pub fn note(verdict: Verdict, then: AfterVerify) -> VerifyNote {
    let detail = match (verdict.verified, then) {
        (Verified::NotYet, AfterVerify::Reject) => format!("never confirmed by the provider: {}", verdict.detail),
        _ => verdict.detail,
    };
    VerifyNote { verified: Some(verdict.verified), detail, then }
}

/// What `X-Payrelay-Verified` says of `callback` under `policy`.
pub fn header(policy: QueryPolicy, callback: &Claimed) -> &'static str {
    match (policy.queries(), callback.verified) {
        (false, _) | (true, None) => "none",
        (true, Some(Verified::Confirmed)) => "query",
        (true, Some(Verified::Contradicted)) => "contradicted",
        (true, Some(Verified::NotYet)) => "not_yet",
        (true, Some(Verified::Unavailable)) => "unavailable",
    }
}

/// What the admin API and the console show of a stored callback's
/// verification: the outcome (`none` for a tenant that does not query) and why.
pub fn shown(config: &Config, d: &crate::store::CallbackDetail) -> (&'static str, String) {
    if let Some((verified, detail)) = &d.verification {
        return (verified.as_str(), detail.clone());
    }
    let provider = d.summary.provider;
    let queries =
        d.summary.tenant.as_deref().and_then(|t| config.table.tenant(t)).is_some_and(|t| policy(t, provider).queries());
    if queries && d.summary.status == crate::store::Status::Pending {
        ("not_yet", "not asked yet".to_owned())
    } else {
        ("none", format!("not queried: the tenant's [tenants.{provider}] section does not query"))
    }
}

/// A provider's answer: status, `Retry-After`, body (bounded).
pub(crate) struct Answer {
    status: http::StatusCode,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

/// Sends `request` with the API's timeout; an error is a verdict of
/// "unavailable" that says why (never with a credential in it).
async fn send(request: reqwest::RequestBuilder, api: &ProviderApi) -> Result<Answer, Verdict> {
    let failed = |e: reqwest::Error| {
        Verdict::unavailable(if e.is_timeout() {
            format!("no answer within {:?}", api.timeout)
        } else if e.is_connect() {
            "cannot connect to the provider's API".to_owned()
        } else {
            "the provider's API call failed".to_owned()
        })
    };
    let mut response = request.timeout(api.timeout).send().await.map_err(failed)?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::delivery::parse_retry_after);
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(failed)? {
        let room = MAX_ANSWER.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room <= chunk.len() {
            break;
        }
    }
    let answer = Answer { status, retry_after, body };
    if status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
        let mut v = Verdict::unavailable(format!("HTTP {}", status.as_u16())).saying(&answer.body);
        v.retry_after = answer.retry_after;
        return Err(v);
    }
    Ok(answer)
}

/// `field` of the callback, or the verdict that it is missing.
fn claimed<'p>(parsed: &'p Parsed, field: &str) -> Result<std::borrow::Cow<'p, str>, Verdict> {
    parsed
        .field(field)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Verdict::contradicted(format!("the callback has no {field}")))
}

/// A JSON field as text (a string's contents, a number's digits).
fn json_text(v: &serde_json::Value, key: &str) -> Option<String> {
    match v.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Where the provider's `record` and the callback name a different order
/// (`order_field`, compared as text) or amount (as a number), the verdict.
fn disagreement(parsed: &Parsed, record: &serde_json::Value, order_field: &str, who: &str) -> Option<Verdict> {
    if let (Some(ours), Some(theirs)) = (parsed.field(order_field), json_text(record, order_field))
        && ours != theirs
    {
        return Some(Verdict::contradicted(format!("order {ours} in the callback, {theirs} at {who}")));
    }
    match (parsed.field("amount"), json_text(record, "amount")) {
        (Some(ours), Some(theirs)) if !same_amount(&ours, &theirs) => {
            Some(Verdict::contradicted(format!("amount {ours} in the callback, {theirs} at {who}")))
        }
        _ => None,
    }
}

/// Two amounts as numbers (`"100"`, `100`, `"100.0"`), or as text.
fn same_amount(a: &str, b: &str) -> bool {
    match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() < 0.005,
        _ => a.trim() == b.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULE: [Duration; 2] = [Duration::from_secs(60), Duration::from_secs(600)];

    #[test]
    fn a_verdict_leads_where_the_policy_says() {
        let (q, m) = (QueryPolicy::Query, QueryPolicy::Mark);
        assert_eq!(next(q, &Verdict::confirmed("ok"), 0, &SCHEDULE, 0), AfterVerify::Deliver);
        assert_eq!(next(q, &Verdict::contradicted("no"), 0, &SCHEDULE, 0), AfterVerify::Reject);
        assert_eq!(next(m, &Verdict::contradicted("no"), 0, &SCHEDULE, 0), AfterVerify::Deliver);
        assert_eq!(next(q, &Verdict::not_yet("?"), 0, &SCHEDULE, 1_000), AfterVerify::RetryAt(61_000));
        assert_eq!(next(q, &Verdict::unavailable("5xx"), 1, &SCHEDULE, 0), AfterVerify::RetryAt(600_000));
        assert_eq!(next(q, &Verdict::not_yet("?"), 2, &SCHEDULE, 0), AfterVerify::Reject);
        assert_eq!(next(q, &Verdict::unavailable("5xx"), 2, &SCHEDULE, 0), AfterVerify::Dead);
        let mut slow = Verdict::unavailable("429");
        slow.retry_after = Some(Duration::from_secs(1800));
        assert_eq!(next(q, &slow, 0, &SCHEDULE, 0), AfterVerify::RetryAt(1_800_000), "Retry-After is honoured");
        let final_note = note(Verdict::not_yet("not found"), AfterVerify::Reject);
        assert!(final_note.detail.starts_with("never confirmed"), "{}", final_note.detail);
    }

    #[test]
    fn amounts_compare_as_numbers() {
        assert!(same_amount("100", "100.0") && same_amount(" 5 ", "5"));
        assert!(!same_amount("100", "1000") && !same_amount("abc", "abd"));
    }
}
