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

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection, Row};
use tokio::sync::{mpsc, oneshot};

use super::*;

/// Most requests committed in one transaction.
const MAX_BATCH: usize = 512;
/// A write not answered by then is reported as failed (the provider will
/// resend); notify paths must answer within 5 s even when storage hangs.
const WRITE_TIMEOUT: Duration = Duration::from_secs(4);
/// How long an attempt record may wait for accepts to share a commit with.
const RECORD_DELAY: Duration = Duration::from_millis(20);

const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("migrations/sqlite/0001_init.sql"))];

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
        id: String,
        attempt: AttemptRecord,
        outcome: Outcome,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Release {
        owner: String,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    Purge(PurgePolicy, oneshot::Sender<Result<Purged, StoreError>>),
    Close(oneshot::Sender<()>),
}

impl SqliteStore {
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|source| StoreError::CreateDir { path: dir.display().to_string(), source })?;
        }
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

    pub async fn record(&self, id: &str, attempt: AttemptRecord, outcome: Outcome) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.call(|reply| Op::Record { id, attempt, outcome, reply }).await
    }

    pub async fn release(&self, owner: &str) -> Result<u64, StoreError> {
        let owner = owner.to_owned();
        self.call(|reply| Op::Release { owner, reply }).await
    }

    pub async fn purge(&self, policy: PurgePolicy) -> Result<Purged, StoreError> {
        self.call(|reply| Op::Purge(policy, reply)).await
    }

    pub async fn get(&self, id: &str) -> Result<Option<CallbackDetail>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT seq, id, provider, tenant, status, attempts, received_at, last_error, content_type, body, remote_addr, simulated, next_attempt_at
             FROM callbacks WHERE id = ?1",
        )
        .bind(id)
        .fetch_optional(&self.readers)
        .await?
        else {
            return Ok(None);
        };
        let summary = summary(&row)?;
        let attempts = sqlx::query(
            "SELECT n, at, status_code, duration_ms, error, response_excerpt FROM attempts WHERE callback_seq = ?1 ORDER BY n",
        )
        .bind(summary.seq)
        .fetch_all(&self.readers)
        .await?
        .iter()
        .map(|a| {
            Ok(AttemptRecord {
                n: u32::try_from(a.try_get::<i64, _>("n")?).unwrap_or(0),
                at_ms: a.try_get("at")?,
                status_code: a.try_get::<Option<i64>, _>("status_code")?.and_then(|c| u16::try_from(c).ok()),
                duration_ms: u64::try_from(a.try_get::<i64, _>("duration_ms")?).unwrap_or(0),
                error: a.try_get("error")?,
                response_excerpt: a.try_get("response_excerpt")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Some(CallbackDetail {
            summary,
            content_type: row.try_get("content_type")?,
            body: Bytes::from(row.try_get::<Vec<u8>, _>("body")?),
            remote_addr: row.try_get("remote_addr")?,
            simulated: row.try_get::<i64, _>("simulated")? != 0,
            next_attempt_at_ms: row.try_get("next_attempt_at")?,
            attempts,
        }))
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
        rows.iter().map(|r| summary(r).map_err(StoreError::from)).collect()
    }

    pub async fn stats(&self) -> Result<Stats, StoreError> {
        let rows =
            sqlx::query("SELECT status, COUNT(*) AS n FROM callbacks GROUP BY status").fetch_all(&self.readers).await?;
        let mut by_status = Vec::new();
        for r in &rows {
            if let Some(s) = Status::parse(r.try_get("status")?) {
                by_status.push((s, u64::try_from(r.try_get::<i64, _>("n")?).unwrap_or(0)));
            }
        }
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

fn summary(row: &SqliteRow) -> Result<CallbackSummary, sqlx::Error> {
    Ok(CallbackSummary {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        provider: row.try_get("provider")?,
        tenant: row.try_get("tenant")?,
        status: Status::parse(row.try_get("status")?).unwrap_or(Status::Pending),
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(0),
        received_at_ms: row.try_get("received_at")?,
        last_error: row.try_get("last_error")?,
    })
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
        Op::Purge(_, tx) => {
            send(tx, result.and_then(|d| if let Done::Purged(p) = d { Ok(p) } else { Err(mismatch()) }))
        }
        Op::Close(tx) => {
            let _ = tx.send(());
        }
    }
}

/// One transaction for the whole batch. Accepts and records, the bulk of
/// the traffic, take a fixed handful of statements however many there are
/// (their rows travel as one JSON parameter): a statement costs a round trip
/// to SQLite's thread, a row only SQLite's own work.
async fn try_batch(conn: &mut SqliteConnection, ops: &[Op]) -> Result<Vec<Done>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let now = now_ms();
    let accepts: Vec<&NewCallback> =
        ops.iter().filter_map(|op| if let Op::Accept(n, _) = op { Some(n) } else { None }).collect();
    let mut accepted = accept_all(&mut tx, &accepts, now).await?.into_iter();
    let records: Vec<(&str, &AttemptRecord, Outcome)> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Record { id, attempt, outcome, .. } => Some((id.as_str(), attempt, *outcome)),
            _ => None,
        })
        .collect();
    record_all(&mut tx, &records, now).await?;

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
            Op::Purge(policy, _) => Done::Purged(purge(&mut tx, policy, now).await?),
            Op::Close(_) => continue,
        };
        results.push(done);
    }
    tx.commit().await?;
    Ok(results)
}

/// One callback row as the batch insert reads it from JSON.
#[derive(serde::Serialize)]
struct InsertRow<'a> {
    id: &'a str,
    provider: &'a str,
    tenant: Option<&'a str>,
    status: &'a str,
    ct: Option<&'a str>,
    /// hex: JSON carries no bytes, and a body must come back byte for byte.
    body: String,
    remote: Option<&'a str>,
    sim: i64,
    key: Option<&'a str>,
    next_at: Option<i64>,
    lease_owner: Option<&'a str>,
    lease_until: Option<i64>,
    reason: Option<&'a str>,
    finished_at: Option<i64>,
}

/// Inserts the rows; a row whose dedup key another row holds is skipped.
/// Returns the ids inserted.
async fn insert_rows(
    conn: &mut SqliteConnection,
    rows: &[InsertRow<'_>],
    now: i64,
) -> Result<HashSet<String>, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO callbacks (id, provider, tenant, status, content_type, body, remote_addr, simulated, dedup_key,
                                received_at, next_attempt_at, lease_owner, lease_until, last_error, finished_at)
         SELECT j.value->>'id', j.value->>'provider', j.value->>'tenant', j.value->>'status', j.value->>'ct',
                coalesce(unhex(j.value->>'body'), x''), j.value->>'remote', j.value->>'sim', j.value->>'key', ?2,
                j.value->>'next_at', j.value->>'lease_owner', j.value->>'lease_until', j.value->>'reason',
                j.value->>'finished_at'
         FROM json_each(?1) AS j WHERE true ORDER BY j.key
         ON CONFLICT (provider, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
         RETURNING id",
    )
    .bind(json(&rows)?)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    inserted.iter().map(|r| r.try_get::<String, _>(0)).collect()
}

#[derive(serde::Serialize)]
struct KeyRow<'a> {
    id: &'a str,
    p: &'a str,
    k: &'a str,
}

/// Dedup and insert every accepted callback of the batch, in order, in one
/// statement in the common case. A key seen twice in one batch goes to the
/// first; the second is its duplicate.
async fn accept_all(
    conn: &mut SqliteConnection,
    news: &[&NewCallback],
    now: i64,
) -> Result<Vec<Accepted>, sqlx::Error> {
    if news.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = news.iter().map(|_| uuid::Uuid::now_v7().simple().to_string()).collect();
    fn key_of(n: &NewCallback) -> Option<&DedupKey> {
        if n.status == Status::Pending { n.dedup.as_ref() } else { None }
    }
    let row = |i: usize| {
        let n = news[i];
        let pending = n.status == Status::Pending;
        let (lease_owner, lease_until) = match (&n.lease, pending) {
            (Some((owner, lease)), true) => (Some(owner.as_str()), Some(now + ms(*lease))),
            _ => (None, None),
        };
        InsertRow {
            id: &ids[i],
            provider: n.provider,
            tenant: n.tenant.as_deref(),
            status: n.status.as_str(),
            ct: n.content_type.as_deref(),
            body: hex::encode(&n.body),
            remote: n.remote_addr.as_deref(),
            sim: i64::from(n.simulated),
            key: key_of(n).map(|d| d.key.as_str()),
            next_at: pending.then_some(now),
            lease_owner,
            lease_until,
            reason: n.reason.as_deref(),
            finished_at: (!pending).then_some(now),
        }
    };
    let rows: Vec<InsertRow> = (0..news.len()).map(row).collect();
    let mut stored = insert_rows(conn, &rows, now).await?;

    // The rest are duplicates: find the callback holding each key. One
    // older than its window gives the key up and the newcomer is stored.
    let dups: Vec<usize> = (0..news.len()).filter(|i| !stored.contains(&ids[*i])).collect();
    let mut originals = HashMap::new();
    if !dups.is_empty() {
        let keys: Vec<KeyRow> = dups
            .iter()
            .filter_map(|&i| key_of(news[i]).map(|d| KeyRow { id: &ids[i], p: news[i].provider, k: &d.key }))
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
            let window = key_of(news[i]).map_or(Duration::ZERO, |d| d.window);
            let original: String = r.try_get("id")?;
            if r.try_get::<i64, _>("received_at")? < now - ms(window) {
                expired.push((i, original));
            } else {
                let status = Status::parse(r.try_get("status")?).unwrap_or(Status::Pending);
                originals.insert(dup, Accepted::Duplicate { id: original, status });
            }
        }
        if !expired.is_empty() {
            let old: Vec<&str> = expired.iter().map(|(_, id)| id.as_str()).collect();
            sqlx::query("UPDATE callbacks SET dedup_key = NULL WHERE id IN (SELECT value FROM json_each(?1))")
                .bind(json(&old)?)
                .execute(&mut *conn)
                .await?;
            let again: Vec<InsertRow> = expired.iter().map(|(i, _)| row(*i)).collect();
            stored.extend(insert_rows(conn, &again, now).await?);
        }
    }
    (0..news.len())
        .map(|i| {
            if stored.contains(&ids[i]) {
                Ok(Accepted::Stored { id: ids[i].clone() })
            } else {
                originals
                    .remove(&ids[i])
                    .ok_or_else(|| sqlx::Error::Protocol("a callback neither stored nor a duplicate".into()))
            }
        })
        .collect()
}

#[derive(serde::Serialize)]
struct RecordRow<'a> {
    id: &'a str,
    status: &'a str,
    n: u32,
    at: i64,
    code: Option<u16>,
    ms: u64,
    error: Option<&'a str>,
    excerpt: Option<&'a str>,
    next_at: Option<i64>,
    finished_at: Option<i64>,
}

/// Records every attempt of the batch and moves each callback on. Only a
/// pending row takes a result: a replayed or finished row is not moved
/// backwards by a late attempt (the attempt itself is still kept).
async fn record_all(
    conn: &mut SqliteConnection,
    records: &[(&str, &AttemptRecord, Outcome)],
    now: i64,
) -> Result<(), sqlx::Error> {
    if records.is_empty() {
        return Ok(());
    }
    let rows: Vec<RecordRow> = records
        .iter()
        .map(|(id, a, outcome)| {
            let (status, next_at, finished_at) = match outcome {
                Outcome::Delivered => (Status::Delivered, None, Some(now)),
                Outcome::RetryAt(at) => (Status::Pending, Some(*at), None),
                Outcome::Dead => (Status::Dead, None, Some(now)),
            };
            RecordRow {
                id,
                status: status.as_str(),
                n: a.n,
                at: a.at_ms,
                code: a.status_code,
                ms: a.duration_ms,
                error: a.error.as_deref(),
                excerpt: a.response_excerpt.as_deref(),
                next_at,
                finished_at,
            }
        })
        .collect();
    let rows = json(&rows)?;
    sqlx::query(
        "UPDATE callbacks SET status = r.value->>'status', attempts = MAX(callbacks.attempts, r.value->>'n'),
                next_attempt_at = r.value->>'next_at', lease_owner = NULL, lease_until = NULL,
                last_error = r.value->>'error', finished_at = r.value->>'finished_at'
         FROM json_each(?1) AS r WHERE callbacks.id = r.value->>'id' AND +callbacks.status = 'pending'",
    )
    .bind(rows.as_str())
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT OR REPLACE INTO attempts (callback_seq, n, at, status_code, duration_ms, error, response_excerpt)
         SELECT c.seq, r.value->>'n', r.value->>'at', r.value->>'code', r.value->>'ms', r.value->>'error',
                r.value->>'excerpt'
         FROM json_each(?1) AS r JOIN callbacks c ON c.id = r.value->>'id'",
    )
    .bind(rows.as_str())
    .execute(&mut *conn)
    .await?;
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
             RETURNING id, provider, tenant, content_type, body, remote_addr, simulated, attempts",
        ),
        Some(_) => sqlx::query(
            "UPDATE callbacks SET lease_owner = ?1, lease_until = ?2
             WHERE id = ?5 AND +status = 'pending' AND (lease_until IS NULL OR lease_until < ?3)
             RETURNING id, provider, tenant, content_type, body, remote_addr, simulated, attempts",
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
    rows.iter()
        .map(|r| {
            Ok(Claimed {
                id: r.try_get("id")?,
                provider: r.try_get("provider")?,
                tenant: r.try_get("tenant")?,
                content_type: r.try_get("content_type")?,
                body: Bytes::from(r.try_get::<Vec<u8>, _>("body")?),
                remote_addr: r.try_get("remote_addr")?,
                simulated: r.try_get::<i64, _>("simulated")? != 0,
                attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(0),
            })
        })
        .collect()
}

async fn purge(conn: &mut SqliteConnection, p: &PurgePolicy, now: i64) -> Result<Purged, sqlx::Error> {
    let delivered = sqlx::query(
        "DELETE FROM callbacks INDEXED BY callbacks_received WHERE +status = 'delivered' AND received_at < ?1",
    )
    .bind(now - ms(p.retention))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let rejected = sqlx::query(
        "DELETE FROM callbacks WHERE status IN ('rejected', 'unroutable') AND seq NOT IN (
             SELECT seq FROM callbacks WHERE status IN ('rejected', 'unroutable') ORDER BY seq DESC LIMIT ?1)",
    )
    .bind(i64::try_from(p.keep_rejected).unwrap_or(i64::MAX))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(Purged { delivered, rejected })
}
