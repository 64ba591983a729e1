//! The four commands of SPEC §1. `main.rs` only dispatches here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config};
use crate::domain::{CheckMac, HashAlgorithm, HashKeys, Secret};
use crate::routing::{self, Provider};
use crate::startup::{self, Application};
use crate::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(name = "payrelay", version, about = "Payment gateway relay for Taiwanese payment providers")]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Validate the config and print the routing table (never a secret).
    Check(ConfigArg),
    /// Dry run: which tenant would a callback with these fields go to?
    Route(RouteArgs),
    /// Print the CheckMacValue of some fields.
    Checkmac(CheckmacArgs),
    /// Ask the provider now about a callback with these fields; print what
    /// it says and what the gateway would decide (nothing is delivered).
    Verify(VerifyArgs),
    /// List the ledger's orders due for a reconciliation query, and (without
    /// --dry-run) ask Funpoint about them now.
    Reconcile(ReconcileArgs),
    /// Click through a whole payment locally: the gateway between a demo
    /// shop and sandbox providers, all on 127.0.0.1, until Ctrl-C.
    Demo(crate::demo::DemoArgs),
    /// Stand-in Funpoint, Oen, TapPay and SinoPac for a shop's dev setup.
    Sandbox(crate::sandbox::SandboxArgs),
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Only list what would be asked; ask nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only this tenant's orders.
    #[arg(long)]
    pub tenant: Option<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// funpoint, oen, sinopac or tappay
    pub provider: String,
    /// The tenant whose credentials ask.
    #[arg(long)]
    pub tenant: String,
    /// The callback's fields as KEY=VALUE (as `route` takes them).
    #[arg(value_name = "KEY=VALUE")]
    pub fields: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The routing table.
    #[arg(long, default_value = "routes.toml")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Overrides [server].listen.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub struct RouteArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// funpoint, oen, sinopac or tappay
    pub provider: String,
    /// Callback fields as KEY=VALUE; `tenant=ID` stands for the tenant named
    /// in the callback path (/{provider}/notify/{tenant_id}).
    #[arg(value_name = "KEY=VALUE")]
    pub fields: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CheckmacArgs {
    #[arg(long)]
    pub hash_key: String,
    #[arg(long)]
    pub hash_iv: String,
    /// MD5 (legacy EncryptType=0) instead of SHA-256.
    #[arg(long)]
    pub md5: bool,
    #[arg(value_name = "KEY=VALUE")]
    pub fields: Vec<String>,
}

pub(crate) fn load_or_report(path: &Path) -> Result<Config, ExitCode> {
    config::load(path).map_err(|e| {
        for problem in e.problems() {
            eprintln!("{}: {problem}", path.display());
        }
        ExitCode::FAILURE
    })
}

pub(crate) fn split_fields(fields: &[String]) -> Result<Vec<(String, String)>, ExitCode> {
    fields
        .iter()
        .map(|f| {
            f.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).ok_or_else(|| {
                eprintln!("{f:?} is not KEY=VALUE");
                ExitCode::FAILURE
            })
        })
        .collect()
}

pub async fn serve(args: ServeArgs) -> ExitCode {
    let path = args.config.config;
    let mut config = match load_or_report(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "cannot start");
            return ExitCode::FAILURE;
        }
    };
    let state = app.state();
    tokio::spawn(reload_on_sighup(state, path));
    app.run(shutdown_signal()).await;
    ExitCode::SUCCESS
}

#[cfg(unix)]
async fn reload_on_sighup(state: crate::http::AppState, path: PathBuf) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot listen for SIGHUP; reload is off");
        return;
    };
    while hup.recv().await.is_some() {
        // Reading a large table takes tens of milliseconds: off the main
        // runtime, whose one worker (on up to four cores) also accepts
        // connections and makes deliveries.
        let (s, p) = (state.clone(), path.clone());
        match tokio::task::spawn_blocking(move || startup::reload(&s, &p)).await {
            Ok(Ok(())) => tracing::info!(config = %path.display(), "config reloaded"),
            Ok(Err(e)) => {
                tracing::error!(config = %path.display(), problems = %e, "config reload refused; the old table stays in force")
            }
            Err(e) => {
                tracing::error!(config = %path.display(), error = %e, "config reload failed; the old table stays in force")
            }
        }
    }
}

#[cfg(not(unix))]
async fn reload_on_sighup(_: crate::http::AppState, _: PathBuf) {}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT: shutting down"),
        () = term => tracing::info!("SIGTERM: shutting down"),
    }
}

pub fn check(args: &ConfigArg) -> ExitCode {
    match load_or_report(&args.config) {
        Ok(config) => {
            print!("{}", describe(&config));
            // Warnings do not change the exit status (SPEC §7).
            for warning in config.warnings() {
                println!("warning: {warning}");
            }
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// The routing table as `check` prints it: everything an operator needs to
/// see where traffic goes, and no secret (keys show only as "set").
pub fn describe(config: &Config) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let s = &config.server;
    let _ = writeln!(out, "listen         {}", s.listen);
    let _ = writeln!(out, "storage        {}", config.storage.url.display_masked());
    let _ = writeln!(out, "legacy paths   {}", if s.legacy_paths { "on" } else { "off" });
    let _ = writeln!(out, "admin          {}", if config.admin.token.is_some() { "on (token set)" } else { "off" });
    let origins: Vec<&str> = config.table.funpoint.payment_origins.iter().map(|o| o.as_str()).collect();
    let _ = writeln!(
        out,
        "funpoint       payment origins {}; order suffix length {}",
        origins.join(", "),
        config.table.funpoint.order_suffix_len
    );
    let _ = writeln!(out, "tappay         order suffix length {}", config.table.tappay_suffix_len);
    let _ = writeln!(out, "tenants        {}", config.table.tenants().len());
    for t in config.table.tenants() {
        describe_tenant(&mut out, t);
    }
    out
}

/// One tenant's block of `check`'s table.
fn describe_tenant(out: &mut String, t: &config::Tenant) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "\ntenant {}", t.id);
    let _ = writeln!(out, "  base_url      {}", t.base_url.as_str());
    let _ = writeln!(
        out,
        "  domain codes  {}",
        if t.domain_codes.is_empty() { "-".into() } else { t.domain_codes.join(", ") }
    );
    let _ = writeln!(out, "  order suffix  {}", t.order_suffix.as_deref().unwrap_or("-"));
    let origins: Vec<&str> = t.origins.iter().map(|o| o.as_str()).collect();
    let _ = writeln!(out, "  origins       {}", if origins.is_empty() { "-".into() } else { origins.join(", ") });
    let _ = writeln!(
        out,
        "  ack           {}{}{}",
        match t.ack {
            config::AckMode::Stored => "stored",
            config::AckMode::Delivered => "delivered",
        },
        if t.forward_secret.is_some() { "; deliveries signed" } else { "" },
        if t.drop_simulated { "; simulated payments dropped" } else { "" },
    );
    describe_providers(out, t);
}

/// The tenant's provider sections, a line or a few each.
fn describe_providers(out: &mut String, t: &config::Tenant) {
    use std::fmt::Write as _;
    if let Some(f) = &t.funpoint {
        let _ = writeln!(
            out,
            "  funpoint      merchant_id {}; CheckMacValue {}",
            f.merchant_id.as_deref().unwrap_or("(any)"),
            match (f.verify, f.keys.is_some(), f.encrypt_type) {
                (config::FunpointVerify::None, _, _) => "not verified (verify = \"none\")",
                (_, false, _) => "required, but no keys: every notification is refused",
                (_, true, HashAlgorithm::Sha256) => "verified (keys set, SHA-256)",
                (_, true, HashAlgorithm::Md5) => "verified (keys set, MD5)",
            }
        );
        let _ = writeln!(out, "                api    {}", t.base_url.join(&f.api_path));
        let _ = writeln!(out, "                notify {}", t.base_url.join(&f.notify_path));
        let _ = writeln!(out, "                result {}", t.base_url.join(&f.result_path));
    }
    for provider in crate::routing::Provider::ALL {
        if crate::providers::of(provider).serves(t) {
            let policy = crate::verify::policy(t, provider);
            let _ = writeln!(out, "  {:<13} verify by query: {}", provider.name(), policy.as_str());
        }
    }
    if let Some(o) = &t.oen {
        let _ = writeln!(
            out,
            "  oen           merchant_id {}; notify {}",
            o.merchant_id.as_deref().unwrap_or("(path only)"),
            t.base_url.join(&o.notify_path)
        );
    }
    if let Some(s) = &t.sinopac {
        let _ = writeln!(
            out,
            "  sinopac       shop_no {}; notify {}; return {}",
            s.shop_no.as_deref().unwrap_or("(path only)"),
            t.base_url.join(&s.notify_path),
            t.base_url.join(&s.return_path)
        );
    }
    if let Some(tp) = &t.tappay {
        let _ = writeln!(
            out,
            "  tappay        notify {}; return {}",
            t.base_url.join(&tp.notify_path),
            t.base_url.join(&tp.return_path)
        );
    }
}

/// `payrelay verify` (in `verify/cli.rs`).
pub fn verify(args: &VerifyArgs) -> ExitCode {
    crate::verify::command(args)
}

pub fn route(args: &RouteArgs) -> ExitCode {
    let config = match load_or_report(&args.config.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let fields = match split_fields(&args.fields) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let get = |name: &str| fields.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let path_tenant = get("tenant");
    let Some(provider) = Provider::parse(&args.provider) else {
        let known: Vec<&str> = Provider::ALL.iter().map(|p| p.name()).collect();
        eprintln!("unknown provider {:?} (known: {})", args.provider, known.join(", "));
        return ExitCode::FAILURE;
    };
    let imp = crate::providers::of(provider);
    let (key, _) = imp.routing_key();
    let result = routing::route(&config.table, imp, get(key), path_tenant);
    match result {
        Ok(m) => {
            println!("tenant {} (matched by {})", m.tenant.id, m.matched_by);
            if let Some(path) = crate::providers::of(provider).notify_path(m.tenant) {
                println!("delivered to {}", m.tenant.base_url.join(path));
            }
            if let (Some(f), Some(given)) = (&m.tenant.funpoint, get("MerchantID"))
                && let Some(expected) = &f.merchant_id
                && expected != given
            {
                println!(
                    "note: MerchantID {given:?} differs from the tenant's {expected:?}: the callback would be rejected"
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("no tenant: {e}");
            ExitCode::FAILURE
        }
    }
}

pub fn checkmac(args: &CheckmacArgs) -> ExitCode {
    let fields = match split_fields(&args.fields) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let keys = HashKeys { key: Secret::new(args.hash_key.clone()), iv: Secret::new(args.hash_iv.clone()) };
    let alg = if args.md5 { HashAlgorithm::Md5 } else { HashAlgorithm::Sha256 };
    let mac = CheckMac::compute(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())), &keys, alg);
    println!("{}", mac.as_str());
    ExitCode::SUCCESS
}
