//! `POST /{provider}/notify[/{tenant_id}]` (and the legacy Funpoint path):
//! parse → route → verify → store → acknowledge (→ deliver inline for
//! `ack = "delivered"`). Nothing is acknowledged before it is committed.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};

use super::{AppState, body, client_ip::client_ip};
use crate::config::AckMode;
use crate::delivery;
use crate::providers::{self, Provider};
use crate::routing::RouteError;
use crate::store::{Accepted, Claimed, DedupKey, NewCallback, Status};

pub async fn by_path(State(state): State<AppState>, Path(provider): Path<String>, req: Request) -> Response {
    match providers::by_name(&provider) {
        Some(p) => notify(&state, p, None, req).await,
        None => super::not_found().await.into_response(),
    }
}

pub async fn by_path_tenant(
    State(state): State<AppState>,
    Path((provider, tenant)): Path<(String, String)>,
    req: Request,
) -> Response {
    match providers::by_name(&provider) {
        Some(p) => notify(&state, p, Some(tenant), req).await,
        None => super::not_found().await.into_response(),
    }
}

/// The PHP original's notification path: Funpoint, routed by suffix.
pub async fn legacy_funpoint(State(state): State<AppState>, req: Request) -> Response {
    match providers::by_name("funpoint") {
        Some(p) => notify(&state, p, None, req).await,
        None => super::not_found().await.into_response(),
    }
}

/// Marks an answer as already in the provider's grammar.
#[derive(Clone, Copy)]
struct InGrammar;

/// Every error answered on a notify path is in the provider's grammar
/// (SPEC §4), including those a layer or the router produced: the body
/// limit's 413, the timeout's 408, a wrong method's 405.
pub async fn in_grammar(req: Request, next: axum::middleware::Next) -> Response {
    let provider = notify_provider(req.uri().path());
    let response = next.run(req).await;
    let Some(p) = provider else { return response };
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || response.extensions().get::<InGrammar>().is_some() {
        return response;
    }
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "Request Too Large",
        StatusCode::REQUEST_TIMEOUT => "Request Timeout",
        StatusCode::METHOD_NOT_ALLOWED => "Method Not Allowed",
        other => other.canonical_reason().unwrap_or("Error"),
    };
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut answer = error(p, status, message);
    if let Some(allow) = allow {
        answer.headers_mut().insert(header::ALLOW, allow);
    }
    answer
}

/// The provider whose notify path this is, if it is one.
fn notify_provider(path: &str) -> Option<&'static dyn Provider> {
    if path == super::LEGACY_NOTIFY {
        return providers::by_name("funpoint");
    }
    let mut segments = path.strip_prefix('/')?.split('/');
    let (name, notify) = (segments.next()?, segments.next()?);
    (notify == "notify" && segments.nth(1).is_none()).then(|| providers::by_name(name)).flatten()
}

fn answer(provider: &dyn Provider, status: StatusCode, text: String) -> Response {
    let mut response = (status, text).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(provider.answer_content_type()));
    response.extensions_mut().insert(InGrammar);
    response
}

fn error(provider: &dyn Provider, status: StatusCode, message: &str) -> Response {
    answer(provider, status, provider.error(message))
}

fn ack(provider: &dyn Provider) -> Response {
    let (status, text) = provider.ack();
    answer(provider, status, text)
}

/// What a notify request brought, before it is routed.
struct Inbound {
    provider: &'static dyn Provider,
    content_type: Option<String>,
    body: Bytes,
    remote: Option<std::net::IpAddr>,
    path_tenant: Option<String>,
}

impl Inbound {
    fn row(&self, status: Status, tenant: Option<String>, reason: Option<String>) -> NewCallback {
        NewCallback {
            provider: self.provider.name(),
            tenant,
            status,
            reason,
            content_type: self.content_type.clone(),
            body: self.body.clone(),
            remote_addr: self.remote.map(|ip| ip.to_string()),
            simulated: false,
            dedup: None,
            path_tenant: self.path_tenant.clone(),
            lease: None,
        }
    }
}

async fn notify(
    state: &AppState,
    provider: &'static dyn Provider,
    path_tenant: Option<String>,
    req: Request,
) -> Response {
    let (parts, body_stream) = req.into_parts();
    let config = state.config();
    let remote =
        client_ip(&parts.headers, parts.extensions.get::<ConnectInfo<SocketAddr>>(), &config.server.trusted_proxies);
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let name = provider.name();
    let span = tracing::Span::current();
    span.record("provider", name);

    // parse (within the provider's own body limit)
    let limit = providers::body_limit(provider, &config.notify_limits);
    let bytes: Bytes = match body::read_limited(Body::new(body_stream), limit).await {
        Ok(b) => b,
        Err(body::BodyError::TooLarge) => return error(provider, StatusCode::PAYLOAD_TOO_LARGE, "Request Too Large"),
        Err(body::BodyError::Unreadable) => return error(provider, StatusCode::BAD_REQUEST, "Bad Request"),
    };
    let Some(parsed) = provider.parse(&bytes, content_type.as_deref()) else {
        tracing::info!(provider = name, "unparseable callback refused");
        crate::metrics::callback_received(name, None, "unparseable");
        return error(provider, StatusCode::BAD_REQUEST, "Bad Request");
    };
    let inbound = Inbound { provider, content_type, body: bytes, remote, path_tenant };

    // route
    let tenant = match provider.route(&config.table, &parsed, inbound.path_tenant.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            let message = providers::route_message(&e);
            let (status, tenant) = match &e {
                RouteError::TenantMismatch { tenant, .. } => (Status::Rejected, Some(tenant.clone())),
                _ => (Status::Unroutable, None),
            };
            tracing::warn!(provider = name, outcome = status.as_str(), reason = %e, "callback not routed");
            if !keep(state, inbound.row(status, tenant, Some(e.to_string()))).await {
                return error(provider, StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
            }
            return error(provider, StatusCode::BAD_REQUEST, &message);
        }
    };
    let tenant_id = tenant.id.to_string();
    span.record("tenant", tenant_id.as_str());

    // verify
    if let Err(rejection) = provider.verify(tenant, &parsed) {
        tracing::warn!(provider = name, tenant = %tenant_id, reason = rejection.message, "callback rejected");
        if !keep(state, inbound.row(Status::Rejected, Some(tenant_id), Some(rejection.message.to_owned()))).await {
            return error(provider, StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
        }
        return error(provider, StatusCode::BAD_REQUEST, rejection.message);
    }
    let simulated = provider.simulated(&parsed);
    if simulated && tenant.drop_simulated {
        tracing::info!(provider = name, tenant = %tenant_id, "simulated payment dropped (drop_simulated)");
        let reason = "simulated payment dropped (drop_simulated)".to_owned();
        keep(state, inbound.row(Status::Rejected, Some(tenant_id), Some(reason))).await;
        // Answered as accepted, so that the provider does not resend it.
        return ack(provider);
    }

    // store
    let inline = tenant.ack == AckMode::Delivered;
    let lease = config.storage.lease;
    let mut pending = inbound.row(Status::Pending, Some(tenant_id.clone()), None);
    pending.simulated = simulated;
    pending.dedup = providers::tenant_dedup_key(provider, tenant, &parsed)
        .map(|key| DedupKey { key, window: config.delivery.dedup_window });
    // Leased to this instance from the start: the first attempt is made
    // here (handed to the worker, or inline) without a claim.
    pending.lease = Some((state.instance_id().to_owned(), lease));
    let accepted = match state.store().accept(pending.clone()).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(provider = name, tenant = %tenant_id, error = %e, "cannot store the callback; answering so that the provider resends");
            crate::metrics::callback_received(name, Some(&tenant_id), "storage_error");
            return error(provider, StatusCode::SERVICE_UNAVAILABLE, "Storage unavailable");
        }
    };

    // acknowledge (and deliver inline)
    match accepted {
        Accepted::Stored { id, seq } => {
            crate::metrics::callback_received(name, Some(&tenant_id), "stored");
            span.record("delivery", id.as_str());
            let claimed = Claimed {
                seq,
                id,
                provider: name.to_owned(),
                tenant: pending.tenant,
                content_type: pending.content_type,
                body: pending.body,
                remote_addr: pending.remote_addr,
                simulated,
                attempts: 0,
            };
            if !inline {
                state.hand_off(claimed);
                return ack(provider);
            }
            deliver_inline(state, provider, claimed, config.delivery.inline_timeout).await
        }
        Accepted::Duplicate { id, status } => {
            span.record("delivery", id.as_str());
            if let Some(answer) = conflicting(state, &inbound, &parsed, &tenant_id, &id).await {
                return answer;
            }
            crate::metrics::callback_received(name, Some(&tenant_id), "duplicate");
            tracing::debug!(original = status.as_str(), "duplicate callback");
            if status == Status::Dead {
                // The provider still cares and the tenant may be back: the
                // resend brings the dead original back into the queue.
                match state.store().requeue(&id).await {
                    Ok(true) => tracing::info!(delivery = %id, "a resend brought a dead callback back"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "cannot requeue the dead original");
                        return error(provider, StatusCode::SERVICE_UNAVAILABLE, "Storage unavailable");
                    }
                }
            }
            if !inline || !matches!(status, Status::Pending | Status::Dead) {
                return ack(provider);
            }
            // The provider resends because the tenant had not taken it yet.
            // Only an attempt that is due anyway is made now (a resend
            // cannot burn the retry schedule); the answer follows it.
            match state.store().claim_one(&id, state.instance_id(), lease).await {
                Ok(Some(claimed)) => deliver_inline(state, provider, claimed, config.delivery.inline_timeout).await,
                _ => error(provider, StatusCode::SERVICE_UNAVAILABLE, "Tenant unavailable"),
            }
        }
    }
}

/// A "duplicate" that differs from its original in a field that matters
/// (an amount, an order id) is no resend: it is kept as `rejected` for the
/// operator (and acknowledged: it is on disk, and a resend would change
/// nothing). `None`: a plain duplicate.
async fn conflicting(
    state: &AppState,
    inbound: &Inbound,
    parsed: &providers::Parsed,
    tenant_id: &str,
    original_id: &str,
) -> Option<Response> {
    let provider = inbound.provider;
    if provider.conflict_fields().is_empty() {
        return None;
    }
    let original = match state.store().get(original_id).await {
        Ok(Some(o)) => o,
        Ok(None) => return None,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the original of a duplicate");
            return Some(error(provider, StatusCode::SERVICE_UNAVAILABLE, "Storage unavailable"));
        }
    };
    let before = provider.parse(&original.body, original.content_type.as_deref())?;
    let field = providers::conflict(provider, parsed, &before)?;
    let reason = format!("conflicts with callback {original_id}: {field} differs");
    tracing::warn!(
        provider = provider.name(),
        tenant = tenant_id,
        original = original_id,
        field,
        "conflicting duplicate kept for the operator"
    );
    keep(state, inbound.row(Status::Rejected, Some(tenant_id.to_owned()), Some(reason))).await;
    crate::metrics::callback_received(provider.name(), Some(tenant_id), "conflict");
    Some(ack(provider))
}

/// Stores a callback that will not be delivered (rejected, unroutable), for
/// the operator; its answer does not depend on this write. `false` when the
/// source address has used up its allowance of refused callbacks: nothing
/// is stored, and the caller answers 429. An unroutable callback is not
/// kept either while young unroutable rows fill their caps (see the purger).
async fn keep(state: &AppState, callback: NewCallback) -> bool {
    let ip = callback.remote_addr.as_deref().and_then(|a| a.parse().ok());
    if !state.refused_throttle().allow(ip) {
        crate::metrics::callback_received(callback.provider, callback.tenant.as_deref(), "limited");
        tracing::warn!(
            provider = callback.provider,
            remote = callback.remote_addr.as_deref().unwrap_or("-"),
            "refused callbacks from this address are over server.refused_per_minute; not kept"
        );
        return false;
    }
    crate::metrics::callback_received(callback.provider, callback.tenant.as_deref(), callback.status.as_str());
    if callback.status == Status::Unroutable && state.unroutable_full() {
        tracing::warn!(
            provider = callback.provider,
            "unroutable callbacks fill storage.keep_unroutable(_bytes) with rows younger than unroutable_min_age; this one is not kept"
        );
        return true;
    }
    if let Err(e) = state.store().accept(callback).await {
        tracing::warn!(error = %e, "cannot keep a refused callback");
    }
    true
}

/// `ack = "delivered"`: the first attempt runs now, in its own task (so it
/// completes and is recorded even if this request is cut short), and the
/// provider hears `1|OK` only if the tenant took it within `inline_timeout`.
async fn deliver_inline(
    state: &AppState,
    provider: &dyn Provider,
    claimed: Claimed,
    inline_timeout: Duration,
) -> Response {
    let worker = state.worker().clone();
    let attempt = tokio::spawn(async move { delivery::deliver(&worker, claimed, None).await });
    match tokio::time::timeout(inline_timeout, attempt).await {
        Ok(Ok(true)) => ack(provider),
        _ => error(provider, StatusCode::SERVICE_UNAVAILABLE, "Tenant unavailable"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_paths_name_their_provider() {
        let name = |p: &str| notify_provider(p).map(|p| p.name());
        assert_eq!(name("/funpoint/notify"), Some("funpoint"));
        assert_eq!(name("/oen/notify/shop"), Some("oen"));
        assert_eq!(name(crate::http::LEGACY_NOTIFY), Some("funpoint"));
        assert_eq!(name("/tappay/notify/shop/extra"), None);
        assert_eq!(name("/paypal/notify"), None);
        assert_eq!(name("/funpoint/checkout"), None);
        assert_eq!(name("/"), None);
    }
}
