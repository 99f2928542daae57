//! Checkpoint bodies: the C2SP example, formatting, strict parsing, and signing and opening in
//! one call.

use ledger::checkpoint::{self, Checkpoint, CheckpointError};
use ledger::merkle::{EMPTY_ROOT, MemoryTree, leaf_hash};
use ledger::note::{NoteError, Signer};
use proptest::prelude::*;

/// The body of the example in the C2SP tlog-checkpoint spec.
const SPEC_EXAMPLE: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

#[test]
fn parses_and_reformats_the_spec_example() {
    let cp = Checkpoint::parse(SPEC_EXAMPLE).unwrap();
    assert_eq!(cp.origin(), "example.com/behind-the-sofa");
    assert_eq!(cp.size(), 20852163);
    assert_eq!(&cp.root()[..4], &[0x0a, 0xc5, 0x18, 0x6a]);
    assert!(cp.extensions().is_empty());
    assert_eq!(cp.to_text(), SPEC_EXAMPLE);
}

#[test]
fn formats_the_three_lines() {
    let cp = Checkpoint::new("tokentrail.example/audit", 0, EMPTY_ROOT).unwrap();
    assert_eq!(cp.to_text(), "tokentrail.example/audit\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n");
    assert_eq!(Checkpoint::parse(&cp.to_text()).unwrap(), cp);
}

#[test]
fn extension_lines_are_kept() {
    let text = format!("{SPEC_EXAMPLE}ext one\nmore\n");
    let cp = Checkpoint::parse(&text).unwrap();
    assert_eq!(cp.extensions(), ["ext one", "more"]);
    assert_eq!(cp.to_text(), text);
}

#[test]
fn bodies_are_parsed_strictly() {
    let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
    let body = |origin: &str, size: &str, root: &str| format!("{origin}\n{size}\n{root}\n");
    use CheckpointError::*;
    let cases: Vec<(&str, String, CheckpointError)> = vec![
        ("no final newline", SPEC_EXAMPLE.trim_end().to_owned(), MissingFinalNewline),
        ("empty", String::new(), MissingFinalNewline),
        ("two lines", "o\n1\n".to_owned(), TooFewLines),
        ("empty origin", body("", "1", root), InvalidOrigin),
        ("leading zero", body("o", "01", root), InvalidSize),
        ("zeros", body("o", "00", root), InvalidSize),
        ("plus sign", body("o", "+1", root), InvalidSize),
        ("minus sign", body("o", "-1", root), InvalidSize),
        ("space", body("o", " 1", root), InvalidSize),
        ("empty size", body("o", "", root), InvalidSize),
        ("hex size", body("o", "0x10", root), InvalidSize),
        ("size overflows", body("o", "18446744073709551616", root), InvalidSize),
        ("unpadded root", body("o", "1", root.trim_end_matches('=')), InvalidRootHash),
        ("url-safe root", body("o", "1", &root.replace('/', "_")), InvalidRootHash),
        ("short root", body("o", "1", "AAAA"), InvalidRootHash),
        ("long root", body("o", "1", &format!("AAAA{root}")), InvalidRootHash),
        ("non-canonical root", body("o", "1", &root.replace("I=", "J=")), InvalidRootHash),
        ("root with space", body("o", "1", &format!("{root} ")), InvalidRootHash),
        ("empty extension", format!("{SPEC_EXAMPLE}\n"), EmptyExtensionLine),
        ("carriage return", SPEC_EXAMPLE.replace('\n', "\r\n"), ControlCharacter),
    ];
    for (name, input, want) in cases {
        assert_eq!(Checkpoint::parse(&input), Err(want), "{name}");
    }
    // The largest size is fine; origins other than the recommended URL shape are accepted.
    assert_eq!(Checkpoint::parse(&body("o", "18446744073709551615", root)).unwrap().size(), u64::MAX);
    assert_eq!(Checkpoint::parse(&body("a log+name", "0", root)).unwrap().origin(), "a log+name");
}

#[test]
fn new_checkpoints_need_an_origin_that_can_be_a_key_name() {
    for origin in ["", "a b", "a+b", "a\nb", "tab\t"] {
        assert_eq!(Checkpoint::new(origin, 1, EMPTY_ROOT), Err(CheckpointError::InvalidOrigin), "{origin:?}");
    }
}

#[test]
fn sign_and_open_in_one_call() {
    let origin = "tokentrail.example/audit";
    let log = Signer::from_seed(origin, &[9; 32]).unwrap();
    let tree = MemoryTree::from_leaf_hashes((0..5u8).map(|i| leaf_hash(&[i]))).unwrap();
    let signed = checkpoint::sign_checkpoint(origin, tree.size(), &tree.root(), &log).unwrap();
    assert!(signed.starts_with(&format!("{origin}\n5\n")));
    assert!(signed.contains(&format!("\n\n\u{2014} {origin} ")));

    let cp = checkpoint::open_checkpoint(&signed, origin, &[log.verifier()]).unwrap();
    assert_eq!((cp.origin(), cp.size(), cp.root()), (origin, 5, &tree.root()));

    let stranger = Signer::from_seed("other.example", &[8; 32]).unwrap();
    assert_eq!(
        checkpoint::open_checkpoint(&signed, origin, &[stranger.verifier()]),
        Err(CheckpointError::Note(NoteError::NoKnownSignature))
    );
    assert_eq!(
        checkpoint::open_checkpoint(&signed, "other.example", &[log.verifier()]),
        Err(CheckpointError::OriginMismatch { expected: "other.example".into(), found: origin.into() })
    );
    // A signed note that is not a checkpoint.
    let not_a_checkpoint = ledger::note::sign("hello\n", &log).unwrap();
    assert_eq!(
        checkpoint::open_checkpoint(&not_a_checkpoint, origin, &[log.verifier()]),
        Err(CheckpointError::TooFewLines)
    );
    assert_eq!(checkpoint::sign_checkpoint("bad origin", 1, &EMPTY_ROOT, &log), Err(CheckpointError::InvalidOrigin));
}

proptest! {
    #[test]
    fn parse_never_panics_and_round_trips(s in "\\PC*", origin in "[!-~&&[^+]]{1,30}", size in any::<u64>(), root in any::<[u8; 32]>()) {
        let _ = Checkpoint::parse(&s);
        if let Ok(cp) = Checkpoint::parse(&s) {
            prop_assert_eq!(cp.to_text(), s);
        }
        let cp = Checkpoint::new(&origin, size, root).unwrap();
        prop_assert_eq!(Checkpoint::parse(&cp.to_text()), Ok(cp));
    }
}
