//! One delivery attempt: the exact stored bytes to the tenant's notify URL
//! with the `X-Payrelay-*` (and, with a forward secret, `webhook-*`)
//! headers; the answer judged by the provider's rule.

use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::schedule::{next_outcome, parse_retry_after};
use super::sign::sign;
use crate::config::Config;
use crate::outbound::{Failure, Outbound, Post};
use crate::providers;
use crate::store::{AttemptRecord, Claimed, Outcome, now_ms};

/// Most of a tenant's answer read; the excerpt kept is shorter still.
const MAX_ANSWER: usize = 64 * 1024;
const EXCERPT_CHARS: usize = 200;

// Header names made once, at compile time: a `&str` name is parsed and
// checked at every insert (2.6k instructions a delivery; issue 14).
const DELIVERY: HeaderName = HeaderName::from_static("x-payrelay-delivery");
const ATTEMPT: HeaderName = HeaderName::from_static("x-payrelay-attempt");
const VERIFIED: HeaderName = HeaderName::from_static("x-payrelay-verified");
const EVENT: HeaderName = HeaderName::from_static("x-payrelay-event");
const SOURCE: HeaderName = HeaderName::from_static("x-payrelay-source");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const SIMULATED: HeaderName = HeaderName::from_static("x-payrelay-simulated");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");

struct Answer {
    status: StatusCode,
    body: Vec<u8>,
    retry_after: Option<Duration>,
}

/// Makes attempt `callback.attempts + 1` and says what follows it.
pub async fn attempt(client: &Outbound, config: &Config, callback: &Claimed) -> (AttemptRecord, Outcome) {
    let n = callback.attempts + 1;
    let at_ms = now_ms();
    let started = Instant::now();
    let result = send(client, config, callback, n).await;
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut record = AttemptRecord { n, at_ms, status_code: None, duration_ms, error: None, response_excerpt: None };
    let provider = Some(providers::of(callback.provider));
    let (took_it, retry_after) = match result {
        Ok(answer) => {
            record.status_code = Some(answer.status.as_u16());
            record.response_excerpt = Some(excerpt(&answer.body));
            let took = provider.is_some_and(|p| p.tenant_took_it(answer.status, &answer.body));
            if !took {
                record.error = Some(if answer.status.is_success() {
                    "the tenant's answer is not an acknowledgement".to_owned()
                } else {
                    format!("HTTP {}", answer.status.as_u16())
                });
            }
            (took, answer.retry_after)
        }
        Err(e) => {
            record.error = Some(e);
            (false, None)
        }
    };
    let outcome = if took_it {
        Outcome::Delivered
    } else {
        next_outcome(n, &config.delivery.retry, retry_after, now_ms(), fastrand::f64())
    };
    (record, outcome)
}

async fn send(client: &Outbound, config: &Config, callback: &Claimed, n: u32) -> Result<Answer, String> {
    let provider = providers::of(callback.provider);
    let tenant_id = callback.tenant.as_ref().map(|t| t.as_str()).ok_or("the callback has no tenant")?;
    let tenant =
        config.table.tenant(tenant_id).ok_or_else(|| format!("tenant {tenant_id:?} is not in the routing table"))?;
    let path = provider
        .notify_path(tenant)
        .ok_or_else(|| format!("tenant {tenant_id:?} no longer takes {} callbacks", provider.name()))?;
    let url = tenant.base_url.join(path);
    let verified = crate::verify::header(crate::verify::policy(tenant, callback.provider), callback);

    let mut headers = HeaderMap::with_capacity(12);
    let content_type = provider.delivery_content_type(callback.content_type.as_deref(), &callback.body);
    let content_type = HeaderValue::try_from(content_type).map_err(|_| "the content type cannot be sent".to_owned())?;
    headers.insert(http::header::CONTENT_TYPE, content_type);
    headers.insert(DELIVERY, value(callback.id.as_str())?);
    headers.insert(ATTEMPT, HeaderValue::from(n));
    headers.insert(VERIFIED, HeaderValue::from_static(verified));
    headers.insert(EVENT, HeaderValue::from_static(event(provider, callback)));
    headers.insert(SOURCE, value(callback.source.as_deref().unwrap_or("provider"))?);
    if let Some(addr) = &callback.remote_addr {
        headers.insert(X_FORWARDED_FOR, value(addr)?);
    }
    if callback.simulated {
        headers.insert(SIMULATED, HeaderValue::from_static("1"));
    }
    if let Some(secret) = &tenant.forward_secret {
        signed(&mut headers, secret, callback, verified)?;
    }
    let body = callback.body.clone();
    let call = Post { url: &url, headers, body, timeout: config.delivery.timeout, limit: MAX_ANSWER };
    let reply = client.post(call).await.map_err(|e| match e {
        Failure::Timeout(_) => format!("timed out after {:?}", config.delivery.timeout),
        other => other.to_string(),
    })?;
    let retry_after =
        reply.headers.get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
    Ok(Answer { status: reply.status, body: reply.body.into(), retry_after })
}

fn value(text: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(text).map_err(|_| format!("{text:?} cannot be sent in a header"))
}

/// The Standard Webhooks headers. What the query found is part of the
/// signed id, so that a shop can trust X-Payrelay-Verified (SPEC §8):
/// `<id>.<verified>`.
fn signed(
    headers: &mut HeaderMap,
    secret: &crate::domain::ForwardSecret,
    callback: &Claimed,
    verified: &str,
) -> Result<(), String> {
    let id = match verified {
        "none" => callback.id.to_string(),
        v => format!("{}.{v}", callback.id),
    };
    let timestamp = now_ms() / 1000;
    headers.insert(WEBHOOK_SIGNATURE, value(&sign(secret, &id, timestamp, &callback.body))?);
    headers.insert(WEBHOOK_ID, value(&id)?);
    headers.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
    Ok(())
}

/// What the callback means to the shop (SPEC §9): as the relay read it
/// when it came in (parsing the body again was a twentieth of a
/// notify-unique request, issue 14), else from its stored body.
fn event(provider: &dyn providers::Provider, callback: &Claimed) -> &'static str {
    callback.event.unwrap_or_else(|| {
        provider.parse(&callback.body, callback.content_type.as_deref()).map_or("other", |p| provider.event(&p))
    })
}

fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(EXCERPT_CHARS).collect()
}
