//! Test documents with known text: PDFs written with lopdf (a standard Latin font, and a Type0
//! font with a ToUnicode map for text beyond Latin-1) and DOCX files written with docx-rs.

#![allow(dead_code)]

use lopdf::content::{Content, Operation};
use lopdf::{Document, Object, Stream, dictionary};

/// A line of text placed on a page.
#[derive(Clone, Debug)]
pub struct Placed {
    pub x: f32,
    pub y: f32,
    pub size: f32,
    pub text: String,
}

pub fn placed(x: f32, y: f32, size: f32, text: &str) -> Placed {
    Placed { x, y, size, text: text.into() }
}

/// Writes a PDF whose pages hold the given lines, in the given drawing order. Text within
/// Latin-1 uses Helvetica (WinAnsi); any other line uses a Type0 font whose ToUnicode CMap maps
/// each code back to its character, as real producers embed subset fonts.
pub fn pdf(pages: &[Vec<Placed>], compress: bool) -> Vec<u8> {
    let mut doc = Document::with_version("1.7");
    let pages_id = doc.new_object_id();
    let latin = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica", "Encoding" => "WinAnsiEncoding",
    });
    // Every character outside Latin-1 gets a two-byte code: its index in this table.
    let mut unicode_chars: Vec<char> = Vec::new();
    for page in pages {
        for line in page {
            if !is_latin1(&line.text) {
                for c in line.text.chars() {
                    if !unicode_chars.contains(&c) {
                        unicode_chars.push(c);
                    }
                }
            }
        }
    }
    let mut cmap = String::from(
        "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n/CMapName /Test-UCS def\n/CMapType 2 def\n1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n",
    );
    for block in unicode_chars.chunks(100) {
        cmap.push_str(&format!("{} beginbfchar\n", block.len()));
        for c in block {
            let code = unicode_chars.iter().position(|x| x == c).unwrap() + 1;
            let utf16: String = c.encode_utf16(&mut [0; 2]).iter().map(|u| format!("{u:04X}")).collect();
            cmap.push_str(&format!("<{code:04X}> <{utf16}>\n"));
        }
        cmap.push_str("endbfchar\n");
    }
    cmap.push_str("endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n");
    let to_unicode = doc.add_object(Stream::new(dictionary! {}, cmap.into_bytes()));
    let descendant = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "CIDFontType2", "BaseFont" => "TestSans",
        "CIDSystemInfo" => dictionary! { "Registry" => Object::string_literal("Adobe"), "Ordering" => Object::string_literal("Identity"), "Supplement" => 0 },
        "DW" => 600,
    });
    let unicode = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type0", "BaseFont" => "TestSans", "Encoding" => "Identity-H",
        "DescendantFonts" => vec![descendant.into()], "ToUnicode" => to_unicode,
    });
    let resources = doc.add_object(dictionary! { "Font" => dictionary! { "F1" => latin, "F2" => unicode } });
    let mut kids = Vec::new();
    for page in pages {
        let mut operations = Vec::new();
        for line in page {
            operations.push(Operation::new("BT", vec![]));
            let string = if is_latin1(&line.text) {
                operations.push(Operation::new("Tf", vec!["F1".into(), line.size.into()]));
                Object::String(line.text.chars().map(|c| c as u8).collect(), lopdf::StringFormat::Literal)
            } else {
                operations.push(Operation::new("Tf", vec!["F2".into(), line.size.into()]));
                let codes: Vec<u8> = line
                    .text
                    .chars()
                    .flat_map(|c| ((unicode_chars.iter().position(|x| *x == c).unwrap() + 1) as u16).to_be_bytes())
                    .collect();
                Object::String(codes, lopdf::StringFormat::Hexadecimal)
            };
            operations.push(Operation::new("Td", vec![line.x.into(), line.y.into()]));
            operations.push(Operation::new("Tj", vec![string]));
            operations.push(Operation::new("ET", vec![]));
        }
        let content = Content { operations }.encode().unwrap();
        let content_id = doc.add_object(Stream::new(dictionary! {}, content));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
        });
        kids.push(Object::from(page_id));
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => kids, "Count" => count, "Resources" => resources,
            "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
        }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    if compress {
        doc.compress();
    }
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

fn is_latin1(text: &str) -> bool {
    text.chars().all(|c| (' '..='~').contains(&c) || ('\u{a0}'..='\u{ff}').contains(&c))
}

/// Lines of a page top-down from y = 740, one every 14 points, at x.
pub fn column(x: f32, lines: &[&str]) -> Vec<Placed> {
    lines.iter().enumerate().map(|(i, l)| placed(x, 740.0 - 14.0 * i as f32, 10.0, l)).collect()
}

/// A DOCX with a header, paragraphs and a table.
pub fn docx(header: &str, paragraphs: &[&str], table: &[Vec<&str>]) -> Vec<u8> {
    use docx_rs::{Docx, Header, Paragraph, Run, Table, TableCell, TableRow};
    let paragraph = |t: &str| Paragraph::new().add_run(Run::new().add_text(t));
    let mut docx = Docx::new().header(Header::new().add_paragraph(paragraph(header)));
    for p in paragraphs {
        docx = docx.add_paragraph(paragraph(p));
    }
    if !table.is_empty() {
        let rows = table
            .iter()
            .map(|row| TableRow::new(row.iter().map(|cell| TableCell::new().add_paragraph(paragraph(cell))).collect()))
            .collect();
        docx = docx.add_table(Table::new(rows));
    }
    let mut out = std::io::Cursor::new(Vec::new());
    docx.build().pack(&mut out).unwrap();
    out.into_inner()
}

/// A one-page PDF whose content is `content`, with `xobjects` as its XObject resources.
fn pdf_with_content(content: &[u8], build_xobjects: impl FnOnce(&mut Document) -> lopdf::Dictionary) -> Vec<u8> {
    let mut doc = Document::with_version("1.7");
    let pages_id = doc.new_object_id();
    let font = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica", "Encoding" => "WinAnsiEncoding",
    });
    let xobjects = build_xobjects(&mut doc);
    let resources = doc.add_object(dictionary! { "Font" => dictionary! { "F1" => font }, "XObject" => xobjects });
    let content_id = doc.add_object(Stream::new(dictionary! {}, content.to_vec()));
    let page = doc.add_object(dictionary! { "Type" => "Page", "Parent" => pages_id, "Contents" => content_id });
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => vec![page.into()], "Count" => 1, "Resources" => resources,
            "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
        }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

/// A page that is only a picture: what a scanner without OCR produces.
pub fn pdf_image_only() -> Vec<u8> {
    pdf_with_content(b"q 612 0 0 792 0 0 cm /Im1 Do Q", |doc| {
        let image = doc.add_object(Stream::new(
            dictionary! {
                "Type" => "XObject", "Subtype" => "Image", "Width" => 2, "Height" => 2,
                "ColorSpace" => "DeviceGray", "BitsPerComponent" => 8,
            },
            vec![0, 255, 255, 0],
        ));
        dictionary! { "Im1" => image }
    })
}

/// A page with no marks at all.
pub fn pdf_blank() -> Vec<u8> {
    pdf_with_content(b"", |_| dictionary! {})
}

/// Text inside form XObjects nested `depth` deep (each form draws the next).
pub fn pdf_nested_forms(depth: usize, text: &str) -> Vec<u8> {
    let text = text.to_owned();
    pdf_with_content(b"/X0 Do", move |doc| {
        let font = doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica", "Encoding" => "WinAnsiEncoding",
        });
        let mut inner = doc.add_object(Stream::new(
            dictionary! {
                "Type" => "XObject", "Subtype" => "Form", "BBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
                "Resources" => dictionary! { "Font" => dictionary! { "F1" => font } },
            },
            format!("BT /F1 12 Tf 72 700 Td ({text}) Tj ET").into_bytes(),
        ));
        for _ in 1..depth {
            inner = doc.add_object(Stream::new(
                dictionary! {
                    "Type" => "XObject", "Subtype" => "Form", "BBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
                    "Resources" => dictionary! { "XObject" => dictionary! { "X0" => inner } },
                },
                b"/X0 Do".to_vec(),
            ));
        }
        dictionary! { "X0" => inner }
    })
}

/// A zip whose `word/document.xml` inflates from a few KiB to `inflated` bytes.
pub fn docx_bomb(inflated: usize) -> Vec<u8> {
    use std::io::Write;
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let deflate = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    out.start_file("[Content_Types].xml", deflate).unwrap();
    out.write_all(b"<?xml version=\"1.0\"?><Types/>").unwrap();
    out.start_file("word/document.xml", deflate).unwrap();
    let block = vec![b' '; 1 << 20];
    let mut written = 0;
    while written < inflated {
        let n = block.len().min(inflated - written);
        out.write_all(&block[..n]).unwrap();
        written += n;
    }
    out.finish().unwrap().into_inner()
}
