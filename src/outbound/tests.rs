//! The direct and reqwest clients against loopback servers.

use super::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A loopback server that answers every connection's first request
/// with `answer` (after `delay`), handing the request's head to `seen`.
async fn server(answer: Vec<u8>, delay: Duration) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    let (tx, seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (answer, tx) = (answer.clone(), tx.clone());
            tokio::spawn(async move {
                let _ = tx.send(read_request(&mut socket).await);
                tokio::time::sleep(delay).await;
                let _ = socket.write_all(&answer).await;
            });
        }
    });
    (url, seen)
}

/// The request's head and its body (by its content-length).
async fn read_request(socket: &mut tokio::net::TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text
                .to_ascii_lowercase()
                .split("content-length: ")
                .nth(1)
                .and_then(|r| r.split("\r\n").next().and_then(|n| n.trim().parse::<usize>().ok()));
            if got.len() >= end + 4 + length.unwrap_or(0) {
                return text;
            }
        }
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return text,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

fn clients() -> [(&'static str, Outbound); 2] {
    let reqwest = crate::startup::http_client().unwrap();
    [("direct", Outbound::new(reqwest.clone(), false).unwrap()), ("reqwest", reqwest.into())]
}

const SECS_5: Duration = Duration::from_secs(5);

/// An empty POST to `url`, reading at most 100 bytes of the answer.
fn call(url: &str, timeout: Duration) -> Post<'_> {
    Post { url, headers: HeaderMap::new(), body: Bytes::new(), timeout, limit: 100 }
}

fn answer(status: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nretry-after: 7\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

#[tokio::test]
async fn both_clients_send_the_headers_and_body_and_read_the_answer() {
    for (name, client) in clients() {
        let (url, mut seen) = server(answer("503 Service Unavailable", b"busy"), Duration::ZERO).await;
        let mut headers = HeaderMap::new();
        headers.insert("x-payrelay-attempt", HeaderValue::from(2u32));
        let reply = client
            .post(Post { url: &url, headers, body: Bytes::from_static(b"a=1"), timeout: SECS_5, limit: 1024 })
            .await;
        let reply = reply.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((reply.status.as_u16(), &reply.body[..], reply.cut), (503, &b"busy"[..], false), "{name}");
        assert_eq!(reply.headers.get("retry-after").unwrap(), "7", "{name}");
        let head = seen.recv().await.unwrap().to_ascii_lowercase();
        assert!(head.starts_with("post /notify http/1.1\r\n"), "{name}: {head}");
        assert!(head.contains("x-payrelay-attempt: 2\r\n") && head.contains("user-agent: payrelay/"), "{name}: {head}");
        assert!(head.ends_with("\r\n\r\na=1"), "{name}: {head}");
    }
}

#[tokio::test]
async fn an_answer_past_the_limit_is_cut_there() {
    for (name, client) in clients() {
        let (url, _seen) = server(answer("200 OK", &[b'x'; 5000]), Duration::ZERO).await;
        let reply = client.post(call(&url, SECS_5)).await.unwrap();
        assert_eq!((reply.body.len(), reply.cut), (100, true), "{name}");
    }
}

#[tokio::test]
async fn a_remote_that_hangs_times_out_and_one_that_refuses_is_a_connect_failure() {
    for (name, client) in clients() {
        let (url, _seen) = server(answer("200 OK", b"late"), Duration::from_secs(30)).await;
        let hung = client.post(call(&url, Duration::from_millis(200))).await;
        assert!(matches!(hung, Err(Failure::Timeout(_))), "{name}: {:?}", hung.err());
        let refused = client.post(call("http://127.0.0.1:1/", SECS_5));
        assert!(matches!(refused.await, Err(Failure::Connect(_))), "{name}");
    }
}

/// A loopback server that answers every request on a connection (keep
/// alive) with `body` and counts the connections it accepted.
async fn keep_alive_server(body: &'static [u8]) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                while read_request(&mut socket).await.contains("\r\n\r\n") {
                    if socket.write_all(&answer("200 OK", body)).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, accepted)
}

/// Runs `calls` posts to `url` on a thread of its own, on its own
/// single-threaded runtime (as `http::lanes` runs them), keeping the
/// runtime until `done` fires.
fn on_lane_thread(
    client: Outbound,
    url: String,
    calls: usize,
    done: std::sync::mpsc::Receiver<()>,
) -> std::thread::JoinHandle<()> {
    let (called, wait) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            for _ in 0..calls {
                let reply = client.post(call(&url, SECS_5)).await.unwrap();
                assert_eq!(&reply.body[..], b"1|OK");
            }
            called.send(()).unwrap();
            let _ = tokio::task::spawn_blocking(move || done.recv()).await;
        });
    });
    wait.recv().unwrap();
    thread
}

/// Each connection lane keeps its own connections: a call made on one
/// lane never waits on a connection driven by another lane's thread
/// (a wake-up across threads each way), and a lane reuses its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_lane_calls_over_connections_of_its_own() {
    let (url, accepted) = keep_alive_server(b"1|OK").await;
    let client = Outbound::new(crate::startup::http_client().unwrap(), false).unwrap();
    let (stop_0, done_0) = std::sync::mpsc::channel();
    let (stop_1, done_1) = std::sync::mpsc::channel();
    let lane_0 = on_lane_thread(client.clone(), url.clone(), 3, done_0);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1, "lane 0 reuses its connection");
    let lane_1 = on_lane_thread(client.clone(), url.clone(), 3, done_1);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2, "lane 1 opens its own");
    for (stop, lane) in [(stop_0, lane_0), (stop_1, lane_1)] {
        stop.send(()).unwrap();
        lane.join().unwrap();
    }
    let reply = client.post(call(&url, SECS_5)).await.unwrap();
    assert_eq!(&reply.body[..], b"1|OK", "off the lanes, calls go on");
}

/// A tenant (or a provider) answering a redirect cannot send a payment's
/// bytes elsewhere: the 3xx is the answer.
#[tokio::test]
async fn a_redirect_is_an_answer_and_is_never_followed() {
    for (name, client) in clients() {
        let (elsewhere, mut hit) = server(answer("200 OK", b"1|OK"), Duration::ZERO).await;
        let redirect = format!("HTTP/1.1 307 Temporary Redirect\r\nlocation: {elsewhere}\r\ncontent-length: 0\r\n\r\n");
        let (url, _seen) = server(redirect.into_bytes(), Duration::ZERO).await;
        let reply = client.post(call(&url, SECS_5)).await.unwrap();
        assert_eq!(reply.status.as_u16(), 307, "{name}");
        assert!(hit.try_recv().is_err(), "{name}: the redirect was followed");
    }
}

/// A loopback server answering one request per connection and then
/// closing it, saying so (`connection: close`) or not; counts connections
/// and hands each request's head to `seen`.
async fn one_per_connection_server(
    say_close: bool,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = accepted.clone();
    let (tx, seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(read_request(&mut socket).await);
                let close = if say_close { "connection: close\r\n" } else { "" };
                let answer = format!("HTTP/1.1 200 OK\r\n{close}content-length: 4\r\n\r\n1|OK");
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    (url, accepted, seen)
}

/// A connection the remote closed after its answer — with `connection:
/// close` or silently, while it was kept — is not a failed call: the next
/// call goes out on a new connection, and every request carries its `Host`.
#[tokio::test]
async fn a_kept_connection_the_remote_closed_is_replaced_not_failed() {
    let client = Outbound::new(crate::startup::http_client().unwrap(), false).unwrap();
    for say_close in [true, false] {
        let (url, accepted, mut seen) = one_per_connection_server(say_close).await;
        let host = url.trim_start_matches("http://").trim_end_matches("/notify").to_owned();
        for n in 1..=5 {
            let reply = client.post(call(&url, SECS_5)).await;
            let reply = reply.unwrap_or_else(|e| panic!("say_close {say_close}, call {n}: {e}"));
            assert_eq!(&reply.body[..], b"1|OK");
            let head = seen.recv().await.unwrap().to_ascii_lowercase();
            assert!(head.contains(&format!("\r\nhost: {host}\r\n")), "{head}");
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 5, "say_close {say_close}");
    }
}

/// An answer cut at the limit leaves its connection unfinished: it is
/// closed, not kept for the next call.
#[tokio::test]
async fn a_connection_whose_answer_was_cut_is_not_reused() {
    let (url, accepted) = keep_alive_server(&[b'x'; 5000]).await;
    let client = Outbound::new(crate::startup::http_client().unwrap(), false).unwrap();
    for _ in 0..3 {
        let reply = client.post(call(&url, SECS_5)).await.unwrap();
        assert!(reply.cut);
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    let whole = client.post(Post { limit: 10_000, ..call(&url, SECS_5) }).await.unwrap();
    let again = client.post(Post { limit: 10_000, ..call(&url, SECS_5) }).await.unwrap();
    assert!(!whole.cut && !again.cut);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 4, "an answer read whole keeps its connection");
}

/// A loopback TLS server presenting a self-signed certificate for
/// 127.0.0.1 that no platform trusts; it completes handshakes only.
fn untrusted_tls_server() -> String {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/untrusted-tls");
    let cert = CertificateDer::from_pem_file(format!("{dir}/cert.pem")).unwrap();
    let key = PrivateKeyDer::from_pem_file(format!("{dir}/key.pem")).unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = std::sync::Arc::new(
        rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(vec![cert], key).unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/notify", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for socket in listener.incoming().flatten() {
            let connection = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut stream = rustls::StreamOwned::new(connection, socket);
            let _ = std::io::Read::read(&mut stream, &mut [0; 64]);
        }
    });
    url
}

#[tokio::test]
async fn both_clients_refuse_a_certificate_the_platform_does_not_trust() {
    // The certificates are read once at start and shared by both clients
    // (issue 14): each must still verify them.
    let url = untrusted_tls_server();
    let tls = tls().unwrap();
    let reqwest = crate::startup::http_client_with(None, tls.clone()).unwrap();
    let built = [("direct", Outbound::with_tls(reqwest.clone(), tls)), ("reqwest", reqwest.into())];
    for (name, client) in built {
        let failure = client.post(call(&url, SECS_5)).await.err().unwrap_or_else(|| panic!("{name}: answered"));
        let text = format!("{failure:?} {failure}").to_ascii_lowercase();
        assert!(text.contains("certificate"), "{name}: {text}");
    }
}
