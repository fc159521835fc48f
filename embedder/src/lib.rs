//! Prospector's embedding engine. This slice owns where the engine finds its runtime inputs:
//! the all-MiniLM-L6-v2 model directory and the ONNX Runtime shared library, as the `hack/`
//! scripts install them, with `PROSPECTOR_MODEL_DIR` and `ORT_DYLIB_PATH` as overrides.

pub mod paths;
