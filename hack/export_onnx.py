#!/usr/bin/env python3
"""Exports all-MiniLM-L6-v2 to a plain fp32 ONNX graph, from model.safetensors and config.json.

No PyTorch: the BERT encoder is written out node by node with the `onnx` package, in the shape
a PyTorch export of `BertModel` has (MatMul + Add projections, Reshape/Transpose heads, scaled
dot-product with an additive mask, LayerNormalization, erf GELU), so ONNX Runtime's own graph
optimisations recognise it. Inputs are `input_ids`, `attention_mask` and `token_type_ids`
(int64, [batch, sequence]); the output is `last_hidden_state` ([batch, sequence, 384]). Pooling
and normalisation are the caller's, as in sentence-transformers.

The output is byte-for-byte deterministic: hack/model.sh pins its sha256.

usage: export_onnx.py MODEL_DIR OUTPUT.onnx
"""

import json
import math
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DTYPES = {"F32": np.float32, "I64": np.int64}


def read_safetensors(path):
    """The tensors of a safetensors file (8-byte header length, JSON header, raw little-endian data)."""
    with open(path, "rb") as f:
        header_len = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_len))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = DTYPES[info["dtype"]]
        tensors[name] = np.frombuffer(data[start:end], dtype=dtype).reshape(info["shape"]).copy()
    return tensors


class Graph:
    def __init__(self):
        self.nodes = []
        self.initializers = []
        self.counter = 0

    def name(self, hint):
        self.counter += 1
        return f"{hint}_{self.counter}"

    def const(self, hint, array):
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type, inputs, hint=None, **attrs):
        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def linear(self, x, weights, prefix):
        # PyTorch stores Linear weights as [out, in]; MatMul wants [in, out].
        w = self.const(f"{prefix}.weight", weights[f"{prefix}.weight"].T.copy())
        b = self.const(f"{prefix}.bias", weights[f"{prefix}.bias"])
        return self.op("Add", [self.op("MatMul", [x, w]), b])

    def layer_norm(self, x, weights, prefix, eps):
        scale = self.const(f"{prefix}.weight", weights[f"{prefix}.weight"])
        bias = self.const(f"{prefix}.bias", weights[f"{prefix}.bias"])
        return self.op("LayerNormalization", [x, scale, bias], axis=-1, epsilon=eps)


def build(model_dir):
    config = json.load(open(f"{model_dir}/config.json"))
    weights = read_safetensors(f"{model_dir}/model.safetensors")
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    head_dim = hidden // heads
    eps = config["layer_norm_eps"]
    assert config["hidden_act"] == "gelu" and config["position_embedding_type"] == "absolute"

    g = Graph()
    # Embeddings: word + absolute position + token type, then LayerNorm.
    word = g.op("Gather", [g.const("word_embeddings", weights["embeddings.word_embeddings.weight"]), "input_ids"])
    seq_len = g.op("Gather", [g.op("Shape", ["input_ids"]), g.const("one", np.array(1, dtype=np.int64))], axis=0)
    positions = g.op("Range", [g.const("zero", np.array(0, dtype=np.int64)), seq_len,
                               g.const("step", np.array(1, dtype=np.int64))])
    positions = g.op("Unsqueeze", [positions, g.const("axis0", np.array([0], dtype=np.int64))])
    position = g.op("Gather", [g.const("position_embeddings", weights["embeddings.position_embeddings.weight"]),
                               positions])
    token_type = g.op("Gather", [g.const("token_type_embeddings", weights["embeddings.token_type_embeddings.weight"]),
                                 "token_type_ids"])
    x = g.op("Add", [g.op("Add", [word, position]), token_type])
    x = g.layer_norm(x, weights, "embeddings.LayerNorm", eps)

    # The additive attention mask: 0 where attended, the float32 minimum where padded (as in
    # transformers), shaped [batch, 1, 1, sequence] to broadcast over heads and queries.
    # The node order (Unsqueeze, Unsqueeze, Cast, Sub, Mul) is PyTorch's, which ONNX Runtime's
    # transformer optimizer matches when it fuses attention.
    mask = g.op("Unsqueeze", ["attention_mask", g.const("axis1", np.array([1], dtype=np.int64))])
    mask = g.op("Unsqueeze", [mask, g.const("axis2", np.array([2], dtype=np.int64))])
    mask = g.op("Cast", [mask], to=TensorProto.FLOAT)
    inverted = g.op("Sub", [g.const("one_f", np.array(1.0, dtype=np.float32)), mask])
    mask_bias = g.op("Mul", [inverted, g.const("min_f", np.array(np.finfo(np.float32).min, dtype=np.float32))])

    split_heads = g.const("split_heads", np.array([0, 0, heads, head_dim], dtype=np.int64))
    merge_heads = g.const("merge_heads", np.array([0, 0, hidden], dtype=np.int64))
    scale = g.const("scale", np.array(math.sqrt(head_dim), dtype=np.float32))
    sqrt2 = g.const("sqrt2", np.array(math.sqrt(2.0), dtype=np.float32))
    one = g.const("one_g", np.array(1.0, dtype=np.float32))
    half = g.const("half", np.array(0.5, dtype=np.float32))

    for layer in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{layer}"
        q = g.op("Reshape", [g.linear(x, weights, f"{p}.attention.self.query"), split_heads])
        k = g.op("Reshape", [g.linear(x, weights, f"{p}.attention.self.key"), split_heads])
        v = g.op("Reshape", [g.linear(x, weights, f"{p}.attention.self.value"), split_heads])
        q = g.op("Transpose", [q], perm=[0, 2, 1, 3])
        k = g.op("Transpose", [k], perm=[0, 2, 3, 1])
        v = g.op("Transpose", [v], perm=[0, 2, 1, 3])
        scores = g.op("Add", [g.op("Div", [g.op("MatMul", [q, k]), scale]), mask_bias])
        probs = g.op("Softmax", [scores], axis=-1)
        context = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        context = g.op("Reshape", [context, merge_heads])
        attended = g.linear(context, weights, f"{p}.attention.output.dense")
        x = g.layer_norm(g.op("Add", [attended, x]), weights, f"{p}.attention.output.LayerNorm", eps)

        h = g.linear(x, weights, f"{p}.intermediate.dense")
        # GELU, exact (erf) form: 0.5 * h * (1 + erf(h / sqrt(2))).
        gelu = g.op("Mul", [g.op("Mul", [h, g.op("Add", [g.op("Erf", [g.op("Div", [h, sqrt2])]), one])]), half])
        out = g.linear(gelu, weights, f"{p}.output.dense")
        x = g.layer_norm(g.op("Add", [out, x]), weights, f"{p}.output.LayerNorm", eps)

    g.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="last_hidden_state"))
    dims = ["batch", "sequence"]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, dims)
              for n in ("input_ids", "attention_mask", "token_type_ids")]
    outputs = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, dims + [hidden])]
    graph = helper.make_graph(g.nodes, "all-MiniLM-L6-v2", inputs, outputs, g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="prospector-export", producer_version="1")
    # IR 8 / opset 17: loadable by every ONNX Runtime since 1.13.
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    model = build(sys.argv[1])
    with open(sys.argv[2], "wb") as f:
        f.write(model.SerializeToString())


if __name__ == "__main__":
    main()
