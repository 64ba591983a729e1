//! One delivery attempt: the exact stored bytes to the tenant's notify URL
//! with the `X-Payrelay-*` (and, with a forward secret, `webhook-*`)
//! headers; the answer judged by the provider's rule.

use std::time::{Duration, Instant};

use http::StatusCode;

use super::schedule::{next_outcome, parse_retry_after};
use super::sign::sign;
use crate::config::Config;
use crate::providers;
use crate::store::{AttemptRecord, Claimed, Outcome, now_ms};

/// Most of a tenant's answer read; the excerpt kept is shorter still.
const MAX_ANSWER: usize = 64 * 1024;
const EXCERPT_CHARS: usize = 200;

struct Answer {
    status: StatusCode,
    body: Vec<u8>,
    retry_after: Option<Duration>,
}

/// Makes attempt `callback.attempts + 1` and says what follows it.
pub async fn attempt(client: &reqwest::Client, config: &Config, callback: &Claimed) -> (AttemptRecord, Outcome) {
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

async fn send(client: &reqwest::Client, config: &Config, callback: &Claimed, n: u32) -> Result<Answer, String> {
    let provider = providers::of(callback.provider);
    let tenant_id = callback.tenant.as_ref().map(|t| t.as_str()).ok_or("the callback has no tenant")?;
    let tenant =
        config.table.tenant(tenant_id).ok_or_else(|| format!("tenant {tenant_id:?} is not in the routing table"))?;
    let path = provider
        .notify_path(tenant)
        .ok_or_else(|| format!("tenant {tenant_id:?} no longer takes {} callbacks", provider.name()))?;
    let url = tenant.base_url.join(path);
    let verified = crate::verify::header(crate::verify::policy(tenant, callback.provider), callback);

    let mut request = client
        .post(&url)
        .timeout(config.delivery.timeout)
        .header(
            http::header::CONTENT_TYPE,
            provider.delivery_content_type(callback.content_type.as_deref(), &callback.body),
        )
        .header("x-payrelay-delivery", callback.id.as_str())
        .header("x-payrelay-attempt", n.to_string())
        .header("x-payrelay-verified", verified)
        .header("x-payrelay-event", event(provider, callback))
        .header("x-payrelay-source", callback.source.as_deref().unwrap_or("provider"));
    if let Some(addr) = &callback.remote_addr {
        request = request.header("x-forwarded-for", addr);
    }
    if callback.simulated {
        request = request.header("x-payrelay-simulated", "1");
    }
    if let Some(secret) = &tenant.forward_secret {
        request = signed(request, secret, callback, verified);
    }
    let mut response = request.body(callback.body.clone()).send().await.map_err(|e| describe(&e, config))?;
    let status = response.status();
    let retry_after =
        response.headers().get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_ANSWER.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if room <= chunk.len() {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => return Err(describe(&e, config)),
        }
    }
    Ok(Answer { status, body, retry_after })
}

/// The Standard Webhooks headers. What the query found is part of the
/// signed id, so that a shop can trust X-Payrelay-Verified (SPEC §8):
/// `<id>.<verified>`.
fn signed(
    request: reqwest::RequestBuilder,
    secret: &crate::domain::ForwardSecret,
    callback: &Claimed,
    verified: &str,
) -> reqwest::RequestBuilder {
    let id = match verified {
        "none" => callback.id.to_string(),
        v => format!("{}.{v}", callback.id),
    };
    let timestamp = now_ms() / 1000;
    request
        .header("webhook-signature", sign(secret, &id, timestamp, &callback.body))
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
}

/// What the callback means to the shop (SPEC §9), read from its body.
fn event(provider: &dyn providers::Provider, callback: &Claimed) -> &'static str {
    provider.parse(&callback.body, callback.content_type.as_deref()).map_or("other", |p| provider.event(&p))
}

fn describe(e: &reqwest::Error, config: &Config) -> String {
    if e.is_timeout() {
        format!("timed out after {:?}", config.delivery.timeout)
    } else if e.is_connect() {
        format!("connection failed: {}", crate::telemetry::chain(e))
    } else {
        crate::telemetry::chain(e)
    }
}

fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(EXCERPT_CHARS).collect()
}
