//! ICP extraction: maps a knowledge document's chunks to the fixed vocabulary of DESIGN.md
//! (industries, company sizes, decision makers, regions). Phrases come from a lexicon of
//! synonyms and a gazetteer (countries, states, provinces and cities map to regions);
//! headcounts ("200–800 employees", "over 5,000 staff", "several thousand employees") map to
//! sizes; negated mentions ("we do not target government") are dropped; and where no industry
//! phrase matches, the sentences about the author's customers are compared with embedded label
//! descriptions. The `context` module says whose each mention is: the author's own description, its
//! competitors, partners, investors, quoted people and contact footers are not its ICP, and a
//! field's labels come from the passages about customers when the document has any. Every
//! label carries a confidence and the chunk it came from.

mod context;
mod lexicon;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::embed::{EmbedError, Embedder, cosine};
use context::Subject;
use lexicon::{
    BLOCKED_AFTER, BLOCKED_BEFORE, ENTERPRISE_NOUNS, HEADCOUNT_WORDS, INDUSTRIES, INDUSTRY_DESCRIPTIONS,
    LANGUAGE_NAMES, PLACES, ROLES, SIZES, TARGET_CUES,
};

/// The ICP vocabulary, in output order.
pub const INDUSTRY_LABELS: &[&str] = &[
    "saas",
    "fintech",
    "banking",
    "insurance",
    "healthcare",
    "biotech",
    "ecommerce",
    "retail",
    "manufacturing",
    "automotive",
    "logistics",
    "education",
    "government",
    "real_estate",
    "media",
    "telecom",
    "energy",
    "hospitality",
    "legal",
    "cybersecurity",
    "nonprofit",
    "agriculture",
    "construction",
    "gaming",
];
pub const SIZE_LABELS: &[&str] = &["startup", "smb", "mid-market", "enterprise"];
pub const ROLE_LABELS: &[&str] =
    &["CEO", "CTO", "CFO", "COO", "CMO", "CRO", "CIO", "CISO", "Founder", "VP", "Director", "Head", "Manager"];
pub const REGION_LABELS: &[&str] =
    &["North America", "Latin America", "Europe", "Middle East", "Africa", "Asia Pacific"];

/// How a label was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    Phrase,
    Headcount,
    Similarity,
}

/// One label with where it came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IcpLabel {
    pub label: &'static str,
    pub confidence: f32,
    /// Index of the chunk it was found in.
    pub chunk: usize,
    /// The words that gave it.
    pub matched: String,
    pub evidence: Evidence,
}

/// Labels per ICP field, with their evidence.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct IcpExtraction {
    pub target_industries: Vec<IcpLabel>,
    pub company_sizes: Vec<IcpLabel>,
    pub decision_makers: Vec<IcpLabel>,
    pub target_regions: Vec<IcpLabel>,
}

/// Just the labels: the CLI's and the API's shape.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct IcpCriteria {
    pub target_industries: Vec<String>,
    pub company_sizes: Vec<String>,
    pub decision_makers: Vec<String>,
    pub target_regions: Vec<String>,
}

impl IcpExtraction {
    pub fn criteria(&self) -> IcpCriteria {
        let names = |labels: &[IcpLabel]| labels.iter().map(|l| l.label.to_owned()).collect();
        IcpCriteria {
            target_industries: names(&self.target_industries),
            company_sizes: names(&self.company_sizes),
            decision_makers: names(&self.decision_makers),
            target_regions: names(&self.target_regions),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Field {
    Industry,
    Size,
    Role,
    Region,
}

/// A word or punctuation mark of the text.
#[derive(Clone, Debug)]
struct Token {
    /// Lowercased; `&` becomes `and`.
    lower: String,
    original: String,
    word: bool,
    /// The first token of a line: headings and bullets are read by line.
    line_start: bool,
    /// The first token after a blank line.
    paragraph_start: bool,
}

/// The most tokens read from one chunk. A chunk is cut by model tokens, and the model reads a
/// run of symbols ("═══", "■■■") of up to 100 characters as one, so a chunk of a drawn table
/// can hold tens of thousands of characters; the words an ICP comes from are well within this.
const MAX_TOKENS_PER_CHUNK: usize = 4096;

fn tokenize(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    // Newlines since the last token: one starts a line, two a paragraph.
    let mut newlines = 2;
    fn push(tokens: &mut Vec<Token>, lower: String, original: String, word: bool, newlines: &mut usize) {
        tokens.push(Token { lower, original, word, line_start: *newlines > 0, paragraph_start: *newlines > 1 });
        *newlines = 0;
    }
    while i < chars.len() && tokens.len() < MAX_TOKENS_PER_CHUNK {
        let c = chars[i];
        if c.is_alphanumeric() {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric()
                    // Keep 1,000 and 3.5 whole.
                    || (matches!(chars[i], ',' | '.')
                        && i + 1 < chars.len()
                        && chars[i + 1].is_ascii_digit()
                        && chars[i - 1].is_ascii_digit()))
            {
                i += 1;
            }
            let original: String = chars[start..i].iter().collect();
            push(&mut tokens, original.to_lowercase(), original, true, &mut newlines);
        } else if c == '&' {
            push(&mut tokens, "and".into(), "&".into(), true, &mut newlines);
            i += 1;
        } else {
            if c == '\n' {
                newlines += 1;
            } else if !c.is_whitespace() {
                push(&mut tokens, c.to_string(), c.to_string(), false, &mut newlines);
                // A run of one mark ("-----", "═══") is one token.
                while i + 1 < chars.len() && chars[i + 1] == c {
                    i += 1;
                }
            }
            i += 1;
        }
    }
    tokens
}

/// A lexicon phrase: its words, and whether its first word must match case (`US`).
struct Phrase {
    field: Field,
    labels: Vec<&'static str>,
    words: Vec<&'static str>,
    exact_case: bool,
}

fn phrases() -> &'static [Phrase] {
    static PHRASES: std::sync::OnceLock<Vec<Phrase>> = std::sync::OnceLock::new();
    PHRASES.get_or_init(|| {
        let mut out = Vec::new();
        let mut add = |field, labels: Vec<&'static str>, phrase: &'static str| {
            let (exact_case, phrase) = match phrase.strip_prefix('=') {
                Some(rest) => (true, rest),
                None => (false, phrase),
            };
            out.push(Phrase { field, labels, words: phrase.split(' ').collect(), exact_case });
        };
        for (label, list) in INDUSTRIES {
            list.iter().for_each(|p| add(Field::Industry, vec![*label], p));
        }
        for (label, list) in SIZES {
            list.iter().for_each(|p| add(Field::Size, vec![*label], p));
        }
        for (label, list) in ROLES {
            list.iter().for_each(|p| add(Field::Role, vec![*label], p));
        }
        for (place, regions) in PLACES {
            add(Field::Region, regions.to_vec(), place);
        }
        out
    })
}

/// Is `word` an ICP word of the lexicon ("retail", "insurers", "SMB")? Such a word that opens a
/// title or an announcement is no company's name.
fn is_lexicon_word(word: &str) -> bool {
    phrases().iter().any(|p| p.words.len() == 1 && word_matches(p.words[0].trim_start_matches('='), word))
}

/// Does lexicon word `pattern` match text word `word` (plurals and `*` stems included)?
fn word_matches(pattern: &str, word: &str) -> bool {
    if let Some(stem) = pattern.strip_suffix('*') {
        return word.starts_with(stem);
    }
    if word == pattern {
        return true;
    }
    if let Some(rest) = word.strip_prefix(pattern) {
        return matches!(rest, "s" | "es");
    }
    if let Some(stem) = pattern.strip_suffix('y') {
        return word.strip_prefix(stem) == Some("ies");
    }
    false
}

/// Word-token indices of a phrase match starting at token `start`, skipping hyphens and
/// apostrophes inside the phrase.
fn match_at(tokens: &[Token], start: usize, phrase: &Phrase) -> Option<usize> {
    let mut i = start;
    for (n, word) in phrase.words.iter().enumerate() {
        if n > 0 {
            while i < tokens.len() && !tokens[i].word && matches!(tokens[i].lower.as_str(), "-" | "–" | "'" | "’" | "/")
            {
                i += 1;
            }
        }
        let token = tokens.get(i)?;
        if !token.word {
            return None;
        }
        let ok = if phrase.exact_case && n == 0 { token.original == *word } else { word_matches(word, &token.lower) };
        if !ok {
            return None;
        }
        i += 1;
    }
    Some(i)
}

const NEGATION_CUES: &[&str] = &[
    "not",
    "no",
    "never",
    "don",
    "dont",
    "doesn",
    "isn",
    "aren",
    "won",
    "exclude",
    "excludes",
    "excluding",
    "except",
    "avoid",
    "avoids",
    "avoiding",
    "outside",
    "nor",
    "neither",
    "without",
    "besides",
];
const SCOPE_BREAKERS: &[&str] = &[
    "but",
    "however",
    "instead",
    "rather",
    "whereas",
    "while",
    "although",
    "though",
    "yet",
    "only",
    "mainly",
    "primarily",
    "mostly",
    "especially",
    "particularly",
    "chiefly",
    "largely",
    "predominantly",
];
const CLAUSE_VERBS: &[&str] = &[
    "focus",
    "focusing",
    "concentrate",
    "concentrating",
    "target",
    "targeting",
    "sell",
    "selling",
    "serve",
    "serving",
    "work",
    "working",
    "prefer",
    "love",
    "help",
    "helping",
];
const CLAUSE_STARTERS: &[&str] = &["we", "our", "they", "focus", "focusing", "targeting", "serving", "selling"];

/// Is the match at `start..end` negated in its clause?
fn negated(tokens: &[Token], start: usize, end: usize) -> bool {
    // A cue earlier in the clause, with no scope breaker in between.
    let mut i = start;
    let mut words_back = 0;
    while i > 0 && words_back < 12 {
        i -= 1;
        let t = &tokens[i];
        if !t.word {
            if matches!(t.lower.as_str(), "." | ";" | "!" | "?" | ":" | "(" | ")") {
                break;
            }
            if t.lower == "," && tokens.get(i + 1).is_some_and(|n| CLAUSE_STARTERS.contains(&n.lower.as_str())) {
                break;
            }
            // "where there isn't one, the IT director signs": the negation took its object; and
            // "without a CTO, the CEO signs": a phrase of "without" ends at its comma.
            if t.lower == ","
                && (tokens[..i]
                    .iter()
                    .rev()
                    .find(|p| p.word)
                    .is_some_and(|p| matches!(p.lower.as_str(), "one" | "any" | "it"))
                    || tokens[..i]
                        .iter()
                        .rev()
                        .take_while(|p| !matches!(p.lower.as_str(), "." | ";" | "," | ":"))
                        .any(|p| p.lower == "without"))
            {
                break;
            }
            continue;
        }
        words_back += 1;
        if SCOPE_BREAKERS.contains(&t.lower.as_str()) {
            break;
        }
        // "we avoid X and focus on Y": a new verb after "and" or a comma starts a new clause.
        if CLAUSE_VERBS.contains(&t.lower.as_str())
            && i > 0
            && (tokens[i - 1].lower == "and" || tokens[i - 1].lower == ",")
        {
            break;
        }
        // "not-for-profit" names an organisation, it negates nothing.
        let not_for_profit = t.lower == "not"
            && tokens[i + 1..].iter().filter(|n| n.word).take(2).map(|n| n.lower.as_str()).eq(["for", "profit"]);
        if not_for_profit {
            continue;
        }
        if NEGATION_CUES.contains(&t.lower.as_str()) || (t.lower == "than" && i > 0 && tokens[i - 1].lower == "other") {
            // "not only X" and "no longer" read differently: "only" breaks scope above;
            // "no" needs to govern a noun phrase, which it does here.
            return true;
        }
    }
    // Or a copula with a negation right after: "government is not a focus".
    let following: Vec<&str> = tokens[end..].iter().take(5).take_while(|t| t.word).map(|t| t.lower.as_str()).collect();
    // The subject may be a phrase: "government projects are out of scope".
    following.windows(3).take(2).any(|w| {
        matches!(
            w,
            ["is" | "are" | "was" | "were", "not" | "never", _]
                | ["isn" | "aren", _, _]
                | ["excluded", _, _]
                | ["is" | "are", "excluded", _]
                | ["out", "of", "scope"]
                | ["is" | "are", "out", "of"]
        )
    }) || following.first().is_some_and(|w| *w == "excluded")
}

/// A label found in one chunk.
#[derive(Clone, Debug)]
struct Hit {
    field: Field,
    label: &'static str,
    chunk: usize,
    matched: String,
    evidence: Evidence,
    negated: bool,
    /// The similarity, for [`Evidence::Similarity`].
    score: f32,
    /// The token it starts at, in its chunk.
    at: usize,
    /// Whose it is: only the author's targets, or mentions without a cue, are its ICP.
    subject: Subject,
}

/// Phrase and headcount hits of one chunk.
fn scan(tokens: &[Token], chunk: usize, names: &context::Names) -> (Vec<Hit>, bool) {
    let context = context::analyse(tokens, names, chunk == 0);
    let mut hits = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if !tokens[i].word {
            i += 1;
            continue;
        }
        // The longest phrase starting here wins; equally long phrases of other fields all count.
        let mut best: Vec<(&Phrase, usize)> = Vec::new();
        for phrase in phrases() {
            if let Some(end) = match_at(tokens, i, phrase) {
                let longest = best.first().map_or(0, |(_, e)| *e);
                if end > longest {
                    best.clear();
                }
                if end >= longest {
                    best.push((phrase, end));
                }
            }
        }
        let Some(end) = best.first().map(|(_, e)| *e) else {
            i += 1;
            continue;
        };
        let matched = tokens[i..end].iter().map(|t| t.original.as_str()).collect::<Vec<_>>().join(" ");
        let before = i.checked_sub(1).and_then(|b| tokens.get(b)).map(|t| t.lower.as_str()).unwrap_or_default();
        // The word after, past a hyphen ("bank-transfer slips", "enterprise-grade").
        let after = tokens[end.min(tokens.len())..]
            .iter()
            .find(|t| !matches!(t.lower.as_str(), "-" | "–"))
            .map(|t| t.lower.as_str())
            .unwrap_or_default();
        let is_negated = negated(tokens, i, end);
        // "large insurers", "small law firms": the size of the customers named ("large farms"
        // and "large estates" measure land, and "the largest automakers" are leaders, not a size).
        if best.iter().any(|(p, _)| {
            p.field == Field::Industry && !p.labels.iter().any(|l| matches!(*l, "agriculture" | "real_estate"))
        }) {
            let size = match before {
                "large" | "big" => Some("enterprise"),
                "small" | "smaller" => Some("smb"),
                _ => None,
            };
            if let Some(label) = size {
                hits.push(Hit {
                    field: Field::Size,
                    label,
                    chunk,
                    matched: format!("{} {matched}", tokens[i - 1].original),
                    evidence: Evidence::Phrase,
                    negated: is_negated,
                    score: 0.0,
                    at: i,
                    subject: Subject::Unknown,
                });
            }
        }
        for (phrase, _) in &best {
            for label in &phrase.labels {
                let phrase_text = phrase.words.join(" ");
                let applies = |l: &str| l == *label || l == phrase_text;
                let blocked = BLOCKED_AFTER.iter().any(|(l, w)| applies(l) && *w == before)
                    || BLOCKED_BEFORE.iter().any(|(l, w)| applies(l) && *w == after)
                    || (tokens[i].lower == "enterprise" && enterprise_is_adjective(tokens, end))
                    || (phrase.field == Field::Region
                        && LANGUAGE_NAMES.contains(&phrase_text.as_str())
                        && context.about_languages(tokens, i))
                    // "Brazilian Portuguese" is a language.
                    || (phrase.field == Field::Region && LANGUAGE_NAMES.contains(&after))
                    // "outgrown their first payment provider": what the customers buy, not what they are.
                    || (phrase.field == Field::Industry
                        && tokens[end - 1].word
                        && matches!(
                            tokens[end - 1].lower.as_str(),
                            "provider" | "providers" | "vendor" | "vendors" | "processor" | "processors" | "supplier" | "suppliers"
                        )
                        && matches!(
                            before,
                            "their" | "your" | "its" | "first" | "current" | "existing" | "incumbent" | "legacy" | "old" | "previous"
                        ))
                    // "The firm builds hospitals, charter schools and warehouses": what the customer
                    // builds, not whom the author sells to.
                    || (phrase.field == Field::Industry && built_object(tokens, i))
                    // "telecom procurement managers", "the legal team": a department, not an industry.
                    || (phrase.field == Field::Industry
                        && matches!(
                            after,
                            "procurement" | "team" | "teams" | "department" | "departments" | "expense" | "expenses" | "spend" | "budget" | "budgets"
                        ))
                    // A company's name ("Parcel Lending Cloud") is no industry.
                    || (tokens[i].original.starts_with(char::is_uppercase)
                        && (names.sellers.contains(&tokens[i].lower) || names.others.contains(&tokens[i].lower)));
                if blocked {
                    continue;
                }
                hits.push(Hit {
                    field: phrase.field,
                    label,
                    chunk,
                    matched: matched.clone(),
                    evidence: Evidence::Phrase,
                    negated: is_negated,
                    score: 0.0,
                    at: i,
                    subject: Subject::Unknown,
                });
            }
        }
        i = end;
    }
    hits.extend(headcounts(tokens, chunk));
    hits.extend(headcounts_in_words(tokens, chunk));
    for hit in &mut hits {
        hit.subject = match context.subject(hit.at) {
            // "our VP of Sales", "my manager", a playbook's "your manager": the author's own staff.
            _ if hit.field == Field::Role
                && hit.at > 0
                && matches!(tokens[hit.at - 1].lower.as_str(), "our" | "my" | "your") =>
            {
                Subject::Seller
            }
            // "Joris van Dam, Head of Communications", "Co-founder and CEO Mei Tan": a named
            // person's title is a speaker's, a contact's or the author's staff, not a buyer.
            _ if hit.field == Field::Role && names_a_person(tokens, hit.at) => Subject::Other,
            // A job posting names the job: "As Customer Success Manager you will ...".
            Subject::Unknown if hit.field == Field::Role && context.job_posting && titled_as(tokens, hit.at) => {
                Subject::Other
            }
            subject => subject,
        };
        hit.negated |= context.disqualified(hit.at);
        tracing::trace!(field = ?hit.field, label = hit.label, matched = %hit.matched, subject = ?hit.subject, negated = hit.negated, "icp mention");
    }
    (hits, context.untypical)
}

/// Is the mention at `at` the object of a verb of building ("builds hospitals, charter schools
/// and warehouses"), with no "for" or "to" between?
fn built_object(tokens: &[Token], at: usize) -> bool {
    for t in tokens[at.saturating_sub(10)..at].iter().rev() {
        if matches!(t.lower.as_str(), "." | ";" | ":" | "!" | "?" | "for" | "to" | "with" | "who" | "that" | "which") {
            return false;
        }
        if matches!(
            t.lower.as_str(),
            "build" | "builds" | "built" | "building" | "construct" | "constructs" | "constructed" | "constructing"
        ) {
            return true;
        }
    }
    false
}

/// Is the title at `at` a named person's: after "First Last," with at most a few title words
/// between?
fn names_a_person(tokens: &[Token], at: usize) -> bool {
    let name_word = |t: &Token| t.word && t.original.starts_with(char::is_uppercase) && !is_lexicon_word(&t.lower);
    let title_word = |t: &Token| {
        !t.word && matches!(t.lower.as_str(), "-" | "&")
            || t.word
                && (t.original.starts_with(char::is_uppercase)
                    || matches!(
                        t.lower.as_str(),
                        "and"
                            | "of"
                            | "co"
                            | "founder"
                            | "chief"
                            | "officer"
                            | "vice"
                            | "president"
                            | "senior"
                            | "head"
                            | "director"
                            | "manager"
                            | "lead"
                    ))
    };
    // Back to a comma over title words only, then two name words before it.
    for i in (at.saturating_sub(6)..at).rev() {
        if tokens[i].lower == "," {
            let before: Vec<&Token> = tokens[..i].iter().rev().take(2).collect();
            return before.len() == 2 && before.iter().all(|t| name_word(t));
        }
        if !title_word(&tokens[i]) {
            break;
        }
    }
    false
}

/// Is the title at `at` introduced by "as" ("As Customer Success Manager")?
fn titled_as(tokens: &[Token], at: usize) -> bool {
    let mut i = at;
    while i > 0 && tokens[i - 1].word && tokens[i - 1].original.starts_with(char::is_uppercase) {
        i -= 1;
    }
    i > 0 && tokens[i - 1].lower == "as" || tokens.get(i).is_some_and(|t| t.lower == "as")
}

/// The singular "enterprise" names a size as a noun ("SMB and enterprise", "a large enterprise
/// that ...") or before a word for customers ("enterprise accounts"); before any other content
/// word it describes a product ("enterprise GIS", "enterprise merchants"). "enterprises" is
/// always a size.
fn enterprise_is_adjective(tokens: &[Token], mut end: usize) -> bool {
    // "enterprise-grade"
    while tokens.get(end).is_some_and(|t| matches!(t.lower.as_str(), "-" | "–")) {
        end += 1;
    }
    const FUNCTION_WORDS: &[&str] = &[
        "in", "with", "that", "who", "which", "are", "is", "across", "of", "on", "at", "to", "from", "we", "where",
        "whose", "like", "such", "as",
    ];
    match tokens.get(end) {
        Some(next) if next.word => {
            !FUNCTION_WORDS.contains(&next.lower.as_str())
                && !ENTERPRISE_NOUNS.iter().any(|n| word_matches(n, &next.lower))
        }
        _ => false,
    }
}

fn parse_number(token: &str) -> Option<u64> {
    // Digits, thousands separators, one decimal point and a "k": not "1e30" or "infinity".
    if !token.starts_with(|c: char| c.is_ascii_digit())
        || !token.chars().all(|c| c.is_ascii_digit() || matches!(c, ',' | '.' | 'k' | 'K'))
    {
        return None;
    }
    let lower = token.to_lowercase();
    let (digits, scale) = match lower.strip_suffix('k') {
        Some(d) => (d.to_owned(), 1000.0),
        None => (lower.clone(), 1.0),
    };
    let digits = digits.replace(',', "");
    let value: f64 = digits.parse().ok()?;
    Some((value * scale) as u64)
}

/// A number up to ninety written as a word.
fn number_word(word: &str) -> Option<u64> {
    const WORDS: [(&str, u64); 21] = [
        ("one", 1),
        ("two", 2),
        ("three", 3),
        ("four", 4),
        ("five", 5),
        ("six", 6),
        ("seven", 7),
        ("eight", 8),
        ("nine", 9),
        ("ten", 10),
        ("eleven", 11),
        ("twelve", 12),
        ("fifteen", 15),
        ("twenty", 20),
        ("thirty", 30),
        ("forty", 40),
        ("fifty", 50),
        ("sixty", 60),
        ("seventy", 70),
        ("eighty", 80),
        ("ninety", 90),
    ];
    WORDS.iter().find(|(w, _)| *w == word).map(|(_, n)| *n)
}

/// Sizes from employee counts: `N employees`, `N+`, `over/under N`, `N-M`, `between N and M`.
fn headcounts(tokens: &[Token], chunk: usize) -> Vec<Hit> {
    let mut hits = Vec::new();
    // The second number of a range read already ("150 and 1,000 employees").
    let mut consumed_until = 0;
    for (i, token) in tokens.iter().enumerate() {
        if i < consumed_until {
            continue;
        }
        if !token.word {
            continue;
        }
        // "five thousand employees", "5 thousand staff": read by `headcounts_in_words`.
        let scaled = tokens.get(i + 1).is_some_and(|t| {
            matches!(t.lower.as_str(), "hundred" | "hundreds" | "thousand" | "thousands" | "million" | "millions")
        });
        if scaled || (parse_number(&token.original).is_none() && number_word(&token.lower).is_none()) {
            continue;
        }
        // "3.3 Who to leave alone", "2. Staffing agencies": a section or list number.
        let numbering = token.line_start
            || (tokens.get(i + 1).is_some_and(|t| t.lower == ".")
                && tokens.get(i + 2).is_some_and(|t| t.lower.starts_with(|c: char| c.is_ascii_digit())));
        if numbering {
            continue;
        }
        // "an AP team of at least four people" counts a team ("teams of 1,000+ employees" are
        // companies), "24/7" is no count.
        let team_of = tokens[i.saturating_sub(6)..i]
            .windows(2)
            .any(|w| matches!(w[0].lower.as_str(), "team" | "department" | "crew") && w[1].lower == "of");
        let per = tokens.get(i + 1).is_some_and(|t| t.lower == "/") || (i > 0 && tokens[i - 1].lower == "/");
        if team_of || per {
            continue;
        }
        // "founded in 2020 and employs 45 people": a year.
        let year =
            token.original.len() == 4 && parse_number(&token.original).is_some_and(|n| (1900..=2100).contains(&n));
        let dated = i > 0
            && tokens[..i].iter().rev().find(|t| t.word).is_some_and(|t| {
                matches!(
                    t.lower.as_str(),
                    "in" | "since" | "founded" | "from" | "by" | "until" | "during" | "year" | "of"
                )
            });
        if year && dated {
            continue;
        }
        let before: Vec<&str> =
            tokens[i.saturating_sub(8)..i].iter().rev().filter(|t| t.word).take(2).map(|t| t.lower.as_str()).collect();
        // A number written as a word counts after a comparison or in a range ("fewer than fifty
        // staff", "between five and sixty staff"), not alone ("three people from their side").
        let compared = matches!(
            before.as_slice(),
            ["than", ..]
                | ["under" | "below" | "over" | "above" | "between" | "exceeding", ..]
                | ["to", "up"]
                | ["least", "at"]
        );
        let number = |t: &Token| parse_number(&t.original).or_else(|| number_word(&t.lower));
        let Some(first) = token.word.then(|| parse_number(&token.original)).flatten().or_else(|| {
            number_word(&token.lower).filter(|_| {
                compared || tokens.get(i + 1).is_some_and(|t| matches!(t.lower.as_str(), "to" | "and" | "-" | "–"))
            })
        }) else {
            continue;
        };
        // A second number for a range: "200-800", "200 to 800", "between 200 and 800".
        let mut j = i + 1;
        let mut range_end = None;
        if let Some(t) = tokens.get(j)
            && matches!(t.lower.as_str(), "-" | "–" | "—" | "to" | "and")
            && let Some(second) = tokens.get(j + 1).filter(|t| t.word).and_then(number)
        {
            range_end = Some(second);
            j += 2;
        }
        let mut open_above = false;
        if tokens.get(j).is_some_and(|t| t.lower == "+") {
            open_above = true;
            j += 1;
        }
        if tokens.get(j).is_some_and(|t| t.lower == "or") && tokens.get(j + 1).is_some_and(|t| t.lower == "more") {
            open_above = true;
            j += 2;
        }
        // The count must be of people, within a few words ("200 full-time employees").
        if !counts_people(tokens, j) {
            continue;
        }
        consumed_until = j;
        let (low, high) = match (range_end, before.as_slice()) {
            // "150 to 1,000 employees" is mid-market: a range ending on a size's bound stops
            // below it.
            (Some(end), _) if matches!(first.max(end), 100 | 1000) && first.min(end) < first.max(end) => {
                (first.min(end), first.max(end) - 1)
            }
            (Some(end), _) => (first.min(end), first.max(end)),
            (None, ["than", "more" | "greater"] | ["over" | "above" | "exceeding", ..] | ["least", "at"]) => {
                (first.saturating_add(1), u64::MAX)
            }
            (None, ["than", "fewer" | "less"] | ["under" | "below", ..] | ["to", "up"]) => (0, first.saturating_sub(1)),
            (None, _) if open_above => (first, u64::MAX),
            (None, _) => (first, first),
        };
        let matched = tokens[i.saturating_sub(2)..j.min(tokens.len())]
            .iter()
            .map(|t| t.original.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let negated = negated(tokens, i, j);
        for (label, lo, hi) in [("smb", 0, 99), ("mid-market", 100, 999), ("enterprise", 1000, u64::MAX)] {
            if low <= hi && high >= lo {
                hits.push(Hit {
                    field: Field::Size,
                    label,
                    chunk,
                    matched: matched.clone(),
                    evidence: Evidence::Headcount,
                    negated,
                    score: 0.0,
                    at: i,
                    subject: Subject::Unknown,
                });
            }
        }
    }
    hits
}

/// Is a headcount word ("employees", "staff", ...) among the few words after token `from`?
fn counts_people(tokens: &[Token], from: usize) -> bool {
    tokens[from..].iter().take(5).filter(|t| t.word).take(4).any(|t| {
        HEADCOUNT_WORDS.iter().any(|w| !w.contains(' ') && word_matches(w, &t.lower))
            || (t.lower == "team" && tokens.get(from + 1).is_some_and(|n| n.lower == "members"))
    })
}

/// Sizes from headcounts written in words: "several thousand employees", "a few hundred staff",
/// "thousands of employees", "a dozen people", "tens of thousands of workers".
fn headcounts_in_words(tokens: &[Token], chunk: usize) -> Vec<Hit> {
    let mut hits = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        if !token.word {
            continue;
        }
        // "fewer than a hundred people", "under a thousand staff": below the count.
        let below = tokens[i.saturating_sub(4)..i]
            .iter()
            .filter(|t| t.word)
            .any(|t| matches!(t.lower.as_str(), "fewer" | "less" | "under" | "below"));
        let label = match token.lower.as_str() {
            "hundred" if below => "smb",
            "thousand" if below => "mid-market",
            "hundred" | "hundreds" => "mid-market",
            "thousand" | "thousands" => "enterprise",
            // "two-person indie teams", "forty employees".
            "dozen" | "dozens" | "handful" | "one" | "two" | "three" | "four" | "five" | "six" | "seven" | "eight"
            | "nine" | "ten" | "eleven" | "twelve" | "fifteen" | "twenty" | "thirty" | "forty" | "fifty" | "sixty"
            | "seventy" | "eighty" | "ninety" => "smb",
            _ => continue,
        };
        // "hundreds of employees": the count words may be followed by "of". In "hundreds of
        // thousands" the larger word that follows is the count.
        let mut end = i + 1;
        if tokens.get(end).is_some_and(|t| t.lower == "of") {
            end += 1;
        }
        // A small number counts only as a compound ("two-person teams"): "three people from the
        // prospect's side" and "six hundred and fifty" are no company sizes.
        let small_number =
            label == "smb" && !matches!(token.lower.as_str(), "dozen" | "dozens" | "handful" | "hundred" | "thousand");
        let compound = tokens.get(i + 1).is_some_and(|t| t.lower == "-")
            && tokens.get(i + 2).is_some_and(|t| matches!(t.lower.as_str(), "person" | "people" | "employee"));
        let larger_follows = tokens.get(end).is_some_and(|t| matches!(t.lower.as_str(), "thousand" | "thousands"))
            || (small_number && !compound);
        // "between two hundred and a few thousand employees": the count ends the range.
        let range_to_count = tokens.get(end).is_some_and(|t| matches!(t.lower.as_str(), "and" | "to" | "-" | "–"))
            && (end + 1..tokens.len().min(end + 6)).any(|k| {
                matches!(tokens[k].lower.as_str(), "hundred" | "hundreds" | "thousand" | "thousands")
                    && counts_people(tokens, k + 1)
            });
        if larger_follows || !(counts_people(tokens, end) || range_to_count) {
            continue;
        }
        let start = i.saturating_sub(2);
        let matched = tokens[start..(end + 1).min(tokens.len())]
            .iter()
            .map(|t| t.original.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        hits.push(Hit {
            field: Field::Size,
            label,
            chunk,
            matched,
            evidence: Evidence::Headcount,
            negated: negated(tokens, i, end),
            score: 0.0,
            at: i,
            subject: Subject::Unknown,
        });
    }
    hits
}

/// Extracts the ICP of a document from its chunks. With an embedder, when no industry phrase
/// matched, the sentences about the author's customers are compared with the label
/// descriptions.
pub fn extract(chunks: &[&str], embedder: Option<&Embedder>) -> Result<IcpExtraction, EmbedError> {
    let mut hits = Vec::new();
    let mut untypical = false;
    // Two passes: the names of the document's companies first, then each chunk's hits.
    let names = context::document_names(chunks.iter().map(|text| tokenize(text)));
    for (n, text) in chunks.iter().enumerate() {
        let (chunk_hits, chunk_untypical) = scan(&tokenize(text), n, &names);
        hits.extend(chunk_hits);
        untypical |= chunk_untypical;
    }
    // "in every sector", "industry-agnostic": the industries it names are examples, not a market.
    let agnostic = chunks.iter().any(|text| industry_agnostic(text));
    if agnostic {
        hits.retain(|h| h.field != Field::Industry);
    }
    if let Some(embedder) = embedder
        && !agnostic
        && !hits.iter().any(|h| h.field == Field::Industry && !h.negated && counts(h, untypical))
    {
        hits.extend(similar_industries(chunks, embedder)?);
    }
    Ok(aggregate(hits, untypical))
}

/// Does the text say its product is for every industry ("in every sector", "industry-agnostic")?
fn industry_agnostic(text: &str) -> bool {
    let lower = text.to_lowercase();
    // "You've spent a year in an outbound role, any industry": the candidate's experience.
    let about_candidate = |sentence: &str| {
        sentence
            .split(|c: char| !c.is_alphanumeric())
            .any(|w| matches!(w, "you" | "your" | "experience" | "background"))
    };
    let phrases = [
        "every sector",
        "any sector",
        "every industry",
        "any industry",
        "all industries",
        "all sectors",
        "industry-agnostic",
        "industry agnostic",
        "sector-agnostic",
        "not specialise by industry",
        "not specialize by industry",
    ];
    lower
        .split(['.', '!', '?', '\n'])
        .any(|sentence| !about_candidate(sentence) && phrases.iter().any(|phrase| sentence.contains(phrase)))
}

/// Similarity below this is not evidence of an industry.
const SIMILARITY_THRESHOLD: f32 = 0.5;
/// The best label must beat the runner-up by this much.
const SIMILARITY_MARGIN: f32 = 0.04;

/// The industry descriptions' vectors, embedded once per loaded model rather than once per
/// document.
fn industry_vectors(embedder: &Embedder) -> Result<&Vec<Vec<f32>>, EmbedError> {
    if let Some(vectors) = embedder.industry_vectors.get() {
        return Ok(vectors);
    }
    let descriptions: Vec<&str> = INDUSTRY_DESCRIPTIONS.iter().map(|(_, d)| *d).collect();
    let vectors = embedder.embed(&descriptions)?;
    Ok(embedder.industry_vectors.get_or_init(|| vectors))
}

/// The sentences the similarity pass compares, with their chunk: those about who the author
/// sells to ([`TARGET_CUES`]), without a negation (a negated sentence is not a target, however
/// similar).
fn similarity_candidates<'c>(chunks: &[&'c str]) -> Vec<(usize, &'c str)> {
    let mut sentences = Vec::new();
    for (n, chunk) in chunks.iter().enumerate() {
        for (start, end) in crate::chunk::sentences(chunk) {
            let sentence = &chunk[start..end];
            let tokens = tokenize(sentence);
            let has = |cues: &[&str]| tokens.iter().any(|t| t.word && cues.contains(&t.lower.as_str()));
            if has(TARGET_CUES) && !has(NEGATION_CUES) {
                sentences.push((n, sentence));
            }
        }
    }
    sentences
}

fn similar_industries(chunks: &[&str], embedder: &Embedder) -> Result<Vec<Hit>, EmbedError> {
    let sentences = similarity_candidates(chunks);
    if sentences.is_empty() {
        return Ok(Vec::new());
    }
    let label_vectors = industry_vectors(embedder)?;
    let texts: Vec<&str> = sentences.iter().map(|(_, s)| *s).collect();
    let vectors = embedder.embed(&texts)?;
    let mut hits = Vec::new();
    for ((chunk, sentence), vector) in sentences.iter().zip(&vectors) {
        let mut scored: Vec<(f32, &str)> = label_vectors
            .iter()
            .zip(INDUSTRY_DESCRIPTIONS)
            .map(|(l, (label, _))| (cosine(vector, l), *label))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        let (best, label) = scored[0];
        if best >= SIMILARITY_THRESHOLD && best - scored[1].0 >= SIMILARITY_MARGIN {
            let label = INDUSTRY_LABELS.iter().find(|l| **l == label).copied().unwrap_or("saas");
            hits.push(Hit {
                field: Field::Industry,
                label,
                chunk: *chunk,
                matched: sentence.chars().take(120).collect(),
                evidence: Evidence::Similarity,
                negated: false,
                score: best,
                at: 0,
                // Only sentences about customers are compared.
                subject: Subject::Target,
            });
        }
    }
    Ok(hits)
}

/// Can this hit be evidence of the ICP at all? Not when it is about the author, a competitor,
/// partner, investor or a person quoted; and not without a cue in a document that calls its
/// client untypical (the client's particulars are all it has without one).
fn counts(hit: &Hit, untypical: bool) -> bool {
    match hit.subject {
        Subject::Target => true,
        Subject::Unknown => !untypical,
        Subject::Seller | Subject::Other => false,
    }
}

/// Merges hits per label. A label is kept when a sentence about the author's customers names it
/// and no instruction excludes it without one; a mention without any cue counts only in a
/// field where no such sentence named anything (a short note, "CFOs at banks in Ohio"), so that
/// a long document's ICP comes from its passages about customers and markets, not from every
/// mention. Confidence grows with the mentions and is lower for uncued ones.
fn aggregate(hits: Vec<Hit>, untypical: bool) -> IcpExtraction {
    let mut by_label: BTreeMap<(Field, &'static str), Vec<Hit>> = BTreeMap::new();
    for hit in hits {
        by_label.entry((hit.field, hit.label)).or_default().push(hit);
    }
    let named_by_target = |field: Field| {
        by_label
            .iter()
            .any(|((f, _), hits)| *f == field && hits.iter().any(|h| h.subject == Subject::Target && !h.negated))
    };
    let fields_with_targets: Vec<Field> = [Field::Industry, Field::Size, Field::Role, Field::Region]
        .into_iter()
        .filter(|f| named_by_target(*f))
        .collect();
    let mut out = IcpExtraction::default();
    for ((field, label), hits) in by_label {
        let relevant: Vec<&Hit> = hits.iter().filter(|h| counts(h, untypical)).collect();
        let targeted: Vec<&Hit> =
            relevant.iter().copied().filter(|h| !h.negated && h.subject == Subject::Target).collect();
        // Excluded: the same words negated or disqualified somewhere ("Pharma: move on"), not
        // merely another phrase of the label ("restaurants" stay when "hotel chains" do not).
        let excluded = relevant
            .iter()
            .any(|h| h.negated && relevant.iter().any(|p| !p.negated && p.matched.eq_ignore_ascii_case(&h.matched)));
        let positive: Vec<&Hit> = if !targeted.is_empty() {
            targeted
        } else if !excluded && !fields_with_targets.contains(&field) {
            relevant.iter().copied().filter(|h| !h.negated).collect()
        } else {
            Vec::new()
        };
        let Some(first) = positive.first() else { continue };
        let cued = first.subject == Subject::Target;
        let (confidence, matched) = match first.evidence {
            Evidence::Similarity => (positive.iter().map(|h| h.score).fold(0.0, f32::max), first.matched.clone()),
            Evidence::Headcount => (if cued { 0.85 } else { 0.65 }, first.matched.clone()),
            Evidence::Phrase if cued => ((0.8 + 0.05 * positive.len() as f32).min(0.97), first.matched.clone()),
            Evidence::Phrase => ((0.6 + 0.05 * positive.len() as f32).min(0.75), first.matched.clone()),
        };
        let entry = IcpLabel { label, confidence, chunk: first.chunk, matched, evidence: first.evidence };
        match field {
            Field::Industry => out.target_industries.push(entry),
            Field::Size => out.company_sizes.push(entry),
            Field::Role => out.decision_makers.push(entry),
            Field::Region => out.target_regions.push(entry),
        }
    }
    let order = |labels: &mut Vec<IcpLabel>, vocabulary: &[&str]| {
        labels.sort_by_key(|l| vocabulary.iter().position(|v| *v == l.label).unwrap_or(usize::MAX));
    };
    order(&mut out.target_industries, INDUSTRY_LABELS);
    order(&mut out.company_sizes, SIZE_LABELS);
    order(&mut out.decision_makers, ROLE_LABELS);
    order(&mut out.target_regions, REGION_LABELS);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn icp(text: &str) -> IcpCriteria {
        extract(&[text], None).unwrap().criteria()
    }

    #[test]
    fn every_lexicon_label_is_in_the_vocabulary() {
        for (label, _) in INDUSTRIES {
            assert!(INDUSTRY_LABELS.contains(label), "{label}");
        }
        for (label, _) in INDUSTRY_DESCRIPTIONS {
            assert!(INDUSTRY_LABELS.contains(label), "{label}");
        }
        assert_eq!(INDUSTRY_DESCRIPTIONS.len(), INDUSTRY_LABELS.len());
        for (label, _) in SIZES {
            assert!(SIZE_LABELS.contains(label), "{label}");
        }
        for (label, _) in ROLES {
            assert!(ROLE_LABELS.contains(label), "{label}");
        }
        for (_, regions) in PLACES {
            assert!(regions.iter().all(|r| REGION_LABELS.contains(r)));
        }
    }

    #[test]
    fn negation_drops_the_mention() {
        let c = icp("We do not target government agencies or banks. Our focus is insurers.");
        assert_eq!(c.target_industries, vec!["insurance"]);
        let c = icp("Retail is not a focus for us; we sell to hotels.");
        assert_eq!(c.target_industries, vec!["hospitality"]);
        let c = icp("We serve not only banks but also credit unions.");
        assert_eq!(c.target_industries, vec!["banking"]);
        let c = icp("Customers anywhere except Europe, mainly in Canada.");
        assert_eq!(c.target_regions, vec!["North America"]);
    }

    #[test]
    fn headcounts_map_to_sizes() {
        assert_eq!(icp("firms with 200-800 employees").company_sizes, vec!["mid-market"]);
        assert_eq!(icp("with over 5,000 employees").company_sizes, vec!["enterprise"]);
        assert_eq!(icp("with fewer than 50 employees").company_sizes, vec!["smb"]);
        assert_eq!(icp("teams of 1,000+ employees").company_sizes, vec!["enterprise"]);
        assert_eq!(icp("between 50 and 500 staff").company_sizes, vec!["smb", "mid-market"]);
        assert_eq!(icp("K-12 schools").company_sizes, Vec::<String>::new());
        assert_eq!(icp("We have 3 offices and 12 products").company_sizes, Vec::<String>::new());
    }

    #[test]
    fn headcounts_in_words_map_to_sizes() {
        assert_eq!(icp("hospital networks with several thousand employees").company_sizes, vec!["enterprise"]);
        assert_eq!(icp("agencies with a few hundred staff").company_sizes, vec!["mid-market"]);
        assert_eq!(icp("retailers with thousands of employees").company_sizes, vec!["enterprise"]);
        assert_eq!(icp("studios of a dozen people").company_sizes, vec!["smb"]);
        assert_eq!(icp("tens of thousands of workers").company_sizes, vec!["enterprise"]);
        assert_eq!(icp("hundreds of thousands of employees").company_sizes, vec!["enterprise"]);
        // Not a count of people, or negated.
        assert_eq!(icp("thousands of transactions a day").company_sizes, Vec::<String>::new());
        assert_eq!(icp("not firms with thousands of employees").company_sizes, Vec::<String>::new());
    }

    #[test]
    fn places_map_to_regions_and_the_longest_name_wins() {
        assert_eq!(icp("clients in New Mexico and Texas").target_regions, vec!["North America"]);
        assert_eq!(icp("clients in Mexico").target_regions, vec!["Latin America"]);
        assert_eq!(icp("customers in the UK").target_regions, vec!["Europe"]);
        // The author's own offices are no market.
        assert_eq!(icp("offices in the UK").target_regions, Vec::<String>::new());
        assert_eq!(icp("let us know").target_regions, Vec::<String>::new());
        assert_eq!(icp("customers across the US").target_regions, vec!["North America"]);
        assert_eq!(icp("EMEA").target_regions, vec!["Europe", "Middle East", "Africa"]);
    }

    #[test]
    fn blocked_contexts() {
        assert_eq!(icp("We market on social media to SMBs.").target_industries, Vec::<String>::new());
        assert_eq!(icp("Enterprise software for small businesses").company_sizes, vec!["smb"]);
    }

    #[test]
    fn similarity_compares_only_sentences_about_customers() {
        let chunks = [
            "We grow wheat on our family farm. Our customers grow wheat and corn.",
            "The lemma follows from compactness.\nBuilt for fleet operators.",
            "Our clients are not farmers.",
        ];
        let candidates = similarity_candidates(&chunks);
        assert_eq!(candidates, vec![(0, "Our customers grow wheat and corn."), (1, "Built for fleet operators.")]);
    }

    #[test]
    fn the_authors_own_description_is_not_its_target() {
        let c = icp("We are a 300-person cybersecurity company. We sell to hospitals in Ohio.");
        assert_eq!((c.target_industries, c.company_sizes), (vec!["healthcare".into()], vec![]));
        assert_eq!(c.target_regions, vec!["North America"]);
        let c = icp("As a SaaS vendor headquartered in London, we help regional banks in Brazil.");
        assert_eq!((c.target_industries, c.target_regions), (vec!["banking".into()], vec!["Latin America".into()]));
        let c = icp("Unlike Acme, a fintech, we focus on insurers.");
        assert_eq!(c.target_industries, vec!["insurance"]);
        let c = icp("The round was led by Foo Ventures, a healthcare investor. Our customers are law firms.");
        assert_eq!(c.target_industries, vec!["legal"]);
        // Without any cue, a mention is all there is: a short note still counts.
        assert_eq!(icp("CFOs at banks in Ohio").target_industries, vec!["banking"]);
    }

    #[test]
    fn enterprise_as_an_adjective_is_no_size() {
        assert_eq!(icp("We sell enterprise GIS to city planners.").company_sizes, Vec::<String>::new());
        assert_eq!(icp("Our enterprise-grade tool serves enterprise merchants.").company_sizes, Vec::<String>::new());
        assert_eq!(
            icp("We sell to enterprise customers and mid-sized banks.").company_sizes,
            vec!["mid-market", "enterprise"]
        );
        assert_eq!(icp("Customers range from SMBs to enterprise.").company_sizes, vec!["smb", "enterprise"]);
        assert_eq!(icp("Our customers are large insurers.").company_sizes, vec!["enterprise"]);
    }

    #[test]
    fn languages_are_no_regions() {
        let c = icp("Our customers are retailers in Mexico; support is available in English and Spanish.");
        assert_eq!(c.target_regions, vec!["Latin America"]);
        assert_eq!(icp("The app is available in Spanish and Portuguese.").target_regions, Vec::<String>::new());
        assert_eq!(icp("We sell to Spanish retailers.").target_regions, vec!["Europe"]);
    }

    #[test]
    fn datelines_quotes_and_footers_are_not_targets() {
        let text = "Acme Launches Claims AI for Insurers\n\nBERLIN, May 2, 2025 — Acme, a 400-person fintech, \
                    today announced ClaimsAI, built for insurers in Canada.\n\n\"Adjusters love it,\" said Jo \
                    Park, CTO of Acme.\n\nMedia contact: Ann Lee, Director of Communications, press@acme.example";
        let c = icp(text);
        assert_eq!(c.target_industries, vec!["insurance"]);
        assert_eq!(c.company_sizes, Vec::<String>::new());
        assert_eq!(c.decision_makers, Vec::<String>::new());
        assert_eq!(c.target_regions, vec!["North America"]);
    }

    #[test]
    fn instructions_and_untypical_clients_exclude_labels() {
        let c = icp("Our customers are hospitals and clinics.\n\nPharma companies: be polite and move on.");
        assert_eq!(c.target_industries, vec!["healthcare"]);
        let c = icp("Most of our customers are banks. Retailers ask for demos. They are not a fit.");
        assert_eq!(c.target_industries, vec!["banking"]);
        let text = "Northwind, a 40-person mine in Chile, cut costs by 30%. Northwind is not a typical \
                    customer for us: most of our customers are logistics firms in Europe.";
        let c = icp(text);
        assert_eq!((c.company_sizes, c.target_regions), (vec![], vec!["Europe".into()]));
    }

    #[test]
    fn a_job_postings_titles_are_the_jobs() {
        let text = "Account Manager, Nordics\n\nAbout the role: you will sell to CFOs at mid-sized banks in \
                    Sweden. You will report to our VP of Sales.\n\nRequirements: 3 years in SaaS sales.";
        let c = icp(text);
        assert_eq!(c.decision_makers, vec!["CFO"]);
        assert_eq!(c.target_industries, vec!["banking"]);
    }

    /// Words and marks the context reader acts on, to build texts that exercise every rule.
    const PIECES: &[&str] = &[
        "Acme",
        "About",
        "about",
        "Acme",
        "we",
        "We",
        "are",
        "our",
        "Our",
        "customers",
        "sell",
        "to",
        "for",
        "is",
        "a",
        "not",
        "typical",
        "fit",
        "move",
        "on",
        "vs",
        "Unlike",
        "competitor",
        "banks",
        "hospitals",
        "Ohio",
        "Spanish",
        "English",
        "enterprise",
        "grade",
        "CFO",
        "VP",
        "founders",
        "200",
        "employees",
        "several",
        "thousand",
        "MARCH",
        "4,",
        "2025",
        "—",
        "-",
        "–",
        ":",
        ";",
        ".",
        ",",
        "\"",
        "“",
        "”",
        "'",
        "\n",
        "\n\n",
        "Media",
        "contact",
        "Disqualifiers",
        "announced",
        "based",
        "in",
        "The",
        "role",
        "report",
        "you",
        "will",
        "Requirements",
        "(",
        ")",
        "•",
        "large",
        "small",
        "and",
        "or",
        "over",
        "than",
        "fewer",
        "fifty",
        "five",
        "hundred",
        "1e30",
        "18446744073709551615",
        "infinity",
        "it",
        "they",
        "these",
        "whose",
        "their",
        "As",
        "as",
        "an",
        "unusual",
        "exception",
        "skip",
        "said",
        "Headquartered",
        "Ventures",
        "═",
        "═══",
        "between",
        "person",
        "Competitors",
        "Built",
        "Who",
        "It",
    ];

    proptest::proptest! {
        /// Whatever order headings, labels, quotes, datelines and cues come in, reading them
        /// never panics (a worker runs this on every document).
        #[test]
        fn extraction_never_panics_on_any_arrangement(picks in proptest::collection::vec(0..PIECES.len(), 0..120)) {
            let text: Vec<&str> = picks.iter().map(|&i| PIECES[i]).collect();
            let extraction = extract(&[&text.join(" "), &text.concat()], None).unwrap();
            for label in extraction.target_industries.iter().chain(&extraction.target_regions) {
                proptest::prop_assert!(label.confidence > 0.0 && label.confidence <= 1.0);
            }
        }
    }

    #[test]
    fn review_cases_keep_what_they_should() {
        // An exclusion verb excludes its object, not what came before it.
        assert_eq!(icp("We sell to hospitals but skip pharma.").target_industries, vec!["healthcare"]);
        let c = icp("Our customers are regional banks in Ohio. Skip retailers.");
        assert_eq!((c.target_industries, c.target_regions), (vec!["banking".into()], vec!["North America".into()]));
        let c = icp("We sell to not-for-profit organisations in the UK.");
        assert_eq!((c.target_industries, c.target_regions), (vec!["nonprofit".into()], vec!["Europe".into()]));
        // Counts in words with a scale, and numbers no count can be.
        assert_eq!(icp("companies with more than five thousand employees").company_sizes, vec!["enterprise"]);
        assert_eq!(icp("over 1e30 employees").company_sizes, Vec::<String>::new());
        assert_eq!(icp("over 18446744073709551615 staff").company_sizes, vec!["enterprise"], "no overflow");
        assert_eq!(icp("We sell to enterprises in Europe.").company_sizes, vec!["enterprise"]);
        // "unusual" of a deal is no untypical client; a lexicon word is no company name.
        let c = icp("It's not unusual for a deal to take nine months. Hospitals in Ohio buy from us.");
        assert_eq!((c.target_industries, c.target_regions), (vec!["healthcare".into()], vec!["North America".into()]));
        assert_eq!(icp("Retail is changing fast. We help retailers in Texas.").target_industries, vec!["retail"]);
        assert_eq!(
            icp("SMB vs. Enterprise\nWe sell to SMBs and enterprise accounts.").company_sizes,
            vec!["smb", "enterprise"]
        );
        // A duration is no market.
        let c = icp("We have been in business for 12 years. Our customers are clinics in Ohio.");
        assert_eq!(c.target_industries, vec!["healthcare"]);
    }

    #[test]
    fn sixth_round_cases_keep_what_they_should() {
        // A transcript's speaker labels and the author's executives are no buyers.
        let c = icp("Tomás Riedel, Chief Executive Officer: Thanks. Our customers are online merchants.\n\n\
                     Helen Marsh, Chief Financial Officer: Margins rose.");
        assert_eq!((c.decision_makers, c.target_industries), (vec![], vec!["ecommerce".to_string()]));
        // What the customers have outgrown is what they buy, not what they are.
        let c = icp("Our sweet spot: online merchants that have outgrown their first payment provider.");
        assert_eq!(c.target_industries, vec!["ecommerce"]);
        // A range from a count in words to a count in words.
        let c = icp("Our customers are businesses with somewhere between two hundred and a few thousand employees.");
        assert_eq!(c.company_sizes, vec!["mid-market", "enterprise"]);
        // A year is no headcount.
        assert_eq!(icp("We sell to agencies founded in 2015 with 40 staff.").company_sizes, vec!["smb"]);
        // The author's partnership aims at its own market.
        let c = icp("Acme today announced a partnership with Savanna Mobile. The partnership is aimed at \
                     ministries of education in Kenya.");
        assert_eq!(
            (c.target_industries, c.target_regions),
            (vec!["education".into(), "government".into()], vec!["Africa".into()])
        );
        // A negation that took its object ("isn't one") stops at its comma.
        let c = icp("The economic buyer is the CISO; where there isn't one, the IT director owns the budget.");
        assert_eq!(c.decision_makers, vec!["CISO", "Director"]);
        // Someone else selling ("they sell ... to").
        let c = icp("Our customers are small hotels in Spain. StayCore's parent also does tills: they sell \
                     point-of-sale systems to restaurants and retailers too.");
        assert_eq!(c.target_industries, vec!["hospitality"]);
        // Software is no buyer; a playbook's "your manager" is the author's.
        assert_eq!(
            icp("Our customers are hotels. We connect to channel managers.").decision_makers,
            Vec::<String>::new()
        );
        assert_eq!(icp("Your manager will review the hotels you call.").decision_makers, Vec::<String>::new());
        // A candidate's "any industry" does not make the author industry-agnostic.
        let c =
            icp("You'll prospect into fintechs and digital-only banks.\n\nYou've spent a year in sales, any industry.");
        assert_eq!(c.target_industries, vec!["fintech", "banking"]);
        // The client after "One exception worth mentioning:" is the untypical one.
        let c = icp("Our customers are publishers in Europe. One exception worth mentioning: our largest \
                     customer is a national telecom operator.");
        assert_eq!(c.target_industries, vec!["media"]);
        // Headings: whom we go after, whom to contact, whom to skip, the competition.
        let c = icp("1. Who we're going after\nMid-sized game studios.\n\n2. Who to contact\nThe CTO. Community \
                     managers can't buy.\n\n3. Who to skip\nIndie studios under twenty people.\n\n4. Competitive \
                     context\nShieldPlay sells mostly to media companies.");
        assert_eq!(
            (c.target_industries, c.company_sizes, c.decision_makers),
            (vec!["gaming".into()], vec!["mid-market".into()], vec!["CTO".into()])
        );
        // The buying team's roles, by what they did.
        let c = icp("Plant managers built the business case; the VP of Quality owned the budget.");
        assert_eq!(c.decision_makers, vec!["VP", "Manager"]);
    }

    #[test]
    fn seventh_round_cases_keep_what_they_should() {
        // A team's size is no company size; "24/7" and section numbers are no counts.
        let c =
            icp("Our customers are manufacturers with 250 to 3,000 employees and an AP team of at least four people.");
        assert_eq!(c.company_sizes, vec!["mid-market", "enterprise"]);
        assert_eq!(icp("We sell to NOCs who run 24/7 shifts of engineers.").company_sizes, Vec::<String>::new());
        // A competitor's customers, and our customers' suppliers, are not ours.
        let c = icp("Ledgerline vs. Versa\nWe sell to manufacturers. If a prospect looks like a Ledgerline customer \
                     (a 30-person startup), walk away. Our customers' suppliers, often family-owned machine shops, \
                     use the portal.");
        assert_eq!((c.target_industries, c.company_sizes), (vec!["manufacturing".into()], vec![]));
        // Exclusion headings that say so in a phrase; a territory heading.
        let c = icp("7. Segments to leave alone\nSchool districts.\n\n2.2 Territories\nOntario and Quebec.");
        assert_eq!((c.target_industries, c.target_regions), (vec![], vec!["North America".into()]));
        // "accounts-payable automation" holds no account; an industry-agnostic author has no industries.
        assert_eq!(
            icp("We sell to hospitals in Germany. Versa is an accounts-payable automation company headquartered in Chicago.")
                .target_regions,
            vec!["Europe"]
        );
        let c = icp("Our customers come from every industry, including banks, hospitals and universities.");
        assert_eq!(c.target_industries, Vec::<String>::new());
        // Departments are no industries; the customers' own customers are not ours.
        let c =
            icp("You'll book meetings with IT directors and telecom procurement managers at oil and gas producers.");
        assert_eq!(c.target_industries, vec!["energy"]);
        let c = icp("We sell to freight carriers. Our carriers haul for supermarkets and pharmacies.");
        assert_eq!(c.target_industries, vec!["logistics"]);
        let c = icp("Our customers are growers in Kenya. Our customers sell to trading houses and food manufacturers.");
        assert_eq!(c.target_industries, vec!["agriculture"]);
        // What a customer builds is its product.
        let c =
            icp("Our customers are general contractors. The firm builds hospitals, charter schools and warehouses.");
        assert_eq!(c.target_industries, vec!["construction"]);
        // A named person's title is not a buyer; a partner "best known for" its clients is someone else.
        let c = icp("Leadership\n- Farah Idris, Co-founder & CEO\n- Tran Minh Duc, CTO");
        assert_eq!(c.decision_makers, Vec::<String>::new());
        let c = icp(
            "We sell to municipalities. We deliver projects with Nordvik, a firm best known for its work with banks.",
        );
        assert_eq!(c.target_industries, vec!["government"]);
        // Buyers by what they do; "fewer than a hundred people"; "without a CTO," ends its phrase.
        let c = icp("Ardmore expects Heads of HSE to drive evaluations, with renewals signed by the CFO.");
        assert_eq!(c.decision_makers, vec!["CFO", "Head"]);
        assert_eq!(icp("We sell to law firms of fewer than a hundred people.").company_sizes, vec!["smb"]);
        let c = icp("The buyer is the CTO; at seed-stage companies without a CTO, the CEO signs.");
        assert_eq!(c.decision_makers, vec!["CEO", "CTO"]);
        // Questions: where the buyers are, and whom to exit.
        let c = icp("Q: Where?\nA: The UK and Germany.\n\nQ: Who should I politely exit?\nA: Banks and insurers.");
        assert_eq!((c.target_industries, c.target_regions), (vec![], vec!["Europe".into()]));
        // A dateline before the author's name; the Gulf Coast is in North America.
        let c =
            icp("WAGENINGEN, Netherlands — 4 March 2025 — Veldmark, an agritech company, today announced a round. \
                     The round funds Veldmark's expansion into Brazil.");
        assert_eq!(c.target_regions, vec!["Latin America"]);
        assert_eq!(icp("We sell to contractors on the Gulf Coast.").target_regions, vec!["North America"]);
    }

    #[test]
    fn a_drawn_table_stays_cheap_to_read() {
        // One chunk of box-drawing runs: runs collapse and the tokens per chunk are capped.
        let text = "═".repeat(100).repeat(256) + " customers in Ohio " + &"─ ".repeat(20_000);
        let tokens = tokenize(&text);
        assert!(tokens.len() <= MAX_TOKENS_PER_CHUNK, "{} tokens", tokens.len());
        assert_eq!(tokenize("a ═══════ b").len(), 3);
    }

    #[test]
    fn labels_carry_their_chunk() {
        let e = extract(&["Nothing here.", "We sell to CFOs at banks."], None).unwrap();
        assert_eq!(e.decision_makers[0].chunk, 1);
        assert_eq!(e.target_industries[0].label, "banking");
        assert!(e.target_industries[0].confidence > 0.8);
    }
}
