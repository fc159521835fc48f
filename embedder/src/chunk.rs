//! Chunking: text cut into pieces of about 200–256 model tokens, counted with the model's own
//! tokenizer, on sentence boundaries, with a sentence or two of overlap. No piece is longer
//! than the model reads (254 tokens plus `[CLS]`/`[SEP]`), so nothing is silently truncated:
//! a sentence too long for one chunk is cut between words.

use tokenizers::Tokenizer;

/// Sizes of the chunks, in tokens (without `[CLS]`/`[SEP]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkConfig {
    /// A chunk is closed once it reaches this many tokens.
    pub target_tokens: usize,
    /// Never more than this (the model's 256 minus the two special tokens).
    pub max_tokens: usize,
    /// Up to this many tokens of whole sentences are repeated at the start of the next chunk.
    pub overlap_tokens: usize,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        Self { target_tokens: 220, max_tokens: 254, overlap_tokens: 40 }
    }
}

/// A piece of the text, by byte range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub index: usize,
    pub text: String,
    pub start: usize,
    pub end: usize,
    pub tokens: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("tokenisation failed: {0}")]
pub struct ChunkError(String);

/// Cuts text into chunks with a tokenizer.
#[derive(Clone, Debug)]
pub struct Chunker {
    tokenizer: Tokenizer,
    config: ChunkConfig,
}

/// A unit of packing: a sentence, or a piece of a sentence too long for one chunk.
#[derive(Clone, Copy, Debug)]
struct Unit {
    start: usize,
    end: usize,
    tokens: usize,
}

impl Chunker {
    pub fn new(tokenizer: &Tokenizer, config: ChunkConfig) -> Self {
        let mut tokenizer = tokenizer.clone();
        // Counting must see every token.
        let _ = tokenizer.with_truncation(None);
        tokenizer.with_padding(None);
        Self { tokenizer, config }
    }

    /// Token offsets (byte ranges) of `text`, without special tokens.
    fn token_offsets(&self, text: &str) -> Result<Vec<(usize, usize)>, ChunkError> {
        let encoding = self.tokenizer.encode(text, false).map_err(|e| ChunkError(e.to_string()))?;
        Ok(encoding.get_offsets().to_vec())
    }

    pub fn chunk(&self, text: &str) -> Result<Vec<Chunk>, ChunkError> {
        let offsets = self.token_offsets(text)?;
        let units = self.units(text, &offsets);
        Ok(self.pack(text, &units))
    }

    /// Sentences with their token counts; sentences over the maximum are cut between tokens,
    /// preferring a cut where whitespace separates them.
    fn units(&self, text: &str, offsets: &[(usize, usize)]) -> Vec<Unit> {
        let mut units = Vec::new();
        let mut next_token = 0;
        for (start, end) in sentences(text) {
            let first = next_token;
            while next_token < offsets.len() && offsets[next_token].0 < end {
                next_token += 1;
            }
            let mut tokens = &offsets[first..next_token];
            let mut unit_start = start;
            while tokens.len() > self.config.max_tokens {
                // Cut at the last word boundary within the limit, or hard at the limit.
                let limit = self.config.max_tokens;
                let cut = (limit / 2..limit).rev().find(|i| tokens[*i].0 > tokens[*i - 1].1).unwrap_or(limit);
                let cut_at = tokens[cut].0;
                units.push(Unit { start: unit_start, end: tokens[cut - 1].1.max(unit_start), tokens: cut });
                unit_start = cut_at;
                tokens = &tokens[cut..];
            }
            if !tokens.is_empty() {
                units.push(Unit { start: unit_start, end, tokens: tokens.len() });
            }
        }
        units
    }

    fn pack(&self, text: &str, units: &[Unit]) -> Vec<Chunk> {
        let mut chunks = Vec::new();
        let mut first = 0;
        while first < units.len() {
            let mut last = first;
            let mut tokens = units[first].tokens;
            while last + 1 < units.len()
                && tokens < self.config.target_tokens
                && tokens + units[last + 1].tokens <= self.config.max_tokens
            {
                last += 1;
                tokens += units[last].tokens;
            }
            let (start, end) = (units[first].start, units[last].end);
            chunks.push(Chunk { index: chunks.len(), text: text[start..end].trim().to_owned(), start, end, tokens });
            if last + 1 >= units.len() {
                break;
            }
            // Overlap: restart at the trailing sentences that fit the overlap budget, but always
            // move forward.
            let mut next = last + 1;
            let mut overlap = 0;
            while next - 1 > first && overlap + units[next - 1].tokens <= self.config.overlap_tokens {
                next -= 1;
                overlap += units[next].tokens;
            }
            first = next;
        }
        chunks
    }
}

/// Sentence byte ranges: cut after `.`, `!`, `?` (and their closing quotes or brackets) when
/// whitespace follows, and at blank lines and line breaks between lines that look like separate
/// items (headings, list entries, table rows).
pub fn sentences(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        if start.is_none() {
            if c.is_whitespace() {
                i += 1;
                continue;
            }
            start = Some(at);
        }
        let mut end_here = false;
        let mut j = i + 1;
        if matches!(c, '.' | '!' | '?' | '…' | '。') {
            while j < chars.len() && matches!(chars[j].1, '"' | '\'' | ')' | ']' | '”' | '’' | '.' | '!' | '?') {
                j += 1;
            }
            end_here = j >= chars.len() || chars[j].1.is_whitespace();
        } else if c == '\n' {
            end_here = true;
            j = i;
        }
        if end_here {
            let end = if j < chars.len() { chars[j].0 } else { text.len() };
            let s = start.take().expect("a sentence is open");
            let trimmed_end = s + text[s..end].trim_end().len();
            if trimmed_end > s {
                out.push((s, trimmed_end));
            }
            i = j.max(i + 1);
            continue;
        }
        i += 1;
    }
    if let Some(s) = start {
        let trimmed_end = s + text[s..].trim_end().len();
        if trimmed_end > s {
            out.push((s, trimmed_end));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_on_terminators_and_lines() {
        let text = "Hello world. We sell to banks! Do you? \"Yes.\" Next\nline one\n\nPara two.";
        let got: Vec<&str> = sentences(text).into_iter().map(|(s, e)| &text[s..e]).collect();
        assert_eq!(
            got,
            vec!["Hello world.", "We sell to banks!", "Do you?", "\"Yes.\"", "Next", "line one", "Para two."]
        );
    }

    #[test]
    fn decimals_and_abbreviations_without_space_do_not_split() {
        let text = "Revenue grew 3.5 percent in v2.1 of the plan.";
        assert_eq!(sentences(text).len(), 1);
    }
}
