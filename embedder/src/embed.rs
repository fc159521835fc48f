//! Sentence embeddings with all-MiniLM-L6-v2: tokenisation with the model's own tokenizer
//! (truncated at 256 tokens), then either the native kernels (`prospector-kernels`, the CPU
//! default where the CPU has AVX-512 VNNI and BF16) or ONNX Runtime (batches of similar lengths
//! so little padding is computed, mean pooling over the attention mask and L2 normalisation, as
//! sentence-transformers does). The ONNX Runtime library is loaded at run time (`ort`'s
//! load-dynamic), only when a graph needs it; the session is built once and reused.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::ep::ExecutionProvider;
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::Tensor;
use tokenizers::{Tokenizer, TruncationParams};

/// The width of an all-MiniLM-L6-v2 vector.
pub const DIMENSIONS: usize = 384;
/// sentence-transformers' `max_seq_length` for the model.
pub const MAX_TOKENS: usize = 256;
/// Padded tokens per ONNX Runtime call: eight full-length chunks, the fastest setting measured
/// on 2 cores (docs/benchmarks.md). The native engine groups unpadded tokens by itself.
pub const DEFAULT_BATCH_TOKENS: usize = 8 * MAX_TOKENS;

/// Why the embedder could not load or run.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("cannot load ONNX Runtime from {path}: {detail}")]
    Runtime { path: PathBuf, detail: String },
    #[error("cannot load the model {path}: {detail}")]
    Model { path: PathBuf, detail: String },
    #[error("cannot load the tokenizer {path}: {detail}")]
    Tokenizer { path: PathBuf, detail: String },
    #[error("tokenisation failed: {0}")]
    Tokenize(String),
    #[error("inference failed: {0}")]
    Inference(String),
}

impl EmbedError {
    /// A stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Runtime { .. } => "runtime",
            Self::Model { .. } => "model",
            Self::Tokenizer { .. } => "tokenizer",
            Self::Tokenize(_) => "tokenize",
            Self::Inference(_) => "inference",
        }
    }
}

/// Where inference runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Device {
    #[default]
    Cpu,
    Cuda,
}

/// Which form of the model to run (all made or fetched by `hack/model.sh`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Graph {
    /// `model.safetensors` run by Prospector's own AVX-512 kernels (`native`), without ONNX
    /// Runtime: int8 projections with per-row scales in the GEMM's epilogue, the feed-forward
    /// output in bf16, unpadded attention. Needs AVX-512 VNNI and BF16; elsewhere the int8
    /// graph runs instead. The CPU default.
    #[default]
    Native,
    /// `model-int8.onnx`: the attention projections and the feed-forward input MatMuls in int8
    /// with per-row activation scales and calibrated smoothing (`hack/optimize_onnx.py`), the rest
    /// fp32; cosine >= 0.999 to sentence-transformers, and a text's vector does not depend on
    /// its batchmates. The CPU default where the native kernels cannot run.
    Int8,
    /// `model-fused.onnx`: fp32, with attention, LayerNorm and GELU fused by ONNX Runtime's
    /// transformer optimizer. The CUDA default.
    Fused,
    /// `model.onnx`: the plain fp32 export.
    Plain,
}

impl Graph {
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Native => "model.safetensors",
            Self::Int8 => "model-int8.onnx",
            Self::Fused => "model-fused.onnx",
            Self::Plain => "model.onnx",
        }
    }
}

/// How to build an [`Embedder`].
#[derive(Clone, Debug)]
pub struct EmbedderConfig {
    /// The directory with `model.onnx` and `tokenizer.json`.
    pub model_dir: PathBuf,
    /// `libonnxruntime.so`.
    pub onnxruntime: PathBuf,
    /// Intra-op threads of the session.
    pub threads: usize,
    pub device: Device,
    pub graph: Graph,
    /// Padded tokens one inference call may hold (batch size × longest sequence).
    pub batch_tokens: usize,
}

impl EmbedderConfig {
    pub fn new(model_dir: impl Into<PathBuf>, onnxruntime: impl Into<PathBuf>) -> Self {
        Self {
            model_dir: model_dir.into(),
            onnxruntime: onnxruntime.into(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            device: Device::Cpu,
            graph: Graph::default(),
            batch_tokens: DEFAULT_BATCH_TOKENS,
        }
    }
}

/// One text, tokenised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens {
    pub ids: Vec<u32>,
    /// The text was longer than [`MAX_TOKENS`] and only its start is embedded.
    pub truncated: bool,
}

/// What runs the model.
#[derive(Debug)]
enum Engine {
    Onnx(Mutex<Session>),
    #[cfg(target_arch = "x86_64")]
    Native {
        model: prospector_kernels::NativeModel,
        threads: usize,
    },
}

/// The loaded model: tokenizer and the engine that runs it.
#[derive(Debug)]
pub struct Embedder {
    tokenizer: Tokenizer,
    engine: Engine,
    batch_tokens: usize,
    device: Device,
    graph: Graph,
    /// The ICP extractor's industry descriptions, embedded once per loaded model (`icp`).
    pub(crate) industry_vectors: OnceLock<Vec<Vec<f32>>>,
}

/// ONNX Runtime allows one environment per process; every embedder shares it.
static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

fn init_runtime(library: &Path) -> Result<&'static Environment, EmbedError> {
    let outcome = ENVIRONMENT.get_or_init(|| {
        if !library.is_file() {
            return Err("the file does not exist (run hack/onnxruntime.sh or set ORT_DYLIB_PATH)".into());
        }
        let builder = ort::init_from(library).map_err(|e| e.to_string())?;
        builder.with_name("prospector-embedder").build().map_err(|e| e.to_string())
    });
    outcome.as_ref().map_err(|detail| EmbedError::Runtime { path: library.to_owned(), detail: detail.clone() })
}

impl Embedder {
    /// Loads the tokenizer and builds the session. With [`Device::Cuda`], uses the CUDA
    /// execution provider when this ONNX Runtime has it, and otherwise logs the fallback to CPU.
    pub fn load(config: &EmbedderConfig) -> Result<Self, EmbedError> {
        let tokenizer_path = config.model_dir.join("tokenizer.json");
        let tokenizer_error = |detail: String| EmbedError::Tokenizer { path: tokenizer_path.clone(), detail };
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| tokenizer_error(e.to_string()))?;
        // tokenizer.json ships padding to 128 and truncation at 128; the model is used at 256
        // (sentence-transformers' max_seq_length), padded per batch by us.
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: MAX_TOKENS, ..Default::default() }))
            .map_err(|e| tokenizer_error(e.to_string()))?;
        tokenizer.with_padding(None);

        // int8 pays on CPUs with VNNI; on a GPU the fp32 fused graph is the fast one. Without
        // VNNI, ONNX Runtime's u8 x s8 kernels multiply through 16-bit sums that full-range
        // activations can saturate, so the int8 graph's accuracy holds only with VNNI.
        let graph = match (config.device, config.graph) {
            (Device::Cuda, Graph::Int8 | Graph::Native) => Graph::Fused,
            (Device::Cpu, Graph::Native) if !native_supported() => {
                tracing::warn!(
                    "this CPU has no AVX-512 VNNI and BF16; running the ONNX int8 graph instead of the native kernels"
                );
                if cpu_has_vnni() { Graph::Int8 } else { Graph::Fused }
            }
            (Device::Cpu, Graph::Int8) if !cpu_has_vnni() => {
                tracing::warn!("this CPU has no VNNI instructions; running the fp32 fused graph instead of int8");
                Graph::Fused
            }
            (_, graph) => graph,
        };
        let model_path = config.model_dir.join(graph.file_name());
        if !model_path.is_file() {
            return Err(EmbedError::Model {
                path: model_path,
                detail: "the file does not exist (run hack/model.sh, or choose the other graph)".into(),
            });
        }
        let (engine, device) = match graph {
            #[cfg(target_arch = "x86_64")]
            Graph::Native => {
                let model = prospector_kernels::NativeModel::load(&config.model_dir)
                    .map_err(|e| EmbedError::Model { path: model_path.clone(), detail: e.to_string() })?;
                (Engine::Native { model, threads: config.threads.max(1) }, Device::Cpu)
            }
            _ => onnx_engine(config, &model_path)?,
        };
        Ok(Self {
            tokenizer,
            engine,
            batch_tokens: config.batch_tokens.max(MAX_TOKENS),
            device,
            graph,
            industry_vectors: OnceLock::new(),
        })
    }

    /// The device the session actually runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The graph the session runs.
    pub fn graph(&self) -> Graph {
        self.graph
    }

    /// Token ids of each text, with `[CLS]`/`[SEP]`, truncated at [`MAX_TOKENS`].
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokens>, EmbedError> {
        texts
            .iter()
            .map(|t| {
                self.tokenizer
                    .encode(*t, true)
                    .map(|e| Tokens { ids: e.get_ids().to_vec(), truncated: !e.get_overflowing().is_empty() })
                    .map_err(|e| EmbedError::Tokenize(e.to_string()))
            })
            .collect()
    }

    /// Tokens of `text` without special tokens and without truncation: what chunking counts.
    pub fn count_tokens(&self, text: &str) -> Result<usize, EmbedError> {
        self.tokenizer.encode_fast(text, false).map(|e| e.len()).map_err(|e| EmbedError::Tokenize(e.to_string()))
    }

    /// The tokenizer, for chunking.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Normalised embeddings of `texts`, in order.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let tokens = self.tokenize(texts)?;
        self.embed_tokens(&tokens)
    }

    /// Normalised embeddings of already tokenised texts, in order.
    pub fn embed_tokens(&self, tokens: &[Tokens]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let session = match &self.engine {
            Engine::Onnx(session) => session,
            #[cfg(target_arch = "x86_64")]
            Engine::Native { model, threads } => {
                let sequences: Vec<&[u32]> = tokens.iter().map(|t| t.ids.as_slice()).collect();
                return model.embed(&sequences, *threads).map_err(|e| EmbedError::Inference(e.to_string()));
            }
        };
        let mut out = vec![Vec::new(); tokens.len()];
        for batch in plan_batches(tokens, self.batch_tokens) {
            let vectors = run_batch(session, batch.iter().map(|i| &tokens[*i]))?;
            for (index, vector) in batch.into_iter().zip(vectors) {
                out[index] = vector;
            }
        }
        Ok(out)
    }
}

/// One padded batch through an ONNX Runtime session.
fn run_batch<'t>(
    session: &Mutex<Session>,
    batch: impl ExactSizeIterator<Item = &'t Tokens> + Clone,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let rows = batch.len();
    let width = batch.clone().map(|t| t.ids.len()).max().unwrap_or(0).max(1);
    let mut ids = vec![0i64; rows * width];
    let mut mask = vec![0i64; rows * width];
    for (row, tokens) in batch.enumerate() {
        for (col, id) in tokens.ids.iter().enumerate() {
            ids[row * width + col] = *id as i64;
            mask[row * width + col] = 1;
        }
    }
    let inference = |e: ort::Error| EmbedError::Inference(e.to_string());
    let shape = [rows, width];
    let input_ids = Tensor::from_array((shape, ids)).map_err(inference)?;
    let attention = Tensor::from_array((shape, mask.clone())).map_err(inference)?;
    let token_types = Tensor::from_array((shape, vec![0i64; rows * width])).map_err(inference)?;
    let mut session = session.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let outputs = session
        .run(ort::inputs![
            "input_ids" => input_ids,
            "attention_mask" => attention,
            "token_type_ids" => token_types,
        ])
        .map_err(inference)?;
    let (out_shape, hidden) = outputs[0].try_extract_tensor::<f32>().map_err(inference)?;
    if out_shape.len() != 3 || out_shape[2] as usize != DIMENSIONS {
        return Err(EmbedError::Inference(format!("unexpected output shape {out_shape:?}")));
    }
    Ok(mean_pool_normalize(hidden, &mask, rows, width))
}

/// Whether this CPU runs the native kernels (AVX-512 VNNI and BF16 on x86-64).
pub fn native_supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        prospector_kernels::NativeModel::supported()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the CPU has the int8 dot-product instructions (AVX-512 VNNI or AVX-VNNI) that ONNX
/// Runtime's int8 kernels need to add products without saturating.
fn cpu_has_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512vnni") || std::arch::is_x86_feature_detected!("avxvnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // ARM's int8 kernels (SDOT/SMMLA) accumulate in 32 bits.
        true
    }
}

/// An ONNX Runtime session on `model_path`, on the CUDA execution provider when the config asks
/// for it and this ONNX Runtime has it, and otherwise (logged) on the CPU.
fn onnx_engine(config: &EmbedderConfig, model_path: &Path) -> Result<(Engine, Device), EmbedError> {
    let environment = init_runtime(&config.onnxruntime)?;
    let model_error = |e: ort::Error| EmbedError::Model { path: model_path.to_owned(), detail: e.to_string() };
    let builder = || -> Result<SessionBuilder, EmbedError> {
        Session::builder(environment)
            .map_err(model_error)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| model_error(e.into()))?
            .with_intra_threads(config.threads.max(1))
            .map_err(|e| model_error(e.into()))?
            .with_inter_threads(1)
            .map_err(|e| model_error(e.into()))
    };
    let cuda = match config.device {
        Device::Cuda => match cuda_session(builder()?, model_path) {
            Ok(session) => Some(session),
            Err(reason) => {
                tracing::warn!(%reason, "CUDA execution provider unavailable; falling back to CPU");
                None
            }
        },
        Device::Cpu => None,
    };
    let device = if cuda.is_some() { Device::Cuda } else { Device::Cpu };
    let session = match cuda {
        Some(session) => session,
        None => builder()?.commit_from_file(model_path).map_err(model_error)?,
    };
    Ok((Engine::Onnx(Mutex::new(session)), device))
}

/// A session on the CUDA execution provider, or why there is none.
fn cuda_session(mut builder: SessionBuilder, model: &Path) -> Result<Session, String> {
    if !ort::ep::CUDA::is_available().unwrap_or(false) {
        return Err("this ONNX Runtime has no CUDA execution provider (install the onnxruntime-gpu build)".into());
    }
    ort::ep::CUDA::default().register(&mut builder).map_err(|e| e.to_string())?;
    builder.commit_from_file(model).map_err(|e| e.to_string())
}

/// Groups text indices into batches: sorted by length, each holding at most `batch_tokens`
/// padded tokens, and cut where a text is over 20% shorter than its batch's longest, so no batch
/// computes much padding.
pub fn plan_batches(tokens: &[Tokens], batch_tokens: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..tokens.len()).collect();
    order.sort_by_key(|i| std::cmp::Reverse(tokens[*i].ids.len()));
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut current_width = 0;
    for index in order {
        let len = tokens[index].ids.len().max(1);
        let width = current_width.max(len);
        if !current.is_empty() && (width * (current.len() + 1) > batch_tokens || len * 5 < current_width * 4) {
            batches.push(std::mem::take(&mut current));
            current_width = 0;
        }
        current_width = current_width.max(len);
        current.push(index);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// Mean of the token vectors under the attention mask, then L2-normalised.
pub fn mean_pool_normalize(hidden: &[f32], mask: &[i64], rows: usize, width: usize) -> Vec<Vec<f32>> {
    (0..rows)
        .map(|row| {
            let mut sum = vec![0f32; DIMENSIONS];
            let mut count = 0f32;
            for col in 0..width {
                if mask[row * width + col] == 0 {
                    continue;
                }
                count += 1.0;
                let token = &hidden[(row * width + col) * DIMENSIONS..(row * width + col + 1) * DIMENSIONS];
                for (s, v) in sum.iter_mut().zip(token) {
                    *s += v;
                }
            }
            let count = count.max(1e-9);
            sum.iter_mut().for_each(|s| *s /= count);
            let norm = sum.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            sum.iter_mut().for_each(|s| *s /= norm);
            sum
        })
        .collect()
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(1e-12)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(lens: &[usize]) -> Vec<Tokens> {
        lens.iter().map(|n| Tokens { ids: vec![1; *n], truncated: false }).collect()
    }

    #[test]
    fn batches_group_similar_lengths_within_the_token_budget() {
        let t = tokens(&[10, 200, 12, 190, 11, 256]);
        let batches = plan_batches(&t, 512);
        assert_eq!(batches, vec![vec![5], vec![1, 3], vec![2, 4, 0]]);
        // Every index exactly once.
        let mut all: Vec<usize> = batches.concat();
        all.sort();
        assert_eq!(all, (0..6).collect::<Vec<_>>());
    }

    #[test]
    fn a_text_longer_than_the_budget_still_gets_a_batch() {
        assert_eq!(plan_batches(&tokens(&[300]), 100), vec![vec![0]]);
    }

    #[test]
    fn pooling_ignores_padding_and_normalises() {
        let mut hidden = vec![0f32; 2 * DIMENSIONS];
        hidden[0] = 3.0;
        hidden[1] = 4.0;
        hidden[DIMENSIONS] = 100.0; // padding: must not count
        let pooled = mean_pool_normalize(&hidden, &[1, 0], 1, 2);
        assert!((pooled[0][0] - 0.6).abs() < 1e-6 && (pooled[0][1] - 0.8).abs() < 1e-6);
    }
}
