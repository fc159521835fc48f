//! HTML to text: a forgiving single-pass scanner (no DOM, so no recursion for hostile nesting to
//! exhaust). Script, style and other non-content elements are dropped with everything inside;
//! block elements become line breaks; character references are decoded.

use super::{Budget, ExtractErrorKind};

/// Elements whose content is never text a reader sees.
const SKIPPED: &[&str] = &["script", "style", "noscript", "template", "svg", "math", "head", "iframe", "object"];
/// Elements that start a new line.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "tr",
    "table",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "section",
    "article",
    "header",
    "footer",
    "nav",
    "aside",
    "blockquote",
    "pre",
    "hr",
    "dd",
    "dt",
    "dl",
    "title",
    "main",
    "figure",
    "figcaption",
    "form",
    "address",
    "caption",
    "thead",
    "tbody",
    "tfoot",
];
/// Elements that separate cells on a line.
const CELLS: &[&str] = &["td", "th"];

pub(crate) fn extract(html: &str, budget: &Budget<'_>) -> Result<String, ExtractErrorKind> {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    let mut steps = 0usize;
    while !rest.is_empty() {
        steps += 1;
        if steps.is_multiple_of(4096) {
            budget.check_time()?;
        }
        let Some(lt) = rest.find('<') else {
            push_text(&mut out, rest);
            break;
        };
        push_text(&mut out, &rest[..lt]);
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |end| &after[end + 3..]);
            continue;
        }
        if rest.starts_with("<!") || rest.starts_with("<?") {
            rest = rest.find('>').map_or("", |end| &rest[end + 1..]);
            continue;
        }
        let Some(gt) = tag_end(rest) else {
            // A stray '<' that opens no tag is text.
            push_text(&mut out, "<");
            rest = &rest[1..];
            continue;
        };
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect::<String>()
            .to_ascii_lowercase();
        if name.is_empty() {
            push_text(&mut out, "<");
            push_text(&mut out, tag);
            push_text(&mut out, ">");
            continue;
        }
        if !closing && SKIPPED.contains(&name.as_str()) && !tag.ends_with('/') {
            // Skip to the matching close tag (case-insensitive), or to the end.
            let close = format!("</{name}");
            rest = match find_ci(rest, &close) {
                Some(at) => rest[at..].find('>').map_or("", |end| &rest[at + end + 1..]),
                None => "",
            };
            continue;
        }
        if BLOCKS.contains(&name.as_str()) {
            if !out.ends_with('\n') && !out.is_empty() {
                out.push('\n');
            }
        } else if CELLS.contains(&name.as_str()) && !closing && !out.is_empty() && !out.ends_with(['\n', '\t']) {
            out.push('\t');
        }
    }
    Ok(out.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n"))
}

/// The index of the '>' closing a tag that starts at 0, honouring quoted attribute values.
fn tag_end(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    if bytes.len() < 2 || !(bytes[1].is_ascii_alphabetic() || bytes[1] == b'/') {
        return None;
    }
    let mut quote = None;
    for (i, b) in bytes.iter().enumerate().skip(1) {
        match (quote, b) {
            (None, b'"' | b'\'') => quote = Some(*b),
            (Some(q), c) if *c == q => quote = None,
            (None, b'>') => return Some(i),
            _ => {}
        }
    }
    None
}

fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
    let needle = needle.as_bytes();
    haystack.as_bytes().windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle))
}

/// Appends text with whitespace collapsed and character references decoded.
fn push_text(out: &mut String, raw: &str) {
    let decoded = decode_entities(raw);
    for c in decoded.chars() {
        if c.is_whitespace() {
            if !out.is_empty() && !out.ends_with([' ', '\n', '\t']) {
                out.push(' ');
            }
        } else if !c.is_control() {
            out.push(c);
        }
    }
}

fn decode_entities(raw: &str) -> String {
    if !raw.contains('&') {
        return raw.to_owned();
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let end = rest[1..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '#')).map(|i| i + 1);
        let (entity, consumed) = match end {
            Some(end) if rest[end..].starts_with(';') => (&rest[1..end], end + 1),
            Some(end) => (&rest[1..end], end),
            None => (&rest[1..], rest.len()),
        };
        match decode_entity(entity) {
            Some(c) => {
                out.push(c);
                rest = &rest[consumed..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn decode_entity(entity: &str) -> Option<char> {
    if let Some(number) = entity.strip_prefix('#') {
        let code = match number.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => number.parse().ok()?,
        };
        return char::from_u32(code).filter(|c| *c != '\0');
    }
    Some(match entity {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        "ndash" => '–',
        "mdash" => '—',
        "hellip" => '…',
        "rsquo" => '’',
        "lsquo" => '‘',
        "rdquo" => '”',
        "ldquo" => '“',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "euro" => '€',
        "eacute" => 'é',
        "egrave" => 'è',
        "uuml" => 'ü',
        "ouml" => 'ö',
        "auml" => 'ä',
        "szlig" => 'ß',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::Limits;
    use super::*;

    fn text(html: &str) -> String {
        extract(html, &Budget::new(&Limits::default())).unwrap()
    }

    #[test]
    fn keeps_text_and_drops_scripts_and_styles() {
        let html = r#"<!DOCTYPE html><html><head><title>T</title><style>p{color:red}</style></head>
            <body><h1>Hello &amp; welcome</h1><script>var x = "<p>no</p>";</script>
            <p class="a>b">We sell to <b>fintech</b> firms&nbsp;in Europe.</p><!-- hidden -->
            <SCRIPT type="x">alert(1)</SCRIPT><table><tr><td>CEO</td><td>CTO</td></tr></table></body></html>"#;
        assert_eq!(text(html), "Hello & welcome\nWe sell to fintech firms in Europe.\nCEO\tCTO");
    }

    #[test]
    fn stray_angle_brackets_and_numeric_references() {
        assert_eq!(text("a < b &#x41;&#66; &bogus; <3"), "a < b AB &bogus; <3");
    }

    #[test]
    fn unterminated_script_drops_the_rest() {
        assert_eq!(text("<p>kept</p><script>never closed"), "kept");
    }
}
