//! Form decoding: arbitrary bytes decode or are refused, and what decodes
//! encodes back to fields that decode the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payrelay::form::{FormFields, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(fields) = FormFields::parse(data) {
        let again = encode(fields.iter());
        let reparsed = FormFields::parse(again.as_bytes()).expect("an encoded form decodes");
        assert_eq!(fields.unique(), reparsed.unique());
        assert_eq!(fields.respelled(), reparsed.respelled());
        assert!(fields.iter().count() <= payrelay::form::MAX_FIELDS);
    }
    // The one-spelling rule never accepts a body with a name twice.
    if let Some(canonical) = payrelay::providers::funpoint::canonical_form(data) {
        assert!(canonical.respelled().is_none());
    }
});
