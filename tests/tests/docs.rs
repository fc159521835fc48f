//! The documentation keeps up with the code: `docs/troubleshooting.md` explains every condition
//! reason the operator can write (and none that no longer exists), and every relative link in
//! the README and `docs/` points at a file that exists.

use std::collections::BTreeSet;
use std::path::Path;

use prospector_tests::hack::repo_root;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The string values of the `pub const`s in `crds/src/conditions.rs`'s `reasons` module.
fn condition_reasons() -> BTreeSet<String> {
    let source = read(&repo_root().join("crds/src/conditions.rs"));
    let start = source.find("pub mod reasons {").expect("a reasons module");
    let end = start + source[start..].find("\n}\n").expect("the module's end");
    source[start..end]
        .lines()
        .filter(|l| l.trim_start().starts_with("pub const "))
        .map(|l| l.split('"').nth(1).expect("a string constant").to_owned())
        .collect()
}

#[test]
fn troubleshooting_explains_every_condition_reason() {
    let reasons = condition_reasons();
    assert!(reasons.len() > 40, "parsed {reasons:?}");
    let guide = read(&repo_root().join("docs/troubleshooting.md"));
    let documented: BTreeSet<String> =
        guide.lines().filter_map(|l| l.strip_prefix("### `")?.strip_suffix('`')).map(str::to_owned).collect();
    let missing: Vec<_> = reasons.difference(&documented).collect();
    assert!(missing.is_empty(), "docs/troubleshooting.md has no section for {missing:?}");
    let stale: Vec<_> = documented.difference(&reasons).collect();
    assert!(stale.is_empty(), "docs/troubleshooting.md explains reasons the code does not have: {stale:?}");
}

#[test]
fn relative_links_in_the_docs_point_at_files_that_exist() {
    let root = repo_root();
    let mut pages = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "md") {
            pages.push(entry.path());
        }
    }
    let mut broken = Vec::new();
    for page in &pages {
        let text = read(page);
        for (i, _) in text.match_indices("](") {
            let target: String = text[i + 2..].chars().take_while(|c| *c != ')').collect();
            let target = target.split('#').next().unwrap_or_default();
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            if !page.parent().unwrap().join(target).exists() {
                broken.push(format!("{}: {target}", page.strip_prefix(&root).unwrap().display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:#?}");
    assert!(pages.len() >= 8, "README and the docs: {pages:?}");
}
