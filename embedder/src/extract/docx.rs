//! DOCX text: paragraphs, tables (cells separated by tabs, rows by lines) and headers/footers.
//! The zip is unpacked here first, entry by entry under the decompression budget, and handed to
//! docx-rs re-packed without compression: a zip bomb, or an entry whose declared size lies,
//! stops at the budget instead of inside the parser.

use std::io::{Cursor, Read, Write};

use serde_json::Value;

use super::{Budget, DocumentKind, ExtractErrorKind};

/// More entries than any real document has; a zip with more is hostile or broken.
const MAX_ENTRIES: usize = 10_000;

pub(crate) fn extract(bytes: &[u8], budget: &mut Budget<'_>) -> Result<String, ExtractErrorKind> {
    let corrupt = |detail: String| ExtractErrorKind::Corrupt { kind: DocumentKind::Docx, detail };
    let repacked = repack(bytes, budget)?;
    budget.check_time()?;
    let docx = docx_rs::read_docx(&repacked).map_err(|e| corrupt(e.to_string()))?;
    budget.check_time()?;
    let document = serde_json::to_value(&docx.document).map_err(|e| corrupt(e.to_string()))?;
    let mut out = Writer::default();
    if let Some(section) = document.get("sectionProperty") {
        for key in ["firstHeader", "header", "evenHeader"] {
            walk(section.get(key), &mut out, 0, budget)?;
        }
    }
    walk(document.get("children"), &mut out, 0, budget)?;
    if let Some(section) = document.get("sectionProperty") {
        for key in ["firstFooter", "footer", "evenFooter"] {
            walk(section.get(key), &mut out, 0, budget)?;
        }
    }
    Ok(out.finish())
}

fn repack(bytes: &[u8], budget: &mut Budget<'_>) -> Result<Vec<u8>, ExtractErrorKind> {
    let corrupt = |detail: String| ExtractErrorKind::Corrupt { kind: DocumentKind::Docx, detail };
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| corrupt(e.to_string()))?;
    if archive.len() > MAX_ENTRIES {
        return Err(corrupt(format!("{} zip entries", archive.len())));
    }
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(|e| corrupt(e.to_string()))?;
        let name = entry.name().map_err(|e| corrupt(e.to_string()))?.into_owned();
        // Only the XML parts carry text; media and embedded objects are skipped unread.
        if !(name.ends_with(".xml") || name.ends_with(".rels")) || entry.is_dir() {
            continue;
        }
        let allowance = budget.limits.max_decompressed_bytes.saturating_sub(budget_used(budget));
        let mut content = Vec::new();
        (&mut entry)
            .take(allowance as u64 + 1)
            .read_to_end(&mut content)
            .map_err(|e| corrupt(format!("{name}: {e}")))?;
        budget.decompressed(content.len())?;
        budget.check_time()?;
        out.start_file(name.clone(), stored).map_err(|e| corrupt(e.to_string()))?;
        out.write_all(&content).map_err(|e| corrupt(e.to_string()))?;
    }
    Ok(out.finish().map_err(|e| corrupt(e.to_string()))?.into_inner())
}

fn budget_used(budget: &Budget<'_>) -> usize {
    budget.decompressed_so_far()
}

/// Accumulates lines of text.
#[derive(Default)]
struct Writer {
    text: String,
    line: String,
}

impl Writer {
    fn end_line(&mut self) {
        let line = self.line.trim();
        if !line.is_empty() {
            self.text.push_str(line);
            self.text.push('\n');
        }
        self.line.clear();
    }

    fn finish(mut self) -> String {
        self.end_line();
        self.text.trim_end().to_owned()
    }
}

/// Walks docx-rs's serialised document tree in order. Paragraphs end lines; table cells are
/// tab-separated; a row ends a line.
fn walk(node: Option<&Value>, out: &mut Writer, tables: usize, budget: &Budget<'_>) -> Result<(), ExtractErrorKind> {
    let Some(node) = node else { return Ok(()) };
    match node {
        Value::Array(items) => {
            for item in items {
                walk(Some(item), out, tables, budget)?;
            }
        }
        Value::Object(map) => {
            let kind = map.get("type").and_then(Value::as_str);
            let data = map.get("data");
            match kind {
                Some("text") => {
                    if let Some(t) = data.and_then(|d| d.get("text")).and_then(Value::as_str) {
                        out.line.push_str(t);
                    }
                }
                Some("tab") | Some("ptab") => out.line.push('\t'),
                Some("break") | Some("carriageReturn") => out.line.push('\n'),
                Some("sym") => {}
                Some("deleteText") | Some("delete") | Some("instrText") | Some("deleteInstrText") => {}
                Some("paragraph") => {
                    walk(data, out, tables, budget)?;
                    out.end_line();
                }
                Some("table") => {
                    budget.check_depth(tables + 1)?;
                    out.end_line();
                    walk(data, out, tables + 1, budget)?;
                    out.end_line();
                }
                Some("tableRow") => {
                    out.end_line();
                    walk(data, out, tables, budget)?;
                    out.end_line();
                }
                Some("tableCell") => {
                    let mut cell = Writer::default();
                    walk(data, &mut cell, tables, budget)?;
                    let cell = cell.finish().replace('\n', " ");
                    if !out.line.trim().is_empty() {
                        out.line.push('\t');
                    }
                    out.line.push_str(&cell);
                }
                _ => {
                    // Containers (hyperlinks, inserts, content controls, runs, sections): their
                    // children are text in document order. Properties hold no text.
                    for (key, value) in map {
                        if key.ends_with("Property") || key == "property" || key == "style" {
                            continue;
                        }
                        if value.is_array() || value.is_object() {
                            walk(Some(value), out, tables, budget)?;
                        }
                    }
                }
            }
        }
        _ => {}
    }
    Ok(())
}
