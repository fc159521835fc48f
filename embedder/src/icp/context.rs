//! Whose a mention is. Sales documents name the author's own industry, size and offices, its
//! customers, competitors, partners and investors, and the people they quote, all in the same
//! prose; only what is said about the customers is the author's ICP. This module reads the cues
//! around every word of a chunk (the sentence's verbs and nouns, headings, datelines, the
//! attribution of quotes, contact footers) and says, per token, whose it is, and whether an instruction excludes it
//! ("Pharma companies: be polite and move on").

use std::collections::HashSet;

use super::Token;
use super::lexicon::{
    ANNOUNCING_VERBS, DISQUALIFY_CUES, DISQUALIFY_HEADINGS, FOOTER_HEADINGS, JOB_HEADINGS, JOB_POSTING_CUES,
    LANGUAGE_CUES, LANGUAGE_NAMES, LEADING_DISQUALIFY_CUES, NOT_CUES, OPENING_SELLER_CUES, OTHER_PARTY_CUES,
    OTHER_PARTY_HEADINGS, SELLER_CUES, SELLER_HEADINGS, SERVICE_VERBS, TARGET_CONTEXT_CUES, TARGET_HEADINGS,
    UNTYPICAL_CUES,
};

/// Whom a stretch of text is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Subject {
    /// The author's customers or market: "we sell to", "our customers are", "ideal for".
    Target,
    /// The author itself: "we are a cybersecurity company", "headquartered in Berlin".
    Seller,
    /// Someone else: a competitor, partner, investor, a person quoted, a contact footer, or a
    /// client the text calls untypical.
    Other,
    /// No cue either way.
    Unknown,
}

/// A cue found in the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cue {
    Subject(Subject),
    /// The author's, when it opens the sentence or the sentence is the author's.
    OpeningSeller,
    Disqualify,
    Untypical,
    /// Words that look like a cue and are none.
    None,
}

/// Whose each token of a chunk is.
pub(super) struct Context {
    subjects: Vec<Subject>,
    /// Excluded by an instruction ("not a fit", "move on") or a "Disqualifiers" heading.
    disqualified: Vec<bool>,
    /// The sentence (start, end) of every token.
    sentence_of: Vec<(usize, usize)>,
    /// Some sentence says a client is untypical: mentions without a cue are its particulars.
    pub(super) untypical: bool,
    /// A job posting's title line.
    job_title: Option<(usize, usize)>,
    /// The chunk is a job posting: titles without a cue are the job's and its colleagues'.
    pub(super) job_posting: bool,
}

impl Context {
    pub(super) fn subject(&self, at: usize) -> Subject {
        self.subjects.get(at).copied().unwrap_or(Subject::Unknown)
    }

    pub(super) fn disqualified(&self, at: usize) -> bool {
        self.disqualified.get(at).copied().unwrap_or(false)
    }

    /// Does the sentence of token `at` speak of languages ("in English and Spanish")?
    pub(super) fn about_languages(&self, tokens: &[Token], at: usize) -> bool {
        let Some(&(start, end)) = self.sentence_of.get(at) else { return false };
        // A job posting's "Dutch is useful" asks for a language.
        if self.job_posting {
            return true;
        }
        let language = |i: usize| tokens.get(i).is_some_and(|t| LANGUAGE_NAMES.contains(&t.lower.as_str()));
        let listed = |i: usize| tokens.get(i).is_some_and(|t| matches!(t.lower.as_str(), "and" | "or" | ","));
        tokens[start..end].iter().any(|t| t.word && LANGUAGE_CUES.contains(&t.lower.as_str()))
            // "in Spanish and Portuguese": two languages side by side.
            || (listed(at + 1) && language(at + 2))
            || (at >= 2 && listed(at - 1) && language(at - 2))
            || tokens.get(at + 1).is_some_and(|t| t.lower == "speaking")
            || (tokens.get(at + 1).is_some_and(|t| t.lower == "-")
                && tokens.get(at + 2).is_some_and(|t| t.lower == "speaking"))
    }
}

/// Words skipped inside a multi-word cue ("we're", "don't", "purpose-built").
fn joiner(token: &Token) -> bool {
    !token.word && matches!(token.lower.as_str(), "-" | "–" | "'" | "’" | "/")
}

/// The end of `cue` (space-separated words, plurals allowed; `=` first: its first word's case
/// must match, "=Capital" is a fund's name, "capital" money) matched at `start`.
fn cue_at(tokens: &[Token], start: usize, cue: &str) -> Option<usize> {
    let (exact_case, cue) = match cue.strip_prefix('=') {
        Some(rest) => (true, rest),
        None => (false, cue),
    };
    let mut i = start;
    for (n, word) in cue.split(' ').enumerate() {
        if n > 0 {
            while tokens.get(i).is_some_and(joiner) {
                i += 1;
            }
        }
        let token = tokens.get(i).filter(|t| t.word)?;
        let matches = if exact_case && n == 0 {
            token.original == word || token.original.strip_suffix('s') == Some(word)
        } else {
            super::word_matches(word, &token.lower)
        };
        if !matches {
            return None;
        }
        i += 1;
    }
    Some(i)
}

/// A cue found at a token.
#[derive(Clone, Copy, Debug)]
struct Found {
    start: usize,
    end: usize,
    cue: Cue,
    phrase: &'static str,
    /// Also governs the words just before it (`<` in the lexicon).
    backward: bool,
}

/// A cue of the lexicon: its phrase (without the `<` mark), kind, and whether it governs backward.
type IndexedCue = (&'static str, Cue, bool);

/// Every cue, by its first word (lowercased, without the `=` of exact case): a token is
/// compared with the few cues its word can open instead of all of them.
fn cues_by_first_word() -> &'static std::collections::HashMap<String, Vec<IndexedCue>> {
    static INDEX: std::sync::OnceLock<std::collections::HashMap<String, Vec<IndexedCue>>> = std::sync::OnceLock::new();
    INDEX.get_or_init(|| {
        let lists: [(&[&str], Cue); 7] = [
            (NOT_CUES, Cue::None),
            (DISQUALIFY_CUES, Cue::Disqualify),
            (UNTYPICAL_CUES, Cue::Untypical),
            (OTHER_PARTY_CUES, Cue::Subject(Subject::Other)),
            (OPENING_SELLER_CUES, Cue::OpeningSeller),
            (SELLER_CUES, Cue::Subject(Subject::Seller)),
            (TARGET_CONTEXT_CUES, Cue::Subject(Subject::Target)),
        ];
        let mut index: std::collections::HashMap<String, Vec<IndexedCue>> = Default::default();
        for (list, cue) in lists {
            for marked in list {
                let (backward, phrase) = match marked.strip_prefix('<') {
                    Some(rest) => (true, rest),
                    None => (false, *marked),
                };
                let first = phrase.trim_start_matches('=').split(' ').next().unwrap_or_default().to_lowercase();
                index.entry(first).or_default().push((phrase, cue, backward));
            }
        }
        index
    })
}

/// The longest cue of any list starting at `start`.
fn cue_starting(tokens: &[Token], start: usize) -> Option<Found> {
    let token = tokens.get(start).filter(|t| t.word)?;
    let word = token.lower.as_str();
    // "We sell a lighter platform to biotechs", "will sell the service to CISOs": the author
    // selling, up to its "to" ("looking to sell direct to consumers" is someone else selling).
    if matches!(word, "sell" | "sells" | "selling" | "sold")
        && start.checked_sub(1).is_none_or(|i| tokens[i].lower != "to")
        && let Some(to) = (start + 1..tokens.len().min(start + 8))
            .take_while(|&i| tokens[i].word || matches!(tokens[i].lower.as_str(), "," | "-"))
            .find(|&i| matches!(tokens[i].lower.as_str(), "to" | "into"))
    {
        // "They started in streaming and still sell mostly to media companies": someone else.
        let seller = tokens[start.saturating_sub(8)..start]
            .iter()
            .rev()
            .take_while(|t| !ends_sentence(t))
            .find(|t| matches!(t.lower.as_str(), "we" | "our" | "us" | "i" | "they" | "he" | "she"));
        // "Our customers sell to trading houses": the customers' own customers.
        let customers_sell = start.checked_sub(1).is_some_and(|i| {
            matches!(tokens[i].lower.as_str(), "customers" | "clients" | "members" | "users" | "partners" | "resellers")
        });
        let subject = match seller.map(|t| t.lower.as_str()) {
            _ if customers_sell => Subject::Other,
            Some("they" | "he" | "she") => Subject::Other,
            _ => Subject::Target,
        };
        return Some(Found { start, end: to + 1, cue: Cue::Subject(subject), phrase: "sell to", backward: false });
    }
    // The forms `word_matches` accepts: the word itself, and its singular ("customers",
    // "businesses", "companies").
    let singular_ies = word.strip_suffix("ies").map(|stem| format!("{stem}y"));
    let keys = [Some(word), word.strip_suffix('s'), word.strip_suffix("es"), singular_ies.as_deref()];
    let index = cues_by_first_word();
    let mut best: Option<Found> = None;
    for key in keys.into_iter().flatten() {
        for &(phrase, cue, backward) in index.get(key).into_iter().flatten() {
            if let Some(end) = cue_at(tokens, start, phrase)
                && best.is_none_or(|b| end > b.end || (end == b.end && precedes(cue, b.cue)))
            {
                best = Some(Found { start, end, cue, phrase, backward });
            }
        }
    }
    best
}

/// Between cues of equal length, the list order of old: not-a-cue, exclusions, untypical,
/// others, the author, targets.
fn precedes(a: Cue, b: Cue) -> bool {
    let rank = |c: Cue| match c {
        Cue::None => 0,
        Cue::Disqualify => 1,
        Cue::Untypical => 2,
        Cue::Subject(Subject::Other) => 3,
        Cue::OpeningSeller => 4,
        Cue::Subject(Subject::Seller) => 5,
        Cue::Subject(_) => 6,
    };
    rank(a) < rank(b)
}

const MONTHS: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
];

/// The end of a press release's dateline ("LONDON, March 4, 2025 —") opening the sentence at
/// `start`: the author's city and the date, not a market.
fn dateline_end(tokens: &[Token], start: usize, end: usize) -> Option<usize> {
    // The first dash with a date before it ("WAGENINGEN, Netherlands — 4 March 2025 — ").
    (start..end.min(start + 16)).filter(|&i| matches!(tokens[i].lower.as_str(), "—" | "–" | "-" | "/")).find_map(
        |dash| {
            let has_month = tokens[start..dash].iter().any(|t| MONTHS.contains(&t.lower.as_str()));
            let has_year = tokens[start..dash].iter().any(|t| t.lower.len() == 4 && t.lower.starts_with("20"));
            (has_month || has_year).then_some(dash + 1)
        },
    )
}

/// The first word of a sentence, past a dateline or a label ("The problem: Brennock ...").
fn opening(tokens: &[Token], (start, end): (usize, usize)) -> usize {
    if let Some(after) = dateline_end(tokens, start, end) {
        return after;
    }
    let label = (start..end.min(start + 8)).find(|&i| tokens[i].lower == ":");
    label.map_or(start, |colon| colon + 1)
}

fn capitalised(token: &Token) -> bool {
    token.word && token.original.starts_with(char::is_uppercase)
}

/// Names of other companies, lowercased: the capitalised words after "vs", "unlike",
/// "competitor" and the like ("Carto vs. ShopStack", "unlike Acme").
fn other_names(tokens: &[Token]) -> Vec<String> {
    let mut names = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if matches!(t.lower.as_str(), "vs" | "versus" | "unlike" | "against" | "competitor" | "competitors" | "rival") {
            names.extend(
                tokens[i + 1..]
                    .iter()
                    .skip_while(|t| !t.word)
                    .take_while(|t| capitalised(t))
                    .take(1)
                    .map(|t| t.lower.clone()),
            );
        }
    }
    names
}

/// The author's name, lowercased: the words of an "About Acme" heading, and the capitalised
/// words that open a sentence announcing something ("Acme Robotics today announced"); never a
/// competitor's ("About ShopStack" in a battlecard).
fn seller_names(
    tokens: &[Token],
    headings: &[(usize, usize)],
    sentences: &[(usize, usize)],
    first_chunk: bool,
) -> Vec<String> {
    let mut names = Vec::new();
    for &(start, end) in headings {
        // A battlecard's "Rendi vs. CardOne": the author's product comes first.
        let line_end = (start + 1..tokens.len()).find(|&i| tokens[i].line_start).unwrap_or(tokens.len());
        if let Some(vs) = (start..line_end).find(|&i| matches!(tokens[i].lower.as_str(), "vs" | "versus")) {
            let run_start = (start..vs).rev().take_while(|&i| capitalised(&tokens[i])).last().filter(|&i| i < vs);
            names.extend(run_start.map(|i| tokens[i].lower.clone()));
        }
        if tokens[start].lower == "about" {
            names.extend(
                tokens[start + 1..end]
                    .iter()
                    .filter(|t| capitalised(t) && t.lower != "us")
                    .take(1)
                    .map(|t| t.lower.clone()),
            );
        }
    }
    for &(start, end) in sentences {
        // "About Parcel." as a sentence of its own.
        let all: Vec<&Token> = tokens[start..end].iter().filter(|t| t.word).collect();
        if let [about, name] = all.as_slice()
            && about.lower == "about"
            && capitalised(name)
            && name.lower != "us"
        {
            names.push(name.lower.clone());
        }
    }
    let first_words = |&(start, end): &(usize, usize)| -> Vec<&Token> {
        let first = opening(tokens, (start, end));
        tokens[first..end].iter().filter(|t| t.word).collect()
    };
    for (n, sentence) in sentences.iter().enumerate() {
        // "WAGENINGEN, Netherlands — 4 March 2025 — Veldmark, a 75-person agritech company, today
        // announced": the name comes after the dateline.
        let words = match dateline_end(tokens, sentence.0, sentence.1) {
            Some(after) => tokens[after..sentence.1].iter().filter(|t| t.word).collect(),
            None => first_words(sentence),
        };
        let announces = words.iter().take(20).any(|t| ANNOUNCING_VERBS.contains(&t.lower.as_str()));
        // "Brightline is a fintech company of 200 people. We're growing fast": the name that
        // describes itself right before the author speaks as "we" is the author's.
        let describes_itself = words.get(1).is_some_and(|t| t.lower == "is")
            && sentences.get(n + 1).is_some_and(|next| {
                first_words(next).first().is_some_and(|t| matches!(t.lower.as_str(), "we" | "our"))
            });
        if announces || describes_itself {
            names.extend(words.first().filter(|t| capitalised(t)).map(|t| t.lower.clone()));
        }
    }
    // A document's title opens with the author's name ("Lessonloop District Sales Playbook"),
    // unless it tells a customer's story; a name, because the body names it again. Only the
    // first chunk starts with the title.
    if first_chunk
        && let Some(&(start, end)) = headings.first().filter(|(start, _)| *start == 0)
        && !tokens[start..end].iter().any(|t| matches!(t.lower.as_str(), "case" | "customer" | "success" | "story"))
    {
        let line_end = (start + 1..tokens.len()).find(|&i| tokens[i].line_start).unwrap_or(tokens.len());
        if let Some(name) = tokens[start..line_end].iter().find(|t| t.word).filter(|t| capitalised(t))
            && tokens[line_end..].iter().any(|t| t.original == name.original)
        {
            names.push(name.lower.clone());
        }
    }
    names.retain(|n| !TITLE_WORDS.contains(&n.as_str()));
    names
}

/// Capitalised words that open titles and sentences without naming anyone.
const TITLE_WORDS: &[&str] = &[
    "the",
    "today",
    "we",
    "our",
    "this",
    "a",
    "an",
    "how",
    "why",
    "what",
    "competitive",
    "product",
    "sales",
    "job",
    "senior",
    "case",
    "customer",
    "about",
    "new",
    "it",
    "its",
    "their",
    "they",
    "in",
    "at",
    "for",
];

/// Names of clients the text calls untypical ("Brennock is not our usual fit"): every sentence
/// naming one is about that client.
fn untypical_names(tokens: &[Token], sentences: &[(usize, usize)]) -> Vec<String> {
    let mut names = Vec::new();
    for (n, &(start, end)) in sentences.iter().enumerate() {
        let Some(cue) =
            (start..end).find(|&i| UNTYPICAL_CUES.iter().any(|c| cue_at(tokens, i, c).is_some_and(|e| e <= end)))
        else {
            continue;
        };
        // "Not our usual fit: Brennock ..." labels what follows; otherwise the clause says it.
        let first = opening(tokens, (start, end));
        let until = if cue < first { end } else { clause_end(tokens, cue, end) };
        let mut named: Vec<String> = tokens[first.min(until)..until]
            .iter()
            .filter(|t| capitalised(t))
            .map(|t| t.lower.clone())
            .filter(|n| !TITLE_WORDS.contains(&n.as_str()))
            .collect();
        // "Altamar, the 12,000-employee conglomerate, is our best-known logo. It is an
        // exception": the client is the one the sentence before opens with.
        let pronoun = tokens[first.min(until)..until]
            .iter()
            .find(|t| t.word)
            .is_some_and(|t| matches!(t.lower.as_str(), "it" | "they" | "this" | "that" | "she" | "he"));
        if named.is_empty()
            && pronoun
            && n > 0
            && let Some(previous) = sentences.get(n - 1)
        {
            let opener = tokens[opening(tokens, *previous)..previous.1].iter().find(|t| t.word);
            named.extend(
                opener.filter(|t| capitalised(t) && !TITLE_WORDS.contains(&t.lower.as_str())).map(|t| t.lower.clone()),
            );
        }
        names.extend(named);
    }
    names
}

/// Names found anywhere in a document, lowercased: a name introduced in one chunk is the same
/// company in the next.
pub(super) struct Names {
    /// The author's.
    pub(super) sellers: HashSet<String>,
    /// Competitors'.
    pub(super) others: HashSet<String>,
    /// Clients the text calls untypical.
    untypical_clients: HashSet<String>,
}

/// The lines that are headings, as (start, end of the label).
fn heading_lines(tokens: &[Token]) -> Vec<(usize, usize)> {
    lines(tokens).into_iter().filter_map(|line| heading_words(tokens, line).map(|(_, end)| (line.0, end))).collect()
}

/// The names of a document's companies, from all its chunks.
/// The names of a document's companies, from all its chunks (tokenized one at a time, so that
/// a long document's tokens are never all held at once). A word of the ICP lexicon is never
/// taken for a name ("Retail is changing fast", "Insurers launched portals").
pub(super) fn document_names(chunks: impl Iterator<Item = Vec<Token>>) -> Names {
    let (mut sellers, mut others, mut untypical) = (HashSet::new(), HashSet::new(), HashSet::new());
    for (n, tokens) in chunks.enumerate() {
        let headings = heading_lines(&tokens);
        let sentences = sentences(&tokens, &headings);
        others.extend(other_names(&tokens));
        sellers.extend(seller_names(&tokens, &headings, &sentences, n == 0));
        untypical.extend(untypical_names(&tokens, &sentences));
    }
    let named = |name: &String| !super::is_lexicon_word(name);
    others.retain(named);
    sellers.retain(|name| named(name) && !others.contains(name));
    untypical.retain(|name| named(name) && !sellers.contains(name));
    Names { sellers, others, untypical_clients: untypical }
}

/// Does the sentence open with an answer's label ("A:", "Answer:")?
fn answers_question(tokens: &[Token], start: usize) -> bool {
    tokens.get(start).is_some_and(|t| matches!(t.lower.as_str(), "a" | "answer"))
        && tokens.get(start + 1).is_some_and(|t| t.lower == ":")
}

/// Does the author speak in this sentence ("We ...", "Our ...", "Acme ...")?
fn authors_sentence(tokens: &[Token], sentence: (usize, usize), names: &Names) -> bool {
    let first = opening(tokens, sentence);
    let first_word = tokens[first..sentence.1].iter().find(|t| t.word).map(|t| t.lower.as_str()).unwrap_or_default();
    matches!(first_word, "we" | "our") || names.sellers.contains(first_word)
}

/// Cues of a sentence, in order. `previous` is whose the sentence before was, at its start.
fn sentence_cues(
    tokens: &[Token],
    (start, end): (usize, usize),
    names: &Names,
    previous: Subject,
    in_answer_about_buyers: bool,
) -> Vec<Found> {
    let mut cues: Vec<Found> = Vec::new();
    // A dateline is the author's city.
    if let Some(after) = dateline_end(tokens, start, end) {
        cues.push(Found { start, end: start, cue: Cue::Subject(Subject::Seller), phrase: "", backward: false });
        cues.push(Found { start: after, end: after, cue: Cue::Subject(Subject::Unknown), phrase: "", backward: false });
    }
    let first = opening(tokens, (start, end));
    let first_word = tokens[first..end].iter().find(|t| t.word).map(|t| t.lower.as_str()).unwrap_or_default();
    let authors_sentence = authors_sentence(tokens, (start, end), names);
    // "Acme is a 300-person SaaS vendor": a sentence opened by the author's name is the author's,
    // one opened by a competitor's name the competitor's.
    let named = if names.sellers.contains(first_word) {
        Some(Subject::Seller)
    } else if names.others.contains(first_word) {
        Some(Subject::Other)
    } else if matches!(first_word, "it" | "its" | "they" | "their") && previous == Subject::Other {
        // "CardOne is a US neobank. Its home market is startups": still the competitor.
        Some(Subject::Other)
    } else if matches!(first_word, "who" | "where" | "which") && end > start && tokens[end - 1].lower == "?" {
        // "Q: Who at the studio?": a question about the buyers.
        Some(Subject::Target)
    } else if (answers_question(tokens, start) && previous == Subject::Target) || in_answer_about_buyers {
        // "Q: Who are we calling? A: Independent game studios ...": the answer is about whom
        // the question asked.
        Some(Subject::Target)
    } else if matches!(first_word, "these" | "they" | "those" | "such") && previous == Subject::Target {
        // "... operators in Southeast Asia. These are operators with tens of thousands of
        // employees": still the customers.
        Some(Subject::Target)
    } else {
        None
    };
    // In a sentence about another company, "market", "customers" and "for" are its own.
    let about_other = named == Some(Subject::Other);
    if let Some(subject) = named
        && let Some(at) = (first..end).find(|&i| tokens[i].word)
    {
        cues.push(Found { start: at, end: at + 1, cue: Cue::Subject(subject), phrase: "opener", backward: false });
    }
    let mut i = cues.last().map_or(start, |c| c.end);
    while i < end {
        let Some(found) = cue_starting(tokens, i).filter(|f| f.end <= end) else {
            i += 1;
            continue;
        };
        i = found.end;
        let last_subject = cues.iter().rev().find_map(|c| match c.cue {
            Cue::Subject(subject) => Some(subject),
            _ => None,
        });
        // "investors who focus on insurance", "a fund that invests in fintech": a customer word
        // after another party, with no word of the author's between, is that party's.
        let last_other = cues.iter().rev().find(|c| c.cue == Cue::Subject(Subject::Other)).map(|c| c.end);
        // "The partnership is aimed at ministries of education": the author's partnership.
        let partnership_aims = cues
            .iter()
            .rev()
            .find(|c| c.cue == Cue::Subject(Subject::Other))
            .is_some_and(|c| c.phrase == "partnership" && words_between(tokens, c.end, found.start) <= 3);
        let others_clause = !partnership_aims
            && last_other.is_some_and(|from| {
                last_subject == Some(Subject::Other)
                    && !tokens[from..found.start].iter().any(|t| {
                        matches!(t.lower.as_str(), "we" | "our" | "us" | ";" | "but")
                            || names.sellers.contains(&t.lower)
                    })
            });
        // "the customer's own bank", "our customers' suppliers": another company than the customer.
        let possessive = tokens.get(found.end).is_some_and(|t| matches!(t.lower.as_str(), "'" | "’"))
            && (tokens.get(found.end + 1).is_some_and(|t| t.lower == "s")
                || tokens.get(found.end - 1).is_some_and(|t| t.lower.ends_with('s')));
        // "a hosting provider whose customers are telecom carriers", "retailers delight their
        // customers": someone else's customers.
        // ("Its buyers are radiology directors" after the author's own sentence is the author's.)
        let owner = found.start.checked_sub(1).map(|i| tokens[i].lower.as_str()).unwrap_or_default();
        // "a Ledgerline customer": the competitor's.
        let named_owner =
            found.start.checked_sub(1).is_some_and(|i| capitalised(&tokens[i]) && names.others.contains(owner));
        let someone_elses = matches!(found.phrase, "customer" | "client" | "clientele" | "customer base" | "buyer")
            && (owner == "whose" || named_owner || (matches!(owner, "their" | "its") && previous == Subject::Other));
        let found = match found.cue {
            // "the customer's own bank" is another company than the customer.
            Cue::Subject(Subject::Target) if possessive => continue,
            Cue::Subject(Subject::Target) if someone_elses => Found { cue: Cue::Subject(Subject::Other), ..found },
            // "a growth investor known for its bets on fintech", "a reseller of hardware for
            // hospitals": "for" after another party is that party's.
            Cue::Subject(Subject::Target) if found.phrase == "for" && last_subject == Some(Subject::Other) => continue,
            // "in business for 12 years": a duration.
            Cue::Subject(Subject::Target)
                if found.phrase == "for"
                    && tokens.get(found.end).is_some_and(|t| t.lower.starts_with(|c: char| c.is_ascii_digit())) =>
            {
                continue;
            }
            Cue::Subject(Subject::Target) if about_other || others_clause => {
                Found { cue: Cue::Subject(Subject::Other), ..found }
            }
            Cue::OpeningSeller => {
                let subject_before = cues.iter().any(|c| matches!(c.cue, Cue::Subject(_)));
                let opens = words_between(tokens, opening(tokens, (start, end)), found.start) == 0;
                if subject_before || !(opens || authors_sentence) {
                    continue;
                }
                Found { cue: Cue::Subject(Subject::Seller), ..found }
            }
            Cue::None => continue,
            _ => found,
        };
        cues.push(found);
        // "for" reaches to the end of its phrase, lists and colons included ("in Toronto for
        // historical reasons (both founders are Canadian)"): then whose it was before holds.
        if found.phrase == "for"
            && let Some(stop) = (found.end..end)
                .find(|&i| matches!(tokens[i].lower.as_str(), "(" | ")" | ";" | "but" | "which" | "who" | "whose"))
        {
            let before = last_subject.unwrap_or(Subject::Unknown);
            cues.push(Found { start: stop, end: stop, cue: Cue::Subject(before), phrase: "", backward: false });
        }
    }
    cues
}

/// Can this cue govern the words just before it?
fn governs_backward(found: &Found) -> bool {
    matches!(found.cue, Cue::Subject(_)) && found.backward
}

fn ends_sentence(token: &Token) -> bool {
    !token.word && matches!(token.lower.as_str(), "." | "!" | "?" | ";")
}

fn bullet(token: &Token) -> bool {
    !token.word && matches!(token.lower.as_str(), "-" | "•" | "*" | "–" | "·" | "▪" | "◦")
}

/// Token ranges of the lines of a chunk.
fn lines(tokens: &[Token]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=tokens.len() {
        if i == tokens.len() || tokens[i].line_start {
            if start < i {
                out.push((start, i));
            }
            start = i;
        }
    }
    out
}

/// A heading's words ("Media contact", "About Acme", "Disqualifiers:"): a short line with no
/// sentence-ending period that is not a bullet, or the label before a colon that opens a line.
fn heading_words(tokens: &[Token], (start, end): (usize, usize)) -> Option<(String, usize)> {
    let first = tokens.get(start)?;
    if bullet(first) || !first.word {
        return None;
    }
    let colon = (start..end).find(|&i| tokens[i].lower == ":");
    let label_end = colon.unwrap_or(end);
    // "6. Competitors", "3) Who buys", "2.3 Who to call": the number is no word of the heading.
    let words: Vec<&str> = tokens[start..label_end]
        .iter()
        .filter(|t| t.word)
        .map(|t| t.lower.as_str())
        .skip_while(|w| w.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .collect();
    let ends_with_period = tokens[start..end].last().is_some_and(|t| matches!(t.lower.as_str(), "." | "!" | "?"));
    let short = words.len() <= 6;
    let heading = match colon {
        Some(_) => short,
        None => short && !ends_with_period && end - start <= 10,
    };
    heading.then(|| (words.join(" "), label_end))
}

/// The section a heading opens, and whether it is a footer (which runs to the end).
fn section_of(heading: &str) -> Option<(Cue, bool)> {
    let matches = |list: &[&str]| list.iter().any(|h| heading == *h || heading.starts_with(&format!("{h} ")));
    let words: Vec<&str> = heading.split(' ').collect();
    let has = |list: &[&str]| words.iter().any(|w| list.iter().any(|l| super::word_matches(l, w)));
    if matches(FOOTER_HEADINGS) {
        return Some((Cue::Subject(Subject::Other), true));
    }
    // "Do not work", "Who not to call", "Avoid these", "Red flags".
    if matches(DISQUALIFY_HEADINGS)
        || has(&["not", "avoid", "disqualifier", "disqualify", "exclusion", "never", "dq", "skip"])
        || heading.contains("red flag")
        || ["leave alone", "stay away", "walk away", "pass on", "steer clear", "do not", "don t", "won t", "say no"]
            .iter()
            .any(|p| heading.contains(p))
    {
        return Some((Cue::Disqualify, false));
    }
    if matches(OTHER_PARTY_HEADINGS)
        || has(&[
            "competitor",
            "competition",
            "competitive",
            "rival",
            "alternative",
            "investor",
            "partner",
            "against",
            "vs",
        ])
    {
        return Some((Cue::Subject(Subject::Other), false));
    }
    // "Our target account", "Built for", "Who buys", "Ideal customers".
    let target_words = [
        "target",
        "ideal",
        "icp",
        "customer",
        "buyer",
        "persona",
        "segment",
        "fit",
        "sweet",
        "buys",
        "prospect",
        "sell",
        "serve",
        "signs",
        "decides",
        "decision",
        "buying",
        "territory",
        "territories",
    ];
    // "Built for", "Who it's for" (not "What we're looking for").
    let for_whom = words.len() >= 2
        && words[words.len() - 1] == "for"
        && matches!(
            words[words.len() - 2],
            "built" | "designed" | "made" | "ideal" | "perfect" | "tailored" | "s" | "is"
        );
    if matches(TARGET_HEADINGS) || has(&target_words) || for_whom {
        return Some((Cue::Subject(Subject::Target), false));
    }
    if matches(JOB_HEADINGS) {
        return None;
    }
    // "About Acme", "Who we are": the author's own.
    if matches(SELLER_HEADINGS) {
        return Some((Cue::Subject(Subject::Seller), false));
    }
    None
}

/// Sentence ranges: ends at `.`, `!`, `?` and `;`, at a bullet or heading line, and at a line
/// after a short line (a paragraph's last).
fn sentences(tokens: &[Token], headings: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut line_words = 0;
    let mut previous_line_words = usize::MAX;
    for i in 0..tokens.len() {
        let token = &tokens[i];
        if token.line_start && i > start {
            let breaks = bullet(token)
                || previous_line_words.min(line_words) <= 6
                || headings.iter().any(|(s, _)| *s == i)
                || tokens[i - 1].lower == ":";
            previous_line_words = line_words;
            line_words = 0;
            if breaks {
                out.push((start, i));
                start = i;
            }
        } else if token.line_start {
            previous_line_words = line_words;
            line_words = 0;
        }
        if token.word {
            line_words += 1;
        }
        if ends_sentence(token) {
            out.push((start, i + 1));
            start = i + 1;
        }
    }
    if start < tokens.len() {
        out.push((start, tokens.len()));
    }
    out
}

/// Reads a chunk's cues.
pub(super) fn analyse(tokens: &[Token], names: &Names, first_chunk: bool) -> Context {
    let n = tokens.len();
    let mut context = Context {
        subjects: vec![Subject::Unknown; n],
        disqualified: vec![false; n],
        sentence_of: vec![(0, 0); n],
        untypical: false,
        job_title: None,
        job_posting: false,
    };

    // Sections: a heading sets whose the lines after it are; a contact footer runs to the end.
    let mut section: Vec<Option<Cue>> = vec![None; n];
    let mut headings = Vec::new();
    let mut current: Option<Cue> = None;
    let mut footer = false;
    let others = &names.others;
    // A heading on a line of its own holds until the next heading; a label that opens a
    // paragraph ("Who we sell to: our customers are ...") holds for that paragraph.
    let mut standing: Option<Cue> = None;
    let lines = lines(tokens);
    for &line in &lines {
        if !footer && tokens[line.0].paragraph_start {
            current = standing;
        }
        if !footer && let Some((words, label_end)) = heading_words(tokens, line) {
            headings.push((line.0, label_end));
            // "About ShopStack" in a battlecard is about the competitor.
            let about_other = words
                .strip_prefix("about ")
                .is_some_and(|name| others.iter().any(|o| name.split(' ').next() == Some(o)));
            let opened = if about_other { Some((Cue::Subject(Subject::Other), false)) } else { section_of(&words) };
            let (cue, is_footer) = opened.map_or((None, false), |(cue, f)| (Some(cue), f));
            let inline = tokens[label_end..line.1].iter().any(|t| t.word);
            // A label that says nothing of whose ("Keep this in your head:", "Day 1:") leaves the
            // section as it was; a heading of its own starts a new topic.
            if cue.is_some() || !inline {
                current = cue;
            }
            footer = is_footer;
            if !inline {
                standing = cue;
            }
        }
        section[line.0..line.1].iter_mut().for_each(|s| *s = current);
    }

    // A job posting's title line is the job's ("Customer Success Manager, Latin America").
    // A job posting says two of its phrases ("The role", "Requirements", "reports to"); "We
    // offer a free pilot" alone is no posting.
    let job_cues: HashSet<&str> = (0..n)
        .filter(|&i| i == 0 || !tokens[i - 1].word || tokens[i].line_start)
        .flat_map(|i| JOB_POSTING_CUES.iter().copied().filter(move |c| cue_at(tokens, i, c).is_some()))
        .collect();
    let job_posting = job_cues.len() >= 2;
    context.job_posting = job_posting;
    // Its first line, when short, is the title ("Enterprise Account Executive — DACH (Frankfurt
    // or remote in Germany)"); only the first chunk starts with it.
    if job_posting
        && first_chunk
        && let Some(&(start, line_end)) = lines.first()
    {
        let words = tokens[start..line_end].iter().filter(|t| t.word).count();
        let sentence = tokens[line_end - 1].lower == ".";
        if words <= 14 && !sentence {
            section[start..line_end].iter_mut().for_each(|s| *s = Some(Cue::Subject(Subject::Other)));
            context.job_title = Some((start, line_end));
        }
    }

    // "Tomás Riedel, Chief Executive Officer: Thanks, Dana": a transcript's speaker label names
    // a speaker, not a buyer.
    let speaker_labels: Vec<(usize, usize)> = lines
        .iter()
        .filter_map(|&(start, end)| {
            let colon = (start..end).find(|&i| tokens[i].lower == ":")?;
            let comma = (start..colon).find(|&i| tokens[i].lower == ",")?;
            let name: Vec<&Token> = tokens[start..comma].iter().filter(|t| t.word).collect();
            let label_words = tokens[start..colon].iter().filter(|t| t.word).count();
            ((2..=3).contains(&name.len()) && name.iter().all(|t| capitalised(t)) && label_words <= 10)
                .then_some((start, colon + 1))
        })
        .collect();
    let sentences = sentences(tokens, &headings);
    // Every clause naming such a client, up to its colon or semicolon, is about the client.
    let mut about_untypical_client: Vec<(usize, usize)> = Vec::new();
    for &(start, end) in &sentences {
        if let Some(named) =
            (start..end).rev().find(|&i| capitalised(&tokens[i]) && names.untypical_clients.contains(&tokens[i].lower))
        {
            context.untypical = true;
            about_untypical_client.push((start, clause_end(tokens, named, end)));
        }
    }
    let mut previous = Subject::Unknown;
    // Inside an answer to a question about the buyers, until the next paragraph.
    let mut answer_about_buyers = false;
    // "Q: Who should I politely exit? A: Banks and insurers.": the answer is excluded.
    let mut answer_excluded = false;
    let mut excluding_question = false;
    for (start, end) in sentences {
        let question = end > start && tokens[end - 1].lower == "?";
        if tokens[start].paragraph_start && !answers_question(tokens, start) {
            answer_excluded = false;
        }
        if answers_question(tokens, start) {
            answer_excluded = excluding_question;
        }
        if answer_excluded {
            context.disqualified[start..end].iter_mut().for_each(|d| *d = true);
        }
        if question {
            excluding_question = tokens[start..end].iter().any(|t| {
                matches!(
                    t.lower.as_str(),
                    "exit" | "skip" | "avoid" | "not" | "never" | "disqualify" | "decline" | "pass"
                )
            });
        }
        if tokens[start].paragraph_start && !answers_question(tokens, start) {
            answer_about_buyers = false;
        }
        let opens_answer = answers_question(tokens, start) && previous == Subject::Target;
        context.sentence_of[start..end].iter_mut().for_each(|s| *s = (start, end));
        let mut found = sentence_cues(tokens, (start, end), names, previous, answer_about_buyers);
        answer_about_buyers |= opens_answer;
        if answers_question(tokens, start) && !opens_answer {
            answer_about_buyers = false;
        }
        // "MSSPs that watch over the networks of clinics and schools", "banks that serve small
        // businesses": what the customers serve is not the customers.
        if let Some(relative) = (start..end).find(|&i| {
            matches!(tokens[i].lower.as_str(), "that" | "who" | "which")
                && tokens.get(i + 1).is_some_and(|t| SERVICE_VERBS.iter().any(|v| super::word_matches(v, &t.lower)))
        }) && found.iter().any(|f| f.cue == Cue::Subject(Subject::Target) && f.end <= relative)
        {
            found.push(Found {
                start: relative,
                end: relative + 2,
                cue: Cue::Subject(Subject::Other),
                phrase: "",
                backward: false,
            });
        }
        // "Acme is a cybersecurity company, and so are our customers": the description is theirs too.
        if (start..end).any(|i| cue_at(tokens, i, "so are our customers").is_some()) {
            found.retain(|f| !matches!(f.cue, Cue::Subject(_)));
            found.push(Found { start, end: start, cue: Cue::Subject(Subject::Target), phrase: "", backward: false });
        }
        // Nearest means nearest in the text: a cue that ends a "for" phrase is pushed after the
        // cues of that phrase.
        found.sort_by_key(|f| (f.start, f.end));
        let cues: Vec<(usize, usize, Cue)> = found.iter().map(|f| (f.start, f.end, f.cue)).collect();
        let subject_cues: Vec<(usize, usize, Subject, bool)> = found
            .iter()
            .filter_map(|f| match f.cue {
                Cue::Subject(subject) => Some((f.start, f.end, subject, governs_backward(f))),
                _ => None,
            })
            .collect();
        // Where the author's name opens the sentence ("Ardmore expects Heads of HSE to drive
        // evaluations"), a buyer cue after a word says more of it than the name before.
        let opener_at =
            found.iter().find(|f| f.phrase == "opener" && f.cue == Cue::Subject(Subject::Seller)).map(|f| f.start);
        let authors = authors_sentence(tokens, (start, end), names);
        for at in start..end {
            // The nearest cue before the word governs it ("we are a SaaS vendor that sells to
            // banks"); with none, a cue shortly after it ("Hospitals are our best customers").
            let nearest_before = subject_cues.iter().rev().find(|c| c.1 <= at);
            let before = nearest_before.map(|c| c.2).filter(|s| *s != Subject::Unknown);
            let after = || {
                subject_cues
                    .iter()
                    .find(|c| c.0 > at && words_between(tokens, at, c.0) <= 12)
                    // "As Customer Success Manager you will own these accounts": a new subject
                    // between them ends the reach.
                    .filter(|c| {
                        !tokens[at..c.0]
                            .iter()
                            .any(|t| matches!(t.lower.as_str(), "you" | "we" | "they" | "i" | "whose"))
                    })
                    .filter(|c| c.3)
                    .map(|c| c.2)
            };
            let from_section = match section[at] {
                Some(Cue::Subject(subject)) => Some(subject),
                _ => None,
            };
            let governed_by_opener = opener_at.is_some_and(|o| nearest_before.is_some_and(|c| c.0 == o));
            context.subjects[at] = if governed_by_opener && after() == Some(Subject::Target) {
                Subject::Target
            } else {
                before.or_else(after).or(from_section).unwrap_or(Subject::Unknown)
            };
            // Under "Competitors", "Partners" or a footer, even "for" and "customers" are the
            // other party's ("Their pitch is one vendor for retail media"), unless the author
            // speaks.
            if from_section == Some(Subject::Other) && !authors {
                context.subjects[at] = Subject::Other;
            }
            if context.job_title.is_some_and(|(s, e)| (s..e).contains(&at))
                || speaker_labels.iter().any(|(s, e)| (*s..*e).contains(&at))
            {
                context.subjects[at] = Subject::Other;
            }
            if section[at] == Some(Cue::Disqualify) {
                context.disqualified[at] = true;
            }
        }
        if let Some(&(_, clause_end)) = about_untypical_client.iter().find(|(s, _)| *s == start) {
            context.subjects[start..clause_end].iter_mut().for_each(|s| *s = Subject::Other);
        }
        for &(cue_start, _, _) in cues.iter().filter(|c| c.2 == Cue::Untypical) {
            // "A development bank moved its payroll to us. It is an exception.": the sentence
            // before tells the untypical client's story.
            let opener = tokens.get(opening(tokens, (start, end))..cue_start).and_then(|r| r.iter().find(|t| t.word));
            if opener.is_some_and(|t| matches!(t.lower.as_str(), "it" | "this" | "that" | "she" | "he" | "they"))
                && start > 0
            {
                let (previous_start, _) = context.sentence_of[start - 1];
                context.subjects[previous_start..start].iter_mut().for_each(|s| *s = Subject::Other);
                context.untypical = true;
            }
            // "Northwind is not a typical customer: most of our customers are ...": the clause
            // that says so is about the client, what follows a colon is not. (The document
            // counts as telling an untypical client's story only where it names the client.)
            let clause_end = clause_end(tokens, cue_start, end);
            context.subjects[start..clause_end].iter_mut().for_each(|s| *s = Subject::Other);
            // "One exception worth mentioning: our largest customer is a telecom operator": a
            // label that opens the sentence announces the client after its colon.
            if clause_end < end
                && tokens[clause_end].lower == ":"
                && words_between(tokens, opening(tokens, (start, end)), cue_start) <= 2
                && tokens[cue_start..clause_end].iter().filter(|t| t.word).count() <= 5
            {
                context.subjects[clause_end..end].iter_mut().for_each(|s| *s = Subject::Other);
                context.untypical = true;
            }
        }
        for exclusion in found.iter().filter(|f| f.cue == Cue::Disqualify) {
            let (cue_start, cue_end) = (exclusion.start, exclusion.end);
            // "Pharma companies: be polite and move on": what comes before the instruction, back
            // to a turn ("We sell to hospitals but pharma is not a fit"); a verb with an object
            // ("skip pharma", "not for retail") excludes only what follows it.
            // ("Skip them." and "Politely decline." have no object: they refer back.)
            let has_object = tokens[cue_end..end]
                .iter()
                .any(|t| t.word && !matches!(t.lower.as_str(), "them" | "it" | "those" | "these"));
            let leading = LEADING_DISQUALIFY_CUES.contains(&exclusion.phrase) && has_object;
            if !leading {
                let from = (start..cue_start).rev().find(|&i| turns(&tokens[i])).map_or(start, |i| i + 1);
                context.disqualified[from..cue_start].iter_mut().for_each(|d| *d = true);
            }
            // And after it up to a turn ("not a fit for retail, but great for grocers").
            let mut at = cue_end;
            while at < end && !turns(&tokens[at]) {
                context.disqualified[at] = true;
                at += 1;
            }
            // "They are not a fit.", "... but they are not our buyer", "Be polite and move on.":
            // the sentence before is the one excluded.
            let before: Vec<&str> =
                tokens[start..cue_start].iter().filter(|t| t.word).map(|t| t.lower.as_str()).collect();
            let refers_back =
                |w: &&str| matches!(*w, "they" | "these" | "those" | "such" | "this" | "that" | "it" | "both" | "them");
            let pronoun = before.first().is_some_and(refers_back) || before.iter().rev().take(3).any(refers_back);
            let bare_instruction = !before.is_empty()
                && before.iter().all(|w| {
                    matches!(
                        *w,
                        "be" | "polite"
                            | "politely"
                            | "and"
                            | "just"
                            | "then"
                            | "simply"
                            | "please"
                            | "so"
                            | "courteous"
                    )
                });
            let in_heading = headings.iter().any(|&(s, e)| (s..e).contains(&cue_start));
            if (pronoun || bare_instruction) && !leading && !in_heading && start > 0 {
                let (previous, _) = context.sentence_of[start - 1];
                context.disqualified[previous..start].iter_mut().for_each(|d| *d = true);
            }
        }
        let first = opening(tokens, (start, end));
        // Whose the sentence is: the cue its opening word is, or what governs that word.
        let opener = (first..end).find(|&i| tokens[i].word);
        previous = found
            .iter()
            .find_map(|f| match f.cue {
                Cue::Subject(subject) if Some(f.start) == opener => Some(subject),
                _ => None,
            })
            .or_else(|| opener.map(|i| context.subjects[i]))
            .unwrap_or(Subject::Unknown);
    }
    context
}

/// The end of the clause that runs through token `at`: a colon, semicolon or the sentence's end.
fn clause_end(tokens: &[Token], at: usize, end: usize) -> usize {
    (at..end).find(|&i| matches!(tokens[i].lower.as_str(), ":" | ";")).unwrap_or(end)
}

/// Words that end an exclusion's reach: what follows is wanted again.
fn turns(token: &Token) -> bool {
    matches!(token.lower.as_str(), "but" | "instead" | "rather" | "whereas" | "however" | "focus" | ";" | ".")
}

/// Words from `from` up to `to`; none when `to` comes first.
fn words_between(tokens: &[Token], from: usize, to: usize) -> usize {
    tokens.get(from..to).map_or(0, |range| range.iter().filter(|t| t.word).count())
}

#[cfg(test)]
mod tests {
    use super::super::tokenize;
    use super::*;

    fn subject_of(text: &str, word: &str) -> Subject {
        let tokens = tokenize(text);
        let context = analyse(&tokens, &document_names(std::iter::once(tokens.clone())), true);
        let at = tokens.iter().position(|t| t.lower == word).unwrap_or_else(|| panic!("{word} in {text}"));
        context.subject(at)
    }

    fn disqualified(text: &str, word: &str) -> bool {
        let tokens = tokenize(text);
        let context = analyse(&tokens, &document_names(std::iter::once(tokens.clone())), true);
        let at = tokens.iter().position(|t| t.lower == word).unwrap();
        context.disqualified(at)
    }

    #[test]
    fn the_nearest_cue_before_a_word_says_whose_it_is() {
        let text = "We are a cybersecurity company that sells to hospitals.";
        assert_eq!(subject_of(text, "cybersecurity"), Subject::Seller);
        assert_eq!(subject_of(text, "hospitals"), Subject::Target);
        let text = "Unlike Acme, a fintech, we focus on insurers.";
        assert_eq!(subject_of(text, "fintech"), Subject::Other);
        assert_eq!(subject_of(text, "insurers"), Subject::Target);
        assert_eq!(subject_of("Headquartered in Berlin, we sell across the Nordics.", "berlin"), Subject::Seller);
        assert_eq!(subject_of("Hospitals are our best customers.", "hospitals"), Subject::Target);
        assert_eq!(subject_of("Hospitals love the dashboard.", "hospitals"), Subject::Unknown);
        assert_eq!(subject_of("The round was led by Foo Ventures, a fintech fund.", "fintech"), Subject::Other);
    }

    #[test]
    fn headings_set_whose_the_lines_after_them_are() {
        let text = "Acme launches triage for hospitals\n\nAbout Acme\nAcme is a SaaS vendor in Austin.\n\nMedia contact: Jane Roe, Director of Communications\njane@acme.example";
        assert_eq!(subject_of(text, "hospitals"), Subject::Target);
        assert_eq!(subject_of(text, "saas"), Subject::Seller);
        assert_eq!(subject_of(text, "director"), Subject::Other);
        let text = "Disqualifiers\n- Retailers\n- Agencies under 10 people\n\nGood fit\n- Banks";
        assert!(disqualified(text, "retailers"));
        assert!(!disqualified(text, "banks"));
    }

    #[test]
    fn instructions_exclude_what_they_refer_to() {
        assert!(disqualified("Pharma companies: be polite and move on.", "pharma"));
        assert!(disqualified("Pharma firms ask for demos. They are not a fit.", "pharma"));
        assert!(!disqualified("Pharma firms ask for demos. They are not a fit. Banks buy.", "banks"));
        assert!(disqualified("Not a fit for retail, but great for grocers.", "retail"));
        assert!(!disqualified("Not a fit for retail, but great for grocers.", "grocers"));
    }

    #[test]
    fn an_untypical_client_is_someone_else() {
        let tokens = tokenize("Northwind, a mine in Chile, is not a typical customer for us.");
        let context = analyse(&tokens, &document_names(std::iter::once(tokens.clone())), true);
        assert!(context.untypical);
        assert_eq!(context.subject(tokens.iter().position(|t| t.lower == "chile").unwrap()), Subject::Other);
    }

    #[test]
    fn languages_are_not_places() {
        let tokens = tokenize("Support is available in English and Spanish.");
        let context = analyse(&tokens, &document_names(std::iter::once(tokens.clone())), true);
        assert!(context.about_languages(&tokens, tokens.iter().position(|t| t.lower == "spanish").unwrap()));
        let tokens = tokenize("We sell to Spanish retailers.");
        let context = analyse(&tokens, &document_names(std::iter::once(tokens.clone())), true);
        assert!(!context.about_languages(&tokens, tokens.iter().position(|t| t.lower == "spanish").unwrap()));
    }
}
