//! Values that must never reach a log: hash keys and IVs, the admin token,
//! forward secrets. `Debug` prints a placeholder; the value is reachable only
//! through `expose()`, which makes every use easy to find.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A Standard Webhooks signing secret: `whsec_` followed by base64. Holds
/// the decoded key bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct ForwardSecret(Vec<u8>);

impl ForwardSecret {
    pub fn parse(s: &str) -> Result<Self, String> {
        let Some(b64) = s.strip_prefix("whsec_") else {
            return Err("must start with \"whsec_\"".into());
        };
        match STANDARD.decode(b64) {
            Ok(key) if !key.is_empty() => Ok(Self(key)),
            Ok(_) => Err("has no key after \"whsec_\"".into()),
            // Never echo the value: it is a secret even when malformed.
            Err(_) => Err("the part after \"whsec_\" is not valid base64".into()),
        }
    }

    pub fn key(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for ForwardSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ForwardSecret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        assert_eq!(format!("{:?}", Secret::new("265flDjIvesceXWM")), "Secret(***)");
        let fs = ForwardSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert!(!format!("{fs:?}").contains("MfKQ"));
    }

    #[test]
    fn forward_secret_needs_prefix_and_base64() {
        assert!(ForwardSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        assert!(ForwardSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(ForwardSecret::parse("whsec_not base64!").is_err());
        assert!(ForwardSecret::parse("whsec_").is_err());
    }
}
