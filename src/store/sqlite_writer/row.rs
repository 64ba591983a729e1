//! What the writer's connection reads back, and SQLite's errors.

use std::ffi::c_int;
use std::sync::Arc;

use libsqlite3_sys as ffi;
use sqlx::error::{DatabaseError, ErrorKind};

use crate::store::rows::Cols;

#[derive(Debug)]
pub(super) enum Value {
    Null,
    Int(i64),
    Real,
    Text(String),
    Blob(Vec<u8>),
}

/// One row the writer read, by column name as sqlx's rows are.
pub(crate) struct Row {
    pub(super) columns: Arc<[Box<str>]>,
    pub(super) values: Vec<Value>,
}

impl Row {
    fn get(&self, col: &str) -> Result<&Value, sqlx::Error> {
        self.columns
            .iter()
            .position(|c| &**c == col)
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| sqlx::Error::ColumnNotFound(col.to_owned()))
    }

    fn mismatch(col: &str, want: &str, got: &Value) -> sqlx::Error {
        sqlx::Error::Decode(format!("column {col}: expected {want}, found {got:?}").into())
    }
}

impl Cols for Row {
    fn int(&self, col: &str) -> Result<i64, sqlx::Error> {
        self.opt_int(col)?.ok_or_else(|| Self::mismatch(col, "an integer", &Value::Null))
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>, sqlx::Error> {
        match self.get(col)? {
            Value::Int(v) => Ok(Some(*v)),
            Value::Null => Ok(None),
            other => Err(Self::mismatch(col, "an integer", other)),
        }
    }
    fn text(&self, col: &str) -> Result<String, sqlx::Error> {
        self.opt_text(col)?.ok_or_else(|| Self::mismatch(col, "text", &Value::Null))
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
        match self.get(col)? {
            Value::Text(s) => Ok(Some(s.clone())),
            Value::Null => Ok(None),
            other => Err(Self::mismatch(col, "text", other)),
        }
    }
    fn bytes(&self, col: &str) -> Result<Vec<u8>, sqlx::Error> {
        match self.get(col)? {
            Value::Blob(b) => Ok(b.clone()),
            Value::Text(s) => Ok(s.as_bytes().to_vec()),
            other => Err(Self::mismatch(col, "a blob", other)),
        }
    }
    fn flag(&self, col: &str) -> Result<bool, sqlx::Error> {
        Ok(self.int(col)? != 0)
    }
}

/// An error SQLite returned, with its result code.
#[derive(Debug, thiserror::Error)]
#[error("sqlite error {code}: {message}")]
pub(super) struct SqliteError {
    code: c_int,
    message: String,
}

impl SqliteError {
    pub(super) fn new(code: c_int, message: String) -> Self {
        Self { code, message }
    }
}

impl DatabaseError for SqliteError {
    fn message(&self) -> &str {
        &self.message
    }
    fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(self.code.to_string().into())
    }
    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }
    fn kind(&self) -> ErrorKind {
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => ErrorKind::UniqueViolation,
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}
