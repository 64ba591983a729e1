//! The PostgreSQL backend: several payrelay instances on one database
//! (SPEC §6). What sharing needs is in the statements themselves: claims
//! with `FOR UPDATE SKIP LOCKED` under a lease, dedup by the unique index on
//! the business key (two instances storing the same resend at once store it
//! once: the second waits for the first's commit and then finds the row),
//! migrations under an advisory lock.
//!
//! The pool reconnects by itself: while the server is unreachable every
//! operation fails within `[storage] connect_timeout` (the provider hears a
//! 503 and resends), and the first operation after it returns succeeds.

use std::str::FromStr;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::StoreError;
use super::backend::{Backend, Dialect};

pub(super) static DIALECT: Dialect = Dialect {
    numbered_with: '$',
    due_index: "",
    delivered_index: "",
    no_index: "",
    skip_locked: "FOR UPDATE SKIP LOCKED",
    or_fail: "",
    begin_snapshot: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    // "payrelay": serialises the migrations of instances starting together.
    migration_lock: Some("SELECT pg_advisory_xact_lock(8097887137223696761)"),
    // Shared migrations take the same number on both backends (7 and 11
    // are SQLite's alone: its CHECKs without IN lists, an index its
    // planner never used).
    migrations: &[
        (1, include_str!("migrations/postgres/0001_init.sql")),
        (4, include_str!("migrations/shared/0004_verification.sql")),
        (5, include_str!("migrations/shared/0005_orders.sql")),
        (6, include_str!("migrations/shared/0006_recurring.sql")),
        (8, include_str!("migrations/postgres/0008_dedup_led_by_order.sql")),
        (9, include_str!("migrations/shared/0009_delivered_index.sql")),
        (10, include_str!("migrations/shared/0010_status_index_settled.sql")),
    ],
    single_instance: false,
    apply_per_row: false,
};

pub(super) struct PgBackend {
    pool: PgPool,
}

impl PgBackend {
    pub(super) async fn open(url: &str, pool_size: u32, connect_timeout: Duration) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?.application_name("payrelay");
        let pool = PgPoolOptions::new()
            .max_connections(pool_size)
            .min_connections(1)
            .acquire_timeout(connect_timeout)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }
}

impl Backend for PgBackend {
    type Conn = PoolConnection<sqlx::Postgres>;
    type WriteConn = PoolConnection<sqlx::Postgres>;
    const WRITER_THREAD: bool = false;

    fn dialect() -> &'static Dialect {
        &DIALECT
    }

    async fn write_conn(&self) -> Result<Self::WriteConn, sqlx::Error> {
        self.pool.acquire().await
    }

    async fn read_conn(&self) -> Result<Self::Conn, sqlx::Error> {
        self.pool.acquire().await
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
