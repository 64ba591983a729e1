//! The five checkout fields, validated in the order SPEC §3.1 gives.

use super::GatewayError;
use crate::form::FormFields;

/// The fields a shop page posts, in the order they are checked and relayed.
pub const FIELDS: [&str; 5] = ["foran", "serverid", "lastan", "token", "domain"];

/// A field longer than this (decoded) is refused with 8000211.
pub const MAX_FIELD_BYTES: usize = 512;

/// Five present, non-empty fields of at most 512 bytes each. Passed to the
/// tenant opaquely: the tenant validates `token`.
/// Borrowed from the form (no copies: issue 14).
pub struct CheckoutRequest<'a> {
    values: [&'a str; 5],
}

impl<'a> CheckoutRequest<'a> {
    pub fn from_form(form: &'a FormFields) -> Result<Self, GatewayError> {
        let mut values: [&str; 5] = Default::default();
        for (n, name) in FIELDS.iter().enumerate() {
            match form.get(name) {
                Some(v) if !v.is_empty() => values[n] = v,
                _ => return Err(GatewayError::MissingField(n + 1)),
            }
        }
        if values.iter().any(|v| v.len() > MAX_FIELD_BYTES) {
            return Err(GatewayError::FieldTooLong);
        }
        Ok(Self { values })
    }

    pub fn domain(&self) -> &'a str {
        self.values[4]
    }

    /// The five fields, in order, for the tenant API call.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, &'a str)> {
        FIELDS.iter().copied().zip(self.values)
    }
}

// Deliberately no Debug: `token` must never reach a log.

#[cfg(test)]
mod tests {
    use super::*;

    fn form(body: &str) -> FormFields {
        FormFields::parse(body.as_bytes()).unwrap()
    }

    fn code(body: &str) -> String {
        match CheckoutRequest::from_form(&form(body)) {
            Ok(_) => "ok".into(),
            Err(e) => e.code().to_owned(),
        }
    }

    #[test]
    fn first_missing_or_empty_field_wins() {
        assert_eq!(code(""), "8000201");
        assert_eq!(code("foran=1"), "8000202");
        assert_eq!(code("foran=1&serverid=2&lastan=&token=4&domain=5"), "8000203");
        assert_eq!(code("foran=1&serverid=2&lastan=3&domain=5"), "8000204");
        assert_eq!(code("foran=1&serverid=2&lastan=3&token=4"), "8000205");
        assert_eq!(code("domain=5&token=4&lastan=3&serverid=2&foran=1"), "ok");
    }

    #[test]
    fn missing_beats_too_long() {
        let long = "x".repeat(513);
        assert_eq!(code(&format!("foran={long}&serverid=2")), "8000203");
        assert_eq!(code(&format!("foran={long}&serverid=2&lastan=3&token=4&domain=5")), "8000211");
        let ok = "x".repeat(512);
        assert_eq!(code(&format!("foran={ok}&serverid=2&lastan=3&token=4&domain=5")), "ok");
        // 171 CJK characters = 513 bytes: the limit counts bytes.
        let cjk = "交".repeat(171);
        assert_eq!(code(&format!("foran={cjk}&serverid=2&lastan=3&token=4&domain=5")), "8000211");
    }
}
