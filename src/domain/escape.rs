//! Byte-wise URL encoders by table: each byte is looked up once and either
//! written as one byte or escaped as `%` and two hex digits, into room
//! made once for the whole text. A `match` on ranges per byte (or an
//! iterator yielding a piece per run) and a push per byte cost ~2 ns a
//! byte; the texts hashed for a Funpoint notification's CheckMacValue and
//! dedup key are ~300 bytes each, now encoded whole (issue 14).

/// What each byte becomes: one byte, or (0) `%` and its hex digits.
pub struct Escaper {
    plain: [u8; 256],
    hex: &'static [u8; 16],
}

/// .NET `HttpUtility.UrlEncode`, then lower-cased: `A-Z` folded,
/// `a-z 0-9 - _ . ! * ( )` kept, space → `+`, every other byte `%xx`.
pub const DOTNET_LOWER: Escaper = Escaper::new(b"-_.!*()", true, b"0123456789abcdef");

/// `application/x-www-form-urlencoded` as `form_urlencoded::byte_serialize`
/// writes it: `A-Z a-z 0-9 * - . _` kept, space → `+`, else `%XX` — for
/// UTF-8 text. The two bytes UTF-8 never has write a form's separators:
/// [`AMP`] `&` and [`EQ`] `=`, so that a whole form, its names and values
/// joined by them, is encoded in one call.
pub const FORM: Escaper = Escaper::new(b"*-._", false, b"0123456789ABCDEF").separators();

/// Written by [`FORM`] as `&`; never a byte of UTF-8 text.
pub const AMP: u8 = 0xFE;
/// Written by [`FORM`] as `=`; never a byte of UTF-8 text.
pub const EQ: u8 = 0xFF;

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

    const fn separators(mut self) -> Self {
        self.plain[AMP as usize] = b'&';
        self.plain[EQ as usize] = b'=';
        self
    }

    /// Appends `bytes` encoded to `out`: written into room for the longest
    /// encoding (three bytes each), then cut to what was written, so that
    /// no byte checks the vector's capacity.
    pub fn encode_into(&self, bytes: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + 3 * bytes.len(), 0);
        let room = &mut out[start..];
        let mut n = 0;
        for &b in bytes {
            match self.plain[usize::from(b)] {
                0 => {
                    room[n..n + 3].copy_from_slice(&[
                        b'%',
                        self.hex[usize::from(b >> 4)],
                        self.hex[usize::from(b & 0x0f)],
                    ]);
                    n += 3;
                }
                plain => {
                    room[n] = plain;
                    n += 1;
                }
            }
        }
        out.truncate(start + n);
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
        /// Byte for byte what `form_urlencoded` writes, on any text; a
        /// form joined by the separators as `form_urlencoded` joins it.
        #[test]
        fn form_is_what_form_urlencoded_writes(fields in proptest::collection::vec(("\\PC{0,12}", "\\PC{0,12}"), 0..5)) {
            for (k, v) in &fields {
                let theirs: String = form_urlencoded::byte_serialize(k.as_bytes()).collect();
                proptest::prop_assert_eq!(encode(&FORM, k.as_bytes()), theirs);
                let theirs: String = form_urlencoded::byte_serialize(v.as_bytes()).collect();
                proptest::prop_assert_eq!(encode(&FORM, v.as_bytes()), theirs);
            }
            let mut joined = Vec::new();
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    joined.push(AMP);
                }
                joined.extend_from_slice(k.as_bytes());
                joined.push(EQ);
                joined.extend_from_slice(v.as_bytes());
            }
            let theirs: Vec<String> = fields.iter().map(|(k, v)| {
                let k: String = form_urlencoded::byte_serialize(k.as_bytes()).collect();
                let v: String = form_urlencoded::byte_serialize(v.as_bytes()).collect();
                format!("{k}={v}")
            }).collect();
            proptest::prop_assert_eq!(encode(&FORM, &joined), theirs.join("&"));
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
        // Every byte but the two separators, which UTF-8 never has.
        let all: Vec<u8> = (0..AMP).collect();
        let theirs: String = form_urlencoded::byte_serialize(&all).collect();
        assert_eq!(encode(&FORM, &all), theirs);
        assert_eq!(encode(&FORM, &[b'a', EQ, b'=', AMP, b'&']), "a=%3D&%26");
        assert_eq!(encode(&DOTNET_LOWER, b"a b~'()*!-_.A=&/"), "a+b%7e%27()*!-_.a%3d%26%2f");
        assert_eq!(encode(&DOTNET_LOWER, "手".as_bytes()), "%e6%89%8b");
    }
}
