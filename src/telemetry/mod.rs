//! Logs to stderr through `tracing`: human-readable by default, JSON lines
//! with `--log-format json`; `RUST_LOG` filters (default `info`).
//!
//! Lines are written by a thread of their own: a request never waits on a
//! `write(2)` to stderr (a synchronous write per line cost about a third of
//! the notify throughput). The thread writes whatever is queued and flushes
//! whenever the queue is empty, so lines still appear at once; `flush()`
//! before exit writes out the rest. A line is lost only if the process is
//! killed with lines still queued.

mod fields;
pub mod scope;

#[cfg(test)]
pub(crate) use fields::{PlainFields, testing::Lines};

use std::io::{IsTerminal as _, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use clap::ValueEnum;
use scope::{LineFormat, Scoped};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::{self, JsonFields};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::{Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Bytes of lines waiting for the writer thread. Beyond this (stderr not
/// drained: a stuck journald, a full pipe) a line is dropped and counted in
/// `payrelay_log_lines_dropped_total`, rather than blocking request tasks or
/// growing memory without bound.
const QUEUE_BYTES: usize = 8 << 20;

/// Bytes queued now.
static QUEUED: AtomicUsize = AtomicUsize::new(0);

enum Msg {
    Line(Vec<u8>),
    Flush(mpsc::Sender<()>),
}

static QUEUE_TX: OnceLock<Sender<Msg>> = OnceLock::new();

pub fn init(format: LogFormat) {
    let ansi = std::io::stderr().is_terminal();
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new().name("log-writer".into()).spawn(move || write_lines(&rx));
    // Without the thread (it could not start), write to stderr directly.
    let writer = match spawned {
        Ok(_) => BoxMakeWriter::new(QueuedStderr { tx: tx.clone() }),
        Err(_) => BoxMakeWriter::new(std::io::stderr),
    };
    let spec = std::env::var("RUST_LOG").ok();
    // The filter over the formatter over the registry, as
    // `fmt().with_env_filter(…)` built it.
    let layer = tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(ansi);
    let registry = tracing_subscriber::registry();
    // Lines without colours write a request's scope (`scope`), so that
    // requests need no span (unless a span directive filters by it).
    let deferred = !matches!(format, LogFormat::Text if ansi) && targets(spec.as_deref()).is_some();
    let installed = match format {
        // Without colours, fields written plainly (`fields`).
        LogFormat::Text if !ansi => {
            let lines = Scoped { inner: format::format().with_ansi(false), lines: LineFormat::Text };
            let layer = layer.fmt_fields(fields::PlainFields).event_format(lines);
            registry.with(layer).with(filter(spec.as_deref())).try_init()
        }
        LogFormat::Text => registry.with(layer).with(filter(spec.as_deref())).try_init(),
        LogFormat::Json => {
            let json = format::format().json().flatten_event(true).with_current_span(true);
            let lines = Scoped { inner: json, lines: LineFormat::Json };
            // JSON lines never have colours (as `fmt::Layer::json` sets).
            let layer = layer.with_ansi(false).fmt_fields(JsonFields::new()).event_format(lines);
            registry.with(layer).with(filter(spec.as_deref())).try_init()
        }
    };
    if installed.is_ok() && deferred {
        scope::defer();
    }
    if installed.is_ok() {
        let _ = QUEUE_TX.set(tx);
    }
}

/// `RUST_LOG`'s filter (`info` when unset or not understood). A list of
/// `target=level` and bare levels — all that payrelay's docs and
/// `bench/run.sh` use — is a [`Targets`]: it decides by callsite and keeps
/// nothing per span. `EnvFilter` takes a lock shared by every thread at
/// each span's start, entry, exit, record and close (for span and field
/// directives, which such a list has none of): with the request span
/// that was about a seventh of notify's CPU per request at 128
/// connections (issue 14). Anything else (span or field directives,
/// spaces) goes to `EnvFilter`, as before.
fn filter<S>(spec: Option<&str>) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    match targets(spec) {
        Some(targets) => Box::new(targets),
        None => Box::new(spec.and_then(|s| EnvFilter::try_new(s).ok()).unwrap_or_else(|| EnvFilter::new("info"))),
    }
}

/// `RUST_LOG` as a [`Targets`], when it is a plain list (see [`filter`]).
/// Only then do requests go without spans (`scope`): a span directive
/// (`[request]=debug`) needs the request's span.
fn targets(spec: Option<&str>) -> Option<Targets> {
    let plain = |s: &str| {
        s.split(',').all(|d| !d.is_empty()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_:=,.-".contains(&b))
    };
    match spec {
        None => Some(Targets::new().with_default(LevelFilter::INFO)),
        Some(s) if plain(s) => s.parse().ok(),
        Some(_) => None,
    }
}

/// Writes out every queued line (at most one second's wait).
pub fn flush() {
    if let Some(tx) = QUEUE_TX.get() {
        let (done, wait) = mpsc::channel();
        if tx.send(Msg::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(Duration::from_secs(1));
        }
    }
}

fn write_lines(rx: &Receiver<Msg>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Line(line) => {
                    let _ = out.write_all(&line);
                    QUEUED.fetch_sub(line.len(), Ordering::Relaxed);
                }
                Msg::Flush(done) => {
                    let _ = out.flush();
                    let _ = done.send(());
                }
            }
            next = rx.try_recv().ok();
        }
        let _ = out.flush();
    }
}

/// The `MakeWriter`: each event is formatted into a buffer of its own and
/// queued whole when the formatter is done with it.
struct QueuedStderr {
    tx: Sender<Msg>,
}

struct LineBuf {
    buf: Vec<u8>,
    tx: Sender<Msg>,
}

impl<'a> MakeWriter<'a> for QueuedStderr {
    type Writer = LineBuf;

    fn make_writer(&'a self) -> LineBuf {
        LineBuf { buf: Vec::with_capacity(256), tx: self.tx.clone() }
    }
}

impl Write for LineBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineBuf {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let line = std::mem::take(&mut self.buf);
            let len = line.len();
            if QUEUED.fetch_add(len, Ordering::Relaxed) + len > QUEUE_BYTES {
                QUEUED.fetch_sub(len, Ordering::Relaxed);
                crate::metrics::log_line_dropped();
                return;
            }
            if let Err(mpsc::SendError(Msg::Line(line))) = self.tx.send(Msg::Line(line)) {
                QUEUED.fetch_sub(len, Ordering::Relaxed);
                // The writer thread is gone: write directly.
                let _ = std::io::stderr().write_all(&line);
            }
        }
    }
}

/// At most `max` characters of a value a client chose, for a log field or
/// a stored reason (an attacker's 60 KB value is not logged whole).
pub fn cut(value: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match value.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &value[..end]).into(),
        None => value.into(),
    }
}

/// An error with its causes, `outer: inner: innermost`, for one log field.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        // reqwest repeats its inner error in its own message at times.
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use tracing::Level;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// What a subscriber enables, target by target and level by level.
    fn decisions(subscriber: impl tracing::Subscriber + Send + Sync + 'static) -> Vec<bool> {
        let dispatch = tracing::Dispatch::new(subscriber);
        tracing::dispatcher::with_default(&dispatch, || {
            let mut seen = Vec::new();
            macro_rules! each {
                ($($target:literal),*) => {$(
                    seen.push(tracing::enabled!(target: $target, Level::ERROR));
                    seen.push(tracing::enabled!(target: $target, Level::WARN));
                    seen.push(tracing::enabled!(target: $target, Level::INFO));
                    seen.push(tracing::enabled!(target: $target, Level::DEBUG));
                    seen.push(tracing::enabled!(target: $target, Level::TRACE));
                )*};
            }
            each!(
                "payrelay",
                "payrelay::http",
                "payrelay::store::writer",
                "tower_http::trace::on_response",
                "hyper_util"
            );
            seen
        })
    }

    /// A plain `RUST_LOG` enables what `EnvFilter` enabled with it; one
    /// with a span directive, or unset, is what it was.
    #[test]
    fn the_filter_enables_what_env_filter_did() {
        let specs = [
            "info",
            "info,tower_http=warn",
            "info,payrelay=debug",
            "warn,payrelay::http=trace",
            "off",
            "TRACE",
            "error,payrelay",
            "info,tower_http::trace::on_response=off",
            "payrelay=debug,info",
            "info, payrelay=debug",
            "",
            "not a level=",
        ];
        for spec in specs {
            let ours = decisions(tracing_subscriber::registry().with(filter(Some(spec))));
            let before = EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new("info"));
            assert_eq!(ours, decisions(tracing_subscriber::registry().with(before)), "RUST_LOG={spec:?}");
        }
        let unset = decisions(tracing_subscriber::registry().with(filter(None)));
        assert_eq!(unset, decisions(tracing_subscriber::registry().with(EnvFilter::new("info"))));
        assert!(unset.contains(&true) && unset.contains(&false));
    }

    /// Requests go without spans only where no directive filters by one.
    #[test]
    fn span_directives_keep_the_request_span() {
        assert!(targets(None).is_some() && targets(Some("info,tower_http=warn")).is_some());
        for spec in ["info,[request]=debug", "info,payrelay[request{tenant=a}]=debug", "info, payrelay=debug", ""] {
            assert!(targets(Some(spec)).is_none(), "{spec}");
        }
    }
}
