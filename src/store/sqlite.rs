//! The embedded backend: one SQLite file in WAL mode with `synchronous =
//! FULL`, so a commit is on disk (fsync) when it returns.
//!
//! Every write goes through one writer task that owns the only writing
//! connection. It takes whatever requests are waiting, runs them in one
//! transaction and commits once: callbacks that arrive while a commit is in
//! flight share the next one (group commit), so durable throughput grows
//! with concurrency while each request still gets its answer only after its
//! own row is committed. Reads use a small pool alongside (WAL lets them run
//! during a write).
//!
//! SQLite is for one instance: at open, leases left by a previous run of
//! this instance are given back at once.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Connection, Row};
use tokio::sync::{mpsc, oneshot};

use super::*;

/// Most requests committed in one transaction.
const MAX_BATCH: usize = 512;
/// A write not answered by then is reported as failed (the provider will
/// resend); notify paths must answer within 5 s even when storage hangs.
const WRITE_TIMEOUT: Duration = Duration::from_secs(4);
/// How long an attempt record may wait for accepts to share a commit with.
const RECORD_DELAY: Duration = Duration::from_millis(20);

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/sqlite/0001_init.sql")),
    (2, include_str!("migrations/sqlite/0002_path_tenant.sql")),
];

#[derive(Clone)]
pub struct SqliteStore {
    writer: mpsc::Sender<Op>,
    readers: SqlitePool,
}

enum Op {
    Accept(NewCallback, oneshot::Sender<Result<Accepted, StoreError>>),
    Claim {
        owner: String,
        lease: Duration,
        limit: usize,
        id: Option<String>,
        reply: oneshot::Sender<Result<Vec<Claimed>, StoreError>>,
    },
    Record {
        seq: i64,
        attempt: AttemptRecord,
        outcome: Outcome,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Release {
        owner: String,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    Replay {
        what: Replay,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    Purge(PurgePolicy, oneshot::Sender<Result<Purged, StoreError>>),
    Close(oneshot::Sender<()>),
}

impl SqliteStore {
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        private_files(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let mut conn = SqliteConnection::connect_with(&options).await?;
        migrate(&mut conn).await?;
        // One instance per file: whatever a previous run had leased is free now.
        sqlx::query("UPDATE callbacks SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL")
            .execute(&mut conn)
            .await?;
        // SQLite gives the -wal and -shm files the database's mode; make sure.
        for suffix in ["-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            restrict(Path::new(&name), 0o600);
        }
        let readers = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(writer(conn, rx));
        Ok(Self { writer: tx, readers })
    }

    async fn call<T>(&self, op: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Op) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.writer.send(op(tx)).await.map_err(|_| StoreError::WriterGone)?;
        match tokio::time::timeout(WRITE_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(StoreError::WriterGone),
            Err(_) => Err(StoreError::Timeout(WRITE_TIMEOUT)),
        }
    }

    pub async fn accept(&self, new: NewCallback) -> Result<Accepted, StoreError> {
        self.call(|reply| Op::Accept(new, reply)).await
    }

    pub async fn claim(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
        id: Option<&str>,
    ) -> Result<Vec<Claimed>, StoreError> {
        let (owner, id) = (owner.to_owned(), id.map(str::to_owned));
        self.call(|reply| Op::Claim { owner, lease, limit, id, reply }).await
    }

    pub async fn record(&self, seq: i64, attempt: AttemptRecord, outcome: Outcome) -> Result<(), StoreError> {
        self.call(|reply| Op::Record { seq, attempt, outcome, reply }).await
    }

    pub async fn release(&self, owner: &str) -> Result<u64, StoreError> {
        let owner = owner.to_owned();
        self.call(|reply| Op::Release { owner, reply }).await
    }

    pub async fn replay(&self, what: Replay) -> Result<u64, StoreError> {
        self.call(|reply| Op::Replay { what, reply }).await
    }

    pub async fn purge(&self, policy: PurgePolicy) -> Result<Purged, StoreError> {
        self.call(|reply| Op::Purge(policy, reply)).await
    }

    pub async fn get(&self, id: &str) -> Result<Option<CallbackDetail>, StoreError> {
        // One read transaction: the row and its attempts from one snapshot.
        let mut tx = self.readers.begin().await?;
        let Some(row) = sqlx::query(
            "SELECT seq, id, provider, tenant, status, attempts, received_at, last_error, content_type, body, remote_addr, simulated, next_attempt_at, path_tenant
             FROM callbacks WHERE id = ?1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let attempts = sqlx::query(
            "SELECT n, at, status_code, duration_ms, error, response_excerpt FROM attempts WHERE callback_seq = ?1 ORDER BY n",
        )
        .bind(row.try_get::<i64, _>("seq")?)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(rows::attempt)
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Some(rows::detail(&row, attempts)?))
    }

    pub async fn list(&self, f: &ListFilter) -> Result<Vec<CallbackSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, id, provider, tenant, status, attempts, received_at, last_error FROM callbacks
             WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR tenant = ?2) AND (?3 IS NULL OR provider = ?3)
               AND (?4 IS NULL OR seq < ?4)
             ORDER BY seq DESC LIMIT ?5",
        )
        .bind(f.status.map(Status::as_str))
        .bind(f.tenant.as_deref())
        .bind(f.provider.as_deref())
        .bind(f.before_seq)
        .bind(i64::from(f.limit))
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(|r| rows::summary(r).map_err(StoreError::from)).collect()
    }

    pub async fn stats(&self) -> Result<Stats, StoreError> {
        let rows =
            sqlx::query("SELECT status, COUNT(*) AS n FROM callbacks GROUP BY status").fetch_all(&self.readers).await?;
        let by_status = rows::by_status(&rows)?;
        let oldest_pending_ms: Option<i64> =
            sqlx::query("SELECT MIN(received_at) AS t FROM callbacks WHERE status = 'pending'")
                .fetch_one(&self.readers)
                .await?
                .try_get("t")?;
        Ok(Stats { by_status, oldest_pending_ms })
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }

    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.writer.send(Op::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
        self.readers.close().await;
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

async fn migrate(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .execute(&mut *conn)
    .await?;
    for &(version, sql) in MIGRATIONS {
        let done: Option<i64> = sqlx::query("SELECT version FROM schema_migrations WHERE version = ?1")
            .bind(version)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| r.get(0));
        if done.is_some() {
            continue;
        }
        let mut tx = conn.begin().await?;
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)")
            .bind(version)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version, "storage migrated");
    }
    Ok(())
}

/// The writer: batch what is waiting, one transaction, one commit, answer all.
///
/// Attempt records need not be on disk before anything is answered (a lost
/// one means an attempt made again), so they wait up to [`RECORD_DELAY`] to
/// ride along with the next batch of accepts instead of paying a commit of
/// their own.
async fn writer(mut conn: SqliteConnection, mut rx: mpsc::Receiver<Op>) {
    let mut batch: Vec<Op> = Vec::with_capacity(MAX_BATCH);
    let mut deferred: Vec<Op> = Vec::new();
    let mut deferred_since: Option<tokio::time::Instant> = None;
    loop {
        let next = match deferred_since {
            None => rx.recv().await,
            Some(since) => match tokio::time::timeout_at(since + RECORD_DELAY, rx.recv()).await {
                Ok(op) => op,
                Err(_) => {
                    deferred_since = None;
                    run_batch(&mut conn, std::mem::take(&mut deferred)).await;
                    continue;
                }
            },
        };
        let Some(first) = next else {
            run_batch(&mut conn, std::mem::take(&mut deferred)).await;
            return;
        };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        // A Close is answered after the writes it came with are committed.
        let mut close = None;
        let mut ops = Vec::with_capacity(batch.len() + deferred.len());
        for op in batch.drain(..) {
            match op {
                Op::Close(tx) => close = Some(tx),
                op @ Op::Record { .. } => deferred.push(op),
                other => ops.push(other),
            }
        }
        if ops.is_empty() && close.is_none() && deferred.len() < MAX_BATCH {
            deferred_since.get_or_insert_with(tokio::time::Instant::now);
            continue;
        }
        ops.append(&mut deferred);
        deferred_since = None;
        run_batch(&mut conn, ops).await;
        if let Some(done) = close {
            let _ = conn.close().await;
            let _ = done.send(());
            return;
        }
    }
}

/// Runs every op in one transaction. If the transaction fails as a whole,
/// each op is run again in its own, so that one bad op fails only itself.
async fn run_batch(conn: &mut SqliteConnection, ops: Vec<Op>) {
    if ops.is_empty() {
        return;
    }
    if ops.len() > 1 {
        match try_batch(conn, &ops).await {
            Ok(results) => {
                for (op, result) in ops.into_iter().zip(results) {
                    answer(op, Ok(result));
                }
                return;
            }
            Err(e) => tracing::warn!(error = %e, ops = ops.len(), "batched write failed; retrying one by one"),
        }
    }
    for op in ops {
        let single = std::slice::from_ref(&op);
        match try_batch(conn, single).await {
            Ok(mut results) => answer(op, Ok(results.remove(0))),
            Err(e) => answer(op, Err(e)),
        }
    }
}

/// What one op produced, before its reply is sent.
enum Done {
    Accepted(Accepted),
    Claimed(Vec<Claimed>),
    Recorded,
    Released(u64),
    Replayed(u64),
    Purged(Purged),
}

fn answer(op: Op, result: Result<Done, sqlx::Error>) {
    fn send<T>(tx: oneshot::Sender<Result<T, StoreError>>, r: Result<T, sqlx::Error>) {
        let _ = tx.send(r.map_err(StoreError::from));
    }
    let mismatch = || sqlx::Error::Protocol("writer answered the wrong kind".into());
    match op {
        Op::Accept(_, tx) => {
            send(tx, result.and_then(|d| if let Done::Accepted(a) = d { Ok(a) } else { Err(mismatch()) }))
        }
        Op::Claim { reply, .. } => {
            send(reply, result.and_then(|d| if let Done::Claimed(c) = d { Ok(c) } else { Err(mismatch()) }))
        }
        Op::Record { reply, .. } => {
            send(reply, result.and_then(|d| if let Done::Recorded = d { Ok(()) } else { Err(mismatch()) }))
        }
        Op::Release { reply, .. } => {
            send(reply, result.and_then(|d| if let Done::Released(n) = d { Ok(n) } else { Err(mismatch()) }))
        }
        Op::Replay { reply, .. } => {
            send(reply, result.and_then(|d| if let Done::Replayed(n) = d { Ok(n) } else { Err(mismatch()) }))
        }
        Op::Purge(_, tx) => {
            send(tx, result.and_then(|d| if let Done::Purged(p) = d { Ok(p) } else { Err(mismatch()) }))
        }
        Op::Close(tx) => {
            let _ = tx.send(());
        }
    }
}

/// One transaction for the whole batch. Accepts and records, the bulk of
/// the traffic, go in multi-row statements: a statement costs a round trip
/// to SQLite's thread, a row only SQLite's own work.
async fn try_batch(conn: &mut SqliteConnection, ops: &[Op]) -> Result<Vec<Done>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let now = now_ms();
    let accepts: Vec<&NewCallback> =
        ops.iter().filter_map(|op| if let Op::Accept(n, _) = op { Some(n) } else { None }).collect();
    let mut accepted = accept_all(&mut tx, &accepts, now).await?.into_iter();
    let records: Vec<(i64, &AttemptRecord, Outcome)> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Record { seq, attempt, outcome, .. } => Some((*seq, attempt, *outcome)),
            _ => None,
        })
        .collect();
    record_all(&mut tx, &records).await?;

    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        let done = match op {
            Op::Accept(..) => {
                Done::Accepted(accepted.next().ok_or_else(|| sqlx::Error::Protocol("accept result missing".into()))?)
            }
            Op::Record { .. } => Done::Recorded,
            Op::Claim { owner, lease, limit, id, .. } => {
                Done::Claimed(claim(&mut tx, owner, *lease, *limit, id.as_deref(), now).await?)
            }
            Op::Release { owner, .. } => Done::Released(
                sqlx::query("UPDATE callbacks SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?1")
                    .bind(owner.as_str())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected(),
            ),
            Op::Replay { what, .. } => Done::Replayed(replay(&mut tx, what, now).await?),
            Op::Purge(policy, _) => Done::Purged(purge(&mut tx, policy, now).await?),
            Op::Close(_) => continue,
        };
        results.push(done);
    }
    tx.commit().await?;
    Ok(results)
}

/// Multi-row statements come in these sizes, so that SQLite prepares each
/// once and sqlx caches it; a batch of n rows is split by the binary digits
/// of n (300 = 256 + 32 + 8 + 4), a few round trips however large it is.
const CHUNKS: [usize; 9] = [256, 128, 64, 32, 16, 8, 4, 2, 1];

fn chunk_sizes(mut n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    for size in CHUNKS {
        while n >= size {
            out.push(size);
            n -= size;
        }
    }
    out
}

/// `head VALUES (?, …), (?, …) … tail` for `rows` rows of `cols` columns.
fn values_sql(head: &str, cols: usize, rows: usize, tail: &str) -> Arc<str> {
    let row = format!("({})", vec!["?"; cols].join(", "));
    format!("{head} VALUES {} {tail}", vec![row; rows].join(", ")).into()
}

const INSERT_HEAD: &str =
    "INSERT INTO callbacks (id, provider, tenant, status, content_type, body, remote_addr, simulated,
    dedup_key, received_at, next_attempt_at, lease_owner, lease_until, last_error, finished_at, path_tenant)";
const INSERT_TAIL: &str = "ON CONFLICT (provider, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING RETURNING id, seq";
const RECORD_HEAD: &str = "INSERT OR REPLACE INTO attempts (callback_seq, n, at, status_code, duration_ms, error,
    response_excerpt, outcome, next_at)";

static INSERT_SQL: LazyLock<Vec<Arc<str>>> =
    LazyLock::new(|| CHUNKS.iter().map(|&n| values_sql(INSERT_HEAD, 16, n, INSERT_TAIL)).collect());
static RECORD_SQL: LazyLock<Vec<Arc<str>>> =
    LazyLock::new(|| CHUNKS.iter().map(|&n| values_sql(RECORD_HEAD, 9, n, "")).collect());

fn sql_for(cache: &[Arc<str>], size: usize) -> Arc<str> {
    let i = CHUNKS.iter().position(|&s| s == size).unwrap_or(CHUNKS.len() - 1);
    cache[i].clone()
}

/// Inserts the callbacks `which` of `news` (with their ids); a row whose
/// dedup key another row holds is skipped. Returns the seq of each row
/// inserted, by id.
async fn insert_rows(
    conn: &mut SqliteConnection,
    news: &[&NewCallback],
    ids: &[String],
    which: &[usize],
    now: i64,
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let mut stored = HashMap::with_capacity(which.len());
    let mut rest = which;
    for size in chunk_sizes(which.len()) {
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        let mut query = sqlx::query(AssertSqlSafe(sql_for(&INSERT_SQL, size)));
        for &i in chunk {
            let n = news[i];
            let pending = n.status == Status::Pending;
            let (lease_owner, lease_until) = match (&n.lease, pending) {
                (Some((owner, lease)), true) => (Some(owner.clone()), Some(now + ms(*lease))),
                _ => (None, None),
            };
            query = query
                .bind(ids[i].clone())
                .bind(n.provider)
                .bind(n.tenant.clone())
                .bind(n.status.as_str())
                .bind(n.content_type.clone())
                .bind(n.body.to_vec())
                .bind(n.remote_addr.clone())
                .bind(i64::from(n.simulated))
                .bind(dedup_of(n).map(|d| d.key.clone()))
                .bind(now)
                .bind(pending.then_some(now))
                .bind(lease_owner)
                .bind(lease_until)
                .bind(n.reason.clone())
                .bind((!pending).then_some(now))
                .bind(n.path_tenant.clone());
        }
        for row in query.fetch_all(&mut *conn).await? {
            stored.insert(row.try_get::<String, _>(0)?, row.try_get::<i64, _>(1)?);
        }
    }
    Ok(stored)
}

/// The dedup key of a callback that is to be delivered (only those dedup).
fn dedup_of(n: &NewCallback) -> Option<&DedupKey> {
    if n.status == Status::Pending { n.dedup.as_ref() } else { None }
}

#[derive(serde::Serialize)]
struct KeyRow<'a> {
    id: &'a str,
    p: &'a str,
    k: &'a str,
}

/// Dedup and insert every accepted callback of the batch, in order. A key
/// seen twice in one batch goes to the first; the second is its duplicate.
async fn accept_all(
    conn: &mut SqliteConnection,
    news: &[&NewCallback],
    now: i64,
) -> Result<Vec<Accepted>, sqlx::Error> {
    if news.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = news.iter().map(|_| uuid::Uuid::now_v7().simple().to_string()).collect();
    let all: Vec<usize> = (0..news.len()).collect();
    let mut stored = insert_rows(conn, news, &ids, &all, now).await?;

    // The rest are duplicates: find the callback holding each key. One
    // older than its window gives the key up and the newcomer is stored.
    let dups: Vec<usize> = all.iter().copied().filter(|i| !stored.contains_key(&ids[*i])).collect();
    let mut originals = HashMap::new();
    if !dups.is_empty() {
        let keys: Vec<KeyRow> = dups
            .iter()
            .filter_map(|&i| dedup_of(news[i]).map(|d| KeyRow { id: &ids[i], p: news[i].provider, k: &d.key }))
            .collect();
        let found = sqlx::query(
            "SELECT j.value->>'id' AS dup, c.id, c.status, c.received_at FROM json_each(?1) AS j
             JOIN callbacks c ON c.provider = j.value->>'p' AND c.dedup_key = j.value->>'k'",
        )
        .bind(json(&keys)?)
        .fetch_all(&mut *conn)
        .await?;
        let mut expired = Vec::new();
        for r in found {
            let dup: String = r.try_get("dup")?;
            let Some(&i) = dups.iter().find(|&&i| ids[i] == dup) else { continue };
            let window = dedup_of(news[i]).map_or(Duration::ZERO, |d| d.window);
            let original: String = r.try_get("id")?;
            if r.try_get::<i64, _>("received_at")? < now - ms(window) {
                expired.push((i, original));
            } else {
                let status = rows::status(r.try_get("status")?)?;
                originals.insert(dup, Accepted::Duplicate { id: original, status });
            }
        }
        if !expired.is_empty() {
            let old: Vec<&str> = expired.iter().map(|(_, id)| id.as_str()).collect();
            sqlx::query("UPDATE callbacks SET dedup_key = NULL WHERE id IN (SELECT value FROM json_each(?1))")
                .bind(json(&old)?)
                .execute(&mut *conn)
                .await?;
            let again: Vec<usize> = expired.iter().map(|(i, _)| *i).collect();
            stored.extend(insert_rows(conn, news, &ids, &again, now).await?);
        }
    }
    all.iter()
        .map(|&i| match stored.get(&ids[i]) {
            Some(&seq) => Ok(Accepted::Stored { id: ids[i].clone(), seq }),
            None => originals
                .remove(&ids[i])
                .ok_or_else(|| sqlx::Error::Protocol("a callback neither stored nor a duplicate".into())),
        })
        .collect()
}

/// Records every attempt of the batch. The `attempts_apply` trigger moves
/// each callback on in the same statement (only a pending one: a replayed
/// or finished row is not moved backwards by a late attempt).
async fn record_all(
    conn: &mut SqliteConnection,
    records: &[(i64, &AttemptRecord, Outcome)],
) -> Result<(), sqlx::Error> {
    let mut rest = records;
    for size in chunk_sizes(records.len()) {
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        let mut query = sqlx::query(AssertSqlSafe(sql_for(&RECORD_SQL, size)));
        for (seq, a, outcome) in chunk {
            let (status, next_at) = match outcome {
                Outcome::Delivered => (Status::Delivered, None),
                Outcome::RetryAt(at) => (Status::Pending, Some(*at)),
                Outcome::Dead => (Status::Dead, None),
            };
            query = query
                .bind(*seq)
                .bind(i64::from(a.n))
                .bind(a.at_ms)
                .bind(a.status_code.map(i64::from))
                .bind(i64::try_from(a.duration_ms).unwrap_or(i64::MAX))
                .bind(a.error.clone())
                .bind(a.response_excerpt.clone())
                .bind(status.as_str())
                .bind(next_at);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

fn json(v: &impl serde::Serialize) -> Result<String, sqlx::Error> {
    serde_json::to_string(v).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// Leases due rows (`id: None`: the earliest due, by the due index) or one
/// given pending row (by id). The `+` and `INDEXED BY` keep SQLite's
/// planner off the status index, which would scan every pending row.
async fn claim(
    conn: &mut SqliteConnection,
    owner: &str,
    lease: Duration,
    limit: usize,
    id: Option<&str>,
    now: i64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let query = match id {
        None => sqlx::query(
            "UPDATE callbacks SET lease_owner = ?1, lease_until = ?2
             WHERE seq IN (
                 SELECT seq FROM callbacks INDEXED BY callbacks_due
                 WHERE status = 'pending' AND next_attempt_at <= ?3 AND (lease_until IS NULL OR lease_until < ?3)
                 ORDER BY next_attempt_at LIMIT ?4)
             RETURNING seq, id, provider, tenant, content_type, body, remote_addr, simulated, attempts",
        ),
        Some(_) => sqlx::query(
            "UPDATE callbacks SET lease_owner = ?1, lease_until = ?2
             WHERE id = ?5 AND +status = 'pending' AND next_attempt_at <= ?3 AND (lease_until IS NULL OR lease_until < ?3)
             RETURNING seq, id, provider, tenant, content_type, body, remote_addr, simulated, attempts",
        ),
    };
    let rows = query
        .bind(owner)
        .bind(now + ms(lease))
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(rows::claimed).collect()
}

/// Puts callbacks back into the queue, due now; returns how many.
async fn replay(conn: &mut SqliteConnection, what: &Replay, now: i64) -> Result<u64, sqlx::Error> {
    const SET: &str = "UPDATE callbacks SET status = 'pending', next_attempt_at = ?1, lease_owner = NULL,
        lease_until = NULL, finished_at = NULL";
    let done = match what {
        Replay::One { id, from } => {
            let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
            sqlx::query(AssertSqlSafe(format!("{SET} WHERE id = ?2 AND status IN (SELECT value FROM json_each(?3))")))
                .bind(now)
                .bind(id.as_str())
                .bind(serde_json::to_string(&from).unwrap_or_default())
                .execute(&mut *conn)
                .await?
        }
        Replay::Routed { id, tenant, simulated, dedup_key } => {
            sqlx::query(AssertSqlSafe(format!(
                "{SET}, tenant = ?3, last_error = NULL, simulated = ?4, dedup_key = ?5
                 WHERE id = ?2 AND status = 'unroutable' AND (?5 IS NULL OR NOT EXISTS (
                     SELECT 1 FROM callbacks o WHERE o.provider = callbacks.provider AND o.dedup_key = ?5))"
            )))
            .bind(now)
            .bind(id.as_str())
            .bind(tenant.as_str())
            .bind(i64::from(*simulated))
            .bind(dedup_key.as_deref())
            .execute(&mut *conn)
            .await?
        }
        Replay::Refuse { id, tenant, reason } => {
            sqlx::query(
                "UPDATE callbacks SET status = 'rejected', tenant = ?3, last_error = ?4, finished_at = ?1
                 WHERE id = ?2 AND status = 'unroutable'",
            )
            .bind(now)
            .bind(id.as_str())
            .bind(tenant.as_deref())
            .bind(reason.as_str())
            .execute(&mut *conn)
            .await?
        }
        Replay::DeadOf { tenant } => {
            sqlx::query(AssertSqlSafe(format!("{SET} WHERE tenant = ?2 AND status = 'dead'")))
                .bind(now)
                .bind(tenant.as_str())
                .execute(&mut *conn)
                .await?
        }
    };
    Ok(done.rows_affected())
}

async fn purge(conn: &mut SqliteConnection, p: &PurgePolicy, _now: i64) -> Result<Purged, sqlx::Error> {
    let now = p.now_ms;
    let delivered = sqlx::query(
        "DELETE FROM callbacks INDEXED BY callbacks_received WHERE +status = 'delivered' AND received_at < ?1",
    )
    .bind(now - ms(p.retention))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let dead = sqlx::query("DELETE FROM callbacks WHERE status = 'dead' AND finished_at < ?1")
        .bind(now - ms(p.dead_retention))
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let rejected = over_caps(conn, "rejected", p.keep_rejected, p.keep_rejected_bytes, i64::MAX).await?;
    let unroutable =
        over_caps(conn, "unroutable", p.keep_unroutable, p.keep_unroutable_bytes, now - ms(p.unroutable_min_age))
            .await?;
    let left = sqlx::query(
        "SELECT COUNT(*) AS n, COALESCE(SUM(length(body)), 0) AS bytes FROM callbacks WHERE status = 'unroutable'",
    )
    .fetch_one(&mut *conn)
    .await?;
    let unroutable_full = left.try_get::<i64, _>("n")? >= cap(p.keep_unroutable)
        || left.try_get::<i64, _>("bytes")? >= cap(p.keep_unroutable_bytes);
    Ok(Purged { delivered, rejected, unroutable, dead, unroutable_full })
}

fn cap(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Deletes the rows of `status` beyond the newest `count` or beyond
/// `bytes` of body (newest first), among those received before `before`.
async fn over_caps(
    conn: &mut SqliteConnection,
    status: &str,
    count: u64,
    bytes: u64,
    before: i64,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "DELETE FROM callbacks WHERE seq IN (
             SELECT seq FROM (
                 SELECT seq, received_at, ROW_NUMBER() OVER w AS n, SUM(length(body)) OVER w AS total
                 FROM callbacks WHERE status = ?1
                 WINDOW w AS (ORDER BY seq DESC ROWS UNBOUNDED PRECEDING))
             WHERE (n > ?2 OR total > ?3) AND received_at < ?4)",
    )
    .bind(status)
    .bind(cap(count))
    .bind(cap(bytes))
    .bind(before)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn chunks_add_up_and_use_the_cached_sizes() {
        for n in [0, 1, 2, 3, 7, 100, 255, 256, 300, 511, 512] {
            let sizes = chunk_sizes(n);
            assert_eq!(sizes.iter().sum::<usize>(), n);
            assert!(sizes.iter().all(|s| CHUNKS.contains(s)));
            assert!(sizes.len() <= 9, "{n}: {sizes:?}");
        }
        assert_eq!(chunk_sizes(300), [256, 32, 8, 4]);
        assert_eq!(
            values_sql("INSERT INTO t (a, b)", 2, 2, "RETURNING a").as_ref(),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?) RETURNING a"
        );
    }

    fn callback(key: Option<&str>) -> NewCallback {
        NewCallback {
            provider: "funpoint",
            tenant: Some("shop".into()),
            status: Status::Pending,
            reason: None,
            content_type: Some("text/html".into()),
            body: Bytes::from_static(b"MerchantTradeNo=A01&x=\xe4\xba\xa4"),
            remote_addr: Some("127.0.0.1".into()),
            simulated: false,
            dedup: key.map(|k| DedupKey { key: k.into(), window: Duration::from_secs(3600) }),
            path_tenant: None,
            lease: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_stores_each_key_once_and_keeps_bodies_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        // Sent together, these land in one or a few batches.
        let keys = ["a", "b", "a", "c", "b", "a"];
        let tasks: Vec<_> = keys
            .iter()
            .map(|k| {
                let (store, new) = (store.clone(), callback(Some(k)));
                tokio::spawn(async move { store.accept(new).await.unwrap() })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        let stored: Vec<&Accepted> = results.iter().filter(|a| matches!(a, Accepted::Stored { .. })).collect();
        assert_eq!(stored.len(), 3, "{results:?}");
        for r in &results {
            if let Accepted::Duplicate { id, status } = r {
                assert_eq!(*status, Status::Pending);
                assert!(stored.iter().any(|s| matches!(s, Accepted::Stored { id: sid, .. } if sid == id)));
            }
        }
        let Accepted::Stored { id, .. } = stored[0] else { unreachable!() };
        let detail = store.get(id).await.unwrap().unwrap();
        assert_eq!(detail.body.as_ref(), b"MerchantTradeNo=A01&x=\xe4\xba\xa4");
        // Without a key, never a duplicate.
        assert!(matches!(store.accept(callback(None)).await.unwrap(), Accepted::Stored { .. }));
        assert!(matches!(store.accept(callback(None)).await.unwrap(), Accepted::Stored { .. }));
    }
}
