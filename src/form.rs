//! `application/x-www-form-urlencoded` as providers and browsers really send
//! it: fields kept in order, `+` is a space, a `%` not followed by two hex
//! digits is taken literally (as browsers do), and the decoded bytes must be
//! UTF-8 — a field that is not is an error, never silently replaced.

use std::collections::HashMap;

/// The most fields a form may have. Providers send a few dozen (Funpoint's
/// richest notification has under 60); beyond this a body is refused before
/// the fields past it are decoded, so that parsing cost stays bounded.
pub const MAX_FIELDS: usize = 256;

/// Up to this many fields, names are compared one by one (no allocation,
/// faster than hashing for a provider's few dozen); beyond, through a hash.
const SMALL: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormError {
    #[error("form field {index} is not UTF-8 once decoded")]
    NotUtf8 { index: usize },
    #[error("more than {MAX_FIELDS} form fields")]
    TooManyFields,
}

/// Decoded fields in the order they were received, duplicates kept: names
/// and values decoded back to back into one buffer. A String per name and
/// per value was two dozen allocations for a Funpoint notification, about
/// a quarter of all its allocations (issue 14).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormFields {
    text: String,
    /// Each field's name `text[f[0]..f[1]]` and value `text[f[1]..f[2]]`.
    at: Vec<[usize; 3]>,
}

impl FormFields {
    /// One pass over the body: each field's raw bytes decoded straight into
    /// the buffer, then the whole buffer checked as UTF-8 once. A field
    /// checked on its own cost a call and a scan per name and per value
    /// (13.8k instructions for a Funpoint notification; issue 14).
    pub fn parse(body: &[u8]) -> Result<Self, FormError> {
        let ampersands = body.iter().filter(|&&b| b == b'&').count();
        let mut text = Vec::with_capacity(body.len());
        let mut at: Vec<[usize; 3]> = Vec::with_capacity(ampersands.saturating_add(1).min(MAX_FIELDS));
        for segment in body.split(|&b| b == b'&').filter(|s| !s.is_empty()) {
            if at.len() == MAX_FIELDS {
                return Err(FormError::TooManyFields);
            }
            let (k, v) = match segment.iter().position(|&b| b == b'=') {
                Some(eq) => (&segment[..eq], &segment[eq + 1..]),
                None => (segment, &[][..]),
            };
            let start = text.len();
            decode_into(k, &mut text);
            let value = text.len();
            decode_into(v, &mut text);
            at.push([start, value, text.len()]);
        }
        match String::from_utf8(text) {
            // Valid as a whole and cut only between characters: then every
            // name and value is valid on its own, as each must be.
            Ok(text) if at.iter().all(|f| f.iter().all(|&i| text.is_char_boundary(i))) => Ok(Self { text, at }),
            Ok(text) => Err(first_not_utf8(text.as_bytes(), &at)),
            Err(e) => Err(first_not_utf8(e.as_bytes(), &at)),
        }
    }

    /// The value of `name`; when a field is repeated the last one wins, as
    /// PHP's `$_POST` (what tenants and the PHP original read) does.
    pub fn get(&self, name: &str) -> Option<&str> {
        let found = self.at.iter().rev().find(|f| self.name_bytes(f) == name.as_bytes())?;
        Some(self.field(found).1)
    }

    /// A field's name as bytes: compared without slicing the text as `str`
    /// (which checks both ends for a character boundary).
    fn name_bytes(&self, &[name, value, _]: &[usize; 3]) -> &[u8] {
        &self.text.as_bytes()[name..value]
    }

    fn field(&self, &[name, value, end]: &[usize; 3]) -> (&str, &str) {
        (&self.text[name..value], &self.text[value..end])
    }

    /// Every field, once per name (the last value), in first-seen order:
    /// what a PHP tenant would see, and what CheckMacValue is computed over.
    pub fn unique(&self) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = Vec::with_capacity(self.at.len());
        if self.at.len() <= SMALL {
            for (k, v) in self.iter() {
                match out.iter_mut().find(|(seen, _)| *seen == k) {
                    Some(slot) => slot.1 = v,
                    None => out.push((k, v)),
                }
            }
            return out;
        }
        let mut slot: HashMap<&str, usize> = HashMap::with_capacity(self.at.len());
        for (k, v) in self.iter() {
            match slot.get(k) {
                Some(&i) => out[i].1 = v,
                None => {
                    slot.insert(k, out.len());
                    out.push((k, v));
                }
            }
        }
        out
    }

    /// The first field whose name is spelt twice: the same name again, or a
    /// name equal to an earlier one but for ASCII case. Signed bodies are
    /// refused for it (a MAC over case-folded text cannot tell them apart).
    pub fn respelled(&self) -> Option<&str> {
        if self.at.len() <= SMALL {
            return self.respelled_small();
        }
        self.respelled_hashed()
    }

    fn respelled_small(&self) -> Option<&str> {
        let names = || self.at.iter().map(|f| self.name_bytes(f));
        let i = names().enumerate().position(|(i, k)| names().take(i).any(|seen| seen.eq_ignore_ascii_case(k)))?;
        Some(self.field(&self.at[i]).0)
    }

    fn respelled_hashed(&self) -> Option<&str> {
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::with_capacity(self.at.len());
        self.iter().map(|(k, _)| k).find(|k| !seen.insert(k.to_ascii_lowercase()))
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&str, &str)> {
        self.at.iter().map(|f| self.field(f))
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

/// The first field whose name or value is not UTF-8 on its own: a
/// character split between a name and its value (or two fields) is valid
/// only once they sit side by side, and is refused.
fn first_not_utf8(text: &[u8], at: &[[usize; 3]]) -> FormError {
    let bad = |&[name, value, end]: &[usize; 3]| {
        std::str::from_utf8(&text[name..value]).is_err() || std::str::from_utf8(&text[value..end]).is_err()
    };
    FormError::NotUtf8 { index: at.iter().position(bad).unwrap_or_default() }
}

/// Appends `raw` decoded to `text`: `+` a space, `%` and two hex digits
/// the byte they spell, any other `%` itself; the runs between copied
/// whole (most provider fields have no `+` or `%` at all).
fn decode_into(raw: &[u8], text: &mut Vec<u8>) {
    let hex = |b: Option<&u8>| b.and_then(|&b| char::from(b).to_digit(16));
    let mut rest = raw;
    while let Some(i) = rest.iter().position(|&b| b == b'+' || b == b'%') {
        let (plain, tail) = rest.split_at(i);
        text.extend_from_slice(plain);
        rest = match tail {
            [b'+', after @ ..] => {
                text.push(b' ');
                after
            }
            [_, after @ ..] => match (hex(after.first()), hex(after.get(1))) {
                (Some(h), Some(l)) => {
                    text.push((h * 16 + l) as u8);
                    &after[2..]
                }
                _ => {
                    text.push(b'%');
                    after
                }
            },
            [] => &[],
        };
    }
    text.extend_from_slice(rest);
}

/// Encodes fields for an outbound form POST, in the given order.
pub fn encode<I, K, V>(fields: I) -> String
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    // Room for a short form at once (the five checkout fields are ~150
    // bytes encoded): growing from empty reallocated it four times.
    let mut ser = form_urlencoded::Serializer::new(String::with_capacity(256));
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
        assert_eq!(FormFields::parse(b"ok=1&\xff=1"), Err(FormError::NotUtf8 { index: 1 }));
        assert_eq!(FormFields::parse(b"ok=1&a=1&b=%C3"), Err(FormError::NotUtf8 { index: 2 }));
    }

    /// An attack on the one buffer: a character split between a name and
    /// its value (or two fields) is valid UTF-8 only once they sit side by
    /// side. Each part is checked on its own, so the form is refused rather
    /// than sliced inside a character.
    #[test]
    fn a_character_split_across_parts_is_refused() {
        assert_eq!(FormFields::parse(b"%E4%BA=%A4"), Err(FormError::NotUtf8 { index: 0 }));
        assert_eq!(FormFields::parse(b"ok=1&a=%E4%BA&%A4=b"), Err(FormError::NotUtf8 { index: 1 }));
        assert_eq!(FormFields::parse(b"a=%E4%BA%A4").unwrap().get("a"), Some("交"));
    }

    #[test]
    fn last_duplicate_wins_like_php() {
        let f = FormFields::parse(b"a=1&b=2&a=3").unwrap();
        assert_eq!(f.get("a"), Some("3"));
        assert_eq!(f.unique(), vec![("a", "3"), ("b", "2")]);
    }

    #[test]
    fn too_many_fields_are_refused() {
        let ok = vec!["a=1"; MAX_FIELDS].join("&");
        assert_eq!(FormFields::parse(ok.as_bytes()).map(|f| f.iter().count()), Ok(MAX_FIELDS));
        let over = format!("{ok}&b");
        assert_eq!(FormFields::parse(over.as_bytes()), Err(FormError::TooManyFields));
        // Empty segments are not fields.
        let sparse = format!("{ok}&&&");
        assert!(FormFields::parse(sparse.as_bytes()).is_ok());
    }

    #[test]
    fn respelled_names_are_found() {
        let f = |b: &str| FormFields::parse(b.as_bytes()).unwrap();
        assert_eq!(f("a=1&b=2").respelled(), None);
        assert_eq!(f("a=1&b=2&a=3").respelled(), Some("a"));
        assert_eq!(f("SimulatePaid=0&simulatepaid=1").respelled(), Some("simulatepaid"));
    }

    #[test]
    fn unique_is_linear_and_keeps_first_seen_order() {
        let names: Vec<String> = (0..MAX_FIELDS).map(|i| format!("k{i}=v")).collect();
        let f = FormFields::parse(names.join("&").as_bytes()).unwrap();
        assert_eq!(f.unique().len(), MAX_FIELDS);
        assert_eq!(f.unique()[0], ("k0", "v"));
    }

    /// What `decode` was before it was made to allocate once: `+` made a
    /// space, then percent-decoded.
    fn decode_as_before(raw: &[u8]) -> Option<String> {
        let plus_as_space: Vec<u8> = raw.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
        String::from_utf8(percent_encoding::percent_decode(&plus_as_space).collect()).ok()
    }

    fn decode(raw: &[u8]) -> Option<String> {
        let mut text = b"kept".to_vec();
        decode_into(raw, &mut text);
        String::from_utf8(text.split_off(4)).ok()
    }

    /// What `parse` was before the fields shared one buffer.
    fn parse_as_before(body: &[u8]) -> Result<Vec<(String, String)>, FormError> {
        if body.split(|&b| b == b'&').filter(|s| !s.is_empty()).nth(MAX_FIELDS).is_some() {
            return Err(FormError::TooManyFields);
        }
        let mut pairs = Vec::new();
        for (index, segment) in body.split(|&b| b == b'&').filter(|s| !s.is_empty()).enumerate() {
            let (k, v) = match segment.iter().position(|&b| b == b'=') {
                Some(eq) => (&segment[..eq], &segment[eq + 1..]),
                None => (segment, &[][..]),
            };
            let k = decode_as_before(k).ok_or(FormError::NotUtf8 { index })?;
            let v = decode_as_before(v).ok_or(FormError::NotUtf8 { index })?;
            pairs.push((k, v));
        }
        Ok(pairs)
    }

    proptest::proptest! {
        #[test]
        fn parse_is_what_it_was(raw in proptest::collection::vec(
            proptest::sample::select(b"%+&&==2bBfFg0a\xe4\xb8\xad\xff ".to_vec()), 0..40)) {
            let now = FormFields::parse(&raw).map(|f| f.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect());
            proptest::prop_assert_eq!(now, parse_as_before(&raw));
        }

        #[test]
        fn decode_is_what_it_was(raw in proptest::collection::vec(
            proptest::sample::select(b"%+2bBfFg0a=\xe4\xb8\xad\xff ".to_vec()), 0..24)) {
            proptest::prop_assert_eq!(decode(&raw), decode_as_before(&raw));
        }

        #[test]
        fn small_forms_find_the_same_names_as_large_ones(names in proptest::collection::vec(
            proptest::sample::select(vec!["a", "A", "b", "B", "MerchantID", "merchantid", "c"]), 0..12)) {
            let body: Vec<String> = names.iter().enumerate().map(|(i, n)| format!("{n}={i}")).collect();
            let f = FormFields::parse(body.join("&").as_bytes()).unwrap();
            proptest::prop_assert_eq!(f.respelled_small(), f.respelled_hashed());
            let mut by_hash: Vec<(&str, &str)> = Vec::new();
            for (k, v) in f.iter() {
                match by_hash.iter().position(|(seen, _)| *seen == k) {
                    Some(i) => by_hash[i].1 = v,
                    None => by_hash.push((k, v)),
                }
            }
            proptest::prop_assert_eq!(f.unique(), by_hash);
        }
    }

    #[test]
    fn encode_round_trips() {
        let fields = [("Item Name", "手機殼 & <x>"), ("a", "100%"), ("e", "")];
        let enc = encode(fields);
        let back = FormFields::parse(enc.as_bytes()).unwrap();
        assert_eq!(back.iter().collect::<Vec<_>>(), fields.to_vec());
    }
}
