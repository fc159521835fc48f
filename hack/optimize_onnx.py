#!/usr/bin/env python3
"""Fuses the plain all-MiniLM-L6-v2 export with ONNX Runtime's transformer optimizer: attention
into `Attention`, residual + LayerNorm into `SkipLayerNormalization`, bias + GELU into
`BiasGelu`, and the embeddings into `EmbedLayerNormalization`. The arithmetic is the same fp32
(the embedder's tests hold both files to the sentence-transformers reference); the fused kernels
skip the intermediate tensors. Only the graph-level fusions run (opt_level 0), so the file is
not tied to one execution provider or CPU.

It also writes the mixed-precision graph the CPU embedder runs by default: the fused graph with
the three least sensitive feed-forward MatMuls (layer 5's two, layer 4's second) quantised to
int8 with per-channel weight scales and dynamic activation scales. Each MatMul was measured
alone against the sentence-transformers reference and these three cost the least cosine; the
mix keeps every reference vector at cosine >= 0.9996 (the embedder's tests hold it to 0.999).

Both outputs are deterministic: hack/model.sh pins their sha256.

usage: optimize_onnx.py PLAIN.onnx FUSED.onnx MIXED.onnx
"""

import sys

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers import optimizer

# Weight-name prefixes of the MatMuls quantised in the mixed graph.
INT8_MATMULS = ("encoder.layer.5.intermediate.dense", "encoder.layer.5.output.dense", "encoder.layer.4.output.dense")


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__.strip().splitlines()[-1])
    model = optimizer.optimize_model(sys.argv[1], model_type="bert", num_heads=12, hidden_size=384, opt_level=0)
    fused = model.get_fused_operator_statistics()
    expected = {"Attention": 6, "SkipLayerNormalization": 12, "BiasGelu": 6, "EmbedLayerNormalization": 1}
    for op, count in expected.items():
        if fused.get(op) != count:
            sys.exit(f"expected {count} {op} after fusion, got {fused.get(op)}")
    model.save_model_to_file(sys.argv[2])

    fused_graph = onnx.load(sys.argv[2])
    chosen = [n.name for n in fused_graph.graph.node
              if n.op_type == "MatMul" and len(n.input) > 1 and n.input[1].startswith(INT8_MATMULS)]
    if len(chosen) != len(INT8_MATMULS):
        sys.exit(f"expected {len(INT8_MATMULS)} MatMuls to quantise, found {chosen}")
    quantize_dynamic(sys.argv[2], sys.argv[3], nodes_to_quantize=chosen, per_channel=True,
                     weight_type=QuantType.QInt8, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


if __name__ == "__main__":
    main()
