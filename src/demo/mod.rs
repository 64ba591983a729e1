//! `payrelay demo`: a whole payment to click through on one machine
//! (issue 15). It starts, on 127.0.0.1, the sandbox providers, a demo shop
//! and the real gateway between them — a temporary SQLite store, a routes
//! table written for the demo, the admin console behind a token made for
//! this run — prints where each is, and on Ctrl-C stops them all and
//! removes the store.

mod pages;
mod shop;

use std::collections::HashMap;
use std::hash::{BuildHasher as _, Hasher as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::oneshot;

pub use shop::Shop;

use crate::domain::{HashKeys, Secret};
use crate::sandbox::{self, Sandbox, SandboxOptions};
use crate::startup::Application;

#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The gateway's port; the sandbox takes the next, the shop the one
    /// after. 0: any free ports.
    pub port: u16,
    /// How long after checkout an order with no result is asked about.
    pub reconcile_after: Duration,
    /// The sandbox Funpoint's resend waits.
    pub resend: Vec<Duration>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            port: 0,
            reconcile_after: Duration::from_secs(20),
            resend: vec![Duration::from_secs(5), Duration::from_secs(15), Duration::from_secs(60)],
        }
    }
}

/// Everything `payrelay demo` runs.
pub struct Demo {
    pub gateway: String,
    pub admin_token: String,
    pub dir: PathBuf,
    pub sandbox: Sandbox,
    pub shop: Shop,
    stop_gateway: oneshot::Sender<()>,
    gateway_task: tokio::task::JoinHandle<()>,
}

/// `n` random bytes as hex, from the standard library's OS-seeded hasher
/// keys (no extra crate for a demo's token).
pub fn random_hex(n: usize) -> String {
    let mut out = String::with_capacity(n * 2);
    while out.len() < n * 2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(out.len());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(n * 2);
    out
}

fn port(base: u16, offset: u16) -> SocketAddr {
    let p = if base == 0 { 0 } else { base.saturating_add(offset) };
    SocketAddr::from((Ipv4Addr::LOCALHOST, p))
}

impl Demo {
    pub async fn start(options: DemoOptions) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("payrelay-demo-{}-{}", std::process::id(), random_hex(4)));
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut sandbox_options = SandboxOptions::stage(port(options.port, 1));
        sandbox_options.resend = options.resend.clone();
        let sandbox = Sandbox::start(sandbox_options).await?;
        let keys = stage_keys();
        let payment_url = format!("{}/Cashier/AioCheckOut/V5", sandbox.url());
        let shop = Shop::start(port(options.port, 2), sandbox::STAGE_MERCHANT, keys, payment_url).await?;
        let admin_token = random_hex(20);
        let text = routes_table(&shop.url(), &sandbox.url(), &dir, &options)?;
        std::fs::write(dir.join("routes.toml"), &text).context("cannot write the demo's routes.toml")?;
        let env = demo_env(&admin_token);
        let mut config = crate::config::parse(&text, &|name| env.get(name).cloned())
            .map_err(|e| anyhow::anyhow!("the demo's routes table is invalid:\n{e}"))?;
        config.server.listen = port(options.port, 0);
        let app = Application::build(config).await?;
        let gateway = format!("http://{}", app.local_addr()?);
        let (stop_gateway, stopped) = oneshot::channel::<()>();
        let gateway_task = tokio::spawn(app.run(async {
            let _ = stopped.await;
        }));
        sandbox.send_webhooks_to(&gateway);
        shop.use_gateway(&gateway);
        Ok(Self { gateway, admin_token, dir, sandbox, shop, stop_gateway, gateway_task })
    }

    /// Stops the gateway (gracefully), the shop and the sandbox, and removes
    /// the temporary store.
    pub async fn stop(self) {
        let _ = self.stop_gateway.send(());
        let _ = self.gateway_task.await;
        self.shop.stop().await;
        self.sandbox.stop().await;
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove the demo's store");
        }
    }

    /// What `payrelay demo` prints.
    pub fn banner(&self) -> String {
        let (gw, shop, sandbox) = (&self.gateway, self.shop.url(), self.sandbox.url());
        format!(
            "payrelay demo — everything on 127.0.0.1; Ctrl-C stops it all and removes the store\n\
             \n  shop      {shop}/          start here: buy something\
             \n            {shop}/orders    each order's state and every notification it received\
             \n  sandbox   {sandbox}/          the stand-in Funpoint, Oen, TapPay and SinoPac\
             \n  console   {gw}/admin     user: anything, password (token): {token}\
             \n  gateway   {gw}\
             \n  store     {dir}  (its routes.toml too)\n",
            token = self.admin_token,
            dir = self.dir.display(),
        )
    }
}

fn stage_keys() -> HashKeys {
    HashKeys { key: Secret::new(sandbox::STAGE_HASH_KEY), iv: Secret::new(sandbox::STAGE_HASH_IV) }
}

/// The values behind the routes table's `${…}` (all public test values but
/// the admin token, which is made for this run).
fn demo_env(admin_token: &str) -> HashMap<&'static str, String> {
    let mut env = HashMap::from([
        ("DEMO_ADMIN_TOKEN", admin_token.to_owned()),
        ("DEMO_HASH_KEY", sandbox::STAGE_HASH_KEY.to_owned()),
        ("DEMO_HASH_IV", sandbox::STAGE_HASH_IV.to_owned()),
        ("DEMO_OEN_TOKEN", sandbox::OEN_TOKEN.to_owned()),
        ("DEMO_TAPPAY_KEY", sandbox::TAPPAY_PARTNER_KEY.to_owned()),
    ]);
    for (name, part) in ["DEMO_SINOPAC_A1", "DEMO_SINOPAC_A2", "DEMO_SINOPAC_B1", "DEMO_SINOPAC_B2"]
        .into_iter()
        .zip(sandbox::SINOPAC_PARTS)
    {
        env.insert(name, part.to_owned());
    }
    env
}

/// The demo's routes table: one tenant, the demo shop, taking all four
/// providers and querying each (SPEC §8), every provider API at the sandbox.
#[derive(askama::Template)]
#[template(path = "demo/routes.toml", escape = "none")]
struct RoutesTable<'a> {
    db: String,
    after: String,
    sandbox: &'a str,
    shop: &'a str,
    domain: &'a str,
    suffix: &'a str,
    merchant: &'a str,
    api: &'a str,
    notify: &'a str,
    result: &'a str,
    oen: &'a str,
    sinopac: &'a str,
    tappay: &'a str,
}

fn routes_table(shop: &str, sandbox: &str, dir: &std::path::Path, o: &DemoOptions) -> anyhow::Result<String> {
    let table = RoutesTable {
        db: dir.join("payrelay.db").display().to_string(),
        after: format!("{}ms", o.reconcile_after.as_millis().max(1)),
        sandbox,
        shop,
        domain: shop::DOMAIN,
        suffix: shop::SUFFIX,
        merchant: sandbox::STAGE_MERCHANT,
        api: shop::API_PATH,
        notify: shop::NOTIFY_PATH,
        result: shop::RESULT_PATH,
        oen: sandbox::OEN_MERCHANT,
        sinopac: sandbox::SINOPAC_SHOP,
        tappay: sandbox::TAPPAY_MERCHANT,
    };
    Ok(askama::Template::render(&table)?)
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The gateway's port (the sandbox takes the next one, the shop the one
    /// after); 0 picks free ports.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// How long after checkout an order with no result is asked about
    /// ("lose this notification" is found after this).
    #[arg(long, default_value = "20s", value_parser = duration)]
    pub reconcile_after: Duration,
}

/// A duration as routes.toml writes it ("20s", "2m").
pub(crate) fn duration(s: &str) -> Result<Duration, String> {
    crate::domain::ConfigDuration::parse(s).map(|d| d.0)
}

/// `payrelay demo`: start, print, wait for Ctrl-C, stop.
pub async fn command(args: DemoArgs) -> std::process::ExitCode {
    let options = DemoOptions { port: args.port, reconcile_after: args.reconcile_after, ..DemoOptions::default() };
    let demo = match Demo::start(options).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("payrelay demo: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("{}", demo.banner());
    crate::cli::shutdown_signal().await;
    demo.stop().await;
    println!("payrelay demo stopped; its store is removed");
    std::process::ExitCode::SUCCESS
}
