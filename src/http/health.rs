//! Liveness: 200 while the process runs.

pub async fn healthz() -> &'static str {
    "ok"
}
