#!/usr/bin/env bash
# Embedding benchmark: `prospector-embedder bench` (the default native engine, and the ONNX
# graphs) against the peers a user would otherwise run, on the same corpus and the same number
# of threads, one after the other in one run:
#   - sentence-transformers on PyTorch (the peer the speed target is set against);
#   - sentence-transformers' ONNX backend with export_dynamic_quantized_onnx_model(...,
#     "avx512_vnni"), what its documentation offers for CPU speed (venv: hack/python-embed-peers.sh);
#   - Python onnxruntime + tokenizers on the plain fp32 export (the first round's peer).
# Every configuration reports its accuracy beside its speed: the lowest cosine to
# sentence-transformers' own fp32 vectors (embedder/tests/fixtures/embeddings/reference.json, each
# text embedded alone) and the lowest cosine between a text embedded alone and in a batch.
#
# The corpus is 512 prose chunks of about 220 tokens, cut by the embedder's own chunker from
# the real documents in embedder/tests/fixtures/pdf (table-of-contents chunks dropped).
#
# usage: hack/bench-embedder.sh [THREADS] [PASSES]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

threads="${1:-2}"
passes="${2:-3}"
model_dir="$("$HACK_DIR/model.sh")"
"$HACK_DIR/onnxruntime.sh" >/dev/null
st_python="$("$HACK_DIR/python-embed-peers.sh")"
embedder_bench_setup
corpus="$work/embed-corpus.json"
for pdf in 009-pdflatex-geotopo/GeoTopo-komprimiert.pdf 026-latex-multicolumn/multicolumn.pdf \
  021-pdfa/crazyones-pdfa.pdf 004-pdflatex-4-pages/pdflatex-4-pages.pdf 011-google-doc-document/google-doc-document.pdf; do
  "$bin" chunk "$fixtures/$pdf"
done | "$python" -c '
import json, sys
chunks = [json.loads(line) for line in sys.stdin]
prose = [c["text"] for c in chunks
         if 200 <= c["tokens"] <= 254 and sum(ch.isalpha() for ch in c["text"]) > 0.7 * len(c["text"])]
corpus = [prose[i % len(prose)] for i in range(512)]
json.dump(corpus, open(sys.argv[1], "w"))
print(f"corpus: 512 chunks from {len(prose)} distinct prose chunks", file=sys.stderr)
' "$corpus"

cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "machine: $(nproc) cores, $cpu; threads=$threads passes=$passes" >&2
reference="$REPO_ROOT/embedder/tests/fixtures/embeddings/reference.json"
# The default configuration uses every core; name the thread count only when it differs.
thread_flag=()
[[ "$threads" == "$(nproc)" ]] || thread_flag=(--threads "$threads")
echo "== prospector-embedder bench (default configuration${thread_flag[*]:+, ${thread_flag[*]}})" >&2
"$bin" bench --corpus "$corpus" "${thread_flag[@]}" --repeat "$passes" --reference "$reference" | tee "$work/embed-rust.json"
echo "== sentence-transformers on PyTorch, $threads threads" >&2
"$st_python" "$HACK_DIR/bench/embed_st_peer.py" torch "$model_dir" "$corpus" "$reference" "$threads" "$passes" "$work" \
  | tee "$work/embed-st-torch.json"
echo "== sentence-transformers ONNX backend, qint8 (avx512_vnni), $threads threads" >&2
"$st_python" "$HACK_DIR/bench/embed_st_peer.py" onnx-qint8 "$model_dir" "$corpus" "$reference" "$threads" "$passes" \
  "$work" 2>/dev/null | tee "$work/embed-st-qint8.json"
echo "== prospector-embedder bench --graph int8 (the ONNX int8 graph: the fallback without AVX-512 VNNI and BF16)" >&2
"$bin" bench --corpus "$corpus" --threads "$threads" --repeat "$passes" --reference "$reference" --graph int8 \
  | tee "$work/embed-rust-int8.json"
echo "== prospector-embedder bench --graph fused (fp32 only)" >&2
"$bin" bench --corpus "$corpus" --threads "$threads" --repeat "$passes" --reference "$reference" --graph fused \
  | tee "$work/embed-rust-fused.json"
echo "== Python onnxruntime + tokenizers, the plain fp32 export, batches of 32" >&2
"$python" "$HACK_DIR/bench/embed_peer.py" "$model_dir" model.onnx "$corpus" "$threads" "$passes" | tee "$work/embed-peer.json"
echo "== the CPU's practical fp32 peak: numpy (OpenBLAS) sgemm 4096x4096, $threads threads" >&2
OPENBLAS_NUM_THREADS="$threads" "$python" -c '
import json, time, numpy as np
a = np.random.rand(4096, 4096).astype(np.float32); b = np.random.rand(4096, 4096).astype(np.float32)
a @ b; start = time.perf_counter()
for _ in range(5): a @ b
print(json.dumps({"sgemm_gflops": 2 * 4096**3 * 5 / (time.perf_counter() - start) / 1e9}))' | tee "$work/sgemm.json"
"$python" - "$work"/embed-{rust,st-torch,st-qint8,rust-int8,rust-fused,peer}.json "$work/sgemm.json" <<'PY'
import json, sys
rust, st, qint8, rust_int8, rust_fused, peer, sgemm = (json.load(open(p)) for p in sys.argv[1:8])
# FLOPs per real token of all-MiniLM-L6-v2 (6 layers, hidden 384, FFN 1536) at this corpus's mean
# length: projections and FFN 2*(4*384*384 + 2*384*1536) per layer, attention 2*2*L*384.
mean_len = rust["real_tokens"] / rust["chunks"]
flops_per_token = 6 * (2 * (4 * 384 * 384 + 2 * 384 * 1536) + 4 * mean_len * 384)
def row(name, r):
    tps = r["tokens_per_second"]
    gflops = tps * flops_per_token / 1e9
    accuracy = (f"{r['min_cosine_to_reference']:.6f} | {r['min_cosine_alone_vs_batched']:.7f}"
                if "min_cosine_to_reference" in r else "(fp32, not measured) | ")
    print(f"| {name} | {tps:,.0f} | {r['chunks_per_second']:.1f} | {tps / st['tokens_per_second']:.2f}x | "
          f"{tps / qint8['tokens_per_second']:.2f}x | {gflops:.0f} ({gflops / sgemm['sgemm_gflops']:.0%}) | {accuracy} |")
print("| configuration | tokens/s | chunks/s | vs sentence-transformers (PyTorch) | vs its qint8 ONNX path | "
      "GFLOP/s equivalent (of sgemm peak) | min cosine to sentence-transformers | min cosine alone vs batched |")
print("|---|---|---|---|---|---|---|---|")
row(f"prospector-embedder, default ({rust['graph']})", rust)
row(f"prospector-embedder, --graph {rust_int8['graph']} (ONNX Runtime)", rust_int8)
row(f"prospector-embedder, --graph {rust_fused['graph']} (fp32)", rust_fused)
row(st["peer"], st)
row(qint8["peer"], qint8)
row("Python onnxruntime + tokenizers, plain fp32 export (first round's peer)", peer)
print(f"FLOPs per real token: {flops_per_token / 1e6:.1f} M at the corpus mean of {mean_len:.0f} tokens; "
      f"sgemm peak {sgemm['sgemm_gflops']:.0f} GFLOP/s")
PY
