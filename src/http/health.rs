//! Liveness (`/healthz`: the process runs) and readiness (`/readyz`:
//! storage answers, so callbacks can be acknowledged).

use std::time::Duration;

use axum::extract::State;
use http::StatusCode;

use super::AppState;

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match tokio::time::timeout(Duration::from_secs(2), state.store().ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready: storage does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "storage unavailable")
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage unavailable"),
    }
}
