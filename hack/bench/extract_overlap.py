#!/usr/bin/env python3
"""Word overlap of `prospector-embedder extract` with pypdf, per PDF: the Jaccard index of the
two texts' word sets (lower-cased runs of word characters, `\\w+`), over the files both give
text for. Prints a Markdown table, lowest overlap first, and a summary line.

usage: extract_overlap.py BINARY FILE...
"""

import re
import subprocess
import sys

from pypdf import PdfReader


def words(text):
    return set(re.findall(r"\w+", text.lower()))


def pypdf_text(path):
    try:
        return "\n".join(page.extract_text() or "" for page in PdfReader(path).pages)
    except Exception as e:  # noqa: BLE001 - a file pypdf cannot open is reported, not fatal
        print(f"{path}: pypdf: {e}", file=sys.stderr)
        return ""


def main():
    binary, files = sys.argv[1], sys.argv[2:]
    rows, skipped = [], []
    for path in files:
        ours = subprocess.run([binary, "extract", path], capture_output=True, text=True)
        theirs = pypdf_text(path)
        if ours.returncode != 0 or not ours.stdout.strip() or not theirs.strip():
            skipped.append(path)
            continue
        a, b = words(ours.stdout), words(theirs)
        rows.append((len(a & b) / len(a | b), path))
    rows.sort()
    print("| file | word overlap (Jaccard) |")
    print("|---|---|")
    for overlap, path in rows:
        print(f"| {'/'.join(path.split('/')[-2:])} | {overlap:.2f} |")
    exact = sum(1 for overlap, _ in rows if round(overlap, 2) == 1.0)
    print(f"\n{len(rows)} files both give text for; 1.00 on {exact} of them. "
          f"{len(skipped)} skipped (no text from one side): {', '.join(p.split('/')[-1] for p in skipped)}")


if __name__ == "__main__":
    main()
