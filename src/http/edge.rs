//! The outermost layer, one function for what every answer needs: the
//! request id (kept from a front proxy when plain, else made; answered as
//! `X-Request-Id`), a notify path's errors in its provider's grammar, the
//! checkout-data path's CORS headers, and the PHP original's paths switched
//! off (`legacy_paths = false`). One layer instead of six: each
//! tower layer boxed and polled its own future per request (issue 14).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::Request;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode};
use tower::{Layer, Service};

use super::trace::Traced;
use super::{AppState, REQUEST_ID, cors, notify};

/// The outermost layer (see the module's text). A service of its own
/// rather than `middleware::from_fn`, which boxed the stack inside and the
/// layer's future on every request (issue 14).
#[derive(Clone)]
pub struct EdgeLayer(pub AppState);

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge { state: self.0.clone(), inner }
    }
}

#[derive(Clone)]
pub struct Edge<S> {
    state: AppState,
    inner: S,
}

impl<S> Service<Request> for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Edged<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Edged<S::Future> {
        let id = request_id(req.headers_mut());
        let provider = notify::notify_provider(req.uri().path());
        let cors = cors::origin_for(&self.state, &req);
        // With `legacy_paths = false` the `.php` paths answer 404 (read per
        // request, so that a reload switches them). Here rather than a
        // layer on their routes: a layer boxed and polled its own future
        // per request.
        let answer = if super::is_legacy(req.uri().path()) && !self.state.config().server.legacy_paths {
            crate::metrics::http_request(req.uri().path(), StatusCode::NOT_FOUND);
            Answer::Ready { response: Some(super::not_found_response()) }
        } else {
            // The service made ready is the one called; a clone waits for
            // the next request (tower's contract, as `from_fn` keeps it).
            let clone = self.inner.clone();
            let mut ready = std::mem::replace(&mut self.inner, clone);
            let context = super::trace::request_context(&req, &id);
            Answer::Inner { traced: super::trace::traced(context, ready.call(req)) }
        };
        Edged { answer, provider, cors, id: Some(id) }
    }
}

pin_project_lite::pin_project! {
    /// The answer on its way out: in the provider's grammar, with the CORS
    /// headers and the request id.
    pub struct Edged<F> {
        #[pin]
        answer: Answer<F>,
        provider: Option<&'static dyn crate::providers::Provider>,
        cors: Option<Option<HeaderValue>>,
        id: Option<HeaderValue>,
    }
}

pin_project_lite::pin_project! {
    #[project = AnswerProj]
    enum Answer<F> {
        Ready { response: Option<Response> },
        Inner { #[pin] traced: Traced<F> },
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for Edged<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match this.answer.project() {
            AnswerProj::Ready { response } => response.take().unwrap_or_else(super::not_found_response),
            AnswerProj::Inner { traced } => ready!(traced.poll(cx))?,
        };
        let mut response = notify::in_grammar(*this.provider, response);
        if let Some(allowed) = this.cors.take() {
            cors::finish(&mut response, allowed);
        }
        if let Some(id) = this.id.take()
            && !response.headers().contains_key(REQUEST_ID)
        {
            response.headers_mut().insert(REQUEST_ID, id);
        }
        Poll::Ready(Ok(response))
    }
}

/// The request's id, set on it for the trace span and the handlers: a
/// client's (a front proxy's) when it sent exactly one, short and plain
/// (`[A-Za-z0-9-]{1,64}`); else a new UUID, so that an id cannot forge or
/// flood log lines.
fn request_id(headers: &mut HeaderMap) -> HeaderValue {
    let plain = |v: &HeaderValue| {
        let b = v.as_bytes();
        (1..=64).contains(&b.len()) && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    };
    let mut values = headers.get_all(REQUEST_ID).iter();
    if let (Some(v), None) = (values.next(), values.next())
        && plain(v)
    {
        return v.clone();
    }
    let mut buf = uuid::Uuid::encode_buffer();
    let made = HeaderValue::from_str(uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf))
        .unwrap_or_else(|_| HeaderValue::from_static("-"));
    headers.insert(REQUEST_ID, made.clone());
    made
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_id_is_kept_and_any_other_replaced_by_a_uuid() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("proxy-42"));
        assert_eq!(request_id(&mut h), "proxy-42");
        for bad in ["", "a b", "x\u{7f}", &"a".repeat(65)] {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(bad) {
                h.insert(REQUEST_ID, v);
            }
            let id = request_id(&mut h);
            assert_eq!(id.len(), 36, "{bad:?} → {id:?}");
            assert_eq!(h.get_all(REQUEST_ID).iter().collect::<Vec<_>>(), [&id]);
        }
        let mut h = HeaderMap::new();
        h.append(REQUEST_ID, HeaderValue::from_static("one"));
        h.append(REQUEST_ID, HeaderValue::from_static("two"));
        let id = request_id(&mut h);
        assert_eq!((id.len(), h.get_all(REQUEST_ID).iter().count()), (36, 1), "two ids: neither kept");
    }
}
