//! PDF text in reading order. lopdf parses the file and decodes fonts (including ToUnicode
//! CMaps); this module interprets each page's content stream, and the form XObjects it draws,
//! to place every shown string on the page, then rebuilds lines, blocks and columns from those
//! positions, so that two-column layouts read column by column rather than across.

use std::collections::{BTreeMap, HashSet};

use lopdf::content::Content;
use lopdf::{Dictionary, Document, Encoding, LoadOptions, Object, ObjectId};

use super::{Budget, DocumentKind, ExtractErrorKind};

/// A string drawn on the page, in user-space points (y grows upwards).
#[derive(Clone, Debug)]
struct Span {
    x: f64,
    y: f64,
    end_x: f64,
    size: f64,
    text: String,
}

pub(crate) fn extract(bytes: &[u8], budget: &mut Budget<'_>) -> Result<(String, usize), ExtractErrorKind> {
    let corrupt = |detail: String| ExtractErrorKind::Corrupt { kind: DocumentKind::Pdf, detail };
    let options = LoadOptions::with_max_decompressed_size(budget.limits.max_decompressed_bytes);
    let doc = match Document::load_mem_with_options(bytes, options) {
        Ok(doc) => doc,
        Err(lopdf::Error::InvalidPassword | lopdf::Error::Decryption(_)) => return Err(ExtractErrorKind::Encrypted),
        Err(lopdf::Error::Decompress(lopdf::DecompressError::MemoryLimitExceeded { .. })) => {
            return Err(ExtractErrorKind::DecompressedTooLarge { limit: budget.limits.max_decompressed_bytes });
        }
        Err(e) => return Err(corrupt(e.to_string())),
    };
    if doc.trailer.has(b"Encrypt") && doc.encryption_state.is_none() {
        return Err(ExtractErrorKind::Encrypted);
    }
    let pages = doc.get_pages();
    if pages.is_empty() {
        return Err(corrupt("no pages".into()));
    }
    if pages.len() > budget.limits.max_pages {
        return Err(ExtractErrorKind::TooManyPages { pages: pages.len(), limit: budget.limits.max_pages });
    }
    let mut text = String::new();
    let mut images = 0usize;
    for page_id in pages.values() {
        budget.check_time()?;
        let mut reader = PageReader { doc: &doc, budget, spans: Vec::new(), images: 0, visited: HashSet::new() };
        let content = match doc.get_page_content_with_limit(*page_id, reader.remaining_decompression()) {
            Ok(content) => content,
            Err(lopdf::Error::Decompress(lopdf::DecompressError::MemoryLimitExceeded { .. })) => {
                return Err(ExtractErrorKind::DecompressedTooLarge { limit: budget.limits.max_decompressed_bytes });
            }
            // A page whose content cannot be read contributes nothing; the rest still counts.
            Err(_) => continue,
        };
        reader.budget.decompressed(content.len())?;
        let resources = page_resources(&doc, *page_id);
        reader.run(&content, &resources, Matrix::IDENTITY, 0)?;
        images += reader.images;
        let page_text = layout(reader.spans);
        if !page_text.is_empty() {
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(&page_text);
            // A runaway guard in bytes (at most 4 per character); `extract` checks characters.
            budget.check_text(text.len() / 4)?;
        }
    }
    if text.trim().is_empty() && images > 0 {
        return Err(ExtractErrorKind::NoTextLayer { pages: pages.len() });
    }
    Ok((text, pages.len()))
}

/// The page's resource dictionary, inherited from the page tree when the page has none.
fn page_resources(doc: &Document, page_id: ObjectId) -> Dictionary {
    let mut current = doc.get_dictionary(page_id).ok();
    let mut hops = 0;
    while let Some(dict) = current {
        if let Ok(resources) = dict.get(b"Resources").and_then(|o| resolve(doc, o)).and_then(Object::as_dict) {
            return resources.clone();
        }
        hops += 1;
        if hops > 64 {
            break;
        }
        current =
            dict.get(b"Parent").ok().and_then(|p| p.as_reference().ok()).and_then(|id| doc.get_dictionary(id).ok());
    }
    Dictionary::new()
}

fn resolve<'a>(doc: &'a Document, object: &'a Object) -> lopdf::Result<&'a Object> {
    match object {
        Object::Reference(id) => doc.get_object(*id),
        other => Ok(other),
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Matrix([f64; 6]);

impl Matrix {
    const IDENTITY: Matrix = Matrix([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);

    /// self × other (apply self, then other).
    fn then(self, other: Matrix) -> Matrix {
        let [a, b, c, d, e, f] = self.0;
        let [a2, b2, c2, d2, e2, f2] = other.0;
        Matrix([
            a * a2 + b * c2,
            a * b2 + b * d2,
            c * a2 + d * c2,
            c * b2 + d * d2,
            e * a2 + f * c2 + e2,
            e * b2 + f * d2 + f2,
        ])
    }

    fn translate(tx: f64, ty: f64) -> Matrix {
        Matrix([1.0, 0.0, 0.0, 1.0, tx, ty])
    }

    fn apply(self, x: f64, y: f64) -> (f64, f64) {
        let [a, b, c, d, e, f] = self.0;
        (a * x + c * y + e, b * x + d * y + f)
    }

    /// The vertical scale, for turning a font size into page units.
    fn scale(self) -> f64 {
        let [_, _, c, d, _, _] = self.0;
        (c * c + d * d).sqrt()
    }
}

/// A font as the text interpreter needs it: how to decode its codes and how wide they are.
struct Font<'a> {
    encoding: Option<Encoding<'a>>,
    /// Two-byte codes (Type0 fonts).
    two_byte: bool,
    widths: BTreeMap<u32, f64>,
    default_width: f64,
}

impl<'a> Font<'a> {
    fn load(doc: &'a Document, dict: &'a Dictionary, budget: &Budget<'_>) -> Result<Self, ExtractErrorKind> {
        let encoding = match dict.get_font_encoding_with_limit(doc, budget.limits.max_decompressed_bytes) {
            Ok(encoding) => Some(encoding),
            Err(lopdf::Error::Decompress(lopdf::DecompressError::MemoryLimitExceeded { .. })) => {
                return Err(ExtractErrorKind::DecompressedTooLarge { limit: budget.limits.max_decompressed_bytes });
            }
            Err(_) => None,
        };
        let subtype = dict.get(b"Subtype").and_then(Object::as_name).unwrap_or_default();
        let two_byte = subtype == b"Type0";
        let mut widths = BTreeMap::new();
        let mut default_width = 500.0;
        if two_byte {
            let descendant = dict
                .get(b"DescendantFonts")
                .and_then(|o| resolve(doc, o))
                .and_then(Object::as_array)
                .ok()
                .and_then(|a| a.first())
                .and_then(|o| resolve(doc, o).ok())
                .and_then(|o| o.as_dict().ok());
            if let Some(cid) = descendant {
                default_width = cid.get(b"DW").ok().and_then(number).unwrap_or(1000.0);
                if let Ok(w) = cid.get(b"W").and_then(|o| resolve(doc, o)).and_then(Object::as_array) {
                    parse_cid_widths(doc, w, &mut widths);
                }
            }
        } else {
            let first = dict.get(b"FirstChar").ok().and_then(number).unwrap_or(0.0) as u32;
            if let Ok(w) = dict.get(b"Widths").and_then(|o| resolve(doc, o)).and_then(Object::as_array) {
                for (i, width) in w.iter().enumerate().take(256) {
                    if let Some(width) = resolve(doc, width).ok().and_then(number) {
                        widths.insert(first + i as u32, width);
                    }
                }
            }
            let base = dict.get(b"BaseFont").and_then(Object::as_name).unwrap_or_default();
            if base.starts_with(b"Courier") {
                default_width = 600.0;
            }
        }
        Ok(Self { encoding, two_byte, widths, default_width })
    }

    fn decode(&self, bytes: &[u8]) -> String {
        let decoded = self.encoding.as_ref().and_then(|e| e.bytes_to_string(bytes).ok());
        let text = decoded.unwrap_or_else(|| {
            bytes.iter().filter(|b| b.is_ascii_graphic() || **b == b' ').map(|b| *b as char).collect()
        });
        text.chars().filter(|c| !c.is_control() && *c != '\u{fffd}').collect()
    }

    /// Advance of `bytes` in text-space units (thousandths of the font size), with the number
    /// of single-byte 32 codes (where word spacing applies).
    fn advance(&self, bytes: &[u8]) -> (f64, usize) {
        let mut total = 0.0;
        let mut spaces = 0;
        if self.two_byte {
            for pair in bytes.chunks(2) {
                let code = pair.iter().fold(0u32, |acc, b| (acc << 8) | *b as u32);
                total += self.widths.get(&code).copied().unwrap_or(self.default_width);
            }
        } else {
            for b in bytes {
                if *b == b' ' {
                    spaces += 1;
                }
                total += self.widths.get(&(*b as u32)).copied().unwrap_or(if *b == b' ' {
                    250.0
                } else {
                    self.default_width
                });
            }
        }
        (total, spaces)
    }
}

fn number(object: &Object) -> Option<f64> {
    match object {
        Object::Integer(i) => Some(*i as f64),
        Object::Real(r) => Some(*r as f64),
        _ => None,
    }
}

/// `/W [c [w1 w2 …] cfirst clast w …]` of a CIDFont.
fn parse_cid_widths(doc: &Document, array: &[Object], widths: &mut BTreeMap<u32, f64>) {
    let mut i = 0;
    while i < array.len() && widths.len() < 65_536 {
        let Some(first) = number(&array[i]) else { break };
        match array.get(i + 1).map(|o| resolve(doc, o)) {
            Some(Ok(Object::Array(list))) => {
                for (k, w) in list.iter().enumerate().take(65_536) {
                    if let Some(w) = number(w) {
                        widths.insert(first as u32 + k as u32, w);
                    }
                }
                i += 2;
            }
            Some(Ok(last)) => {
                let (Some(last), Some(w)) = (number(last), array.get(i + 2).and_then(number)) else { break };
                let (first, last) = (first as u32, (last as u32).min(first as u32 + 65_536));
                for code in first..=last {
                    widths.insert(code, w);
                }
                i += 3;
            }
            _ => break,
        }
    }
}

/// Text state of the content-stream interpreter (PDF 32000-1 §9.3).
#[derive(Clone, Copy)]
struct TextState {
    char_spacing: f64,
    word_spacing: f64,
    horizontal_scale: f64,
    leading: f64,
    rise: f64,
    size: f64,
}

impl Default for TextState {
    fn default() -> Self {
        Self { char_spacing: 0.0, word_spacing: 0.0, horizontal_scale: 1.0, leading: 0.0, rise: 0.0, size: 0.0 }
    }
}

struct PageReader<'d, 'b, 'l> {
    doc: &'d Document,
    budget: &'b mut Budget<'l>,
    spans: Vec<Span>,
    images: usize,
    /// Form XObjects being drawn, to break reference cycles.
    visited: HashSet<ObjectId>,
}

impl<'d> PageReader<'d, '_, '_> {
    /// What the decompression budget has left, for lopdf's own bound on one page's content.
    fn remaining_decompression(&self) -> usize {
        self.budget.limits.max_decompressed_bytes.saturating_sub(self.budget.decompressed_so_far())
    }

    /// Interprets one content stream with `resources`, under the transformation `base`.
    fn run<'r>(
        &mut self,
        content: &[u8],
        resources: &'r Dictionary,
        base: Matrix,
        depth: usize,
    ) -> Result<(), ExtractErrorKind>
    where
        'd: 'r,
    {
        let doc: &'r Document = self.doc;
        self.budget.check_depth(depth)?;
        let Ok(content) = Content::decode(content) else { return Ok(()) };
        let fonts = resources.get(b"Font").and_then(|o| resolve(doc, o)).and_then(Object::as_dict).ok();
        let mut font_cache: BTreeMap<Vec<u8>, Option<Font<'r>>> = BTreeMap::new();
        let mut current_font: Option<Vec<u8>> = None;
        let mut ctm = base;
        let mut stack: Vec<(Matrix, TextState, Option<Vec<u8>>)> = Vec::new();
        let mut state = TextState::default();
        let mut text_matrix = Matrix::IDENTITY;
        let mut line_matrix = Matrix::IDENTITY;
        for (n, op) in content.operations.iter().enumerate() {
            if n % 2048 == 0 {
                self.budget.check_time()?;
            }
            let nums: Vec<f64> = op.operands.iter().filter_map(number).collect();
            match op.operator.as_str() {
                "q" if stack.len() < 256 => stack.push((ctm, state, current_font.clone())),
                "Q" => {
                    if let Some((m, s, f)) = stack.pop() {
                        (ctm, state, current_font) = (m, s, f);
                    }
                }
                "cm" if nums.len() == 6 => {
                    ctm = Matrix([nums[0], nums[1], nums[2], nums[3], nums[4], nums[5]]).then(ctm);
                }
                "BT" => {
                    text_matrix = Matrix::IDENTITY;
                    line_matrix = Matrix::IDENTITY;
                }
                "Tc" if !nums.is_empty() => state.char_spacing = nums[0],
                "Tw" if !nums.is_empty() => state.word_spacing = nums[0],
                "Tz" if !nums.is_empty() => state.horizontal_scale = nums[0] / 100.0,
                "TL" if !nums.is_empty() => state.leading = nums[0],
                "Ts" if !nums.is_empty() => state.rise = nums[0],
                "Tf" => {
                    if let Some(name) = op.operands.first().and_then(|o| o.as_name().ok()) {
                        current_font = Some(name.to_vec());
                        if !font_cache.contains_key(name) {
                            let dict = fonts
                                .and_then(|f| f.get(name).ok())
                                .and_then(|o| resolve(doc, o).ok())
                                .and_then(|o| o.as_dict().ok());
                            let font = match dict {
                                Some(dict) => Some(Font::load(doc, dict, self.budget)?),
                                None => None,
                            };
                            font_cache.insert(name.to_vec(), font);
                        }
                    }
                    if let Some(size) = nums.first() {
                        state.size = *size;
                    }
                }
                "Td" if nums.len() == 2 => {
                    line_matrix = Matrix::translate(nums[0], nums[1]).then(line_matrix);
                    text_matrix = line_matrix;
                }
                "TD" if nums.len() == 2 => {
                    state.leading = -nums[1];
                    line_matrix = Matrix::translate(nums[0], nums[1]).then(line_matrix);
                    text_matrix = line_matrix;
                }
                "Tm" if nums.len() == 6 => {
                    line_matrix = Matrix([nums[0], nums[1], nums[2], nums[3], nums[4], nums[5]]);
                    text_matrix = line_matrix;
                }
                "T*" => {
                    line_matrix = Matrix::translate(0.0, -state.leading).then(line_matrix);
                    text_matrix = line_matrix;
                }
                "Tj" | "'" | "\"" | "TJ" => {
                    if op.operator == "'" || op.operator == "\"" {
                        if op.operator == "\"" && nums.len() >= 2 {
                            state.word_spacing = nums[0];
                            state.char_spacing = nums[1];
                        }
                        line_matrix = Matrix::translate(0.0, -state.leading).then(line_matrix);
                        text_matrix = line_matrix;
                    }
                    let font = current_font.as_ref().and_then(|f| font_cache.get(f)).and_then(Option::as_ref);
                    let Some(font) = font else { continue };
                    let items: Vec<&Object> = match op.operands.last() {
                        Some(Object::Array(items)) if op.operator == "TJ" => items.iter().collect(),
                        Some(other) => vec![other],
                        None => continue,
                    };
                    self.show(font, &items, &state, &mut text_matrix, ctm);
                }
                "Do" => {
                    let Some(name) = op.operands.first().and_then(|o| o.as_name().ok()) else { continue };
                    self.draw_xobject(name, resources, ctm, depth)?;
                }
                "BI" => self.images += 1,
                _ => {}
            }
        }
        Ok(())
    }

    /// Shows a string (or a TJ array) and advances the text matrix.
    fn show(&mut self, font: &Font<'_>, items: &[&Object], state: &TextState, text_matrix: &mut Matrix, ctm: Matrix) {
        let to_page = |tm: Matrix| {
            Matrix([state.size * state.horizontal_scale, 0.0, 0.0, state.size, 0.0, state.rise]).then(tm).then(ctm)
        };
        let start = to_page(*text_matrix);
        let (x, y) = start.apply(0.0, 0.0);
        let size = start.scale().abs().max(0.1);
        let mut text = String::new();
        for item in items {
            match item {
                Object::String(bytes, _) => {
                    let (advance, spaces) = font.advance(bytes);
                    let chars = if font.two_byte { bytes.len() / 2 } else { bytes.len() };
                    let tx = (advance / 1000.0 * state.size
                        + chars as f64 * state.char_spacing
                        + spaces as f64 * state.word_spacing)
                        * state.horizontal_scale;
                    text.push_str(&font.decode(bytes));
                    *text_matrix = Matrix::translate(tx, 0.0).then(*text_matrix);
                }
                other => {
                    if let Some(adjust) = number(other) {
                        // A large negative adjustment is how many producers typeset a space.
                        if adjust < -180.0 && !text.ends_with(' ') && !text.is_empty() {
                            text.push(' ');
                        }
                        let tx = -adjust / 1000.0 * state.size * state.horizontal_scale;
                        *text_matrix = Matrix::translate(tx, 0.0).then(*text_matrix);
                    }
                }
            }
        }
        let (end_x, _) = to_page(*text_matrix).apply(0.0, 0.0);
        if !text.trim().is_empty() {
            self.spans.push(Span { x: x.min(end_x), y, end_x: end_x.max(x), size, text });
        } else if !text.is_empty() {
            // Spaces drawn on their own still separate words.
            self.spans.push(Span { x: x.min(end_x), y, end_x: end_x.max(x), size, text: " ".into() });
        }
    }

    fn draw_xobject(
        &mut self,
        name: &[u8],
        resources: &Dictionary,
        ctm: Matrix,
        depth: usize,
    ) -> Result<(), ExtractErrorKind> {
        let doc = self.doc;
        let Some(id) = resources
            .get(b"XObject")
            .and_then(|o| resolve(doc, o))
            .and_then(Object::as_dict)
            .ok()
            .and_then(|x| x.get(name).ok())
            .and_then(|o| o.as_reference().ok())
        else {
            return Ok(());
        };
        let Ok(stream) = doc.get_object(id).and_then(Object::as_stream) else { return Ok(()) };
        match stream.dict.get(b"Subtype").and_then(Object::as_name) {
            Ok(b"Image") => self.images += 1,
            Ok(b"Form") => {
                if !self.visited.insert(id) {
                    return Ok(());
                }
                let content = if stream.dict.has(b"Filter") {
                    match stream.decompressed_content_with_limit(self.remaining_decompression()) {
                        Ok(content) => content,
                        Err(lopdf::Error::Decompress(lopdf::DecompressError::MemoryLimitExceeded { .. })) => {
                            return Err(ExtractErrorKind::DecompressedTooLarge {
                                limit: self.budget.limits.max_decompressed_bytes,
                            });
                        }
                        Err(_) => return Ok(()),
                    }
                } else {
                    stream.content.clone()
                };
                self.budget.decompressed(content.len())?;
                let matrix = stream
                    .dict
                    .get(b"Matrix")
                    .and_then(Object::as_array)
                    .ok()
                    .map(|a| a.iter().filter_map(number).collect::<Vec<_>>())
                    .filter(|m| m.len() == 6)
                    .map_or(Matrix::IDENTITY, |m| Matrix([m[0], m[1], m[2], m[3], m[4], m[5]]));
                let own = stream.dict.get(b"Resources").and_then(|o| resolve(doc, o)).and_then(Object::as_dict).ok();
                let inner = own.cloned().unwrap_or_else(|| resources.clone());
                let result = self.run(&content, &inner, matrix.then(ctm), depth + 1);
                self.visited.remove(&id);
                result?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// A run of spans on one baseline, close enough to read as one line.
#[derive(Debug)]
struct Line {
    x0: f64,
    x1: f64,
    y: f64,
    size: f64,
    text: String,
}

/// A paragraph-like stack of lines.
#[derive(Debug)]
struct Block {
    x0: f64,
    x1: f64,
    top: f64,
    bottom: f64,
    lines: Vec<Line>,
}

/// Rebuilds reading order from positioned spans: lines from spans on one baseline, blocks from
/// lines stacked closely with overlapping extents, and columns from blocks side by side.
fn layout(mut spans: Vec<Span>) -> String {
    if spans.is_empty() {
        return String::new();
    }
    // Baselines, top to bottom; ties left to right.
    spans.sort_by(|a, b| b.y.total_cmp(&a.y).then(a.x.total_cmp(&b.x)));
    let mut rows: Vec<Vec<Span>> = Vec::new();
    for span in spans {
        match rows.last_mut() {
            Some(row) if (row[0].y - span.y).abs() <= 0.4 * row[0].size.max(span.size) => row.push(span),
            _ => rows.push(vec![span]),
        }
    }
    let mut lines = Vec::new();
    for mut row in rows {
        row.sort_by(|a, b| a.x.total_cmp(&b.x));
        let mut current: Option<Line> = None;
        for span in row {
            let size = span.size;
            match current.as_mut() {
                // A gap wider than about an em splits the row: a column gutter or a table cell.
                Some(line) if span.x - line.x1 <= 1.0 * size.max(line.size) => {
                    let gap = span.x - line.x1;
                    if gap > 0.15 * size && !line.text.ends_with(' ') && !span.text.starts_with(' ') {
                        line.text.push(' ');
                    }
                    line.text.push_str(&span.text);
                    line.x1 = line.x1.max(span.end_x);
                }
                _ => {
                    if let Some(line) = current.take() {
                        lines.push(line);
                    }
                    current = Some(Line { x0: span.x, x1: span.end_x, y: span.y, size, text: span.text });
                }
            }
        }
        lines.extend(current);
    }
    lines.retain(|l| !l.text.trim().is_empty());

    let mut blocks: Vec<Block> = Vec::new();
    for line in lines {
        let joins = |b: &Block| {
            let last = b.lines.last().expect("blocks are never empty");
            let gap = last.y - line.y;
            let overlap = last.x1.min(line.x1) - last.x0.max(line.x0);
            let narrower = (last.x1 - last.x0).min(line.x1 - line.x0).max(1.0);
            gap > 0.0 && gap <= 1.8 * last.size.max(line.size) && overlap >= 0.3 * narrower
        };
        match blocks.iter_mut().rev().find(|b| joins(b)) {
            Some(block) => {
                block.x0 = block.x0.min(line.x0);
                block.x1 = block.x1.max(line.x1);
                block.bottom = line.y;
                block.lines.push(line);
            }
            None => blocks.push(Block { x0: line.x0, x1: line.x1, top: line.y, bottom: line.y, lines: vec![line] }),
        }
    }
    order_blocks(&mut blocks);
    blocks
        .iter()
        .map(|b| b.lines.iter().map(|l| l.text.trim()).collect::<Vec<_>>().join("\n"))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Orders blocks for reading: the page is cut into bands at blocks that span the other blocks'
/// columns (titles, full-width paragraphs); inside a band, columns left to right, each top to
/// bottom.
fn order_blocks(blocks: &mut Vec<Block>) {
    blocks.sort_by(|a, b| b.top.total_cmp(&a.top));
    let mut ordered = Vec::with_capacity(blocks.len());
    let mut band: Vec<Block> = Vec::new();
    let all: Vec<(f64, f64, f64, f64)> = blocks.iter().map(|b| (b.x0, b.x1, b.top, b.bottom)).collect();
    for block in blocks.drain(..) {
        // A block is a separator when no other block sits beside it (overlapping its vertical
        // extent while lying entirely left or right of it).
        let beside = all.iter().any(|&(x0, x1, top, bottom)| {
            let vertical = top.min(block.top) - bottom.max(block.bottom) >= -0.5 * block.lines[0].size;
            let side = x1 <= block.x0 || x0 >= block.x1;
            vertical && side && !(x0 == block.x0 && x1 == block.x1 && top == block.top)
        });
        if beside {
            band.push(block);
        } else {
            flush_band(&mut band, &mut ordered);
            ordered.push(block);
        }
    }
    flush_band(&mut band, &mut ordered);
    *blocks = ordered;
}

fn flush_band(band: &mut Vec<Block>, ordered: &mut Vec<Block>) {
    band.sort_by(|a, b| a.x0.total_cmp(&b.x0));
    let mut columns: Vec<(f64, Vec<Block>)> = Vec::new();
    for block in band.drain(..) {
        match columns.last_mut() {
            Some((right, column)) if block.x0 < *right => {
                *right = right.max(block.x1);
                column.push(block);
            }
            _ => columns.push((block.x1, vec![block])),
        }
    }
    for (_, mut column) in columns {
        column.sort_by(|a, b| b.top.total_cmp(&a.top));
        ordered.extend(column);
    }
}
