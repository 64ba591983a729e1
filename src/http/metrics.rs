//! The HTTP side of the metrics: `GET /metrics` (Prometheus text, with the
//! store's gauges refreshed first) and the middleware counting every
//! request by route template and status. Recording lives in `crate::metrics`.

use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use super::AppState;

/// Counts every request by its route template and answer status.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let response = next.run(req).await;
    crate::metrics::http_request(route.as_ref().map_or("unmatched", MatchedPath::as_str), response.status());
    response
}

/// `GET /metrics`: the store's gauges, refreshed, then everything.
pub async fn render(State(state): State<AppState>) -> Response {
    let Some(handle) = crate::metrics::handle() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "metrics recorder not installed\n").into_response();
    };
    match tokio::time::timeout(Duration::from_secs(2), state.store().stats()).await {
        Ok(Ok(stats)) => crate::metrics::store_gauges(&stats),
        Ok(Err(e)) => tracing::warn!(error = %e, "metrics: storage does not answer"),
        Err(_) => tracing::warn!("metrics: storage did not answer in time"),
    }
    let mut response = handle.render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}
