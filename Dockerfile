# syntax=docker/dockerfile:1
# Prospector's images, one target each (nothing here can be built on the development machine,
# which has no container engine; tests/tests/images.rs checks what can be checked without one):
#
#   docker build --target operator  -t ghcr.io/prospector-dev/operator:0.1.0  .
#   docker build --target apiserver -t ghcr.io/prospector-dev/apiserver:0.1.0 .
#   docker build --target embedder  -t ghcr.io/prospector-dev/embedder:0.1.0  .
#
# Every image runs as the non-root user 65532 (distroless "nonroot") with nothing writable but
# the /tmp the chart mounts. The model and ONNX Runtime are baked into the apiserver and embedder
# images at /opt/prospector/model and /opt/prospector/lib/libonnxruntime.so (PROSPECTOR_MODEL_DIR
# and ORT_DYLIB_PATH); mount another model over /opt/prospector/model to replace it.

ARG RUST_VERSION=1.95.0

# The three binaries, from the locked workspace.
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY crds crds
COPY store store
COPY kernels kernels
COPY migrations migrations
# The native engine compiles in the smoothing exponents calibrated for the model.
COPY hack/model-smoothing.json hack/model-smoothing.json
COPY embedder embedder
COPY operator operator
COPY apiserver apiserver
COPY tests tests
COPY third_party third_party
RUN --mount=type=cache,target=/usr/local/cargo/registry --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin prospector-operator --bin prospector-apiserver --bin prospector-embedder \
 && mkdir -p /out \
 && cp target/release/prospector-operator target/release/prospector-apiserver target/release/prospector-embedder /out/

# The model and ONNX Runtime, through the same pinned, checksummed hack/ scripts as development.
FROM docker.io/library/python:3.11-slim-bookworm AS assets
WORKDIR /src
COPY hack hack
RUN PROSPECTOR_CACHE=/cache bash hack/model.sh > /tmp/model-dir \
 && PROSPECTOR_CACHE=/cache bash hack/onnxruntime.sh > /tmp/ort-path \
 && mkdir -p /opt/prospector/model /opt/prospector/lib \
 && cp -L "$(cat /tmp/model-dir)"/tokenizer.json "$(cat /tmp/model-dir)"/config.json \
          "$(cat /tmp/model-dir)"/model.safetensors "$(cat /tmp/model-dir)"/model-int8.onnx \
          "$(cat /tmp/model-dir)"/model-fused.onnx "$(cat /tmp/model-dir)"/model.onnx /opt/prospector/model/ \
 && cp -L "$(dirname "$(cat /tmp/ort-path)")"/libonnxruntime* /opt/prospector/lib/

FROM gcr.io/distroless/cc-debian12:nonroot AS operator
COPY --from=build /out/prospector-operator /usr/local/bin/prospector-operator
# glibc gives every thread that allocates an arena of its own (up to 8 per core) and returns
# little of them: at scale that was a third of the operator's memory. Two arenas measured no
# slower (docs/benchmarks.md; the scale bench runs the binary with this stage's ENV).
ENV MALLOC_ARENA_MAX=2
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/prospector-operator"]
CMD ["run"]

# What the apiserver and the embedder share: the model, ONNX Runtime and where they are.
FROM gcr.io/distroless/cc-debian12:nonroot AS with-model
COPY --from=assets /opt/prospector /opt/prospector
ENV PROSPECTOR_MODEL_DIR=/opt/prospector/model ORT_DYLIB_PATH=/opt/prospector/lib/libonnxruntime.so
USER 65532:65532

FROM with-model AS apiserver
COPY --from=build /out/prospector-apiserver /usr/local/bin/prospector-apiserver
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/prospector-apiserver"]

FROM with-model AS embedder
COPY --from=build /out/prospector-embedder /usr/local/bin/prospector-embedder
ENTRYPOINT ["/usr/local/bin/prospector-embedder"]
CMD ["worker"]
