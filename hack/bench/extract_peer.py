#!/usr/bin/env python3
"""The extraction peer: pypdf, text of every page, over the same files and passes as
`prospector-embedder bench-extract`. Prints a JSON report of the same shape.

usage: extract_peer.py PASSES FILE...
"""

import json
import sys
import time

from pypdf import PdfReader


def extract(path):
    reader = PdfReader(path)
    texts = [page.extract_text() or "" for page in reader.pages]
    return len(reader.pages), sum(len(t) for t in texts)


def main():
    passes, files = int(sys.argv[1]), sys.argv[2:]
    pages = characters = 0
    for f in files:
        p, c = extract(f)
        pages += p
        characters += c
    start = time.perf_counter()
    for _ in range(passes):
        for f in files:
            extract(f)
    seconds = time.perf_counter() - start
    print(json.dumps({"documents": len(files), "pages": pages, "characters": characters, "passes": passes,
                      "seconds": seconds, "pages_per_second": pages * passes / seconds}, indent=2))


if __name__ == "__main__":
    main()
