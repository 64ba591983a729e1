//! `application/x-www-form-urlencoded` as providers and browsers really send
//! it: fields kept in order, `+` is a space, a `%` not followed by two hex
//! digits is taken literally (as browsers do), and the decoded bytes must be
//! UTF-8 — a field that is not is an error, never silently replaced.

use percent_encoding::percent_decode;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormError {
    #[error("form field {index} is not UTF-8 once decoded")]
    NotUtf8 { index: usize },
}

/// Decoded fields in the order they were received, duplicates kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormFields {
    pairs: Vec<(String, String)>,
}

impl FormFields {
    pub fn parse(body: &[u8]) -> Result<Self, FormError> {
        let mut pairs = Vec::new();
        for (index, segment) in body.split(|&b| b == b'&').filter(|s| !s.is_empty()).enumerate() {
            let (k, v) = match segment.iter().position(|&b| b == b'=') {
                Some(eq) => (&segment[..eq], &segment[eq + 1..]),
                None => (segment, &[][..]),
            };
            let k = decode(k).ok_or(FormError::NotUtf8 { index })?;
            let v = decode(v).ok_or(FormError::NotUtf8 { index })?;
            pairs.push((k, v));
        }
        Ok(Self { pairs })
    }

    /// The value of `name`; when a field is repeated the last one wins, as
    /// PHP's `$_POST` (what tenants and the PHP original read) does.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every field, once per name (the last value), in first-seen order:
    /// what a PHP tenant would see, and what CheckMacValue is computed over.
    pub fn unique(&self) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = Vec::with_capacity(self.pairs.len());
        for (k, v) in &self.pairs {
            match out.iter_mut().find(|(ok, _)| *ok == k) {
                Some(slot) => slot.1 = v,
                None => out.push((k, v)),
            }
        }
        out
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

fn decode(raw: &[u8]) -> Option<String> {
    let plus_as_space: Vec<u8> = raw.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
    let bytes: Vec<u8> = percent_decode(&plus_as_space).collect();
    String::from_utf8(bytes).ok()
}

/// Encodes fields for an outbound form POST, in the given order.
pub fn encode<I, K, V>(fields: I) -> String
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        ser.append_pair(k.as_ref(), v.as_ref());
    }
    ser.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_decodes() {
        let f = FormFields::parse(b"b=2&a=%E4%BA%A4+x&c=&d").unwrap();
        let got: Vec<_> = f.iter().collect();
        assert_eq!(got, vec![("b", "2"), ("a", "交 x"), ("c", ""), ("d", "")]);
    }

    #[test]
    fn stray_percent_is_literal() {
        let f = FormFields::parse(b"a=100%&b=%zz&c=%4").unwrap();
        assert_eq!(f.get("a"), Some("100%"));
        assert_eq!(f.get("b"), Some("%zz"));
        assert_eq!(f.get("c"), Some("%4"));
    }

    #[test]
    fn non_utf8_is_an_error() {
        assert_eq!(FormFields::parse(b"a=%FF"), Err(FormError::NotUtf8 { index: 0 }));
        assert!(FormFields::parse(b"ok=1&\xff=1").is_err());
    }

    #[test]
    fn last_duplicate_wins_like_php() {
        let f = FormFields::parse(b"a=1&b=2&a=3").unwrap();
        assert_eq!(f.get("a"), Some("3"));
        assert_eq!(f.unique(), vec![("a", "3"), ("b", "2")]);
    }

    #[test]
    fn encode_round_trips() {
        let fields = [("Item Name", "手機殼 & <x>"), ("a", "100%"), ("e", "")];
        let enc = encode(fields);
        let back = FormFields::parse(enc.as_bytes()).unwrap();
        assert_eq!(back.iter().collect::<Vec<_>>(), fields.to_vec());
    }
}
