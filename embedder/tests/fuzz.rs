//! Property tests: random bytes, and real documents with random damage, never make extraction
//! panic, hang or exceed its limits; each gives text or a typed error. A parser panic, which
//! extraction catches and reports as `ParserPanicked`, fails the test.

mod support;

use std::time::{Duration, Instant};

use proptest::prelude::*;
use prospector_embedder::extract::{ExtractErrorKind, Limits, extract};
use support::column;

fn limits() -> Limits {
    Limits {
        max_input_bytes: 4 << 20,
        max_decompressed_bytes: 16 << 20,
        max_duration: Duration::from_secs(2),
        max_text_chars: 1 << 20,
        ..Limits::default()
    }
}

/// Runs one extraction of `bytes` (described by `input` in failure messages) and checks that no
/// parser panicked and the limits held.
fn check(input: &str, bytes: &[u8]) {
    let limits = limits();
    let started = Instant::now();
    let outcome = extract("fuzz", bytes, None, &limits);
    // Cooperative deadlines are checked between pages and operations: allow one slice more.
    assert!(started.elapsed() < limits.max_duration * 3, "{input}: took {:?}", started.elapsed());
    match outcome {
        Ok(extracted) => {
            assert!(extracted.text.chars().count() <= limits.max_text_chars, "{input}");
            assert!(!extracted.text.trim().is_empty(), "{input}");
        }
        Err(e) => {
            assert!(!matches!(e.kind, ExtractErrorKind::ParserPanicked { .. }), "{input} ({} bytes): {e}", bytes.len())
        }
    }
}

/// The documents the damage is applied to, each with its description.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let sample = |p: &str| {
        std::fs::read(format!("{}/tests/fixtures/pdf/py-pdf-sample-files/{p}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    };
    vec![
        (
            "generated compressed PDF",
            support::pdf(&[column(72.0, &["Fuzzing seed text", "second line ünïcödé"])], true),
        ),
        ("generated Type0-font PDF", support::pdf(&[column(72.0, &["Уникод 日本語"])], false)),
        ("generated DOCX", support::docx("header", &["a paragraph", "another one"], &[vec!["a", "b"], vec!["c", "d"]])),
        ("001-trivial/minimal-document.pdf", sample("001-trivial/minimal-document.pdf")),
        ("011-google-doc-document/google-doc-document.pdf", sample("011-google-doc-document/google-doc-document.pdf")),
        ("HTML page", b"<html><body><p>fuzz &amp; more</p><script>x</script></body></html>".to_vec()),
    ]
}

#[derive(Clone, Debug)]
enum Damage {
    Flip { at: usize, value: u8 },
    Insert { at: usize, bytes: Vec<u8> },
    Delete { at: usize, len: usize },
    Truncate { at: usize },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Damage::Flip { at, value }),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(at, bytes)| Damage::Insert { at, bytes }),
        (any::<usize>(), 1usize..512).prop_map(|(at, len)| Damage::Delete { at, len }),
        any::<usize>().prop_map(|at| Damage::Truncate { at }),
    ]
}

fn apply(mut bytes: Vec<u8>, damages: &[Damage]) -> Vec<u8> {
    for d in damages {
        if bytes.is_empty() {
            break;
        }
        match d {
            Damage::Flip { at, value } => {
                let i = at % bytes.len();
                bytes[i] = *value;
            }
            Damage::Insert { at, bytes: extra } => {
                let i = at % bytes.len();
                bytes.splice(i..i, extra.iter().copied());
            }
            Damage::Delete { at, len } => {
                let i = at % bytes.len();
                let end = (i + len).min(bytes.len());
                bytes.drain(i..end);
            }
            Damage::Truncate { at } => {
                let i = at % bytes.len();
                bytes.truncate(i.max(1));
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        check("random bytes", &bytes);
    }

    #[test]
    fn random_bytes_behind_real_magic(magic in 0usize..3, tail in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let (name, magic) = [("PDF", &b"%PDF-1.7\n"[..]), ("zip", b"PK\x03\x04"), ("UTF-16", b"\xff\xfe")][magic];
        let mut bytes = magic.to_vec();
        bytes.extend(tail);
        check(&format!("random bytes behind the {name} magic"), &bytes);
    }

    #[test]
    fn damaged_real_documents(seed in 0usize..6, damages in proptest::collection::vec(damage(), 1..8)) {
        let (name, original) = seeds().swap_remove(seed);
        let bytes = apply(original, &damages);
        check(&format!("{name} damaged by {damages:?}"), &bytes);
    }
}
