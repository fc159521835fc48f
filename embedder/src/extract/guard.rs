//! Runs a document parser so that a panic in it becomes [`ExtractErrorKind::ParserPanicked`]
//! instead of a crash of the worker. The parsers (lopdf, zip, docx-rs and our own readers) are
//! fed hostile input; a panic in one is a bug in that code, not a property of the document, so
//! it gets its own error kind rather than passing for a corrupt file.
//!
//! A process-wide panic hook, installed on first use and chained to the hook it replaces,
//! records the panic's location and a backtrace for panics on a thread inside [`guarded`], and
//! keeps the default hook from writing them to stderr (the CLI's failures are one line). Panics
//! anywhere else go to the previous hook unchanged. The record is logged at error level under
//! the target [`LOG_TARGET`].

use std::any::Any;
use std::backtrace::Backtrace;
use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use super::{DocumentKind, ExtractErrorKind};

/// The tracing target of the "a parser panicked" event, which carries the backtrace.
pub const LOG_TARGET: &str = "prospector_embedder::parser_panic";

thread_local! {
    /// Whether this thread is inside [`catch`].
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    /// What the hook saw of the last panic on this thread inside [`catch`].
    static SEEN: RefCell<Option<(Option<String>, Backtrace)>> = const { RefCell::new(None) };
}

/// A caught panic.
#[derive(Debug)]
pub(crate) struct Panicked {
    pub message: String,
    /// Where it panicked, `file:line:column`; `None` if another panic hook replaced ours.
    pub location: Option<String>,
    /// Captured when it panicked; `None` if another panic hook replaced ours.
    pub backtrace: Option<Backtrace>,
}

fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CATCHING.with(Cell::get) {
                let location = info.location().map(ToString::to_string);
                let backtrace = Backtrace::force_capture();
                SEEN.with(|seen| *seen.borrow_mut() = Some((location, backtrace)));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, catching a panic in it.
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, Panicked> {
    install_hook();
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            CATCHING.with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(CATCHING.with(|c| c.replace(true)));
    SEEN.with(|seen| seen.borrow_mut().take());
    let result = catch_unwind(AssertUnwindSafe(f));
    result.map_err(|payload| {
        let (location, backtrace) = match SEEN.with(|seen| seen.borrow_mut().take()) {
            Some((location, backtrace)) => (location, Some(backtrace)),
            None => (None, None),
        };
        Panicked { message: payload_message(payload.as_ref()), location, backtrace }
    })
}

/// Runs the `kind` parser `parse`: its own result, or [`ExtractErrorKind::ParserPanicked`] if
/// it panicked, logged with the message, location and backtrace.
pub(crate) fn guarded<T>(
    kind: DocumentKind,
    parse: impl FnOnce() -> Result<T, ExtractErrorKind>,
) -> Result<T, ExtractErrorKind> {
    catch(parse).unwrap_or_else(|panicked| {
        let location = panicked.location.as_deref().unwrap_or("unknown (another panic hook replaced ours)");
        let backtrace = match &panicked.backtrace {
            Some(backtrace) => backtrace.to_string(),
            None => "not captured (another panic hook replaced ours)".into(),
        };
        tracing::error!(
            target: LOG_TARGET,
            document_kind = %kind,
            message = %panicked.message,
            location = %location,
            backtrace = %backtrace,
            "the {kind} parser panicked; the document is refused"
        );
        let mut message = first_line(&panicked.message);
        if let Some(location) = &panicked.location {
            message = format!("{message} at {location}");
        }
        Err(ExtractErrorKind::ParserPanicked { kind, message })
    })
}

fn payload_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or_default();
    line.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_parser_panicked_not_corrupt() {
        let outcome = guarded(DocumentKind::Pdf, || {
            let pages: Vec<u32> = std::hint::black_box(Vec::new());
            Ok(pages[3])
        });
        let Err(ExtractErrorKind::ParserPanicked { kind, message }) = outcome else {
            panic!("expected ParserPanicked, got {outcome:?}");
        };
        assert_eq!(kind, DocumentKind::Pdf);
        assert!(message.starts_with("index out of bounds: the len is 0 but the index is 3 at "), "{message}");
        assert!(message.contains("embedder/src/extract/guard.rs:"), "{message}");
        let error = ExtractErrorKind::ParserPanicked { kind, message };
        assert_eq!(error.label(), "parser_panicked");
    }

    #[test]
    fn the_parsers_own_errors_pass_through() {
        let corrupt = ExtractErrorKind::Corrupt { kind: DocumentKind::Docx, detail: "bad zip".into() };
        assert_eq!(guarded(DocumentKind::Docx, || Err::<(), _>(corrupt.clone())), Err(corrupt));
        assert_eq!(guarded(DocumentKind::Text, || Ok(7)), Ok(7));
    }

    #[test]
    fn the_hook_records_location_and_backtrace_and_the_flag_is_reset() {
        let panicked = catch(|| panic!("boom {}", 42)).unwrap_err();
        assert_eq!(panicked.message, "boom 42");
        assert!(panicked.location.as_deref().is_some_and(|l| l.contains("guard.rs")), "{:?}", panicked.location);
        let backtrace = panicked.backtrace.expect("a backtrace").to_string();
        assert!(backtrace.contains("the_hook_records_location_and_backtrace"), "{backtrace}");
        // Outside `catch`, panics are the previous hook's again; nested use restores the flag.
        assert!(!CATCHING.with(Cell::get));
        let inner = catch(|| catch(|| panic!("inner")).unwrap_err().message).unwrap();
        assert_eq!(inner, "inner");
        assert!(!CATCHING.with(Cell::get));
    }
}
