//! A throwaway PostgreSQL for the tests, and one fresh database per test.
//!
//! `PAYRELAY_TEST_DATABASE_URL` (a server the tests may create databases
//! on; `.ci/run` starts one) is used when set. Otherwise the first test that
//! needs one starts a private cluster from Debian's packages (initdb +
//! postgres on 127.0.0.1, in a temp dir, as the `postgres` user when run as
//! root); a watchdog shell stops it and deletes the dir when this test
//! process exits (its stdin, a pipe from this process, closes). Without
//! PostgreSQL installed, `available()` is false and the PostgreSQL suite
//! says it is skipped — unless `PAYRELAY_POSTGRES_TESTS=required`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

struct Server {
    admin_url: String,
    _watchdog: Option<Mutex<Child>>,
}

static SERVER: OnceLock<Option<Server>> = OnceLock::new();
static DATABASES: OnceLock<Mutex<HashMap<PathBuf, String>>> = OnceLock::new();

fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn required() -> bool {
    std::env::var("PAYRELAY_POSTGRES_TESTS").as_deref() == Ok("required")
}

/// Is there a PostgreSQL to test on? (Panics when one is required and none is.)
pub fn available() -> bool {
    let up = server().is_some();
    assert!(up || !required(), "PostgreSQL is required here (apt-get install postgresql)");
    up
}

fn server() -> Option<&'static Server> {
    SERVER
        .get_or_init(|| {
            if let Ok(url) = std::env::var("PAYRELAY_TEST_DATABASE_URL") {
                return Some(Server { admin_url: url, _watchdog: None });
            }
            start_private()
        })
        .as_ref()
}

fn start_private() -> Option<Server> {
    let bin = bin_dir()?;
    let dir = std::env::temp_dir().join(format!("payrelay-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).ok()?;
    let root = unsafe_is_root();
    if root {
        Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status().ok()?;
    }
    let as_pg = |program: &Path| {
        let mut c = if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    };
    let data = dir.join("data");
    let ok = as_pg(&bin.join("initdb"))
        .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "-D"])
        .arg(&data)
        .status()
        .ok()?
        .success();
    assert!(ok, "initdb failed in {}", dir.display());
    for attempt in 0..5 {
        let port = free_port();
        // The watchdog: postgres in the background; when this process's
        // end of the pipe closes, `read` returns, postgres is stopped (fast
        // shutdown) and the cluster deleted.
        let script = format!(
            "{postgres} -D {data} -k {dir} -p {port} -c listen_addresses=127.0.0.1 -c max_connections=400 \
             -c shared_buffers=32MB >{dir}/log 2>&1 & PG=$!; read _; kill -INT $PG; wait $PG; rm -rf {dir}",
            postgres = bin.join("postgres").display(),
            data = data.display(),
            dir = dir.display(),
        );
        let mut watchdog = as_pg(Path::new("/bin/sh"));
        let child = watchdog.arg("-c").arg(&script).stdin(Stdio::piped()).spawn().ok()?;
        let admin_url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        if wait_ready(&admin_url) {
            return Some(Server { admin_url, _watchdog: Some(Mutex::new(child)) });
        }
        let mut child = child;
        let _ = child.kill();
        eprintln!("test PostgreSQL did not come up on port {port} (attempt {attempt}); trying another");
    }
    panic!("cannot start the test PostgreSQL (see {}/log)", dir.display());
}

fn unsafe_is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Runs `f` on a runtime of its own, on a thread of its own (callers may
/// be inside a runtime already).
fn block<T: Send + 'static>(f: impl std::future::Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f))
        .join()
        .unwrap()
}

fn wait_ready(url: &str) -> bool {
    let url = url.to_owned();
    block(async move {
        use sqlx::Connection as _;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::time::Instant::now() < deadline {
            if let Ok(c) = sqlx::PgConnection::connect(&url).await {
                let _ = c.close().await;
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    })
}

/// A fresh, empty database for the store at `key` (the same key gives the
/// same database: a gateway restarted "on the same store").
pub fn database_for(key: &Path) -> String {
    let server = server().expect("no test PostgreSQL (check pg::available() first)");
    let mut map = DATABASES.get_or_init(|| Mutex::new(HashMap::new())).lock().unwrap();
    if let Some(url) = map.get(key) {
        return url.clone();
    }
    let name = format!("t_{}", uuid::Uuid::now_v7().simple());
    let admin = server.admin_url.clone();
    let create = format!("CREATE DATABASE {name}");
    block(async move {
        use sqlx::{Connection as _, Executor as _};
        let mut c = sqlx::PgConnection::connect(&admin).await.expect("connect to the test PostgreSQL");
        c.execute(sqlx::AssertSqlSafe(create)).await.expect("create a test database");
        let _ = c.close().await;
    });
    let base = server.admin_url.rsplit_once('/').map_or(server.admin_url.as_str(), |(b, _)| b);
    let url = format!("{base}/{name}");
    map.insert(key.to_owned(), url.clone());
    url
}

/// The server's address (host:port), for a proxy in front of it.
#[allow(dead_code)] // used by the PostgreSQL binary only
pub fn server_addr() -> String {
    let url = &server().expect("no test PostgreSQL").admin_url;
    let after_at = url.rsplit_once('@').map_or(url.as_str(), |(_, rest)| rest);
    after_at.split('/').next().unwrap_or_default().to_owned()
}
