#!/usr/bin/env python3
"""Derives the two graphs the embedder runs from the plain all-MiniLM-L6-v2 export.

`model-fused.onnx` (fp32; the CUDA default): ONNX Runtime's transformer optimizer turns each
layer into `Attention`, two `SkipLayerNormalization` and `BiasGelu`, and the embeddings into
`EmbedLayerNormalization`. Only the graph-level fusions run (opt_level 0), so the file is not tied
to one execution provider or CPU.

`model-int8.onnx` (the CPU default): the fused graph with attention split into one QKV MatMul and
`MultiHeadAttention`, and the 18 MatMuls of the attention projections (QKV, output) and the
feed-forward input in int8 on the CPU's VNNI kernels (`DynamicQuantizeMatMul`). Three choices keep
it at full accuracy and make every text's vector independent of its batchmates:

- *Per-row activation scales.* Each token's row is mapped to [0, 1] by its own minimum and range
  before quantisation, and the product is mapped back (`y = range * (x01 @ W) + min * colsum(W)`).
  Every row then spans exactly [0, 1], so the per-tensor scale `DynamicQuantizeMatMul` computes is
  always 1/255: no batchmate can change another row's rounding.
- *Smoothing* (SmoothQuant, alpha 0.5): each input channel is divided by
  `sqrt(max|activation| / max|weight row|)`, rounded to a power of two, and the weight row
  multiplied by it, which moves the few outlier channels of the LayerNorm outputs into the
  weights. The power-of-two exponents are committed (`hack/model-smoothing.json`), so that the
  file does not depend on the CPU that builds it. `--calibrate` recomputes them from real chunks
  (`hack/model-calibration.json`: the 74 distinct prose chunks of hack/bench-embedder.sh's corpus,
  cut from the fixture PDFs on 2026-11-30), run through the fp32 graph one text at a time.
- *Weights* in int8 per output channel (symmetric, scale max|w| / 127).

The feed-forward output MatMuls stay fp32: `hack/bench-quantization.sh` measures that each of
them costs more cosine in int8 than all 18 MatMuls above together.

Both outputs are deterministic: hack/model.sh pins their sha256.

`hack/bench-int8-variants.sh` passes MATMULS (weight-name substrings, comma-separated) to build
other choices for comparison; hack/model.sh never does.

usage: optimize_onnx.py PLAIN.onnx FUSED.onnx INT8.onnx SMOOTHING.json [MATMULS]
       optimize_onnx.py --calibrate FUSED.onnx CALIBRATION.json TOKENIZER.json SMOOTHING.json
"""

import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from onnxruntime.transformers import optimizer
from tokenizers import Tokenizer

# Weight names (substrings) of the MatMuls the int8 graph quantises: the packed QKV projection
# this script creates, the attention output projection and the feed-forward input.
INT8_MATMULS = ("_qkv_weight", "attention.output.dense", "intermediate.dense")
SMOOTHING_ALPHA = 0.5


def fuse(plain_path):
    model = optimizer.optimize_model(plain_path, model_type="bert", num_heads=12, hidden_size=384, opt_level=0)
    fused = model.get_fused_operator_statistics()
    expected = {"Attention": 6, "SkipLayerNormalization": 12, "BiasGelu": 6, "EmbedLayerNormalization": 1}
    for op, count in expected.items():
        if fused.get(op) != count:
            sys.exit(f"expected {count} {op} after fusion, got {fused.get(op)}")
    return model


def split_attention(model):
    """Each `Attention(x, qkv_weight, qkv_bias, mask)` becomes `MatMul(x, qkv_weight)`, `Split`
    and `MultiHeadAttention(q, k, v, qkv_bias, attention_mask)`: the same arithmetic, with the
    projection exposed as a MatMul that can be quantised."""
    graph = model.graph
    mask = next(n.output[0] for n in graph.node if n.op_type == "Cast" and n.input[0] == "attention_mask")
    nodes = []
    for node in graph.node:
        if node.op_type != "Attention":
            nodes.append(node)
            continue
        name, (x, weight, bias) = node.name, node.input[:3]
        nodes += [
            helper.make_node("MatMul", [x, weight], [f"{name}_qkv"], name=f"{name}_qkv_matmul"),
            helper.make_node("Split", [f"{name}_qkv"], [f"{name}_q", f"{name}_k", f"{name}_v"], name=f"{name}_split",
                             axis=-1),
            helper.make_node("MultiHeadAttention", [f"{name}_q", f"{name}_k", f"{name}_v", bias, mask], list(node.output),
                             name=f"{name}_mha", domain="com.microsoft", num_heads=12),
        ]
    del graph.node[:]
    graph.node.extend(nodes)


def activation_maxima(model, calibration, tokenizer):
    """max |x| per input channel of every weight MatMul, over the calibration texts."""
    weights = {i.name for i in model.graph.initializer}
    inputs = {}
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in weights:
            inputs.setdefault(node.input[0], []).append(node.input[1])
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in inputs:
        probe.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = list(inputs)
    maxima = {}
    for encoding in tokenizer.encode_batch(calibration):
        ids = np.array([encoding.ids], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        for name, value in zip(names, session.run(names, feed)):
            channel_max = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0).astype(np.float64)
            maxima[name] = np.maximum(maxima.get(name, 0.0), channel_max)
    return {weight: maxima[x] for x, ws in inputs.items() for weight in ws}


def smoothing_exponents(model, maxima):
    """The power-of-two smoothing exponent of every input channel of every weight MatMul."""
    weights = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}
    exponents = {}
    for name, channel_max in sorted(maxima.items()):
        ratio = np.maximum(channel_max, 1e-5) / np.maximum(np.abs(weights[name]).max(axis=1), 1e-5)
        exponents[name] = [int(e) for e in np.round(np.log2(np.sqrt(ratio)))]
    return exponents


def quantise_rows(model, exponents, chosen):
    """Replaces every MatMul whose weight name contains one of `chosen` by the per-row int8 form."""
    graph = model.graph
    weights = {i.name: i for i in graph.initializer}
    used = set()
    nodes, new = [], [numpy_helper.from_array(np.array(1e-20, np.float32), "int8_rows_min_range")]
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in weights or not any(c in node.input[1] for c in chosen):
            nodes.append(node)
            continue
        used.add(node.input[1])
        p, x = node.name, node.input[0]
        w = numpy_helper.to_array(weights[node.input[1]]).astype(np.float64)
        smooth = np.exp2(np.array(exponents[node.input[1]], dtype=np.float64))
        w = w * smooth[:, None]
        scale = np.abs(w).max(axis=0) / 127
        scale[scale == 0] = 1
        wq = np.clip(np.round(w / scale), -127, 127)
        colsum = (wq * scale).sum(axis=0)
        new += [
            numpy_helper.from_array((1 / smooth).astype(np.float32), f"{p}_inverse_smoothing"),
            numpy_helper.from_array(wq.astype(np.int8), f"{p}_weight_int8"),
            numpy_helper.from_array(scale.astype(np.float32), f"{p}_weight_scale"),
            numpy_helper.from_array(np.zeros(w.shape[1], np.int8), f"{p}_weight_zero_point"),
            numpy_helper.from_array(colsum.astype(np.float32), f"{p}_weight_column_sum"),
        ]
        nodes += [
            helper.make_node("Mul", [x, f"{p}_inverse_smoothing"], [f"{p}_smoothed"], name=f"{p}_smooth"),
            helper.make_node("ReduceMin", [f"{p}_smoothed"], [f"{p}_row_min"], name=f"{p}_row_min", axes=[-1],
                             keepdims=1),
            helper.make_node("ReduceMax", [f"{p}_smoothed"], [f"{p}_row_max"], name=f"{p}_row_max", axes=[-1],
                             keepdims=1),
            helper.make_node("Sub", [f"{p}_row_max", f"{p}_row_min"], [f"{p}_row_span"], name=f"{p}_row_span"),
            helper.make_node("Max", [f"{p}_row_span", "int8_rows_min_range"], [f"{p}_row_range"], name=f"{p}_row_range"),
            helper.make_node("Sub", [f"{p}_smoothed", f"{p}_row_min"], [f"{p}_shifted"], name=f"{p}_shift"),
            helper.make_node("Div", [f"{p}_shifted", f"{p}_row_range"], [f"{p}_unit_rows"], name=f"{p}_to_unit"),
            helper.make_node("DynamicQuantizeMatMul", [f"{p}_unit_rows", f"{p}_weight_int8", f"{p}_weight_scale",
                                                       f"{p}_weight_zero_point"], [f"{p}_unit_product"],
                             name=f"{p}_int8", domain="com.microsoft"),
            helper.make_node("Mul", [f"{p}_unit_product", f"{p}_row_range"], [f"{p}_scaled"], name=f"{p}_rescale"),
            helper.make_node("Mul", [f"{p}_row_min", f"{p}_weight_column_sum"], [f"{p}_offset"], name=f"{p}_offset"),
            helper.make_node("Add", [f"{p}_scaled", f"{p}_offset"], list(node.output), name=f"{p}_unshift"),
        ]
    kept = [i for i in graph.initializer if i.name not in used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + new)
    return len(used)


def int8_graph(fused, exponents, chosen=INT8_MATMULS):
    """The int8 graph from the fused one; `chosen` names the MatMuls to quantise (the
    sensitivity benchmark varies it)."""
    model = onnx.ModelProto()
    model.CopyFrom(fused)
    split_attention(model)
    count = quantise_rows(model, exponents, chosen)
    return model, count


def calibrate(fused, calibration, tokenizer):
    """Smoothing exponents from the activation maxima of the calibration texts."""
    model = onnx.ModelProto()
    model.CopyFrom(fused)
    split_attention(model)
    return smoothing_exponents(model, activation_maxima(model, calibration, tokenizer))


def load_tokenizer(path):
    tokenizer = Tokenizer.from_file(path)
    tokenizer.enable_truncation(256)
    tokenizer.no_padding()
    return tokenizer


def main():
    usage = __doc__.strip().splitlines()[-2:]
    if len(sys.argv) == 6 and sys.argv[1] == "--calibrate":
        fused_path, calibration_path, tokenizer_path, smoothing_path = sys.argv[2:]
        exponents = calibrate(onnx.load(fused_path), json.load(open(calibration_path)), load_tokenizer(tokenizer_path))
        with open(smoothing_path, "w") as out:
            json.dump(exponents, out, separators=(",", ":"), sort_keys=True)
            out.write("\n")
        return
    if len(sys.argv) not in (5, 6):
        sys.exit("\n".join(usage))
    plain, fused_path, int8_path, smoothing_path = sys.argv[1:5]
    chosen = tuple(sys.argv[5].split(",")) if len(sys.argv) == 6 else INT8_MATMULS
    fuse(plain).save_model_to_file(fused_path)
    exponents = json.load(open(smoothing_path))
    model, count = int8_graph(onnx.load(fused_path), exponents, chosen)
    if chosen == INT8_MATMULS and count != 18:
        sys.exit(f"expected 18 MatMuls to quantise, found {count}")
    print(f"{count} MatMuls in int8", file=sys.stderr)
    onnx.save(model, int8_path)


if __name__ == "__main__":
    main()
