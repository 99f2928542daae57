//! Signed notes: a known answer from Go's `sumdb/note`, round trips, key texts, and every way a
//! note or key is rejected.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ledger::note::{self, KeyError, MAX_SIGNATURES, NoteError, OpenedNote, Signer, Verifier};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

/// The example key of Go's golang.org/x/mod/sumdb/note package documentation.
const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PETER_SKEY: &str = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const PETER_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                          then you don't know what your problem is.\n";
const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

fn peter_note() -> String {
    format!("{PETER_TEXT}\n{PETER_SIG}")
}

fn signer(name: &str, seed: u8) -> Signer {
    Signer::from_seed(name, &[seed; 32]).unwrap()
}

#[test]
fn go_sumdb_note_example_opens() {
    let verifier = Verifier::parse(PETER_VKEY).unwrap();
    assert_eq!(verifier.name(), "PeterNeumann");
    assert_eq!(verifier.key_id(), 0xc74f20a3);
    assert_eq!(verifier.to_string(), PETER_VKEY);
    let note = peter_note();
    let opened = note::open(&note, &[verifier]).unwrap();
    assert_eq!(opened, OpenedNote { text: PETER_TEXT, verified_by: vec!["PeterNeumann"] });
}

#[test]
fn go_sumdb_note_example_signs_identically() {
    // Ed25519 is deterministic, so the same key over the same text gives the same note.
    let signer = Signer::parse(PETER_SKEY).unwrap();
    assert_eq!(signer.to_key_text(), PETER_SKEY);
    assert_eq!(signer.verifier().to_string(), PETER_VKEY);
    assert_eq!(note::sign(PETER_TEXT, &signer).unwrap(), peter_note());
}

#[test]
fn key_id_is_truncated_sha256_of_name_type_and_key() {
    let signer = signer("example.com/log", 7);
    let public = signer.verifier().public_key();
    let digest = Sha256::digest([b"example.com/log\n\x01".as_slice(), &public].concat());
    let want = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    assert_eq!(note::key_id("example.com/log", &public), want);
    assert_eq!(signer.key_id(), want);
    assert_eq!(signer.verifier().key_id(), want);
}

#[test]
fn sign_then_open_round_trips() {
    let alice = signer("alice.example/log", 1);
    let text = "tokentrail.example/audit\n42\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
    let signed = note::sign(text, &alice).unwrap();
    assert!(signed.starts_with(text));
    let opened = note::open(&signed, &[signer("bob", 2).verifier(), alice.verifier()]).unwrap();
    assert_eq!(opened.text, text);
    assert_eq!(opened.verified_by, ["alice.example/log"]);

    // Text with blank lines of its own, and a text that is a single newline.
    for text in ["a\n\nb\n", "a\n\n", "\n", "unicode \u{2014} ok\n"] {
        let signed = note::sign(text, &alice).unwrap();
        assert_eq!(note::open(&signed, &[alice.verifier()]).unwrap().text, text);
    }
}

#[test]
fn key_texts_round_trip_and_debug_hides_the_seed() {
    let seed = [0x5a; 32];
    let signer = Signer::from_seed("log.example/a", &seed).unwrap();
    let skey = signer.to_key_text();
    assert!(skey.starts_with("PRIVATE+KEY+log.example/a+"));
    let again = Signer::parse(&skey).unwrap();
    assert_eq!(again.key_id(), signer.key_id());
    assert_eq!(again.verifier(), signer.verifier());

    let vkey = signer.verifier().to_string();
    assert_eq!(
        vkey,
        format!("log.example/a+{:08x}+{}", signer.key_id(), {
            let mut b = vec![1];
            b.extend(signer.verifier().public_key());
            BASE64.encode(b)
        })
    );
    assert_eq!(vkey.parse::<Verifier>().unwrap(), signer.verifier());

    let debug = format!("{signer:?} {:?}", again);
    let seed_b64 = BASE64.encode([&[1u8][..], &seed].concat());
    let seed_hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!debug.contains(&seed_b64) && !debug.contains(&seed_hex) && !debug.contains("90, 90"));
    assert!(debug.contains("log.example/a"), "{debug}");
}

fn signature_line(name: &str, key_id: u32, sig: &[u8]) -> String {
    let mut bytes = key_id.to_be_bytes().to_vec();
    bytes.extend_from_slice(sig);
    format!("\u{2014} {name} {}\n", BASE64.encode(bytes))
}

#[test]
fn notes_are_rejected_for_the_right_reason() {
    let alice = signer("alice", 1);
    let bob = signer("bob", 2);
    let known = [alice.verifier()];
    let text = "hello\nworld\n";
    let signed = note::sign(text, &alice).unwrap();
    let sig_line = &signed[text.len() + 1..];
    let by_bob = note::sign(text, &bob).unwrap();
    let bob_line = &by_bob[text.len() + 1..];
    // Alice's name with a key ID that is not hers, and her key ID under another name: both are
    // unknown keys.
    let wrong_id = signature_line("alice", alice.key_id() ^ 1, &[0; 64]);
    let wrong_name = signature_line("alicia", alice.key_id(), &[0; 64]);
    let bad_sig = signature_line("alice", alice.key_id(), &[0; 64]);
    let short_sig = signature_line("alice", alice.key_id(), &[0; 63]);
    let many = |n: usize| format!("{text}\n{}", bob_line.repeat(n - 1) + sig_line);

    let malformed = |line| Err(NoteError::MalformedSignatureLine { line });
    let invalid = Err(NoteError::InvalidSignature { name: "alice".into() });
    let cases: Vec<(&str, String, Result<&str, NoteError>)> = vec![
        ("valid", signed.clone(), Ok(text)),
        ("unknown key too", format!("{text}\n{bob_line}{sig_line}"), Ok(text)),
        ("changed text", signed.replace("world", "World"), invalid.clone()),
        ("bad signature by known key", format!("{text}\n{bad_sig}"), invalid.clone()),
        ("truncated signature by known key", format!("{text}\n{short_sig}"), invalid.clone()),
        ("good then bad by known key", format!("{text}\n{sig_line}{bad_sig}"), invalid),
        ("only unknown keys", by_bob.clone(), Err(NoteError::NoKnownSignature)),
        ("known name, other key ID", format!("{text}\n{wrong_id}"), Err(NoteError::NoKnownSignature)),
        ("known key ID, other name", format!("{text}\n{wrong_name}"), Err(NoteError::NoKnownSignature)),
        ("100 signatures", many(MAX_SIGNATURES), Ok(text)),
        ("101 signatures", many(MAX_SIGNATURES + 1), Err(NoteError::TooManySignatures)),
        ("no blank line", format!("{text}{sig_line}"), Err(NoteError::MissingBlankLine)),
        ("no signatures", format!("{text}\n"), Err(NoteError::MalformedSignatureBlock)),
        ("no final newline", signed.trim_end().to_owned(), Err(NoteError::MalformedSignatureBlock)),
        ("trailing blank line", format!("{signed}\n"), Err(NoteError::MalformedSignatureBlock)),
        ("carriage return", signed.replace('\n', "\r\n"), Err(NoteError::ControlCharacter)),
        ("tab in text", signed.replace("hello", "hel\tlo"), Err(NoteError::ControlCharacter)),
        ("hyphen for em dash", signed.replace('\u{2014}', "-"), malformed(1)),
        ("no space after dash", signed.replace("\u{2014} ", "\u{2014}"), malformed(1)),
        ("no signature after name", format!("{text}\n\u{2014} alice\n"), malformed(1)),
        ("empty name", format!("{text}\n\u{2014}  AAAAAAA=\n"), malformed(1)),
        ("plus in name", format!("{text}\n\u{2014} a+b AAAAAAA=\n"), malformed(1)),
        ("bad base64", format!("{text}\n\u{2014} alice !!!!\n"), malformed(1)),
        ("unpadded base64", signed.replace('=', ""), malformed(1)),
        ("space in signature", format!("{text}\n\u{2014} alice AAAA AAA=\n"), malformed(1)),
        ("four bytes only", format!("{text}\n\u{2014} alice AAAAAA==\n"), malformed(1)),
        ("bad second line", format!("{text}\n{sig_line}garbage\n"), malformed(2)),
    ];
    for (name, input, want) in cases {
        let got = note::open(&input, &known).map(|o| o.text);
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn signing_requires_a_well_formed_text() {
    let alice = signer("alice", 1);
    assert_eq!(note::sign("no newline", &alice), Err(NoteError::TextWithoutFinalNewline));
    assert_eq!(note::sign("", &alice), Err(NoteError::TextWithoutFinalNewline));
    assert_eq!(note::sign("a\0b\n", &alice), Err(NoteError::ControlCharacter));
}

#[test]
fn key_texts_are_parsed_strictly() {
    let good = signer("log", 3);
    let vkey = good.verifier().to_string();
    let skey = good.to_key_text();
    let (name_id, b64) = vkey.rsplit_once('+').unwrap();
    let id = &name_id[4..];
    let other_id = format!("{:08x}", good.key_id() ^ 1);
    let key_b64 = |alg: u8, len: usize| {
        let mut b = vec![alg];
        b.extend(&good.verifier().public_key()[..len.min(32)]);
        b.resize(len + 1, 0);
        BASE64.encode(b)
    };
    // The identity point: a valid encoding of a point of small order.
    let weak = BASE64.encode(
        [&[1u8][..], &{
            let mut k = [0u8; 32];
            k[0] = 1;
            k
        }]
        .concat(),
    );

    let verifier_cases: Vec<(&str, String, KeyError)> = vec![
        ("empty name", format!("+{id}+{b64}"), KeyError::InvalidName),
        ("space in name", format!("a b+{id}+{b64}"), KeyError::InvalidName),
        ("no parts", "log".to_owned(), KeyError::Malformed),
        ("no key", format!("log+{id}"), KeyError::Malformed),
        ("short id", format!("log+{}+{b64}", &id[1..]), KeyError::Malformed),
        ("uppercase id", format!("log+{}+{b64}", id.to_uppercase()), KeyError::Malformed),
        ("id with sign", format!("log++{}+{b64}", &id[1..]), KeyError::Malformed),
        ("bad base64", format!("log+{id}+{}", &b64[1..]), KeyError::Malformed),
        ("trailing space", format!("{vkey} "), KeyError::Malformed),
        ("other algorithm", format!("log+{id}+{}", key_b64(2, 32)), KeyError::UnsupportedAlgorithm(2)),
        ("short key", format!("log+{id}+{}", key_b64(1, 31)), KeyError::WrongKeyLength(31)),
        ("long key", format!("log+{id}+{}", key_b64(1, 33)), KeyError::WrongKeyLength(33)),
        ("other key id", format!("log+{other_id}+{b64}"), KeyError::KeyIdMismatch),
        ("other name", format!("lag+{id}+{b64}"), KeyError::KeyIdMismatch),
        ("weak key", format!("log+{id}+{weak}"), KeyError::InvalidPublicKey),
        ("signer key", skey.clone(), KeyError::PrivateKeyGiven),
    ];
    for (name, input, want) in verifier_cases {
        assert_eq!(Verifier::parse(&input).map(|v| v.to_string()), Err(want), "{name}");
    }

    let (_, seed_b64) = skey.rsplit_once('+').unwrap();
    let signer_cases: Vec<(&str, String, KeyError)> = vec![
        ("verifier key", vkey.clone(), KeyError::NotASignerKey),
        ("lowercase prefix", skey.replace("PRIVATE+KEY", "private+key"), KeyError::NotASignerKey),
        ("bad name", format!("PRIVATE+KEY+a b+{id}+{seed_b64}"), KeyError::InvalidName),
        ("no key", format!("PRIVATE+KEY+log+{id}"), KeyError::Malformed),
        ("other key id", format!("PRIVATE+KEY+log+{other_id}+{seed_b64}"), KeyError::KeyIdMismatch),
        ("short seed", format!("PRIVATE+KEY+log+{id}+{}", key_b64(1, 16)), KeyError::WrongKeyLength(16)),
    ];
    for (name, input, want) in signer_cases {
        assert_eq!(Signer::parse(&input).map(|s| s.key_id()), Err(want), "{name}");
    }

    for name in ["", "a b", "a+b", "tab\there", "nbsp\u{a0}here", "line\nbreak"] {
        assert_eq!(Signer::from_seed(name, &[1; 32]).map(|s| s.key_id()), Err(KeyError::InvalidName));
        let public = good.verifier().public_key();
        assert_eq!(Verifier::new(name, &public).map(|v| v.key_id()), Err(KeyError::InvalidName));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsers_never_panic(s in "\\PC*", t in ".*") {
        let alice = signer("alice", 1);
        let _ = note::open(&s, &[alice.verifier()]);
        let _ = note::open(&t, &[alice.verifier()]);
        let _ = Verifier::parse(&s);
        let _ = Signer::parse(&s);
        let _ = Verifier::parse(&format!("alice+{t}"));
        let _ = Signer::parse(&format!("PRIVATE+KEY+alice+{t}"));
    }

}

proptest! {
    // Each case signs and verifies: fewer of them.
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Any one-character edit of a signed note either fails to open or leaves the text intact
    /// (an edit to the signature line of an unknown key, for instance).
    #[test]
    fn edited_notes_never_yield_other_text(at in any::<prop::sample::Index>(), c in any::<char>(), delete in any::<bool>()) {
        let alice = signer("alice", 1);
        let text = "origin\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        let signed = note::sign(text, &alice).unwrap() + &note::sign(text, &signer("bob", 2)).unwrap()[text.len() + 1..];
        let mut chars: Vec<char> = signed.chars().collect();
        let i = at.index(chars.len());
        if delete { chars.remove(i); } else { chars.insert(i, c); }
        let edited: String = chars.into_iter().collect();
        if let Ok(opened) = note::open(&edited, &[alice.verifier()]) {
            prop_assert_eq!(opened.text, text);
        }
    }
}
