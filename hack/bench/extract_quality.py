#!/usr/bin/env python3
"""Extraction quality: word-level F1 of `prospector-embedder extract` against poppler's
`pdftotext` (the reference) for every fixture PDF whose reference has at least 20 words by
Python's `\\w+` runs (which split Arabic words at vowel marks, so the Arabic file counts).

Words are runs of letters, digits and combining marks (so an Arabic word keeps its vowel
marks), case-folded, counted as a multiset: precision is the share of our words that the
reference has, recall the share of the reference's words we have, F1 their harmonic mean.
Reversed right-to-left words, dropped ligature letters, presentation forms and words torn apart
by layout all lower it; the order of words and lines does not.

pdftotext writes right-to-left runs in visual order, between U+202B and U+202C marks; the
script reverses each right-to-left word of such a run into logical (reading) order, which is
the order Prospector emits and search needs. Prints a Markdown table and a JSON summary line.

usage: extract_quality.py EMBEDDER PDFTOTEXT PDF...
"""

import collections
import json
import re
import subprocess
import sys
import unicodedata


def is_word_char(ch):
    return ch.isalnum() or ch == "_" or unicodedata.category(ch).startswith("M")


def is_right_to_left(word):
    return any(unicodedata.bidirectional(ch) in ("R", "AL") for ch in word)


def words(text, visual_rtl=False):
    found, current = [], []
    for ch in text + " ":
        if is_word_char(ch):
            current.append(ch)
        elif current:
            found.append("".join(current))
            current = []
    if visual_rtl:
        found = [w[::-1] if is_right_to_left(w) else w for w in found]
    return collections.Counter(w.casefold() for w in found)


def main():
    embedder, pdftotext, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    rows = []
    for path in files:
        reference = subprocess.run([pdftotext, "-q", "-enc", "UTF-8", path, "-"], capture_output=True, text=True)
        expected = words(reference.stdout, visual_rtl="\u202b" in reference.stdout)
        if reference.returncode != 0 or len(re.findall(r"\w+", reference.stdout)) < 20:
            continue
        ours = subprocess.run([embedder, "extract", path], capture_output=True, text=True)
        got = words(ours.stdout) if ours.returncode == 0 else collections.Counter()
        common = sum((got & expected).values())
        precision = common / max(sum(got.values()), 1)
        recall = common / sum(expected.values())
        f1 = 2 * precision * recall / (precision + recall) if common else 0.0
        rows.append((path, sum(expected.values()), precision, recall, f1))
    print("| file | reference words | precision | recall | word F1 |")
    print("|---|---|---|---|---|")
    for path, count, precision, recall, f1 in rows:
        name = path.split("py-pdf-sample-files/")[-1]
        print(f"| {name} | {count:,} | {precision:.3f} | {recall:.3f} | {f1:.3f} |")
    mean = sum(r[4] for r in rows) / len(rows)
    worst = min(rows, key=lambda r: r[4])
    print(f"\n{len(rows)} files; mean word F1 {mean:.3f}; lowest {worst[4]:.3f} ({worst[0].split('/')[-1]})")
    print(json.dumps({"files": len(rows), "mean_f1": mean, "min_f1": worst[4],
                      "per_file": {r[0].split("py-pdf-sample-files/")[-1]: round(r[4], 4) for r in rows}}))


if __name__ == "__main__":
    main()
