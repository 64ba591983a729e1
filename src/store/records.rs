//! Attempt records: a batch's attempts in multi-row inserts, each moving
//! its callback on (the one rule of attempts: `APPLY_HEAD` per chunk,
//! `APPLY_ONE` per attempt, in `sql.rs`).

use super::backend::{Arg, Conn};
use super::sql::{self, Sql, in_chunks};
use super::types::*;

type Result<T> = std::result::Result<T, sqlx::Error>;

/// Records every attempt of the batch and moves each callback on: the rule
/// is written in `sql.rs` twice, `APPLY_HEAD` for a chunk of attempts
/// (PostgreSQL: one round trip) and `APPLY_ONE` for one (SQLite).
pub(super) async fn record_all<C: Conn>(
    c: &mut C,
    sql: &Sql,
    records: &[(i64, &AttemptRecord, Outcome)],
) -> Result<()> {
    for chunk in in_chunks(records) {
        let size = chunk.len();
        let mut args = Vec::with_capacity(size * sql::RECORD_COLS);
        for (seq, a, outcome) in chunk {
            let (status, next_at) = outcome_columns(*outcome);
            args.extend([
                Arg::from(*seq),
                Arg::from(i64::from(a.n)),
                Arg::from(a.at_ms),
                Arg::from(a.status_code.map(i64::from)),
                Arg::from(i64::try_from(a.duration_ms).unwrap_or(i64::MAX)),
                Arg::from(a.error.as_deref()),
                Arg::from(a.response_excerpt.as_deref()),
                Arg::from(status.as_str()),
                Arg::from(next_at),
            ]);
        }
        c.execute(&Sql::sized(&sql.record, size), args).await?;
        if !sql.dialect.apply_per_row {
            let keys = chunk.iter().flat_map(|(seq, a, _)| [Arg::from(*seq), Arg::from(i64::from(a.n))]).collect();
            c.execute(&Sql::sized(&sql.apply, size), keys).await?;
            continue;
        }
        for (seq, a, outcome) in chunk {
            let (status, next_at) = outcome_columns(*outcome);
            let finished = a.at_ms.saturating_add(i64::try_from(a.duration_ms).unwrap_or(i64::MAX));
            let args = vec![
                Arg::from(*seq),
                Arg::from(i64::from(a.n)),
                Arg::from(status.as_str()),
                Arg::from(next_at),
                Arg::from(a.error.as_deref()),
                Arg::from(finished),
            ];
            c.execute(&sql.apply_one, args).await?;
        }
    }
    Ok(())
}

/// An attempt's outcome as its row keeps it: the callback's next status
/// and, for a retry, when.
fn outcome_columns(outcome: Outcome) -> (Status, Option<i64>) {
    match outcome {
        Outcome::Delivered => (Status::Delivered, None),
        Outcome::RetryAt(at) => (Status::Pending, Some(at)),
        Outcome::Dead => (Status::Dead, None),
    }
}
