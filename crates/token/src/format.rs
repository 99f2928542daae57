//! The token format: `<prefix>_<id>_<secret><checksum>`.
//!
//! - `prefix`: 2 to 16 characters `[a-z][a-z0-9]+`, `ttk` by default; it names the issuer so that
//!   secret scanners can attribute a leaked token.
//! - `id`: 16 base62 characters, public, the lookup key.
//! - `secret`: 32 base62 characters drawn from the OS CSPRNG by the caller (about 190 bits).
//! - `checksum`: CRC32 of `<prefix>_<id>_<secret>` as 6 base62 digits, so that a mistyped or
//!   random string is rejected before any lookup.
//!
//! This module never hashes, stores or prints a secret; [`TokenString`]'s `Debug` is redacted.

use crate::base62;

/// Length of the public id part.
pub const ID_LEN: usize = 16;
/// Length of the secret part.
pub const SECRET_LEN: usize = 32;
/// Length of the checksum suffix.
pub const CHECKSUM_LEN: usize = 6;
/// Longest prefix accepted.
pub const MAX_PREFIX_LEN: usize = 16;
/// Longest string that can possibly be a token; anything longer is rejected without scanning.
pub const MAX_TOKEN_LEN: usize = MAX_PREFIX_LEN + 1 + ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN;

/// A validated token prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefix(String);

/// Why a prefix was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("token prefix must be 2 to 16 characters: a lowercase letter, then lowercase letters or digits")]
pub struct InvalidPrefix;

impl Prefix {
    /// Validates a prefix.
    pub fn new(s: &str) -> Result<Self, InvalidPrefix> {
        if is_valid_prefix(s) { Ok(Prefix(s.to_owned())) } else { Err(InvalidPrefix) }
    }

    /// The prefix text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Prefix {
    fn default() -> Self {
        Prefix("ttk".to_owned())
    }
}

fn is_valid_prefix(s: &str) -> bool {
    let b = s.as_bytes();
    (2..=MAX_PREFIX_LEN).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// A complete token, secret included. Shown to a person once; never logged or stored.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenString(String);

impl std::fmt::Debug for TokenString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenString({}_<redacted>)", self.id())
    }
}

impl TokenString {
    /// Builds a fresh token with a new id and secret drawn from `fill`.
    pub fn generate(prefix: &Prefix, fill: &mut dyn FnMut(&mut [u8])) -> Self {
        let id = base62::random_digits(ID_LEN, fill);
        Self::with_id(prefix, &id, fill)
    }

    /// Builds a token with a given id and a new secret (used by rotation).
    pub fn with_id(prefix: &Prefix, id: &str, fill: &mut dyn FnMut(&mut [u8])) -> Self {
        let secret = base62::random_digits(SECRET_LEN, fill);
        let body = format!("{}_{}_{}", prefix.as_str(), id, secret);
        let sum = checksum(&body);
        TokenString(body + &sum)
    }

    /// Accepts a complete token string that parses (e.g. read back from the admin token file).
    pub fn from_presented(s: &str) -> Result<Self, CredentialError> {
        parse(s).map(|_| TokenString(s.to_owned()))
    }

    /// The whole token, for the one response that hands it to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The public id part.
    pub fn id(&self) -> &str {
        let rest = &self.0[self.0.find('_').map_or(0, |i| i + 1)..];
        &rest[..ID_LEN.min(rest.len())]
    }

    /// The secret part (what gets hashed).
    pub fn secret(&self) -> &str {
        let end = self.0.len() - CHECKSUM_LEN;
        &self.0[end - SECRET_LEN..end]
    }
}

fn checksum(body: &str) -> String {
    base62::encode_u32(crc32fast::hash(body.as_bytes()), CHECKSUM_LEN)
}

/// Why a presented credential could not be parsed; maps to the reason codes of the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialError {
    /// No credential was presented.
    Missing,
    /// The string does not have the token shape.
    Malformed,
    /// The shape is right but the checksum does not match: a typo or a made-up string.
    BadChecksum,
}

/// The parts of a well-formed presented token, borrowed from the presented string.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ParsedToken<'a> {
    /// The public id.
    pub id: &'a str,
    /// The secret part; hash it, never print it.
    pub secret: &'a str,
}

impl std::fmt::Debug for ParsedToken<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ParsedToken({}, <redacted>)", self.id)
    }
}

/// Parses a presented token of any valid prefix.
///
/// Tokens issued under an earlier prefix keep working after the configured prefix changes,
/// because the checksum covers the prefix the token was issued with.
pub fn parse(s: &str) -> Result<ParsedToken<'_>, CredentialError> {
    if s.is_empty() {
        return Err(CredentialError::Missing);
    }
    if s.len() > MAX_TOKEN_LEN || !s.is_ascii() {
        return Err(CredentialError::Malformed);
    }
    let (prefix, rest) = s.split_once('_').ok_or(CredentialError::Malformed)?;
    let (id, tail) = rest.split_once('_').ok_or(CredentialError::Malformed)?;
    if !is_valid_prefix(prefix)
        || id.len() != ID_LEN
        || tail.len() != SECRET_LEN + CHECKSUM_LEN
        || !id.bytes().all(base62::is_digit)
        || !tail.bytes().all(base62::is_digit)
    {
        return Err(CredentialError::Malformed);
    }
    let (secret, sum) = tail.split_at(SECRET_LEN);
    let body = &s[..s.len() - CHECKSUM_LEN];
    if base62::decode_u32(sum) != Some(crc32fast::hash(body.as_bytes())) {
        return Err(CredentialError::BadChecksum);
    }
    Ok(ParsedToken { id, secret })
}

/// Replaces every `/`-separated segment of `path` that is a token (or a token with a wrong
/// checksum, such as a pasted token with a typo) by `<redacted>`, so that a token sent in place
/// of an id never reaches the audit log.
pub fn redact_path(path: &str) -> std::borrow::Cow<'_, str> {
    let is_token = |seg: &str| matches!(parse(seg), Ok(_) | Err(CredentialError::BadChecksum));
    // A token has two `_`: most paths have none, and need no look at each segment.
    if !path.contains('_') || !path.split('/').any(is_token) {
        return std::borrow::Cow::Borrowed(path);
    }
    let parts: Vec<&str> = path.split('/').map(|seg| if is_token(seg) { "<redacted>" } else { seg }).collect();
    std::borrow::Cow::Owned(parts.join("/"))
}

/// The regular expression documented for secret scanners (default prefix).
pub const SCANNER_REGEX: &str = r"\bttk_[0-9A-Za-z]{16}_[0-9A-Za-z]{38}\b";

#[cfg(test)]
mod tests {
    use super::*;

    fn counter_rng(seed: u8) -> impl FnMut(&mut [u8]) {
        let mut state = u32::from(seed).wrapping_mul(2_654_435_761);
        move |buf: &mut [u8]| {
            for b in buf {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                *b = (state >> 24) as u8;
            }
        }
    }

    #[test]
    fn generated_tokens_round_trip() {
        for seed in 1..=50u8 {
            let t = TokenString::generate(&Prefix::default(), &mut counter_rng(seed));
            let p = parse(t.expose()).expect("parses");
            assert_eq!(p.id, t.id());
            assert_eq!(p.secret, t.secret());
            assert_eq!(t.expose().len(), 3 + 1 + ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN);
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let t = TokenString::generate(&Prefix::default(), &mut counter_rng(7));
        let shown = format!("{t:?} {:?}", parse(t.expose()).unwrap());
        assert!(!shown.contains(t.secret()));
        assert!(shown.contains(t.id()));
    }

    #[test]
    fn checksum_rejects_every_single_character_substitution() {
        let mut checked = 0;
        for seed in 1..=20u8 {
            let t = TokenString::generate(&Prefix::default(), &mut counter_rng(seed));
            let s = t.expose().as_bytes().to_vec();
            for i in 0..s.len() {
                for &c in base62::ALPHABET.iter().chain(b"_-.") {
                    if c == s[i] {
                        continue;
                    }
                    let mut m = s.clone();
                    m[i] = c;
                    let m = String::from_utf8(m).unwrap();
                    let r = parse(&m);
                    assert!(r.is_err(), "accepted {m} (substitution at {i})");
                    checked += 1;
                }
            }
        }
        assert!(checked >= 20 * 59 * 64, "{checked}");
    }

    #[test]
    fn parse_table() {
        let t = TokenString::generate(&Prefix::new("acme").unwrap(), &mut counter_rng(3));
        let good = t.expose().to_owned();
        let cases: Vec<(String, Result<(), CredentialError>)> = vec![
            (good.clone(), Ok(())),
            (String::new(), Err(CredentialError::Missing)),
            ("hello".into(), Err(CredentialError::Malformed)),
            (format!("{good}x"), Err(CredentialError::Malformed)),
            (good[..good.len() - 1].to_owned(), Err(CredentialError::Malformed)),
            (good.replacen("acme", "Acme", 1), Err(CredentialError::Malformed)),
            (good.replacen("acme", "a", 1), Err(CredentialError::Malformed)),
            (format!("{}é", &good[..good.len() - 2]), Err(CredentialError::Malformed)),
            ("x".repeat(10_000), Err(CredentialError::Malformed)),
        ];
        for (input, want) in cases {
            assert_eq!(parse(&input).map(|_| ()), want, "{input:?}");
        }
    }

    #[test]
    fn token_shaped_path_segments_are_redacted() {
        let t = TokenString::generate(&Prefix::default(), &mut counter_rng(9));
        let typo = format!("{}0", &t.expose()[..t.expose().len() - 1]);
        assert_eq!(redact_path(&format!("/v1/tokens/{}", t.expose())), "/v1/tokens/<redacted>");
        assert_eq!(redact_path(&format!("/a/{typo}/b")), "/a/<redacted>/b");
        assert_eq!(redact_path("/v1/tokens/abc"), "/v1/tokens/abc");
        assert!(matches!(redact_path("/v1/orders/42"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn prefixes() {
        for ok in ["ttk", "ab", "acme2", "abcdefghijklmnop"] {
            assert!(Prefix::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", "2ab", "a_b", "AB", "abcdefghijklmnopq", "ab-c"] {
            assert!(Prefix::new(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(s in ".{0,100}") {
            let _ = parse(&s);
        }

        #[test]
        fn parser_accepts_only_well_formed(s in "[a-z]{2,5}_[0-9A-Za-z]{16}_[0-9A-Za-z]{38}") {
            // A random string of the right shape passes only if its checksum happens to match,
            // which is the one case the checksum cannot catch (about 1 in 2^32).
            if let Ok(p) = parse(&s) {
                let body = &s[..s.len() - CHECKSUM_LEN];
                proptest::prop_assert_eq!(
                    base62::decode_u32(&s[s.len() - CHECKSUM_LEN..]),
                    Some(crc32fast::hash(body.as_bytes()))
                );
                proptest::prop_assert_eq!(p.id.len(), ID_LEN);
            }
        }

        #[test]
        fn accepted_strings_have_the_documented_shape(s in "[a-z0-9_A-Z]{0,80}") {
            if parse(&s).is_ok() {
                let (prefix, rest) = s.split_once('_').unwrap();
                proptest::prop_assert!(is_valid_prefix(prefix));
                proptest::prop_assert_eq!(rest.len(), ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN);
            }
        }
    }
}
