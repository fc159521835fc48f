#!/usr/bin/env python3
"""The sentence-transformers peers of the embedding benchmark: what a Python user runs.

- `torch`: SentenceTransformer on PyTorch, `torch.set_num_threads(THREADS)`.
- `onnx-qint8`: the same model on sentence-transformers' ONNX backend (optimum's export), with
  `export_dynamic_quantized_onnx_model(model, "avx512_vnni", ...)` applied, which is what the
  sentence-transformers documentation offers for CPU speed; ONNX Runtime with THREADS intra-op
  threads.

Both encode the corpus with `encode(batch_size=32, normalize_embeddings=True)` (it sorts by
length and pads each batch to its longest), one warm-up pass then PASSES timed passes. Accuracy
is measured the same way as for `prospector-embedder bench`: the reference texts
(embedder/tests/fixtures/embeddings/reference.json, sentence-transformers' own fp32 vectors),
each embedded alone, and the lowest cosine; and batch independence: the lowest cosine between a
text embedded alone and embedded in one batch with the other reference texts and corpus chunks.
Prints one JSON object.

usage: embed_st_peer.py torch|onnx-qint8 MODEL_DIR CORPUS.json REFERENCE.json THREADS PASSES WORK_DIR
"""

import json
import logging
import os
import shutil
import sys
import time


def main():
    mode, model_dir, corpus_path, reference_path = sys.argv[1:5]
    threads, passes, work = int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
    logging.disable(logging.WARNING)
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from sentence_transformers import SentenceTransformer

    if mode == "torch":
        model = SentenceTransformer(model_dir, device="cpu")
        label = f"sentence-transformers on PyTorch {torch.__version__.split('+')[0]}"
    elif mode == "onnx-qint8":
        import onnxruntime as ort
        from sentence_transformers import export_dynamic_quantized_onnx_model

        # A private copy of the model directory: the export writes onnx/ into it.
        copy = os.path.join(work, "st-onnx-model")
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(model_dir, copy, ignore=shutil.ignore_patterns("*.onnx"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        exported = SentenceTransformer(copy, device="cpu", backend="onnx",
                                       model_kwargs={"export": True, "provider": "CPUExecutionProvider"})
        exported.save_pretrained(copy)
        export_dynamic_quantized_onnx_model(exported, "avx512_vnni", copy)
        model = SentenceTransformer(copy, device="cpu", backend="onnx", model_kwargs={
            "file_name": "onnx/model_qint8_avx512_vnni.onnx", "provider": "CPUExecutionProvider",
            "session_options": options})
        label = f"sentence-transformers ONNX backend, qint8 avx512_vnni (onnxruntime {ort.__version__})"
    else:
        sys.exit(__doc__.strip().splitlines()[-1])

    texts = json.load(open(corpus_path))
    real_tokens = int(model.tokenize(texts)["attention_mask"].sum())

    def encode(batch, size=32):
        return model.encode(batch, batch_size=size, normalize_embeddings=True, convert_to_numpy=True)

    encode(texts)  # warm-up
    start = time.perf_counter()
    for _ in range(passes):
        encode(texts)
    seconds = time.perf_counter() - start

    items = json.load(open(reference_path))["items"]
    reference = np.array([item["embedding"] for item in items], dtype=np.float64)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    alone = np.array([encode([item["text"]])[0] for item in items], dtype=np.float64)
    together = encode([item["text"] for item in items] + texts[:11], size=64)[: len(items)]
    print(json.dumps({
        "peer": label, "chunks": len(texts), "real_tokens": real_tokens, "passes": passes, "seconds": seconds,
        "chunks_per_second": len(texts) * passes / seconds, "tokens_per_second": real_tokens * passes / seconds,
        "min_cosine_to_reference": float((alone * reference).sum(1).min()),
        "min_cosine_alone_vs_batched": float((alone * together).sum(1).min()),
    }, indent=2))


if __name__ == "__main__":
    main()
