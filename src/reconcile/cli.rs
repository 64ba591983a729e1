//! `payrelay reconcile [--dry-run] [--tenant ID]` (SPEC §9): the orders due
//! for a query now, and — without `--dry-run` — one reconciliation round,
//! with what it found. Safe beside a running gateway: the store is opened
//! without touching its leases, and orders are claimed like the gateway's
//! own reconciler claims them.

use std::process::ExitCode;

use crate::cli::ReconcileArgs;
use crate::store::{OrderFilter, Store};

pub fn command(args: &ReconcileArgs) -> ExitCode {
    let config = match crate::config::load(&args.config.config) {
        Ok(c) => c,
        Err(e) => {
            for p in e.problems() {
                eprintln!("{p}");
            }
            return ExitCode::FAILURE;
        }
    };
    let run = async {
        let store = Store::open_beside_a_server(&config.storage).await?;
        let now = store.clock().now_ms();
        let filter = OrderFilter { tenant: args.tenant.clone(), due_at: Some(now), limit: 500, ..Default::default() };
        let due = store.orders(&filter).await?;
        println!("{} order(s) due for a query", due.len());
        for o in &due {
            println!(
                "  {} {} {} {:?} (asked {} times)",
                o.tenant,
                o.merchant_trade_no,
                o.state.as_str(),
                o.amount,
                o.query_tries
            );
        }
        if !args.dry_run && !due.is_empty() {
            let client = crate::startup::http_client_via(config.server.outbound_proxy.as_ref())?;
            let shared = std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(config.clone()));
            let worker = crate::delivery::Worker::new(shared, client, store.clone());
            for r in super::reconcile_tenant_at(&worker, now, args.tenant.as_deref()).await? {
                let mark = if r.found_paid { "FOUND PAID" } else { "-" };
                println!("  {} {}: {mark} {}", r.tenant, r.merchant_trade_no, r.detail);
            }
        }
        store.close().await;
        anyhow::Ok(())
    };
    match tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(anyhow::Error::from) {
        Ok(rt) => match rt.block_on(run) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("payrelay: {e:#}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("payrelay: {e:#}");
            ExitCode::FAILURE
        }
    }
}
