//! The admin console in a real headless Chromium, driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`): log in, filter to `dead`,
//! open one, press Replay, and see it become `delivered` once the tenant
//! is up. `.ci/run` installs both and sets `PAYRELAY_BROWSER_TESTS=required`;
//! elsewhere the test says it is skipped when chromedriver is missing.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use payrelay::store::Status;
use serde_json::{Value, json};

use crate::admin::{Ops, TOKEN};
use crate::helpers::*;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    base: String,
    session: String,
    http: reqwest::Client,
    /// Dropped after `drop` below has ended the session, before the
    /// profile directory is removed.
    _group: Group,
    _profile: tempfile::TempDir,
}

/// chromedriver in a process group of its own; dropped (also while a
/// failed test unwinds), the whole group is killed.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.0.wait();
    }
}

/// Nothing the test started outlives it, whether it passed, failed or
/// panicked: the WebDriver session is ended first (chromedriver then quits
/// the browser it started), and the whole process group — chromedriver,
/// chromium and its helpers, started in a group of their own — is killed
/// after that in case anything did not listen.
impl Drop for Driver {
    fn drop(&mut self) {
        end_session(&self.base, &self.session);
    }
}

/// `DELETE /session/{id}`, blocking (Drop cannot await), bounded to 10 s.
fn end_session(base: &str, session: &str) {
    use std::io::{Read, Write};
    let Some(addr) = base.strip_prefix("http://") else { return };
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
    let request =
        format!("DELETE /session/{session} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    if s.write_all(request.as_bytes()).is_ok() {
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
    }
}

fn chromedriver() -> Option<String> {
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(str::to_owned)
}

impl Driver {
    async fn start(driver: &str) -> Self {
        use std::os::unix::process::CommandExt as _;
        let mut child = Command::new(driver)
            .arg("--port=0")
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let stdout = child.stdout.take().unwrap();
        let group = Group(child);
        let mut lines = BufReader::new(stdout).lines();
        let port = loop {
            let line = lines.next().expect("chromedriver said its port").unwrap();
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                break rest.trim_end_matches('.').trim().to_owned();
            }
        };
        // Keep draining its stdout so that it never blocks.
        std::thread::spawn(move || for _ in lines {});
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage", "--window-size=1280,900",
                         format!("--user-data-dir={}", profile.path().display())]
            }
        }}});
        let res: Value = http.post(format!("{base}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        let session = res["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {res}")).to_owned();
        Self { base, session, http, _group: group, _profile: profile }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        assert!(v["value"].get("error").is_none(), "WebDriver {path}: {v}");
        v["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    async fn find(&self, css: &str) -> String {
        let v =
            self.call(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await;
        v[ELEMENT].as_str().unwrap().to_owned()
    }

    async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{id}/click"), Some(json!({}))).await;
    }

    async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.call(reqwest::Method::GET, &format!("/element/{id}/text"), None).await.as_str().unwrap().to_owned()
    }

    async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None).await.as_str().unwrap().to_owned()
    }

    /// Waits (bounded) until the page's URL contains `part`: a click that
    /// submits a form returns before the next page has loaded.
    async fn until_url(&self, part: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let url = self.url().await;
            if url.contains(part) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "the browser is at {url}, not at …{part}…");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let b64 = self.call(reqwest::Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD.decode(b64.as_str().unwrap()).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_replays_a_dead_callback_in_a_real_browser() {
    need_backend!();
    let Some(driver) = chromedriver() else {
        assert_ne!(
            std::env::var("PAYRELAY_BROWSER_TESTS").as_deref(),
            Ok("required"),
            "chromedriver is required here (apt-get install chromium chromium-driver)"
        );
        eprintln!("SKIPPED: no chromedriver on this machine (apt-get install chromium chromium-driver)");
        return;
    };
    let mut ops = Ops::start().await;
    let body = notification("W01", "T1", "paid");
    assert_eq!(ops.notify(&body).await, 200);
    let id = ops.app.rows().await[0].id.clone();
    assert_eq!(ops.notify(&notification("W02", "T2", "paid")).await, 200); // other: delivered
    let forged = notification("W301", "T3", "paid").replace("CheckMacValue=", "CheckMacValue=00");
    assert_eq!(ops.notify(&forged).await, 400); // shop: rejected
    assert_eq!(ops.notify(&notification("W09", "T4", "paid")).await, 400); // unroutable
    ops.app.until_status(&id, Status::Dead, Duration::from_secs(15)).await;

    let b = Driver::start(&driver).await;
    // Log in: the browser's Basic credentials (any user name, the token).
    b.go(&format!("http://ops:{TOKEN}@{}/admin", ops.app.addr)).await;
    assert!(b.text("#count-dead").await.contains('1'));
    // The console as an operator sees it, for the README.
    let png = b.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"));
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin-console.png");
    std::fs::write(&out, png).unwrap();
    eprintln!("console screenshot: {}", out.display());

    // Filter to dead.
    b.click("#filter-status option[value=dead]").await;
    b.click("#apply").await;
    b.until_url("status=dead").await;
    let table = b.text("#callbacks").await;
    assert!(table.contains("dead") && table.contains("shop"), "{table}");
    assert!(!table.contains("delivered") && !table.contains("rejected"), "only dead rows: {table}");

    // Open it, bring the tenant up, press Replay.
    b.click("#callbacks a.open").await;
    b.until_url(&format!("/admin/callbacks/{id}")).await;
    assert_eq!(b.text("#status").await, "dead");
    assert!(b.text("#body").await.contains("MerchantTradeNo = W01"));
    let shop = MockServer::start_on(ops.down.take().unwrap()).await;
    b.click("#replay").await;
    b.until_url("done=replayed").await;
    assert!(b.text("#notice").await.contains("Queued again"));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        b.go(&format!("http://{}/admin/callbacks/{id}", ops.app.addr)).await;
        if b.text("#status").await == "delivered" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {} after replay", b.text("#status").await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(shop.received().iter().any(|r| r.body == body.as_bytes() && r.header("x-payrelay-attempt") == Some("4")));
    assert!(b.text("#attempts").await.contains("200"));
}
