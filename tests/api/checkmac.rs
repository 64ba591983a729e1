//! CheckMacValue against every known-answer vector, and properties that
//! show any change to the fields changes the MAC.

use payrelay::domain::{CheckMac, HashAlgorithm, HashKeys, Secret};
use proptest::prelude::*;

#[derive(serde::Deserialize)]
struct Vector {
    source: String,
    hash_key: String,
    hash_iv: String,
    encrypt_type: u8,
    params: serde_json::Map<String, serde_json::Value>,
    expected: String,
}

#[test]
fn every_known_answer_vector_passes() {
    let text = include_str!("../fixtures/checkmac.json");
    let vectors: Vec<Vector> = serde_json::from_str(text).unwrap();
    assert!(vectors.len() >= 20, "only {} vectors", vectors.len());
    for v in &vectors {
        let keys = HashKeys { key: Secret::new(&v.hash_key), iv: Secret::new(&v.hash_iv) };
        let alg = if v.encrypt_type == 1 { HashAlgorithm::Sha256 } else { HashAlgorithm::Md5 };
        let fields: Vec<(String, String)> = v
            .params
            .iter()
            .map(|(k, val)| (k.clone(), val.as_str().map(str::to_owned).unwrap_or_else(|| val.to_string())))
            .collect();
        let pairs = fields.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        assert_eq!(CheckMac::compute(pairs.clone(), &keys, alg).as_str(), v.expected, "vector from {}", v.source);
        assert!(CheckMac::verify(pairs.clone(), &keys, alg, &v.expected), "verify failed: {}", v.source);
        assert!(
            CheckMac::verify(pairs.clone(), &keys, alg, &v.expected.to_ascii_lowercase()),
            "lower-case: {}",
            v.source
        );
        // A CheckMacValue among the fields is not part of its own input.
        let with_mac = pairs.chain(std::iter::once(("CheckMacValue", v.expected.as_str())));
        assert_eq!(CheckMac::compute(with_mac, &keys, alg).as_str(), v.expected);
    }
}

fn keys() -> HashKeys {
    HashKeys { key: Secret::new("265flDjIvesceXWM"), iv: Secret::new("pOOvhGd1V2pJbjfX") }
}

fn mac(fields: &[(String, String)]) -> String {
    CheckMac::compute(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())), &keys(), HashAlgorithm::Sha256)
        .as_str()
        .to_owned()
}

/// Distinct keys (case-insensitively, as the sort sees them) with values.
fn fields() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::btree_map("[A-Za-z][A-Za-z0-9_]{0,12}", "\\PC{0,16}", 1..8).prop_map(|m| {
        let mut seen = std::collections::HashSet::new();
        m.into_iter().filter(|(k, _)| seen.insert(k.to_ascii_lowercase()) && k != "CheckMacValue").collect()
    })
}

/// A character that differs from `c` once ASCII-lower-cased. The algorithm
/// lower-cases the encoded string, so `A` and `a` give the same MAC by
/// design (non-ASCII is percent-encoded first, so `Σ` and `σ` differ).
fn other_char(c: char, pick: char) -> char {
    let fold = |x: char| x.to_ascii_lowercase();
    if fold(pick) != fold(c) {
        pick
    } else if fold(c) != 'x' {
        'x'
    } else {
        'y'
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn changing_one_character_of_any_value_changes_the_mac(f in fields(), which in any::<prop::sample::Index>(), pos in any::<prop::sample::Index>(), pick in "\\PC") {
        let before = mac(&f);
        let mut changed = f.clone();
        let i = which.index(changed.len());
        let value: Vec<char> = changed[i].1.chars().collect();
        let new_value: String = if value.is_empty() {
            pick.clone()
        } else {
            let p = pos.index(value.len());
            let mut v = value.clone();
            v[p] = other_char(v[p], pick.chars().next().unwrap());
            v.into_iter().collect()
        };
        prop_assume!(!new_value.eq_ignore_ascii_case(&changed[i].1));
        changed[i].1 = new_value;
        prop_assert_ne!(before, mac(&changed));
    }

    #[test]
    fn changing_one_character_of_any_key_changes_the_mac(f in fields(), which in any::<prop::sample::Index>(), pick in "[A-Za-z0-9_]") {
        let before = mac(&f);
        let mut changed = f.clone();
        let i = which.index(changed.len());
        let mut key: Vec<char> = changed[i].0.chars().collect();
        let last = key.len() - 1;
        key[last] = other_char(key[last], pick.chars().next().unwrap());
        let key: String = key.into_iter().collect();
        prop_assume!(!changed.iter().any(|(k, _)| k.eq_ignore_ascii_case(&key)));
        changed[i].0 = key;
        prop_assert_ne!(before, mac(&changed));
    }

    #[test]
    fn adding_or_removing_a_field_changes_the_mac(f in fields(), extra_key in "[A-Za-z][A-Za-z0-9]{0,8}", extra_value in "\\PC{0,8}", which in any::<prop::sample::Index>()) {
        let before = mac(&f);
        if !f.iter().any(|(k, _)| k.eq_ignore_ascii_case(&extra_key)) && extra_key != "CheckMacValue" {
            let mut added = f.clone();
            added.push((extra_key, extra_value));
            prop_assert_ne!(&before, &mac(&added));
        }
        let mut removed = f.clone();
        removed.remove(which.index(removed.len()));
        prop_assert_ne!(before, mac(&removed));
    }

    #[test]
    fn field_order_does_not_matter(f in fields()) {
        let mut reversed = f.clone();
        reversed.reverse();
        prop_assert_eq!(mac(&f), mac(&reversed));
    }
}
