//! Byte-wise URL encoders by table: each byte is looked up once and either
//! written as one byte or escaped as `%` and two hex digits. A `match` on
//! ranges per byte (or an iterator yielding a piece per run) cost 15–20
//! instructions a byte; the texts hashed for a Funpoint notification's
//! CheckMacValue and dedup key are ~450 bytes each (issue 14).

/// What each byte becomes: one byte, or (0) `%` and its hex digits.
pub struct Escaper {
    plain: [u8; 256],
    hex: &'static [u8; 16],
}

/// .NET `HttpUtility.UrlEncode`, then lower-cased: `A-Z` folded,
/// `a-z 0-9 - _ . ! * ( )` kept, space → `+`, every other byte `%xx`.
pub const DOTNET_LOWER: Escaper = Escaper::new(b"-_.!*()", true, b"0123456789abcdef");

/// `application/x-www-form-urlencoded` as `form_urlencoded::byte_serialize`
/// writes it: `A-Z a-z 0-9 * - . _` kept, space → `+`, else `%XX`.
pub const FORM: Escaper = Escaper::new(b"*-._", false, b"0123456789ABCDEF");

impl Escaper {
    const fn new(marks: &[u8], fold: bool, hex: &'static [u8; 16]) -> Self {
        let mut plain = [0u8; 256];
        let mut b = 0;
        while b < 256 {
            let c = b as u8;
            plain[b] = match c {
                b'A'..=b'Z' if fold => c.to_ascii_lowercase(),
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => c,
                b' ' => b'+',
                _ => 0,
            };
            b += 1;
        }
        let mut i = 0;
        while i < marks.len() {
            plain[marks[i] as usize] = marks[i];
            i += 1;
        }
        Self { plain, hex }
    }

    /// Appends `bytes` encoded to `out`.
    pub fn encode_into(&self, bytes: &[u8], out: &mut Vec<u8>) {
        out.reserve(bytes.len());
        for &b in bytes {
            match self.plain[usize::from(b)] {
                0 => out.extend_from_slice(&[b'%', self.hex[usize::from(b >> 4)], self.hex[usize::from(b & 0x0f)]]),
                plain => out.push(plain),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(escaper: &Escaper, bytes: &[u8]) -> String {
        let mut out = Vec::new();
        escaper.encode_into(bytes, &mut out);
        String::from_utf8(out).unwrap()
    }

    proptest::proptest! {
        /// Byte for byte what `form_urlencoded` writes, on any bytes.
        #[test]
        fn form_is_what_form_urlencoded_writes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let theirs: String = form_urlencoded::byte_serialize(&bytes).collect();
            proptest::prop_assert_eq!(encode(&FORM, &bytes), theirs);
        }

        /// Byte for byte what the checkmac's `match` encoder wrote.
        #[test]
        fn dotnet_lower_is_what_the_match_wrote(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let before: String = bytes.iter().map(|&b| match b {
                b'A'..=b'Z' => (b.to_ascii_lowercase() as char).to_string(),
                b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'!' | b'*' | b'(' | b')' => (b as char).to_string(),
                b' ' => "+".to_owned(),
                _ => format!("%{b:02x}"),
            }).collect();
            proptest::prop_assert_eq!(encode(&DOTNET_LOWER, &bytes), before);
        }
    }

    #[test]
    fn every_byte_value_once() {
        let all: Vec<u8> = (0..=255).collect();
        let theirs: String = form_urlencoded::byte_serialize(&all).collect();
        assert_eq!(encode(&FORM, &all), theirs);
        assert_eq!(encode(&DOTNET_LOWER, b"a b~'()*!-_.A=&/"), "a+b%7e%27()*!-_.a%3d%26%2f");
        assert_eq!(encode(&DOTNET_LOWER, "手".as_bytes()), "%e6%89%8b");
    }
}
