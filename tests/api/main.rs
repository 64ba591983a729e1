//! End-to-end tests on the real server: one binary, a module per capability.
//! This binary runs them on SQLite; `tests/api_postgres.rs` runs the same
//! modules on PostgreSQL.

/// Which store the gateways of this test binary use.
pub const POSTGRES: bool = false;

/// First line of every test that needs a store: returns (skipped) when this
/// binary's backend is not available here.
macro_rules! need_backend {
    () => {
        if !crate::helpers::backend_ready() {
            return;
        }
    };
}

mod admin;
mod browser;
mod checkmac;
mod checkout;
mod checkout_json;
mod cli;
mod crash;
mod delivery;
mod demo;
mod funpoint_return;
mod helpers;
mod ledger;
mod notify;
mod operations;
mod pg;
mod provider_api;
mod providers;
mod security;
mod server;
mod store;
mod upgrade;
mod verify;
mod webdriver;
