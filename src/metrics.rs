//! Prometheus metrics (SPEC §5), recorded with the `metrics` crate and
//! rendered by its Prometheus exporter on `GET /metrics`. Names:
//!
//! - `payrelay_http_requests_total{route,status}` — route is the matched
//!   path template (`/{provider}/notify`), never a raw path.
//! - `payrelay_callbacks_received_total{provider,tenant,outcome}` — outcome
//!   `stored`, `duplicate`, `conflict`, `rejected`, `unroutable`, `limited`
//!   (over `refused_per_minute`), `unparseable`, `storage_error`; tenant `-`
//!   when none.
//! - `payrelay_deliveries_total{provider,tenant}` (delivered),
//!   `payrelay_delivery_failures_total{provider,tenant}` (failed attempts),
//!   `payrelay_callbacks_dead_total{provider,tenant}`.
//! - `payrelay_delivery_attempt_seconds{provider}` — histogram.
//! - `payrelay_callbacks{status}` and `payrelay_oldest_pending_age_seconds`
//!   — gauges read from the store at each scrape.
//! - `payrelay_config_reloads_total{result="ok"|"error"}`.
//! - `payrelay_connections_refused_total`, `payrelay_log_lines_dropped_total`.
//!
//! Plain recording functions, a leaf of the module tree; the HTTP side
//! (the `/metrics` route, the request counter) is `http::metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::store::{Stats, Status, now_ms};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once (several apps in one test
/// process share it). `None` if another recorder was installed first.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("payrelay_delivery_attempt_seconds".to_owned()),
                    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
                )
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .as_ref()
}

pub fn callback_received(provider: &str, tenant: Option<&str>, outcome: &'static str) {
    metrics::counter!(
        "payrelay_callbacks_received_total",
        "provider" => provider.to_owned(),
        "tenant" => tenant.unwrap_or("-").to_owned(),
        "outcome" => outcome,
    )
    .increment(1);
}

/// A connection closed at once because `server.max_connections` were open.
pub fn connection_refused() {
    metrics::counter!("payrelay_connections_refused_total").increment(1);
}

/// A log line dropped because the log queue was full (stderr not drained).
pub fn log_line_dropped() {
    metrics::counter!("payrelay_log_lines_dropped_total").increment(1);
}

/// One delivery attempt's outcome and duration.
pub fn attempt(provider: &str, tenant: &str, delivered: bool, dead: bool, took: Duration) {
    let labels = [("provider", provider.to_owned()), ("tenant", tenant.to_owned())];
    if delivered {
        metrics::counter!("payrelay_deliveries_total", &labels).increment(1);
    } else {
        metrics::counter!("payrelay_delivery_failures_total", &labels).increment(1);
    }
    if dead {
        metrics::counter!("payrelay_callbacks_dead_total", &labels).increment(1);
    }
    metrics::histogram!("payrelay_delivery_attempt_seconds", "provider" => provider.to_owned())
        .record(took.as_secs_f64());
}

/// One query of a provider's API about a callback (SPEC §8).
pub fn verification(provider: &str, tenant: &str, outcome: &'static str) {
    let labels = [("provider", provider.to_owned()), ("tenant", tenant.to_owned()), ("outcome", outcome.to_owned())];
    metrics::counter!("payrelay_verifications_total", &labels).increment(1);
}

/// A reconciliation that could not be done (`ledger_write`, `query`, `store`).
pub fn reconcile_error(kind: &'static str) {
    metrics::counter!("payrelay_reconcile_errors_total", "kind" => kind).increment(1);
}

/// A paid order whose notifications were all lost, found and made (SPEC §9).
pub fn reconciled_found(tenant: &str) {
    metrics::counter!("payrelay_reconciled_found_total", "tenant" => tenant.to_owned()).increment(1);
}

pub fn reload(ok: bool) {
    metrics::counter!("payrelay_config_reloads_total", "result" => if ok { "ok" } else { "error" }).increment(1);
}

/// The gauges read from the store at each scrape.
pub fn store_gauges(stats: &Stats) {
    for status in [Status::Pending, Status::Delivered, Status::Dead, Status::Rejected, Status::Unroutable] {
        let n = stats.by_status.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n);
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!("payrelay_callbacks", "status" => status.as_str()).set(n as f64);
    }
    #[allow(clippy::cast_precision_loss)]
    let age = stats.oldest_pending_ms.map_or(0.0, |at| (now_ms() - at).max(0) as f64 / 1000.0);
    metrics::gauge!("payrelay_oldest_pending_age_seconds").set(age);
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!("payrelay_orders_open").set(stats.open_orders as f64);
    #[allow(clippy::cast_precision_loss)]
    let age = stats.oldest_open_order_ms.map_or(0.0, |at| (now_ms() - at).max(0) as f64 / 1000.0);
    metrics::gauge!("payrelay_oldest_open_order_age_seconds").set(age);
}
