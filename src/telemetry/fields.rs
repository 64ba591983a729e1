//! Text lines' fields, written plainly when lines carry no colours. The
//! request span's fields are formatted when it is made and at each
//! `record` (provider, tenant, delivery), whether or not a line is ever
//! written in it; tracing-subscriber's default writer paints each name
//! (italic) and each `=` (dimmed) through `nu-ansi-term` even when colours
//! are off, a few hundred instructions a field (issue 14).
//!
//! The text is the default's with colours off: `name=value` with the
//! value's `Debug`, fields separated by one space, `r#` taken off a name,
//! `log.` fields skipped. The message and errors are handed to the default
//! writer, which also escapes control sequences in them.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{RecordFields, VisitOutput as _};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};

/// The fields' writer for lines without colours.
pub struct PlainFields;

impl<'w> FormatFields<'w> for PlainFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = Plain { writer, empty: true, result: Ok(()) };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct Plain<'w> {
    writer: Writer<'w>,
    empty: bool,
    result: fmt::Result,
}

impl Plain<'_> {
    /// Hands a field to the default writer (the message, errors).
    fn by_default(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        if self.result.is_err() {
            return;
        }
        let empty = std::mem::replace(&mut self.empty, false);
        let mut default = DefaultVisitor::new(self.writer.by_ref(), empty);
        record(&mut default);
        self.result = default.finish();
    }

    /// ` name=` (no space before the first field); `false` for a field
    /// not written.
    fn name(&mut self, field: &Field) -> bool {
        let name = field.name();
        if self.result.is_err() || name.starts_with("log.") {
            return false;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        let pad = if std::mem::replace(&mut self.empty, false) { "" } else { " " };
        self.result = self
            .writer
            .write_str(pad)
            .and_then(|()| self.writer.write_str(name))
            .and_then(|()| self.writer.write_char('='));
        self.result.is_ok()
    }
}

impl Visit for Plain<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.by_default(|d| d.record_str(field, value));
        } else if self.name(field) {
            self.result = write!(self.writer, "{value:?}");
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.by_default(|d| d.record_error(field, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.by_default(|d| d.record_debug(field, value));
        } else if self.name(field) {
            self.result = write!(self.writer, "{value:?}");
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    /// A log writer for tests: keeps every line written, from any clone.
    #[derive(Clone, Default)]
    pub struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Lines {
        pub fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl std::io::Write for Lines {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Self;
        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Lines;
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("tenant unreachable")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// Lines of a request's life, each field kind and the span's records.
    fn lines() {
        let span = tracing::info_span!(
            "request",
            method = %"POST",
            path = %"/funpoint/notify",
            request_id = %"7f1c",
            provider = tracing::field::Empty,
            tenant = tracing::field::Empty,
            r#type = "x",
        );
        let _in = span.enter();
        span.record("provider", "funpoint");
        tracing::info!("plain message");
        span.record("tenant", "shop \"a\"\n");
        tracing::warn!(
            code = 8_000_101,
            amount = 1.5,
            ok = true,
            n = -3i64,
            tenant = "t1",
            "checkout refused: {}",
            "origin\u{1b}[31m"
        );
        let err = Outer(std::io::Error::other("connection refused"));
        tracing::error!(error = &err as &(dyn std::error::Error + 'static), what = ?("a", 2), "delivery failed");
        tracing::info!(only = "fields");
    }

    fn written(plain: bool) -> String {
        let out = Lines::default();
        let builder = tracing_subscriber::fmt().with_ansi(false).without_time().with_writer(out.clone());
        if plain {
            tracing::subscriber::with_default(builder.fmt_fields(PlainFields).finish(), lines);
        } else {
            tracing::subscriber::with_default(builder.finish(), lines);
        }
        out.text()
    }

    /// Byte for byte the default's lines with colours off.
    #[test]
    fn lines_are_the_defaults_without_colours() {
        let (plain, default) = (written(true), written(false));
        assert_eq!(plain, default);
        assert_eq!(plain.lines().count(), 4, "{plain}");
        assert!(plain.contains(r#"tenant="shop \"a\"\n""#) && plain.contains("\\x1b[31m"), "{plain}");
    }
}
