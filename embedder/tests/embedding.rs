//! The embedder against sentence-transformers: the real model through the native kernels and
//! through the real ONNX Runtime (installed by `hack/model.sh` and `hack/onnxruntime.sh`),
//! compared with the reference vectors and token ids in `fixtures/embeddings/reference.json`.

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

fn load_with(graph: Graph, threads: usize) -> Embedder {
    let resolved = paths::resolve(&ProcessEnv).unwrap();
    resolved.check().unwrap_or_else(|e| panic!("{e}: run `make deps` (hack/deps.sh) first"));
    let mut config = EmbedderConfig::new(&resolved.model_dir, &resolved.onnxruntime);
    config.threads = threads;
    config.graph = graph;
    Embedder::load(&config).unwrap()
}

fn load(graph: Graph) -> Embedder {
    load_with(graph, 2)
}

/// The default: the native kernels where the CPU has them.
fn embedder() -> &'static Embedder {
    static EMBEDDER: OnceLock<Embedder> = OnceLock::new();
    EMBEDDER.get_or_init(|| load(Graph::default()))
}

/// The ONNX int8 graph, the fallback on CPUs without AVX-512 VNNI and BF16.
fn int8() -> &'static Embedder {
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
fn the_default_is_the_native_engine_where_the_cpu_has_avx512_vnni_and_bf16() {
    let supported = prospector_embedder::embed::native_supported();
    // `make test` sets PROSPECTOR_REQUIRE_NATIVE=1: there, a CPU that cannot run the default
    // engine is a failure, not a fallback that leaves it untested.
    if std::env::var("PROSPECTOR_REQUIRE_NATIVE").is_ok_and(|v| v == "1") {
        assert!(supported, "this CPU has no AVX-512 VNNI/BF16, and PROSPECTOR_REQUIRE_NATIVE=1");
    }
    let expected = if supported { Graph::Native } else { Graph::Int8 };
    eprintln!("this CPU runs {expected:?} by default");
    assert_eq!(Graph::default(), Graph::Native);
    assert_eq!(embedder().graph(), expected);
}

#[test]
fn vectors_match_sentence_transformers() {
    // Both int8 forms scale each token's row by itself, so batchmates cannot move a vector.
    check_against_reference(embedder(), 0.9999);
    check_against_reference(int8(), 0.9999);
}

#[test]
fn native_vectors_are_the_same_bits_on_one_thread_or_two_and_in_any_group() {
    // Each row is computed by the same instructions whichever thread and group it falls in.
    let reference = reference();
    let mut texts: Vec<&str> = reference.items.iter().map(|i| i.text.as_str()).collect();
    let two = embedder().embed(&texts).unwrap();
    let one = load_with(Graph::default(), 1).embed(&texts).unwrap();
    assert_eq!(one, two);
    texts.reverse();
    let mut reversed = embedder().embed(&texts).unwrap();
    reversed.reverse();
    assert_eq!(reversed, two);
}

#[test]
fn token_ids_the_model_cannot_read_are_an_error_not_a_crash() {
    let outside = prospector_embedder::embed::Tokens { ids: vec![101, 40_000, 102], truncated: false };
    let too_long = prospector_embedder::embed::Tokens { ids: vec![1000; 600], truncated: false };
    let empty = prospector_embedder::embed::Tokens { ids: vec![], truncated: false };
    assert!(embedder().embed_tokens(std::slice::from_ref(&empty)).is_err(), "an empty sequence");
    for embedder in [embedder(), int8()] {
        for tokens in [&outside, &too_long] {
            let outcome = embedder.embed_tokens(std::slice::from_ref(tokens));
            assert!(outcome.is_err(), "{:?} accepted {} ids", embedder.graph(), tokens.ids.len());
        }
    }
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
    for embedder in [embedder(), int8(), fused()] {
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
fn both_int8_forms_agree_with_fp32_on_long_prose() {
    // Beyond the 21 reference texts: full-length chunks, where int8 error would accumulate.
    let sentence = "Our agents research each account, score its fit against the ideal customer profile, and draft a \
                    first email grounded in the customer's own case studies and pricing sheets.";
    let texts: Vec<String> = (1..=12).map(|n| std::iter::repeat_n(sentence, n).collect::<Vec<_>>().join(" ")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let exact = plain().embed(&refs).unwrap();
    for embedder in [embedder(), int8()] {
        let vectors = embedder.embed(&refs).unwrap();
        for (m, e) in vectors.iter().zip(&exact) {
            assert!(cosine(m, e) >= 0.999, "{:?}: cosine {}", embedder.graph(), cosine(m, e));
        }
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
