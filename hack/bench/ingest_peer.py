"""The seed's ingestion pipeline as a Python user would write it, the peer of the ingestion
benchmark (operator/benches/ingest.rs): text from pypdf (PDF), python-docx (DOCX) or the file
itself, chunks of at most 220 tokens (model tokens, 40 overlapping), vectors from
sentence-transformers (PyTorch, all-MiniLM-L6-v2, the seed's model), and psycopg inserting each
document's chunks into a pgvector table in one transaction.

The seed stored one vector per document, of its first 256 tokens; that would do a fraction of
the work Prospector does and find nothing past a document's first page, so the peer chunks and
embeds everything, like Prospector.

usage: ingest_peer.py MANIFEST.json MODEL_DIR DATABASE_URL THREADS
prints one JSON line: {"documents", "failed", "chunks", "seconds"}
"""

import io
import json
import sys
import time

import docx
import psycopg
import pypdf
import torch
from sentence_transformers import SentenceTransformer

MAX_TOKENS = 220
OVERLAP = 40


def text_of(path, kind):
    data = open(path, "rb").read()
    if kind == "pdf":
        reader = pypdf.PdfReader(io.BytesIO(data))
        return "\n".join(page.extract_text() or "" for page in reader.pages)
    if kind == "docx":
        document = docx.Document(io.BytesIO(data))
        return "\n".join(p.text for p in document.paragraphs)
    return data.decode("utf-8", errors="replace")


def chunks_of(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = ids["offset_mapping"]
    out, start = [], 0
    while start < len(offsets):
        end = min(start + MAX_TOKENS, len(offsets))
        out.append(text[offsets[start][0] : offsets[end - 1][1]])
        if end == len(offsets):
            break
        start = end - OVERLAP
    return [c for c in out if c.strip()]


def main():
    manifest, model_dir, database_url, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    torch.set_num_threads(threads)
    documents = json.load(open(manifest))
    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = 256
    tokenizer = model.tokenizer
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("DROP TABLE IF EXISTS peer_chunks")
        conn.execute(
            "CREATE TABLE peer_chunks (id bigserial PRIMARY KEY, document text NOT NULL, chunk_index int NOT NULL,"
            " content text NOT NULL, embedding vector(384) NOT NULL)"
        )
        conn.execute("CREATE INDEX ON peer_chunks (document)")
    # Warm up outside the clock, as Prospector's run starts with its model loaded.
    model.encode(["warm up"], normalize_embeddings=True)
    started = time.perf_counter()
    total_chunks, failed = 0, 0
    with psycopg.connect(database_url) as conn:
        for document in documents:
            try:
                text = text_of(document["path"], document["kind"])
            except Exception:  # noqa: BLE001 - a bad file fails the document, not the run
                failed += 1
                continue
            chunks = chunks_of(tokenizer, text)
            if not chunks:
                failed += 1
                continue
            vectors = model.encode(chunks, batch_size=32, normalize_embeddings=True)
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO peer_chunks (document, chunk_index, content, embedding) VALUES (%s, %s, %s, %s::vector)",
                    [
                        (document["name"], i, chunk.replace("\x00", ""), "[" + ",".join(map(str, v.tolist())) + "]")
                        for i, (chunk, v) in enumerate(zip(chunks, vectors))
                    ],
                )
            conn.commit()
            total_chunks += len(chunks)
    seconds = time.perf_counter() - started
    print(json.dumps({"documents": len(documents) - failed, "failed": failed, "chunks": total_chunks, "seconds": seconds}))


if __name__ == "__main__":
    main()
