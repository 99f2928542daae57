//! Base62 (`0-9A-Za-z`) helpers used by the token format.
//!
//! Only fixed-width encodings are provided: a token's fields have fixed lengths so that a secret
//! scanner can match them with one regular expression.

/// The base62 alphabet, in ascending value order.
pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Whether `b` is a base62 digit.
pub fn is_digit(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn value(b: u8) -> Option<u32> {
    match b {
        b'0'..=b'9' => Some(u32::from(b - b'0')),
        b'A'..=b'Z' => Some(u32::from(b - b'A') + 10),
        b'a'..=b'z' => Some(u32::from(b - b'a') + 36),
        _ => None,
    }
}

/// Encodes `n` as exactly `width` base62 digits, most significant first.
///
/// `width` must be large enough for `n`; for a `u32` six digits always suffice (62^6 > 2^32).
pub fn encode_u32(mut n: u32, width: usize) -> String {
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    debug_assert_eq!(n, 0, "width too small");
    out.into_iter().map(char::from).collect()
}

/// Decodes a fixed-width base62 number; `None` for a non-digit or a value above `u32::MAX`.
pub fn decode_u32(s: &str) -> Option<u32> {
    let mut n: u64 = 0;
    for b in s.bytes() {
        n = n * 62 + u64::from(value(b)?);
        if n > u64::from(u32::MAX) {
            return None;
        }
    }
    u32::try_from(n).ok()
}

/// Draws `len` uniformly distributed base62 digits from random bytes supplied by `fill`.
///
/// Bytes at or above 248 (= 4 * 62) are rejected so that every digit is equally likely; the
/// caller's `fill` is the only source of randomness (the OS CSPRNG in production).
pub fn random_digits(len: usize, fill: &mut dyn FnMut(&mut [u8])) -> String {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        fill(&mut buf);
        for &b in &buf {
            if b < 248 && out.len() < len {
                out.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_edges() {
        for n in [0, 1, 61, 62, 3843, 3844, u32::MAX - 1, u32::MAX] {
            let s = encode_u32(n, 6);
            assert_eq!(s.len(), 6);
            assert_eq!(decode_u32(&s), Some(n), "{s}");
        }
        assert_eq!(encode_u32(u32::MAX, 6), "4gfFC3");
        assert_eq!(decode_u32("zzzzzz"), None, "above u32::MAX");
        assert_eq!(decode_u32("00-000"), None);
    }

    #[test]
    fn random_digits_are_base62_and_use_the_whole_alphabet() {
        let mut state = 0u8;
        let mut fill = |buf: &mut [u8]| {
            for b in buf {
                *b = state;
                state = state.wrapping_add(1);
            }
        };
        let s = random_digits(248, &mut fill);
        assert_eq!(s.len(), 248);
        assert!(s.bytes().all(is_digit));
        for c in ALPHABET {
            assert!(s.as_bytes().contains(c));
        }
    }
}
