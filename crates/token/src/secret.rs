//! Keyed hashing of token secrets under the server's pepper.
//!
//! Only `HMAC-SHA256(pepper, secret)` is ever kept; comparison is constant-time. A presented string
//! that cannot be resolved to a token is reduced to a keyed fingerprint so that repeated guesses
//! correlate without the guess itself being stored.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Length of a pepper in bytes.
pub const PEPPER_LEN: usize = 32;

/// The server-wide hashing key. Its `Debug` is redacted.
#[derive(Clone)]
pub struct Pepper([u8; PEPPER_LEN]);

impl std::fmt::Debug for Pepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pepper(<redacted>)")
    }
}

impl Pepper {
    /// Wraps pepper bytes (read from the 0600 pepper file or fresh from the CSPRNG).
    pub fn from_bytes(bytes: [u8; PEPPER_LEN]) -> Self {
        Pepper(bytes)
    }

    /// The raw bytes, for writing the pepper file.
    pub fn as_bytes(&self) -> &[u8; PEPPER_LEN] {
        &self.0
    }

    fn mac(&self, domain: &[u8], data: &[u8]) -> [u8; 32] {
        #[allow(clippy::expect_used)] // HMAC accepts keys of every length.
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(domain);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// `HMAC-SHA256(pepper, secret)`, the only form in which a secret is kept.
    pub fn hash_secret(&self, secret: &str) -> SecretHash {
        SecretHash(self.mac(b"", secret.as_bytes()))
    }

    /// A keyed fingerprint of a presented string that did not resolve to a token.
    ///
    /// The domain separator keeps fingerprints unrelated to secret hashes.
    pub fn fingerprint(&self, presented: &str) -> String {
        let mac = self.mac(b"tokentrail fingerprint\n", presented.as_bytes());
        let mut out = String::with_capacity(3 + 24);
        out.push_str("fp_");
        for b in &mac[..12] {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }
}

/// A keyed hash of a secret.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SecretHash(pub [u8; 32]);

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

impl SecretHash {
    /// Constant-time equality.
    pub fn matches(&self, other: &SecretHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_keyed_and_deterministic() {
        let a = Pepper::from_bytes([1; 32]);
        let b = Pepper::from_bytes([2; 32]);
        assert!(a.hash_secret("s3cret").matches(&a.hash_secret("s3cret")));
        assert!(!a.hash_secret("s3cret").matches(&b.hash_secret("s3cret")));
        assert!(!a.hash_secret("s3cret").matches(&a.hash_secret("s3cres")));
    }

    #[test]
    fn hash_is_plain_hmac_sha256() {
        // Expected value computed independently with Python:
        // hmac.new(b'\x0b' * 32, b'Hi There', hashlib.sha256).hexdigest()
        let p = Pepper::from_bytes([0x0b; 32]);
        let got = p.hash_secret("Hi There").0;
        let hex: String = got.iter().map(|b| format!("{b:02x}")).collect();
        expect_test::expect!["198a607eb44bfbc69903a0f1cf2bbdc5ba0aa3f3d9ae3c1c7a3b1696a0b68cf7"].assert_eq(&hex);
    }

    #[test]
    fn fingerprint_shape_and_separation() {
        let p = Pepper::from_bytes([9; 32]);
        let f = p.fingerprint("guess");
        assert_eq!(f.len(), 27);
        assert!(f.starts_with("fp_"));
        assert_eq!(f, p.fingerprint("guess"));
        assert_ne!(f, p.fingerprint("guess2"));
        let debug = format!("{p:?} {:?}", p.hash_secret("x"));
        assert!(!debug.contains("9"), "{debug}");
    }
}
