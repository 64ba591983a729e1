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

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasher as _, Hash as _, Hasher as _};
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Histogram, Label};
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
    let labels = [("provider", provider), ("tenant", tenant.unwrap_or("-")), ("outcome", outcome)];
    count("payrelay_callbacks_received_total", &labels);
}

/// A request answered: its route template (`unmatched` for none) and status.
pub fn http_request(route: &str, status: http::StatusCode) {
    count("payrelay_http_requests_total", &[("route", route), ("status", status.as_str())]);
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
    let labels = [("provider", provider), ("tenant", tenant)];
    count(if delivered { "payrelay_deliveries_total" } else { "payrelay_delivery_failures_total" }, &labels);
    if dead {
        count("payrelay_callbacks_dead_total", &labels);
    }
    HISTOGRAMS.with_borrow_mut(|kept| {
        kept.get("payrelay_delivery_attempt_seconds", &[("provider", provider)], |name, labels| {
            metrics::histogram!(name, labels)
        })
        .record(took.as_secs_f64());
    });
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

/// Adds one to counter `name` with `labels`.
fn count(name: &'static str, labels: &[(&'static str, &str)]) {
    COUNTERS
        .with_borrow_mut(|kept| kept.get(name, labels, |name, labels| metrics::counter!(name, labels)).increment(1));
}

/// Handles kept per thread at most; past it, the thread starts over.
const KEPT_HANDLES: usize = 4096;

thread_local! {
    static COUNTERS: RefCell<Handles<Counter>> = RefCell::new(Handles::default());
    static HISTOGRAMS: RefCell<Handles<Histogram>> = RefCell::new(Handles::default());
}

/// The handles of the series this thread recorded, by name and label
/// values: `metrics::counter!` with labels copies every value into a new
/// key and looks it up in the recorder's registry, a few thousand
/// instructions per callback (issue 14). Kept only once the recorder is
/// installed (before, a handle records nothing).
///
/// Hashed with foldhash, seeded per thread: the names and label values are
/// the gateway's own (route templates, provider and tenant ids, statuses),
/// and every entry is compared in full; SipHash over them (and again over
/// the `u64`) was ~450 instructions a lookup, several lookups a callback.
struct Handles<H> {
    by_hash: HashMap<u64, (&'static str, Vec<Label>, H), foldhash::fast::FixedState>,
    seed: foldhash::fast::RandomState,
}

impl<H> Default for Handles<H> {
    fn default() -> Self {
        Self { by_hash: HashMap::default(), seed: foldhash::fast::RandomState::default() }
    }
}

impl<H: Clone> Handles<H> {
    fn get(
        &mut self,
        name: &'static str,
        labels: &[(&'static str, &str)],
        register: impl FnOnce(&'static str, Vec<Label>) -> H,
    ) -> H {
        let mut hasher = self.seed.build_hasher();
        name.hash(&mut hasher);
        labels.hash(&mut hasher);
        let hash = hasher.finish();
        let same = |(n, l, _): &(&'static str, Vec<Label>, H)| {
            *n == name
                && l.len() == labels.len()
                && l.iter().zip(labels).all(|(a, (k, v))| a.key() == *k && a.value() == *v)
        };
        if let Some(kept) = self.by_hash.get(&hash).filter(|k| same(k)) {
            return kept.2.clone();
        }
        let owned: Vec<Label> = labels.iter().map(|(k, v)| Label::new(*k, (*v).to_owned())).collect();
        let handle = register(name, owned.clone());
        if HANDLE.get().is_some_and(Option::is_some) {
            if self.by_hash.len() >= KEPT_HANDLES {
                self.by_hash.clear();
            }
            self.by_hash.insert(hash, (name, owned, handle.clone()));
        }
        handle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the series of `name` whose labels are exactly `labels`.
    fn value(text: &str, name: &str, labels: &str) -> Option<f64> {
        let series = format!("{name}{{{labels}}} ");
        text.lines().find_map(|l| l.strip_prefix(&series)).and_then(|v| v.trim().parse().ok())
    }

    /// Through the handles kept per thread, every increment lands on its
    /// own series: exact counts from several threads, label values kept
    /// apart (a value is never taken for another with the same hash input
    /// split differently), histograms too.
    #[test]
    fn kept_handles_count_each_series_exactly() {
        let handle = handle().expect("the recorder");
        let threads: Vec<_> = (0..3)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..100 {
                        callback_received("kept-test", Some("ab"), "stored");
                        callback_received("kept-test", Some("a"), "stored");
                        callback_received("kept-testa", Some("b"), "stored");
                        attempt("kept-test", "ab", true, false, Duration::from_millis(3));
                    }
                    callback_received("kept-test", None, "unroutable");
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = handle.render();
        let received = "payrelay_callbacks_received_total";
        let series = |p: &str, t: &str, o: &str| {
            value(&text, received, &format!("provider=\"{p}\",tenant=\"{t}\",outcome=\"{o}\""))
        };
        assert_eq!(series("kept-test", "ab", "stored"), Some(300.0));
        assert_eq!(series("kept-test", "a", "stored"), Some(300.0));
        assert_eq!(series("kept-testa", "b", "stored"), Some(300.0));
        assert_eq!(series("kept-test", "-", "unroutable"), Some(3.0));
        let delivered = value(&text, "payrelay_deliveries_total", "provider=\"kept-test\",tenant=\"ab\"");
        assert_eq!(delivered, Some(300.0));
        let timed = value(&text, "payrelay_delivery_attempt_seconds_count", "provider=\"kept-test\"");
        assert_eq!(timed, Some(300.0));
    }
}
