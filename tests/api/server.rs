//! The server skeleton: health, body limit, request ids, unknown paths, and
//! the binary's graceful shutdown.

use std::io::{Read, Write};
use std::net::TcpStream;

use std::time::Duration;

use crate::helpers::*;

#[tokio::test]
async fn healthz_answers_ok() {
    need_backend!();
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
    need_backend!();
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

const ONE_TENANT: &str = "[delivery]\ntimeout = \"300ms\"\n[[tenants]]\nid = \"a\"\nbase_url = \"http://127.0.0.1:1\"\nallow_http = true\ndomain_codes = [\"a\"]\n";

#[test]
fn serve_stops_cleanly_on_sigterm() {
    need_backend!();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("routes.toml");
    std::fs::write(&cfg, ONE_TENANT).unwrap();
    let mut served = Served::start(&cfg);
    let answer = served.raw("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"), "{answer}");
    served.signal("-TERM");
    served.wait_for_log("payrelay stopped");
    let status = served.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn sighup_swaps_in_a_valid_table_and_keeps_the_old_one_otherwise() {
    need_backend!();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("routes.toml");
    std::fs::write(&cfg, ONE_TENANT).unwrap();
    let mut served = Served::start(&cfg);
    // Tenant "b" is unknown (8000206); "a" is known but its API is down (8000207).
    assert!(served.checkout("b").contains("8000206"));
    assert!(served.checkout("a").contains("8000207"));

    let two = format!(
        "{ONE_TENANT}[[tenants]]\nid = \"b\"\nbase_url = \"http://127.0.0.1:1\"\nallow_http = true\ndomain_codes = [\"b\"]\n"
    );
    std::fs::write(&cfg, format!("[storage]\nurl = \"{}\"\n{two}", store_url_for(&dir.path().join("payrelay.db"))))
        .unwrap();
    served.signal("-HUP");
    served.wait_for_log("config reloaded");
    assert!(served.checkout("b").contains("8000207"), "the new tenant is not routable");

    // An invalid file is refused, and the table in force stays.
    std::fs::write(&cfg, "[[tenants]]\nid = \"b\"\n").unwrap();
    served.signal("-HUP");
    let refused = served.wait_for_log("config reload refused");
    assert!(refused["problems"].as_str().unwrap().contains("base_url"), "{refused}");
    assert!(served.checkout("b").contains("8000207"));
    assert!(served.checkout("a").contains("8000207"));
}

#[test]
fn slow_clients_are_cut_off_by_request_timeout() {
    need_backend!();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("routes.toml");
    std::fs::write(&cfg, format!("[server]\nrequest_timeout = \"300ms\"\n{ONE_TENANT}")).unwrap();
    let served = Served::start(&cfg);
    let started = std::time::Instant::now();

    // Headers never finished: the connection is closed.
    let mut s = TcpStream::connect(&served.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /funpoint/checkout HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");

    // Body never finished: 408.
    let mut s = TcpStream::connect(&served.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /funpoint/checkout HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nforan=1").unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // On a notify path, in the provider's grammar.
    for (path, body) in [("/funpoint/notify", "0|Request Timeout"), ("/oen/notify", r#"{"error":"Request Timeout"}"#)] {
        let mut s = TcpStream::connect(&served.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nMerchantTradeNo=");
        s.write_all(head.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 408") && answer.ends_with(body), "{path}: {answer}");
    }
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
}

/// Requests are served on the connection lanes, which stop with the server:
/// a checkout still waiting on its tenant when the gateway is told to stop
/// gets its whole answer, the stop waits for it and for the lanes, and then
/// nothing answers on the port.
#[tokio::test]
async fn a_checkout_in_flight_when_the_gateway_stops_gets_its_whole_answer() {
    need_backend!();
    let f = Fixture::start().await;
    let url = format!("{}/Cashier/AioCheckOut/V5", f.provider.url());
    f.tenant.reply(
        Reply::json(format!(
            r#"{{"payment_url":"{url}","payment_value":{{"ChoosePayment":"Credit","TotalAmount":100}}}}"#
        ))
        .with_delay(Duration::from_millis(400)),
    );
    let (client, target) = (f.app.client.clone(), f.app.url("/funpoint/checkout"));
    let addr = f.app.addr;
    let checkout = tokio::spawn(async move {
        let res = client
            .post(target)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(CHECKOUT)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    });
    for _ in 0..500 {
        if !f.tenant.received().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(f.tenant.received().len(), 1, "the checkout never reached its tenant");
    tokio::time::timeout(Duration::from_secs(10), f.app.stop()).await.expect("the stop waited past its grace");
    let (status, html) = checkout.await.unwrap();
    assert_eq!(status, 200, "{html}");
    let doc = scraper::Html::parse_document(&html);
    let form = scraper::Selector::parse("form#payment_data").unwrap();
    let form = doc.select(&form).next().unwrap_or_else(|| panic!("no form in {html}"));
    assert_eq!(form.value().attr("action"), Some(url.as_str()));
    let inputs = scraper::Selector::parse("input[type=hidden]").unwrap();
    let fields: Vec<_> = form.select(&inputs).map(|i| (i.attr("name").unwrap(), i.attr("value").unwrap())).collect();
    assert_eq!(fields, [("ChoosePayment", "Credit"), ("TotalAmount", "100")]);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "still accepting after the stop");
}
