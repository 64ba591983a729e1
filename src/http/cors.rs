//! CORS for the checkout-data path (SPEC §3.2), and nowhere else.
//!
//! Not tower-http's `CorsLayer`: SPEC wants a preflight answered 204 (the
//! layer answers 200), the allowed origins come from the live routing table
//! (swapped on reload), and `Vary: Origin` must be on every answer of the
//! path, errors from outer layers included.

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use super::{AppState, LEGACY_CHECKOUT_JSON};

const PATHS: [&str; 2] = ["/funpoint/checkout.json", LEGACY_CHECKOUT_JSON];

/// On a checkout-data path: the request's origin if it is one of a
/// tenant's (`Some(None)` for any other origin or none); `None` elsewhere.
pub fn origin_for(state: &AppState, req: &Request) -> Option<Option<HeaderValue>> {
    PATHS.contains(&req.uri().path()).then(|| allowed_origin(state, req.headers()))
}

/// Adds `Vary: Origin` to an answer of the checkout-data paths, and
/// `Access-Control-Allow-Origin` when the origin is one of a tenant's.
pub fn finish(response: &mut Response, allowed: Option<HeaderValue>) {
    let headers = response.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = allowed {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
}

/// `OPTIONS` on the checkout-data paths: 204, with the method and header
/// grants only for a tenant's origin (the allow-origin itself is added by
/// [`finish`]).
pub async fn preflight(State(state): State<AppState>, req: Request) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    if allowed_origin(&state, req.headers()).is_some() {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Content-Type"));
    }
    response
}

fn allowed_origin(state: &AppState, headers: &http::HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    state.config().table.is_any_tenant_origin(text).then(|| origin.clone())
}
