//! PDF text in reading order. lopdf parses the file; `fonts` decodes what lopdf cannot (lenient
//! ToUnicode maps, the encodings inside embedded font programs). This module interprets each
//! page's content stream, and the form XObjects it draws, to place every shown string on the
//! page, then rebuilds lines, blocks and columns from those positions, so that two-column
//! layouts read column by column rather than across, table rows stay whole, and words
//! hyphenated across lines are joined again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

use lopdf::content::Content;
use lopdf::{Dictionary, Document, Encoding, LoadOptions, Object, ObjectId};

use super::fonts::{self, ToUnicode};
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
    let mut font_cache = FontCache::default();
    for page_id in pages.values() {
        budget.check_time()?;
        let mut reader = PageReader {
            doc: &doc,
            budget,
            spans: Vec::new(),
            images: 0,
            visited: HashSet::new(),
            font_cache: &mut font_cache,
        };
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
    /// The font's ToUnicode CMap, read by our own lenient parser; it wins over `encoding`.
    to_unicode: Option<Rc<ToUnicode>>,
    /// Text by code that overrides `encoding` for simple fonts without ToUnicode: the embedded
    /// program's built-in encoding (Type 1 or CFF; lopdf would read StandardEncoding), overlaid
    /// with the /Differences names resolved one by one.
    builtin: BTreeMap<u8, String>,
    /// Two-byte codes (Type0 fonts).
    two_byte: bool,
    widths: BTreeMap<u32, f64>,
    default_width: f64,
}

impl<'a> Font<'a> {
    fn load(
        doc: &'a Document,
        dict: &'a Dictionary,
        budget: &mut Budget<'_>,
        cache: &mut FontCache,
    ) -> Result<Self, ExtractErrorKind> {
        budget.check_time()?;
        let encoding = match dict.get_font_encoding_with_limit(doc, budget.limits.max_decompressed_bytes) {
            Ok(encoding) => Some(encoding),
            Err(lopdf::Error::Decompress(lopdf::DecompressError::MemoryLimitExceeded { .. })) => {
                return Err(ExtractErrorKind::DecompressedTooLarge { limit: budget.limits.max_decompressed_bytes });
            }
            Err(_) => None,
        };
        let subtype = dict.get(b"Subtype").and_then(Object::as_name).unwrap_or_default();
        let two_byte = subtype == b"Type0";
        let to_unicode = match dict.get(b"ToUnicode") {
            Ok(object) => cache.unicode_map(doc, object, budget)?,
            Err(_) => None,
        };
        let mut builtin = BTreeMap::new();
        if to_unicode.is_none() && !two_byte {
            // An embedded program's own encoding is the base unless /Encoding names another.
            let names_base = dict
                .get(b"Encoding")
                .and_then(|o| resolve(doc, o))
                .is_ok_and(|e| e.as_name().is_ok() || e.as_dict().is_ok_and(|d| d.has(b"BaseEncoding")));
            if subtype == b"Type1" && !names_base {
                builtin = cache.builtin_encoding(doc, dict, budget)?;
            }
            builtin.extend(differences_text(doc, dict));
        }
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
        Ok(Self { encoding, to_unicode, builtin, two_byte, widths, default_width })
    }

    fn decode(&self, bytes: &[u8]) -> String {
        let code_length = if self.two_byte { 2 } else { 1 };
        // Right-to-left text is drawn left to right, so it is reordered glyph by glyph; the
        // encoding path decodes whole strings, and per glyph only when it meets such text.
        let glyphs = match &self.to_unicode {
            Some(map) => map.decode_glyphs(bytes, code_length, |code| self.decode_by_encoding(code)),
            None => {
                let text = self.decode_by_encoding(bytes);
                if !text.chars().any(fonts::is_rtl) {
                    return clean(&text);
                }
                bytes.chunks(code_length).map(|code| self.decode_by_encoding(code)).collect()
            }
        };
        let text = if glyphs.iter().any(|g| g.chars().any(fonts::is_rtl)) {
            fonts::logical_order(glyphs)
        } else {
            glyphs.concat()
        };
        clean(&text)
    }

    fn decode_by_encoding(&self, bytes: &[u8]) -> String {
        if self.builtin.is_empty() || self.two_byte {
            return self.decode_by_encoding_only(bytes);
        }
        let mut out = String::new();
        for byte in bytes {
            match self.builtin.get(byte) {
                Some(text) => out.push_str(text),
                None => out.push_str(&self.decode_by_encoding_only(&[*byte])),
            }
        }
        out
    }

    fn decode_by_encoding_only(&self, bytes: &[u8]) -> String {
        let decoded = self.encoding.as_ref().and_then(|e| e.bytes_to_string(bytes).ok());
        decoded.unwrap_or_else(|| {
            bytes.iter().filter(|b| b.is_ascii_graphic() || **b == b' ').map(|b| *b as char).collect()
        })
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

/// Decoded text as it enters a span: ligatures and presentation forms as letters, no control
/// characters or replacement marks.
fn clean(text: &str) -> String {
    fonts::normalise(text).chars().filter(|c| !c.is_control() && *c != '\u{fffd}').collect()
}

/// A stream's decoded bytes, or `None` when it cannot be decoded within `limit`.
fn stream_content(stream: &lopdf::Stream, limit: usize) -> Option<Vec<u8>> {
    if stream.is_compressed() {
        stream.decompressed_content_with_limit(limit).ok()
    } else {
        (stream.content.len() <= limit).then(|| stream.content.clone())
    }
}

/// Font streams decoded once per document, by the stream's object: a font used on every page is
/// decompressed and parsed once, and charged to the decompression budget once.
#[derive(Default)]
struct FontCache {
    to_unicode: HashMap<ObjectId, Option<Rc<ToUnicode>>>,
    programs: HashMap<ObjectId, BTreeMap<u8, String>>,
}

/// The largest ToUnicode CMap read: real ones are well under a megabyte.
const MAX_CMAP_BYTES: usize = 4 << 20;
/// The largest font program read for its built-in encoding.
const MAX_FONT_PROGRAM_BYTES: usize = 16 << 20;
/// Font objects cached per document, at most.
const MAX_CACHED_FONT_STREAMS: usize = 4096;

/// The decoded bytes of the stream `object` (direct or referenced), at most `cap` of them,
/// charged to the budget.
fn font_stream(
    doc: &Document,
    object: &Object,
    cap: usize,
    budget: &mut Budget<'_>,
) -> Result<Option<Vec<u8>>, ExtractErrorKind> {
    let Some(stream) = resolve(doc, object).ok().and_then(|o| o.as_stream().ok()) else { return Ok(None) };
    let limit = cap.min(budget.limits.max_decompressed_bytes.saturating_sub(budget.decompressed_so_far()));
    let content = stream_content(stream, limit);
    if let Some(content) = &content {
        budget.decompressed(content.len())?;
    }
    Ok(content)
}

impl FontCache {
    fn unicode_map(
        &mut self,
        doc: &Document,
        object: &Object,
        budget: &mut Budget<'_>,
    ) -> Result<Option<Rc<ToUnicode>>, ExtractErrorKind> {
        let id = object.as_reference().ok();
        if let Some(known) = id.and_then(|id| self.to_unicode.get(&id)) {
            return Ok(known.clone());
        }
        let map =
            font_stream(doc, object, MAX_CMAP_BYTES, budget)?.and_then(|data| ToUnicode::parse(&data)).map(Rc::new);
        if let Some(id) = id
            && self.to_unicode.len() < MAX_CACHED_FONT_STREAMS
        {
            self.to_unicode.insert(id, map.clone());
        }
        Ok(map)
    }

    /// The text of each code of an embedded Type 1 (or CFF) font's built-in encoding. Glyph
    /// names go through `glyph_text`.
    fn builtin_encoding(
        &mut self,
        doc: &Document,
        font: &Dictionary,
        budget: &mut Budget<'_>,
    ) -> Result<BTreeMap<u8, String>, ExtractErrorKind> {
        let descriptor = font.get(b"FontDescriptor").and_then(|o| resolve(doc, o)).and_then(Object::as_dict).ok();
        // FontFile holds a Type 1 program; FontFile3 with /Subtype /Type1C a bare CFF one (other
        // FontFile3 programs are OpenType, whose encoding lives elsewhere).
        for (key, cff) in [(&b"FontFile"[..], false), (&b"FontFile3"[..], true)] {
            let Some(object) = descriptor.and_then(|d| d.get(key).ok()) else { continue };
            if cff {
                let subtype = resolve(doc, object)
                    .and_then(Object::as_stream)
                    .ok()
                    .and_then(|s| s.dict.get(b"Subtype").and_then(Object::as_name).ok());
                if subtype != Some(b"Type1C".as_slice()) {
                    continue;
                }
            }
            let id = object.as_reference().ok();
            if let Some(known) = id.and_then(|id| self.programs.get(&id)) {
                return Ok(known.clone());
            }
            let program = font_stream(doc, object, MAX_FONT_PROGRAM_BYTES, budget)?;
            let names = program
                .and_then(|p| if cff { fonts::cff_builtin_encoding(&p) } else { fonts::type1_builtin_encoding(&p) });
            let text: BTreeMap<u8, String> = names
                .map(|names| {
                    names.into_iter().filter_map(|(code, name)| Some((code, glyph_text(doc, &name)?))).collect()
                })
                .unwrap_or_default();
            if let Some(id) = id
                && self.programs.len() < MAX_CACHED_FONT_STREAMS
            {
                self.programs.insert(id, text.clone());
            }
            return Ok(text);
        }
        Ok(BTreeMap::new())
    }
}

/// The text of each code a simple font's /Encoding /Differences names, one name at a time:
/// lopdf drops a whole /Differences array (and falls back to StandardEncoding) when one name is
/// not in the Adobe Glyph List, as TeX's names often are not.
fn differences_text(doc: &Document, font: &Dictionary) -> BTreeMap<u8, String> {
    let Some(differences) = font
        .get(b"Encoding")
        .and_then(|o| resolve(doc, o))
        .and_then(Object::as_dict)
        .and_then(|e| e.get(b"Differences"))
        .and_then(|o| resolve(doc, o))
        .and_then(Object::as_array)
        .ok()
    else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    let mut code: i64 = 0;
    for item in differences.iter().take(4096) {
        match item {
            Object::Integer(start) => code = *start,
            Object::Name(name) => {
                if let (Ok(byte), Some(text)) =
                    (u8::try_from(code), std::str::from_utf8(name).ok().and_then(|n| glyph_text(doc, n)))
                {
                    out.insert(byte, text);
                }
                code = code.saturating_add(1);
            }
            _ => {}
        }
    }
    out
}

/// The text of a glyph name: TeX's own names, `uniXXXX`, or the Adobe Glyph List (through lopdf,
/// by decoding code 0 of a synthetic one-name /Differences encoding). Cached for the process.
fn glyph_text(doc: &Document, name: &str) -> Option<String> {
    static CACHE: std::sync::OnceLock<std::sync::Mutex<HashMap<String, Option<String>>>> = std::sync::OnceLock::new();
    if name.len() > 64 {
        return None;
    }
    let cache = CACHE.get_or_init(Default::default);
    if let Some(known) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(name) {
        return known.clone();
    }
    let text = if let Some(text) = fonts::tex_glyph_text(name) {
        Some(text.to_owned())
    } else if let Some(hex) = name.strip_prefix("uni").filter(|h| h.len() == 4) {
        u32::from_str_radix(hex, 16).ok().and_then(char::from_u32).map(String::from)
    } else {
        let mut encoding = Dictionary::new();
        encoding.set("Differences", Object::Array(vec![Object::Integer(0), Object::Name(name.as_bytes().to_vec())]));
        let mut synthetic = Dictionary::new();
        synthetic.set("Type", Object::Name(b"Font".to_vec()));
        synthetic.set("Encoding", Object::Dictionary(encoding));
        match synthetic.get_font_encoding(doc) {
            Ok(Encoding::Differences(d)) => {
                Encoding::Differences(d).bytes_to_string(&[0]).ok().filter(|t| !t.is_empty())
            }
            _ => None,
        }
    };
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    if cache.len() < 65_536 {
        cache.insert(name.to_owned(), text.clone());
    }
    text
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
    /// Font streams decoded once per document.
    font_cache: &'b mut FontCache,
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
                                Some(dict) => Some(Font::load(doc, dict, self.budget, self.font_cache)?),
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
                    let decoded = font.decode(bytes);
                    let script_change = fonts::script_changes(&text, &decoded);
                    // Glyphs that map to no text but advance (a space glyph whose ToUnicode entry is
                    // empty) still separate words, and so does a switch between a left-to-right and
                    // a right-to-left script, which no word makes.
                    let blank_advance = decoded.is_empty() && tx > 0.15 * state.size && !text.is_empty();
                    if (blank_advance || script_change) && !text.ends_with(' ') {
                        text.push(' ');
                    }
                    text.push_str(&decoded);
                    *text_matrix = Matrix::translate(tx, 0.0).then(*text_matrix);
                    // A runaway guard: one string operator cannot hold more than a document may.
                    if text.len() / 4 > self.budget.limits.max_text_chars {
                        break;
                    }
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
    let mut segmented: Vec<Vec<Line>> = Vec::with_capacity(rows.len());
    for mut row in rows {
        row.sort_by(|a, b| a.x.total_cmp(&b.x));
        let mut segments: Vec<Line> = Vec::new();
        let mut current: Option<Line> = None;
        for span in row {
            let size = span.size;
            match current.as_mut() {
                // A gap wider than about an em splits the row: a column gutter or a table cell.
                Some(line) if span.x - line.x1 <= 1.0 * size.max(line.size) => {
                    let gap = span.x - line.x1;
                    let separate = gap > 0.15 * size || fonts::script_changes(&line.text, &span.text);
                    if separate && !line.text.ends_with(' ') && !span.text.starts_with(' ') {
                        line.text.push(' ');
                    }
                    line.text.push_str(&span.text);
                    line.x1 = line.x1.max(span.end_x);
                }
                _ => {
                    if let Some(line) = current.take() {
                        segments.push(line);
                    }
                    current = Some(Line { x0: span.x, x1: span.end_x, y: span.y, size, text: span.text });
                }
            }
        }
        segments.extend(current);
        segments.retain(|l| !l.text.trim().is_empty());
        segmented.push(segments);
    }
    let mut lines = Vec::new();
    for row in join_table_rows(segmented) {
        lines.extend(row);
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
    blocks.iter().map(|b| join_lines(b.lines.iter().map(|l| l.text.trim()))).collect::<Vec<_>>().join("\n\n")
}

/// Rows of a table kept whole: where at least two consecutive rows are split into three or
/// more segments of at most three words each on average (cells, not the lines of text columns)
/// and at least two segments of each start where one of the other row's starts (aligned
/// columns), each such row becomes one line with its cells separated by " | ", so a chunk holds
/// a whole row. Other rows keep their segments, which the block layout reads column by column.
fn join_table_rows(rows: Vec<Vec<Line>>) -> Vec<Vec<Line>> {
    let is_cells = |row: &Vec<Line>| {
        let words: usize = row.iter().map(|l| l.text.split_whitespace().count()).sum();
        row.len() >= 3 && words <= 3 * row.len()
    };
    let aligned = |a: &Vec<Line>, b: &Vec<Line>| {
        let em = a.iter().chain(b).map(|l| l.size).fold(1.0, f64::max);
        a.iter().filter(|x| b.iter().any(|y| (x.x0 - y.x0).abs() <= 0.5 * em)).count() >= 2
    };
    let cells: Vec<bool> = rows.iter().map(is_cells).collect();
    let linked: Vec<bool> = (0..rows.len())
        .map(|i| i + 1 < rows.len() && cells[i] && cells[i + 1] && aligned(&rows[i], &rows[i + 1]))
        .collect();
    rows.into_iter()
        .enumerate()
        .map(|(i, row)| {
            let in_table = linked[i] || (i > 0 && linked[i - 1]);
            if !in_table {
                return row;
            }
            let first = &row[0];
            let (x0, y, size) = (first.x0, first.y, row.iter().map(|l| l.size).fold(0.0, f64::max));
            let x1 = row.iter().map(|l| l.x1).fold(f64::MIN, f64::max);
            let text = row.iter().map(|l| l.text.trim()).collect::<Vec<_>>().join(" | ");
            vec![Line { x0, x1, y, size, text }]
        })
        .collect()
}

/// A block's lines, one per line, except that a word hyphenated across a line break is joined
/// again ("pellen-" + "tesque" -> "pellentesque"): a lower-case letter, a hyphen at the end of
/// the line, and a lower-case letter starting the next, as typesetters break words. A compound
/// that already has a hyphen keeps the one at the break ("state-of-the-" + "art").
fn join_lines<'l>(lines: impl Iterator<Item = &'l str>) -> String {
    let mut out = String::new();
    for line in lines {
        let mut tail = out.chars().rev();
        let hyphenated = tail.next() == Some('-') && tail.next().is_some_and(char::is_lowercase);
        if hyphenated && line.chars().next().is_some_and(char::is_lowercase) {
            let word = out[..out.len() - 1].rsplit(char::is_whitespace).next().unwrap_or_default();
            if !word.contains('-') {
                out.pop();
            }
        } else if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(line);
    }
    out
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

#[cfg(test)]
mod tests {
    use super::join_lines;

    #[test]
    fn a_word_hyphenated_across_lines_is_joined_and_other_hyphens_stay() {
        let lines = ["Pellen-", "tesque habitant", "state-of-the-", "art. The well-", "Known", "x -", "y"];
        assert_eq!(join_lines(lines.into_iter()), "Pellentesque habitant\nstate-of-the-art. The well-\nKnown\nx -\ny");
    }
}
