//! A callback's id: the time-ordered UUID (v7, 32 hex digits) it is stored
//! under, shown in the console and sent to the tenant as
//! `X-Payrelay-Delivery`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct CallbackId(String);

impl CallbackId {
    /// A fresh id (ids made later sort later).
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7().simple().to_string())
    }

    /// An id as the store keeps it, or as an operator typed it: 32 hex
    /// digits (lowercase, as made) or nothing.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for CallbackId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for CallbackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for CallbackId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for CallbackId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

#[cfg(test)]
mod tests {
    use super::CallbackId;

    #[test]
    fn made_ids_parse_and_sort_by_time() {
        let (a, b) = (CallbackId::new(), CallbackId::new());
        assert_eq!(CallbackId::parse(a.as_str()), Some(a.clone()));
        assert!(a < b);
        for bad in ["", "x", "0193F2C5AB1C7D1E8F90A1B2C3D4E5F6", "../../etc/passwd", &"a".repeat(33)] {
            assert_eq!(CallbackId::parse(bad), None, "{bad:?}");
        }
    }
}
