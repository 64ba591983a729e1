//! Each request's trace span and its response line, made in `edge`.
//!
//! tower-http's `TraceLayer` did this before; it also read the clock five
//! times a request (when called, at each poll that finished, at each body
//! frame) for a response line that `tower_http=warn` turns off, and
//! wrapped every response body in one of its own (issue 14). Here the
//! clock is read only when the line will be written, and the line is the
//! one `TraceLayer` wrote: the same target (so `RUST_LOG=tower_http=…`
//! still governs it), level, message and fields, inside the span.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::response::Response;
use http::HeaderValue;
use tracing::{Level, Span};

use crate::telemetry::scope::{self, Scope};

/// The target tower-http's response line had, kept for log filters.
const ON_RESPONSE: &str = "tower_http::trace::on_response";

/// What a request's lines are written in: its scope where payrelay
/// installed the subscriber (see `telemetry::scope`), else its span; none
/// when the span would be off (`RUST_LOG` turns `payrelay::http` below
/// info).
pub enum LogContext {
    Scope(Option<Scope>),
    Span(Span),
}

/// The request's context. The path only: a query string may carry order
/// data.
pub fn request_context(req: &Request, id: &HeaderValue) -> LogContext {
    if scope::deferred() {
        if !tracing::span_enabled!(target: "payrelay::http", Level::INFO) {
            return LogContext::Span(Span::none());
        }
        let path = crate::telemetry::cut(req.uri().path(), 200);
        return LogContext::Scope(Some(Scope::new(req.method().as_str(), &path, id.to_str().unwrap_or("-"))));
    }
    LogContext::Span(tracing::info_span!(
        target: "payrelay::http",
        "request",
        method = %req.method(),
        path = %crate::telemetry::cut(req.uri().path(), 200),
        request_id = %id.to_str().unwrap_or("-"),
        provider = tracing::field::Empty,
        tenant = tracing::field::Empty,
        delivery = tracing::field::Empty,
    ))
}

pin_project_lite::pin_project! {
    /// `inner` run in the request's context; when it is ready, the line
    /// `finished processing request` with its latency and status, as
    /// `TraceLayer` with an info-level `DefaultOnResponse` wrote it, when
    /// that line is enabled. A future of its own, so that `edge` needs no
    /// box for it.
    pub struct Traced<F> {
        #[pin]
        inner: F,
        context: LogContext,
        started: Option<Instant>,
    }
}

/// Runs `response` in `context` (see [`Traced`]).
pub fn traced<F>(context: LogContext, response: F) -> Traced<F> {
    let started = tracing::enabled!(target: ON_RESPONSE, Level::INFO).then(Instant::now);
    Traced { inner: response, context, started }
}

impl<F: Future<Output = Result<Response, E>>, E> Future for Traced<F> {
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let (inner, started) = (this.inner, this.started);
        let poll = move || -> Poll<Self::Output> {
            let response = ready!(inner.poll(cx))?;
            if let Some(started) = started.take() {
                let latency = Latency(started.elapsed());
                tracing::info!(
                    target: ON_RESPONSE,
                    %latency,
                    status = i32::from(response.status().as_u16()),
                    "finished processing request"
                );
            }
            Poll::Ready(Ok(response))
        };
        match this.context {
            LogContext::Scope(scope) => scope::within(scope, poll),
            LogContext::Span(span) => span.in_scope(poll),
        }
    }
}

/// A latency as tower-http's default unit writes it: whole milliseconds.
struct Latency(Duration);

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ms", self.0.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::response::IntoResponse as _;
    use http::StatusCode;

    use super::*;

    /// One request through `traced` under `filter`; the lines written.
    fn one_request(filter: &str) -> (StatusCode, String) {
        let out = crate::telemetry::Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_env_filter(filter)
            .fmt_fields(crate::telemetry::PlainFields)
            .with_writer(out.clone())
            .finish();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let status = tracing::subscriber::with_default(subscriber, || {
            let req = Request::post("/funpoint/notify?MerchantTradeNo=x").body(Body::empty()).unwrap();
            let context = request_context(&req, &HeaderValue::from_static("7f1c"));
            let handler = async {
                Span::current().record("provider", "funpoint");
                tracing::info!("inside");
                Ok::<_, std::convert::Infallible>((StatusCode::CREATED, "1|OK").into_response())
            };
            let Ok(response) = runtime.block_on(traced(context, handler));
            response.status()
        });
        let lines = out.text();
        // The latency in whole milliseconds, whatever it was.
        let latency = |l: &str| match l.split_once("latency=") {
            Some((head, tail)) => format!("{head}latency=N{}", tail.trim_start_matches(|c: char| c.is_ascii_digit())),
            None => l.to_owned(),
        };
        (status, lines.lines().map(|l| latency(l) + "\n").collect())
    }

    /// The line tower-http's `TraceLayer` wrote (as payrelay logged it
    /// before), and the handler's own lines inside the span.
    #[test]
    fn the_response_line_is_tower_https() {
        let (status, lines) = one_request("info");
        assert_eq!(status, StatusCode::CREATED);
        let span = r#"request{method=POST path=/funpoint/notify request_id=7f1c provider="funpoint"}"#;
        assert_eq!(
            lines,
            format!(
                " INFO {span}: payrelay::http::trace::tests: inside\n INFO {span}: tower_http::trace::on_response: \
                 finished processing request latency=N ms status=201\n"
            )
        );
    }

    /// `tower_http=warn` (as bench/run.sh runs) turns the line off, not the span.
    #[test]
    fn tower_http_filters_still_govern_it() {
        let (_, lines) = one_request("info,tower_http=warn");
        assert_eq!(
            lines,
            " INFO request{method=POST path=/funpoint/notify request_id=7f1c provider=\"funpoint\"}: \
             payrelay::http::trace::tests: inside\n"
        );
    }
}
