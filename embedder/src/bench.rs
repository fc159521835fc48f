//! The benchmarks behind `prospector-embedder bench` (strings in, vectors out, timed end to end
//! with tokenisation, after one warm-up pass) and `bench-extract` (documents in, text out).

use std::time::Instant;

use serde::Serialize;

use crate::embed::{EmbedError, Embedder, cosine};

/// What one benchmark run measured.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub chunks: usize,
    /// Tokens the model actually reads, `[CLS]`/`[SEP]` included and padding excluded.
    pub real_tokens: usize,
    pub passes: usize,
    pub seconds: f64,
    pub chunks_per_second: f64,
    pub tokens_per_second: f64,
    pub device: String,
    pub graph: String,
    /// Lowest cosine to the sentence-transformers reference vectors, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_cosine_to_reference: Option<f32>,
    /// Lowest cosine between a reference text embedded alone and the same text embedded in one
    /// batch with the other reference texts and the first corpus chunks: 1 when a vector does
    /// not depend on its batchmates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_cosine_alone_vs_batched: Option<f32>,
}

/// Texts with the vectors sentence-transformers gives them.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Reference {
    pub items: Vec<ReferenceItem>,
}

#[derive(Clone, Debug, serde::Deserialize)]
pub struct ReferenceItem {
    pub text: String,
    pub embedding: Vec<f32>,
}

pub fn run(
    embedder: &Embedder,
    texts: &[String],
    passes: usize,
    reference: Option<&Reference>,
) -> Result<BenchReport, EmbedError> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let real_tokens: usize = embedder.tokenize(&refs)?.iter().map(|t| t.ids.len()).sum();
    embedder.embed(&refs)?;
    let passes = passes.max(1);
    let start = Instant::now();
    for _ in 0..passes {
        let vectors = embedder.embed(&refs)?;
        std::hint::black_box(vectors);
    }
    let seconds = start.elapsed().as_secs_f64();
    let (min_cosine_to_reference, min_cosine_alone_vs_batched) = match reference {
        Some(reference) => {
            let mut alone = Vec::with_capacity(reference.items.len());
            for item in &reference.items {
                alone.extend(embedder.embed(&[item.text.as_str()])?);
            }
            let to_reference = alone.iter().zip(&reference.items).map(|(v, r)| cosine(v, &r.embedding));
            let mut batch: Vec<&str> = reference.items.iter().map(|i| i.text.as_str()).collect();
            batch.extend(refs.iter().take(11));
            let batched = embedder.embed(&batch)?;
            let alone_vs_batched = alone.iter().zip(&batched).map(|(a, b)| cosine(a, b));
            (Some(to_reference.fold(f32::MAX, f32::min)), Some(alone_vs_batched.fold(f32::MAX, f32::min)))
        }
        None => (None, None),
    };
    Ok(BenchReport {
        chunks: texts.len(),
        real_tokens,
        passes,
        seconds,
        chunks_per_second: (texts.len() * passes) as f64 / seconds,
        tokens_per_second: (real_tokens * passes) as f64 / seconds,
        device: format!("{:?}", embedder.device()).to_lowercase(),
        graph: format!("{:?}", embedder.graph()).to_lowercase(),
        min_cosine_to_reference,
        min_cosine_alone_vs_batched,
    })
}

/// What one extraction benchmark run measured.
#[derive(Clone, Debug, Serialize)]
pub struct ExtractionReport {
    pub documents: usize,
    pub pages: usize,
    pub characters: usize,
    pub passes: usize,
    pub seconds: f64,
    pub pages_per_second: f64,
}

/// Extracts every document `passes` times after a warm-up pass; a document that fails
/// fails the benchmark.
pub fn extraction(
    documents: &[(String, Vec<u8>)],
    passes: usize,
    limits: &crate::extract::Limits,
) -> Result<ExtractionReport, crate::extract::ExtractError> {
    let mut pages = 0;
    let mut characters = 0;
    for (name, bytes) in documents {
        let extracted = crate::extract::extract(name, bytes, None, limits)?;
        pages += extracted.pages;
        characters += extracted.text.chars().count();
    }
    let passes = passes.max(1);
    let start = Instant::now();
    for _ in 0..passes {
        for (name, bytes) in documents {
            std::hint::black_box(crate::extract::extract(name, bytes, None, limits)?);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(ExtractionReport {
        documents: documents.len(),
        pages,
        characters,
        passes,
        seconds,
        pages_per_second: (pages * passes) as f64 / seconds,
    })
}
