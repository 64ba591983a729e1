//! The writer's connection against a real file: what goes in comes out the
//! same, SQLite's errors arrive as errors, and one string is one statement.

use std::sync::Arc;

use super::WriterConn;
use crate::store::backend::{Arg, Conn};
use crate::store::rows::Cols;

fn open() -> (tempfile::TempDir, WriterConn) {
    let dir = tempfile::tempdir().unwrap();
    let conn = WriterConn::open(&dir.path().join("store.db")).unwrap();
    (dir, conn)
}

fn sql(s: &str) -> Arc<str> {
    Arc::from(s)
}

#[tokio::test]
async fn values_round_trip_and_nulls_stay_null() {
    let (_dir, mut c) = open();
    c.script("CREATE TABLE t (i INTEGER, s TEXT, b BLOB, f INTEGER)").await.unwrap();
    let insert = sql("INSERT INTO t (i, s, b, f) VALUES (?1, ?2, ?3, ?4)");
    let args = |i: Option<i64>, s: Option<&str>, b: &[u8], f: bool| {
        vec![Arg::from(i), Arg::from(s), Arg::Blob(b.to_vec()), Arg::from(f)]
    };
    assert_eq!(c.execute(&insert, args(Some(-7), Some("台北 \0 end"), b"\0\xff", true)).await.unwrap(), 1);
    assert_eq!(c.execute(&insert, args(None, None, b"", false)).await.unwrap(), 1);
    let rows = c.fetch(&sql("SELECT i, s, b, f FROM t ORDER BY rowid"), Vec::new()).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].int("i").unwrap(), -7);
    assert_eq!(rows[0].text("s").unwrap(), "台北 \0 end");
    assert_eq!(rows[0].bytes("b").unwrap(), b"\0\xff");
    assert!(rows[0].flag("f").unwrap());
    assert_eq!(rows[1].opt_int("i").unwrap(), None);
    assert_eq!(rows[1].opt_text("s").unwrap(), None);
    assert_eq!(rows[1].bytes("b").unwrap(), b"");
    assert!(!rows[1].flag("f").unwrap());
    assert!(rows[1].int("i").is_err(), "NULL is not an integer");
    assert!(rows[0].int("nope").is_err(), "no such column");
}

#[tokio::test]
async fn errors_are_errors_and_the_statement_is_usable_after_one() {
    let (_dir, mut c) = open();
    c.script("CREATE TABLE k (id TEXT PRIMARY KEY)").await.unwrap();
    let insert = sql("INSERT INTO k (id) VALUES (?1)");
    c.execute(&insert, vec![Arg::from("a")]).await.unwrap();
    let e = c.execute(&insert, vec![Arg::from("a")]).await.unwrap_err();
    let db = e.as_database_error().expect("a database error");
    assert!(db.is_unique_violation(), "{db}");
    assert!(db.message().contains("UNIQUE constraint failed: k.id"), "{db}");
    assert_eq!(c.execute(&insert, vec![Arg::from("b")]).await.unwrap(), 1);
    assert!(c.execute(&sql("SELEC nothing"), Vec::new()).await.is_err());
    let two = sql("INSERT INTO k (id) VALUES ('c'); DELETE FROM k");
    assert!(c.execute(&two, Vec::new()).await.is_err(), "a second statement would be dropped silently");
    let n = c.fetch(&sql("SELECT COUNT(*) AS n FROM k"), Vec::new()).await.unwrap();
    assert_eq!(n[0].int("n").unwrap(), 2);
}

#[tokio::test]
async fn a_rolled_back_transaction_leaves_nothing_and_a_commit_is_seen_by_others() {
    let (dir, mut c) = open();
    c.script("CREATE TABLE t (v INTEGER)").await.unwrap();
    let insert = sql("INSERT INTO t (v) VALUES (?1)");
    c.execute(&sql("BEGIN IMMEDIATE"), Vec::new()).await.unwrap();
    c.execute(&insert, vec![Arg::from(1_i64)]).await.unwrap();
    c.execute(&sql("ROLLBACK"), Vec::new()).await.unwrap();
    c.execute(&sql("BEGIN IMMEDIATE"), Vec::new()).await.unwrap();
    c.execute(&insert, vec![Arg::from(2_i64)]).await.unwrap();
    c.execute(&sql("COMMIT"), Vec::new()).await.unwrap();
    let mut other = WriterConn::open(&dir.path().join("store.db")).unwrap();
    let rows = other.fetch(&sql("SELECT v FROM t"), Vec::new()).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.int("v").unwrap()).collect::<Vec<_>>(), [2]);
    let mode = other.fetch(&sql("PRAGMA journal_mode"), Vec::new()).await.unwrap();
    assert_eq!(mode[0].text("journal_mode").unwrap(), "wal");
    // 2 = FULL: each commit is fsynced before it returns.
    let sync = other.fetch(&sql("PRAGMA synchronous"), Vec::new()).await.unwrap();
    assert_eq!(sync[0].int("synchronous").unwrap(), 2);
}

/// Statements are found by the address of their text; a text spelled anew
/// for each call (a replay's) gets the right statement and does not grow
/// the cache without bound, and one text prepared once however it comes.
#[tokio::test]
async fn statements_by_address_stay_right_and_bounded() {
    let (_dir, mut c) = open();
    c.script("CREATE TABLE n (v INTEGER)").await.unwrap();
    let insert = sql("INSERT INTO n (v) VALUES (?1)");
    for i in 0..3 * super::MAX_BY_ADDRESS as i64 {
        // A fresh text each time: every other one a different statement.
        let text = if i % 2 == 0 { sql("INSERT INTO n (v) VALUES (?1)") } else { sql(&format!("SELECT {i} AS v")) };
        let rows = c.fetch(&text, if i % 2 == 0 { vec![Arg::from(i)] } else { Vec::new() }).await.unwrap();
        if i % 2 == 1 {
            assert_eq!(rows[0].int("v").unwrap(), i);
        }
        c.execute(&insert, vec![Arg::from(-1)]).await.unwrap();
        assert!(c.by_address.len() <= super::MAX_BY_ADDRESS);
    }
    let m = super::MAX_BY_ADDRESS as i64;
    let n = c.fetch(&sql("SELECT COUNT(*) AS n, SUM(v < 0) AS m FROM n"), Vec::new()).await.unwrap();
    // Every turn inserts -1; the even turns also their number.
    assert_eq!((n[0].int("n").unwrap(), n[0].int("m").unwrap()), (3 * m + 3 * m / 2, 3 * m));
    let by_text = c.statements.keys().filter(|k| k.starts_with("INSERT")).count();
    assert_eq!(by_text, 1, "one text, one prepared statement");
}

/// A statement whose plan SQLite would tie to a bound value (`LIMIT ?`, as
/// in the claims) is prepared once: with the planner free to read bound
/// values, clearing the bindings after each run marked such a statement
/// expired and the next run parsed and planned it again (issue 14: a
/// twentieth of the writer's instructions under load).
#[tokio::test]
async fn a_statement_with_a_bound_limit_is_not_prepared_again_on_each_run() {
    let (_dir, mut c) = open();
    c.script("CREATE TABLE q (v INTEGER); CREATE INDEX q_due ON q (v) WHERE v IS NOT NULL").await.unwrap();
    let insert = sql("INSERT INTO q (v) VALUES (?1)");
    let due = sql("SELECT v FROM q WHERE v <= ?1 ORDER BY v LIMIT ?2");
    for i in 0..6_i64 {
        c.execute(&insert, vec![Arg::from(i)]).await.unwrap();
        let rows = c.fetch(&due, vec![Arg::from(i), Arg::from(i % 3)]).await.unwrap();
        let got: Vec<i64> = rows.iter().map(|r| r.int("v").unwrap()).collect();
        assert_eq!(got, (0..(i % 3).min(i + 1)).collect::<Vec<_>>(), "turn {i}");
    }
    let statement = c.statement(&due).unwrap();
    // SAFETY: a statement of this connection, cached and alive.
    let again =
        unsafe { super::ffi::sqlite3_stmt_status(statement.ptr.as_ptr(), super::ffi::SQLITE_STMTSTATUS_REPREPARE, 0) };
    assert_eq!(again, 0, "prepared again on a later run");
    // Plans that read no bound value still use the partial indexes, which
    // the store's statements match by `IS NOT NULL` or by a literal.
    c.script("ALTER TABLE q ADD COLUMN s TEXT; CREATE INDEX q_pending ON q (v) WHERE s = 'pending'").await.unwrap();
    for (query, index) in [
        ("SELECT v FROM q WHERE v <= ?1 ORDER BY v LIMIT ?2", "q_due"),
        ("SELECT v FROM q WHERE s = 'pending' AND v <= ?1 ORDER BY v LIMIT ?2", "q_pending"),
    ] {
        let plan =
            c.fetch(&sql(&format!("EXPLAIN QUERY PLAN {query}")), vec![Arg::from(3), Arg::from(2)]).await.unwrap();
        let detail: Vec<String> = plan.iter().map(|r| r.text("detail").unwrap()).collect();
        assert!(detail.iter().any(|d| d.contains(&format!("INDEX {index}"))), "{query}: {detail:?}");
    }
}

/// A new callback is pending: the indexes that hold settled rows only
/// (migrations 9 and 10: a page less each in every commit of a callback
/// stored alone, issue 14) must still serve every statement that reads by
/// a settled status, or the purge and the metrics' counts would scan the
/// whole table.
#[tokio::test]
async fn the_settled_only_indexes_serve_the_statements_that_read_them() {
    let (_dir, mut c) = open();
    for (_, script) in crate::store::sqlite::DIALECT.migrations {
        c.script(script).await.unwrap();
    }
    let s = crate::store::sql::Sql::new(&crate::store::sqlite::DIALECT);
    let args = |n: usize| (1..=n).map(|i| Arg::from(i as i64)).collect::<Vec<_>>();
    for (statement, n, index) in [
        (&s.purge_delivered, 1, "callbacks_delivered"),
        (&s.purge_dead, 1, "callbacks_settled"),
        (&s.over_caps, 4, "callbacks_settled"),
        (&s.unroutable_left, 0, "callbacks_settled"),
        (&s.dead_of, 2, "callbacks_settled"),
        (&s.by_status, 0, "callbacks_settled"),
        (&s.by_status, 0, "callbacks_due"),
    ] {
        let plan = c.fetch(&sql(&format!("EXPLAIN QUERY PLAN {statement}")), args(n)).await.unwrap();
        let detail: Vec<String> = plan.iter().map(|r| r.text("detail").unwrap()).collect();
        assert!(detail.iter().any(|d| d.contains(&format!("INDEX {index}"))), "{statement}: {detail:?}");
        assert!(!detail.iter().any(|d| d == "SCAN callbacks"), "{statement}: {detail:?}");
    }
}

/// The bundled SQLite syncs a commit with `fdatasync`, as the system's
/// SQLite (and bench/scale.sh's commit probe) does: data and the file's
/// size, not its modification time, so that a commit rewriting the WAL in
/// place waits for no journal commit of the file's inode. Built so by
/// `LIBSQLITE3_FLAGS` in `.cargo/config.toml` (without it SQLite's
/// source falls back to `fsync`); this executable then imports
/// `fdatasync` from the C library.
#[test]
fn commits_are_synced_with_fdatasync() {
    let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let imports = dynamic_strings(&exe);
    assert!(imports.split(|b| *b == 0).any(|name| name == b"pwrite64"), "the reading below finds SQLite's imports");
    assert!(
        imports.split(|b| *b == 0).any(|name| name == b"fdatasync"),
        "SQLite was built without HAVE_FDATASYNC: every commit calls fsync"
    );
}

/// The bundled SQLite keeps no process-wide memory statistics and gives
/// each connection a page cache of its own: with them, every allocation
/// SQLite made and every page it fetched or released took a process-wide
/// mutex (~4.8k instructions of the writer's per stored callback under
/// callgrind, issue 14). Built so by `LIBSQLITE3_FLAGS` in
/// `.cargo/config.toml`.
#[test]
fn sqlite_takes_no_process_wide_mutex_per_allocation() {
    // SAFETY: reads SQLite's list of compile options; NUL-terminated names.
    let used = |option: &std::ffi::CStr| unsafe { libsqlite3_sys::sqlite3_compileoption_used(option.as_ptr()) } == 1;
    assert!(used(c"DEFAULT_MEMSTATUS=0"), "SQLite counts every allocation under a mutex");
    assert!(!used(c"ENABLE_MEMORY_MANAGEMENT"), "SQLite shares one page cache, under a mutex, across connections");
}

/// The `.dynstr` section of a 64-bit little-endian ELF file: the names of
/// the symbols it imports (and exports).
fn dynamic_strings(elf: &[u8]) -> &[u8] {
    let u16_at = |at: usize| usize::from(u16::from_le_bytes([elf[at], elf[at + 1]]));
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) as usize;
    let u64_at = |at: usize| usize::try_from(u64::from_le_bytes(elf[at..at + 8].try_into().unwrap())).unwrap();
    assert_eq!(&elf[..5], b"\x7fELF\x02", "a 64-bit ELF executable");
    let (table, size, count, names) = (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
    let section = |i: usize| table + i * size;
    let name_base = u64_at(section(names) + 0x18);
    (0..count)
        .map(section)
        .find(|&s| elf[name_base + u32_at(s)..].starts_with(b".dynstr\0"))
        .map(|s| &elf[u64_at(s + 0x18)..u64_at(s + 0x18) + u64_at(s + 0x20)])
        .expect("a .dynstr section")
}
