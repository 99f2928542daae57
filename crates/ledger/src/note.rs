//! C2SP `signed-note` v1.0.0 with Ed25519 keys: the envelope a checkpoint travels in.
//!
//! A note is a text ending in a newline, a blank line, then signature lines
//! `— <key name> base64(key ID || signature)`. The key ID is the first four bytes of
//! `SHA-256(key name || 0x0A || 0x01 || public key)`, so a (name, ID) pair picks one key.
//!
//! Keys travel as text in the formats of Go's `golang.org/x/mod/sumdb/note`, so that keys and notes
//! interoperate with the transparency-log tooling that uses them:
//! - verifier key: `<name>+<8 hex digits of key ID>+base64(0x01 || public key)`;
//! - signer key: `PRIVATE+KEY+<name>+<8 hex digits of key ID>+base64(0x01 || seed)`.
//!
//! Keys are built from a 32-byte seed passed in: this module never draws randomness, never reads
//! or writes key files, and never prints a seed ([`Signer`]'s `Debug` leaves it out, and no error
//! message repeats the key text it rejected).

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The signature type byte C2SP assigns to Ed25519.
const ALG_ED25519: u8 = 0x01;

/// How many signature lines [`open`] reads before giving up on a note. The spec asks for at
/// least 16; Go's implementation stops at 100.
pub const MAX_SIGNATURES: usize = 100;

/// What starts every signature line: an em dash (U+2014) and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a key or its text form was rejected. Messages never include the key text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Key names must be non-empty, without whitespace, `+` or ASCII control characters.
    #[error("key name must be non-empty, without whitespace, '+' or control characters")]
    InvalidName,
    /// The text does not have the `name+keyid+key` shape, the key ID is not eight lowercase
    /// hexadecimal digits, or the key is not padded standard base64.
    #[error("key text is malformed")]
    Malformed,
    /// A signer key must start with `PRIVATE+KEY+`.
    #[error("signer key text must start with PRIVATE+KEY+")]
    NotASignerKey,
    /// A signer (private) key was given where a verifier key was expected.
    #[error("this is a private signer key; give the verifier key instead")]
    PrivateKeyGiven,
    /// Only Ed25519 (type byte 0x01) is supported.
    #[error("unsupported key type {0:#04x}")]
    UnsupportedAlgorithm(u8),
    /// An Ed25519 key or seed is 32 bytes.
    #[error("key is {0} bytes, not 32")]
    WrongKeyLength(usize),
    /// The key ID in the text is not the one computed from the name and key.
    #[error("key ID does not match the key name and key")]
    KeyIdMismatch,
    /// The bytes are not an Ed25519 public key usable for verification (not a curve point, or a
    /// point of small order, which would accept forged signatures).
    #[error("not a usable Ed25519 public key")]
    InvalidPublicKey,
}

/// Why a note could not be signed or opened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The text to sign does not end in a newline (or is empty).
    #[error("note text must end with a newline")]
    TextWithoutFinalNewline,
    /// Notes may not contain ASCII control characters other than newline.
    #[error("note contains a control character other than newline")]
    ControlCharacter,
    /// There is no blank line between the text and the signatures.
    #[error("note has no blank line before its signatures")]
    MissingBlankLine,
    /// There is nothing after the blank line, or the last signature line has no final newline.
    #[error("note signature block is empty or does not end with a newline")]
    MalformedSignatureBlock,
    /// A signature line is not `— <key name> <base64>`, the name is invalid, or the base64 is not
    /// padded standard base64 of at least five bytes.
    #[error("signature line {line} is malformed")]
    MalformedSignatureLine {
        /// 1-based, counted from the first signature line.
        line: usize,
    },
    /// The note has more signature lines than [`MAX_SIGNATURES`].
    #[error("note has more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    /// A signature by a known key (name and key ID match) does not verify: the text was changed
    /// or the signature forged.
    #[error("signature by known key {name} does not verify")]
    InvalidSignature {
        /// The key name.
        name: String,
    },
    /// No signature is by a known key.
    #[error("note is not signed by any known key")]
    NoKnownSignature,
}

/// Whether `name` can be a key name: non-empty, no Unicode whitespace and no `+` (the spec), and
/// no ASCII control characters (which a note cannot carry anyway).
fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+' || c < ' ')
}

/// The C2SP key ID: the first four bytes, big-endian, of
/// `SHA-256(name || 0x0A || 0x01 || public key)`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let digest = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update([b'\n', ALG_ED25519])
        .chain_update(public_key)
        .finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Parses `<8 lowercase hex digits>+<base64 of 0x01 || 32 bytes>` into the ID and key bytes.
fn parse_id_and_key(rest: &str) -> Result<(u32, [u8; 32]), KeyError> {
    let (hex, b64) = rest.split_once('+').ok_or(KeyError::Malformed)?;
    if hex.len() != 8 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(KeyError::Malformed);
    }
    let id = u32::from_str_radix(hex, 16).map_err(|_| KeyError::Malformed)?;
    let bytes = BASE64.decode(b64).map_err(|_| KeyError::Malformed)?;
    let (&alg, key) = bytes.split_first().ok_or(KeyError::Malformed)?;
    if alg != ALG_ED25519 {
        return Err(KeyError::UnsupportedAlgorithm(alg));
    }
    let key: [u8; 32] = key.try_into().map_err(|_| KeyError::WrongKeyLength(key.len()))?;
    Ok((id, key))
}

fn encode_key(key: &[u8; 32]) -> String {
    let mut bytes = Vec::with_capacity(33);
    bytes.push(ALG_ED25519);
    bytes.extend_from_slice(key);
    BASE64.encode(bytes)
}

/// A public key that notes are checked against, with its name.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl Verifier {
    /// A verifier for `name` and a 32-byte Ed25519 public key.
    pub fn new(name: &str, public_key: &[u8; 32]) -> Result<Self, KeyError> {
        if !is_valid_name(name) {
            return Err(KeyError::InvalidName);
        }
        let key = VerifyingKey::from_bytes(public_key).map_err(|_| KeyError::InvalidPublicKey)?;
        if key.is_weak() {
            return Err(KeyError::InvalidPublicKey);
        }
        Ok(Verifier { name: name.to_owned(), key_id: key_id(name, public_key), key })
    }

    /// Parses verifier key text `<name>+<key ID>+<base64(0x01 || public key)>`.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        if text.starts_with("PRIVATE+KEY+") {
            // Someone pasted the signer key; say so rather than "malformed".
            return Err(KeyError::PrivateKeyGiven);
        }
        let (name, rest) = text.split_once('+').ok_or(KeyError::Malformed)?;
        if !is_valid_name(name) {
            return Err(KeyError::InvalidName);
        }
        let (id, public_key) = parse_id_and_key(rest)?;
        let verifier = Verifier::new(name, &public_key)?;
        if verifier.key_id != id {
            return Err(KeyError::KeyIdMismatch);
        }
        Ok(verifier)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }
}

impl fmt::Display for Verifier {
    /// The verifier key text, `<name>+<key ID>+<base64(0x01 || public key)>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{:08x}+{}", self.name, self.key_id, encode_key(self.key.as_bytes()))
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Verifier({self})")
    }
}

impl FromStr for Verifier {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        Verifier::parse(s)
    }
}

/// A private key that signs notes, with its name.
///
/// The seed is wiped from memory when the signer is dropped; `Debug` shows only the name and
/// key ID.
#[derive(Clone)]
pub struct Signer {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer for `name` from a 32-byte Ed25519 seed (the RFC 8032 private key), which the
    /// caller draws from a CSPRNG or reads from the data directory.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, KeyError> {
        if !is_valid_name(name) {
            return Err(KeyError::InvalidName);
        }
        let key = SigningKey::from_bytes(seed);
        let key_id = key_id(name, key.verifying_key().as_bytes());
        Ok(Signer { name: name.to_owned(), key_id, key })
    }

    /// Parses signer key text `PRIVATE+KEY+<name>+<key ID>+<base64(0x01 || seed)>`.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let rest = text.strip_prefix("PRIVATE+KEY+").ok_or(KeyError::NotASignerKey)?;
        let (name, rest) = rest.split_once('+').ok_or(KeyError::Malformed)?;
        if !is_valid_name(name) {
            return Err(KeyError::InvalidName);
        }
        let (id, seed) = parse_id_and_key(rest)?;
        let signer = Signer::from_seed(name, &seed)?;
        // The ID is of the public key, so it also catches a corrupted seed.
        if signer.key_id != id {
            return Err(KeyError::KeyIdMismatch);
        }
        Ok(signer)
    }

    /// The signer key text, for storage in the data directory. It contains the private key:
    /// write it with restrictive permissions and never log it.
    pub fn to_key_text(&self) -> String {
        format!("PRIVATE+KEY+{}+{:08x}+{}", self.name, self.key_id, encode_key(self.key.as_bytes()))
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The matching verifier, to publish.
    pub fn verifier(&self) -> Verifier {
        Verifier { name: self.name.clone(), key_id: self.key_id, key: self.key.verifying_key() }
    }
}

/// Checks the note-wide rule: no ASCII control characters other than newline.
fn check_characters(s: &str) -> Result<(), NoteError> {
    if s.bytes().any(|b| b < 0x20 && b != b'\n') {
        return Err(NoteError::ControlCharacter);
    }
    Ok(())
}

/// Signs `text` and returns the whole note: the text, a blank line and one signature line.
///
/// The text must end with a newline and contain no control characters other than newlines.
pub fn sign(text: &str, signer: &Signer) -> Result<String, NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::TextWithoutFinalNewline);
    }
    check_characters(text)?;
    let signature = signer.key.sign(text.as_bytes());
    let mut sig = Vec::with_capacity(4 + 64);
    sig.extend_from_slice(&signer.key_id.to_be_bytes());
    sig.extend_from_slice(&signature.to_bytes());
    Ok(format!("{text}\n{SIG_PREFIX}{} {}\n", signer.name, BASE64.encode(sig)))
}

/// A note whose signatures checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenedNote<'a> {
    /// The signed text, final newline included.
    pub text: &'a str,
    /// The names of the known keys whose signatures verified, in note order, without repeats.
    pub verified_by: Vec<&'a str>,
}

/// Opens a note: parses it, verifies every signature by a key in `verifiers`, and returns the
/// text.
///
/// Signatures by unknown keys are skipped, as the spec requires (that is how keys rotate and
/// witnesses cosign); a key is known only if both its name and key ID match. The note is
/// rejected if it is malformed, if any signature by a known key fails, or if none is by a known
/// key.
pub fn open<'a>(note: &'a str, verifiers: &[Verifier]) -> Result<OpenedNote<'a>, NoteError> {
    check_characters(note)?;
    // The text may contain blank lines itself; the last one separates it from the signatures,
    // which never contain one.
    let split = note.rfind("\n\n").ok_or(NoteError::MissingBlankLine)?;
    let (text, sigs) = (&note[..=split], &note[split + 2..]);
    if sigs.is_empty() || !sigs.ends_with('\n') {
        return Err(NoteError::MalformedSignatureBlock);
    }
    let lines = &sigs[..sigs.len() - 1];
    if lines.split('\n').count() > MAX_SIGNATURES {
        return Err(NoteError::TooManySignatures);
    }
    let mut verified_by: Vec<&str> = Vec::new();
    for (i, line) in lines.split('\n').enumerate() {
        let malformed = NoteError::MalformedSignatureLine { line: i + 1 };
        let (name, b64) =
            line.strip_prefix(SIG_PREFIX).and_then(|rest| rest.split_once(' ')).ok_or_else(|| malformed.clone())?;
        if !is_valid_name(name) {
            return Err(malformed);
        }
        let bytes = BASE64.decode(b64).map_err(|_| malformed.clone())?;
        let (id, signature) = match bytes.split_first_chunk::<4>() {
            Some((id, signature)) if !signature.is_empty() => (u32::from_be_bytes(*id), signature),
            _ => return Err(malformed),
        };
        let Some(verifier) = verifiers.iter().find(|v| v.name == name && v.key_id == id) else {
            continue;
        };
        let verifies = <&[u8; 64]>::try_from(signature)
            .is_ok_and(|bytes| verifier.key.verify_strict(text.as_bytes(), &Signature::from_bytes(bytes)).is_ok());
        if !verifies {
            return Err(NoteError::InvalidSignature { name: name.to_owned() });
        }
        if !verified_by.contains(&name) {
            verified_by.push(name);
        }
    }
    if verified_by.is_empty() {
        return Err(NoteError::NoKnownSignature);
    }
    Ok(OpenedNote { text, verified_by })
}
