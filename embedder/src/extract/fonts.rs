//! Text of font codes that lopdf does not decode on its own, and the character-level rules of
//! extraction: ToUnicode CMaps parsed leniently (one empty destination, which producers write
//! for glyphs that carry no text, makes lopdf drop the whole map and fall back to
//! StandardEncoding); the built-in encodings of embedded Type 1 and CFF (Type1C) font programs
//! (TeX's Computer Modern fonts carry their ligatures and Greek letters there, with no /Encoding
//! in the PDF), with TeX's glyph names that the Adobe Glyph List lacks; the normalisation of
//! ligatures and Arabic presentation forms to the letters a reader searches for; and where a
//! change of writing direction separates words. Every parser here reads hostile bytes: bounded
//! work, no panics.

use std::collections::BTreeMap;

use unicode_normalization::UnicodeNormalization;

/// Most bfchar/bfrange entries one CMap may declare: a guard against a hostile map, far above
/// what real fonts use (a few thousand).
const MAX_CMAP_ENTRIES: usize = 100_000;
/// Longest text one code may map to, in UTF-16 units: real maps give a ligature or a word; a
/// longer destination is ignored rather than repeated for every glyph shown.
const MAX_DESTINATION_UNITS: usize = 256;

/// A ToUnicode CMap: source codes, by byte length, to text.
#[derive(Debug, Default)]
pub(crate) struct ToUnicode {
    chars: BTreeMap<(usize, u32), String>,
    /// Sorted by (length, low), for binary search.
    ranges: Vec<Range>,
    /// The codespace ranges (low and high bytes of equal length): they decide how many bytes
    /// the next code takes.
    codespace: Vec<(Vec<u8>, Vec<u8>)>,
    /// Code lengths in bytes, ascending: the codespace's, or the mappings' when it has none.
    lengths: Vec<usize>,
}

#[derive(Debug)]
struct Range {
    length: usize,
    low: u32,
    high: u32,
    destination: RangeDestination,
}

#[derive(Debug)]
enum RangeDestination {
    /// The text of `low`; each following code adds one to its last UTF-16 unit.
    Start(Vec<u16>),
    /// One text per code.
    Each(Vec<String>),
}

#[derive(Debug, PartialEq)]
enum Token<'a> {
    Hex(Vec<u8>),
    Open,
    Close,
    Word(&'a [u8]),
}

fn tokens(data: &[u8]) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'%' => {
                while i < data.len() && data[i] != b'\n' && data[i] != b'\r' {
                    i += 1;
                }
            }
            b'<' if data.get(i + 1) == Some(&b'<') => i += 2,
            b'>' if data.get(i + 1) == Some(&b'>') => i += 2,
            b'<' => {
                let end = data[i..].iter().position(|b| *b == b'>').map_or(data.len(), |p| i + p);
                let nibbles: Vec<u8> =
                    data[i + 1..end].iter().filter_map(|b| char::from(*b).to_digit(16)).map(|d| d as u8).collect();
                // An odd last digit counts as followed by 0 (PDF 7.3.4.3).
                let bytes: Vec<u8> =
                    nibbles.chunks(2).map(|pair| pair[0] << 4 | pair.get(1).copied().unwrap_or(0)).collect();
                out.push(Token::Hex(bytes));
                i = end + 1;
            }
            b'[' => {
                out.push(Token::Open);
                i += 1;
            }
            b']' => {
                out.push(Token::Close);
                i += 1;
            }
            b if b.is_ascii_whitespace() => i += 1,
            _ => {
                let start = i;
                while i < data.len() && !data[i].is_ascii_whitespace() && !b"<>[]%".contains(&data[i]) {
                    i += 1;
                }
                out.push(Token::Word(&data[start..i]));
                if i == start {
                    i += 1;
                }
            }
        }
    }
    out
}

fn code(bytes: &[u8]) -> u32 {
    bytes.iter().take(4).fold(0u32, |acc, b| (acc << 8) | *b as u32)
}

fn utf16(bytes: &[u8]) -> Vec<u16> {
    bytes
        .chunks(2)
        .map(|pair| if pair.len() == 2 { u16::from_be_bytes([pair[0], pair[1]]) } else { pair[0] as u16 })
        .collect()
}

fn text_of(units: &[u16]) -> String {
    char::decode_utf16(units.iter().copied()).filter_map(Result::ok).collect()
}

impl ToUnicode {
    /// Parses a CMap stream; `None` when it declares no mapping at all.
    pub(crate) fn parse(data: &[u8]) -> Option<Self> {
        let tokens = tokens(data);
        let mut map = Self::default();
        let mut entries = 0usize;
        let mut i = 0;
        while i < tokens.len() && entries < MAX_CMAP_ENTRIES {
            match tokens[i] {
                Token::Word(b"begincodespacerange") => {
                    i += 1;
                    while let (Some(Token::Hex(low)), Some(Token::Hex(high))) = (tokens.get(i), tokens.get(i + 1)) {
                        if (1..=4).contains(&low.len()) && low.len() == high.len() && map.codespace.len() < 256 {
                            map.codespace.push((low.clone(), high.clone()));
                            if !map.lengths.contains(&low.len()) {
                                map.lengths.push(low.len());
                            }
                        }
                        i += 2;
                    }
                }
                Token::Word(b"beginbfchar") => {
                    i += 1;
                    while let (Some(Token::Hex(source)), Some(Token::Hex(destination))) =
                        (tokens.get(i), tokens.get(i + 1))
                    {
                        if entries >= MAX_CMAP_ENTRIES {
                            break;
                        }
                        if (1..=4).contains(&source.len()) && destination.len() <= 2 * MAX_DESTINATION_UNITS {
                            map.chars.insert((source.len(), code(source)), text_of(&utf16(destination)));
                            entries += 1;
                        }
                        i += 2;
                    }
                }
                Token::Word(b"beginbfrange") => {
                    i += 1;
                    while let (Some(Token::Hex(low)), Some(Token::Hex(high))) = (tokens.get(i), tokens.get(i + 1)) {
                        if entries >= MAX_CMAP_ENTRIES {
                            break;
                        }
                        i += 2;
                        let destination = match tokens.get(i) {
                            Some(Token::Hex(start)) => {
                                i += 1;
                                RangeDestination::Start(utf16(start))
                            }
                            Some(Token::Open) => {
                                let mut each = Vec::new();
                                i += 1;
                                while let Some(Token::Hex(text)) = tokens.get(i) {
                                    if each.len() < 65_536 {
                                        each.push(text_of(&utf16(text)));
                                    }
                                    i += 1;
                                }
                                if tokens.get(i) == Some(&Token::Close) {
                                    i += 1;
                                }
                                RangeDestination::Each(each)
                            }
                            _ => break,
                        };
                        let short = match &destination {
                            RangeDestination::Start(units) => units.len() <= MAX_DESTINATION_UNITS,
                            RangeDestination::Each(each) => each.iter().all(|t| t.len() <= 4 * MAX_DESTINATION_UNITS),
                        };
                        if (1..=4).contains(&low.len()) && code(low) <= code(high) && short {
                            map.ranges.push(Range { length: low.len(), low: code(low), high: code(high), destination });
                            entries += 1;
                        }
                    }
                }
                _ => i += 1,
            }
        }
        if map.chars.is_empty() && map.ranges.is_empty() {
            return None;
        }
        if map.lengths.is_empty() {
            map.lengths =
                map.chars.keys().map(|(length, _)| *length).chain(map.ranges.iter().map(|r| r.length)).collect();
        }
        map.lengths.sort_unstable();
        map.lengths.dedup();
        map.ranges.sort_by_key(|r| (r.length, r.low));
        Some(map)
    }

    /// The length of the code at the start of `bytes` by the codespace ranges, if one matches.
    fn codespace_length(&self, bytes: &[u8]) -> Option<usize> {
        self.codespace
            .iter()
            .filter(|(low, _)| low.len() <= bytes.len())
            .find(|(low, high)| (0..low.len()).all(|k| low[k] <= bytes[k] && bytes[k] <= high[k]))
            .map(|(low, _)| low.len())
    }

    fn lookup(&self, length: usize, value: u32) -> Option<String> {
        if let Some(text) = self.chars.get(&(length, value)) {
            return Some(text.clone());
        }
        // The last range starting at or below `value` (ranges of real maps do not overlap).
        let after = self.ranges.partition_point(|r| (r.length, r.low) <= (length, value));
        let range = self.ranges[..after].last().filter(|r| r.length == length && value <= r.high)?;
        let offset = value - range.low;
        match &range.destination {
            RangeDestination::Start(units) => {
                let mut units = units.clone();
                if let Some(last) = units.last_mut() {
                    *last = last.wrapping_add(offset as u16);
                }
                Some(text_of(&units))
            }
            RangeDestination::Each(each) => each.get(offset as usize).cloned(),
        }
    }

    /// The text of `bytes`; codes the map lacks are read as `default_length`-byte codes and
    /// decoded by `fallback`.
    /// The text of `bytes` in drawing order, for the tests.
    #[cfg(test)]
    fn decode(&self, bytes: &[u8], default_length: usize, fallback: impl Fn(&[u8]) -> String) -> String {
        self.decode_glyphs(bytes, default_length, fallback).concat()
    }

    /// The text of each code of `bytes`, in drawing order.
    pub(crate) fn decode_glyphs(
        &self,
        bytes: &[u8],
        default_length: usize,
        fallback: impl Fn(&[u8]) -> String,
    ) -> Vec<String> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let hit =
                match self.codespace_length(&bytes[i..]) {
                    Some(length) => self.lookup(length, code(&bytes[i..i + length])).map(|text| (length, text)),
                    None => self.lengths.iter().filter(|l| i + **l <= bytes.len()).find_map(|length| {
                        self.lookup(*length, code(&bytes[i..i + length])).map(|text| (*length, text))
                    }),
                };
            match hit {
                Some((length, text)) => {
                    out.push(text);
                    i += length;
                }
                None => {
                    let length = default_length.clamp(1, bytes.len() - i);
                    out.push(fallback(&bytes[i..i + length]));
                    i += length;
                }
            }
        }
        out
    }
}

/// Hebrew points and Arabic vowel marks: they belong to the letter drawn before them.
fn is_mark(c: char) -> bool {
    matches!(c, '\u{0591}'..='\u{05c7}' | '\u{0610}'..='\u{061a}' | '\u{064b}'..='\u{065f}' | '\u{0670}' | '\u{06d6}'..='\u{06ed}')
}

/// Glyph texts in drawing order (left to right on the page, as producers place right-to-left
/// text too) put into reading order: each run of right-to-left glyphs, with the spaces and
/// punctuation between them, is reversed glyph by glyph. The text inside one glyph stays as the
/// font maps it, since a font that maps one glyph to a whole word maps it in reading order; a
/// vowel mark stays with the letter drawn before it.
pub(crate) fn logical_order(glyphs: Vec<String>) -> String {
    #[derive(Clone, Copy, PartialEq)]
    enum Direction {
        RightToLeft,
        LeftToRight,
        Neutral,
    }
    let mut units: Vec<String> = Vec::with_capacity(glyphs.len());
    for glyph in glyphs {
        match units.last_mut() {
            Some(previous) if !glyph.is_empty() && glyph.chars().all(is_mark) => previous.push_str(&glyph),
            _ => units.push(glyph),
        }
    }
    let direction = |text: &str| match text.chars().find(|c| c.is_alphabetic()) {
        Some(c) if is_rtl(c) => Direction::RightToLeft,
        Some(_) => Direction::LeftToRight,
        None => Direction::Neutral,
    };
    let directions: Vec<Direction> = units.iter().map(|u| direction(u)).collect();
    let mut i = 0;
    while i < units.len() {
        if directions[i] != Direction::RightToLeft {
            i += 1;
            continue;
        }
        // The run ends at its last right-to-left glyph before a left-to-right one.
        let mut end = i;
        let mut j = i + 1;
        while j < units.len() && directions[j] != Direction::LeftToRight {
            if directions[j] == Direction::RightToLeft {
                end = j;
            }
            j += 1;
        }
        units[i..=end].reverse();
        i = end + 1;
    }
    units.concat()
}

/// The glyph names of a Type 1 font program's built-in `/Encoding` (`dup CODE /name put`), by
/// code; `None` when the program uses StandardEncoding or declares none.
pub(crate) fn type1_builtin_encoding(program: &[u8]) -> Option<BTreeMap<u8, String>> {
    let start = program.windows(9).position(|w| w == b"/Encoding")? + 9;
    // The encoding ends where the private (encrypted) part begins, at the latest.
    let end = program[start..].windows(5).position(|w| w == b"eexec").map_or(program.len(), |p| start + p);
    let tokens = tokens(&program[start..end]);
    if matches!(tokens.first(), Some(Token::Word(b"StandardEncoding"))) {
        return None;
    }
    let mut names = BTreeMap::new();
    for window in tokens.windows(4) {
        if let [Token::Word(b"dup"), Token::Word(number), Token::Word(name), Token::Word(b"put")] = window
            && let (Some(code), Some(name)) = (
                std::str::from_utf8(number).ok().and_then(|n| n.parse::<u8>().ok()),
                name.strip_prefix(b"/").and_then(|n| std::str::from_utf8(n).ok()),
            )
        {
            names.insert(code, name.to_owned());
        }
        if let Token::Word(b"def") = window[0]
            && !names.is_empty()
        {
            break;
        }
    }
    (!names.is_empty()).then_some(names)
}

/// The glyph names of a bare CFF font program's (FontFile3, Type1C) built-in encoding, by
/// code; `None` when it uses the standard encoding, or cannot be read.
pub(crate) fn cff_builtin_encoding(cff: &[u8]) -> Option<BTreeMap<u8, String>> {
    // Major version 1: a bare CFF program, not an OpenType one ("OTTO").
    if cff.first() != Some(&1) {
        return None;
    }
    let header_size = *cff.get(2)? as usize;
    let (_, after_names) = cff_index(cff, header_size)?;
    let (top_dicts, after_top) = cff_index(cff, after_names)?;
    let (strings, _) = cff_index(cff, after_top)?;
    let top = top_dicts.first()?;
    let operators = cff_dict(top);
    let encoding_offset = operators.get(&16).and_then(|v| v.first()).copied().unwrap_or(0) as usize;
    if encoding_offset <= 1 {
        return None;
    }
    let charstrings_offset = *operators.get(&17)?.first()? as usize;
    let charset_offset = operators.get(&15).and_then(|v| v.first()).copied().unwrap_or(0) as usize;
    let (charstrings, _) = cff_index(cff, charstrings_offset)?;
    let glyphs = charstrings.len();
    // Glyph id -> string id.
    let mut sids = vec![0u16; glyphs];
    match charset_offset {
        0 => sids.iter_mut().enumerate().for_each(|(gid, sid)| *sid = gid as u16),
        1 | 2 => return None,
        offset => {
            let format = *cff.get(offset)?;
            let mut at = offset + 1;
            let mut gid = 1;
            while gid < glyphs {
                let first = u16::from_be_bytes([*cff.get(at)?, *cff.get(at + 1)?]);
                match format {
                    0 => {
                        sids[gid] = first;
                        gid += 1;
                        at += 2;
                    }
                    1 | 2 => {
                        let (left, width) = if format == 1 {
                            (*cff.get(at + 2)? as usize, 3)
                        } else {
                            (u16::from_be_bytes([*cff.get(at + 2)?, *cff.get(at + 3)?]) as usize, 4)
                        };
                        for k in 0..=left {
                            if gid >= glyphs {
                                break;
                            }
                            sids[gid] = first.wrapping_add(k as u16);
                            gid += 1;
                        }
                        at += width;
                    }
                    _ => return None,
                }
            }
        }
    }
    let name_of = |sid: u16| -> Option<String> {
        let sid = sid as usize;
        match CFF_STANDARD_STRINGS.get(sid) {
            Some(name) => Some((*name).to_owned()),
            None => strings.get(sid - CFF_STANDARD_STRINGS.len()).map(|s| String::from_utf8_lossy(s).into_owned()),
        }
    };
    let format = *cff.get(encoding_offset)?;
    let mut at = encoding_offset + 1;
    let mut names = BTreeMap::new();
    match format & 0x7f {
        0 => {
            let count = *cff.get(at)? as usize;
            for gid in 1..=count {
                let code = *cff.get(at + gid)?;
                if let Some(name) = sids.get(gid).and_then(|sid| name_of(*sid)) {
                    names.insert(code, name);
                }
            }
            at += 1 + count;
        }
        1 => {
            let ranges = *cff.get(at)? as usize;
            let mut gid = 1;
            for range in 0..ranges {
                let first = *cff.get(at + 1 + 2 * range)?;
                let left = *cff.get(at + 2 + 2 * range)?;
                for k in 0..=left {
                    if let Some(name) = sids.get(gid).and_then(|sid| name_of(*sid)) {
                        names.insert(first.wrapping_add(k), name);
                    }
                    gid += 1;
                }
            }
            at += 1 + 2 * ranges;
        }
        _ => return None,
    }
    if format & 0x80 != 0 {
        let supplements = *cff.get(at)? as usize;
        for s in 0..supplements {
            let code = *cff.get(at + 1 + 3 * s)?;
            let sid = u16::from_be_bytes([*cff.get(at + 2 + 3 * s)?, *cff.get(at + 3 + 3 * s)?]);
            if let Some(name) = name_of(sid) {
                names.insert(code, name);
            }
        }
    }
    (!names.is_empty()).then_some(names)
}

/// A CFF INDEX at `at`: its entries and the offset just past it.
fn cff_index(cff: &[u8], at: usize) -> Option<(Vec<&[u8]>, usize)> {
    let count = u16::from_be_bytes([*cff.get(at)?, *cff.get(at + 1)?]) as usize;
    if count == 0 {
        return Some((Vec::new(), at + 2));
    }
    let size = *cff.get(at + 2)? as usize;
    if !(1..=4).contains(&size) {
        return None;
    }
    let offset = |i: usize| -> Option<usize> {
        let start = at + 3 + i * size;
        Some(cff.get(start..start + size)?.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize))
    };
    let data = at + 3 + (count + 1) * size - 1;
    let mut entries = Vec::with_capacity(count);
    for i in 0..count {
        let (start, end) = (offset(i)?, offset(i + 1)?);
        entries.push(cff.get(data + start..data + end)?);
    }
    Some((entries, data + offset(count)?))
}

/// A CFF DICT's integer operands by operator (two-byte operators as 1200 + the second byte).
fn cff_dict(dict: &[u8]) -> BTreeMap<u16, Vec<i64>> {
    let mut out = BTreeMap::new();
    let mut operands = Vec::new();
    let mut i = 0;
    while i < dict.len() {
        let b0 = dict[i];
        let byte = |k: usize| dict.get(i + k).copied().unwrap_or(0) as i64;
        match b0 {
            0..=21 => {
                let operator = if b0 == 12 { 1200 + byte(1) as u16 } else { b0 as u16 };
                i += if b0 == 12 { 2 } else { 1 };
                out.insert(operator, std::mem::take(&mut operands));
            }
            28 => {
                operands.push(((byte(1) << 8) | byte(2)) as i16 as i64);
                i += 3;
            }
            29 => {
                operands.push(((byte(1) << 24) | (byte(2) << 16) | (byte(3) << 8) | byte(4)) as i32 as i64);
                i += 5;
            }
            30 => {
                // A real number: skip its nibbles up to the 0xf terminator.
                i += 1;
                while i < dict.len() && dict[i] & 0x0f != 0x0f && dict[i] >> 4 != 0x0f {
                    i += 1;
                }
                i += 1;
                operands.push(0);
            }
            32..=246 => {
                operands.push(b0 as i64 - 139);
                i += 1;
            }
            247..=250 => {
                operands.push((b0 as i64 - 247) * 256 + byte(1) + 108);
                i += 2;
            }
            251..=254 => {
                operands.push(-(b0 as i64 - 251) * 256 - byte(1) - 108);
                i += 2;
            }
            _ => i += 1,
        }
    }
    out
}

/// The 391 standard strings of the Compact Font Format (Adobe TN 5176, appendix A), by SID.
const CFF_STANDARD_STRINGS: [&str; 391] = [
    ".notdef",
    "space",
    "exclam",
    "quotedbl",
    "numbersign",
    "dollar",
    "percent",
    "ampersand",
    "quoteright",
    "parenleft",
    "parenright",
    "asterisk",
    "plus",
    "comma",
    "hyphen",
    "period",
    "slash",
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "colon",
    "semicolon",
    "less",
    "equal",
    "greater",
    "question",
    "at",
    "A",
    "B",
    "C",
    "D",
    "E",
    "F",
    "G",
    "H",
    "I",
    "J",
    "K",
    "L",
    "M",
    "N",
    "O",
    "P",
    "Q",
    "R",
    "S",
    "T",
    "U",
    "V",
    "W",
    "X",
    "Y",
    "Z",
    "bracketleft",
    "backslash",
    "bracketright",
    "asciicircum",
    "underscore",
    "quoteleft",
    "a",
    "b",
    "c",
    "d",
    "e",
    "f",
    "g",
    "h",
    "i",
    "j",
    "k",
    "l",
    "m",
    "n",
    "o",
    "p",
    "q",
    "r",
    "s",
    "t",
    "u",
    "v",
    "w",
    "x",
    "y",
    "z",
    "braceleft",
    "bar",
    "braceright",
    "asciitilde",
    "exclamdown",
    "cent",
    "sterling",
    "fraction",
    "yen",
    "florin",
    "section",
    "currency",
    "quotesingle",
    "quotedblleft",
    "guillemotleft",
    "guilsinglleft",
    "guilsinglright",
    "fi",
    "fl",
    "endash",
    "dagger",
    "daggerdbl",
    "periodcentered",
    "paragraph",
    "bullet",
    "quotesinglbase",
    "quotedblbase",
    "quotedblright",
    "guillemotright",
    "ellipsis",
    "perthousand",
    "questiondown",
    "grave",
    "acute",
    "circumflex",
    "tilde",
    "macron",
    "breve",
    "dotaccent",
    "dieresis",
    "ring",
    "cedilla",
    "hungarumlaut",
    "ogonek",
    "caron",
    "emdash",
    "AE",
    "ordfeminine",
    "Lslash",
    "Oslash",
    "OE",
    "ordmasculine",
    "ae",
    "dotlessi",
    "lslash",
    "oslash",
    "oe",
    "germandbls",
    "onesuperior",
    "logicalnot",
    "mu",
    "trademark",
    "Eth",
    "onehalf",
    "plusminus",
    "Thorn",
    "onequarter",
    "divide",
    "brokenbar",
    "degree",
    "thorn",
    "threequarters",
    "twosuperior",
    "registered",
    "minus",
    "eth",
    "multiply",
    "threesuperior",
    "copyright",
    "Aacute",
    "Acircumflex",
    "Adieresis",
    "Agrave",
    "Aring",
    "Atilde",
    "Ccedilla",
    "Eacute",
    "Ecircumflex",
    "Edieresis",
    "Egrave",
    "Iacute",
    "Icircumflex",
    "Idieresis",
    "Igrave",
    "Ntilde",
    "Oacute",
    "Ocircumflex",
    "Odieresis",
    "Ograve",
    "Otilde",
    "Scaron",
    "Uacute",
    "Ucircumflex",
    "Udieresis",
    "Ugrave",
    "Yacute",
    "Ydieresis",
    "Zcaron",
    "aacute",
    "acircumflex",
    "adieresis",
    "agrave",
    "aring",
    "atilde",
    "ccedilla",
    "eacute",
    "ecircumflex",
    "edieresis",
    "egrave",
    "iacute",
    "icircumflex",
    "idieresis",
    "igrave",
    "ntilde",
    "oacute",
    "ocircumflex",
    "odieresis",
    "ograve",
    "otilde",
    "scaron",
    "uacute",
    "ucircumflex",
    "udieresis",
    "ugrave",
    "yacute",
    "ydieresis",
    "zcaron",
    "exclamsmall",
    "Hungarumlautsmall",
    "dollaroldstyle",
    "dollarsuperior",
    "ampersandsmall",
    "Acutesmall",
    "parenleftsuperior",
    "parenrightsuperior",
    "twodotenleader",
    "onedotenleader",
    "zerooldstyle",
    "oneoldstyle",
    "twooldstyle",
    "threeoldstyle",
    "fouroldstyle",
    "fiveoldstyle",
    "sixoldstyle",
    "sevenoldstyle",
    "eightoldstyle",
    "nineoldstyle",
    "commasuperior",
    "threequartersemdash",
    "periodsuperior",
    "questionsmall",
    "asuperior",
    "bsuperior",
    "centsuperior",
    "dsuperior",
    "esuperior",
    "isuperior",
    "lsuperior",
    "msuperior",
    "nsuperior",
    "osuperior",
    "rsuperior",
    "ssuperior",
    "tsuperior",
    "ff",
    "ffi",
    "ffl",
    "parenleftinferior",
    "parenrightinferior",
    "Circumflexsmall",
    "hyphensuperior",
    "Gravesmall",
    "Asmall",
    "Bsmall",
    "Csmall",
    "Dsmall",
    "Esmall",
    "Fsmall",
    "Gsmall",
    "Hsmall",
    "Ismall",
    "Jsmall",
    "Ksmall",
    "Lsmall",
    "Msmall",
    "Nsmall",
    "Osmall",
    "Psmall",
    "Qsmall",
    "Rsmall",
    "Ssmall",
    "Tsmall",
    "Usmall",
    "Vsmall",
    "Wsmall",
    "Xsmall",
    "Ysmall",
    "Zsmall",
    "colonmonetary",
    "onefitted",
    "rupiah",
    "Tildesmall",
    "exclamdownsmall",
    "centoldstyle",
    "Lslashsmall",
    "Scaronsmall",
    "Zcaronsmall",
    "Dieresissmall",
    "Brevesmall",
    "Caronsmall",
    "Dotaccentsmall",
    "Macronsmall",
    "figuredash",
    "hypheninferior",
    "Ogoneksmall",
    "Ringsmall",
    "Cedillasmall",
    "questiondownsmall",
    "oneeighth",
    "threeeighths",
    "fiveeighths",
    "seveneighths",
    "onethird",
    "twothirds",
    "zerosuperior",
    "foursuperior",
    "fivesuperior",
    "sixsuperior",
    "sevensuperior",
    "eightsuperior",
    "ninesuperior",
    "zeroinferior",
    "oneinferior",
    "twoinferior",
    "threeinferior",
    "fourinferior",
    "fiveinferior",
    "sixinferior",
    "seveninferior",
    "eightinferior",
    "nineinferior",
    "centinferior",
    "dollarinferior",
    "periodinferior",
    "commainferior",
    "Agravesmall",
    "Aacutesmall",
    "Acircumflexsmall",
    "Atildesmall",
    "Adieresissmall",
    "Aringsmall",
    "AEsmall",
    "Ccedillasmall",
    "Egravesmall",
    "Eacutesmall",
    "Ecircumflexsmall",
    "Edieresissmall",
    "Igravesmall",
    "Iacutesmall",
    "Icircumflexsmall",
    "Idieresissmall",
    "Ethsmall",
    "Ntildesmall",
    "Ogravesmall",
    "Oacutesmall",
    "Ocircumflexsmall",
    "Otildesmall",
    "Odieresissmall",
    "OEsmall",
    "Oslashsmall",
    "Ugravesmall",
    "Uacutesmall",
    "Ucircumflexsmall",
    "Udieresissmall",
    "Yacutesmall",
    "Thornsmall",
    "Ydieresissmall",
    "001.000",
    "001.001",
    "001.002",
    "001.003",
    "Black",
    "Bold",
    "Book",
    "Light",
    "Medium",
    "Regular",
    "Roman",
    "Semibold",
];

/// Letters of right-to-left scripts (Hebrew, Arabic, Syriac, Thaana, N'Ko and their
/// presentation forms).
pub(crate) fn is_rtl(c: char) -> bool {
    matches!(c, '\u{0590}'..='\u{08ff}' | '\u{fb1d}'..='\u{fdff}' | '\u{fe70}'..='\u{feff}')
}

/// Whether `next` starts in a different direction's script than `before` ends (a Latin letter
/// then an Arabic one, or back): no word does that, so the two are separate words.
pub(crate) fn script_changes(before: &str, next: &str) -> bool {
    match (before.chars().last(), next.chars().next()) {
        (Some(last), Some(first)) => last.is_alphabetic() && first.is_alphabetic() && is_rtl(last) != is_rtl(first),
        _ => false,
    }
}

/// Glyph names of TeX's math fonts that the Adobe Glyph List does not have.
pub(crate) fn tex_glyph_text(name: &str) -> Option<&'static str> {
    Some(match name {
        "epsilon1" => "\u{3b5}",
        "theta1" => "\u{3d1}",
        "phi1" => "\u{3c6}",
        "rho1" => "\u{3f1}",
        "sigma1" => "\u{3c2}",
        "omega1" => "\u{3d6}",
        "dotlessj" => "\u{237}",
        _ => return None,
    })
}

/// Ligatures (U+FB00–FB06) as their letters, and Arabic presentation forms (U+FB50–FDFF,
/// U+FE70–FEFF) as the letters they present: NFKC on those characters only, so that other
/// compatibility characters (superscripts, full-width forms) keep their meaning.
pub(crate) fn normalise(text: &str) -> String {
    let needs = |c: char| matches!(c, '\u{fb00}'..='\u{fb06}' | '\u{fb50}'..='\u{fdff}' | '\u{fe70}'..='\u{feff}');
    if !text.chars().any(needs) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if needs(c) && c != '\u{feff}' {
            out.extend(c.to_string().nfkc());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HABIBI: &[u8] = b"/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n\
        /CMapName /Adobe-Identity-UCS def\n1 begincodespacerange\n<0000> <ffff>\nendcodespacerange\n\
        6 beginbfchar\n<0003> <>\n<03f2> <>\n<03a3> <062d064e0628064a0628064a0020>\nendbfchar\n\
        2 beginbfrange\n<0010> <0012> <0041>\n<0020> <0021> [<0066006c> <0078>]\nendbfrange\nendcmap";

    #[test]
    fn an_empty_destination_does_not_cost_the_rest_of_the_map() {
        let map = ToUnicode::parse(HABIBI).unwrap();
        let text = map.decode(&[0x00, 0x03, 0x03, 0xf2, 0x03, 0xa3], 2, |_| "?".into());
        assert_eq!(text, "حَبيبي ");
    }

    #[test]
    fn ranges_count_up_or_list_each_text() {
        let map = ToUnicode::parse(HABIBI).unwrap();
        assert_eq!(map.decode(&[0x00, 0x10, 0x00, 0x12, 0x00, 0x20, 0x00, 0x21], 2, |_| "?".into()), "ACflx");
        // A code outside the map goes to the fallback, at the default length.
        assert_eq!(map.decode(&[0x00, 0x99], 2, |b| format!("<{}>", b.len())), "<2>");
    }

    #[test]
    fn the_codespace_decides_how_long_a_code_is() {
        // One-byte codes below 0x80, two-byte codes from 0x8000: a mapped one-byte 0x81 must
        // not cut the two-byte code 0x8141 in half.
        let map = ToUnicode::parse(
            b"2 begincodespacerange <00> <7f> <8000> <ffff> endcodespacerange \
              2 beginbfchar <41> <0041> <8141> <4e00> endbfchar 1 beginbfchar <81> <0078> endbfchar",
        )
        .unwrap();
        assert_eq!(map.decode(&[0x41, 0x81, 0x41], 1, |_| "?".into()), "A\u{4e00}");
    }

    #[test]
    fn an_overlong_destination_is_ignored() {
        let long = "0041".repeat(MAX_DESTINATION_UNITS + 1);
        let cmap = format!("1 beginbfchar <01> <{long}> endbfchar 1 beginbfchar <02> <0042> endbfchar");
        let map = ToUnicode::parse(cmap.as_bytes()).unwrap();
        assert_eq!(map.decode(&[1, 2], 1, |_| String::new()), "B");
    }

    proptest::proptest! {
        #[test]
        fn the_parsers_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            if let Some(map) = ToUnicode::parse(&bytes) {
                let _ = map.decode(&bytes, 2, |_| String::new());
            }
            let _ = cff_builtin_encoding(&bytes);
            let mut cff = vec![1, 0, 4, 1];
            cff.extend_from_slice(&bytes);
            let _ = cff_builtin_encoding(&cff);
            let _ = type1_builtin_encoding(&bytes);
        }

        #[test]
        fn cmap_shaped_input_never_panics(entries in proptest::collection::vec((proptest::num::u32::ANY, 1usize..5, proptest::collection::vec(proptest::num::u8::ANY, 0..8)), 0..64)) {
            let mut cmap = String::from("1 begincodespacerange <0000> <ffff> endcodespacerange 1 beginbfrange ");
            for (value, length, destination) in &entries {
                let source = &format!("{value:08x}")[8 - 2 * length..];
                let hex: String = destination.iter().map(|b| format!("{b:02x}")).collect();
                cmap.push_str(&format!("<{source}> <{source}> <{hex}> <{source}> [<{hex}>] "));
            }
            cmap.push_str("endbfrange");
            if let Some(map) = ToUnicode::parse(cmap.as_bytes()) {
                let _ = map.decode(&[0, 1, 2, 3, 4, 5, 6, 7], 2, |_| String::new());
            }
        }
    }

    #[test]
    fn a_map_without_mappings_is_none() {
        assert!(ToUnicode::parse(b"begincmap endcmap").is_none());
        assert!(ToUnicode::parse(b"").is_none());
    }

    #[test]
    fn the_builtin_encoding_of_a_type1_program() {
        let program = b"%!PS-AdobeFont-1.0: CMR10\n/Encoding 256 array\n0 1 255 {1 index exch /.notdef put} for\n\
            dup 12 /fi put\ndup 13 /gamma put\ndup 97 /a put\nreadonly def\ncurrentfile eexec\x80\x81dup 1 /x put";
        let names = type1_builtin_encoding(program).unwrap();
        assert_eq!(names.get(&12).map(String::as_str), Some("fi"));
        assert_eq!(names.get(&13).map(String::as_str), Some("gamma"));
        assert_eq!(names.len(), 3, "nothing after eexec: {names:?}");
        assert!(type1_builtin_encoding(b"/Encoding StandardEncoding def").is_none());
    }

    #[test]
    fn right_to_left_glyphs_drawn_left_to_right_read_in_logical_order() {
        let glyphs = |texts: &[&str]| texts.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>();
        // "habibi" (HAH, FATHA, BEH, YEH, BEH, YEH) drawn left to right: YEH BEH YEH BEH HAH+FATHA.
        let drawn = glyphs(&["Call ", "\u{64a}", "\u{628}", "\u{64a}", "\u{628}", "\u{62d}", "\u{64e}", " today"]);
        assert_eq!(logical_order(drawn), "Call \u{62d}\u{64e}\u{628}\u{64a}\u{628}\u{64a} today");
        // Two right-to-left words with a space between swap places too.
        let drawn = glyphs(&["\u{628}", "\u{627}", " ", "\u{62c}", "\u{62f}"]);
        assert_eq!(logical_order(drawn), "\u{62f}\u{62c} \u{627}\u{628}");
        // A glyph that maps to a whole word keeps its text; left-to-right text is untouched.
        let drawn = glyphs(&["\u{62d}\u{64e}\u{628}\u{64a}\u{628}\u{64a} h", "a", "b"]);
        assert_eq!(logical_order(drawn), "\u{62d}\u{64e}\u{628}\u{64a}\u{628}\u{64a} hab");
        assert_eq!(logical_order(glyphs(&["a", "b", " ", "c"])), "ab c");
    }

    #[test]
    fn a_change_of_direction_between_letters_separates_words() {
        assert!(script_changes("habibi", "\u{62d}\u{64e}"));
        assert!(script_changes("\u{628}\u{64a}", "abc"));
        assert!(!script_changes("habi", "bi"));
        assert!(!script_changes("\u{628}", "\u{64a}"));
        assert!(!script_changes("x2", "\u{62d}"));
    }

    #[test]
    fn ligatures_and_presentation_forms_become_letters() {
        assert_eq!(normalise("\u{fb01}lled e\u{fb00}ort \u{fb03}x"), "filled effort ffix");
        // ARABIC LETTER HAH INITIAL FORM, BEH MEDIAL FORM -> HAH, BEH.
        assert_eq!(normalise("\u{fea3}\u{fe92}"), "\u{62d}\u{628}");
        // Other compatibility characters keep their form.
        assert_eq!(normalise("x² ＡＢ"), "x² ＡＢ");
    }
}
