//! Plain text and Markdown: decoding (UTF-8, or UTF-16 with or without a byte-order mark) and
//! a light tidy that drops control characters and Markdown markup that carries no words.

use super::ExtractErrorKind;

/// UTF-16 without a BOM: mostly-ASCII text has a NUL in every other byte.
pub(crate) fn looks_utf16(bytes: &[u8]) -> bool {
    let sample = &bytes[..bytes.len().min(512) & !1];
    if sample.len() < 4 {
        return false;
    }
    let pairs = sample.len() / 2;
    let even_nuls = sample.iter().step_by(2).filter(|b| **b == 0).count();
    let odd_nuls = sample.iter().skip(1).step_by(2).filter(|b| **b == 0).count();
    even_nuls.max(odd_nuls) * 10 >= pairs * 7 && even_nuls.min(odd_nuls) * 10 < pairs
}

/// Decodes text bytes: a UTF-8 or UTF-16 BOM decides; otherwise UTF-16 by its NUL pattern, else
/// strict UTF-8.
pub(crate) fn decode(bytes: &[u8]) -> Result<String, ExtractErrorKind> {
    let utf16 = |body: &[u8], little: bool, encoding: &'static str| {
        if !body.len().is_multiple_of(2) {
            return Err(ExtractErrorKind::InvalidEncoding { encoding });
        }
        let units = body
            .chunks_exact(2)
            .map(|c| if little { u16::from_le_bytes([c[0], c[1]]) } else { u16::from_be_bytes([c[0], c[1]]) });
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map_err(|_| ExtractErrorKind::InvalidEncoding { encoding })
    };
    if let Some(body) = bytes.strip_prefix(b"\xef\xbb\xbf") {
        return String::from_utf8(body.to_vec()).map_err(|_| ExtractErrorKind::InvalidEncoding { encoding: "UTF-8" });
    }
    if let Some(body) = bytes.strip_prefix(b"\xff\xfe") {
        return utf16(body, true, "UTF-16LE");
    }
    if let Some(body) = bytes.strip_prefix(b"\xfe\xff") {
        return utf16(body, false, "UTF-16BE");
    }
    if looks_utf16(bytes) {
        // ASCII 'a' is 61 00 in little-endian: NULs at odd offsets.
        let little = bytes.iter().skip(1).step_by(2).filter(|b| **b == 0).count()
            >= bytes.iter().step_by(2).filter(|b| **b == 0).count();
        return utf16(bytes, little, if little { "UTF-16LE" } else { "UTF-16BE" });
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| ExtractErrorKind::InvalidEncoding { encoding: "UTF-8" })
}

/// Normalises newlines and drops control characters other than newline and tab.
pub(crate) fn tidy(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace('\r', "\n")
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .filter(|c| *c != '\u{feff}')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_encoding() {
        assert_eq!(decode("héllo".as_bytes()).unwrap(), "héllo");
        assert_eq!(decode(b"\xef\xbb\xbfhi").unwrap(), "hi");
        let le: Vec<u8> = "\u{feff}Grüße".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        assert_eq!(decode(&le).unwrap(), "Grüße");
        let be: Vec<u8> = "\u{feff}Grüße".encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
        assert_eq!(decode(&be).unwrap(), "Grüße");
        let bare: Vec<u8> = "plain ascii text here".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        assert_eq!(decode(&bare).unwrap(), "plain ascii text here");
    }

    #[test]
    fn invalid_utf8_is_a_typed_error() {
        assert_eq!(decode(b"caf\xe9 au lait").unwrap_err(), ExtractErrorKind::InvalidEncoding { encoding: "UTF-8" });
    }

    #[test]
    fn tidy_drops_controls() {
        assert_eq!(tidy("a\r\nb\rc\u{7}d"), "a\nb\ncd");
    }
}
