//! The operator's side (SPEC §5): a JSON API and a server-rendered console
//! over the store, with replay. Off (404) unless `[admin].token` is set;
//! then every request needs `Authorization: Bearer <token>` or HTTP Basic
//! with the token as password (any user name) — anything else is 401.
//! Browsers log in with their own Basic prompt; the console's forms also
//! refuse cross-site posts.

mod api;
mod console;
mod orders;
mod orders_page;
mod replay;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use subtle::ConstantTimeEq;

use std::net::SocketAddr;

use axum::extract::ConnectInfo;

use super::AppState;
use super::client_ip::client_ip;

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/admin", get(console::list))
        .route("/admin/style.css", get(console::style))
        .route("/admin/callbacks/{id}", get(console::detail))
        .route("/admin/callbacks/{id}/replay", post(console::replay))
        .route("/admin/tenants/{tenant}/replay-dead", post(console::replay_dead))
        .route("/admin/orders", get(orders_page::list))
        .route("/admin/orders/{tenant}/{merchant_trade_no}", get(orders_page::detail))
        .route("/admin/api/orders", get(orders::list))
        .route("/admin/api/orders/{tenant}/{merchant_trade_no}", get(orders::detail))
        .route("/admin/api/callbacks", get(api::list))
        .route("/admin/api/callbacks/{id}", get(api::detail))
        .route("/admin/api/callbacks/{id}/replay", post(api::replay))
        .route("/admin/api/tenants/{tenant}/replay-dead", post(api::replay_dead))
        .route_layer(middleware::from_fn_with_state(state, guard))
}

/// 404 when the admin side is off, 401 without the token, 403 for a
/// cross-site form post; otherwise on to the handler.
/// Wrong tokens are logged with the address they came from; an address that
/// sends more than a few a minute is answered 429 for a minute without its
/// token being looked at. No admin answer is cached (they hold raw bodies).
async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let config = state.config();
    let Some(token) = config.admin.token.as_ref().map(|t| t.expose().to_owned()) else {
        return super::not_found().await.into_response();
    };
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>();
    let ip = client_ip(req.headers(), peer, &config.server.trusted_proxies);
    let scheme = scheme(req.headers(), peer, &config.server.trusted_proxies);
    drop(config);
    let throttle = state.admin_failure_throttle();
    if throttle.is_blocked(ip) {
        return no_store(
            (StatusCode::TOO_MANY_REQUESTS, "too many wrong admin tokens; try again in a minute\n").into_response(),
        );
    }
    if !authorized(req.headers(), &token) {
        let presented = req.headers().contains_key(header::AUTHORIZATION);
        if presented {
            tracing::warn!(remote = %ip.map_or_else(|| "-".to_owned(), |ip| ip.to_string()), "admin: wrong token");
            throttle.fail(ip);
        }
        let mut response = (StatusCode::UNAUTHORIZED, "admin token required\n").into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Basic realm="payrelay admin", charset="UTF-8""#),
        );
        return no_store(response);
    }
    if req.method() == Method::POST && cross_site(req.headers(), scheme) {
        return no_store((StatusCode::FORBIDDEN, "cross-site admin request refused\n").into_response());
    }
    no_store(next.run(req).await)
}

fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The scheme the browser used: what a trusted proxy says it was
/// (`X-Forwarded-Proto`), else plain http (payrelay itself serves no TLS).
fn scheme(headers: &HeaderMap, peer: Option<&ConnectInfo<SocketAddr>>, trusted: &[ipnet::IpNet]) -> &'static str {
    let from_proxy = peer.is_some_and(|p| trusted.iter().any(|net| net.contains(&p.0.ip())));
    match headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) {
        Some(p) if from_proxy && p.trim().eq_ignore_ascii_case("https") => "https",
        _ => "http",
    }
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let given = if let Some(bearer) = strip_scheme(value, "Bearer") {
        bearer.trim().as_bytes().to_vec()
    } else if let Some(basic) = strip_scheme(value, "Basic") {
        let Ok(decoded) = STANDARD.decode(basic.trim()) else { return false };
        match decoded.iter().position(|&b| b == b':') {
            Some(colon) => decoded[colon + 1..].to_vec(),
            None => return false,
        }
    } else {
        return false;
    };
    !token.is_empty() && bool::from(given.ct_eq(token.as_bytes()))
}

/// The credentials after a case-insensitive auth scheme and a space.
fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = value.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then_some(rest)
}

/// A browser's POST from another site (Basic credentials are sent along
/// with those too): refused. Tools that send neither header pass.
pub(crate) fn cross_site(headers: &HeaderMap, scheme: &str) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    match (headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()), headers.get(header::HOST)) {
        (Some(origin), Some(host)) => {
            let host = host.to_str().unwrap_or_default();
            origin != format!("{scheme}://{host}")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn bearer_or_basic_with_the_token_as_password() {
        let token = "s3cret-token";
        assert!(authorized(&with("Bearer s3cret-token"), token));
        assert!(authorized(&with("bearer s3cret-token"), token));
        assert!(authorized(&with(&format!("Basic {}", STANDARD.encode("ops:s3cret-token"))), token));
        assert!(authorized(&with(&format!("Basic {}", STANDARD.encode(":s3cret-token"))), token));
        assert!(!authorized(&with(&format!("Basic {}", STANDARD.encode("s3cret-token"))), token));
        assert!(!authorized(&with(&format!("Basic {}", STANDARD.encode("ops:s3cret-toke"))), token));
        assert!(!authorized(&with("Bearer s3cret-token-and-more"), token));
        assert!(!authorized(&with("Token s3cret-token"), token));
        assert!(!authorized(&HeaderMap::new(), token));
    }

    #[test]
    fn cross_site_posts_are_spotted() {
        let mut h = HeaderMap::new();
        assert!(!cross_site(&h, "http"), "curl sends neither header");
        h.insert(header::HOST, HeaderValue::from_static("gw.example:8080"));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://gw.example:8080"));
        assert!(!cross_site(&h, "http"));
        assert!(cross_site(&h, "https"), "the scheme counts");
        h.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(cross_site(&h, "http"));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(!cross_site(&h, "http"), "the browser's own word wins");
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&h, "http"));
    }
}
