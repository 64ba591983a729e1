//! What differs between SQLite and PostgreSQL, and nothing else: how a
//! connection runs a statement with its arguments, how a statement spells
//! its placeholders and planner hints, where connections come from. Every
//! statement and every rule of the store is written once, in `sql.rs` and
//! `ops.rs`, against [`Conn`].

use std::sync::Arc;

use sqlx::pool::PoolConnection;
use sqlx::{AssertSqlSafe, Postgres, Sqlite};

use super::rows::Cols;

/// One bound value: every column of both schemas is one of these.
#[derive(Debug, Clone)]
pub(super) enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
    Blob(Vec<u8>),
    Bool(bool),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Self::Int(Some(v))
    }
}

impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Self::Int(v)
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Self::Text(Some(v.to_owned()))
    }
}

impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        Self::Text(v.map(str::to_owned))
    }
}

impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

/// A connection of either backend, as the store's one SQL module uses it.
pub(super) trait Conn: Send + 'static {
    type Row: Cols + Send;
    fn fetch(
        &mut self,
        sql: &Arc<str>,
        args: Vec<Arg>,
    ) -> impl Future<Output = Result<Vec<Self::Row>, sqlx::Error>> + Send;
    /// Runs a statement; how many rows it changed.
    fn execute(&mut self, sql: &Arc<str>, args: Vec<Arg>) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;
    /// Several statements without arguments (a migration).
    fn script(&mut self, sql: &str) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
    /// Closes the connection instead of giving it back to its pool (after a
    /// transaction that could not even be rolled back).
    fn discard(self);
}

/// The statement `sql` with `args` bound in order.
macro_rules! bound {
    ($sql:expr, $args:expr) => {{
        let mut query = sqlx::query(AssertSqlSafe($sql.clone()));
        for arg in $args {
            query = match arg {
                Arg::Int(v) => query.bind(v),
                Arg::Text(v) => query.bind(v),
                Arg::Blob(v) => query.bind(v),
                Arg::Bool(v) => query.bind(v),
            };
        }
        query
    }};
}

macro_rules! conn {
    ($db:ty, $row:ty) => {
        impl Conn for PoolConnection<$db> {
            type Row = $row;

            async fn fetch(&mut self, sql: &Arc<str>, args: Vec<Arg>) -> Result<Vec<$row>, sqlx::Error> {
                bound!(sql, args).fetch_all(&mut **self).await
            }

            async fn execute(&mut self, sql: &Arc<str>, args: Vec<Arg>) -> Result<u64, sqlx::Error> {
                Ok(bound!(sql, args).execute(&mut **self).await?.rows_affected())
            }

            async fn script(&mut self, sql: &str) -> Result<(), sqlx::Error> {
                sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).execute(&mut **self).await.map(drop)
            }

            fn discard(self) {
                drop(self.detach());
            }
        }
    };
}

conn!(Sqlite, sqlx::sqlite::SqliteRow);
conn!(Postgres, sqlx::postgres::PgRow);

/// How one backend spells what the two spell differently.
pub(super) struct Dialect {
    /// PostgreSQL numbers placeholders `$1`; SQLite `?1`.
    pub numbered_with: char,
    /// The due scan's table hint (SQLite's planner took the status index
    /// while that held pending rows; since migration 10 it picks this one
    /// unaided, and the hint keeps it so).
    pub due_index: &'static str,
    /// The purge's table hint: unaided, SQLite's planner takes the settled
    /// index and reads every delivered row instead of the old ones.
    pub delivered_index: &'static str,
    /// Put before a column to keep SQLite from using its index (`+status`).
    pub no_index: &'static str,
    /// Claims by several instances skip each other's rows instead of waiting.
    pub skip_locked: &'static str,
    /// Put after `INSERT` in a multi-row insert whose failure fails its whole
    /// transaction anyway (the writer rolls back on any error): SQLite's
    /// `OR FAIL` needs no statement journal, where its default (`ABORT`,
    /// undo this statement's rows and go on) copies every page the
    /// statement touches aside first — a fifth of the writer's time.
    pub or_fail: &'static str,
    /// A read transaction that sees one snapshot throughout.
    pub begin_snapshot: &'static str,
    /// Taken inside each migration's transaction (instances starting together).
    pub migration_lock: Option<&'static str>,
    pub migrations: &'static [(i64, &'static str)],
    /// One instance per store: leases left by an earlier run are free at open.
    pub single_instance: bool,
    /// An attempt moves its callback on in a statement per attempt, not one
    /// `UPDATE … FROM` per chunk: SQLite builds temporary tables for the
    /// latter (the `IN (VALUES …)` list and the join) on every run, which
    /// cost more than the rows for the few records of a batch.
    pub apply_per_row: bool,
}

/// Where a backend's connections come from.
pub(super) trait Backend: Send + Sync + 'static {
    /// A connection for reads.
    type Conn: Conn;
    /// The writer's connection.
    type WriteConn: Conn;
    /// The writer runs on a thread of its own (its connection blocks the
    /// thread it runs on) rather than as a task of the runtime.
    const WRITER_THREAD: bool;
    fn dialect() -> &'static Dialect;
    /// The connection the writer's transactions run on.
    fn write_conn(&self) -> impl Future<Output = Result<Self::WriteConn, sqlx::Error>> + Send;
    /// A connection for reads (alongside the writer).
    fn read_conn(&self) -> impl Future<Output = Result<Self::Conn, sqlx::Error>> + Send;
    fn close(&self) -> impl Future<Output = ()> + Send;
}
