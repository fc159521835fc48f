//! The embedding benchmark behind `prospector-embedder bench`: strings in, vectors out, timed
//! end to end (tokenisation included), after one warm-up pass.

use std::time::Instant;

use serde::Serialize;

use crate::embed::{EmbedError, Embedder};

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
}

pub fn run(embedder: &Embedder, texts: &[String], passes: usize) -> Result<BenchReport, EmbedError> {
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
    Ok(BenchReport {
        chunks: texts.len(),
        real_tokens,
        passes,
        seconds,
        chunks_per_second: (texts.len() * passes) as f64 / seconds,
        tokens_per_second: (real_tokens * passes) as f64 / seconds,
        device: format!("{:?}", embedder.device()).to_lowercase(),
    })
}
