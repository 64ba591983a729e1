//! The PostgreSQL backend: several payrelay instances on one database
//! (SPEC §6). The same operations as the SQLite backend, with what sharing
//! needs: deliveries claimed with `FOR UPDATE SKIP LOCKED` under a lease,
//! dedup by the unique index on the business key (two instances storing
//! the same resend at once store it once), and group commit — one writer
//! task per instance puts the accepts and attempt records that arrive while
//! a commit is in flight into the next transaction.
//!
//! The pool reconnects by itself: while the server is unreachable every
//! operation fails within `[storage] connect_timeout` (the provider hears a
//! 503 and resends), and the first operation after it returns succeeds.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{PgConnection, Row};
use tokio::sync::{mpsc, oneshot};

use super::rows;
use super::types::*;
use super::{StoreError, ms, now_ms};

const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("migrations/postgres/0001_init.sql"))];
/// Serialises migrations of instances starting together.
const MIGRATION_LOCK: i64 = 0x7061_7972_656c_6179; // "payrelay"
/// A request waits at most this long for its commit (then 503).
const WRITE_TIMEOUT: Duration = Duration::from_secs(4);
const MAX_BATCH: usize = 512;

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    writer: mpsc::Sender<Op>,
}

enum Op {
    Accept(NewCallback, oneshot::Sender<Result<Accepted, StoreError>>),
    Record(i64, AttemptRecord, Outcome, oneshot::Sender<Result<(), StoreError>>),
}

enum Done {
    Accepted(Accepted),
    Recorded,
}

impl PgStore {
    /// Connects, runs the embedded migrations (one instance at a time), and
    /// starts the writer.
    pub async fn open(url: &str, pool_size: u32, connect_timeout: Duration) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?.application_name("payrelay");
        let pool = PgPoolOptions::new()
            .max_connections(pool_size)
            .min_connections(1)
            .acquire_timeout(connect_timeout)
            .connect_with(options)
            .await?;
        migrate(&pool).await?;
        let (writer, rx) = mpsc::channel(MAX_BATCH * 4);
        tokio::spawn(run_writer(pool.clone(), rx));
        Ok(Self { pool, writer })
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

    pub async fn record(&self, seq: i64, attempt: AttemptRecord, outcome: Outcome) -> Result<(), StoreError> {
        self.call(|reply| Op::Record(seq, attempt, outcome, reply)).await
    }

    /// Leases due rows (`id: None`) or one given pending row. Rows another
    /// instance is claiming right now are skipped, not waited for.
    pub async fn claim(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
        id: Option<&str>,
    ) -> Result<Vec<Claimed>, StoreError> {
        let now = now_ms();
        let query = match id {
            None => sqlx::query(
                "UPDATE callbacks SET lease_owner = $1, lease_until = $2
                 WHERE seq IN (
                     SELECT seq FROM callbacks
                     WHERE status = 'pending' AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until < $3)
                     ORDER BY next_attempt_at LIMIT $4
                     FOR UPDATE SKIP LOCKED)
                 RETURNING seq, id, provider, tenant, content_type, body, remote_addr, simulated, attempts",
            ),
            Some(_) => sqlx::query(
                "UPDATE callbacks SET lease_owner = $1, lease_until = $2
                 WHERE id = $5 AND status = 'pending' AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until < $3)
                 RETURNING seq, id, provider, tenant, content_type, body, remote_addr, simulated, attempts",
            ),
        };
        let rows = query
            .bind(owner)
            .bind(now + ms(lease))
            .bind(now)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| rows::claimed(r).map_err(StoreError::from)).collect()
    }

    pub async fn release(&self, owner: &str) -> Result<u64, StoreError> {
        Ok(sqlx::query("UPDATE callbacks SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1")
            .bind(owner)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    pub async fn replay(&self, what: Replay) -> Result<u64, StoreError> {
        const SET: &str = "UPDATE callbacks SET status = 'pending', next_attempt_at = $1, lease_owner = NULL,
            lease_until = NULL, finished_at = NULL";
        let now = now_ms();
        let done = match &what {
            Replay::One { id, from } => {
                let from: Vec<String> = from.iter().map(|s| s.as_str().to_owned()).collect();
                sqlx::query(sqlx::AssertSqlSafe(format!("{SET} WHERE id = $2 AND status = ANY($3)")))
                    .bind(now)
                    .bind(id)
                    .bind(from)
                    .execute(&self.pool)
                    .await?
            }
            Replay::Routed { id, tenant, simulated, dedup_key } => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{SET}, tenant = $3, last_error = NULL, simulated = $4, dedup_key = $5
                     WHERE id = $2 AND status = 'unroutable' AND ($5::text IS NULL OR NOT EXISTS (
                         SELECT 1 FROM callbacks o WHERE o.provider = callbacks.provider AND o.dedup_key = $5))"
                )))
                .bind(now)
                .bind(id)
                .bind(tenant)
                .bind(*simulated)
                .bind(dedup_key.as_deref())
                .execute(&self.pool)
                .await?
            }
            Replay::Refuse { id, tenant, reason } => {
                sqlx::query(
                    "UPDATE callbacks SET status = 'rejected', tenant = $3, last_error = $4, finished_at = $1
                     WHERE id = $2 AND status = 'unroutable'",
                )
                .bind(now)
                .bind(id)
                .bind(tenant.as_deref())
                .bind(reason)
                .execute(&self.pool)
                .await?
            }
            Replay::DeadOf { tenant } => {
                sqlx::query(sqlx::AssertSqlSafe(format!("{SET} WHERE tenant = $2 AND status = 'dead'")))
                    .bind(now)
                    .bind(tenant)
                    .execute(&self.pool)
                    .await?
            }
        };
        Ok(done.rows_affected())
    }

    pub async fn purge(&self, p: PurgePolicy) -> Result<Purged, StoreError> {
        let now = p.now_ms;
        let delivered = sqlx::query("DELETE FROM callbacks WHERE status = 'delivered' AND received_at < $1")
            .bind(now - ms(p.retention))
            .execute(&self.pool)
            .await?
            .rows_affected();
        let dead = sqlx::query("DELETE FROM callbacks WHERE status = 'dead' AND finished_at < $1")
            .bind(now - ms(p.dead_retention))
            .execute(&self.pool)
            .await?
            .rows_affected();
        let rejected = self.over_caps("rejected", p.keep_rejected, p.keep_rejected_bytes, i64::MAX).await?;
        let min_age = now - ms(p.unroutable_min_age);
        let unroutable = self.over_caps("unroutable", p.keep_unroutable, p.keep_unroutable_bytes, min_age).await?;
        let left = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(octet_length(body)), 0)::bigint AS bytes
             FROM callbacks WHERE status = 'unroutable'",
        )
        .fetch_one(&self.pool)
        .await?;
        let cap = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let unroutable_full = left.try_get::<i64, _>("n")? >= cap(p.keep_unroutable)
            || left.try_get::<i64, _>("bytes")? >= cap(p.keep_unroutable_bytes);
        Ok(Purged { delivered, rejected, unroutable, dead, unroutable_full })
    }

    /// Deletes the rows of `status` beyond the newest `count` or beyond
    /// `bytes` of body (newest first), among those received before `before`.
    async fn over_caps(&self, status: &str, count: u64, bytes: u64, before: i64) -> Result<u64, StoreError> {
        let cap = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        Ok(sqlx::query(
            "DELETE FROM callbacks WHERE seq IN (
                 SELECT seq FROM (
                     SELECT seq, received_at, ROW_NUMBER() OVER w AS n, SUM(octet_length(body)) OVER w AS total
                     FROM callbacks WHERE status = $1
                     WINDOW w AS (ORDER BY seq DESC ROWS UNBOUNDED PRECEDING)) ranked
                 WHERE (n > $2 OR total > $3) AND received_at < $4)",
        )
        .bind(status)
        .bind(cap(count))
        .bind(cap(bytes))
        .bind(before)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    pub async fn get(&self, id: &str) -> Result<Option<CallbackDetail>, StoreError> {
        // The row and its attempts from one snapshot (READ COMMITTED would
        // take a new one per statement and could pair an old row with a
        // newer attempt).
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *tx).await?;
        let Some(row) = sqlx::query(
            "SELECT seq, id, provider, tenant, status, attempts, received_at, last_error, content_type, body,
                    remote_addr, simulated, next_attempt_at, path_tenant
             FROM callbacks WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let attempts = sqlx::query(
            "SELECT n, at, status_code, duration_ms, error, response_excerpt FROM attempts
             WHERE callback_seq = $1 ORDER BY n",
        )
        .bind(row.try_get::<i64, _>("seq")?)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(rows::attempt)
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        tx.commit().await?;
        Ok(Some(rows::detail(&row, attempts)?))
    }

    pub async fn list(&self, f: &ListFilter) -> Result<Vec<CallbackSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, id, provider, tenant, status, attempts, received_at, last_error FROM callbacks
             WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR tenant = $2)
               AND ($3::text IS NULL OR provider = $3) AND ($4::bigint IS NULL OR seq < $4)
             ORDER BY seq DESC LIMIT $5",
        )
        .bind(f.status.map(Status::as_str))
        .bind(f.tenant.as_deref())
        .bind(f.provider.as_deref())
        .bind(f.before_seq)
        .bind(i64::from(f.limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| rows::summary(r).map_err(StoreError::from)).collect()
    }

    pub async fn stats(&self) -> Result<Stats, StoreError> {
        let rows =
            sqlx::query("SELECT status, COUNT(*) AS n FROM callbacks GROUP BY status").fetch_all(&self.pool).await?;
        let by_status = rows::by_status(&rows)?;
        let oldest_pending_ms: Option<i64> =
            sqlx::query("SELECT MIN(received_at) AS t FROM callbacks WHERE status = 'pending'")
                .fetch_one(&self.pool)
                .await?
                .try_get("t")?;
        Ok(Stats { by_status, oldest_pending_ms })
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn migrate(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    for &(version, sql) in MIGRATIONS {
        let done = sqlx::query("SELECT 1 FROM schema_migrations WHERE version = $1")
            .bind(version)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if done {
            continue;
        }
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(version)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tracing::info!(version, "storage migrated");
    }
    tx.commit().await
}

/// The writer: whatever waits when a commit ends goes into the next
/// transaction together. A batch that fails is tried again op by op, so
/// that one bad op (or a deadlock with another instance's batch) does not
/// fail the others.
async fn run_writer(pool: PgPool, mut rx: mpsc::Receiver<Op>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        match commit(&pool, &batch).await {
            Ok(done) => batch.into_iter().zip(done).for_each(|(op, d)| answer(op, Ok(d))),
            Err(e) if batch.len() == 1 => batch.into_iter().for_each(|op| answer(op, Err(clone_err(&e)))),
            Err(e) => {
                tracing::debug!(error = %e, ops = batch.len(), "batch failed; committing its ops one by one");
                for op in batch {
                    let one = commit(&pool, std::slice::from_ref(&op)).await.map(|mut d| d.remove(0));
                    answer(op, one);
                }
            }
        }
    }
}

fn clone_err(e: &sqlx::Error) -> sqlx::Error {
    sqlx::Error::Protocol(e.to_string())
}

fn answer(op: Op, result: Result<Done, sqlx::Error>) {
    let mismatch = || StoreError::Db(sqlx::Error::Protocol("writer answered the wrong kind".into()));
    match op {
        Op::Accept(_, tx) => {
            let _ = tx.send(match result {
                Ok(Done::Accepted(a)) => Ok(a),
                Ok(Done::Recorded) => Err(mismatch()),
                Err(e) => Err(e.into()),
            });
        }
        Op::Record(.., tx) => {
            let _ = tx.send(match result {
                Ok(Done::Recorded) => Ok(()),
                Ok(Done::Accepted(_)) => Err(mismatch()),
                Err(e) => Err(e.into()),
            });
        }
    }
}

async fn commit(pool: &PgPool, ops: &[Op]) -> Result<Vec<Done>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let now = now_ms();
    let mut done = Vec::with_capacity(ops.len());
    for op in ops {
        done.push(match op {
            Op::Accept(new, _) => Done::Accepted(accept_one(&mut tx, new, now).await?),
            Op::Record(seq, attempt, outcome, _) => {
                record_one(&mut tx, *seq, attempt, *outcome).await?;
                Done::Recorded
            }
        });
    }
    tx.commit().await?;
    Ok(done)
}

/// Inserts a callback unless a callback with its dedup key was accepted
/// inside the key's window; a key older than that is given up by its old
/// row so that the newcomer is stored.
async fn accept_one(conn: &mut PgConnection, n: &NewCallback, now: i64) -> Result<Accepted, sqlx::Error> {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let pending = n.status == Status::Pending;
    let dedup = if pending { n.dedup.as_ref() } else { None };
    let (lease_owner, lease_until) = match (&n.lease, pending) {
        (Some((owner, lease)), true) => (Some(owner.as_str()), Some(now + ms(*lease))),
        _ => (None, None),
    };
    for _ in 0..3 {
        let inserted = sqlx::query(
            "INSERT INTO callbacks (id, provider, tenant, status, content_type, body, remote_addr, simulated,
                 dedup_key, received_at, next_attempt_at, lease_owner, lease_until, last_error, finished_at, path_tenant)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
             ON CONFLICT (provider, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
             RETURNING seq",
        )
        .bind(&id)
        .bind(n.provider)
        .bind(n.tenant.as_deref())
        .bind(n.status.as_str())
        .bind(n.content_type.as_deref())
        .bind(n.body.as_ref())
        .bind(n.remote_addr.as_deref())
        .bind(n.simulated)
        .bind(dedup.map(|d| d.key.as_str()))
        .bind(now)
        .bind(pending.then_some(now))
        .bind(lease_owner)
        .bind(lease_until)
        .bind(n.reason.as_deref())
        .bind((!pending).then_some(now))
        .bind(n.path_tenant.as_deref())
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = inserted {
            return Ok(Accepted::Stored { id, seq: row.try_get("seq")? });
        }
        let Some(d) = dedup else {
            return Err(sqlx::Error::Protocol("an insert without a dedup key stored nothing".into()));
        };
        let original =
            sqlx::query("SELECT id, status, received_at FROM callbacks WHERE provider = $1 AND dedup_key = $2")
                .bind(n.provider)
                .bind(&d.key)
                .fetch_optional(&mut *conn)
                .await?;
        let Some(original) = original else { continue }; // purged meanwhile: insert again
        let original_id: String = original.try_get("id")?;
        if original.try_get::<i64, _>("received_at")? < now - ms(d.window) {
            sqlx::query("UPDATE callbacks SET dedup_key = NULL WHERE id = $1")
                .bind(&original_id)
                .execute(&mut *conn)
                .await?;
            continue;
        }
        let status = rows::status(original.try_get("status")?)?;
        return Ok(Accepted::Duplicate { id: original_id, status });
    }
    Err(sqlx::Error::Protocol("the dedup key kept changing hands".into()))
}

/// Keeps the attempt and moves its callback on — only a pending one: a
/// replayed or finished row is not moved backwards by a late attempt.
async fn record_one(conn: &mut PgConnection, seq: i64, a: &AttemptRecord, outcome: Outcome) -> Result<(), sqlx::Error> {
    let (status, next_at) = match outcome {
        Outcome::Delivered => (Status::Delivered, None),
        Outcome::RetryAt(at) => (Status::Pending, Some(at)),
        Outcome::Dead => (Status::Dead, None),
    };
    let n = i64::from(a.n);
    let duration = i64::try_from(a.duration_ms).unwrap_or(i64::MAX);
    sqlx::query(
        "INSERT INTO attempts (callback_seq, n, at, status_code, duration_ms, error, response_excerpt, outcome, next_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (callback_seq, n) DO UPDATE SET at = EXCLUDED.at, status_code = EXCLUDED.status_code,
             duration_ms = EXCLUDED.duration_ms, error = EXCLUDED.error,
             response_excerpt = EXCLUDED.response_excerpt, outcome = EXCLUDED.outcome, next_at = EXCLUDED.next_at",
    )
    .bind(seq)
    .bind(n)
    .bind(a.at_ms)
    .bind(a.status_code.map(i64::from))
    .bind(duration)
    .bind(a.error.as_deref())
    .bind(a.response_excerpt.as_deref())
    .bind(status.as_str())
    .bind(next_at)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE callbacks
            SET status = $2, attempts = GREATEST(attempts, $3), next_attempt_at = $4,
                lease_owner = NULL, lease_until = NULL, last_error = $5,
                finished_at = CASE WHEN $2 = 'pending' THEN NULL ELSE $6 END
          WHERE seq = $1 AND status = 'pending'",
    )
    .bind(seq)
    .bind(status.as_str())
    .bind(n)
    .bind(next_at)
    .bind(a.error.as_deref())
    .bind(a.at_ms.saturating_add(duration))
    .execute(&mut *conn)
    .await?;
    Ok(())
}
