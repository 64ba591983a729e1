//! A small WebDriver client for the real-browser tests: chromedriver and a
//! headless Chromium (Debian's `chromium` and `chromium-driver`) in a
//! process group the test owns, a session, and the few commands the tests
//! use. `.ci/run` installs both and sets `PAYRELAY_BROWSER_TESTS=required`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Driver {
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

/// chromedriver's path, or `None` after saying the test is skipped
/// (refused where `PAYRELAY_BROWSER_TESTS=required`, as in CI).
pub fn browser_or_skip() -> Option<String> {
    let driver = chromedriver();
    if driver.is_none() {
        assert_ne!(
            std::env::var("PAYRELAY_BROWSER_TESTS").as_deref(),
            Ok("required"),
            "chromedriver is required here (apt-get install chromium chromium-driver)"
        );
        eprintln!("SKIPPED: no chromedriver on this machine (apt-get install chromium chromium-driver)");
    }
    driver
}

pub fn chromedriver() -> Option<String> {
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(str::to_owned)
}

impl Driver {
    pub async fn start(driver: &str) -> Self {
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

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        assert!(v["value"].get("error").is_none(), "WebDriver {path}: {v}");
        v["value"].clone()
    }

    pub async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    pub async fn find(&self, css: &str) -> String {
        let v =
            self.call(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await;
        v[ELEMENT].as_str().unwrap().to_owned()
    }

    pub async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{id}/click"), Some(json!({}))).await;
    }

    pub async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.call(reqwest::Method::GET, &format!("/element/{id}/text"), None).await.as_str().unwrap().to_owned()
    }

    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None).await.as_str().unwrap().to_owned()
    }

    /// Waits (bounded) until the page's URL contains `part`: a click that
    /// submits a form returns before the next page has loaded.
    pub async fn until_url(&self, part: &str) {
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

    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let b64 = self.call(reqwest::Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD.decode(b64.as_str().unwrap()).unwrap()
    }
}

/// Used by `demo.rs`, which only the SQLite binary (`tests/api`) runs.
#[allow(dead_code)]
impl Driver {
    /// The text of the first element matching `css`, or `None` (no such
    /// element yet, or the page was reloading): read in one script call, so
    /// a page that refreshes itself cannot leave a stale element behind.
    pub async fn try_text(&self, css: &str) -> Option<String> {
        let url = format!("{}/session/{}/execute/sync", self.base, self.session);
        let script = "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;";
        let body = json!({ "script": script, "args": [css] });
        let v: Value = self.http.post(url).json(&body).send().await.ok()?.json().await.ok()?;
        v["value"].as_str().map(str::to_owned)
    }

    /// Waits (bounded) until the element `css` of the current page holds
    /// `part`; returns its text.
    pub async fn until_text(&self, css: &str, part: &str, within: Duration) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let text = self.try_text(css).await;
            if let Some(t) = text.as_ref().filter(|t| t.contains(part)) {
                return t.clone();
            }
            assert!(tokio::time::Instant::now() < deadline, "{css} holds {text:?}, not …{part}…");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a screenshot as `name` in the target's temp dir, and in
    /// `$PAYRELAY_SCREENSHOTS` when set (how `docs/` is refreshed).
    pub async fn save_screenshot(&self, name: &str) {
        let png = self.screenshot().await;
        assert!(png.starts_with(b"\x89PNG"));
        let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&out, &png).unwrap();
        if let Ok(dir) = std::env::var("PAYRELAY_SCREENSHOTS") {
            std::fs::write(std::path::Path::new(&dir).join(name), &png).unwrap();
        }
    }
}
