//! A request's log context kept by the request, not as a tracing span.
//!
//! Every request had a span (`request{method path request_id provider
//! tenant delivery}`) so that a line written while it is served names it.
//! Most requests write no line at all, yet the span cost every one of them
//! its registration, a formatted copy of its fields at each record, an
//! entry and exit at each poll and its close: about 2 µs of notify's ~28
//! per request at 128 connections (`RUST_LOG=off` against `info`; issue
//! 14). Where payrelay installed the subscriber ([`defer`]), the request
//! keeps the same fields in a [`Scope`], made current on its thread while
//! it is polled; [`Scoped`] writes them into a line written meanwhile,
//! where the span's fields were, byte for byte as the span wrote them
//! (text without colours, and JSON's `span` and `spans`). A coloured
//! terminal, and any other subscriber, still gets the span.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Set once [`Scoped`] writes the lines: requests keep a [`Scope`].
static DEFERRED: AtomicBool = AtomicBool::new(false);

thread_local! {
    static CURRENT: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

/// Requests keep a [`Scope`] from now on (the installed subscriber writes
/// lines through [`Scoped`]).
pub fn defer() {
    DEFERRED.store(true, Ordering::Relaxed);
}

pub fn deferred() -> bool {
    DEFERRED.load(Ordering::Relaxed)
}

/// The request span's fields, in the order the span had them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// `method`, `path`, `request_id`: written as they are (the span had
    /// them by `Display`).
    shown: [String; 3],
    /// `provider`, `tenant`, `delivery` as recorded (strings: quoted).
    recorded: Vec<(&'static str, String)>,
}

const SHOWN: [&str; 3] = ["method", "path", "request_id"];

/// A field a request records once it knows it.
#[derive(Debug, Clone, Copy)]
pub enum Field {
    Provider,
    Tenant,
    Delivery,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::Tenant => "tenant",
            Self::Delivery => "delivery",
        }
    }
}

impl Scope {
    pub fn new(method: &str, path: &str, request_id: &str) -> Self {
        Self { shown: [method.to_owned(), path.to_owned(), request_id.to_owned()], recorded: Vec::new() }
    }

    /// `method=POST path=/x request_id=1 provider="funpoint"`, as
    /// `PlainFields` wrote the span's fields.
    fn text(&self) -> String {
        let mut out = String::new();
        for (name, value) in SHOWN.iter().zip(&self.shown) {
            let _ = write!(out, "{}{name}={value}", if out.is_empty() { "" } else { " " });
        }
        for (name, value) in &self.recorded {
            let _ = write!(out, " {name}={value:?}");
        }
        out
    }

    /// `{"delivery":…,"method":"POST",…,"name":"request"}`, as `JsonFields`
    /// (fields in name order) and the JSON format (`name` last) wrote the span.
    fn json(&self) -> String {
        let shown = SHOWN.iter().zip(&self.shown).map(|(name, value)| (*name, value));
        let fields: std::collections::BTreeMap<&str, &String> =
            shown.chain(self.recorded.iter().map(|(name, value)| (*name, value))).collect();
        let mut out = String::from("{");
        for (name, value) in fields {
            let _ = write!(out, "{}:{},", serde_json::Value::from(name), serde_json::Value::from(value.as_str()));
        }
        out.push_str("\"name\":\"request\"}");
        out
    }
}

/// Records `value` in the current request's scope, or in the current span
/// where requests have spans.
pub fn record(field: Field, value: &str) {
    // `try_with`: a line may be written while the thread's locals are
    // torn down, where there is no scope.
    let kept = CURRENT.try_with(|c| match c.try_borrow_mut().as_deref_mut() {
        Ok(Some(scope)) => {
            match scope.recorded.iter_mut().find(|(name, _)| *name == field.name()) {
                Some(slot) => value.clone_into(&mut slot.1),
                None => scope.recorded.push((field.name(), value.to_owned())),
            }
            true
        }
        _ => false,
    });
    if kept != Ok(true) {
        tracing::Span::current().record(field.name(), value);
    }
}

/// Runs `f` with `scope` current on this thread, and takes it back after
/// (also if `f` panics).
pub fn within<R>(scope: &mut Option<Scope>, f: impl FnOnce() -> R) -> R {
    struct Back<'a> {
        scope: &'a mut Option<Scope>,
        outer: Option<Scope>,
    }
    impl Drop for Back<'_> {
        fn drop(&mut self) {
            let outer = self.outer.take();
            *self.scope = CURRENT.with(|c| c.replace(outer));
        }
    }
    let outer = CURRENT.with(|c| c.replace(scope.take()));
    let _back = Back { scope, outer };
    f()
}

/// How [`Scoped`] writes the scope into a line.
#[derive(Debug, Clone, Copy)]
pub enum LineFormat {
    /// `fmt`'s full text format without colours, fields by `PlainFields`.
    Text,
    /// `fmt`'s JSON format with the current span and the span list.
    Json,
}

/// A line format that writes the current request's [`Scope`] where the
/// request span's fields were; `inner` writes the line.
pub struct Scoped<F> {
    pub inner: F,
    pub lines: LineFormat,
}

impl<S, N, F> FormatEvent<S, N> for Scoped<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let fields = CURRENT.try_with(|c| match c.try_borrow().as_deref() {
            Ok(Some(scope)) => Some(match self.lines {
                LineFormat::Text => scope.text(),
                LineFormat::Json => scope.json(),
            }),
            _ => None,
        });
        // A real span current (not payrelay's) keeps its own place.
        let Some(fields) = fields.ok().flatten().filter(|_| ctx.lookup_current().is_none()) else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(256);
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        let at = match self.lines {
            LineFormat::Text => text_spans_at(&line, event),
            LineFormat::Json => line.rfind('}'),
        };
        let Some(at) = at else {
            return writer.write_str(&line);
        };
        let (head, tail) = line.split_at(at);
        match self.lines {
            LineFormat::Text => write!(writer, "{head}request{{{fields}}}: {tail}"),
            LineFormat::Json => write!(writer, "{head},\"span\":{fields},\"spans\":[{fields}]{tail}"),
        }
    }
}

/// Where the text format writes spans: right after the level, which it
/// pads to five characters and follows with a space (the timestamp before
/// it has no letters of a level).
fn text_spans_at(line: &str, event: &Event<'_>) -> Option<usize> {
    let level = format!("{:>5} ", event.metadata().level().as_str());
    line.find(&level).map(|i| i + level.len())
}

#[cfg(test)]
mod tests;
