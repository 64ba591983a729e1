//! Every statement the store runs, written once for both backends and
//! spelled for one of them at open ([`Sql::new`]): placeholders `$n` become
//! SQLite's `?n`, and the few planner hints come from its [`Dialect`].
//!
//! Accepts and attempt records, the bulk of the traffic, go in multi-row
//! statements prepared in a few fixed sizes ([`CHUNKS`]), so that each size
//! is prepared once and cached by the driver.

use std::sync::Arc;

use super::backend::Dialect;

/// Multi-row statements come in these sizes; a batch of n rows is split by
/// the binary digits of n (300 = 256 + 32 + 8 + 4): a few statements however
/// large it is.
pub(super) const CHUNKS: [usize; 9] = [256, 128, 64, 32, 16, 8, 4, 2, 1];

pub(super) fn chunk_sizes(mut n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    for size in CHUNKS {
        while n >= size {
            out.push(size);
            n -= size;
        }
    }
    out
}

/// The columns of a new callback, in the order `ops::insert_rows` binds them.
pub(super) const INSERT_COLS: usize = 18;
const INSERT_HEAD: &str =
    "INSERT {or_fail} INTO callbacks (id, provider, tenant, status, content_type, body, remote_addr,
    simulated, dedup_key, received_at, next_attempt_at, lease_owner, lease_until, last_error, finished_at, path_tenant,
    order_key, source)";
const INSERT_TAIL: &str = "ON CONFLICT (provider, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING RETURNING id, seq";

/// A dedup lookup row: the newcomer's id, the provider, the key.
pub(super) const ORIGINAL_COLS: usize = 3;
const ORIGINALS_HEAD: &str = "SELECT v.column1 AS dup, c.id, c.status, c.received_at FROM (";
const ORIGINALS_TAIL: &str = ") AS v JOIN callbacks c ON c.provider = v.column2 AND c.dedup_key = v.column3";

/// The columns of an attempt, in the order `ops::record_all` binds them.
pub(super) const RECORD_COLS: usize = 9;
const RECORD_HEAD: &str = "INSERT INTO attempts (callback_seq, n, at, status_code, duration_ms, error,
    response_excerpt, outcome, next_at)";
const RECORD_TAIL: &str = "ON CONFLICT (callback_seq, n) DO UPDATE SET at = excluded.at,
    status_code = excluded.status_code, duration_ms = excluded.duration_ms, error = excluded.error,
    response_excerpt = excluded.response_excerpt, outcome = excluded.outcome, next_at = excluded.next_at";

/// The one rule of attempts: recording one moves its callback on — only a
/// pending callback (one replayed or finished meanwhile keeps its state;
/// the late attempt is still kept). Followed by `(seq, n)` rows.
const APPLY_HEAD: &str = "UPDATE callbacks
    SET status = a.outcome,
        attempts = CASE WHEN a.n > callbacks.attempts THEN a.n ELSE callbacks.attempts END,
        next_attempt_at = a.next_at, lease_owner = NULL, lease_until = NULL, last_error = a.error,
        finished_at = CASE WHEN a.outcome = 'pending' THEN NULL ELSE a.at + a.duration_ms END
    FROM attempts a
    WHERE a.callback_seq = callbacks.seq AND callbacks.status = 'pending' AND (a.callback_seq, a.n) IN (";

/// The same rule for one attempt, its values bound: `$1` seq, `$2` n,
/// `$3` outcome, `$4` next_at, `$5` error, `$6` at + duration.
const APPLY_ONE: &str = "UPDATE callbacks
    SET status = $3, attempts = CASE WHEN $2 > attempts THEN $2 ELSE attempts END,
        next_attempt_at = $4, lease_owner = NULL, lease_until = NULL, last_error = $5,
        finished_at = CASE WHEN $3 = 'pending' THEN NULL ELSE $6 END
    WHERE seq = $1 AND status = 'pending'";

const CLAIMED: &str =
    "RETURNING seq, id, provider, tenant, content_type, body, remote_addr, simulated, attempts, verified, verify_tries,
    source";

/// A query's outcome kept with its callback (a pending one only): `$4`
/// counts it against the schedule, `$7` keeps the lease (deliver now).
const VERIFY_NOTE: &str = "UPDATE callbacks
    SET verified = COALESCE($2, verified), verify_detail = $3, verify_tries = verify_tries + $4, status = $5, next_attempt_at = $6,
        lease_owner = CASE WHEN $7 THEN lease_owner ELSE NULL END,
        lease_until = CASE WHEN $7 THEN lease_until ELSE NULL END,
        last_error = CASE WHEN $7 THEN last_error ELSE $3 END,
        finished_at = CASE WHEN $5 = 'pending' THEN NULL ELSE $8 END
    WHERE seq = $1 AND status = 'pending'";
const CLAIM_DUE: &str = "UPDATE callbacks SET lease_owner = $1, lease_until = $2
    WHERE seq IN (
        SELECT seq FROM callbacks {due_index}
        WHERE status = 'pending' AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until < $3)
        ORDER BY next_attempt_at LIMIT $4 {skip_locked})";
const CLAIM_ONE: &str = "UPDATE callbacks SET lease_owner = $1, lease_until = $2
    WHERE id = $4 AND {no_index}status = 'pending' AND next_attempt_at <= $3
      AND (lease_until IS NULL OR lease_until < $3)";

/// A replay's common part: back in the queue, due at `$1`, unleased.
pub(super) const REQUEUE: &str =
    "UPDATE callbacks SET status = 'pending', next_attempt_at = $1, lease_owner = NULL, lease_until = NULL,
    finished_at = NULL";
const ROUTED: &str = ", tenant = $3, last_error = NULL, simulated = $4, dedup_key = $5
    WHERE id = $2 AND status = 'unroutable' AND (CAST($5 AS TEXT) IS NULL OR NOT EXISTS (
        SELECT 1 FROM callbacks o WHERE o.provider = callbacks.provider AND o.dedup_key = $5))";

/// The WHERE of the index `callbacks_settled` (migration 10), stated by
/// the statements that read it: SQLite uses a partial index only for a
/// query whose WHERE implies the index's, and cannot see that a bound
/// status is never `pending`.
const SETTLED: &str = "(status = 'delivered' OR status = 'dead' OR status = 'rejected' OR status = 'unroutable')";

/// The rows of `$1` (a settled status) beyond the newest `$2` or beyond
/// `$3` bytes of body (newest first), among those received before `$4`.
const OVER_CAPS: &str = "DELETE FROM callbacks WHERE seq IN (
    SELECT seq FROM (
        SELECT seq, received_at, ROW_NUMBER() OVER w AS n, SUM(length(body)) OVER w AS total
        FROM callbacks WHERE status = $1 AND {settled}
        WINDOW w AS (ORDER BY seq DESC ROWS UNBOUNDED PRECEDING)) ranked
    WHERE (n > $2 OR total > $3) AND received_at < $4)";

const SUMMARY: &str = "seq, id, provider, tenant, status, attempts, received_at, last_error";

/// The store's statements, spelled for one backend.
pub(super) struct Sql {
    pub begin: Arc<str>,
    pub begin_snapshot: Arc<str>,
    pub commit: Arc<str>,
    pub rollback: Arc<str>,
    pub insert: Vec<Arc<str>>,
    pub originals: Vec<Arc<str>>,
    pub give_up_key: Arc<str>,
    pub record: Vec<Arc<str>>,
    pub apply: Vec<Arc<str>>,
    pub apply_one: Arc<str>,
    pub verify_note: Arc<str>,
    pub claim_due: Arc<str>,
    pub claim_one: Arc<str>,
    pub release: Arc<str>,
    pub release_all: Arc<str>,
    pub routed: Arc<str>,
    pub refuse: Arc<str>,
    pub dead_of: Arc<str>,
    pub purge_delivered: Arc<str>,
    pub purge_dead: Arc<str>,
    pub over_caps: Arc<str>,
    pub unroutable_left: Arc<str>,
    pub get: Arc<str>,
    pub attempts_of: Arc<str>,
    pub list: Arc<str>,
    pub by_status: Arc<str>,
    pub oldest_pending: Arc<str>,
    pub open_orders: Arc<str>,
    pub ping: Arc<str>,
    pub migrations_table: Arc<str>,
    pub migration_done: Arc<str>,
    pub migration_note: Arc<str>,
    pub orders: super::orders::OrderSql,
    pub dialect: &'static Dialect,
}

impl Sql {
    pub fn new(d: &'static Dialect) -> Self {
        let s = |text: &str| spell(d, text);
        let sized = |f: &dyn Fn(usize) -> String| CHUNKS.iter().map(|&n| s(&f(n))).collect::<Vec<_>>();
        Self {
            begin: s("BEGIN"),
            begin_snapshot: s(d.begin_snapshot),
            commit: s("COMMIT"),
            rollback: s("ROLLBACK"),
            insert: sized(&|n| format!("{INSERT_HEAD} {} {INSERT_TAIL}", values(INSERT_COLS, n))),
            originals: sized(&|n| format!("{ORIGINALS_HEAD}{}{ORIGINALS_TAIL}", values(ORIGINAL_COLS, n))),
            give_up_key: s("UPDATE callbacks SET dedup_key = NULL WHERE id = $1"),
            record: sized(&|n| format!("{RECORD_HEAD} {} {RECORD_TAIL}", values(RECORD_COLS, n))),
            apply: sized(&|n| format!("{APPLY_HEAD}{})", values(2, n))),
            apply_one: s(APPLY_ONE),
            verify_note: s(VERIFY_NOTE),
            claim_due: s(&format!("{CLAIM_DUE} {CLAIMED}")),
            claim_one: s(&format!("{CLAIM_ONE} {CLAIMED}")),
            release: s("UPDATE callbacks SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1"),
            release_all: s("UPDATE callbacks SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL"),
            routed: s(&format!("{REQUEUE}{ROUTED}")),
            refuse: s("UPDATE callbacks SET status = 'rejected', tenant = $3, last_error = $4, finished_at = $1
                WHERE id = $2 AND status = 'unroutable'"),
            dead_of: s(&format!("{REQUEUE} WHERE tenant = $2 AND status = 'dead'")),
            purge_delivered: s("DELETE FROM callbacks {delivered_index}
                WHERE status = 'delivered' AND received_at < $1"),
            purge_dead: s("DELETE FROM callbacks WHERE status = 'dead' AND finished_at < $1"),
            over_caps: s(&OVER_CAPS.replace("{settled}", SETTLED)),
            unroutable_left: s("SELECT COUNT(*) AS n, COALESCE(SUM(length(body)), 0) AS bytes
                FROM callbacks WHERE status = 'unroutable'"),
            get: s(&format!(
                "SELECT {SUMMARY}, content_type, body, remote_addr, simulated, next_attempt_at, path_tenant,
                        verified, verify_detail
                 FROM callbacks WHERE id = $1"
            )),
            attempts_of: s("SELECT n, at, status_code, duration_ms, error, response_excerpt FROM attempts
                WHERE callback_seq = $1 ORDER BY n"),
            list: s(&format!(
                "SELECT {SUMMARY} FROM callbacks
                 WHERE (CAST($1 AS TEXT) IS NULL OR status = $1) AND (CAST($2 AS TEXT) IS NULL OR tenant = $2)
                   AND (CAST($3 AS TEXT) IS NULL OR provider = $3) AND (CAST($4 AS BIGINT) IS NULL OR seq < $4)
                   AND (CAST($6 AS TEXT) IS NULL OR order_key = $6 OR id = $6)
                 ORDER BY seq DESC LIMIT $5"
            )),
            // Pending rows are counted in their own index (callbacks_due).
            by_status: s(&format!(
                "SELECT status, COUNT(*) AS n FROM callbacks WHERE {SETTLED} GROUP BY status
                 UNION ALL SELECT 'pending' AS status, COUNT(*) AS n FROM callbacks WHERE status = 'pending'"
            )),
            oldest_pending: s("SELECT MIN(received_at) AS t FROM callbacks WHERE status = 'pending'"),
            open_orders: s(
                "SELECT COUNT(*) AS n, MIN(created_at) AS t FROM orders WHERE state IN ('checkout', 'code_issued')",
            ),
            ping: s("SELECT 1"),
            migrations_table: s(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            ),
            migration_done: s("SELECT version FROM schema_migrations WHERE version = $1"),
            migration_note: s("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)"),
            orders: super::orders::OrderSql::new(&s, d),
            dialect: d,
        }
    }

    /// A statement made at run time, spelled for this backend.
    pub fn spell(&self, text: &str) -> Arc<str> {
        spell(self.dialect, text)
    }

    /// The statement of `cache` (one per [`CHUNKS`] size) for `rows` rows.
    pub fn sized(cache: &[Arc<str>], rows: usize) -> Arc<str> {
        let i = CHUNKS.iter().position(|&s| s == rows).unwrap_or(CHUNKS.len() - 1);
        cache[i].clone()
    }
}

/// `items` in the sizes multi-row statements are prepared in.
pub(super) fn in_chunks<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    chunk_sizes(items.len()).into_iter().map(move |size| {
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        chunk
    })
}

/// `VALUES ($1, $2), ($3, $4) …` for `rows` rows of `cols` columns.
/// Written into one string: the sizes of every multi-row statement are
/// ten thousand cells, spelled at every start (issue 14's start-up).
pub(super) fn values(cols: usize, rows: usize) -> String {
    let mut out = String::with_capacity(8 + rows * cols * 8);
    out.push_str("VALUES ");
    let mut number = itoa::Buffer::new();
    for r in 0..rows {
        out.push_str(if r == 0 { "(" } else { "), (" });
        for c in 1..=cols {
            out.push_str(if c == 1 { "$" } else { ", $" });
            out.push_str(number.format(r * cols + c));
        }
    }
    if rows > 0 {
        out.push(')');
    }
    out
}

/// `text` for one backend: its hints filled in, its placeholders spelled.
/// On SQLite a statement whose placeholders run `$1, $2, …` in order, each
/// once (every multi-row statement), gets anonymous `?`s: SQLite looks a
/// numbered parameter's name up in a list for every bind, which for a
/// 256-row insert of 18 columns is quadratic.
fn spell(d: &Dialect, text: &str) -> Arc<str> {
    let filled = text
        .replace("{due_index}", d.due_index)
        .replace("{delivered_index}", d.delivered_index)
        .replace("{no_index}", d.no_index)
        .replace("{skip_locked}", d.skip_locked)
        .replace("{or_fail}", d.or_fail);
    if d.numbered_with == '$' {
        return filled.into();
    }
    if let Some(anonymous) = anonymous(&filled) {
        return anonymous.into();
    }
    filled.replace('$', &d.numbered_with.to_string()).into()
}

/// `text` with its placeholders `$1, $2, …` written `?`, if they stand in
/// that order, each once; `None` otherwise. One pass: the multi-row
/// statements of every size are spelled at each start (issue 14).
fn anonymous(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let (mut next, mut rest) = (1usize, text);
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            if after[..digits].parse::<usize>().ok()? != next {
                return None;
            }
            next += 1;
        }
        out.push('?');
        rest = &after[digits..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_add_up_and_use_the_cached_sizes() {
        for n in [0, 1, 2, 3, 7, 100, 255, 256, 300, 511, 512] {
            let sizes = chunk_sizes(n);
            assert_eq!(sizes.iter().sum::<usize>(), n);
            assert!(sizes.iter().all(|s| CHUNKS.contains(s)));
            assert!(sizes.len() <= 9, "{n}: {sizes:?}");
        }
        assert_eq!(chunk_sizes(300), [256, 32, 8, 4]);
        assert_eq!(values(2, 2), "VALUES ($1, $2), ($3, $4)");
        assert_eq!(values(3, 1), "VALUES ($1, $2, $3)");
        assert_eq!(values(1, 3), "VALUES ($1), ($2), ($3)");
    }

    #[test]
    fn each_backend_gets_its_own_spelling() {
        let lite = Sql::new(&super::super::sqlite::DIALECT);
        let pg = Sql::new(&super::super::postgres::DIALECT);
        assert!(lite.claim_due.contains("INDEXED BY callbacks_due") && lite.claim_due.contains("?3"));
        assert!(!lite.claim_due.contains('$') && !lite.claim_due.contains("SKIP LOCKED"));
        assert!(pg.claim_due.contains("FOR UPDATE SKIP LOCKED") && pg.claim_due.contains("$3"));
        assert!(!pg.claim_due.contains('?') && !pg.claim_due.contains("INDEXED"));
        assert!(pg.claim_one.contains("AND status = 'pending'") && lite.claim_one.contains("+status"));
        assert_eq!(Sql::sized(&pg.insert, 2).matches("($").count(), 2);
        // In-order placeholders are anonymous on SQLite; repeated ones stay numbered.
        assert!(Sql::sized(&lite.insert, 2).contains("VALUES (?, ?, ?"));
        assert!(!Sql::sized(&lite.insert, 2).contains("?1"));
        assert!(lite.routed.contains("?5") && anonymous("a = $1 AND b = $1").is_none());
        assert_eq!(anonymous("($1, $2), ($3)").as_deref(), Some("(?, ?), (?)"));
        assert_eq!(anonymous("a = $2 AND b = $1"), None);
        assert_eq!(anonymous("no placeholders").as_deref(), Some("no placeholders"));
        // No statement journal for SQLite's multi-row inserts; PostgreSQL has no `OR`.
        assert!(Sql::sized(&lite.insert, 8).starts_with("INSERT OR FAIL INTO callbacks"));
        assert!(
            Sql::sized(&lite.orders.checkout_events, 8).trim_start().starts_with("INSERT OR FAIL INTO order_events")
        );
        assert!(Sql::sized(&pg.insert, 8).starts_with("INSERT  INTO callbacks"));
        assert!(!Sql::sized(&pg.orders.checkout_events, 8).contains("OR FAIL"));
    }
}
