//! The AVX-512 kernels of the native engine: per-row int8 quantisation, the u8 × i8 GEMM on
//! VNNI with the bias, row scale and (optionally) GELU in its epilogue, the bf16 GEMM, attention
//! over one unpadded sequence, and LayerNorm with the residual. Every function here is `unsafe`
//! and needs the features of [`supported`]; the engine checks them once at load.
//!
//! Why these shapes: ONNX Runtime's int8 MatMul needs the rows scaled, shifted and rescaled by
//! separate elementwise passes around it to stay accurate and batch-independent (12% of its
//! time), runs the feed-forward output in fp32 (29%), and pads every sequence of a batch to the
//! longest. Here the row scale and bias are applied in the GEMM's epilogue, the feed-forward
//! output runs in bf16 (floating point, so GELU's outlier channels cost no precision across the
//! row), and attention runs per sequence, so no padding is computed and no text's vector depends
//! on its batchmates.

#![allow(clippy::too_many_arguments)]
// Each kernel is an `unsafe fn` whose body is intrinsics and raw-pointer loads within the bounds
// its asserts check; wrapping every line in its own `unsafe` block would say nothing more.
#![allow(unsafe_op_in_unsafe_fn)]

use std::arch::x86_64::*;

/// Values in one AVX-512 register of f32 or i32.
pub const LANES: usize = 16;
/// Output columns one micro-kernel call computes (two registers).
pub const PANEL: usize = 2 * LANES;
/// Rows one micro-kernel call computes; activations are padded to a multiple of it.
pub const TILE_ROWS: usize = 8;

/// Whether this CPU has what the kernels use: AVX-512 F/BW, VNNI and BF16 (Zen 4, Sapphire
/// Rapids and later, Cooper Lake).
pub fn supported() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vnni")
        && is_x86_feature_detected!("avx512bf16")
}

/// A Linear layer in int8: weights symmetric per output column, activations quantised per row
/// after dividing each input channel by its smoothing factor (SmoothQuant, folded into the
/// weights here).
#[derive(Debug)]
pub struct Int8Linear {
    n: usize,
    k: usize,
    /// `[n / 16][k / 4][16][4]`: the layout `vpdpbusd` reads, one register per 4 inputs.
    packed: Vec<i8>,
    scale: Vec<f32>,
    /// Sum over the inputs of a column's int8 weights, for the rows' zero points.
    column_sum: Vec<f32>,
    bias: Vec<f32>,
    /// 2^-e per input channel, applied to activations before quantisation.
    inverse_smoothing: Vec<f32>,
}

impl Int8Linear {
    /// `weight` is `[n][k]`, PyTorch's Linear layout; `smoothing_exponents` has one power of two
    /// per input channel.
    pub fn new(weight: &[f32], bias: &[f32], n: usize, k: usize, smoothing_exponents: &[i32]) -> Self {
        assert!(n.is_multiple_of(PANEL) && k.is_multiple_of(4) && weight.len() == n * k && bias.len() == n);
        assert_eq!(smoothing_exponents.len(), k);
        let smoothing: Vec<f64> = smoothing_exponents.iter().map(|e| 2f64.powi(*e)).collect();
        let mut quantised = vec![0i8; n * k];
        let mut scale = vec![0f32; n];
        let mut column_sum = vec![0f32; n];
        for col in 0..n {
            let row = &weight[col * k..(col + 1) * k];
            let max = row.iter().zip(&smoothing).map(|(w, s)| (*w as f64 * s).abs()).fold(0f64, f64::max);
            let s = if max > 0.0 { max / 127.0 } else { 1.0 };
            let mut sum = 0i64;
            for kk in 0..k {
                let q = (row[kk] as f64 * smoothing[kk] / s).round_ties_even().clamp(-127.0, 127.0) as i8;
                quantised[col * k + kk] = q;
                sum += q as i64;
            }
            scale[col] = s as f32;
            column_sum[col] = sum as f32;
        }
        let mut packed = vec![0i8; n * k];
        for block in 0..n / LANES {
            for quad in 0..k / 4 {
                for c in 0..LANES {
                    for b in 0..4 {
                        packed[((block * (k / 4) + quad) * LANES + c) * 4 + b] =
                            quantised[(block * LANES + c) * k + quad * 4 + b];
                    }
                }
            }
        }
        let inverse_smoothing = smoothing.iter().map(|s| (1.0 / s) as f32).collect();
        Self { n, k, packed, scale, column_sum, bias: bias.to_vec(), inverse_smoothing }
    }

    /// 2^-e per input channel: what [`quantise_rows`] multiplies the activations by.
    pub fn inverse_smoothing(&self) -> &[f32] {
        &self.inverse_smoothing
    }
}

/// A Linear layer in bf16 (round to nearest even), accumulated in f32.
#[derive(Debug)]
pub struct Bf16Linear {
    n: usize,
    k: usize,
    /// `[n / 16][k / 2][16][2]`: the layout `vdpbf16ps` reads, one register per 2 inputs.
    packed: Vec<u16>,
    bias: Vec<f32>,
}

impl Bf16Linear {
    /// `weight` is `[n][k]`, PyTorch's Linear layout.
    pub fn new(weight: &[f32], bias: &[f32], n: usize, k: usize) -> Self {
        assert!(n.is_multiple_of(PANEL) && k.is_multiple_of(2) && weight.len() == n * k && bias.len() == n);
        let mut packed = vec![0u16; n * k];
        for block in 0..n / LANES {
            for pair in 0..k / 2 {
                for c in 0..LANES {
                    for b in 0..2 {
                        packed[((block * (k / 2) + pair) * LANES + c) * 2 + b] =
                            to_bf16(weight[(block * LANES + c) * k + pair * 2 + b]);
                    }
                }
            }
        }
        Self { n, k, packed, bias: bias.to_vec() }
    }
}

/// f32 to bf16, rounding to nearest even (what `vcvtne2ps2bf16` does for finite values).
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    let rounding = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

pub fn from_bf16(x: u16) -> f32 {
    f32::from_bits((x as u32) << 16)
}

/// Activation rows quantised to u8, each with its own minimum and step, so that a row's codes
/// do not depend on any other row.
#[derive(Debug, Default)]
pub struct QuantisedRows {
    pub k: usize,
    pub codes: Vec<u8>,
    pub min: Vec<f32>,
    pub step: Vec<f32>,
}

impl QuantisedRows {
    /// Room for `rows` rows (rounded up to whole tiles, the extra rows zero) of `k` values.
    fn reset(&mut self, rows: usize, k: usize) {
        let padded = rows.div_ceil(TILE_ROWS) * TILE_ROWS;
        self.k = k;
        self.codes.clear();
        self.codes.resize(padded * k, 0);
        self.min.clear();
        self.min.resize(padded, 0.0);
        self.step.clear();
        self.step.resize(padded, 0.0);
    }
}

/// Quantises `rows` rows of `x` (row stride `ld`, `k` values each, `k` a multiple of 16) after
/// multiplying them by `inverse_smoothing`: a row's values map linearly from [min, max] onto
/// 0..=255.
/// # Safety
/// The CPU must have the features [`supported`] checks.
#[target_feature(enable = "avx512f,avx512bw")]
pub unsafe fn quantise_rows(x: &[f32], ld: usize, rows: usize, inverse_smoothing: &[f32], out: &mut QuantisedRows) {
    let k = inverse_smoothing.len();
    assert!(k.is_multiple_of(LANES) && (rows == 0 || x.len() >= (rows - 1) * ld + k));
    out.reset(rows, k);
    for r in 0..rows {
        let row = x.as_ptr().add(r * ld);
        let mut lo = _mm512_set1_ps(f32::INFINITY);
        let mut hi = _mm512_set1_ps(f32::NEG_INFINITY);
        for c in (0..k).step_by(LANES) {
            let v = _mm512_mul_ps(_mm512_loadu_ps(row.add(c)), _mm512_loadu_ps(inverse_smoothing.as_ptr().add(c)));
            lo = _mm512_min_ps(lo, v);
            hi = _mm512_max_ps(hi, v);
        }
        let min = _mm512_reduce_min_ps(lo);
        let range = (_mm512_reduce_max_ps(hi) - min).max(1e-20);
        out.min[r] = min;
        out.step[r] = range / 255.0;
        let to_code = _mm512_set1_ps(255.0 / range);
        let minv = _mm512_set1_ps(min);
        let codes = out.codes.as_mut_ptr().add(r * k);
        for c in (0..k).step_by(LANES) {
            let v = _mm512_mul_ps(_mm512_loadu_ps(row.add(c)), _mm512_loadu_ps(inverse_smoothing.as_ptr().add(c)));
            let q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_sub_ps(v, minv), to_code));
            let q = _mm512_min_epi32(_mm512_max_epi32(q, _mm512_setzero_si512()), _mm512_set1_epi32(255));
            _mm512_mask_cvtepi32_storeu_epi8(codes.add(c) as *mut i8, 0xffff, q);
        }
    }
}

/// Where a GEMM's results go, after the bias.
#[derive(Debug)]
pub enum Output<'a> {
    /// f32 rows with stride `ld`.
    F32 { out: &'a mut [f32], ld: usize },
    /// GELU of the result, as bf16 rows with stride `ld`: the next layer's bf16 input.
    GeluBf16 { out: &'a mut [u16], ld: usize },
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn store_result(output: &mut Output, row: usize, col: usize, v: __m512) {
    match output {
        Output::F32 { out, ld } => _mm512_storeu_ps(out.as_mut_ptr().add(row * *ld + col), v),
        Output::GeluBf16 { out, ld } => {
            let g = gelu(v);
            let h = _mm512_cvtneps_pbh(g);
            _mm256_storeu_si256(
                out.as_mut_ptr().add(row * *ld + col) as *mut __m256i,
                std::mem::transmute::<__m256bh, __m256i>(h),
            );
        }
    }
}

/// `rows` rows of `a` times `w`, plus bias, into `output`.
/// # Safety
/// The CPU must have the features [`supported`] checks.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512bf16")]
pub unsafe fn gemm_int8(a: &QuantisedRows, rows: usize, w: &Int8Linear, mut output: Output) {
    assert_eq!(a.k, w.k);
    assert!(a.codes.len() >= rows.div_ceil(TILE_ROWS) * TILE_ROWS * w.k);
    assert!(w.packed.len() == w.n * w.k && w.scale.len() == w.n && w.column_sum.len() == w.n && w.bias.len() == w.n);
    let room = match &output {
        Output::F32 { out, ld } => rows == 0 || out.len() >= (rows - 1) * ld + w.n,
        Output::GeluBf16 { out, ld } => rows == 0 || out.len() >= (rows - 1) * ld + w.n,
    };
    assert!(room, "the output cannot hold {rows} rows of {}", w.n);
    let quads = w.k / 4;
    let block_bytes = w.k * LANES;
    for panel in 0..w.n / PANEL {
        let col = panel * PANEL;
        let b = w.packed.as_ptr().add(2 * panel * block_bytes);
        let scale = [_mm512_loadu_ps(w.scale.as_ptr().add(col)), _mm512_loadu_ps(w.scale.as_ptr().add(col + LANES))];
        let sum =
            [_mm512_loadu_ps(w.column_sum.as_ptr().add(col)), _mm512_loadu_ps(w.column_sum.as_ptr().add(col + LANES))];
        let bias = [_mm512_loadu_ps(w.bias.as_ptr().add(col)), _mm512_loadu_ps(w.bias.as_ptr().add(col + LANES))];
        for row0 in (0..rows).step_by(TILE_ROWS) {
            let a_tile = a.codes.as_ptr().add(row0 * w.k);
            let mut acc = [[_mm512_setzero_si512(); 2]; TILE_ROWS];
            for quad in 0..quads {
                let b0 = _mm512_loadu_si512(b.add(quad * 64) as *const _);
                let b1 = _mm512_loadu_si512(b.add(block_bytes + quad * 64) as *const _);
                for (r, acc) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_epi32((a_tile.add(r * w.k + quad * 4) as *const i32).read_unaligned());
                    acc[0] = _mm512_dpbusd_epi32(acc[0], av, b0);
                    acc[1] = _mm512_dpbusd_epi32(acc[1], av, b1);
                }
            }
            for (r, acc) in acc.iter().enumerate().take(rows - row0) {
                let min = _mm512_set1_ps(a.min[row0 + r]);
                let step = _mm512_set1_ps(a.step[row0 + r]);
                for half in 0..2 {
                    let dot = _mm512_cvtepi32_ps(acc[half]);
                    let v = _mm512_fmadd_ps(
                        scale[half],
                        _mm512_fmadd_ps(step, dot, _mm512_mul_ps(min, sum[half])),
                        bias[half],
                    );
                    store_result(&mut output, row0 + r, col + half * LANES, v);
                }
            }
        }
    }
}

/// `rows` rows of bf16 `a` (stride `lda`, padded to whole tiles) times `w`, plus bias, into f32
/// `out` (stride `ldo`).
/// # Safety
/// The CPU must have the features [`supported`] checks.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub unsafe fn gemm_bf16(a: &[u16], lda: usize, rows: usize, w: &Bf16Linear, out: &mut [f32], ldo: usize) {
    assert!(rows == 0 || a.len() >= (rows.div_ceil(TILE_ROWS) * TILE_ROWS - 1) * lda + w.k);
    assert!(w.packed.len() == w.n * w.k && w.bias.len() == w.n);
    assert!(rows == 0 || out.len() >= (rows - 1) * ldo + w.n);
    let pairs = w.k / 2;
    let block = w.k * LANES;
    for panel in 0..w.n / PANEL {
        let col = panel * PANEL;
        let b = w.packed.as_ptr().add(2 * panel * block);
        let bias = [_mm512_loadu_ps(w.bias.as_ptr().add(col)), _mm512_loadu_ps(w.bias.as_ptr().add(col + LANES))];
        for row0 in (0..rows).step_by(TILE_ROWS) {
            let a_tile = a.as_ptr().add(row0 * lda);
            let mut acc = [[_mm512_setzero_ps(); 2]; TILE_ROWS];
            for pair in 0..pairs {
                let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(pair * 32) as *const _));
                let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(block + pair * 32) as *const _));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(
                        (a_tile.add(r * lda + pair * 2) as *const i32).read_unaligned(),
                    ));
                    acc[0] = _mm512_dpbf16_ps(acc[0], av, b0);
                    acc[1] = _mm512_dpbf16_ps(acc[1], av, b1);
                }
            }
            for (r, acc) in acc.iter().enumerate().take(rows - row0) {
                for half in 0..2 {
                    let v = _mm512_add_ps(acc[half], bias[half]);
                    _mm512_storeu_ps(out.as_mut_ptr().add((row0 + r) * ldo + col + half * LANES), v);
                }
            }
        }
    }
}

/// e^x for x in [-100, 88], within a few ulp: x = n ln 2 + r with ln 2 split in two (Cody and
/// Waite), e^r by its degree-7 Taylor polynomial on |r| <= ln 2 / 2, and 2^n by `scalef`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn exp(x: __m512) -> __m512 {
    let x = _mm512_max_ps(x, _mm512_set1_ps(-100.0));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
        x,
        _mm512_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_145_75), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428_606_8e-6), r);
    let mut p = _mm512_set1_ps(1.0 / 5040.0);
    for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    _mm512_scalef_ps(p, n)
}

/// GELU with the exact erf (BERT's), erf by Abramowitz & Stegun 7.1.26 (error < 1.5e-7).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn gelu(x: __m512) -> __m512 {
    let z = _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
    let az = _mm512_abs_ps(z);
    let t = _mm512_div_ps(_mm512_set1_ps(1.0), _mm512_fmadd_ps(_mm512_set1_ps(0.327_591_1), az, _mm512_set1_ps(1.0)));
    let mut p = _mm512_set1_ps(1.061_405_4);
    for c in [-1.453_152_1f32, 1.421_413_8, -0.284_496_72, 0.254_829_6] {
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(c));
    }
    p = _mm512_mul_ps(p, t);
    let e = exp(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(az, az)));
    let erf_abs = _mm512_fnmadd_ps(p, e, _mm512_set1_ps(1.0));
    // erf is odd: copy z's sign.
    let sign = _mm512_and_si512(_mm512_castps_si512(z), _mm512_set1_epi32(i32::MIN));
    let erf = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(erf_abs), sign));
    _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5), x), _mm512_add_ps(_mm512_set1_ps(1.0), erf))
}

/// Scratch for [`attention`]: one head's keys transposed, and a tile of scores.
#[derive(Debug, Default)]
pub struct AttentionScratch {
    keys_t: Vec<f32>,
    scores: Vec<f32>,
}

/// Self-attention of one unpadded sequence of `len` tokens. `qkv` holds its rows (stride `ld`):
/// queries, keys and values of `heads` heads of `head_dim` each, side by side; the context goes
/// to `ctx` (stride `ldc`, head `h` at columns `h * head_dim..`). `head_dim` must be 32.
/// # Safety
/// The CPU must have the features [`supported`] checks.
#[target_feature(enable = "avx512f,avx512bw")]
pub unsafe fn attention(
    qkv: &[f32],
    ld: usize,
    len: usize,
    heads: usize,
    head_dim: usize,
    ctx: &mut [f32],
    ldc: usize,
    scratch: &mut AttentionScratch,
) {
    assert_eq!(head_dim, 2 * LANES);
    let hidden = heads * head_dim;
    assert!(len > 0 && qkv.len() >= (len - 1) * ld + 3 * hidden && ctx.len() >= (len - 1) * ldc + hidden);
    let width = len.div_ceil(LANES) * LANES;
    scratch.keys_t.clear();
    scratch.keys_t.resize(head_dim * width, 0.0);
    scratch.scores.clear();
    scratch.scores.resize(TILE_ROWS * width, 0.0);
    let scale = _mm512_set1_ps(1.0 / (head_dim as f32).sqrt());
    let q = qkv.as_ptr();
    for h in 0..heads {
        let (q_off, k_off, v_off) = (h * head_dim, hidden + h * head_dim, 2 * hidden + h * head_dim);
        for j in 0..len {
            for d in 0..head_dim {
                *scratch.keys_t.get_unchecked_mut(d * width + j) = *qkv.get_unchecked(j * ld + k_off + d);
            }
        }
        for row0 in (0..len).step_by(TILE_ROWS) {
            let tile = (len - row0).min(TILE_ROWS);
            // Scores of up to eight queries against every key.
            for chunk in (0..width).step_by(LANES) {
                let mut acc = [_mm512_setzero_ps(); TILE_ROWS];
                for d in 0..head_dim {
                    let kv = _mm512_loadu_ps(scratch.keys_t.as_ptr().add(d * width + chunk));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let row = (row0 + r).min(len - 1);
                        *acc = _mm512_fmadd_ps(_mm512_set1_ps(*q.add(row * ld + q_off + d)), kv, *acc);
                    }
                }
                for (r, acc) in acc.iter().enumerate() {
                    _mm512_storeu_ps(scratch.scores.as_mut_ptr().add(r * width + chunk), _mm512_mul_ps(*acc, scale));
                }
            }
            // Softmax over the real keys; the padding columns become 0.
            let tail: __mmask16 = if len.is_multiple_of(LANES) { 0xffff } else { (1u16 << (len % LANES)) - 1 };
            let mut inverse_sums = [0f32; TILE_ROWS];
            for (r, inverse_sum) in inverse_sums.iter_mut().enumerate().take(tile) {
                let s = scratch.scores.as_mut_ptr().add(r * width);
                let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
                for chunk in (0..width).step_by(LANES) {
                    let mask = if chunk + LANES >= width { tail } else { 0xffff };
                    max = _mm512_mask_max_ps(max, mask, max, _mm512_loadu_ps(s.add(chunk)));
                }
                let max = _mm512_set1_ps(_mm512_reduce_max_ps(max));
                let mut sum = _mm512_setzero_ps();
                for chunk in (0..width).step_by(LANES) {
                    let mask = if chunk + LANES >= width { tail } else { 0xffff };
                    let e = _mm512_maskz_mov_ps(mask, exp(_mm512_sub_ps(_mm512_loadu_ps(s.add(chunk)), max)));
                    _mm512_storeu_ps(s.add(chunk), e);
                    sum = _mm512_add_ps(sum, e);
                }
                *inverse_sum = 1.0 / _mm512_reduce_add_ps(sum);
            }
            // Weighted values.
            let mut acc = [[_mm512_setzero_ps(); 2]; TILE_ROWS];
            for j in 0..len {
                let v0 = _mm512_loadu_ps(q.add(j * ld + v_off));
                let v1 = _mm512_loadu_ps(q.add(j * ld + v_off + LANES));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let p = _mm512_set1_ps(*scratch.scores.as_ptr().add(r * width + j));
                    acc[0] = _mm512_fmadd_ps(p, v0, acc[0]);
                    acc[1] = _mm512_fmadd_ps(p, v1, acc[1]);
                }
            }
            for (r, acc) in acc.iter().enumerate().take(tile) {
                let inv = _mm512_set1_ps(inverse_sums[r]);
                let out = ctx.as_mut_ptr().add((row0 + r) * ldc + q_off);
                _mm512_storeu_ps(out, _mm512_mul_ps(acc[0], inv));
                _mm512_storeu_ps(out.add(LANES), _mm512_mul_ps(acc[1], inv));
            }
        }
    }
}

/// `x = LayerNorm(x + delta)` over rows of `gamma.len()` values (a multiple of 16), stride `ld`.
/// # Safety
/// The CPU must have the features [`supported`] checks.
#[target_feature(enable = "avx512f")]
pub unsafe fn add_layer_norm(
    x: &mut [f32],
    delta: &[f32],
    ld: usize,
    rows: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    let k = gamma.len();
    assert!(
        k.is_multiple_of(LANES)
            && (rows == 0 || (x.len() >= (rows - 1) * ld + k && delta.len() >= (rows - 1) * ld + k))
    );
    for r in 0..rows {
        let xr = x.as_mut_ptr().add(r * ld);
        let dr = delta.as_ptr().add(r * ld);
        let mut sum = _mm512_setzero_ps();
        for c in (0..k).step_by(LANES) {
            let v = _mm512_add_ps(_mm512_loadu_ps(xr.add(c)), _mm512_loadu_ps(dr.add(c)));
            _mm512_storeu_ps(xr.add(c), v);
            sum = _mm512_add_ps(sum, v);
        }
        let mean = _mm512_set1_ps(_mm512_reduce_add_ps(sum) / k as f32);
        let mut var = _mm512_setzero_ps();
        for c in (0..k).step_by(LANES) {
            let d = _mm512_sub_ps(_mm512_loadu_ps(xr.add(c)), mean);
            var = _mm512_fmadd_ps(d, d, var);
        }
        let inv = _mm512_set1_ps(1.0 / (_mm512_reduce_add_ps(var) / k as f32 + eps).sqrt());
        for c in (0..k).step_by(LANES) {
            let d = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(xr.add(c)), mean), inv);
            let v = _mm512_fmadd_ps(d, _mm512_loadu_ps(gamma.as_ptr().add(c)), _mm512_loadu_ps(beta.as_ptr().add(c)));
            _mm512_storeu_ps(xr.add(c), v);
        }
    }
}

/// Scalar references of the kernels, for the tests and for reading.
#[cfg(test)]
pub mod reference {
    /// `x · wᵀ + b` with `w` as `[n][k]`.
    pub fn linear(x: &[f32], rows: usize, k: usize, w: &[f32], b: &[f32]) -> Vec<f32> {
        let n = b.len();
        let mut out = vec![0f32; rows * n];
        for r in 0..rows {
            for c in 0..n {
                let dot: f64 = (0..k).map(|i| x[r * k + i] as f64 * w[c * k + i] as f64).sum();
                out[r * n + c] = dot as f32 + b[c];
            }
        }
        out
    }

    pub fn gelu(x: f64) -> f64 {
        0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
    }

    /// erf by its Taylor series (|x| < 3) or 1 beyond: plenty for comparing to f32 kernels.
    pub fn erf(x: f64) -> f64 {
        if x.abs() > 5.0 {
            return x.signum();
        }
        let mut term = x;
        let mut sum = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    pub fn attention(qkv: &[f32], len: usize, heads: usize, head_dim: usize) -> Vec<f32> {
        let hidden = heads * head_dim;
        let mut ctx = vec![0f32; len * hidden];
        for h in 0..heads {
            for i in 0..len {
                let scores: Vec<f64> = (0..len)
                    .map(|j| {
                        (0..head_dim)
                            .map(|d| {
                                qkv[i * 3 * hidden + h * head_dim + d] as f64
                                    * qkv[j * 3 * hidden + hidden + h * head_dim + d] as f64
                            })
                            .sum::<f64>()
                            / (head_dim as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = e.iter().sum();
                for d in 0..head_dim {
                    ctx[i * hidden + h * head_dim + d] = (0..len)
                        .map(|j| e[j] / total * qkv[j * 3 * hidden + 2 * hidden + h * head_dim + d] as f64)
                        .sum::<f64>() as f32;
                }
            }
        }
        ctx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether these tests can run here. `make test` sets `PROSPECTOR_REQUIRE_NATIVE=1`, which
    /// turns a CPU without AVX-512 VNNI/BF16 into a failure instead of a skip.
    fn cpu_runs_the_kernels() -> bool {
        let supported = supported();
        let required = std::env::var("PROSPECTOR_REQUIRE_NATIVE").is_ok_and(|v| v == "1");
        assert!(supported || !required, "this CPU has no AVX-512 VNNI/BF16, and PROSPECTOR_REQUIRE_NATIVE=1");
        if !supported {
            eprintln!("SKIPPED: this CPU has no AVX-512 VNNI/BF16; the native kernels are not tested here");
        }
        supported
    }

    /// A deterministic pseudo-random sequence in [-1, 1).
    fn noise(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn max_error(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn the_int8_gemm_matches_the_product_within_its_quantisation_step() {
        if !cpu_runs_the_kernels() {
            return;
        }
        let (rows, k, n) = (13, 64, 64);
        let mut x = noise(1, rows * k);
        x[5] = 6.0; // an outlier channel, which smoothing by 2^2 tames
        let w = noise(2, n * k);
        let b = noise(3, n);
        let mut exponents = vec![0; k];
        exponents[5] = 2;
        let linear = Int8Linear::new(&w, &b, n, k, &exponents);
        let mut q = QuantisedRows::default();
        let mut out = vec![0f32; rows * n];
        unsafe {
            quantise_rows(&x, k, rows, &linear.inverse_smoothing, &mut q);
            gemm_int8(&q, rows, &linear, Output::F32 { out: &mut out, ld: n });
        }
        // Exactly the product of the dequantised operands, up to f32 rounding...
        let quads = k / 4;
        let mut exact = vec![0f32; rows * n];
        for r in 0..rows {
            for c in 0..n {
                let (block, lane) = (c / LANES, c % LANES);
                let dot: f64 = (0..k)
                    .map(|i| {
                        let weight = linear.packed[((block * quads + i / 4) * LANES + lane) * 4 + i % 4] as f64;
                        let activation = q.min[r] as f64 + q.step[r] as f64 * q.codes[r * k + i] as f64;
                        activation * weight * linear.scale[c] as f64
                    })
                    .sum();
                exact[r * n + c] = dot as f32 + b[c];
            }
        }
        let error = max_error(&out, &exact);
        assert!(error < 1e-4, "max error against the dequantised product {error}");
        // ...and close to the float product: each operand is off by at most half a step.
        let error = max_error(&out, &reference::linear(&x, rows, k, &w, &b));
        assert!(error < 0.3, "max error against the float product {error}");
        // And the kernel is not just returning the bias.
        assert!(max_error(&out, &b.repeat(rows)) > 1.0);
    }

    #[test]
    fn a_rows_codes_do_not_depend_on_the_other_rows() {
        if !cpu_runs_the_kernels() {
            return;
        }
        let k = 32;
        let mut x = noise(4, 3 * k);
        let linear = Int8Linear::new(&noise(5, 32 * k), &[0.0; 32], 32, k, &vec![0; k]);
        let mut alone = QuantisedRows::default();
        let mut together = QuantisedRows::default();
        unsafe {
            quantise_rows(&x[..k], k, 1, &linear.inverse_smoothing, &mut alone);
            x[k..].iter_mut().for_each(|v| *v *= 100.0);
            quantise_rows(&x, k, 3, &linear.inverse_smoothing, &mut together);
        }
        assert_eq!(alone.codes[..k], together.codes[..k]);
        assert_eq!((alone.min[0], alone.step[0]), (together.min[0], together.step[0]));
    }

    #[test]
    fn the_bf16_gemm_with_gelu_input_matches_the_product() {
        if !cpu_runs_the_kernels() {
            return;
        }
        let (rows, k, n) = (11, 96, 32);
        let x = noise(6, rows * k);
        let w = noise(7, n * k);
        let b = noise(8, n);
        let linear = Bf16Linear::new(&w, &b, n, k);
        let padded = rows.div_ceil(TILE_ROWS) * TILE_ROWS;
        let mut a = vec![0u16; padded * k];
        a.iter_mut().zip(&x).for_each(|(a, x)| *a = to_bf16(*x));
        let mut out = vec![0f32; rows * n];
        unsafe { gemm_bf16(&a, k, rows, &linear, &mut out, n) };
        let error = max_error(&out, &reference::linear(&x, rows, k, &w, &b));
        assert!(error < 0.03, "max error {error}");
    }

    #[test]
    fn gelu_in_the_int8_epilogue_matches_erf_gelu() {
        if !cpu_runs_the_kernels() {
            return;
        }
        let (rows, k, n) = (9, 32, 32);
        let x = noise(9, rows * k).iter().map(|v| v * 3.0).collect::<Vec<_>>();
        let w = noise(10, n * k);
        let b = noise(11, n);
        let linear = Int8Linear::new(&w, &b, n, k, &vec![0; k]);
        let mut q = QuantisedRows::default();
        let mut out = vec![0u16; rows * n];
        let mut plain = vec![0f32; rows * n];
        unsafe {
            quantise_rows(&x, k, rows, &linear.inverse_smoothing, &mut q);
            gemm_int8(&q, rows, &linear, Output::GeluBf16 { out: &mut out, ld: n });
            gemm_int8(&q, rows, &linear, Output::F32 { out: &mut plain, ld: n });
        }
        for (g, p) in out.iter().zip(&plain) {
            let expected = reference::gelu(*p as f64) as f32;
            // bf16 keeps 8 significant bits.
            assert!(
                (from_bf16(*g) - expected).abs() <= expected.abs() / 128.0 + 1e-6,
                "{} vs {expected}",
                from_bf16(*g)
            );
        }
    }

    #[test]
    fn attention_matches_softmax_attention_for_every_length_up_to_two_tiles_of_keys() {
        if !cpu_runs_the_kernels() {
            return;
        }
        let (heads, head_dim) = (2, 32);
        let hidden = heads * head_dim;
        let mut scratch = AttentionScratch::default();
        for len in [1, 7, 8, 9, 16, 17, 31, 33] {
            let qkv = noise(len as u64, len * 3 * hidden).iter().map(|v| v * 2.0).collect::<Vec<_>>();
            let mut ctx = vec![0f32; len * hidden];
            unsafe { attention(&qkv, 3 * hidden, len, heads, head_dim, &mut ctx, hidden, &mut scratch) };
            let error = max_error(&ctx, &reference::attention(&qkv, len, heads, head_dim));
            assert!(error < 1e-5, "length {len}: max error {error}");
        }
    }

    #[test]
    fn layer_norm_adds_the_residual_and_normalises() {
        if !cpu_runs_the_kernels() {
            return;
        }
        let k = 48;
        let mut x = noise(12, 2 * k);
        let delta = noise(13, 2 * k);
        let gamma = noise(14, k);
        let beta = noise(15, k);
        let mut expected = vec![0f32; 2 * k];
        for r in 0..2 {
            let v: Vec<f64> = (0..k).map(|c| (x[r * k + c] + delta[r * k + c]) as f64).collect();
            let mean = v.iter().sum::<f64>() / k as f64;
            let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / k as f64;
            for c in 0..k {
                expected[r * k + c] = ((v[c] - mean) / (var + 1e-12).sqrt() * gamma[c] as f64 + beta[c] as f64) as f32;
            }
        }
        unsafe { add_layer_norm(&mut x, &delta, k, 2, &gamma, &beta, 1e-12) };
        assert!(max_error(&x, &expected) < 1e-5);
    }

    #[test]
    fn exp_is_accurate_over_the_softmax_range() {
        if !cpu_runs_the_kernels() {
            return;
        }
        for i in -1600..=200 {
            let x = i as f32 * 0.05;
            let mut out = [0f32; LANES];
            unsafe { _mm512_storeu_ps(out.as_mut_ptr(), exp(_mm512_set1_ps(x))) };
            let expected = (x as f64).exp();
            assert!(((out[0] as f64 - expected) / expected).abs() < 1e-6, "exp({x}) = {} vs {expected}", out[0]);
        }
    }
}
