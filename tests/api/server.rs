//! The server skeleton: health, body limit, request ids, unknown paths, and
//! the binary's graceful shutdown.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::*;

#[tokio::test]
async fn healthz_answers_ok() {
    let f = Fixture::start().await;
    let res = f.app.client.get(f.app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("x-request-id"));
    assert_eq!(res.text().await.unwrap(), "ok");
    let res = f.app.client.get(f.app.url("/nope")).send().await.unwrap();
    assert_eq!(res.status(), 404);
}

// Multi-threaded: the raw socket below blocks the test's own thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_max_body_bytes_get_413() {
    let tenant = MockServer::start().await;
    let config = shop_config(&tenant.url(), "http://127.0.0.1:1", "")
        .replace("[delivery]", "[server]\nmax_body_bytes = 1024\n[delivery]");
    let app = spawn_app(&config).await;
    let big = format!("{CHECKOUT}&pad={}", "x".repeat(2000));
    let res = app.post_form("/funpoint/checkout", &big).await;
    assert_eq!(res.status(), 413);
    // Chunked, with no Content-Length: cut off while streaming.
    let mut s = TcpStream::connect(app.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = "POST /funpoint/checkout HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    s.write_all(head.as_bytes()).unwrap();
    for chunk in big.as_bytes().chunks(500) {
        let _ = s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes());
        let _ = s.write_all(chunk);
        let _ = s.write_all(b"\r\n");
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(tenant.received().is_empty());
}

#[test]
fn serve_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("routes.toml");
    std::fs::write(&cfg, "[[tenants]]\nid = \"a\"\nbase_url = \"https://a.tw\"\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_payrelay"))
        .args(["serve", "--config", cfg.to_str().unwrap(), "--listen", "127.0.0.1:0", "--log-format", "json"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("serve exited before listening").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        if v["message"] == "payrelay listening" {
            let addr = v["addr"].as_str().unwrap().to_owned();
            break addr.trim_start_matches("Some(").trim_end_matches(')').to_owned();
        }
    };
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"), "{answer}");

    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("payrelay stopped")), "{rest:?}");
}
