//! The end-to-end and store-level suite of `tests/api/` again, every
//! gateway on PostgreSQL (a fresh database per test on a throwaway server:
//! see `tests/api/pg.rs`), plus what only several instances can show:
//! failover, dedup across instances, readiness while the database is away.

/// Which store the gateways of this test binary use.
pub const POSTGRES: bool = true;

/// First line of every test that needs a store: returns (skipped) when
/// PostgreSQL is not available here (it is required in CI).
macro_rules! need_backend {
    () => {
        if !crate::helpers::backend_ready() {
            return;
        }
    };
}

#[path = "api/admin.rs"]
mod admin;
#[path = "api/browser.rs"]
mod browser;
#[path = "api/checkout.rs"]
mod checkout;
#[path = "api/checkout_json.rs"]
mod checkout_json;
#[path = "api/crash.rs"]
mod crash;
#[path = "api/delivery.rs"]
mod delivery;
#[path = "api/funpoint_return.rs"]
mod funpoint_return;
#[path = "api/helpers.rs"]
mod helpers;
#[path = "api/ledger.rs"]
mod ledger;
#[path = "api/notify.rs"]
mod notify;
#[path = "api/operations.rs"]
mod operations;
#[path = "api/pg.rs"]
mod pg;
#[path = "api/provider_api.rs"]
mod provider_api;
#[path = "api/providers.rs"]
mod providers;
#[path = "api/scale.rs"]
mod scale;
#[path = "api/security.rs"]
mod security;
#[path = "api/server.rs"]
mod server;
#[path = "api/store.rs"]
mod store;
#[path = "api/upgrade.rs"]
mod upgrade;
#[path = "api/verify.rs"]
mod verify;
#[path = "api/webdriver.rs"]
mod webdriver;
