//! The outbound calls of every payment — a delivery to a tenant, a
//! checkout's call to its tenant's API, a CVS checkout's post to the
//! provider — go through a plain hyper client (connections kept per thread): reqwest's
//! layers around the same hyper client (redirect and retry services, URL
//! parsing, its request builder) were a tenth of notify-unique's CPU
//! (issue 14). The queries, the command-line tools and, with `[server]
//! outbound_proxy` set, these calls as well go through reqwest, which
//! speaks to proxies.
//!
//! Either way: rustls on ring with the platform's CA certificates,
//! redirects never followed, connects bounded to 5 s, every call bounded
//! by its caller's timeout and its answer by the caller's size limit.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::connect::HttpConnector;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const USER_AGENT: HeaderValue = HeaderValue::from_static(concat!("payrelay/", env!("CARGO_PKG_VERSION")));

/// The outbound clients of one process: reqwest, and the direct client's
/// connector (its connections are kept per thread, see [`pool`]).
#[derive(Clone)]
pub struct Outbound {
    reqwest: reqwest::Client,
    direct: Option<std::sync::Arc<pool::Connector>>,
}

/// One POST: where, with what, how long the whole exchange may take and
/// how much of the answer is read.
pub struct Post<'a> {
    pub url: &'a str,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub timeout: Duration,
    pub limit: usize,
}

/// What the remote answered: its status, headers and at most `limit` bytes
/// of its body (`cut` when there was more).
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub cut: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("{0}")]
    Other(String),
}

impl From<reqwest::Client> for Outbound {
    /// Every call through `client` (a proxy, or tests of other parts).
    fn from(client: reqwest::Client) -> Self {
        Self { reqwest: client, direct: None }
    }
}

/// The TLS settings of every outbound call: rustls on ring, the platform's
/// CA certificates. Blocking: reads them from disk (milliseconds), so a
/// process reads them once and shares the result (issue 14's start-up).
pub fn tls() -> anyhow::Result<rustls::ClientConfig> {
    // Installing twice (several apps in one test process) is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(<rustls::ClientConfig as rustls_platform_verifier::ConfigVerifierExt>::with_platform_verifier()?)
}

impl Outbound {
    /// `client` for everything, and a direct hyper client for deliveries and
    /// tenant APIs unless a proxy is configured. Blocking: reads the
    /// system's CA certificates.
    pub fn new(client: reqwest::Client, proxy: bool) -> anyhow::Result<Self> {
        if proxy {
            return Ok(client.into());
        }
        Ok(Self::with_tls(client, tls()?))
    }

    /// `client` for everything, and a direct hyper client over `tls` (from
    /// [`tls`], without ALPN) for deliveries and tenant APIs.
    pub fn with_tls(client: reqwest::Client, tls: rustls::ClientConfig) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Self { reqwest: client, direct: Some(std::sync::Arc::new(https)) }
    }

    /// The reqwest client, for every other call.
    pub fn reqwest(&self) -> &reqwest::Client {
        &self.reqwest
    }

    /// Makes `call`: the whole exchange, answer read included, within its
    /// timeout.
    pub async fn post(&self, call: Post<'_>) -> Result<Reply, Failure> {
        let Some(connector) = &self.direct else {
            return via_reqwest(&self.reqwest, call).await;
        };
        let Post { url, headers, body, timeout, limit } = call;
        let mut request = http::Request::post(url).body(Full::new(body)).map_err(|e| Failure::Other(e.to_string()))?;
        *request.headers_mut() = headers;
        request.headers_mut().entry(http::header::USER_AGENT).or_insert(USER_AGENT);
        let exchange = async {
            let (response, lease) = pool::send(connector, request).await?;
            let (parts, mut body) = response.into_parts();
            let mut read = Vec::new();
            let mut cut = false;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| Failure::Other(crate::telemetry::chain(&e)))?;
                if let Ok(data) = frame.into_data() {
                    cut = keep(&mut read, &data, limit);
                    if cut {
                        break;
                    }
                }
            }
            // Read whole: the connection can carry the next call.
            if !cut {
                lease.keep();
            }
            Ok(Reply { status: parts.status, headers: parts.headers, body: read.into(), cut })
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| Failure::Timeout(timeout))?
    }
}

/// Appends what fits of `data` under `limit`; `true` when some did not.
fn keep(read: &mut Vec<u8>, data: &[u8], limit: usize) -> bool {
    let room = limit.saturating_sub(read.len());
    read.extend_from_slice(&data[..data.len().min(room)]);
    data.len() > room
}

async fn via_reqwest(client: &reqwest::Client, call: Post<'_>) -> Result<Reply, Failure> {
    let Post { url, headers, body, timeout, limit } = call;
    let failure = |e: reqwest::Error| {
        if e.is_timeout() {
            Failure::Timeout(timeout)
        } else if e.is_connect() {
            Failure::Connect(crate::telemetry::chain(&e))
        } else {
            Failure::Other(crate::telemetry::chain(&e))
        }
    };
    let mut response = client.post(url).headers(headers).body(body).timeout(timeout).send().await.map_err(failure)?;
    let (status, headers) = (response.status(), response.headers().clone());
    let mut read = Vec::new();
    let mut cut = false;
    while let Some(chunk) = response.chunk().await.map_err(failure)? {
        cut = keep(&mut read, &chunk, limit);
        if cut {
            break;
        }
    }
    Ok(Reply { status, headers, body: read.into(), cut })
}

mod pool;

#[cfg(test)]
mod tests;
