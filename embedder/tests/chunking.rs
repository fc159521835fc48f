//! Chunking with the model's real tokenizer: sizes, sentence boundaries, overlap, and no token
//! left out of every chunk (property-tested on random prose).

use std::sync::OnceLock;

use proptest::prelude::*;
use prospector_embedder::chunk::{ChunkConfig, Chunker};
use prospector_embedder::paths::{self, ProcessEnv};
use tokenizers::Tokenizer;

fn tokenizer() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let resolved = paths::resolve(&ProcessEnv).unwrap();
        resolved.check().unwrap_or_else(|e| panic!("{e}: run `make deps` (hack/deps.sh) first"));
        let mut t = Tokenizer::from_file(resolved.model_dir.join("tokenizer.json")).unwrap();
        t.with_truncation(None).unwrap();
        t.with_padding(None);
        t
    })
}

fn token_offsets(text: &str) -> Vec<(usize, usize)> {
    tokenizer().encode(text, false).unwrap().get_offsets().to_vec()
}

/// Every token of `text` lies inside some chunk, and no chunk exceeds the model's window.
fn check(text: &str, config: ChunkConfig) -> Vec<prospector_embedder::chunk::Chunk> {
    let chunker = Chunker::new(tokenizer(), config);
    let chunks = chunker.chunk(text).unwrap();
    for chunk in &chunks {
        let counted = token_offsets(&text[chunk.start..chunk.end]).len();
        assert!(counted <= config.max_tokens, "chunk {} has {counted} tokens", chunk.index);
        assert_eq!(chunk.text, text[chunk.start..chunk.end].trim());
    }
    for (start, end) in token_offsets(text) {
        assert!(
            chunks.iter().any(|c| c.start <= start && end <= c.end),
            "token {:?} at {start}..{end} is in no chunk",
            &text[start..end]
        );
    }
    chunks
}

const SENTENCES: &[&str] = &[
    "Prospector qualifies inbound leads for mid-market software companies.",
    "Our agents research each account, score its fit against the ideal customer profile, and draft a first email.",
    "Customers in Europe and North America use it to cut response times from days to minutes.",
    "Every reply is grounded in the documents the customer uploads, such as case studies and pricing sheets!",
    "Why does that matter?",
    "Because buyers expect answers that are specific to their industry, their size and their region.",
];

fn prose(sentences: usize) -> String {
    (0..sentences).map(|i| SENTENCES[i % SENTENCES.len()]).collect::<Vec<_>>().join(" ")
}

#[test]
fn chunks_are_about_two_hundred_tokens_on_sentence_boundaries_with_overlap() {
    let text = prose(120);
    let config = ChunkConfig::default();
    let chunks = check(&text, config);
    assert!(chunks.len() >= 8, "{} chunks", chunks.len());
    for chunk in &chunks[..chunks.len() - 1] {
        assert!((200..=config.max_tokens).contains(&chunk.tokens), "chunk {} has {} tokens", chunk.index, chunk.tokens);
        // Ends on a sentence end.
        assert!(chunk.text.ends_with(['.', '!', '?']), "{:?}", &chunk.text[chunk.text.len() - 20..]);
    }
    for pair in chunks.windows(2) {
        assert!(pair[1].start < pair[0].end, "chunks {} and {} do not overlap", pair[0].index, pair[1].index);
        assert!(pair[1].start > pair[0].start);
    }
}

#[test]
fn a_sentence_longer_than_the_window_is_cut_between_words() {
    let text = std::iter::repeat_n("alpha beta gamma delta", 400).collect::<Vec<_>>().join(" ");
    let chunks = check(&text, ChunkConfig::default());
    assert!(chunks.len() >= 6);
    assert!(chunks.iter().all(|c| !c.text.starts_with(' ')));
}

#[test]
fn one_enormous_word_is_cut_hard() {
    let text = "x".repeat(20_000) + " end.";
    check(&text, ChunkConfig::default());
}

#[test]
fn short_and_empty_texts() {
    assert!(check("", ChunkConfig::default()).is_empty());
    let chunks = check("Just one line.", ChunkConfig::default());
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].text, "Just one line.");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_prose_is_fully_covered(
        words in proptest::collection::vec(
            prop_oneof!["[a-z]{1,12}", "[A-Z][a-z]{0,8}", "[0-9]{1,6}", Just(".".to_owned()), Just("!".to_owned()),
                Just("\n".to_owned()), Just("\n\n".to_owned()), Just("ünïcödé".to_owned()), Just("日本語".to_owned())],
            0..1500),
        target in 20usize..240,
    ) {
        let text = words.join(" ");
        let config = ChunkConfig { target_tokens: target, max_tokens: 254, overlap_tokens: 40 };
        check(&text, config);
    }
}
