#!/usr/bin/env python3
"""How much int8 costs each feed-forward MatMul of all-MiniLM-L6-v2: the evidence behind the
three MatMuls hack/optimize_onnx.py quantises in the mixed-precision graph.

Each of the 12 feed-forward MatMuls of the fused graph (model-fused.onnx) is quantised alone,
exactly as hack/optimize_onnx.py quantises its three (dynamic activations, per-channel int8
weights); then the k least costly together (k = 3, 4, 5) and all 12. Every graph embeds the
sentence-transformers reference texts (embedder/tests/fixtures/embeddings/reference.json), each
text alone (its token ids from the file, mean pooling, normalised), and the cost is
1 - the lowest cosine to the reference vectors. Prints Markdown tables.

usage: quantization_sensitivity.py MODEL_DIR REFERENCE.json
"""

import json
import logging
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic


def main():
    logging.disable(logging.WARNING)  # quantize_dynamic's advice to pre-process
    model_dir, reference_path = sys.argv[1], sys.argv[2]
    fused = f"{model_dir}/model-fused.onnx"
    items = json.load(open(reference_path))["items"]
    reference = np.array([item["embedding"] for item in items], dtype=np.float64)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)

    matmuls = {}
    for node in onnx.load(fused).graph.node:
        if node.op_type != "MatMul" or len(node.input) < 2:
            continue
        for layer in range(6):
            for part, name in (("intermediate.dense", "FFN-in"), ("output.dense", "FFN-out")):
                if node.input[1].startswith(f"encoder.layer.{layer}.{part}"):
                    matmuls[f"layer {layer} {name}"] = node.name
    if len(matmuls) != 12:
        sys.exit(f"expected 12 feed-forward MatMuls in {fused}, found {sorted(matmuls)}")

    def cost(nodes):
        with tempfile.TemporaryDirectory() as tmp:
            path = f"{tmp}/quantised.onnx"
            quantize_dynamic(fused, path, nodes_to_quantize=nodes, per_channel=True, weight_type=QuantType.QInt8,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
            options = ort.SessionOptions()
            options.intra_op_num_threads = 2
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            cosines = []
            for item, expected in zip(items, reference):
                ids = np.array([item["input_ids"]], dtype=np.int64)
                feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
                vector = session.run(None, feed)[0].mean(axis=1)[0].astype(np.float64)
                cosines.append(float(vector @ expected / np.linalg.norm(vector)))
            return 1 - min(cosines)

    alone = {name: cost([node]) for name, node in matmuls.items()}
    print("| MatMul quantised alone | 1 - min cosine |")
    print("|---|---|")
    for name, value in alone.items():
        print(f"| {name} | {value:.5f} |")
    ranked = sorted(alone, key=alone.get)
    print()
    print("| quantised together | min cosine |")
    print("|---|---|")
    for k in (3, 4, 5, 12):
        chosen = ranked[:k]
        label = "all 12" if k == 12 else f"the {k} least costly ({', '.join(chosen)})"
        print(f"| {label} | {1 - cost([matmuls[name] for name in chosen]):.4f} |")


if __name__ == "__main__":
    main()
