//! What a row of either backend means: the same columns in both schemas,
//! read through one small accessor trait so that the mapping to
//! [`CallbackSummary`], [`CallbackDetail`], [`Claimed`] and
//! [`AttemptRecord`] is written once.

use bytes::Bytes;
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

use super::types::*;

/// Typed column reads, the same on SQLite and PostgreSQL (every integer
/// column is 64-bit in both schemas; flags decode as booleans).
pub(super) trait Cols {
    fn int(&self, col: &str) -> Result<i64, sqlx::Error>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>, sqlx::Error>;
    fn text(&self, col: &str) -> Result<String, sqlx::Error>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error>;
    fn bytes(&self, col: &str) -> Result<Vec<u8>, sqlx::Error>;
    fn flag(&self, col: &str) -> Result<bool, sqlx::Error>;
}

macro_rules! cols {
    ($row:ty) => {
        impl Cols for $row {
            fn int(&self, col: &str) -> Result<i64, sqlx::Error> {
                self.try_get(col)
            }
            fn opt_int(&self, col: &str) -> Result<Option<i64>, sqlx::Error> {
                self.try_get(col)
            }
            fn text(&self, col: &str) -> Result<String, sqlx::Error> {
                self.try_get(col)
            }
            fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
                self.try_get(col)
            }
            fn bytes(&self, col: &str) -> Result<Vec<u8>, sqlx::Error> {
                self.try_get(col)
            }
            fn flag(&self, col: &str) -> Result<bool, sqlx::Error> {
                self.try_get(col)
            }
        }
    };
}

cols!(SqliteRow);
cols!(PgRow);

fn count(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

/// `seq, id, provider, tenant, status, attempts, received_at, last_error`.
pub(super) fn summary(r: &impl Cols) -> Result<CallbackSummary, sqlx::Error> {
    Ok(CallbackSummary {
        seq: r.int("seq")?,
        id: id(&r.text("id")?)?,
        provider: provider(&r.text("provider")?)?,
        tenant: r.opt_text("tenant")?,
        status: status(&r.text("status")?)?,
        attempts: count(r.int("attempts")?),
        received_at_ms: r.int("received_at")?,
        last_error: r.opt_text("last_error")?,
    })
}

/// The summary's columns plus `content_type, body, remote_addr, simulated,
/// next_attempt_at, path_tenant`.
pub(super) fn detail(r: &impl Cols, attempts: Vec<AttemptRecord>) -> Result<CallbackDetail, sqlx::Error> {
    Ok(CallbackDetail {
        summary: summary(r)?,
        content_type: r.opt_text("content_type")?,
        body: Bytes::from(r.bytes("body")?),
        remote_addr: r.opt_text("remote_addr")?,
        simulated: r.flag("simulated")?,
        next_attempt_at_ms: r.opt_int("next_attempt_at")?,
        path_tenant: r.opt_text("path_tenant")?,
        attempts,
        verification: match r.opt_text("verified")? {
            Some(v) => Some((verified(&v)?, r.opt_text("verify_detail")?.unwrap_or_default())),
            None => None,
        },
    })
}

/// `n, at, status_code, duration_ms, error, response_excerpt`.
pub(super) fn attempt(r: &impl Cols) -> Result<AttemptRecord, sqlx::Error> {
    Ok(AttemptRecord {
        n: count(r.int("n")?),
        at_ms: r.int("at")?,
        status_code: r.opt_int("status_code")?.and_then(|c| u16::try_from(c).ok()),
        duration_ms: u64::try_from(r.int("duration_ms")?).unwrap_or(0),
        error: r.opt_text("error")?,
        response_excerpt: r.opt_text("response_excerpt")?,
    })
}

/// `seq, id, provider, tenant, content_type, body, remote_addr, simulated, attempts`.
pub(super) fn claimed(r: &impl Cols) -> Result<Claimed, sqlx::Error> {
    Ok(Claimed {
        seq: r.int("seq")?,
        id: id(&r.text("id")?)?,
        provider: provider(&r.text("provider")?)?,
        tenant: r.opt_text("tenant")?.map(|t| tenant(&t)).transpose()?,
        content_type: r.opt_text("content_type")?,
        body: Bytes::from(r.bytes("body")?),
        remote_addr: r.opt_text("remote_addr")?,
        simulated: r.flag("simulated")?,
        attempts: count(r.int("attempts")?),
        verified: r.opt_text("verified")?.map(|v| verified(&v)).transpose()?,
        verify_tries: count(r.int("verify_tries")?),
        source: r.opt_text("source")?,
        event: None,
    })
}

/// A status column's value. One the store's schema does not allow (a newer
/// version's, a hand edit) is an error, never taken for `pending`.
pub(super) fn status(text: &str) -> Result<Status, sqlx::Error> {
    Status::parse(text).ok_or_else(|| unknown("callback status", text))
}

fn unknown(what: &str, text: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unknown {what} {text:?} in the store").into())
}

/// A provider column's value; one this version does not know is an error.
pub(super) fn provider(text: &str) -> Result<Provider, sqlx::Error> {
    Provider::parse(text).ok_or_else(|| unknown("provider", text))
}

pub(super) fn verified(text: &str) -> Result<Verified, sqlx::Error> {
    Verified::parse(text).ok_or_else(|| unknown("verification outcome", text))
}

pub(super) fn id(text: &str) -> Result<CallbackId, sqlx::Error> {
    CallbackId::parse(text).ok_or_else(|| unknown("callback id", text))
}

fn tenant(text: &str) -> Result<TenantId, sqlx::Error> {
    TenantId::parse(text).map_err(|_| unknown("tenant id", text))
}

/// Rows of `status, n` (a `GROUP BY status` count).
pub(super) fn by_status(rows: &[impl Cols]) -> Result<Vec<(Status, u64)>, sqlx::Error> {
    let mut out = Vec::new();
    for r in rows {
        out.push((status(&r.text("status")?)?, u64::try_from(r.int("n")?).unwrap_or(0)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unknown_status_is_an_error_not_pending() {
        assert_eq!(super::status("dead").ok(), Some(super::Status::Dead));
        assert!(super::status("archived").is_err());
    }
}
