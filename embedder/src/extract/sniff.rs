//! Content sniffing: the document type from its first bytes. The declared content type is a
//! hint that only separates Markdown and HTML from plain text; it never makes a binary format.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use super::ExtractErrorKind;

/// The formats extraction understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocumentKind {
    Pdf,
    Docx,
    Html,
    Markdown,
    Text,
}

impl DocumentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pdf => "PDF",
            Self::Docx => "DOCX",
            Self::Html => "HTML",
            Self::Markdown => "Markdown",
            Self::Text => "text",
        }
    }
}

impl fmt::Display for DocumentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Binary formats we recognise only to refuse them by name.
const KNOWN_BINARY: &[(&[u8], &str)] = &[
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "legacy Office (OLE) file; save it as DOCX or PDF"),
    (b"\x1f\x8b", "gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"Rar!", "RAR archive"),
    (b"\x7fELF", "executable"),
    (b"{\\rtf", "RTF document"),
];

/// The type of `bytes`. `declared` (a MIME type such as `text/markdown`) is consulted only
/// when the bytes are text.
pub fn sniff(bytes: &[u8], declared: Option<&str>) -> Result<DocumentKind, ExtractErrorKind> {
    // PDF readers accept the header anywhere in the first KiB; so do we.
    let head = &bytes[..bytes.len().min(1024)];
    if head.windows(5).any(|w| w == b"%PDF-") {
        return Ok(DocumentKind::Pdf);
    }
    if bytes.starts_with(b"PK\x03\x04") {
        // The zip reader parses hostile input too: run it under the same panic guard.
        return super::guard::guarded(DocumentKind::Docx, || match zip::ZipArchive::new(Cursor::new(bytes)) {
            Ok(archive) if archive.index_for_name("word/document.xml").is_some() => Ok(DocumentKind::Docx),
            Ok(_) => Err(ExtractErrorKind::Unsupported("zip archive that is not a DOCX document".into())),
            Err(e) => Err(ExtractErrorKind::Corrupt { kind: DocumentKind::Docx, detail: e.to_string() }),
        });
    }
    if let Some((_, name)) = KNOWN_BINARY.iter().find(|(magic, _)| bytes.starts_with(magic)) {
        return Err(ExtractErrorKind::Unsupported((*name).into()));
    }
    let utf16 = bytes.starts_with(b"\xff\xfe") || bytes.starts_with(b"\xfe\xff") || super::text::looks_utf16(bytes);
    if !utf16 && head.contains(&0) {
        return Err(ExtractErrorKind::Unsupported("binary data".into()));
    }
    let declared = declared.map(|d| d.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    match declared.as_deref() {
        Some("text/html" | "application/xhtml+xml") => return Ok(DocumentKind::Html),
        Some("text/markdown" | "text/x-markdown") => return Ok(DocumentKind::Markdown),
        _ => {}
    }
    let start = if utf16 {
        super::text::decode(&bytes[..bytes.len().min(2048) & !1]).unwrap_or_default()
    } else {
        String::from_utf8_lossy(&bytes[..bytes.len().min(2048)]).into_owned()
    };
    let lower = start.trim_start_matches('\u{feff}').trim_start().to_ascii_lowercase();
    if lower.starts_with("<!doctype html")
        || lower.starts_with("<html")
        || (lower.starts_with('<') && (lower.contains("<body") || lower.contains("<head") || lower.contains("<p>")))
    {
        return Ok(DocumentKind::Html);
    }
    if looks_markdown(&start) {
        return Ok(DocumentKind::Markdown);
    }
    Ok(DocumentKind::Text)
}

/// Markdown is text with a heading, a fence or a link in Markdown syntax.
fn looks_markdown(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim_start();
        (line.starts_with('#') && line.trim_start_matches('#').starts_with(' '))
            || line.starts_with("```")
            || (line.contains("](") && line.contains('['))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_win_over_the_declared_type() {
        assert_eq!(sniff(b"%PDF-1.7\n...", Some("text/plain")), Ok(DocumentKind::Pdf));
        assert_eq!(sniff(b"hello", Some("application/pdf")), Ok(DocumentKind::Text));
        assert_eq!(sniff(b"<p>hi</p>", Some("text/html")), Ok(DocumentKind::Html));
        assert_eq!(sniff(b"<!DOCTYPE html><html><body>x</body></html>", None), Ok(DocumentKind::Html));
        assert_eq!(sniff(b"# Title\n\ntext", None), Ok(DocumentKind::Markdown));
        assert_eq!(sniff(b"plain words", Some("text/markdown")), Ok(DocumentKind::Markdown));
    }

    #[test]
    fn binary_formats_are_refused_by_name() {
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\nrest", Some("application/pdf")),
            Err(ExtractErrorKind::Unsupported("PNG image".into()))
        );
        assert_eq!(sniff(b"abc\0def", None), Err(ExtractErrorKind::Unsupported("binary data".into())));
        assert!(matches!(
            sniff(b"PK\x03\x04garbage", None),
            Err(ExtractErrorKind::Corrupt { kind: DocumentKind::Docx, .. })
        ));
    }

    #[test]
    fn utf16_text_is_text() {
        let bytes: Vec<u8> = "\u{feff}hello".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        assert_eq!(sniff(&bytes, None), Ok(DocumentKind::Text));
    }
}
