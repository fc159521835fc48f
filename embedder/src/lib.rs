//! Prospector's embedding engine: text extraction from uploaded documents, chunking with the
//! model's tokenizer, all-MiniLM-L6-v2 embeddings (on its own kernels, `prospector-kernels`, or on ONNX Runtime), and ICP extraction. It also
//! owns where the engine finds its runtime inputs (the model directory and the ONNX Runtime
//! library, as the `hack/` scripts install them, with `PROSPECTOR_MODEL_DIR` and
//! `ORT_DYLIB_PATH` as overrides), and the worker that turns queued documents into searchable
//! chunks.

pub mod bench;
pub mod chunk;
pub mod embed;
pub mod extract;
pub mod fetch;
pub mod icp;
pub mod paths;
pub mod worker;
