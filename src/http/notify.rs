//! `POST /{provider}/notify[/{tenant_id}]` (and the legacy Funpoint path):
//! the request read and the answer written in the provider's grammar; the
//! phases in between are `crate::relay`'s.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use super::{AppState, body, client_ip::client_ip};
use crate::providers::{self, Provider};
use crate::relay::{self, Answer, Inbound, Relay};
use crate::telemetry::scope;

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
/// limit's 413, the timeout's 408, a wrong method's 405. `provider` is
/// [`notify_provider`] of the request's path.
pub fn in_grammar(provider: Option<&'static dyn Provider>, response: Response) -> Response {
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
pub fn notify_provider(path: &str) -> Option<&'static dyn Provider> {
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

/// The HTTP side of a notification: read the body (within the provider's
/// own limit), run the relay's phases, answer in the provider's grammar.
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
    scope::record(scope::Field::Provider, provider.name());
    let limit = providers::body_limit(provider, &config.notify_limits);
    let body = match body::read_limited(Body::new(body_stream), limit).await {
        Ok(b) => b,
        Err(body::BodyError::TooLarge) => return error(provider, StatusCode::PAYLOAD_TOO_LARGE, "Request Too Large"),
        Err(body::BodyError::Unreadable) => return error(provider, StatusCode::BAD_REQUEST, "Bad Request"),
    };
    let relay = Relay {
        config,
        worker: state.worker(),
        handoff: state.handoff(),
        refused: state.refused_throttle(),
        recent: state.recent(),
    };
    let inbound = Inbound { provider, content_type, body, remote, path_tenant };
    match phases(&relay, &inbound).await {
        Answer::Ack => ack(provider),
        Answer::Refuse(status, message) => error(provider, status, &message),
    }
}

/// parse → route → verify → store → acknowledge; the first refusal answers.
async fn phases(relay: &Relay<'_>, inbound: &Inbound) -> Answer {
    let parsed = match relay::parse(inbound) {
        Ok(p) => p,
        Err(answer) => return answer,
    };
    let tenant = match relay::route(relay, inbound, &parsed).await {
        Ok(t) => t,
        Err(answer) => return answer,
    };
    scope::record(scope::Field::Tenant, tenant.id.as_str());
    let simulated = match relay::verify(relay, inbound, tenant, &parsed).await {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    match relay::store(relay, inbound, tenant, &parsed, simulated).await {
        Ok((accepted, pending)) => relay::acknowledge(relay, inbound, tenant, &parsed, accepted, pending).await,
        Err(answer) => answer,
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
