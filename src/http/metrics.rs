//! The HTTP side of the metrics: `GET /metrics` (Prometheus text, with the
//! store's gauges refreshed first) and the middleware counting every
//! request by route template and status. Recording lives in `crate::metrics`.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use tower::{Layer, Service};

use super::AppState;

/// Counts every request by its route template and answer status: a layer
/// around each route (`Router::route_layer`), where axum has put the
/// template in the request. A service of its own rather than
/// `middleware::from_fn`, which clones the route, boxes it again and boxes
/// its future on every request (issue 14).
#[derive(Clone, Copy)]
pub struct TrackLayer;

impl<S> Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track { inner }
    }
}

#[derive(Clone)]
pub struct Track<S> {
    inner: S,
}

impl<S: Service<Request, Response = Response>> Service<Request> for Track<S> {
    type Response = Response;
    type Error = S::Error;
    type Future = Tracked<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Tracked<S::Future> {
        let route = req.extensions().get::<MatchedPath>().cloned();
        Tracked { inner: self.inner.call(req), route }
    }
}

pin_project_lite::pin_project! {
    /// A route's answer on its way out, counted when it is ready.
    pub struct Tracked<F> {
        #[pin]
        inner: F,
        route: Option<MatchedPath>,
    }
}

impl<F: Future<Output = Result<Response, E>>, E> Future for Tracked<F> {
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        crate::metrics::http_request(this.route.as_ref().map_or("unmatched", MatchedPath::as_str), response.status());
        Poll::Ready(Ok(response))
    }
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
