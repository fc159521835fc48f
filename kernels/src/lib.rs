//! The native engine: all-MiniLM-L6-v2's encoder run by Prospector's own AVX-512 kernels
//! (`simd`) straight from `model.safetensors`, without ONNX Runtime. It owns loading and
//! checking the weights, folding the calibrated smoothing into the int8 weights, splitting a
//! batch across threads, and the forward pass with mean pooling. It is the workspace's only
//! crate with `unsafe` code (the intrinsics), and exists only on x86-64; the embedder checks
//! [`NativeModel::supported`] before loading it.
//!
//! Precision, per layer: the QKV, attention-output and feed-forward-input projections in int8
//! (weights per output column, activations per row after smoothing, the same scheme as the int8
//! ONNX graph), the feed-forward output in bf16, attention, LayerNorm, GELU and pooling in f32.
//! Every sequence is computed unpadded and alone in attention, and every quantisation is per
//! row, so a text's vector does not depend on what it is batched with.

#![cfg(target_arch = "x86_64")]

pub mod simd;

use std::collections::HashMap;
use std::path::Path;

use simd::{AttentionScratch, Bf16Linear, Int8Linear, Output, QuantisedRows, TILE_ROWS};

/// The power-of-two smoothing exponents calibrated for all-MiniLM-L6-v2 (`hack/optimize_onnx.py`
/// writes them; the int8 ONNX graph uses the same ones).
const SMOOTHING: &str = include_str!("../../hack/model-smoothing.json");

/// Tokens one thread runs through the layers together: enough rows to reuse each weight panel,
/// few enough that the activations stay in the core's L2 (docs/benchmarks.md).
pub const GROUP_TOKENS: usize = 512;

const HIDDEN: usize = 384;
const HEADS: usize = 12;
const HEAD_DIM: usize = 32;
const INTERMEDIATE: usize = 1536;
const LAYERS: usize = 6;
const EPS: f32 = 1e-12;

struct LayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

struct Layer {
    qkv: Int8Linear,
    attention_output: Int8Linear,
    attention_norm: LayerNorm,
    feed_forward_in: Int8Linear,
    feed_forward_out: Bf16Linear,
    output_norm: LayerNorm,
}

/// The loaded encoder.
pub struct NativeModel {
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    vocabulary: usize,
    max_positions: usize,
}

impl std::fmt::Debug for NativeModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeModel").field("layers", &self.layers.len()).finish_non_exhaustive()
    }
}

/// Why the model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("{0}")]
    Load(String),
    #[error("{0}")]
    Input(String),
}

impl KernelError {
    /// A stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Load(_) => "load",
            Self::Input(_) => "input",
        }
    }
}

/// The f32 tensors of a safetensors file.
struct Tensors {
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Tensors {
    fn read(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        let header_len = bytes.get(..8).ok_or("shorter than a safetensors header")?;
        let header_len = u64::from_le_bytes(header_len.try_into().expect("8 bytes")) as usize;
        let data_start = 8usize.checked_add(header_len).filter(|end| *end <= bytes.len()).ok_or("truncated header")?;
        let header: HashMap<String, serde_json::Value> =
            serde_json::from_slice(&bytes[8..data_start]).map_err(|e| format!("header: {e}"))?;
        let data = &bytes[data_start..];
        let mut tensors = HashMap::new();
        for (name, entry) in header {
            if name == "__metadata__" || entry["dtype"] != "F32" {
                continue;
            }
            let shape: Vec<usize> =
                serde_json::from_value(entry["shape"].clone()).map_err(|e| format!("{name}: {e}"))?;
            let offsets: [usize; 2] =
                serde_json::from_value(entry["data_offsets"].clone()).map_err(|e| format!("{name}: {e}"))?;
            let raw = data.get(offsets[0]..offsets[1]).ok_or_else(|| format!("{name}: data out of bounds"))?;
            let values = shape.iter().try_fold(4usize, |n, d| n.checked_mul(*d));
            if values != Some(raw.len()) {
                return Err(format!("{name}: {} bytes for shape {shape:?}", raw.len()));
            }
            let values = raw.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect();
            tensors.insert(name, (shape, values));
        }
        Ok(Self { tensors })
    }

    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        let (actual, values) = self.tensors.remove(name).ok_or_else(|| format!("no f32 tensor {name}"))?;
        if actual != shape {
            return Err(format!("{name} has shape {actual:?}, expected {shape:?}"));
        }
        Ok(values)
    }

    fn norm(&mut self, prefix: &str) -> Result<LayerNorm, String> {
        Ok(LayerNorm {
            gamma: self.take(&format!("{prefix}.weight"), &[HIDDEN])?,
            beta: self.take(&format!("{prefix}.bias"), &[HIDDEN])?,
        })
    }
}

/// The smoothing exponents of one weight, found by the prefix of its name in the fused graph.
fn exponents(table: &HashMap<String, Vec<i32>>, prefix: &str, k: usize) -> Result<Vec<i32>, String> {
    let found: Vec<&Vec<i32>> = table.iter().filter(|(name, _)| name.starts_with(prefix)).map(|(_, e)| e).collect();
    let exponents = match found.as_slice() {
        [one] => (*one).clone(),
        [] => return Err(format!("no smoothing exponents for {prefix}")),
        _ => return Err(format!("{} sets of smoothing exponents for {prefix}", found.len())),
    };
    if exponents.len() != k || exponents.iter().any(|e| e.abs() > 8) {
        return Err(format!("smoothing exponents for {prefix}: {} values, expected {k} small ones", exponents.len()));
    }
    Ok(exponents)
}

impl NativeModel {
    /// Whether this CPU runs the native kernels.
    pub fn supported() -> bool {
        simd::supported()
    }

    /// Loads `model.safetensors` and checks `config.json` describes the architecture the kernels
    /// implement (BERT, 6 layers of 384 with 12 heads, GELU).
    pub fn load(dir: &Path) -> Result<Self, KernelError> {
        Self::load_from(dir).map_err(KernelError::Load)
    }

    fn load_from(dir: &Path) -> Result<Self, String> {
        if !Self::supported() {
            return Err("this CPU has no AVX-512 VNNI and BF16".into());
        }
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).map_err(|e| format!("config.json: {e}"))?)
                .map_err(|e| format!("config.json: {e}"))?;
        let expect = [
            ("hidden_size", HIDDEN),
            ("num_attention_heads", HEADS),
            ("intermediate_size", INTERMEDIATE),
            ("num_hidden_layers", LAYERS),
        ];
        for (key, value) in expect {
            if config[key].as_u64() != Some(value as u64) {
                return Err(format!("config.json: {key} is {}, the native engine implements {value}", config[key]));
            }
        }
        if config["layer_norm_eps"].as_f64().is_some_and(|eps| (eps - EPS as f64).abs() > 1e-15) {
            return Err(format!(
                "config.json: layer_norm_eps is {}, the native engine implements {EPS}",
                config["layer_norm_eps"]
            ));
        }
        if config["hidden_act"] != "gelu" || config["model_type"] != "bert" {
            return Err("config.json: the native engine implements BERT with GELU".into());
        }
        let vocabulary = config["vocab_size"].as_u64().ok_or("config.json: no vocab_size")? as usize;
        let max_positions =
            config["max_position_embeddings"].as_u64().ok_or("config.json: no max_position_embeddings")? as usize;
        let smoothing: HashMap<String, Vec<i32>> =
            serde_json::from_str(SMOOTHING).map_err(|e| format!("smoothing exponents: {e}"))?;
        let mut t = Tensors::read(&dir.join("model.safetensors")).map_err(|e| format!("model.safetensors: {e}"))?;
        let word = t.take("embeddings.word_embeddings.weight", &[vocabulary, HIDDEN])?;
        let position = t.take("embeddings.position_embeddings.weight", &[max_positions, HIDDEN])?;
        let token_type = t.take("embeddings.token_type_embeddings.weight", &[2, HIDDEN])?[..HIDDEN].to_vec();
        let embedding_norm = t.norm("embeddings.LayerNorm")?;
        let mut layers = Vec::with_capacity(LAYERS);
        for i in 0..LAYERS {
            let p = format!("encoder.layer.{i}");
            let mut qkv_weight = Vec::with_capacity(3 * HIDDEN * HIDDEN);
            let mut qkv_bias = Vec::with_capacity(3 * HIDDEN);
            for part in ["query", "key", "value"] {
                qkv_weight.extend(t.take(&format!("{p}.attention.self.{part}.weight"), &[HIDDEN, HIDDEN])?);
                qkv_bias.extend(t.take(&format!("{p}.attention.self.{part}.bias"), &[HIDDEN])?);
            }
            let linear_parts =
                |t: &mut Tensors, name: &str, n: usize, k: usize| -> Result<(Vec<f32>, Vec<f32>), String> {
                    Ok((t.take(&format!("{p}.{name}.weight"), &[n, k])?, t.take(&format!("{p}.{name}.bias"), &[n])?))
                };
            let (ao_w, ao_b) = linear_parts(&mut t, "attention.output.dense", HIDDEN, HIDDEN)?;
            let (fi_w, fi_b) = linear_parts(&mut t, "intermediate.dense", INTERMEDIATE, HIDDEN)?;
            let (fo_w, fo_b) = linear_parts(&mut t, "output.dense", HIDDEN, INTERMEDIATE)?;
            layers.push(Layer {
                qkv: Int8Linear::new(
                    &qkv_weight,
                    &qkv_bias,
                    3 * HIDDEN,
                    HIDDEN,
                    &exponents(&smoothing, &format!("Attention_{i}_qkv_weight"), HIDDEN)?,
                ),
                attention_output: Int8Linear::new(
                    &ao_w,
                    &ao_b,
                    HIDDEN,
                    HIDDEN,
                    &exponents(&smoothing, &format!("{p}.attention.output.dense.weight"), HIDDEN)?,
                ),
                attention_norm: t.norm(&format!("{p}.attention.output.LayerNorm"))?,
                feed_forward_in: Int8Linear::new(
                    &fi_w,
                    &fi_b,
                    INTERMEDIATE,
                    HIDDEN,
                    &exponents(&smoothing, &format!("{p}.intermediate.dense.weight"), HIDDEN)?,
                ),
                feed_forward_out: Bf16Linear::new(&fo_w, &fo_b, HIDDEN, INTERMEDIATE),
                output_norm: t.norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        Ok(Self { word, position, token_type, embedding_norm, layers, vocabulary, max_positions })
    }

    /// Mean-pooled, L2-normalised vectors of token-id sequences (each with its `[CLS]`/`[SEP]`,
    /// at most the model's positions long), in order, on up to `threads` threads.
    pub fn embed(&self, sequences: &[&[u32]], threads: usize) -> Result<Vec<Vec<f32>>, KernelError> {
        for s in sequences {
            if s.is_empty() {
                return Err(KernelError::Input(
                    "an empty sequence (a tokenised text has at least [CLS] and [SEP])".into(),
                ));
            }
            if s.len() > self.max_positions {
                return Err(KernelError::Input(format!(
                    "a sequence of {} tokens; the model has {} positions",
                    s.len(),
                    self.max_positions
                )));
            }
            if let Some(id) = s.iter().find(|id| **id as usize >= self.vocabulary) {
                return Err(KernelError::Input(format!(
                    "token id {id} is outside the vocabulary of {}",
                    self.vocabulary
                )));
            }
        }
        // Threads take groups from a shared counter rather than fixed shares: on cores shared
        // with other work (an inline worker at a low priority), a thread that is held back
        // leaves its groups to the others instead of making them wait at the end.
        let groups = groups_by_tokens(sequences);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let run = || self.run_groups(sequences, &groups, &next);
        let mut out = vec![Vec::new(); sequences.len()];
        let results: Vec<Vec<(usize, Vec<f32>)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (1..threads.clamp(1, groups.len().max(1))).map(|_| scope.spawn(run)).collect();
            let mut results = vec![run()];
            results
                .extend(handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))));
            results
        });
        for (index, vector) in results.into_iter().flatten() {
            out[index] = vector;
        }
        Ok(out)
    }

    /// Runs groups, taking the next one from `next`, until none is left.
    fn run_groups(
        &self,
        sequences: &[&[u32]],
        groups: &[Vec<usize>],
        next: &std::sync::atomic::AtomicUsize,
    ) -> Vec<(usize, Vec<f32>)> {
        let mut workspace = Workspace::default();
        let mut out = Vec::new();
        loop {
            let taken = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(group) = groups.get(taken) else { return out };
            let batch: Vec<&[u32]> = group.iter().map(|i| sequences[*i]).collect();
            // SAFETY: a `NativeModel` exists only where `simd::supported()` (checked in `load`).
            let vectors = unsafe { self.forward(&batch, &mut workspace) };
            out.extend(group.iter().copied().zip(vectors));
        }
    }

    /// The encoder on a group of sequences, concatenated without padding.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512bf16")]
    unsafe fn forward(&self, sequences: &[&[u32]], ws: &mut Workspace) -> Vec<Vec<f32>> {
        let rows: usize = sequences.iter().map(|s| s.len()).sum();
        let padded = rows.div_ceil(TILE_ROWS) * TILE_ROWS;
        ws.reset(padded);
        let mut row = 0;
        for sequence in sequences {
            for (position, id) in sequence.iter().enumerate() {
                let word = &self.word[*id as usize * HIDDEN..][..HIDDEN];
                let pos = &self.position[position * HIDDEN..][..HIDDEN];
                let hidden = &mut ws.hidden[row * HIDDEN..][..HIDDEN];
                hidden.iter_mut().zip(word.iter().zip(pos)).for_each(|(h, (w, p))| *h = w + p);
                ws.delta[row * HIDDEN..][..HIDDEN].copy_from_slice(&self.token_type);
                row += 1;
            }
        }
        let norm = &self.embedding_norm;
        unsafe {
            simd::add_layer_norm(&mut ws.hidden, &ws.delta, HIDDEN, rows, &norm.gamma, &norm.beta, EPS);
            for layer in &self.layers {
                simd::quantise_rows(&ws.hidden, HIDDEN, rows, layer.qkv.inverse_smoothing(), &mut ws.codes);
                simd::gemm_int8(&ws.codes, rows, &layer.qkv, Output::F32 { out: &mut ws.qkv, ld: 3 * HIDDEN });
                let mut offset = 0;
                for sequence in sequences {
                    simd::attention(
                        &ws.qkv[offset * 3 * HIDDEN..],
                        3 * HIDDEN,
                        sequence.len(),
                        HEADS,
                        HEAD_DIM,
                        &mut ws.context[offset * HIDDEN..],
                        HIDDEN,
                        &mut ws.attention,
                    );
                    offset += sequence.len();
                }
                let ao = &layer.attention_output;
                simd::quantise_rows(&ws.context, HIDDEN, rows, ao.inverse_smoothing(), &mut ws.codes);
                simd::gemm_int8(&ws.codes, rows, ao, Output::F32 { out: &mut ws.delta, ld: HIDDEN });
                let norm = &layer.attention_norm;
                simd::add_layer_norm(&mut ws.hidden, &ws.delta, HIDDEN, rows, &norm.gamma, &norm.beta, EPS);
                let fi = &layer.feed_forward_in;
                simd::quantise_rows(&ws.hidden, HIDDEN, rows, fi.inverse_smoothing(), &mut ws.codes);
                simd::gemm_int8(&ws.codes, rows, fi, Output::GeluBf16 { out: &mut ws.intermediate, ld: INTERMEDIATE });
                simd::gemm_bf16(&ws.intermediate, INTERMEDIATE, rows, &layer.feed_forward_out, &mut ws.delta, HIDDEN);
                let norm = &layer.output_norm;
                simd::add_layer_norm(&mut ws.hidden, &ws.delta, HIDDEN, rows, &norm.gamma, &norm.beta, EPS);
            }
        }
        let mut offset = 0;
        sequences
            .iter()
            .map(|sequence| {
                let mut sum = vec![0f32; HIDDEN];
                for token in ws.hidden[offset * HIDDEN..(offset + sequence.len()) * HIDDEN].chunks_exact(HIDDEN) {
                    sum.iter_mut().zip(token).for_each(|(s, v)| *s += v);
                }
                offset += sequence.len();
                let count = sequence.len().max(1) as f32;
                sum.iter_mut().for_each(|s| *s /= count);
                let norm = sum.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                sum.iter_mut().for_each(|s| *s /= norm);
                sum
            })
            .collect()
    }
}

/// One thread's buffers, reused across its groups.
#[derive(Default)]
struct Workspace {
    hidden: Vec<f32>,
    delta: Vec<f32>,
    qkv: Vec<f32>,
    context: Vec<f32>,
    intermediate: Vec<u16>,
    codes: QuantisedRows,
    attention: AttentionScratch,
}

impl Workspace {
    fn reset(&mut self, rows: usize) {
        self.hidden.resize(rows * HIDDEN, 0.0);
        self.delta.resize(rows * HIDDEN, 0.0);
        self.qkv.resize(rows * 3 * HIDDEN, 0.0);
        self.context.resize(rows * HIDDEN, 0.0);
        self.intermediate.resize(rows * INTERMEDIATE, 0);
    }
}

/// Sequence indices, longest first (sequences of a group pad to similar lengths), in groups of
/// about [`GROUP_TOKENS`] tokens; a longer sequence is a group of its own.
fn groups_by_tokens(sequences: &[&[u32]]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..sequences.len()).collect();
    order.sort_by_key(|i| std::cmp::Reverse(sequences[*i].len()));
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut tokens = 0;
    for index in order {
        let length = sequences[index].len();
        match groups.last_mut() {
            Some(group) if tokens + length <= GROUP_TOKENS => group.push(index),
            _ => {
                groups.push(vec![index]);
                tokens = 0;
            }
        }
        tokens += length;
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_hold_every_sequence_once_within_the_group_size() {
        let lens = [250, 10, 240, 30, 200, 200, 5, 600];
        let seqs: Vec<Vec<u32>> = lens.iter().map(|n| vec![1; *n]).collect();
        let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
        let groups = groups_by_tokens(&refs);
        let mut all: Vec<usize> = groups.concat();
        all.sort();
        assert_eq!(all, (0..lens.len()).collect::<Vec<_>>());
        for group in &groups {
            let tokens: usize = group.iter().map(|i| lens[*i]).sum();
            assert!(group.len() == 1 || tokens <= GROUP_TOKENS, "{groups:?}");
        }
        // Longest first: the 600-token sequence alone, then 250 + 240, ...
        assert_eq!(groups[0], vec![7]);
        assert_eq!(groups[1], vec![0, 2]);
        assert!(groups_by_tokens(&[]).is_empty());
    }
}
