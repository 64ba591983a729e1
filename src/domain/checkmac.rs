//! Funpoint's (ECPay "AIO") CheckMacValue: a plain SHA-256 or MD5 over the
//! sorted, .NET-URL-encoded, lower-cased fields wrapped in HashKey/HashIV.
//! See `../shared/vectors/README.md` for the algorithm this follows step by step.

use md5::Md5;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Secret;
use super::escape::DOTNET_LOWER;

/// The field that carries the MAC; never part of its own input.
pub const FIELD: &str = "CheckMacValue";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    /// `EncryptType=1`, what Funpoint requires.
    Sha256,
    /// Legacy `EncryptType=0`.
    Md5,
}

/// A tenant's HashKey/HashIV pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashKeys {
    pub key: Secret,
    pub iv: Secret,
}

/// A computed CheckMacValue: upper-case hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckMac(String);

impl CheckMac {
    /// Computes the MAC of `fields` (every field present, in any order;
    /// a `CheckMacValue` among them is skipped).
    pub fn compute<'a, I>(fields: I, keys: &HashKeys, alg: HashAlgorithm) -> Self
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut pairs: Vec<(&str, &str)> = fields.into_iter().filter(|(k, _)| *k != FIELD).collect();
        // PHP strcasecmp: ASCII-lower-cased keys compared byte by byte. The
        // sort is stable, so keys equal but for case keep their order.
        pairs.sort_by(|a, b| {
            let la = a.0.bytes().map(|c| c.to_ascii_lowercase());
            let lb = b.0.bytes().map(|c| c.to_ascii_lowercase());
            la.cmp(lb)
        });

        let mut raw = String::with_capacity(64 + pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum::<usize>());
        raw.push_str("HashKey=");
        raw.push_str(keys.key.expose());
        for (k, v) in &pairs {
            raw.push('&');
            raw.push_str(k);
            raw.push('=');
            raw.push_str(v);
        }
        raw.push_str("&HashIV=");
        raw.push_str(keys.iv.expose());
        // One call over the whole text (see `domain::escape`).
        let mut encoded = Vec::with_capacity(3 * raw.len());
        DOTNET_LOWER.encode_into(raw.as_bytes(), &mut encoded);
        let hex = match alg {
            HashAlgorithm::Sha256 => super::hex::upper(&Sha256::digest(&encoded)),
            HashAlgorithm::Md5 => super::hex::upper(&Md5::digest(&encoded)),
        };
        Self(hex)
    }

    /// Checks a received CheckMacValue against `fields` in constant time,
    /// with the tenant's one algorithm (the sender does not get to pick it
    /// by the value's length).
    pub fn verify<'a, I>(fields: I, keys: &HashKeys, alg: HashAlgorithm, received: &str) -> bool
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let expected_len = match alg {
            HashAlgorithm::Sha256 => 64,
            HashAlgorithm::Md5 => 32,
        };
        if received.len() != expected_len {
            return false;
        }
        let expected = Self::compute(fields, keys, alg);
        let received = received.to_ascii_uppercase();
        expected.0.as_bytes().ct_eq(received.as_bytes()).into()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_length_or_garbage_never_verifies() {
        let keys = HashKeys { key: Secret::new("k"), iv: Secret::new("v") };
        let sha = HashAlgorithm::Sha256;
        assert!(!CheckMac::verify([("a", "1")], &keys, sha, ""));
        assert!(!CheckMac::verify([("a", "1")], &keys, sha, "ZZ"));
        let good = CheckMac::compute([("a", "1")], &keys, sha);
        assert!(CheckMac::verify([("a", "1")], &keys, sha, &good.as_str().to_ascii_lowercase()));
        let md5 = CheckMac::compute([("a", "1")], &keys, HashAlgorithm::Md5);
        assert_eq!(md5.as_str().len(), 32);
        assert!(CheckMac::verify([("a", "1")], &keys, HashAlgorithm::Md5, md5.as_str()));
        // The sender does not choose the algorithm by the length.
        assert!(!CheckMac::verify([("a", "1")], &keys, sha, md5.as_str()));
        assert!(!CheckMac::verify([("a", "1")], &keys, HashAlgorithm::Md5, good.as_str()));
    }
}
