use tracing::field::Empty;
use tracing_subscriber::fmt::format::{self, JsonFields};

use super::*;
use crate::telemetry::{Lines as Written, PlainFields};

/// A request's life: lines before and after each record, every level a
/// request writes at, a message that spells a level, then a line after it.
fn request(record: &dyn Fn(Field, &str)) {
    tracing::info!("plain message");
    record(Field::Provider, "funpoint");
    tracing::warn!(code = 10_100_073, "refused: WARN INFO {}", "x");
    record(Field::Tenant, "shop \"a\"\n");
    tracing::error!(tenant = "t1", ok = true, "delivery failed");
    record(Field::Delivery, "cb_01");
    tracing::info!(only = "fields");
    tracing::debug!("hidden");
}

/// The lines written the old way (a span) and the new (a scope), by a
/// subscriber made by `subscriber` around a writer.
fn both(subscriber: impl Fn(Written, bool) -> tracing::Dispatch) -> (String, String) {
    let run = |scoped: bool| {
        let out = Written::default();
        tracing::dispatcher::with_default(&subscriber(out.clone(), scoped), || {
            if scoped {
                let mut scope = Some(Scope::new("POST", "/funpoint/notify", "7f1c"));
                within(&mut scope, || request(&record));
                assert_eq!(scope.map(|s| s.recorded.len()), Some(3), "the scope is taken back");
            } else {
                let span = tracing::info_span!(target: "payrelay::http", "request",
                    method = %"POST", path = %"/funpoint/notify", request_id = %"7f1c",
                    provider = Empty, tenant = Empty, delivery = Empty);
                let _in = span.enter();
                request(&|field, value| {
                    tracing::Span::current().record(field.name(), value);
                });
            }
            tracing::info!("after the request");
        });
        out.text()
    };
    (run(false), run(true))
}

#[test]
fn text_lines_are_the_spans() {
    let (span, scope) = both(|out, scoped| {
        let layer = tracing_subscriber::fmt().with_ansi(false).without_time().fmt_fields(PlainFields).with_writer(out);
        if scoped {
            let inner = format::format().with_ansi(false).without_time();
            layer.event_format(Scoped { inner, lines: LineFormat::Text }).finish().into()
        } else {
            layer.finish().into()
        }
    });
    assert_eq!(scope, span);
    assert_eq!(span.lines().count(), 5, "{span}");
    assert!(span.contains(
        r#" WARN request{method=POST path=/funpoint/notify request_id=7f1c provider="funpoint"}: payrelay::telemetry::scope::tests: refused: WARN INFO x code=10100073"#
    ), "{span}");
    assert!(span.ends_with(" INFO payrelay::telemetry::scope::tests: after the request\n"), "{span}");
}

#[test]
fn json_lines_are_the_spans() {
    let (span, scope) = both(|out, scoped| {
        let layer = tracing_subscriber::fmt().without_time().with_writer(out);
        let json = format::format().without_time().json().flatten_event(true).with_current_span(true);
        if scoped {
            let scoped = Scoped { inner: json, lines: LineFormat::Json };
            layer.fmt_fields(JsonFields::new()).event_format(scoped).finish().into()
        } else {
            layer.fmt_fields(JsonFields::new()).event_format(json).finish().into()
        }
    });
    assert_eq!(scope, span);
    let last: Vec<serde_json::Value> = span.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(last[3]["span"]["delivery"], "cb_01", "{span}");
    assert_eq!(last[3]["spans"][0]["tenant"], "shop \"a\"\n", "{span}");
    assert!(last[4].get("span").is_none(), "{span}");
}

#[test]
fn without_a_scope_records_go_to_the_span() {
    let out = Written::default();
    let subscriber = tracing_subscriber::fmt().with_ansi(false).without_time().with_writer(out.clone()).finish();
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("request", tenant = Empty);
        let _in = span.enter();
        record(Field::Tenant, "t9");
        tracing::info!("inside");
    });
    assert!(out.text().contains(r#"request{tenant="t9"}: "#), "{}", out.text());
}
