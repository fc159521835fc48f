//! Extraction of documents with known text (generated PDFs and DOCX files), every bad-input
//! class with its own error, and the real-world PDF collection in `fixtures/pdf`.

mod support;

use std::time::Duration;

use prospector_embedder::extract::{DocumentKind, ExtractErrorKind, Limits, extract, normalize_whitespace};
use support::{column, placed};

fn text_of(bytes: &[u8]) -> String {
    normalize_whitespace(&extract("test", bytes, None, &Limits::default()).unwrap().text)
}

fn error_of(bytes: &[u8], limits: &Limits) -> ExtractErrorKind {
    extract("doc-1", bytes, None, limits).unwrap_err().kind
}

const PAGE_ONE: &[&str] =
    &["Prospector sells lead qualification to fintech companies.", "Our buyers are CFOs and VPs of Sales."];
const PAGE_TWO: &[&str] =
    &["We target mid-market firms with 200 to 900 employees.", "Regions: Germany, France and Mexico."];
const PAGE_THREE: &[&str] = &["We do not sell to government agencies."];

#[test]
fn multi_page_pdf_reads_in_page_order() {
    for compress in [false, true] {
        let bytes = support::pdf(&[column(72.0, PAGE_ONE), column(72.0, PAGE_TWO), column(72.0, PAGE_THREE)], compress);
        let extracted = extract("three.pdf", &bytes, Some("application/pdf"), &Limits::default()).unwrap();
        assert_eq!(extracted.kind, DocumentKind::Pdf);
        assert_eq!(extracted.pages, 3);
        let expected = normalize_whitespace(&[PAGE_ONE, PAGE_TWO, PAGE_THREE].concat().join(" "));
        assert_eq!(normalize_whitespace(&extracted.text), expected);
    }
}

#[test]
fn non_ascii_pdf_text_survives_through_tounicode_maps() {
    let lines = [
        "Grüße aus München, café crème",
        "Straße – “quoted” — 20 €",
        "Ελληνικό κείμενο για πελάτες",
        "Привет, мир продаж",
        "日本語のテキストと中文",
    ];
    let bytes = support::pdf(&[column(72.0, &lines)], true);
    assert_eq!(text_of(&bytes), normalize_whitespace(&lines.join(" ")));
}

#[test]
fn two_column_pdf_reads_column_by_column() {
    let left = ["Left column line one", "left column line two", "left column line three"];
    let right = ["Right column line one", "right column line two", "right column line three"];
    // Drawn across, line by line, as many producers do; read down each column.
    let mut page = vec![placed(72.0, 760.0, 16.0, "A Title Across Both Columns")];
    for i in 0..3 {
        page.push(placed(72.0, 720.0 - 14.0 * i as f32, 10.0, left[i]));
        page.push(placed(330.0, 720.0 - 14.0 * i as f32, 10.0, right[i]));
    }
    page.push(placed(72.0, 600.0, 10.0, "A closing paragraph across the page, below both columns."));
    let bytes = support::pdf(&[page], false);
    let expected = normalize_whitespace(&format!(
        "A Title Across Both Columns {} {} A closing paragraph across the page, below both columns.",
        left.join(" "),
        right.join(" ")
    ));
    assert_eq!(text_of(&bytes), expected);
}

#[test]
fn a_table_keeps_each_row_on_one_line() {
    // Drawn cell by cell, column after column, as table producers often do; each row must come
    // out whole so that a chunk holds it.
    let rows =
        [["Plan", "Seats", "Price"], ["Starter", "5", "$49"], ["Growth", "25", "$199"], ["Scale", "100", "$699"]];
    let mut page = vec![placed(72.0, 760.0, 12.0, "Our pricing plans for sales teams of every size are below.")];
    for (column, x) in [72.0, 220.0, 340.0].into_iter().enumerate() {
        for (row, cells) in rows.iter().enumerate() {
            page.push(placed(x, 720.0 - 18.0 * row as f32, 10.0, cells[column]));
        }
    }
    page.push(placed(72.0, 620.0, 12.0, "Prices are per month and exclude taxes."));
    let text = extract("table", &support::pdf(&[page], false), None, &Limits::default()).unwrap().text;
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines,
        [
            "Our pricing plans for sales teams of every size are below.",
            "Plan | Seats | Price",
            "Starter | 5 | $49",
            "Growth | 25 | $199",
            "Scale | 100 | $699",
            "Prices are per month and exclude taxes.",
        ],
        "{text}"
    );
}

#[test]
fn right_to_left_text_drawn_left_to_right_reads_in_logical_order() {
    // Producers draw Arabic glyphs left to right on the page, so the string holds the word's
    // letters last to first; the text must come out as it is read.
    let logical = "\u{62d}\u{628}\u{64a}\u{628}\u{64a}"; // habibi
    let drawn: String = logical.chars().rev().collect();
    let bytes = support::pdf(&[vec![placed(72.0, 700.0, 12.0, &format!("Call {drawn} today"))]], false);
    assert_eq!(text_of(&bytes), format!("Call {logical} today"));
}

#[test]
fn real_pdfs_keep_ligatures_greek_arabic_and_hyphenated_words() {
    let read = |name: &str| {
        let path = format!("{}/tests/fixtures/pdf/py-pdf-sample-files/{name}", env!("CARGO_MANIFEST_DIR"));
        extract(name, &std::fs::read(&path).unwrap(), None, &Limits::default()).unwrap().text
    };
    // Computer Modern fonts with no /Encoding: ligatures and Greek come from the embedded
    // program's built-in encoding.
    let multicolumn = read("026-latex-multicolumn/multicolumn.pdf");
    assert!(multicolumn.contains("filled"), "the fi ligature: {multicolumn}");
    // Words hyphenated at line ends are whole again.
    for word in ["Pellentesque", "Curabitur", "consectetuer"] {
        assert!(multicolumn.contains(word), "{word} in {multicolumn}");
    }
    let geotopo = read("009-pdflatex-geotopo/GeoTopo-komprimiert.pdf");
    for greek in ["γ", "φ", "σ", "π", "δ"] {
        assert!(geotopo.matches(greek).count() >= 20, "{greek} in GeoTopo");
    }
    // A ToUnicode map with empty destinations (glyphs without text) is still read, in logical
    // order: both words of each pair, not a stray pound sign.
    let arabic = read("015-arabic/habibi.pdf");
    assert_eq!(arabic.matches("حَبيبي").count(), 2, "{arabic}");
    assert!(!arabic.contains('£'), "{arabic}");
}

#[test]
fn text_inside_form_xobjects_is_read() {
    assert_eq!(text_of(&support::pdf_nested_forms(3, "Nested form text")), "Nested form text");
}

#[test]
fn docx_paragraphs_tables_and_headers() {
    let paragraphs = ["Prospector für Vertriebsteams.", "We serve SaaS and fintech companies in Europe."];
    let table = vec![vec!["Role", "Region"], vec!["CFO", "Europe"], vec!["Head of Sales", "Latin America"]];
    let bytes = support::docx("Confidential – Prospector", &paragraphs, &table);
    let extracted = extract("doc.docx", &bytes, Some("application/octet-stream"), &Limits::default()).unwrap();
    assert_eq!(extracted.kind, DocumentKind::Docx);
    assert_eq!(
        normalize_whitespace(&extracted.text),
        normalize_whitespace(
            "Confidential – Prospector Prospector für Vertriebsteams. We serve SaaS and fintech companies in Europe. \
             Role Region CFO Europe Head of Sales Latin America"
        )
    );
    // Cells of a row stay on one line.
    assert!(extracted.text.lines().any(|l| l.trim() == "Head of Sales\tLatin America"), "{}", extracted.text);
}

#[test]
fn text_markdown_and_html() {
    assert_eq!(text_of("Plain words.\r\nSecond line.".as_bytes()), "Plain words. Second line.");
    let md = extract("a.md", b"# Heading\n\nSome *text*.", None, &Limits::default()).unwrap();
    assert_eq!(md.kind, DocumentKind::Markdown);
    let html = extract("a.html", b"<html><body><p>Hi</p><script>x()</script></body></html>", None, &Limits::default())
        .unwrap();
    assert_eq!((html.kind, html.text.as_str()), (DocumentKind::Html, "Hi"));
    let utf16: Vec<u8> = "\u{feff}Grüße".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    assert_eq!(text_of(&utf16), "Grüße");
}

#[test]
fn encrypted_pdf() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pdf/py-pdf-sample-files/005-libreoffice-writer-password/libreoffice-writer-password.pdf"
    ))
    .unwrap();
    let err = extract("secret.pdf", &bytes, None, &Limits::default()).unwrap_err();
    assert_eq!(err.kind, ExtractErrorKind::Encrypted);
    assert_eq!(err.to_string(), "secret.pdf: the PDF is encrypted and needs a password");
}

#[test]
fn corrupt_files() {
    let limits = Limits::default();
    assert!(matches!(
        error_of(b"%PDF-1.7\n garbage without objects", &limits),
        ExtractErrorKind::Corrupt { kind: DocumentKind::Pdf, .. }
    ));
    // The first third of a PDF holds the first objects only: no page, no cross-reference table,
    // no trailer. Without a page tree there is no page to read, so it is corrupt, not a readable
    // PDF without text (EmptyText). lopdf says "failed parsing cross reference table".
    let pdf = support::pdf(&[column(72.0, PAGE_ONE)], true);
    let truncated = &pdf[..pdf.len() / 3];
    assert!(matches!(error_of(truncated, &limits), ExtractErrorKind::Corrupt { kind: DocumentKind::Pdf, .. }));
    let docx = support::docx("h", &["p"], &[]);
    assert!(matches!(
        error_of(&docx[..docx.len() / 2], &limits),
        ExtractErrorKind::Corrupt { kind: DocumentKind::Docx, .. }
    ));
}

#[test]
fn empty_and_scanned_pdfs() {
    assert_eq!(error_of(&support::pdf_blank(), &Limits::default()), ExtractErrorKind::EmptyText);
    assert_eq!(error_of(&support::pdf_image_only(), &Limits::default()), ExtractErrorKind::NoTextLayer { pages: 1 });
}

#[test]
fn limits_each_have_their_error() {
    let three_pages = support::pdf(&[column(72.0, PAGE_ONE), column(72.0, PAGE_TWO), column(72.0, PAGE_THREE)], true);
    assert_eq!(
        error_of(&three_pages, &Limits { max_pages: 2, ..Limits::default() }),
        ExtractErrorKind::TooManyPages { pages: 3, limit: 2 }
    );
    assert_eq!(
        error_of(&three_pages, &Limits { max_input_bytes: 100, ..Limits::default() }),
        ExtractErrorKind::InputTooLarge { size: three_pages.len(), limit: 100 }
    );
    assert_eq!(
        error_of(&three_pages, &Limits { max_duration: Duration::ZERO, ..Limits::default() }),
        ExtractErrorKind::Timeout { limit: Duration::ZERO }
    );
    assert_eq!(
        error_of(&support::pdf_nested_forms(40, "deep"), &Limits::default()),
        ExtractErrorKind::NestingTooDeep { limit: 32 }
    );
    // A PDF content stream that inflates past the limit.
    assert_eq!(
        error_of(&three_pages, &Limits { max_decompressed_bytes: 64, ..Limits::default() }),
        ExtractErrorKind::DecompressedTooLarge { limit: 64 }
    );
    // A zip bomb: 64 MiB of document.xml from a small archive.
    let bomb = support::docx_bomb(64 << 20);
    assert!(bomb.len() < 1 << 20, "the bomb is {} bytes", bomb.len());
    assert_eq!(
        error_of(&bomb, &Limits { max_decompressed_bytes: 8 << 20, ..Limits::default() }),
        ExtractErrorKind::DecompressedTooLarge { limit: 8 << 20 }
    );
    assert_eq!(
        error_of(b"abcdefghij", &Limits { max_text_chars: 4, ..Limits::default() }),
        ExtractErrorKind::TextTooLarge { limit: 4 }
    );
}

#[test]
fn wrong_types_and_encodings() {
    let limits = Limits::default();
    assert_eq!(error_of(b"\x89PNG\r\n\x1a\n\0\0", &limits), ExtractErrorKind::Unsupported("PNG image".into()));
    assert_eq!(error_of(b"caf\xe9", &limits), ExtractErrorKind::InvalidEncoding { encoding: "UTF-8" });
    // A PDF declared as text is still a PDF, and text declared as PDF is still text.
    let pdf = support::pdf(&[column(72.0, PAGE_THREE)], false);
    assert_eq!(extract("x", &pdf, Some("text/plain"), &limits).unwrap().kind, DocumentKind::Pdf);
    assert_eq!(extract("x", b"words", Some("application/pdf"), &limits).unwrap().kind, DocumentKind::Text);
}

#[test]
fn every_sample_pdf_gives_text_or_a_typed_error() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pdf/py-pdf-sample-files");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("files.json")).unwrap()).unwrap();
    // The files that give no text, each with its one right error; every other file must give
    // text. 005 needs a user password. Three of the four ImageMagick files, the grayscale and
    // the CMYK file are pictures only (pypdf finds no text either; the fourth ImageMagick file,
    // imagemagick-images.pdf, has a text layer). 017 is broken (pypdf cannot open it either).
    let no_text = |path: &str| match path {
        "005-libreoffice-writer-password/libreoffice-writer-password.pdf" => Some("encrypted"),
        "007-imagemagick-images/imagemagick-ASCII85Decode.pdf"
        | "007-imagemagick-images/imagemagick-CCITTFaxDecode.pdf"
        | "007-imagemagick-images/imagemagick-lzw.pdf"
        | "019-grayscale-image/grayscale-image.pdf"
        | "023-cmyk-image/cmyk-image.pdf" => Some("no text layer"),
        "017-unreadable-meta-data/unreadablemetadata.pdf" => Some("corrupt"),
        _ => None,
    };
    let mut texts = 0;
    let mut seen = 0;
    // files.json describes the collection upstream; one large file of it is not in the fixture.
    for file in index["data"].as_array().unwrap() {
        let path = file["path"].as_str().unwrap();
        let Ok(bytes) = std::fs::read(root.join(path)) else { continue };
        seen += 1;
        let outcome = extract(path, &bytes, None, &Limits::default());
        if let Err(e) = &outcome {
            // A caught panic is a bug in the parsing code, whatever the file.
            assert!(!matches!(e.kind, ExtractErrorKind::ParserPanicked { .. }), "{path}: {e}");
        }
        assert_eq!(file["encrypted"].as_bool() == Some(true), no_text(path) == Some("encrypted"), "{path}");
        match (no_text(path), &outcome) {
            (None, Ok(extracted)) => {
                assert!(!extracted.text.trim().is_empty(), "{path}");
                if let Some(pages) = file["pages"].as_u64() {
                    assert_eq!(extracted.pages as u64, pages, "{path}");
                }
                texts += 1;
            }
            (Some("encrypted"), Err(e)) => assert_eq!(e.kind, ExtractErrorKind::Encrypted, "{path}"),
            (Some("no text layer"), Err(e)) => assert_eq!(e.kind, ExtractErrorKind::NoTextLayer { pages: 1 }, "{path}"),
            (Some("corrupt"), Err(e)) => {
                assert!(matches!(e.kind, ExtractErrorKind::Corrupt { kind: DocumentKind::Pdf, .. }), "{path}: {e}")
            }
            (expected, outcome) => {
                let got = outcome.as_ref().map(|e| format!("text of {} pages", e.pages)).map_err(ToString::to_string);
                panic!("{path}: expected {}, got {got:?}", expected.unwrap_or("text"))
            }
        }
    }
    assert_eq!(seen, 31, "the fixture holds 31 PDFs");
    assert_eq!(texts, 24, "sample PDFs that gave text");
}
