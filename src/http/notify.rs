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

/// A notify request cut off by `request_timeout` (a body that never
/// finished) is answered 408 by the timeout layer; on a notify path that
/// answer is put in the provider's grammar too (SPEC §4: every error the
/// gateway answers there is).
pub async fn timeout_in_grammar(req: Request, next: axum::middleware::Next) -> Response {
    let provider = notify_provider(req.uri().path());
    let response = next.run(req).await;
    match provider {
        Some(p) if response.status() == StatusCode::REQUEST_TIMEOUT => {
            error(p, StatusCode::REQUEST_TIMEOUT, "Request Timeout")
        }
        _ => response,
    }
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
    response
}

fn error(provider: &dyn Provider, status: StatusCode, message: &str) -> Response {
    answer(provider, status, provider.error(message))
}

fn ack(provider: &dyn Provider) -> Response {
    let (status, text) = provider.ack();
    answer(provider, status, text)
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

    // parse
    let bytes: Bytes = match body::read(Body::new(body_stream)).await {
        Ok(b) => b,
        Err(body::BodyError::TooLarge) => return error(provider, StatusCode::PAYLOAD_TOO_LARGE, "Request Too Large"),
        Err(body::BodyError::Unreadable) => return error(provider, StatusCode::BAD_REQUEST, "Bad Request"),
    };
    let Some(parsed) = provider.parse(&bytes, content_type.as_deref()) else {
        tracing::info!(provider = name, "unparseable callback refused");
        crate::metrics::callback_received(name, None, "unparseable");
        return error(provider, StatusCode::BAD_REQUEST, "Bad Request");
    };
    let new = |status: Status, tenant: Option<String>, reason: Option<String>| NewCallback {
        provider: name,
        tenant,
        status,
        reason,
        content_type: content_type.clone(),
        body: bytes.clone(),
        remote_addr: remote.map(|ip| ip.to_string()),
        simulated: false,
        dedup: None,
        path_tenant: path_tenant.clone(),
        lease: None,
    };

    // route
    let tenant = match provider.route(&config.table, &parsed, path_tenant.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            let message = providers::route_message(&e);
            let (status, tenant) = match &e {
                RouteError::TenantMismatch { tenant, .. } => (Status::Rejected, Some(tenant.clone())),
                _ => (Status::Unroutable, None),
            };
            tracing::warn!(provider = name, outcome = status.as_str(), reason = %e, "callback not routed");
            keep(state, new(status, tenant, Some(e.to_string()))).await;
            return error(provider, StatusCode::BAD_REQUEST, &message);
        }
    };
    let tenant_id = tenant.id.to_string();
    span.record("tenant", tenant_id.as_str());

    // verify
    if let Err(rejection) = provider.verify(tenant, &parsed) {
        tracing::warn!(provider = name, tenant = %tenant_id, reason = rejection.message, "callback rejected");
        keep(state, new(Status::Rejected, Some(tenant_id), Some(rejection.message.to_owned()))).await;
        return error(provider, StatusCode::BAD_REQUEST, rejection.message);
    }
    let simulated = provider.simulated(&parsed);
    if simulated && tenant.drop_simulated {
        tracing::info!(provider = name, tenant = %tenant_id, "simulated payment dropped (drop_simulated)");
        keep(state, new(Status::Rejected, Some(tenant_id), Some("simulated payment dropped (drop_simulated)".into())))
            .await;
        // Answered as accepted, so that the provider does not resend it.
        return ack(provider);
    }

    // store
    let inline = tenant.ack == AckMode::Delivered;
    let lease = config.storage.lease;
    let mut pending = new(Status::Pending, Some(tenant_id.clone()), None);
    pending.simulated = simulated;
    pending.dedup = provider.dedup_key(&parsed).map(|key| DedupKey { key, window: config.delivery.dedup_window });
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
            crate::metrics::callback_received(name, Some(&tenant_id), "duplicate");
            span.record("delivery", id.as_str());
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
            if !inline || status != Status::Pending {
                return ack(provider);
            }
            // The provider resends because the tenant had not taken it yet:
            // try again now, and answer by the outcome.
            match state.store().claim_one(&id, state.instance_id(), lease).await {
                Ok(Some(claimed)) => deliver_inline(state, provider, claimed, config.delivery.inline_timeout).await,
                _ => error(provider, StatusCode::SERVICE_UNAVAILABLE, "Tenant unavailable"),
            }
        }
    }
}

/// Stores a callback that will not be delivered (rejected, unroutable), for
/// the operator. Its answer does not depend on this write.
async fn keep(state: &AppState, callback: NewCallback) {
    crate::metrics::callback_received(callback.provider, callback.tenant.as_deref(), callback.status.as_str());
    if let Err(e) = state.store().accept(callback).await {
        tracing::warn!(error = %e, "cannot keep a refused callback");
    }
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
    let task_state = state.clone();
    let attempt = tokio::spawn(async move { delivery::deliver(&task_state, claimed, None).await });
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
