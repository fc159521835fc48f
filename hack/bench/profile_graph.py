#!/usr/bin/env python3
"""Where an ONNX graph of the model spends its time: ONNX Runtime's profiler over the first 96
chunks of the embedding benchmark's corpus, in the batches `prospector-embedder` forms (sorted by
length, at most 2,048 padded tokens), 2 threads, one warm-up round. Prints kernel time per
operator type.

usage: profile_graph.py MODEL_DIR GRAPH.onnx CORPUS.json
"""

import collections
import json
import os
import sys

import numpy as np
import onnxruntime as ort

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import optimize_onnx  # noqa: E402


def batches(lengths, budget=2048):
    """The batches of `embed::plan_batches` (embedder/src/embed.rs), which this mirrors."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    out, current, width = [], [], 0
    for i in order:
        if current and (max(width, lengths[i]) * (len(current) + 1) > budget or lengths[i] * 5 < width * 4):
            out.append(current)
            current, width = [], 0
        width = max(width, lengths[i])
        current.append(i)
    return out + [current] if current else out


def main():
    model_dir, graph, corpus = sys.argv[1:4]
    tokenizer = optimize_onnx.load_tokenizer(f"{model_dir}/tokenizer.json")
    sequences = [e.ids for e in tokenizer.encode_batch(json.load(open(corpus))[:96])]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    options.enable_profiling = True
    options.log_severity_level = 3
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    for _ in range(2):  # warm-up, then the profiled round (both are in the profile; the shares hold)
        for batch in batches([len(s) for s in sequences]):
            width = max(len(sequences[i]) for i in batch)
            ids = np.zeros((len(batch), width), np.int64)
            mask = np.zeros_like(ids)
            for row, i in enumerate(batch):
                ids[row, : len(sequences[i])] = sequences[i]
                mask[row, : len(sequences[i])] = 1
            session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
    profile = session.end_profiling()
    per_op = collections.Counter()
    for event in json.load(open(profile)):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
    os.remove(profile)
    total = sum(per_op.values())
    print("| operator | ms | share |")
    print("|---|---|---|")
    for op, micros in per_op.most_common():
        if micros / total >= 0.005:
            print(f"| {op} | {micros / 1e3:,.0f} | {micros / total:.1%} |")


if __name__ == "__main__":
    main()
