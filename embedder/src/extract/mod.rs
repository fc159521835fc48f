//! Text extraction from uploaded documents: PDF, DOCX, plain text (UTF-8/UTF-16), Markdown and
//! HTML. The type is sniffed from the bytes; a declared content type only breaks ties between
//! text formats. Every resource an input can make us spend is bounded by [`Limits`], and hitting
//! a bound, like every other failure, is an [`ExtractError`] naming the document and the cause.
//! No input makes extraction panic: a panic in a parser is caught and reported as
//! [`ExtractErrorKind::ParserPanicked`] (a bug to fix, logged with its backtrace), never as
//! corrupt input.

mod docx;
mod fonts;
mod guard;
mod html;
mod pdf;
mod sniff;
mod text;

use std::time::{Duration, Instant};

pub use guard::LOG_TARGET as PARSER_PANIC_LOG_TARGET;
pub use sniff::{DocumentKind, sniff};

/// Bounds on what one document may cost. Every field is configurable; the defaults suit a
/// knowledge-base upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Size of the uploaded bytes.
    pub max_input_bytes: usize,
    /// Pages of a PDF.
    pub max_pages: usize,
    /// Bytes produced by decompression: PDF streams, DOCX zip entries (zip bombs).
    pub max_decompressed_bytes: usize,
    /// Nesting depth: PDF form XObjects, HTML elements, DOCX tables.
    pub max_nesting: usize,
    /// Wall-clock time for one document.
    pub max_duration: Duration,
    /// Characters of extracted text.
    pub max_text_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_input_bytes: 50 * 1024 * 1024,
            max_pages: 2_000,
            max_decompressed_bytes: 256 * 1024 * 1024,
            max_nesting: 32,
            max_duration: Duration::from_secs(60),
            max_text_chars: 20_000_000,
        }
    }
}

/// Why a document could not be extracted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExtractErrorKind {
    #[error("input is {size} bytes, over the limit of {limit}")]
    InputTooLarge { size: usize, limit: usize },
    #[error("the PDF has {pages} pages, over the limit of {limit}")]
    TooManyPages { pages: usize, limit: usize },
    #[error("decompressed content exceeds the limit of {limit} bytes (compression bomb?)")]
    DecompressedTooLarge { limit: usize },
    #[error("nesting deeper than the limit of {limit}")]
    NestingTooDeep { limit: usize },
    #[error("extraction took longer than the limit of {limit:?}")]
    Timeout { limit: Duration },
    #[error("extracted text exceeds the limit of {limit} characters")]
    TextTooLarge { limit: usize },
    #[error("the PDF is encrypted and needs a password")]
    Encrypted,
    #[error("the {kind} is corrupt: {detail}")]
    Corrupt { kind: DocumentKind, detail: String },
    /// A parser panicked: a bug in the parsing code (ours or a dependency's), not a verdict on
    /// the document. The panic is logged with its backtrace under [`PARSER_PANIC_LOG_TARGET`].
    #[error("the {kind} parser panicked: {message}")]
    ParserPanicked { kind: DocumentKind, message: String },
    #[error("the PDF has no text layer ({pages} pages of images only; scanned?)")]
    NoTextLayer { pages: usize },
    #[error("the document contains no text")]
    EmptyText,
    #[error("unsupported document type: {0}")]
    Unsupported(String),
    #[error("the text is not valid {encoding}")]
    InvalidEncoding { encoding: &'static str },
}

impl ExtractErrorKind {
    /// A stable label for metrics and API error codes.
    pub fn label(&self) -> &'static str {
        match self {
            Self::InputTooLarge { .. } => "input_too_large",
            Self::TooManyPages { .. } => "too_many_pages",
            Self::DecompressedTooLarge { .. } => "decompressed_too_large",
            Self::NestingTooDeep { .. } => "nesting_too_deep",
            Self::Timeout { .. } => "timeout",
            Self::TextTooLarge { .. } => "text_too_large",
            Self::Encrypted => "encrypted",
            Self::Corrupt { .. } => "corrupt",
            Self::ParserPanicked { .. } => "parser_panicked",
            Self::NoTextLayer { .. } => "no_text_layer",
            Self::EmptyText => "empty_text",
            Self::Unsupported(_) => "unsupported_type",
            Self::InvalidEncoding { .. } => "invalid_encoding",
        }
    }
}

/// An extraction failure: which document, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{document}: {kind}")]
pub struct ExtractError {
    pub document: String,
    pub kind: ExtractErrorKind,
}

/// Text extracted from one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extracted {
    pub kind: DocumentKind,
    pub text: String,
    /// Pages, for PDFs; 1 otherwise.
    pub pages: usize,
}

/// The running budget of one extraction, checked by the format readers as they go.
#[derive(Debug)]
pub(crate) struct Budget<'a> {
    pub limits: &'a Limits,
    deadline: Instant,
    decompressed: usize,
}

impl<'a> Budget<'a> {
    fn new(limits: &'a Limits) -> Self {
        Self { limits, deadline: Instant::now() + limits.max_duration, decompressed: 0 }
    }

    pub fn check_time(&self) -> Result<(), ExtractErrorKind> {
        if Instant::now() > self.deadline {
            return Err(ExtractErrorKind::Timeout { limit: self.limits.max_duration });
        }
        Ok(())
    }

    /// Accounts for `bytes` more of decompressed output.
    pub fn decompressed(&mut self, bytes: usize) -> Result<(), ExtractErrorKind> {
        self.decompressed = self.decompressed.saturating_add(bytes);
        if self.decompressed > self.limits.max_decompressed_bytes {
            return Err(ExtractErrorKind::DecompressedTooLarge { limit: self.limits.max_decompressed_bytes });
        }
        Ok(())
    }

    pub fn decompressed_so_far(&self) -> usize {
        self.decompressed
    }

    pub fn check_depth(&self, depth: usize) -> Result<(), ExtractErrorKind> {
        if depth > self.limits.max_nesting {
            return Err(ExtractErrorKind::NestingTooDeep { limit: self.limits.max_nesting });
        }
        Ok(())
    }

    pub fn check_text(&self, chars: usize) -> Result<(), ExtractErrorKind> {
        if chars > self.limits.max_text_chars {
            return Err(ExtractErrorKind::TextTooLarge { limit: self.limits.max_text_chars });
        }
        Ok(())
    }
}

/// Extracts the text of `bytes`. `document` names it in errors (a file name or document id);
/// `declared` is the uploader's content type, used only to tell text formats apart.
pub fn extract(
    document: &str,
    bytes: &[u8],
    declared: Option<&str>,
    limits: &Limits,
) -> Result<Extracted, ExtractError> {
    let fail = |kind| ExtractError { document: document.to_owned(), kind };
    if bytes.len() > limits.max_input_bytes {
        return Err(fail(ExtractErrorKind::InputTooLarge { size: bytes.len(), limit: limits.max_input_bytes }));
    }
    let kind = sniff(bytes, declared).map_err(fail)?;
    let mut budget = Budget::new(limits);
    // The parsers are fed hostile input: a panic in one is refused as ParserPanicked (and
    // logged with its backtrace), not a crash of the worker.
    let (text, pages) = guard::guarded(kind, || {
        debug_panic_switch(kind);
        match kind {
            DocumentKind::Pdf => pdf::extract(bytes, &mut budget),
            DocumentKind::Docx => docx::extract(bytes, &mut budget).map(|text| (text, 1)),
            DocumentKind::Html => text::decode(bytes).and_then(|t| html::extract(&t, &budget)).map(|text| (text, 1)),
            DocumentKind::Markdown | DocumentKind::Text => text::decode(bytes).map(|t| (text::tidy(&t), 1)),
        }
    })
    .map_err(fail)?;
    budget.check_text(text.chars().count()).map_err(fail)?;
    if text.trim().is_empty() {
        return Err(fail(ExtractErrorKind::EmptyText));
    }
    Ok(Extracted { kind, text, pages })
}

/// [`extract`] on its own thread, for callers that must get an answer within the time limit
/// even if a parser stalls inside one step (a single huge object): the limit plus a second of
/// grace, then [`ExtractErrorKind::Timeout`]. The abandoned thread runs on until its own checks
/// stop it; the caller is not held up.
pub fn extract_with_watchdog(
    document: &str,
    bytes: std::sync::Arc<[u8]>,
    declared: Option<&str>,
    limits: &Limits,
) -> Result<Extracted, ExtractError> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    let (name, hint, own_limits) = (document.to_owned(), declared.map(str::to_owned), limits.clone());
    let spawned = std::thread::Builder::new().name("extract".into()).spawn(move || {
        let _ = sender.send(extract(&name, &bytes, hint.as_deref(), &own_limits));
    });
    let timeout =
        ExtractError { document: document.to_owned(), kind: ExtractErrorKind::Timeout { limit: limits.max_duration } };
    if spawned.is_err() {
        return Err(timeout);
    }
    receiver.recv_timeout(limits.max_duration + Duration::from_secs(1)).unwrap_or(Err(timeout))
}

/// Debug builds only, for the CLI's contract test: `PROSPECTOR_TEST_PARSER_PANIC=1` makes the
/// parser panic, as a parser bug would. Release builds have no such switch.
fn debug_panic_switch(kind: DocumentKind) {
    #[cfg(debug_assertions)]
    if std::env::var_os("PROSPECTOR_TEST_PARSER_PANIC").is_some() {
        panic!("PROSPECTOR_TEST_PARSER_PANIC is set (the {kind} parser panics on purpose)");
    }
    #[cfg(not(debug_assertions))]
    let _ = kind;
}

/// Collapses every run of whitespace to one space, for comparing extracted text.
pub fn normalize_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let limits = Limits { max_input_bytes: 10, ..Limits::default() };
        let err = extract("big.txt", b"hello world, this is long", None, &limits).unwrap_err();
        assert_eq!(err.document, "big.txt");
        assert_eq!(err.kind, ExtractErrorKind::InputTooLarge { size: 25, limit: 10 });
        assert_eq!(err.to_string(), "big.txt: input is 25 bytes, over the limit of 10");
    }

    #[test]
    fn whitespace_only_text_is_empty() {
        let err = extract("blank.txt", b"  \n\t \n", None, &Limits::default()).unwrap_err();
        assert_eq!(err.kind, ExtractErrorKind::EmptyText);
    }

    #[test]
    fn text_over_the_character_limit_is_refused() {
        let limits = Limits { max_text_chars: 5, ..Limits::default() };
        let err = extract("long.txt", b"abcdefgh", None, &limits).unwrap_err();
        assert_eq!(err.kind, ExtractErrorKind::TextTooLarge { limit: 5 });
    }

    #[test]
    fn the_watchdog_returns_what_extract_returns() {
        let limits = Limits::default();
        let bytes: std::sync::Arc<[u8]> = b"hello there".to_vec().into();
        let extracted = extract_with_watchdog("a.txt", bytes, None, &limits).unwrap();
        assert_eq!(extracted.text, "hello there");
        let err = extract_with_watchdog("b.txt", b"\0\0".to_vec().into(), None, &limits).unwrap_err();
        assert_eq!(err.kind, ExtractErrorKind::Unsupported("binary data".into()));
    }

    #[test]
    fn normalize_collapses_runs() {
        assert_eq!(normalize_whitespace("  a\n\n b\tc  "), "a b c");
    }
}
