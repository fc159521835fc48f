//! Property tests: random bytes, and real documents with random damage, never make extraction
//! panic, hang or exceed its limits; each gives text or a typed error.

mod support;

use std::time::{Duration, Instant};

use proptest::prelude::*;
use prospector_embedder::extract::{Limits, extract};
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

/// Runs one extraction and checks the limits held.
fn check(bytes: &[u8]) {
    let limits = limits();
    let started = Instant::now();
    let outcome = extract("fuzz", bytes, None, &limits);
    // Cooperative deadlines are checked between pages and operations: allow one slice more.
    assert!(started.elapsed() < limits.max_duration * 3, "took {:?}", started.elapsed());
    if let Ok(extracted) = outcome {
        assert!(extracted.text.chars().count() <= limits.max_text_chars);
        assert!(!extracted.text.trim().is_empty());
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let sample = |p: &str| {
        std::fs::read(format!("{}/tests/fixtures/pdf/py-pdf-sample-files/{p}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    };
    vec![
        support::pdf(&[column(72.0, &["Fuzzing seed text", "second line ünïcödé"])], true),
        support::pdf(&[column(72.0, &["Уникод 日本語"])], false),
        support::docx("header", &["a paragraph", "another one"], &[vec!["a", "b"], vec!["c", "d"]]),
        sample("001-trivial/minimal-document.pdf"),
        sample("011-google-doc-document/google-doc-document.pdf"),
        b"<html><body><p>fuzz &amp; more</p><script>x</script></body></html>".to_vec(),
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
        check(&bytes);
    }

    #[test]
    fn random_bytes_behind_real_magic(magic in 0usize..3, tail in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let mut bytes = [&b"%PDF-1.7\n"[..], b"PK\x03\x04", b"\xff\xfe"][magic].to_vec();
        bytes.extend(tail);
        check(&bytes);
    }

    #[test]
    fn damaged_real_documents(seed in 0usize..6, damages in proptest::collection::vec(damage(), 1..8)) {
        let bytes = apply(seeds()[seed].clone(), &damages);
        check(&bytes);
    }
}
