//! The outermost layer, one function for what every answer needs: the
//! request id (kept from a front proxy when plain, else made; answered as
//! `X-Request-Id`), a notify path's errors in its provider's grammar, the
//! checkout-data path's CORS headers, and the PHP original's paths switched
//! off (`legacy_paths = false`). One layer instead of six: each
//! tower layer boxed and polled its own future per request (issue 14).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::{AppState, REQUEST_ID, cors, notify};

pub async fn edge(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let id = request_id(req.headers_mut());
    let provider = notify::notify_provider(req.uri().path());
    let cors = cors::origin_for(&state, &req);
    // With `legacy_paths = false` the `.php` paths answer 404 (read per
    // request, so that a reload switches them). Here rather than a layer
    // on their routes: a layer boxed and polled its own future per request.
    let response = if super::is_legacy(req.uri().path()) && !state.config().server.legacy_paths {
        crate::metrics::http_request(req.uri().path(), StatusCode::NOT_FOUND);
        super::not_found().await.into_response()
    } else {
        let span = super::trace::request_span(&req, &id);
        super::trace::traced(span, next.run(req)).await
    };
    let mut response = notify::in_grammar(provider, response);
    if let Some(allowed) = cors {
        cors::finish(&mut response, allowed);
    }
    if !response.headers().contains_key(REQUEST_ID) {
        response.headers_mut().insert(REQUEST_ID, id);
    }
    response
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
