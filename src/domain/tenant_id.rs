//! A tenant's id: `[a-z0-9_-]+`, used in callback paths and in the store.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        if s.len() > 64 {
            return Err("must be at most 64 characters".into());
        }
        if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-') {
            return Err(format!("{s:?} may hold only a-z, 0-9, '_' and '-'"));
        }
        Ok(Self(s.to_owned()))
    }

    /// Holds an id that failed [`parse`](Self::parse), only so that a config
    /// being refused can still be checked whole and name it.
    pub(crate) fn stand_in(raw: &str) -> Self {
        Self(raw.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::TenantId;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in ["paygo", "tt-paygo", "test_paygo", "a1"] {
            assert_eq!(TenantId::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in ["", "PayGo", "tt.paygo", "a b", "ü", "../x", &"a".repeat(65)] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?} passed");
        }
    }
}
