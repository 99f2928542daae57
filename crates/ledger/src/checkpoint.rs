//! C2SP `tlog-checkpoint`: the signed statement "the log named `origin` had `size` leaves with
//! root `root`", which clients keep to later demand consistency proofs.
//!
//! The body is three lines, each ending in a newline: the origin, the tree size in decimal, and
//! the root hash in padded standard base64; optional extension lines may follow. It travels as
//! the text of a [signed note](crate::note).
//!
//! Parsing is strict, because a checkpoint is compared and stored by value: one spelling per
//! checkpoint (no leading zeros, no whitespace, canonical base64), so two texts that differ are
//! two different checkpoints.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::merkle::Hash;
use crate::note::{self, NoteError, Signer, Verifier};

/// Why a checkpoint was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The body must end with a newline.
    #[error("checkpoint must end with a newline")]
    MissingFinalNewline,
    /// The body must have an origin, a size and a root hash line.
    #[error("checkpoint must have origin, size and root hash lines")]
    TooFewLines,
    /// The body may not contain control characters other than newlines.
    #[error("checkpoint contains a control character")]
    ControlCharacter,
    /// The origin is empty, or (when creating a checkpoint) contains whitespace or `+`.
    #[error("checkpoint origin must be non-empty, without whitespace or '+'")]
    InvalidOrigin,
    /// The size line is not a decimal number without leading zeros that fits in 64 bits.
    #[error("checkpoint size must be a decimal number without leading zeros")]
    InvalidSize,
    /// The root hash line is not the padded standard base64 of 32 bytes.
    #[error("checkpoint root hash must be padded standard base64 of 32 bytes")]
    InvalidRootHash,
    /// Extension lines, if any, must be non-empty.
    #[error("checkpoint extension lines must be non-empty")]
    EmptyExtensionLine,
    /// The checkpoint is for another log.
    #[error("checkpoint is for origin {found:?}, not {expected:?}")]
    OriginMismatch {
        /// The origin asked for.
        expected: String,
        /// The origin in the checkpoint.
        found: String,
    },
    /// The signed note around the checkpoint was rejected.
    #[error(transparent)]
    Note(#[from] NoteError),
}

/// A transparency-log checkpoint body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
    extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint to sign, without extension lines (the spec recommends against them).
    ///
    /// The origin must follow the spec's recommendation, not just its requirement: no
    /// whitespace and no `+`, so that it can also be the name of the key that signs it.
    pub fn new(origin: &str, size: u64, root: Hash) -> Result<Self, CheckpointError> {
        let recommended = !origin.chars().any(|c| c.is_whitespace() || c == '+' || c.is_control());
        if origin.is_empty() || !recommended {
            return Err(CheckpointError::InvalidOrigin);
        }
        Ok(Checkpoint { origin: origin.to_owned(), size, root, extensions: Vec::new() })
    }

    /// Parses a checkpoint body (the text of its signed note).
    ///
    /// Clients must not assume anything of an origin beyond it being non-empty, so any
    /// non-empty origin without control characters is accepted here.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let body = text.strip_suffix('\n').ok_or(CheckpointError::MissingFinalNewline)?;
        if body.bytes().any(|b| b < 0x20 && b != b'\n') {
            return Err(CheckpointError::ControlCharacter);
        }
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next()) else {
            return Err(CheckpointError::TooFewLines);
        };
        if origin.is_empty() {
            return Err(CheckpointError::InvalidOrigin);
        }
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(CheckpointError::EmptyExtensionLine);
        }
        Ok(Checkpoint { origin: origin.to_owned(), size: parse_size(size)?, root: parse_root(root)?, extensions })
    }

    /// The body text: origin, size and root hash lines, then any extension lines.
    pub fn to_text(&self) -> String {
        let mut text = format!("{}\n{}\n{}\n", self.origin, self.size, BASE64.encode(self.root));
        for line in &self.extensions {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// The log's origin line.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The tree size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root hash of the tree at that size.
    pub fn root(&self) -> &Hash {
        &self.root
    }

    /// Extension lines, opaque; empty for the checkpoints tokentrail signs.
    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }
}

/// A decimal `u64` spelled one way only: digits, no sign, no leading zero unless it is `0`.
fn parse_size(line: &str) -> Result<u64, CheckpointError> {
    let digits_only = !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (line.len() > 1 && line.starts_with('0')) {
        return Err(CheckpointError::InvalidSize);
    }
    line.parse().map_err(|_| CheckpointError::InvalidSize)
}

/// Padded standard base64 of exactly 32 bytes; the decoder rejects non-canonical spellings.
fn parse_root(line: &str) -> Result<Hash, CheckpointError> {
    let bytes = BASE64.decode(line).map_err(|_| CheckpointError::InvalidRootHash)?;
    bytes.try_into().map_err(|_| CheckpointError::InvalidRootHash)
}

/// Builds the checkpoint for `origin`, `size` and `root` and signs it: the signed note text the
/// server publishes.
pub fn sign_checkpoint(origin: &str, size: u64, root: &Hash, signer: &Signer) -> Result<String, CheckpointError> {
    let checkpoint = Checkpoint::new(origin, size, *root)?;
    Ok(note::sign(&checkpoint.to_text(), signer)?)
}

/// Opens a signed checkpoint from the log `origin`: the note must be signed by one of
/// `verifiers` (see [`note::open`]) and its body must be a checkpoint for that origin.
pub fn open_checkpoint(signed: &str, origin: &str, verifiers: &[Verifier]) -> Result<Checkpoint, CheckpointError> {
    let opened = note::open(signed, verifiers)?;
    let checkpoint = Checkpoint::parse(opened.text)?;
    if checkpoint.origin != origin {
        return Err(CheckpointError::OriginMismatch { expected: origin.to_owned(), found: checkpoint.origin });
    }
    Ok(checkpoint)
}
