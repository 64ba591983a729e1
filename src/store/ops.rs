//! What each store operation does, written once for both backends against
//! [`Conn`]: the writer runs the write ops inside its batch transaction,
//! the reads run on a connection of their own.

use std::collections::HashMap;
use std::time::Duration;

use super::backend::{Arg, Conn};
use super::rows::{self, Cols};
use super::sql::{self, Sql, in_chunks};
use super::types::*;
use super::{ms, now_ms};

/// The batch's callbacks by id, hashed with foldhash: the ids are ours
/// (UUIDv7), and SipHash on each of the five lookups a callback takes cost
/// the writer ~1.6k instructions a callback (issue 14).
type ById<V> = HashMap<CallbackId, V, foldhash::fast::RandomState>;

type Result<T> = std::result::Result<T, sqlx::Error>;

/// The dedup key of a callback that is to be delivered (only those dedup).
fn dedup_of(n: &NewCallback) -> Option<&DedupKey> {
    if n.status == Status::Pending { n.dedup.as_ref() } else { None }
}

/// A new callback's row, in [`sql::INSERT_COLS`] order.
fn insert_args(n: &NewCallback, id: &CallbackId, now: i64, args: &mut Vec<Arg>) {
    let pending = n.status == Status::Pending;
    let (lease_owner, lease_until) = match (&n.lease, pending) {
        (Some((owner, lease)), true) => (Some(owner.as_str()), Some(now + ms(*lease))),
        _ => (None, None),
    };
    args.extend([
        Arg::from(id.as_str()),
        Arg::from(n.provider.name()),
        Arg::from(n.tenant.as_deref()),
        Arg::from(n.status.as_str()),
        Arg::from(n.content_type.as_deref()),
        Arg::Blob(n.body.to_vec()),
        Arg::from(n.remote_addr.as_deref()),
        Arg::from(n.simulated),
        Arg::from(dedup_of(n).map(|d| d.key.as_str())),
        Arg::from(now),
        Arg::from(pending.then_some(now)),
        Arg::from(lease_owner),
        Arg::from(lease_until),
        Arg::from(n.reason.as_deref()),
        Arg::from((!pending).then_some(now)),
        Arg::from(n.path_tenant.as_deref()),
        Arg::from(n.order_key.as_deref()),
        Arg::from(n.source),
    ]);
}

/// Inserts the callbacks `which` of `news` (with their ids); a row whose
/// dedup key another row holds is skipped. Returns the seq of each row
/// inserted, by id.
async fn insert_rows<C: Conn>(
    c: &mut C,
    sql: &Sql,
    news: &[&NewCallback],
    ids: &[CallbackId],
    which: &[usize],
    now: i64,
) -> Result<ById<i64>> {
    let mut stored = ById::with_capacity_and_hasher(which.len(), Default::default());
    for chunk in in_chunks(which) {
        let size = chunk.len();
        let mut args = Vec::with_capacity(size * sql::INSERT_COLS);
        for &i in chunk {
            insert_args(news[i], &ids[i], now, &mut args);
        }
        for row in c.fetch(&Sql::sized(&sql.insert, size), args).await? {
            stored.insert(rows::id(&row.text("id")?)?, row.int("seq")?);
        }
    }
    Ok(stored)
}

/// What holds the dedup key of each of `dups`: the original's id, status and
/// receive time, by the newcomer's id.
async fn originals<C: Conn>(
    c: &mut C,
    sql: &Sql,
    news: &[&NewCallback],
    ids: &[CallbackId],
    dups: &[usize],
) -> Result<ById<(CallbackId, Status, i64)>> {
    let keyed: Vec<usize> = dups.iter().copied().filter(|&i| dedup_of(news[i]).is_some()).collect();
    let mut found = ById::with_capacity_and_hasher(keyed.len(), Default::default());
    for chunk in in_chunks(&keyed) {
        let size = chunk.len();
        let mut args = Vec::with_capacity(size * sql::ORIGINAL_COLS);
        for &i in chunk {
            let key = dedup_of(news[i]).map(|d| d.key.as_str());
            args.extend([Arg::from(ids[i].as_str()), Arg::from(news[i].provider.name()), Arg::from(key)]);
        }
        for r in c.fetch(&Sql::sized(&sql.originals, size), args).await? {
            let original = (rows::id(&r.text("id")?)?, rows::status(&r.text("status")?)?, r.int("received_at")?);
            found.insert(rows::id(&r.text("dup")?)?, original);
        }
    }
    Ok(found)
}

/// Dedup and insert every accepted callback of the batch, in order. A key
/// seen twice in one batch goes to the first; the second is its duplicate.
/// A key older than its window is given up by its old row and the newcomer
/// stored; a key whose holder vanished meanwhile (purged, or another
/// instance's insert rolled back) is tried again.
pub(super) async fn accept_all<C: Conn>(
    c: &mut C,
    sql: &Sql,
    news: &[&NewCallback],
    now: i64,
) -> Result<Vec<Accepted>> {
    let ids: Vec<CallbackId> = news.iter().map(|_| CallbackId::new()).collect();
    let mut answers: ById<Accepted> = ById::with_capacity_and_hasher(news.len(), Default::default());
    let mut todo: Vec<usize> = (0..news.len()).collect();
    for _ in 0..3 {
        if todo.is_empty() {
            break;
        }
        for (id, seq) in insert_rows(c, sql, news, &ids, &todo, now).await? {
            answers.insert(id.clone(), Accepted::Stored { id, seq });
        }
        let dups: Vec<usize> = todo.iter().copied().filter(|&i| !answers.contains_key(&ids[i])).collect();
        let mut found = originals(c, sql, news, &ids, &dups).await?;
        todo.clear();
        for i in dups {
            let window = dedup_of(news[i]).map_or(Duration::ZERO, |d| d.window);
            match found.remove(&ids[i]) {
                Some((original, _, received)) if received < now - ms(window) => {
                    c.execute(&sql.give_up_key, vec![Arg::from(original.as_str())]).await?;
                    todo.push(i);
                }
                Some((original, status, received_ms)) => {
                    answers.insert(ids[i].clone(), Accepted::Duplicate { id: original, status, received_ms });
                }
                None => todo.push(i),
            }
        }
    }
    for (n, id) in news.iter().zip(&ids) {
        if let (Some(m), Some(tenant), Some(Accepted::Stored { .. })) = (&n.order, &n.tenant, answers.get(id))
            && n.status == Status::Pending
        {
            super::orders::moved(c, &sql.orders, tenant, id, m, now).await?;
        }
    }
    ids.iter()
        .map(|id| answers.remove(id).ok_or_else(|| sqlx::Error::Protocol("the dedup key kept changing hands".into())))
        .collect()
}

/// Leases due rows (`id: None`: the earliest due) or one given pending row.
pub(super) async fn claim<C: Conn>(
    c: &mut C,
    sql: &Sql,
    owner: &str,
    lease: Duration,
    limit: usize,
    id: Option<&str>,
    now: i64,
) -> Result<Vec<Claimed>> {
    let mut args = vec![Arg::from(owner), Arg::from(now + ms(lease)), Arg::from(now)];
    let statement = match id {
        None => {
            args.push(Arg::from(i64::try_from(limit).unwrap_or(i64::MAX)));
            &sql.claim_due
        }
        Some(id) => {
            args.push(Arg::from(id));
            &sql.claim_one
        }
    };
    c.fetch(statement, args).await?.iter().map(rows::claimed).collect()
}

/// Puts callbacks back into the queue, due now; returns how many.
pub(super) async fn replay<C: Conn>(c: &mut C, sql: &Sql, what: &Replay, now: i64) -> Result<u64> {
    match what {
        Replay::One { id, from } => {
            // The statuses come from the enum, never from a request.
            let from: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
            let text = format!("{} WHERE id = $2 AND status IN ({})", sql::REQUEUE, from.join(", "));
            c.execute(&sql.spell(&text), vec![Arg::from(now), Arg::from(id.as_str())]).await
        }
        Replay::Routed { id, tenant, simulated, dedup_key } => {
            let args = vec![
                Arg::from(now),
                Arg::from(id.as_str()),
                Arg::from(tenant.as_str()),
                Arg::from(*simulated),
                Arg::from(dedup_key.as_deref()),
            ];
            c.execute(&sql.routed, args).await
        }
        Replay::Refuse { id, tenant, reason } => {
            let args =
                vec![Arg::from(now), Arg::from(id.as_str()), Arg::from(tenant.as_deref()), Arg::from(reason.as_str())];
            c.execute(&sql.refuse, args).await
        }
        Replay::DeadOf { tenant } => c.execute(&sql.dead_of, vec![Arg::from(now), Arg::from(tenant.as_str())]).await,
    }
}

/// Keeps a query's outcome with its pending callback and moves it on.
pub(super) async fn verify_note<C: Conn>(c: &mut C, sql: &Sql, seq: i64, note: &VerifyNote, now: i64) -> Result<u64> {
    let (counts, status, next_at, keep_lease) = match note.then {
        AfterVerify::Deliver => (false, Status::Pending, None, true),
        AfterVerify::RetryAt(at) => (true, Status::Pending, Some(at), false),
        AfterVerify::Defer(at) => (false, Status::Pending, Some(at), false),
        AfterVerify::Reject => (true, Status::Rejected, None, false),
        AfterVerify::Dead => (true, Status::Dead, None, false),
    };
    let args = vec![
        Arg::from(seq),
        Arg::from(note.verified.map(Verified::as_str)),
        Arg::from(note.detail.as_str()),
        Arg::from(i64::from(counts)),
        Arg::from(status.as_str()),
        // Delivering now keeps the row due (it is leased to the caller).
        Arg::from(next_at.or((status == Status::Pending).then_some(now))),
        Arg::from(keep_lease),
        Arg::from(now),
    ];
    c.execute(&sql.verify_note, args).await
}

fn cap(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) async fn purge<C: Conn>(c: &mut C, sql: &Sql, p: &PurgePolicy) -> Result<Purged> {
    let now = p.now_ms;
    let delivered = c.execute(&sql.purge_delivered, vec![Arg::from(now - ms(p.retention))]).await?;
    let dead = c.execute(&sql.purge_dead, vec![Arg::from(now - ms(p.dead_retention))]).await?;
    let over_caps = |status: Status, count: u64, bytes: u64, before: i64| {
        vec![Arg::from(status.as_str()), Arg::from(cap(count)), Arg::from(cap(bytes)), Arg::from(before)]
    };
    let rejected = over_caps(Status::Rejected, p.keep_rejected, p.keep_rejected_bytes, i64::MAX);
    let rejected = c.execute(&sql.over_caps, rejected).await?;
    let min_age = now - ms(p.unroutable_min_age);
    let unroutable = over_caps(Status::Unroutable, p.keep_unroutable, p.keep_unroutable_bytes, min_age);
    let unroutable = c.execute(&sql.over_caps, unroutable).await?;
    let left = c.fetch(&sql.unroutable_left, Vec::new()).await?;
    let (n, bytes) = match left.first() {
        Some(r) => (r.int("n")?, r.int("bytes")?),
        None => (0, 0),
    };
    let unroutable_full = n >= cap(p.keep_unroutable) || bytes >= cap(p.keep_unroutable_bytes);
    Ok(Purged { delivered, rejected, unroutable, dead, unroutable_full })
}

/// Commits on success, rolls back on failure; a connection that cannot
/// even roll back is closed.
pub(super) async fn finish<C: Conn, T>(mut c: C, sql: &Sql, result: Result<T>) -> (Option<C>, Result<T>) {
    match result {
        Ok(v) => match c.execute(&sql.commit, Vec::new()).await {
            Ok(_) => (Some(c), Ok(v)),
            Err(e) => end_failed(c, sql, e).await,
        },
        Err(e) => end_failed(c, sql, e).await,
    }
}

async fn end_failed<C: Conn, T>(mut c: C, sql: &Sql, e: sqlx::Error) -> (Option<C>, Result<T>) {
    if c.execute(&sql.rollback, Vec::new()).await.is_ok() {
        (Some(c), Err(e))
    } else {
        c.discard();
        (None, Err(e))
    }
}

/// The row and its attempts, from one snapshot.
pub(super) async fn get<C: Conn>(mut c: C, sql: &Sql, id: &str) -> Result<Option<CallbackDetail>> {
    c.execute(&sql.begin_snapshot, Vec::new()).await?;
    let read = async {
        let Some(row) = c.fetch(&sql.get, vec![Arg::from(id)]).await?.into_iter().next() else {
            return Ok(None);
        };
        let attempts = c.fetch(&sql.attempts_of, vec![Arg::from(row.int("seq")?)]).await?;
        let attempts = attempts.iter().map(rows::attempt).collect::<Result<Vec<_>>>()?;
        Ok(Some(rows::detail(&row, attempts)?))
    }
    .await;
    finish(c, sql, read).await.1
}

pub(super) async fn list<C: Conn>(mut c: C, sql: &Sql, f: &ListFilter) -> Result<Vec<CallbackSummary>> {
    let args = vec![
        Arg::from(f.status.map(Status::as_str)),
        Arg::from(f.tenant.as_deref()),
        Arg::from(f.provider.as_deref()),
        Arg::from(f.before_seq),
        Arg::from(i64::from(f.limit)),
        Arg::from(f.q.as_deref()),
    ];
    c.fetch(&sql.list, args).await?.iter().map(rows::summary).collect()
}

pub(super) async fn stats<C: Conn>(mut c: C, sql: &Sql) -> Result<Stats> {
    let by_status = rows::by_status(&c.fetch(&sql.by_status, Vec::new()).await?)?;
    let oldest = c.fetch(&sql.oldest_pending, Vec::new()).await?;
    let oldest_pending_ms = match oldest.first() {
        Some(r) => r.opt_int("t")?,
        None => None,
    };
    let open = c.fetch(&sql.open_orders, Vec::new()).await?;
    let (open_orders, oldest_open_order_ms) = match open.first() {
        Some(r) => (u64::try_from(r.int("n")?).unwrap_or(0), r.opt_int("t")?),
        None => (0, None),
    };
    Ok(Stats { by_status, oldest_pending_ms, open_orders, oldest_open_order_ms })
}

/// Applies the migrations not yet applied in one transaction (under the
/// backend's lock when instances share the store): a new store is one
/// commit, a failed migration leaves it as it was. One instance per store
/// gives back the leases of its previous run.
pub(super) async fn migrate<C: Conn>(c: &mut C, sql: &Sql, release: bool) -> Result<()> {
    c.execute(&sql.begin, Vec::new()).await?;
    match pending_migrations(c, sql).await {
        Ok(applied) => {
            c.execute(&sql.commit, Vec::new()).await?;
            for version in applied {
                tracing::info!(version, "storage migrated");
            }
        }
        Err(e) => {
            let _ = c.execute(&sql.rollback, Vec::new()).await;
            return Err(e);
        }
    }
    if release && sql.dialect.single_instance {
        c.execute(&sql.release_all, Vec::new()).await?;
    }
    Ok(())
}

/// Inside [`migrate`]'s transaction: the versions it applied.
async fn pending_migrations<C: Conn>(c: &mut C, sql: &Sql) -> Result<Vec<i64>> {
    if let Some(lock) = sql.dialect.migration_lock {
        c.script(lock).await?;
    }
    c.execute(&sql.migrations_table, Vec::new()).await?;
    let mut applied = Vec::new();
    for &(version, script) in sql.dialect.migrations {
        if c.fetch(&sql.migration_done, vec![Arg::from(version)]).await?.is_empty() {
            c.script(script).await?;
            c.execute(&sql.migration_note, vec![Arg::from(version), Arg::from(now_ms())]).await?;
            applied.push(version);
        }
    }
    Ok(applied)
}
