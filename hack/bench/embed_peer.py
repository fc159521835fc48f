#!/usr/bin/env python3
"""The embedding peer: what a user would otherwise run. Python onnxruntime + tokenizers on the
same plain fp32 ONNX export, mean pooling and normalisation in numpy, batches of 32 in corpus
order padded to the longest, intra-op threads as given. Prints a JSON report like
`prospector-embedder bench`, and writes the vectors when asked (for the accuracy comparison).

usage: embed_peer.py MODEL_DIR MODEL_FILE CORPUS.json THREADS PASSES [VECTORS_OUT.npy]
"""

import json
import sys
import time

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer


def main():
    model_dir, model_file, corpus_path = sys.argv[1], sys.argv[2], sys.argv[3]
    threads, passes = int(sys.argv[4]), int(sys.argv[5])
    texts = json.load(open(corpus_path))
    tokenizer = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    tokenizer.enable_truncation(256)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(f"{model_dir}/{model_file}", options, providers=["CPUExecutionProvider"])

    def embed(batch):
        encodings = tokenizer.encode_batch(batch)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        hidden = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    def run_all():
        return np.concatenate([embed(texts[i:i + 32]) for i in range(0, len(texts), 32)])

    counting = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    counting.enable_truncation(256)
    real_tokens = sum(len(e.ids) for e in counting.encode_batch(texts))
    vectors = run_all()  # warm-up
    start = time.perf_counter()
    for _ in range(passes):
        vectors = run_all()
    seconds = time.perf_counter() - start
    if len(sys.argv) > 6:
        np.save(sys.argv[6], vectors)
    print(json.dumps({
        "chunks": len(texts), "real_tokens": real_tokens, "passes": passes, "seconds": seconds,
        "chunks_per_second": len(texts) * passes / seconds, "tokens_per_second": real_tokens * passes / seconds,
        "device": "cpu",
    }, indent=2))


if __name__ == "__main__":
    main()
