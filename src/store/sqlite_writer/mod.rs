//! The SQLite writer's connection: SQLite called directly, on the writer's
//! own thread. Through sqlx every statement of a transaction was a round
//! trip to sqlx's worker thread (begin, insert, the order ledger, commit:
//! four or five thread wake-ups per request at one connection, issue 14);
//! here a batch costs one hop in (the writer's channel) and one out (each
//! reply). Reads stay on sqlx's pool: WAL lets them run beside the writer.
//!
//! The same statements, bound the same way: [`Conn`] is all the store's
//! SQL module sees of either connection.

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_int};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;

use libsqlite3_sys as ffi;

use super::backend::{Arg, Conn};

mod row;

pub(super) use row::Row;
use row::{SqliteError, Value};

/// How long a statement waits for a lock held by another connection
/// (`payrelay reconcile` beside the gateway): sqlx's `busy_timeout` before.
const BUSY_TIMEOUT_MS: c_int = 5_000;

/// Past this many, the cache by address is emptied (a text spelled anew
/// for each call, as a replay's is, would otherwise keep adding to it).
const MAX_BY_ADDRESS: usize = 256;

pub(super) struct WriterConn {
    db: NonNull<ffi::sqlite3>,
    /// Every prepared statement, by its text: finalized on drop.
    statements: HashMap<Arc<str>, Statement, foldhash::fast::RandomState>,
    /// The same statements by the address of the text they were asked for
    /// with (the store spells each statement once): hashing a multi-row
    /// statement's whole text on every run cost more than its binding
    /// (issue 14). The text is kept, so that its address is not reused.
    /// Hashed with foldhash, not SipHash: the addresses are ours.
    by_address: HashMap<usize, (Arc<str>, Statement), foldhash::fast::RandomState>,
}

// SAFETY: a connection is owned by one writer and used through `&mut self`
// only, so never by two threads at once; moving it between threads is what
// SQLite's multi-thread mode (SQLITE_OPEN_NOMUTEX on a thread-safe build,
// as the bundled one is) allows.
unsafe impl Send for WriterConn {}

#[derive(Clone)]
struct Statement {
    ptr: NonNull<ffi::sqlite3_stmt>,
    columns: Arc<[Box<str>]>,
}

impl WriterConn {
    /// Opens (creating) the database at `path` in WAL mode with
    /// `synchronous = FULL`: a commit is on disk when it returns.
    pub(super) fn open(path: &Path) -> Result<Self, sqlx::Error> {
        let name = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| sqlx::Error::Configuration("the store's path holds a NUL byte".into()))?;
        let mut db = std::ptr::null_mut();
        let flags = ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE | ffi::SQLITE_OPEN_NOMUTEX;
        // SAFETY: `name` is NUL-terminated and outlives the call; `db` gets a
        // handle even on most errors, which `Drop` closes.
        let rc = unsafe { ffi::sqlite3_open_v2(name.as_ptr(), &mut db, flags, std::ptr::null()) };
        let Some(db) = NonNull::new(db) else {
            return Err(SqliteError::new(rc, "cannot allocate a connection".into()).into());
        };
        let mut conn = Self { db, statements: HashMap::default(), by_address: HashMap::default() };
        if rc != ffi::SQLITE_OK {
            return Err(conn.error(rc));
        }
        // SAFETY: a valid handle.
        unsafe {
            ffi::sqlite3_busy_timeout(db.as_ptr(), BUSY_TIMEOUT_MS);
            ffi::sqlite3_extended_result_codes(db.as_ptr(), 1);
            // Plans that do not depend on bound values: otherwise a
            // statement planned around one (`LIMIT ?`) is marked expired by
            // the clearing of its bindings after every run, and parsed and
            // planned again on the next (issue 14). Our partial indexes are
            // matched by literals (`status = 'pending'`) or by `IS NOT NULL`,
            // which need no bound value.
            ffi::sqlite3_db_config(
                db.as_ptr(),
                ffi::SQLITE_DBCONFIG_ENABLE_QPSG,
                1 as c_int,
                std::ptr::null_mut::<c_int>(),
            );
        }
        conn.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
        Ok(conn)
    }

    fn error(&self, rc: c_int) -> sqlx::Error {
        // SAFETY: a valid handle; the message is copied before the next call.
        let message = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.db.as_ptr())) };
        SqliteError::new(rc, message.to_string_lossy().into_owned()).into()
    }

    /// Runs `sql`, several statements without arguments.
    fn exec(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        let text = CString::new(sql).map_err(|_| sqlx::Error::Protocol("a script holds a NUL byte".into()))?;
        let mut message: *mut c_char = std::ptr::null_mut();
        // SAFETY: a valid handle and NUL-terminated text; SQLite allocates
        // `message` on error, freed here.
        let rc =
            unsafe { ffi::sqlite3_exec(self.db.as_ptr(), text.as_ptr(), None, std::ptr::null_mut(), &mut message) };
        if rc == ffi::SQLITE_OK {
            return Ok(());
        }
        let error = match NonNull::new(message) {
            // SAFETY: SQLite's NUL-terminated message, freed after the copy.
            Some(m) => unsafe {
                let text = CStr::from_ptr(m.as_ptr()).to_string_lossy().into_owned();
                ffi::sqlite3_free(m.as_ptr().cast());
                SqliteError::new(rc, text).into()
            },
            None => self.error(rc),
        };
        Err(error)
    }

    /// The prepared statement for `sql`, prepared once per connection.
    fn statement(&mut self, sql: &Arc<str>) -> Result<Statement, sqlx::Error> {
        let address = Arc::as_ptr(sql).cast::<u8>() as usize;
        if let Some((text, s)) = self.by_address.get(&address)
            && Arc::ptr_eq(text, sql)
        {
            return Ok(s.clone());
        }
        let statement = self.prepared(sql)?;
        if self.by_address.len() >= MAX_BY_ADDRESS {
            self.by_address.clear();
        }
        self.by_address.insert(address, (sql.clone(), statement.clone()));
        Ok(statement)
    }

    /// The prepared statement for the text of `sql`.
    fn prepared(&mut self, sql: &Arc<str>) -> Result<Statement, sqlx::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let too_long = || sqlx::Error::Protocol("a statement longer than SQLite takes".into());
        let len = c_int::try_from(sql.len()).map_err(|_| too_long())?;
        let (mut stmt, mut tail) = (std::ptr::null_mut(), std::ptr::null());
        // SAFETY: `sql` is valid for `len` bytes (no NUL needed with a
        // length); `stmt` and `tail` are written by SQLite.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                self.db.as_ptr(),
                sql.as_ptr().cast(),
                len,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut stmt,
                &mut tail,
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(self.error(rc));
        }
        let Some(ptr) = NonNull::new(stmt) else {
            return Err(sqlx::Error::Protocol(format!("no statement in {sql:?}")));
        };
        // SAFETY: `tail` points into `sql`, at its end when all was used.
        let used = unsafe { tail.cast::<u8>().offset_from(sql.as_ptr()) };
        if !sql.get(usize::try_from(used).unwrap_or(0)..).unwrap_or_default().trim().is_empty() {
            // SAFETY: prepared above, not cached.
            unsafe { ffi::sqlite3_finalize(ptr.as_ptr()) };
            return Err(sqlx::Error::Protocol(format!("one statement expected in {sql:?}")));
        }
        let statement = Statement { ptr, columns: columns(ptr) };
        // Owned by the cache from here, finalized on drop.
        self.statements.insert(sql.clone(), statement.clone());
        Ok(statement)
    }

    /// Runs one statement with `args`; its rows into `rows` if given.
    fn run(&mut self, sql: &Arc<str>, args: &[Arg], mut rows: Option<&mut Vec<Row>>) -> Result<(), sqlx::Error> {
        let statement = self.statement(sql)?;
        let stmt = statement.ptr.as_ptr();
        let result = bind(stmt, args).and_then(|()| {
            loop {
                // SAFETY: a prepared statement of this connection, its
                // arguments bound and alive (`args` outlives the reset below).
                match unsafe { ffi::sqlite3_step(stmt) } {
                    ffi::SQLITE_ROW => {
                        if let Some(rows) = rows.as_deref_mut() {
                            let values = values(stmt, statement.columns.len());
                            rows.push(Row { columns: statement.columns.clone(), values });
                        }
                    }
                    ffi::SQLITE_DONE => break Ok(()),
                    rc => break Err(rc),
                }
            }
        });
        // The message read before the reset, which may set another.
        let result = result.map_err(|rc| self.error(rc));
        // SAFETY: as above. Clearing the bindings drops SQLite's pointers
        // into `args` (bound without a copy) before `args` is dropped.
        unsafe {
            ffi::sqlite3_reset(stmt);
            ffi::sqlite3_clear_bindings(stmt);
        }
        result
    }
}

impl Drop for WriterConn {
    fn drop(&mut self) {
        // SAFETY: every statement belongs to this handle and is finalized
        // once; the handle is closed last, with nothing left open on it.
        unsafe {
            for s in self.statements.values() {
                ffi::sqlite3_finalize(s.ptr.as_ptr());
            }
            ffi::sqlite3_close(self.db.as_ptr());
        }
    }
}

fn columns(stmt: NonNull<ffi::sqlite3_stmt>) -> Arc<[Box<str>]> {
    // SAFETY: a prepared statement; names are copied at once.
    unsafe {
        let n = ffi::sqlite3_column_count(stmt.as_ptr());
        (0..n)
            .map(|i| {
                let name = ffi::sqlite3_column_name(stmt.as_ptr(), i);
                if name.is_null() { "".into() } else { CStr::from_ptr(name).to_string_lossy().into() }
            })
            .collect()
    }
}

/// Binds `args` in order, without copying text or blobs: the caller clears
/// the bindings before `args` goes.
fn bind(stmt: *mut ffi::sqlite3_stmt, args: &[Arg]) -> Result<(), c_int> {
    for (i, arg) in args.iter().enumerate() {
        let at = c_int::try_from(i + 1).map_err(|_| ffi::SQLITE_RANGE)?;
        // SAFETY: a prepared statement; pointers stay valid until the
        // bindings are cleared (SQLITE_STATIC).
        let rc = unsafe {
            match arg {
                Arg::Int(Some(v)) => ffi::sqlite3_bind_int64(stmt, at, *v),
                Arg::Bool(b) => ffi::sqlite3_bind_int64(stmt, at, i64::from(*b)),
                Arg::Int(None) | Arg::Text(None) => ffi::sqlite3_bind_null(stmt, at),
                Arg::Text(Some(s)) => ffi::sqlite3_bind_text64(
                    stmt,
                    at,
                    s.as_ptr().cast(),
                    s.len() as u64,
                    ffi::SQLITE_STATIC(),
                    ffi::SQLITE_UTF8 as u8,
                ),
                Arg::Blob(b) => {
                    ffi::sqlite3_bind_blob64(stmt, at, b.as_ptr().cast(), b.len() as u64, ffi::SQLITE_STATIC())
                }
            }
        };
        if rc != ffi::SQLITE_OK {
            return Err(rc);
        }
    }
    Ok(())
}

/// The current row's values, copied out.
fn values(stmt: *mut ffi::sqlite3_stmt, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let i = i as c_int; // below sqlite3_column_count, a c_int
            // SAFETY: a statement on a row, `i` below its column count; a
            // text or blob pointer is read before `column_bytes` and copied.
            unsafe {
                match ffi::sqlite3_column_type(stmt, i) {
                    ffi::SQLITE_INTEGER => Value::Int(ffi::sqlite3_column_int64(stmt, i)),
                    ffi::SQLITE_FLOAT => Value::Real,
                    ffi::SQLITE_TEXT => {
                        let bytes = copied(ffi::sqlite3_column_text(stmt, i), ffi::sqlite3_column_bytes(stmt, i));
                        String::from_utf8(bytes).map_or_else(|e| Value::Blob(e.into_bytes()), Value::Text)
                    }
                    ffi::SQLITE_BLOB => Value::Blob(copied(
                        ffi::sqlite3_column_blob(stmt, i).cast(),
                        ffi::sqlite3_column_bytes(stmt, i),
                    )),
                    _ => Value::Null,
                }
            }
        })
        .collect()
}

/// # Safety
/// `ptr` is null or valid for `len` bytes.
unsafe fn copied(ptr: *const u8, len: c_int) -> Vec<u8> {
    match (ptr.is_null(), usize::try_from(len)) {
        (false, Ok(len)) => unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec(),
        _ => Vec::new(),
    }
}

impl Conn for WriterConn {
    type Row = Row;

    async fn fetch(&mut self, sql: &Arc<str>, args: Vec<Arg>) -> Result<Vec<Row>, sqlx::Error> {
        let mut rows = Vec::new();
        self.run(sql, &args, Some(&mut rows))?;
        Ok(rows)
    }

    async fn execute(&mut self, sql: &Arc<str>, args: Vec<Arg>) -> Result<u64, sqlx::Error> {
        self.run(sql, &args, None)?;
        // SAFETY: a valid handle.
        Ok(u64::try_from(unsafe { ffi::sqlite3_changes64(self.db.as_ptr()) }).unwrap_or(0))
    }

    async fn script(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        self.exec(sql)
    }

    fn discard(self) {}
}

#[cfg(test)]
mod tests;
