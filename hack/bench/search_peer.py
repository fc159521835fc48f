"""The seed's search endpoint as a Python user would write it, the peer of the REST search
benchmark (apiserver/benches/search.rs): FastAPI on uvicorn, the query embedded by
sentence-transformers (PyTorch, all-MiniLM-L6-v2, the seed's model) and a pgvector query through
psycopg over one table of every customer's chunks with one HNSW index (pgvector's defaults),
filtered by customer. It takes the seed's request `{customer_id, query, top_k}` and answers
`{query, results: [{document_id, filename, chunk_index, text, score}]}`, as Prospector does.

usage:
  search_peer.py setup DATABASE_URL
      copies the live chunks of Prospector's tables into the peer's own table and builds its
      index; prints one JSON line {"rows", "seconds"}
  search_peer.py serve MODEL_DIR DATABASE_URL PORT WORKERS THREADS
      serves POST /api/knowledge/search with WORKERS uvicorn processes, each running the model
      on THREADS threads
"""

import ctypes
import json
import os
import signal
import sys
import threading
import time

PEER_TABLE = "peer_chunks"


def setup(database_url):
    import psycopg

    started = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute(f"DROP TABLE IF EXISTS {PEER_TABLE}")
        conn.execute(
            f"CREATE TABLE {PEER_TABLE} (id bigserial PRIMARY KEY, customer_id bigint NOT NULL,"
            " document_id text NOT NULL, filename text NOT NULL, chunk_index int NOT NULL,"
            " content text NOT NULL, embedding vector(384) NOT NULL)"
        )
        conn.execute(
            f"INSERT INTO {PEER_TABLE} (customer_id, document_id, filename, chunk_index, content, embedding)"
            " SELECT c.customer_id, d.document_id, d.filename, c.chunk_index, c.content, c.embedding"
            "   FROM document_chunks c JOIN knowledge_documents d ON d.id = c.document_id"
            "  WHERE d.deleted_at IS NULL ORDER BY c.id"
        )
        conn.execute(f"CREATE INDEX ON {PEER_TABLE} USING hnsw (embedding vector_cosine_ops)")
        conn.execute(f"ANALYZE {PEER_TABLE}")
        rows = conn.execute(f"SELECT count(*) FROM {PEER_TABLE}").fetchone()[0]
    print(json.dumps({"rows": rows, "seconds": time.perf_counter() - started}))


def make_app():
    import psycopg
    import torch
    from fastapi import FastAPI
    from pydantic import BaseModel
    from sentence_transformers import SentenceTransformer

    # A worker of a killed uvicorn master dies with it (the benchmark kills the master).
    ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)
    torch.set_num_threads(int(os.environ["PEER_THREADS"]))
    model = SentenceTransformer(os.environ["PEER_MODEL_DIR"], device="cpu")
    model.max_seq_length = 256
    model.encode(["warm up"], normalize_embeddings=True)
    database_url = os.environ["PEER_DATABASE_URL"]
    local = threading.local()

    def connection():
        # One connection per thread of FastAPI's thread pool, kept open.
        if getattr(local, "conn", None) is None:
            local.conn = psycopg.connect(database_url, autocommit=True)
        return local.conn

    class SearchBody(BaseModel):
        customer_id: int
        query: str
        top_k: int = 5

    app = FastAPI()

    @app.post("/api/knowledge/search")
    def search(body: SearchBody):
        vector = model.encode([body.query], normalize_embeddings=True)[0]
        literal = "[" + ",".join(f"{x:.7g}" for x in vector) + "]"
        rows = connection().execute(
            f"SELECT document_id, filename, chunk_index, content, 1 - (embedding <=> %s::vector)"
            f"  FROM {PEER_TABLE} WHERE customer_id = %s ORDER BY embedding <=> %s::vector LIMIT %s",
            (literal, body.customer_id, literal, body.top_k),
        ).fetchall()
        return {
            "query": body.query,
            "results": [
                {"document_id": r[0], "filename": r[1], "chunk_index": r[2], "text": r[3], "score": r[4]}
                for r in rows
            ],
        }

    return app


def serve(model_dir, database_url, port, workers, threads):
    import uvicorn

    os.environ.update(PEER_MODEL_DIR=model_dir, PEER_DATABASE_URL=database_url, PEER_THREADS=str(threads))
    uvicorn.run(
        "search_peer:make_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        workers=workers,
        log_level="warning",
        app_dir=os.path.dirname(os.path.abspath(__file__)),
    )


def main():
    if sys.argv[1:2] == ["setup"]:
        setup(sys.argv[2])
    elif sys.argv[1:2] == ["serve"]:
        model_dir, database_url, port, workers, threads = sys.argv[2:7]
        serve(model_dir, database_url, int(port), int(workers), int(threads))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
