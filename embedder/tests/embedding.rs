//! The embedder against sentence-transformers: the real model through the real ONNX Runtime
//! (installed by `hack/model.sh` and `hack/onnxruntime.sh`), compared with the reference vectors
//! and token ids in `fixtures/embeddings/reference.json`.

use std::sync::OnceLock;

use prospector_embedder::embed::{DIMENSIONS, Embedder, EmbedderConfig, Graph, cosine};
use prospector_embedder::paths::{self, ProcessEnv};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    max_seq_length: usize,
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    text: String,
    input_ids: Vec<u32>,
    embedding: Vec<f32>,
}

fn reference() -> Reference {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/embeddings/reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn load(graph: Graph) -> Embedder {
    let resolved = paths::resolve(&ProcessEnv).unwrap();
    resolved.check().unwrap_or_else(|e| panic!("{e}: run `make deps` (hack/deps.sh) first"));
    let mut config = EmbedderConfig::new(&resolved.model_dir, &resolved.onnxruntime);
    config.threads = 2;
    config.graph = graph;
    Embedder::load(&config).unwrap()
}

/// The default (int8) graph.
fn embedder() -> &'static Embedder {
    static EMBEDDER: OnceLock<Embedder> = OnceLock::new();
    EMBEDDER.get_or_init(|| load(Graph::Int8))
}

fn fused() -> &'static Embedder {
    static EMBEDDER: OnceLock<Embedder> = OnceLock::new();
    EMBEDDER.get_or_init(|| load(Graph::Fused))
}

fn plain() -> &'static Embedder {
    static EMBEDDER: OnceLock<Embedder> = OnceLock::new();
    EMBEDDER.get_or_init(|| load(Graph::Plain))
}

#[test]
fn token_ids_equal_the_reference() {
    let reference = reference();
    assert_eq!(reference.max_seq_length, prospector_embedder::embed::MAX_TOKENS);
    let texts: Vec<&str> = reference.items.iter().map(|i| i.text.as_str()).collect();
    let tokens = embedder().tokenize(&texts).unwrap();
    for (item, tokens) in reference.items.iter().zip(&tokens) {
        assert_eq!(tokens.ids, item.input_ids, "token ids of {:?}", item.text);
    }
    // The long item is the truncation case.
    assert!(tokens.iter().any(|t| t.ids.len() == 256));
}

#[test]
fn vectors_match_sentence_transformers() {
    // The int8 graph scales each token's row by itself, so batchmates cannot move a vector.
    check_against_reference(embedder(), 0.9999);
}

#[test]
fn a_vector_does_not_depend_on_its_batchmates() {
    // Every reference text alone, then in one batch with full-length chunks whose activations
    // are larger: per-batch (dynamic) int8 scales would round the short texts differently.
    let reference = reference();
    let texts: Vec<&str> = reference.items.iter().map(|i| i.text.as_str()).collect();
    let long = "Our agents research each account, score its fit against the ideal customer profile, and draft \
                a first email grounded in the customer's own case studies and pricing sheets. "
        .repeat(6);
    for embedder in [embedder(), fused()] {
        let mut batch = texts.clone();
        batch.extend(std::iter::repeat_n(long.as_str(), 6));
        let together = embedder.embed(&batch).unwrap();
        let mut worst = f32::MAX;
        for (text, batched) in texts.iter().zip(&together) {
            let alone = embedder.embed(&[text]).unwrap();
            worst = worst.min(cosine(&alone[0], batched));
        }
        eprintln!("{:?}: lowest cosine alone vs batched {worst}", embedder.graph());
        assert!(worst >= 0.9999, "{:?}: alone vs batched {worst}", embedder.graph());
    }
}

#[test]
fn the_fp32_graphs_match_too() {
    check_against_reference(fused(), 0.99999);
    check_against_reference(plain(), 0.99999);
}

#[test]
fn int8_agrees_with_fp32_on_long_prose() {
    // Beyond the 21 reference texts: full-length chunks, where int8 error would accumulate.
    let sentence = "Our agents research each account, score its fit against the ideal customer profile, and draft a \
                    first email grounded in the customer's own case studies and pricing sheets.";
    let texts: Vec<String> = (1..=12).map(|n| std::iter::repeat_n(sentence, n).collect::<Vec<_>>().join(" ")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let int8 = embedder().embed(&refs).unwrap();
    let exact = plain().embed(&refs).unwrap();
    for (m, e) in int8.iter().zip(&exact) {
        assert!(cosine(m, e) >= 0.999, "cosine {}", cosine(m, e));
    }
}

/// Every reference vector within cosine 0.999; `batch_agreement`: how close a text embedded
/// alone stays to the same text embedded in a padded batch.
fn check_against_reference(embedder: &Embedder, batch_agreement: f32) {
    let reference = reference();
    let texts: Vec<&str> = reference.items.iter().map(|i| i.text.as_str()).collect();
    // All at once: batched, padded, reordered by length.
    let vectors = embedder.embed(&texts).unwrap();
    assert_eq!(vectors.len(), texts.len());
    let mut worst = f32::MAX;
    for (item, vector) in reference.items.iter().zip(&vectors) {
        assert_eq!(vector.len(), DIMENSIONS);
        let norm: f32 = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "not normalised: {norm}");
        let similarity = cosine(vector, &item.embedding);
        worst = worst.min(similarity);
        assert!(similarity >= 0.999, "cosine {similarity} for {:?}", item.text);
    }
    eprintln!("min cosine to sentence-transformers: {worst}");
    // One at a time gives the same vectors as in a padded batch.
    for (text, batched) in texts.iter().zip(&vectors).take(5) {
        let alone = embedder.embed(&[text]).unwrap();
        let agreement = cosine(&alone[0], batched);
        assert!(agreement >= batch_agreement, "alone vs batched: {agreement}");
    }
}

#[test]
fn different_texts_get_different_vectors() {
    let v = embedder().embed(&["We sell payroll software to banks.", "The cat sat on the mat."]).unwrap();
    assert!(cosine(&v[0], &v[1]) < 0.5);
}
