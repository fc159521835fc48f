#!/usr/bin/env python3
"""How much int8 costs each MatMul group of all-MiniLM-L6-v2 in the int8 graph's scheme (per-row
activation scales, calibrated power-of-two smoothing, per-channel int8 weights; see
hack/optimize_onnx.py, whose functions build every graph here): the evidence behind which
MatMuls model-int8.onnx quantises.

Each of the 24 MatMul groups (per layer: the packed QKV projection, the attention output, the
feed-forward input and output) is quantised alone, then the graph's choice (QKV, attention
output and feed-forward input of every layer: 18), then all 24. Every graph embeds the
sentence-transformers reference texts (embedder/tests/fixtures/embeddings/reference.json), each
text alone, and the cost is 1 - the lowest cosine to the reference vectors. Prints Markdown.

usage: quantization_sensitivity.py MODEL_DIR REFERENCE.json SMOOTHING.json
"""

import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import optimize_onnx  # noqa: E402


def main():
    model_dir, reference_path, smoothing_path = sys.argv[1:4]
    items = json.load(open(reference_path))["items"]
    reference = np.array([item["embedding"] for item in items], dtype=np.float64)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    split = onnx.load(f"{model_dir}/model-fused.onnx")
    optimize_onnx.split_attention(split)
    exponents = json.load(open(smoothing_path))

    def cost(chosen):
        model = onnx.ModelProto()
        model.CopyFrom(split)
        optimize_onnx.quantise_rows(model, exponents, chosen)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        cosines = []
        for item, expected in zip(items, reference):
            ids = np.array([item["input_ids"]], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
            vector = session.run(None, feed)[0].mean(axis=1)[0].astype(np.float64)
            cosines.append(float(vector @ expected / np.linalg.norm(vector)))
        return 1 - min(cosines)

    groups = {"QKV": "Attention_{}_qkv_weight", "attention output": "encoder.layer.{}.attention.output.dense",
              "FFN input": "encoder.layer.{}.intermediate.dense", "FFN output": "encoder.layer.{}.output.dense"}
    print("| 1 - min cosine, each group in int8 alone | " + " | ".join(groups) + " |")
    print("|---|" + "---|" * len(groups))
    totals = dict.fromkeys(groups, 0.0)
    for layer in range(6):
        costs = {name: cost([pattern.format(layer)]) for name, pattern in groups.items()}
        for name, value in costs.items():
            totals[name] += value
        print(f"| layer {layer} | " + " | ".join(f"{costs[name]:.6f}" for name in groups) + " |")
    print("| sum over the layers | " + " | ".join(f"{totals[name]:.6f}" for name in groups) + " |")
    print()
    print("| quantised together | min cosine |")
    print("|---|---|")
    print(f"| the int8 graph's 18 (QKV, attention output, FFN input) | {1 - cost(optimize_onnx.INT8_MATMULS):.6f} |")
    print(f"| all 24 (FFN output too) | {1 - cost(optimize_onnx.INT8_MATMULS + ('output.dense',)):.6f} |")


if __name__ == "__main__":
    main()
