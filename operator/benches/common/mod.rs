//! What the benchmarks share: the fixture PDFs of the embedder's tests, and the prose chunks of
//! their text.

use std::path::{Path, PathBuf};

use prospector_embedder::chunk::Chunker;
use prospector_embedder::extract::{Limits, extract};

/// Every PDF under `embedder/tests/fixtures/pdf`, in path order.
pub fn fixture_pdfs() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../embedder/tests/fixtures/pdf")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("fixture directory").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "pdf") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The chunks of `text` that are prose: 40 tokens or more, and more than 60% letters (not
/// tables of contents, formulas or reference lists).
pub fn prose_chunks(chunker: &Chunker, text: &str) -> Vec<String> {
    chunker
        .chunk(text)
        .unwrap_or_default()
        .into_iter()
        .filter(|chunk| {
            let letters = chunk.text.chars().filter(|c| c.is_alphabetic()).count();
            chunk.tokens >= 40 && letters * 10 > chunk.text.len() * 6
        })
        .map(|chunk| chunk.text)
        .collect()
}

/// The prose chunks of every readable fixture PDF, deduplicated, in path order: the real text
/// (and, embedded, the real vectors) the search benchmarks build their corpora from.
#[allow(dead_code, reason = "the ingestion benchmark reads the fixtures itself, for their bytes too")]
pub fn fixture_prose(chunker: &Chunker) -> Vec<String> {
    let mut texts: Vec<String> = Vec::new();
    for file in fixture_pdfs() {
        let bytes = std::fs::read(&file).expect("fixture");
        let Ok(extracted) = extract(&file.display().to_string(), &bytes, None, &Limits::default()) else { continue };
        for chunk in prose_chunks(chunker, &extracted.text) {
            if !texts.contains(&chunk) {
                texts.push(chunk);
            }
        }
    }
    texts
}
