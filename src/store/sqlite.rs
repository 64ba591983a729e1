//! The embedded backend: one SQLite file in WAL mode with `synchronous =
//! FULL`, so a commit is on disk (fsync) when it returns. One connection
//! writes (the store's writer owns it, on its own thread:
//! [`super::sqlite_writer`]); a small sqlx pool reads alongside (WAL lets
//! reads run during a write). SQLite is for one instance: at open, leases
//! left by a previous run are given back at once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::StoreError;
use super::backend::{Backend, Dialect};
use super::sqlite_writer::WriterConn;

pub(super) static DIALECT: Dialect = Dialect {
    numbered_with: '?',
    due_index: "INDEXED BY callbacks_due",
    delivered_index: "INDEXED BY callbacks_delivered",
    no_index: "+",
    skip_locked: "",
    or_fail: "OR FAIL",
    begin_snapshot: "BEGIN",
    migration_lock: None,
    migrations: &[
        (1, include_str!("migrations/sqlite/0001_init.sql")),
        (2, include_str!("migrations/sqlite/0002_path_tenant.sql")),
        (3, include_str!("migrations/sqlite/0003_no_trigger.sql")),
        (4, include_str!("migrations/shared/0004_verification.sql")),
        (5, include_str!("migrations/shared/0005_orders.sql")),
        (6, include_str!("migrations/shared/0006_recurring.sql")),
        (7, include_str!("migrations/sqlite/0007_check_without_in.sql")),
        (8, include_str!("migrations/sqlite/0008_dedup_led_by_order.sql")),
        (9, include_str!("migrations/shared/0009_delivered_index.sql")),
        (10, include_str!("migrations/shared/0010_status_index_settled.sql")),
        (11, include_str!("migrations/sqlite/0011_no_order_key_index.sql")),
    ],
    single_instance: true,
    apply_per_row: true,
};

pub(super) struct SqliteBackend {
    path: PathBuf,
    read: SqlitePool,
}

impl SqliteBackend {
    pub(super) async fn open(path: &Path) -> Result<Self, StoreError> {
        private_files(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        // Opened first: it puts the file in WAL mode.
        drop(WriterConn::open(path)?);
        // SQLite gives the -wal and -shm files the database's mode; make sure.
        for suffix in ["-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            restrict(Path::new(&name), 0o600);
        }
        let read = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        Ok(Self { path: path.to_owned(), read })
    }
}

impl Backend for SqliteBackend {
    type Conn = PoolConnection<sqlx::Sqlite>;
    type WriteConn = WriterConn;
    const WRITER_THREAD: bool = true;

    fn dialect() -> &'static Dialect {
        &DIALECT
    }

    async fn write_conn(&self) -> Result<Self::WriteConn, sqlx::Error> {
        WriterConn::open(&self.path)
    }

    async fn read_conn(&self) -> Result<Self::Conn, sqlx::Error> {
        self.read.acquire().await
    }

    async fn close(&self) {
        self.read.close().await;
    }
}

/// The store holds raw callback bodies (order numbers, ATM accounts, PII):
/// its directory is created 0700 and the database 0600 (SPEC §7), whatever
/// the umask. An existing database is narrowed to 0600 too.
fn private_files(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let failed = |p: &Path| {
        let path = p.display().to_string();
        move |source| StoreError::CreateDir { path, source }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(failed(dir))?;
    }
    std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(failed(path))?;
    restrict(path, 0o600);
    Ok(())
}

/// Takes group and other permissions away from an existing file.
fn restrict(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    }
}
