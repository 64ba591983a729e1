//! A tenant's `payment_value` as form fields, read in one pass: each entry's
//! value is taken from its JSON text (borrowed), not built into a
//! `serde_json::Value` and an ordered map first (the two parses were a
//! twentieth of a checkout's CPU, issue 14).
//!
//! The result is the one the `Value` map gave: entries in the tenant's
//! order, a repeated name keeping its first place with its last value,
//! strings as given, numbers in their JSON text (`1.50` stays `1.50`),
//! `true`/`false` as words, an exponent as serde_json writes it, `null` empty, arrays and objects as their
//! compact JSON text.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Up to this many entries a repeated name is found by comparing; past it,
/// through an index.
const SMALL: usize = 32;

/// Form fields, names and values in one buffer (a checkout's dozen fields
/// were two dozen strings of their own; issue 14).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fields {
    text: String,
    /// Each field's name and value, as ranges of `text`.
    at: Vec<(Range<usize>, Range<usize>)>,
}

impl Fields {
    fn with_capacity(entries: Option<usize>) -> Self {
        Self { text: String::with_capacity(512), at: Vec::with_capacity(entries.unwrap_or(16)) }
    }

    /// The fields in order, as `(name, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.at.iter().map(|(n, v)| (&self.text[n.clone()], &self.text[v.clone()]))
    }

    /// The value of the first field named `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        let (_, value) = self.at.iter().find(|(n, _)| self.same(n, name.as_bytes()))?;
        Some(&self.text[value.clone()])
    }

    /// The values of the first fields named `names`, in one pass.
    pub fn get_all<const N: usize>(&self, names: [&str; N]) -> [Option<&str>; N] {
        let mut found = [None; N];
        for (n, v) in &self.at {
            if let Some(i) = names.iter().position(|name| self.same(n, name.as_bytes()))
                && found[i].is_none()
            {
                found[i] = Some(&self.text[v.clone()]);
            }
        }
        found
    }

    /// Is `text[at]` `name`? (Bytes: lengths first, no slicing of the text.)
    fn same(&self, at: &Range<usize>, name: &[u8]) -> bool {
        at.len() == name.len() && self.text.as_bytes().get(at.clone()) == Some(name)
    }

    pub fn len(&self) -> usize {
        self.at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

/// `raw` (a JSON object) as form fields; `None` when it is not an object.
pub fn fields(raw: &RawValue) -> Option<Fields> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    de.deserialize_map(Entries).ok()
}

/// For `#[serde(deserialize_with)]`: an object's fields read in the pass
/// that reads the document around it; `None` for any other value.
pub fn object_fields<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Fields>, D::Error> {
    de.deserialize_any(ObjectOrNot)
}

struct ObjectOrNot;

impl<'de> Visitor<'de> for ObjectOrNot {
    type Value = Option<Fields>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    /// (With serde_json's `arbitrary_precision` a number that is not an
    /// integer comes as an object whose first entry has this name; an
    /// object a tenant sends with that first name is refused the same way.)
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        const NUMBER: &str = "$serde_json::private::Number";
        let mut out = Fields::with_capacity(map.size_hint());
        if map.next_key_seed(KeyInto(&mut out.text))?.is_none() {
            return Ok(Some(out));
        }
        if out.text == NUMBER {
            map.next_value::<IgnoredAny>()?;
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(None);
        }
        entries(map, out, true).map(Some)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

struct Entries;

impl<'de> Visitor<'de> for Entries {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let out = Fields::with_capacity(map.size_hint());
        entries(map, out, false)
    }
}

/// Reads `map`'s entries into `out`; with `first_read`, the first key is
/// already in `out.text` (and nothing else is).
fn entries<'de, A: MapAccess<'de>>(mut map: A, mut out: Fields, mut first_read: bool) -> Result<Fields, A::Error> {
    let mut index: Option<HashMap<String, usize>> = None;
    // A bit per name seen, by `name_bit`: a name whose bit is clear is
    // new without comparing it with every name before it.
    let mut seen = 0u64;
    loop {
        let start = if std::mem::take(&mut first_read) { 0 } else { out.text.len() };
        if start == out.text.len() && map.next_key_seed(KeyInto(&mut out.text))?.is_none() {
            break;
        }
        let name = start..out.text.len();
        let repeated = match &index {
            Some(index) => index.get(&out.text[name.clone()]).copied(),
            None => {
                let key = &out.text.as_bytes()[name.clone()];
                let bit = name_bit(key);
                let maybe = seen & bit != 0;
                seen |= bit;
                if maybe { out.at.iter().position(|(n, _)| out.same(n, key)) } else { None }
            }
        };
        if repeated.is_some() {
            out.text.truncate(start);
        }
        let value_start = out.text.len();
        form_value(&mut out.text, map.next_value::<&'de RawValue>()?).map_err(serde::de::Error::custom)?;
        let value = value_start..out.text.len();
        match repeated {
            Some(at) => out.at[at].1 = value,
            None => {
                if let Some(index) = &mut index {
                    index.insert(out.text[name.clone()].to_owned(), out.at.len());
                }
                out.at.push((name, value));
                if index.is_none() && out.at.len() > SMALL {
                    index = Some(out.iter().enumerate().map(|(i, (n, _))| (n.to_owned(), i)).collect());
                }
            }
        }
    }
    Ok(out)
}

/// One of 64 bits for a name, from its length and its first and last bytes.
fn name_bit(name: &[u8]) -> u64 {
    let (first, last) = (name.first().copied().unwrap_or(0), name.last().copied().unwrap_or(0));
    1 << ((name.len() + usize::from(first) * 7 + usize::from(last) * 13) % 64)
}

/// A key, appended to the buffer as it is read (borrowed or unescaped).
struct KeyInto<'a>(&'a mut String);

impl<'de> DeserializeSeed<'de> for KeyInto<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyInto<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.0.push_str(v);
        Ok(())
    }
}

/// One entry's JSON text as a form value, appended to `out`.
fn form_value(out: &mut String, raw: &RawValue) -> Result<(), serde_json::Error> {
    let text = raw.get();
    match text.as_bytes().first() {
        // A valid JSON string without a backslash is its own text between
        // the quotes (raw control characters are not valid JSON).
        Some(b'"') if !text.contains('\\') => out.push_str(&text[1..text.len() - 1]),
        Some(b'"') => out.push_str(&serde_json::from_str::<String>(text)?),
        Some(b'n') => {}
        Some(b'[' | b'{') => out.push_str(&serde_json::from_str::<serde_json::Value>(text)?.to_string()),
        // serde_json writes an exponent its own way (`1E5` as `1e+5`).
        Some(b'-' | b'0'..=b'9') if text.contains(['e', 'E']) => {
            out.push_str(&serde_json::from_str::<serde_json::Number>(text)?.to_string());
        }
        // Any other number, or true/false: its text is the value.
        _ => out.push_str(text),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// How the fields were read before: an ordered `Value` map.
    fn as_before(raw: &str) -> Option<Vec<(String, String)>> {
        let Ok(Value::Object(map)) = serde_json::from_str::<Value>(raw) else { return None };
        Some(
            map.into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s,
                        Value::Null => String::new(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        other => other.to_string(),
                    };
                    (k, v)
                })
                .collect(),
        )
    }

    /// `raw` read as a field of a document, in the document's one pass.
    fn in_one_pass(raw: &str) -> Option<Vec<(String, String)>> {
        #[derive(serde::Deserialize)]
        struct Doc {
            #[serde(deserialize_with = "object_fields")]
            v: Option<Fields>,
        }
        let doc: Doc = serde_json::from_slice(format!(r#"{{"v":{raw},"w":[1.5,{{"x":2.5}}]}}"#).as_bytes()).ok()?;
        Some(doc.v?.iter().map(|(n, v)| (n.to_owned(), v.to_owned())).collect())
    }

    fn read(raw: &str) -> Option<Vec<(String, String)>> {
        let fields = fields(&serde_json::from_str::<Box<RawValue>>(raw).ok()?)?;
        Some(fields.iter().map(|(n, v)| (n.to_owned(), v.to_owned())).collect())
    }

    #[test]
    fn repeated_names_keep_first_place_last_value() {
        let raw = r#"{"A":"1","B":2,"A":"3"}"#;
        assert_eq!(read(raw), Some(vec![("A".into(), "3".into()), ("B".into(), "2".into())]));
        let many: Vec<String> = (0..40).map(|i| format!(r#""k{i}":{i}"#)).collect();
        let raw = format!("{{{},\"k3\":\"x\",\"k39\":null}}", many.join(","));
        assert_eq!(read(&raw), as_before(&raw));
        let got = read(&raw).unwrap();
        assert_eq!((got.len(), &got[3].1, &got[39].1), (40, &"x".to_owned(), &String::new()));
    }

    #[test]
    fn fields_are_found_by_name() {
        let raw = serde_json::from_str::<Box<RawValue>>(
            r#"{"TotalAmount":500,"MerchantTradeNo":"FP1","X":"","TotalAmount":"600"}"#,
        )
        .unwrap();
        let f = fields(&raw).unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(f.get("TotalAmount"), Some("600"));
        assert_eq!((f.get("X"), f.get("Y"), f.get("Total")), (Some(""), None, None));
        assert_eq!(f.get_all(["MerchantTradeNo", "Y", "TotalAmount"]), [Some("FP1"), None, Some("600")]);
    }

    #[test]
    fn values_as_before() {
        let raw = r#"{ "s" : "a\u4ea4\"b" , "n": -1.50e+3, "i":0, "t":true, "f":false, "z":null,
            "a": [1, "x", {"q": 2.0}], "o": {"b": [ ], "a": "\n"}}"#;
        assert_eq!(read(raw), as_before(raw));
        assert_eq!(read(raw).unwrap()[1].1, "-1.50e+3");
        assert_eq!(read(raw).unwrap()[6].1, r#"[1,"x",{"q":2.0}]"#);
        for not_object in ["[1]", "\"x\"", "1", "null"] {
            assert_eq!(read(not_object), None, "{not_object}");
        }
    }

    /// What a hostile tenant API could answer (its answer is capped at 1 MiB):
    /// nesting deeper than serde_json's limit is refused, not a stack
    /// overflow; a hundred thousand entries with repeated names are read in
    /// one pass (the names are indexed past a few), not compared pairwise.
    #[test]
    fn a_hostile_payment_value_is_refused_or_read_in_bounded_work() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(read(&deep), None);
        let entries: Vec<String> = (0..100_000).map(|i| format!("\"k{}\":{i}", i % 50_000)).collect();
        let wide = format!("{{{}}}", entries.join(","));
        assert!(wide.len() < 1 << 21);
        // (Pairwise comparing would be 2.5 billion string comparisons.)
        let got = read(&wide).unwrap();
        assert_eq!((got.len(), got[7].1.as_str()), (50_000, "50007"));
    }

    /// Arbitrary JSON values, to compare with the old reading.
    fn json() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just("null".to_owned()),
            any::<bool>().prop_map(|b| b.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            "-?[0-9]{1,3}\\.[0-9]{1,3}([eE][+-]?[0-9]{1,2})?",
            "[a-zA-Z0-9 \"\\\\/\u{4ea4}é\n\t]{0,8}".prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
            "\\\\u00[0-7][0-9a-f]".prop_map(|s| format!("\"{s}\"")),
        ];
        leaf.prop_recursive(3, 24, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[ {} ]", v.join(" , "))),
                proptest::collection::vec(("[a-c]{1,2}", inner), 0..6).prop_map(|v| {
                    let entries: Vec<String> = v.iter().map(|(k, x)| format!("\"{k}\" : {x}")).collect();
                    format!("{{ {} }}", entries.join(","))
                }),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn fields_are_what_they_were(
            entries in proptest::collection::vec(("[a-d]{1,2}", json()), 0..12),
            other in json(),
        ) {
            let entries: Vec<String> = entries.iter().map(|(k, x)| format!("\"{k}\":{x}")).collect();
            let raw = format!("{{{}}}", entries.join(","));
            proptest::prop_assert_eq!(read(&raw), as_before(&raw));
            proptest::prop_assert_eq!(read(&other), as_before(&other));
            for json in [&raw, &other] {
                proptest::prop_assert_eq!(in_one_pass(json), read(json), "{}", json);
            }
        }
    }
}
