//! The direct client's connections, kept per thread: one HTTP/1 connection
//! carries one exchange at a time, and the thread that made a call keeps
//! the connection for its next call to the same origin. hyper-util's
//! legacy pool (a map behind a mutex, its key hashed with SipHash at each
//! checkout and each return, a task per connection to put it back) cost
//! about a third of a tenant call's instructions (issue 14). A connection
//! lane (`http::lanes`) is one thread, so its calls go over connections
//! driven on the lane; a connection is never shared between threads.
//!
//! The rules are the legacy pool's: `Host` set from the URL, origin-form
//! request targets, a kept connection reused only once its answer was read
//! whole and at most [`IDLE_TIMEOUT`] after, and a request that never left
//! (its connection closed while it was kept) sent again on another one.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower::ServiceExt as _;

use super::Failure;
use crate::telemetry::chain;

/// A kept connection unused this long is closed, not reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections a thread keeps at most (across origins); the oldest goes
/// first.
const KEPT_PER_THREAD: usize = 64;

pub type Connector = HttpsConnector<HttpConnector>;
type Sender = SendRequest<Full<Bytes>>;

/// Where a connection goes: scheme and authority.
#[derive(Clone, PartialEq, Eq)]
struct Origin {
    https: bool,
    authority: Authority,
}

struct Kept {
    origin: Origin,
    sender: Sender,
    since: Instant,
}

thread_local! {
    static KEPT: RefCell<Vec<Kept>> = const { RefCell::new(Vec::new()) };
}

/// The connection an answer is being read from: kept for the thread's
/// next call with [`Lease::keep`] once the answer was read whole; dropped,
/// the connection closes.
pub struct Lease {
    origin: Origin,
    sender: Sender,
}

impl Lease {
    pub fn keep(self) {
        if self.sender.is_closed() {
            return;
        }
        KEPT.with_borrow_mut(|kept| {
            if kept.len() >= KEPT_PER_THREAD {
                kept.remove(0);
            }
            kept.push(Kept { origin: self.origin, sender: self.sender, since: Instant::now() });
        });
    }
}

/// The most recently kept live connection to `origin`, if any. Expired
/// ones are dropped first: kept in the order they were put back, they are
/// the oldest, found by a binary search (checking every kept connection's
/// age and state on every call cost a delivery ~0.8k instructions at 8
/// connections, issue 14). A closed one is dropped when it comes up for
/// its origin, when it expires or when the thread keeps too many.
fn take(origin: &Origin) -> Option<Sender> {
    KEPT.with_borrow_mut(|kept| {
        let now = Instant::now();
        let expired = kept.partition_point(|k| now.duration_since(k.since) >= IDLE_TIMEOUT);
        kept.drain(..expired);
        while let Some(at) = kept.iter().rposition(|k| k.origin == *origin) {
            let candidate = kept.remove(at);
            if !candidate.sender.is_closed() {
                return Some(candidate.sender);
            }
        }
        None
    })
}

/// Sends `request` (an absolute http(s) URL) over a kept connection to its
/// origin, or a new one.
pub async fn send(
    connector: &Connector,
    mut request: Request<Full<Bytes>>,
) -> Result<(Response<Incoming>, Lease), Failure> {
    let uri = request.uri().clone();
    let origin = origin_of(&uri).ok_or_else(|| Failure::Other(format!("not an absolute http(s) URL: {uri}")))?;
    if !request.headers().contains_key(header::HOST) {
        request.headers_mut().insert(header::HOST, host(&uri)?);
    }
    *request.uri_mut() = Uri::from(uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/")));
    while let Some(mut sender) = take(&origin) {
        if sender.ready().await.is_err() {
            continue;
        }
        match sender.try_send_request(request).await {
            Ok(response) => return Ok((response, Lease { origin, sender })),
            // Never written: the connection had closed. Another one.
            Err(mut e) => match e.take_message() {
                Some(unsent) => request = unsent,
                None => return Err(Failure::Other(chain(&e.into_error()))),
            },
        }
    }
    // Boxed: the connect path is rare, and inline it would make every
    // call's future (moved into its task and its timeout) several times larger.
    let mut sender = Box::pin(connect(connector, uri)).await?;
    let response = sender.send_request(request).await.map_err(|e| Failure::Other(chain(&e)))?;
    Ok((response, Lease { origin, sender }))
}

/// A new connection to `uri`'s origin, driven by a task of this runtime.
async fn connect(connector: &Connector, uri: Uri) -> Result<Sender, Failure> {
    let io = connector.clone().oneshot(uri).await.map_err(|e| Failure::Connect(chain(&*e)))?;
    let (sender, connection) = http1::handshake(io).await.map_err(|e| Failure::Connect(chain(&e)))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "outbound connection ended with an error");
        }
    });
    Ok(sender)
}

fn origin_of(uri: &Uri) -> Option<Origin> {
    let https = match uri.scheme() {
        Some(s) if *s == Scheme::HTTPS => true,
        Some(s) if *s == Scheme::HTTP => false,
        _ => return None,
    };
    Some(Origin { https, authority: uri.authority()?.clone() })
}

/// `Host`: the URL's host, and its port unless it is the scheme's own.
/// `host:port` is taken from the URL's own text when it spells the port
/// plainly (no leading zero), rather than formatted afresh for each call
/// (~800 instructions, issue 14).
fn host(uri: &Uri) -> Result<HeaderValue, Failure> {
    let bad = || Failure::Other(format!("no usable host in {uri}"));
    let name = uri.host().ok_or_else(bad)?;
    let default = if uri.scheme() == Some(&Scheme::HTTPS) { 443 } else { 80 };
    match uri.port_u16() {
        Some(port) if port != default => {
            let authority = uri.authority().map_or("", |a| a.as_str());
            let spelled = authority.rsplit_once('@').map_or(authority, |(_, host_port)| host_port);
            let plain =
                spelled.strip_prefix(name).and_then(|p| p.strip_prefix(':')).is_some_and(|p| !p.starts_with('0'));
            if plain {
                HeaderValue::from_str(spelled).map_err(|_| bad())
            } else {
                HeaderValue::try_from(format!("{name}:{port}")).map_err(|_| bad())
            }
        }
        _ => HeaderValue::from_str(name).map_err(|_| bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_is_the_urls_host_with_a_port_only_when_not_the_schemes_own() {
        for (url, want) in [
            ("http://127.0.0.1:18101/api?x=1", "127.0.0.1:18101"),
            ("http://shop.example/", "shop.example"),
            ("http://shop.example:80/", "shop.example"),
            ("https://shop.example:443/a", "shop.example"),
            ("https://shop.example:8443/a", "shop.example:8443"),
            ("http://user:pw@shop.example:81/", "shop.example:81"),
            ("http://[::1]:8080/", "[::1]:8080"),
            ("http://shop.example:0081/", "shop.example:81"),
            ("http://user@shop.example:81/", "shop.example:81"),
        ] {
            let uri: Uri = url.parse().unwrap();
            assert_eq!(host(&uri).ok().as_ref().and_then(|h| h.to_str().ok()), Some(want), "{url}");
        }
        for not_http in ["ftp://shop.example/", "/relative"] {
            assert!(origin_of(&not_http.parse().unwrap()).is_none(), "{not_http}");
        }
    }
}
