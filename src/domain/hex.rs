//! The hex text of a digest, written byte by byte: `hex::encode` collects
//! it one `char` at a time (a UTF-8 length and a capacity check per digit),
//! 1.7k instructions for a SHA-256 — three of them in every Funpoint
//! notification: its CheckMacValue and its dedup key, twice (issue 14).

const LOWER: &[u8; 16] = b"0123456789abcdef";
const UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// `bytes` as lower-case hex, as `hex::encode` writes it.
pub fn lower(bytes: &[u8]) -> String {
    encode(bytes, LOWER)
}

/// `bytes` as upper-case hex, as `hex::encode_upper` writes it.
pub fn upper(bytes: &[u8]) -> String {
    encode(bytes, UPPER)
}

fn encode(bytes: &[u8], digits: &[u8; 16]) -> String {
    // Sized first and written in pairs: no capacity check per digit.
    let mut out = vec![0u8; bytes.len() * 2];
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = digits[usize::from(b >> 4)];
        pair[1] = digits[usize::from(b & 0x0f)];
    }
    // Only ASCII digits were written.
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    proptest::proptest! {
        #[test]
        fn writes_what_the_hex_crate_writes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            proptest::prop_assert_eq!(super::lower(&bytes), hex::encode(&bytes));
            proptest::prop_assert_eq!(super::upper(&bytes), hex::encode_upper(&bytes));
        }
    }
}
