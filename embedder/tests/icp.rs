//! ICP extraction scored by micro-F1: over all four fields on the shared examples and on this
//! project's own short cases (other industries, regions, phrasings and negations than the
//! examples); and per field on multi-paragraph sales documents (press releases, battlecards,
//! case studies, job postings, playbooks, product sheets, "about us" pages) that name the
//! author, its competitors, partners and investors beside its customers.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use prospector_embedder::chunk::{ChunkConfig, Chunker};
use prospector_embedder::embed::{Embedder, EmbedderConfig};
use prospector_embedder::icp::{self, IcpCriteria};
use prospector_embedder::paths::{self, ProcessEnv};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    #[serde(default)]
    title: String,
    text: String,
    icp: IcpCriteria,
}

const FIELDS: [&str; 4] = ["industries", "sizes", "roles", "regions"];

fn cases(file: &str) -> Vec<Case> {
    let path = format!("{}/tests/fixtures/icp/{file}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn embedder() -> &'static Embedder {
    static EMBEDDER: OnceLock<Embedder> = OnceLock::new();
    EMBEDDER.get_or_init(|| {
        let resolved = paths::resolve(&ProcessEnv).unwrap();
        resolved.check().unwrap_or_else(|e| panic!("{e}: run `make deps` (hack/deps.sh) first"));
        let mut config = EmbedderConfig::new(&resolved.model_dir, &resolved.onnxruntime);
        config.threads = 2;
        Embedder::load(&config).unwrap()
    })
}

/// (true positives, false positives, false negatives) over all fields, printing every miss.
fn score(cases: &[Case]) -> (usize, usize, usize) {
    score_by_field(cases).iter().fold((0, 0, 0), |(tp, fp, fn_), c| (tp + c.0, fp + c.1, fn_ + c.2))
}

/// (true positives, false positives, false negatives) per field, in [`FIELDS`] order.
fn score_by_field(cases: &[Case]) -> [(usize, usize, usize); 4] {
    let mut counts = [(0, 0, 0); 4];
    // Chunked as the worker chunks a document: headings, sections and footers are read per
    // chunk, as in production.
    let chunker = Chunker::new(embedder().tokenizer(), ChunkConfig::default());
    for case in cases {
        let chunks = chunker.chunk(&case.text).unwrap();
        let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
        let got = icp::extract(&texts, Some(embedder())).unwrap().criteria();
        let fields = [
            ("industries", &got.target_industries, &case.icp.target_industries),
            ("sizes", &got.company_sizes, &case.icp.company_sizes),
            ("roles", &got.decision_makers, &case.icp.decision_makers),
            ("regions", &got.target_regions, &case.icp.target_regions),
        ];
        for ((field, got, want), (tp, fp, fn_)) in fields.into_iter().zip(&mut counts) {
            let got: BTreeSet<&String> = got.iter().collect();
            let want: BTreeSet<&String> = want.iter().collect();
            *tp += got.intersection(&want).count();
            let extra: Vec<_> = got.difference(&want).collect();
            let missing: Vec<_> = want.difference(&got).collect();
            *fp += extra.len();
            *fn_ += missing.len();
            if !extra.is_empty() || !missing.is_empty() {
                let what: String = if case.title.is_empty() { case.text.clone() } else { case.title.clone() };
                eprintln!("{field}: extra {extra:?}, missing {missing:?} in {what:?}");
            }
        }
    }
    counts
}

fn f1((tp, fp, fn_): (usize, usize, usize)) -> f64 {
    let precision = tp as f64 / (tp + fp).max(1) as f64;
    let recall = tp as f64 / (tp + fn_).max(1) as f64;
    2.0 * precision * recall / (precision + recall).max(f64::EPSILON)
}

/// Scores `file` and holds its micro-F1 to `floor`.
fn assert_f1(file: &str, floor: f64) {
    let counts = score(&cases(file));
    let f1 = f1(counts);
    eprintln!("{file}: (tp, fp, fn) = {counts:?}, micro-F1 {f1:.3}");
    assert!(f1 >= floor, "{file}: micro-F1 {f1:.3}");
}

#[test]
fn micro_f1_on_the_shared_examples() {
    assert_f1("examples.json", 0.9);
}

#[test]
fn micro_f1_on_our_own_cases() {
    assert_f1("own_cases.json", 0.9);
}

/// Written after the phrase lists were last changed and never tuned against: the score a new
/// customer's wording can expect, held to a lower bar than the tuned sets.
#[test]
fn micro_f1_on_held_out_cases() {
    assert_f1("holdout_cases.json", 0.85);
}

/// Scores `file` per field, holds each field's micro-F1 to `floor` and all fields' to `floor_all`.
fn assert_f1_per_field(file: &str, floor: f64, floor_all: f64) {
    let counts = score_by_field(&cases(file));
    let mut low = Vec::new();
    for (field, counts) in FIELDS.iter().zip(counts) {
        let f1 = f1(counts);
        eprintln!("{file}: {field:<10} (tp, fp, fn) = {counts:?}, micro-F1 {f1:.3}");
        if f1 < floor {
            low.push(format!("{field} {f1:.3}"));
        }
    }
    let all = counts.iter().fold((0, 0, 0), |(a, b, c), x| (a + x.0, b + x.1, c + x.2));
    eprintln!("{file}: all fields (tp, fp, fn) = {all:?}, micro-F1 {:.3}", f1(all));
    assert!(low.is_empty(), "{file}: fields below {floor}: {low:?}");
    assert!(f1(all) >= floor_all, "{file}: micro-F1 {:.3}", f1(all));
}

/// Multi-paragraph sales documents the extractor was developed against.
#[test]
fn micro_f1_per_field_on_the_tuning_documents() {
    assert_f1_per_field("documents_tuning.json", 0.9, 0.95);
}

/// A second set, written from the same brief by another assistant after the context rules were
/// first done: scored untuned it gave micro-F1 0.754 (docs/benchmarks.md), and the rules were
/// then developed against it as well.
#[test]
fn micro_f1_per_field_on_the_round_one_documents() {
    assert_f1_per_field("documents_round1.json", 0.8, 0.9);
}

/// A third set from the same brief, scored untuned first (0.802) and developed against since.
/// (Each round's first score is in docs/benchmarks.md.)
#[test]
fn micro_f1_per_field_on_the_round_two_documents() {
    assert_f1_per_field("documents_round2.json", 0.8, 0.9);
}

/// A fourth set from the same brief, scored untuned first (0.841) and developed against since
/// (0.875 now); its industries are the field the rules read worst.
#[test]
fn micro_f1_per_field_on_the_round_three_documents() {
    assert_f1_per_field("documents_round3.json", 0.7, 0.85);
}

/// A fifth set from the same brief, scored untuned first (0.8996) and developed against since
/// (0.931 now).
#[test]
fn micro_f1_per_field_on_the_round_four_documents() {
    assert_f1_per_field("documents_round4.json", 0.8, 0.9);
}

/// A sixth set from the same brief, written after the fifth round and scored untuned first
/// (0.894, short of the 0.9 target), then developed against in the sixth round (0.977 now).
#[test]
fn micro_f1_per_field_on_the_round_five_documents() {
    assert_f1_per_field("documents_round5.json", 0.9, 0.95);
}

/// Two sets from a rewritten brief (more traps per document), written after the sixth round by
/// two assistants and scored untuned first (0.855 and 0.858), then developed against in the
/// seventh round.
#[test]
fn micro_f1_per_field_on_the_round_six_a_documents() {
    assert_f1_per_field("documents_round6a.json", 0.85, 0.9);
}

/// The second of those two sets.
#[test]
fn micro_f1_per_field_on_the_round_six_b_documents() {
    assert_f1_per_field("documents_round6b.json", 0.8, 0.9);
}

/// Two sets written and labelled after the extractor's last round of rules (the seventh), each by
/// its own assistant given only the brief and the labelling rules (the brief of round
/// six), and never tuned against: the score a customer's own documents can expect. Issue 12's
/// target is micro-F1 ≥ 0.9 over all fields of the untuned documents; scored once, the two sets
/// gave 0.935 and 0.885, 0.910 together (docs/benchmarks.md records each round). The floor is the
/// target, so that a change cannot take the untuned score under it unnoticed.
const UNTUNED_FLOOR: f64 = 0.9;
const UNTUNED_SETS: [&str; 2] = ["documents_untuned_c.json", "documents_untuned_d.json"];

#[test]
fn micro_f1_on_the_untuned_documents() {
    let mut all_sets = [(0, 0, 0); 4];
    for file in UNTUNED_SETS {
        let counts = score_by_field(&cases(file));
        let all = counts.iter().fold((0, 0, 0), |(a, b, c), x| (a + x.0, b + x.1, c + x.2));
        eprintln!("{file}: all fields (tp, fp, fn) = {all:?}, micro-F1 {:.4}", f1(all));
        for (sum, c) in all_sets.iter_mut().zip(counts) {
            *sum = (sum.0 + c.0, sum.1 + c.1, sum.2 + c.2);
        }
    }
    for (field, counts) in FIELDS.iter().zip(all_sets) {
        eprintln!("untuned, both sets: {field:<10} (tp, fp, fn) = {counts:?}, micro-F1 {:.3}", f1(counts));
    }
    let all = all_sets.iter().fold((0, 0, 0), |(a, b, c), x| (a + x.0, b + x.1, c + x.2));
    let f1 = f1(all);
    // Four decimals: 0.8996 is below the target even where three round it up to 0.900.
    eprintln!("untuned, both sets: all fields (tp, fp, fn) = {all:?}, micro-F1 {f1:.3} ({f1:.4})");
    assert!(f1 >= UNTUNED_FLOOR, "untuned documents: micro-F1 {f1:.3}");
}

#[test]
fn similarity_finds_an_industry_no_phrase_names() {
    let text = "Our customers grow wheat, corn and soybeans and raise cattle.";
    let extraction = icp::extract(&[text], Some(embedder())).unwrap();
    let labels: Vec<_> = extraction.target_industries.iter().map(|l| (l.label, l.evidence)).collect();
    assert_eq!(labels, vec![("agriculture", icp::Evidence::Similarity)]);
    // Without the model, the same text yields nothing: the label came from the embedding.
    assert!(icp::extract(&[text], None).unwrap().target_industries.is_empty());
}

/// A long report (about 30 pages of text) that mentions industries, places, sizes and titles on
/// every page without saying who buys, and one passage about the author's customers.
fn long_report(with_customer_passage: bool) -> String {
    let sectors = ["banks", "hospitals", "retailers", "manufacturers", "universities", "telecom operators"];
    let places = ["Brazil", "Japan", "Germany", "Kenya", "Texas", "Dubai"];
    let mut paragraphs = Vec::new();
    for page in 0..30 {
        for part in 0..4 {
            let (a, b) = (sectors[(page + part) % 6], sectors[(page + part + 2) % 6]);
            let (p, q) = (places[(page * 2 + part) % 6], places[(page + 3 * part + 1) % 6]);
            paragraphs.push(format!(
                "Section {page}.{part}. Survey responses from {a} and {b} in {p} and {q} differed in how \
                 quickly new tools were adopted. Large enterprises with several thousand employees reported \
                 longer procurement cycles than small businesses, and the CIO or a Director of Operations \
                 usually signed the survey. Regional differences in {p} were smaller than expected, and \
                 the {a} sampled in {q} reported the highest satisfaction."
            ));
        }
        if with_customer_passage && page == 17 {
            paragraphs.push(
                "Who we sell to: our customers are mid-sized insurers in Canada and the United States, \
                 and the CFO signs the contract."
                    .to_owned(),
            );
        }
    }
    paragraphs.join("\n\n")
}

/// The ICP of a long document comes from its passage about customers, not from a bag of every
/// mention; without such a passage, the uncued mentions are all it has, at lower confidence.
#[test]
fn a_long_documents_icp_comes_from_its_passages_about_customers() {
    let chunker = Chunker::new(embedder().tokenizer(), ChunkConfig::default());
    let extract = |text: &str| {
        let chunks = chunker.chunk(text).unwrap();
        assert!(chunks.len() >= 40, "a long document: {} chunks", chunks.len());
        let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
        icp::extract(&texts, Some(embedder())).unwrap()
    };
    let with = extract(&long_report(true));
    let expected = IcpCriteria {
        target_industries: vec!["insurance".into()],
        company_sizes: vec!["mid-market".into()],
        decision_makers: vec!["CFO".into()],
        target_regions: vec!["North America".into()],
    };
    assert_eq!(with.criteria(), expected);
    for label in with.target_industries.iter().chain(&with.company_sizes).chain(&with.decision_makers) {
        assert!(label.confidence >= 0.8, "a cued label: {label:?}");
    }

    let without = extract(&long_report(false));
    let criteria = without.criteria();
    assert!(criteria.target_industries.len() >= 5, "every uncued mention: {criteria:?}");
    assert!(criteria.target_regions.len() >= 4, "{criteria:?}");
    for label in without.target_industries.iter().chain(&without.target_regions) {
        assert!(label.confidence <= 0.75, "an uncued label is less certain: {label:?}");
    }
}
