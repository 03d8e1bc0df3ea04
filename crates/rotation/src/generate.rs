//! New secret values, straight from the operating system's CSPRNG (`getrandom`), in the policy's format.

use base64::Engine as _;
use keyturn_config::SecretString;

use crate::policy::{Charset, ValueFormat};

const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS: &[u8] = b"0123456789";
/// Symbols that survive shells, JSON, YAML and most connection strings unquoted: no quotes, backslash,
/// backtick, space, `;` or `=`.
pub const SYMBOLS: &[u8] = b"!#$%&*+-.:?@^_~";

/// The OS random source failed (never expected on a working system; retrying later is the only remedy).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomError(String);

/// Generates a new value in `format`.
pub fn generate(format: ValueFormat) -> Result<SecretString, RandomError> {
    match format {
        ValueFormat::Password { length, charset } => password(length, charset),
        ValueFormat::Alphanumeric { length } => {
            let alphabet: Vec<u8> = [LOWER, UPPER, DIGITS].concat();
            Ok(SecretString::new(draw(&alphabet, length)?))
        }
        ValueFormat::Base64 { bytes } => encoded(bytes, |b| base64::engine::general_purpose::STANDARD.encode(b)),
        ValueFormat::Base64Url { bytes } => {
            encoded(bytes, |b| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
        }
        ValueFormat::Hex { bytes } => encoded(bytes, |b| b.iter().map(|x| format!("{x:02x}")).collect()),
    }
}

fn classes(charset: Charset) -> Vec<&'static [u8]> {
    [(charset.lower, LOWER), (charset.upper, UPPER), (charset.digits, DIGITS), (charset.symbols, SYMBOLS)]
        .into_iter()
        .filter_map(|(on, class)| on.then_some(class))
        .collect()
}

/// A password with at least one character of every chosen class. Drawing uniformly and redrawing the
/// rare password that misses a class keeps every character uniform over the alphabet (placing one
/// character per class at random positions would not).
fn password(length: usize, charset: Charset) -> Result<SecretString, RandomError> {
    let classes = classes(charset);
    let alphabet: Vec<u8> = classes.concat();
    loop {
        let candidate = draw(&alphabet, length)?;
        if classes.iter().all(|class| candidate.bytes().any(|c| class.contains(&c))) {
            return Ok(SecretString::new(candidate));
        }
        // Dropped through the wrapper so that the rejected candidate is wiped too.
        drop(SecretString::new(candidate));
    }
}

/// `length` characters drawn uniformly from `alphabet` (at most 256 symbols) by rejection sampling: a
/// random byte is used only below the largest multiple of the alphabet size, so there is no modulo bias.
fn draw(alphabet: &[u8], length: usize) -> Result<String, RandomError> {
    let n = alphabet.len();
    debug_assert!((1..=256).contains(&n));
    let limit = 256 - (256 % n);
    let mut out = String::with_capacity(length);
    let mut buffer = [0u8; 64];
    while out.len() < length {
        getrandom::fill(&mut buffer).map_err(|e| RandomError(e.to_string()))?;
        for &b in buffer.iter().filter(|&&b| usize::from(b) < limit) {
            if out.len() == length {
                break;
            }
            out.push(char::from(alphabet[usize::from(b) % n]));
        }
    }
    buffer.fill(0);
    Ok(out)
}

fn encoded(bytes: usize, encode: impl Fn(&[u8]) -> String) -> Result<SecretString, RandomError> {
    let mut raw = vec![0u8; bytes];
    getrandom::fill(&mut raw).map_err(|e| RandomError(e.to_string()))?;
    let value = SecretString::new(encode(&raw));
    raw.fill(0);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::DEFAULT_FORMAT;
    use std::collections::HashSet;

    #[test]
    fn the_default_password_has_its_length_and_every_class() {
        for _ in 0..200 {
            let value = generate(DEFAULT_FORMAT).unwrap();
            let v = value.expose();
            assert_eq!(v.len(), 32);
            assert!(v.bytes().any(|c| c.is_ascii_lowercase()));
            assert!(v.bytes().any(|c| c.is_ascii_uppercase()));
            assert!(v.bytes().any(|c| c.is_ascii_digit()));
            assert!(v.bytes().any(|c| SYMBOLS.contains(&c)));
            assert!(v.bytes().all(|c| c.is_ascii_alphanumeric() || SYMBOLS.contains(&c)));
        }
    }

    #[test]
    fn a_restricted_charset_is_respected() {
        let charset = Charset { lower: true, upper: false, digits: true, symbols: false };
        for _ in 0..100 {
            let value = generate(ValueFormat::Password { length: 12, charset }).unwrap();
            assert_eq!(value.len(), 12);
            assert!(value.expose().bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()), "{}", value.expose());
        }
        let value = generate(ValueFormat::Alphanumeric { length: 100 }).unwrap();
        assert!(value.expose().bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(value.len(), 100);
    }

    #[test]
    fn encoded_formats_decode_to_the_requested_number_of_bytes() {
        let b64 = generate(ValueFormat::Base64 { bytes: 32 }).unwrap();
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(b64.expose()).unwrap().len(), 32);
        assert_eq!(b64.len(), 44);
        let url = generate(ValueFormat::Base64Url { bytes: 33 }).unwrap();
        assert!(!url.expose().contains(['+', '/', '=']));
        assert_eq!(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(url.expose()).unwrap().len(), 33);
        let hex = generate(ValueFormat::Hex { bytes: 16 }).unwrap();
        assert_eq!(hex.len(), 32);
        assert!(hex.expose().bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
    }

    #[test]
    fn values_do_not_repeat_and_characters_are_spread_over_the_alphabet() {
        let values: HashSet<String> =
            (0..1000).map(|_| generate(ValueFormat::Hex { bytes: 16 }).unwrap().expose().to_owned()).collect();
        assert_eq!(values.len(), 1000);
        // 64,000 draws over 62 symbols: each expected ~1032 times; a biased or stuck source falls far outside.
        let mut counts = [0usize; 128];
        for _ in 0..1000 {
            for c in generate(ValueFormat::Alphanumeric { length: 64 }).unwrap().expose().bytes() {
                counts[usize::from(c)] += 1;
            }
        }
        let used: Vec<usize> = counts.iter().copied().filter(|&c| c > 0).collect();
        assert_eq!(used.len(), 62);
        assert!(used.iter().all(|&c| (800..1300).contains(&c)), "{used:?}");
    }
}
