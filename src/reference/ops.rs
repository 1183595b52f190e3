//! Plain-loop float32 kernels on batched NCHW [`Tensor`]s: the building blocks of the
//! CPU reference forward pass, head gradients and RSP rules.
//!
//! Numerics (kept identical everywhere so the oracle is deterministic):
//! - Products are plain `a * b` followed by a separate `+` (Rust never fuses them into
//!   FMAs), accumulated in **float32** in a fixed loop order: convolutions and
//!   transposed convolutions over input channel, then kernel row, then kernel column;
//!   weight gradients row by row (each output row summed into its own float32 partial,
//!   the partials then summed in row order); linear layers over the input index.
//! - Large work is split across threads only by **output** element ranges; every output
//!   element is still computed by one thread in the same order, so results do not
//!   depend on the number of cores.
//! - Whole-tensor reductions used by the RSP rules (normalisation sums, the shift total)
//!   live in `rsp.rs` and accumulate in float64, rounded once to float32.

use std::ops::Range;

use crate::layers::{AvgPool2d, BatchNorm2d, Linear, MaxPool2d};
use crate::tensor::Tensor;

/// Below this many multiply-adds a kernel runs on the calling thread only.
const PARALLEL_WORK: usize = 1 << 18;

/// Calls `f(chunk_index, chunk)` for every `chunk_len`-sized piece of `data`, spreading
/// contiguous runs of chunks over the available cores when `work` is large. Each chunk is
/// written by exactly one call, so the result does not depend on the thread count.
fn for_each_chunk<F>(data: &mut [f32], chunk_len: usize, work: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    if chunk_len == 0 || data.is_empty() {
        return;
    }
    let n_chunks = data.len() / chunk_len;
    let threads = if work < PARALLEL_WORK {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    };
    if threads <= 1 || n_chunks < 2 {
        for (i, chunk) in data.chunks_mut(chunk_len).enumerate() {
            f(i, chunk);
        }
        return;
    }
    let per_thread = n_chunks.div_ceil(threads);
    std::thread::scope(|scope| {
        for (t, group) in data.chunks_mut(per_thread * chunk_len).enumerate() {
            let f = &f;
            scope.spawn(move || {
                for (j, chunk) in group.chunks_mut(chunk_len).enumerate() {
                    f(t * per_thread + j, chunk);
                }
            });
        }
    });
}

/// `(n, c, h, w)` of a 4-D tensor; panics with `what` on another rank.
pub(crate) fn dims4(t: &Tensor, what: &str) -> (usize, usize, usize, usize) {
    assert_eq!(
        t.shape.len(),
        4,
        "{what}: expected a 4-D tensor, got shape {:?}",
        t.shape
    );
    (t.shape[0], t.shape[1], t.shape[2], t.shape[3])
}

/// Output size of a window op along one axis (floor mode).
fn out_len(in_len: usize, kernel: usize, stride: usize, padding: usize) -> usize {
    assert!(
        in_len + 2 * padding >= kernel && stride > 0,
        "window of {kernel} (stride {stride}, padding {padding}) does not fit an input of {in_len}"
    );
    (in_len + 2 * padding - kernel) / stride + 1
}

/// Output positions `o` (within `0..out_len`) whose input index
/// `o * stride + tap - padding` lies inside `0..in_len`.
fn valid_range(
    in_len: usize,
    out_len: usize,
    stride: usize,
    padding: usize,
    tap: usize,
) -> Range<usize> {
    let lo = if padding > tap {
        (padding - tap).div_ceil(stride)
    } else {
        0
    };
    let hi = match (in_len + padding).checked_sub(tap + 1) {
        Some(last) => (last / stride + 1).min(out_len),
        None => 0,
    };
    lo..hi.max(lo)
}

/// 2-D cross-correlation `y[n,o] = bias[o] + Σ_{i,u,v} w[o,i,u,v] · x[n,i,·s+u−p,·s+v−p]`
/// with zero padding. `x` is `[N, I, H, W]`, `w` is `[O, I, kh, kw]`; returns `[N, O, Ho, Wo]`.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&[f32]>,
    stride: usize,
    padding: usize,
) -> Tensor {
    let (n, ci, h, wd) = dims4(x, "conv2d input");
    let (co, wci, kh, kw) = dims4(w, "conv2d weight");
    assert_eq!(
        ci, wci,
        "conv2d: input has {ci} channels, weight expects {wci}"
    );
    if let Some(b) = bias {
        assert_eq!(b.len(), co, "conv2d: bias length");
    }
    let (ho, wo) = (
        out_len(h, kh, stride, padding),
        out_len(wd, kw, stride, padding),
    );
    let plane = ho * wo;
    let mut out = vec![0.0f32; n * co * plane];
    let work = n * co * ci * kh * kw * plane;
    for_each_chunk(&mut out, plane, work, |idx, dst| {
        let (img, o) = (idx / co, idx % co);
        dst.fill(bias.map_or(0.0, |b| b[o]));
        let xi = &x.data[img * ci * h * wd..(img + 1) * ci * h * wd];
        for i in 0..ci {
            let xc = &xi[i * h * wd..(i + 1) * h * wd];
            for u in 0..kh {
                let rows = valid_range(h, ho, stride, padding, u);
                for v in 0..kw {
                    let wv = w.data[((o * ci + i) * kh + u) * kw + v];
                    let cols = valid_range(wd, wo, stride, padding, v);
                    if cols.is_empty() {
                        continue;
                    }
                    for oy in rows.clone() {
                        let iy = oy * stride + u - padding;
                        let src = &xc[iy * wd..(iy + 1) * wd];
                        let d = &mut dst[oy * wo + cols.start..oy * wo + cols.end];
                        let first = cols.start * stride + v - padding;
                        let s = src[first..].iter().step_by(stride);
                        for (a, b) in d.iter_mut().zip(s) {
                            *a += wv * *b;
                        }
                    }
                }
            }
        }
    });
    Tensor::new(vec![n, co, ho, wo], out)
}

/// Adjoint of [`conv2d`] (no bias) with respect to its input: the transposed convolution
/// `dx[n,i,y,x] = Σ_{o,u,v : y = oy·s+u−p, x = ox·s+v−p} w[o,i,u,v] · s[n,o,oy,ox]`.
/// `s` is `[N, O, Ho, Wo]`, `w` is `[O, I, kh, kw]`; returns `[N, I, in_hw.0, in_hw.1]`
/// (input positions no window covers get 0).
pub fn conv2d_dgrad(
    s: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
    in_hw: (usize, usize),
) -> Tensor {
    let (n, co, ho, wo) = dims4(s, "conv2d_dgrad output-side tensor");
    let (wco, ci, kh, kw) = dims4(w, "conv2d_dgrad weight");
    assert_eq!(co, wco, "conv2d_dgrad: {co} channels vs weight's {wco}");
    let (h, wd) = in_hw;
    assert_eq!(
        (
            out_len(h, kh, stride, padding),
            out_len(wd, kw, stride, padding)
        ),
        (ho, wo),
        "conv2d_dgrad: input size {in_hw:?} does not map to {ho}x{wo}"
    );
    let plane = h * wd;
    let mut out = vec![0.0f32; n * ci * plane];
    let work = n * co * ci * kh * kw * ho * wo;
    for_each_chunk(&mut out, plane, work, |idx, dst| {
        let (img, i) = (idx / ci, idx % ci);
        let si = &s.data[img * co * ho * wo..(img + 1) * co * ho * wo];
        for o in 0..co {
            let sc = &si[o * ho * wo..(o + 1) * ho * wo];
            for u in 0..kh {
                let rows = valid_range(h, ho, stride, padding, u);
                for v in 0..kw {
                    let wv = w.data[((o * ci + i) * kh + u) * kw + v];
                    let cols = valid_range(wd, wo, stride, padding, v);
                    if cols.is_empty() {
                        continue;
                    }
                    for oy in rows.clone() {
                        let iy = oy * stride + u - padding;
                        let src = &sc[oy * wo + cols.start..oy * wo + cols.end];
                        let first = cols.start * stride + v - padding;
                        let d = dst[iy * wd + first..(iy + 1) * wd]
                            .iter_mut()
                            .step_by(stride);
                        for (a, b) in d.zip(src) {
                            *a += wv * *b;
                        }
                    }
                }
            }
        }
    });
    Tensor::new(vec![n, ci, h, wd], out)
}

/// Adjoint of [`conv2d`] with respect to its weight, **per image** (not summed over the
/// batch): `g[n,o,i,u,v] = Σ_{oy,ox} s[n,o,oy,ox] · x[n,i,oy·s+u−p,ox·s+v−p]`
/// (out-of-range reads are 0). `x` is `[N, I, H, W]`, `s` is `[N, O, Ho, Wo]`;
/// returns `[N, O, I, kh, kw]`.
pub fn conv2d_wgrad(
    x: &Tensor,
    s: &Tensor,
    kh: usize,
    kw: usize,
    stride: usize,
    padding: usize,
) -> Tensor {
    let (n, ci, h, wd) = dims4(x, "conv2d_wgrad input");
    let (sn, co, ho, wo) = dims4(s, "conv2d_wgrad output-side tensor");
    assert_eq!(n, sn, "conv2d_wgrad: batch sizes differ");
    assert_eq!(
        (
            out_len(h, kh, stride, padding),
            out_len(wd, kw, stride, padding)
        ),
        (ho, wo),
        "conv2d_wgrad: input {h}x{wd} does not map to {ho}x{wo}"
    );
    let chunk = ci * kh * kw;
    let mut out = vec![0.0f32; n * co * chunk];
    let work = n * co * ci * kh * kw * ho * wo;
    for_each_chunk(&mut out, chunk, work, |idx, dst| {
        let (img, o) = (idx / co, idx % co);
        let sc = &s.data[(img * co + o) * ho * wo..(img * co + o + 1) * ho * wo];
        let xi = &x.data[img * ci * h * wd..(img + 1) * ci * h * wd];
        for i in 0..ci {
            let xc = &xi[i * h * wd..(i + 1) * h * wd];
            for u in 0..kh {
                let rows = valid_range(h, ho, stride, padding, u);
                for v in 0..kw {
                    let cols = valid_range(wd, wo, stride, padding, v);
                    let mut acc = 0.0f32;
                    if !cols.is_empty() {
                        let first = cols.start * stride + v - padding;
                        for oy in rows.clone() {
                            let iy = oy * stride + u - padding;
                            let src = &sc[oy * wo + cols.start..oy * wo + cols.end];
                            let xr = xc[iy * wd + first..(iy + 1) * wd].iter().step_by(stride);
                            let mut row = 0.0f32;
                            for (a, b) in src.iter().zip(xr) {
                                row += *a * *b;
                            }
                            acc += row;
                        }
                    }
                    dst[(i * kh + u) * kw + v] = acc;
                }
            }
        }
    });
    Tensor::new(vec![n, co, ci, kh, kw], out)
}

/// Fully connected layer `y[n,o] = Σ_i W[o,i] x[n,i] + b[o]`; `x` is `[N, in]`
/// (any shape whose trailing dimensions multiply to `in`), returns `[N, out]`.
pub fn linear(x: &Tensor, l: &Linear) -> Tensor {
    let (out_f, in_f) = (l.out_features(), l.in_features());
    let n = x.shape[0];
    assert_eq!(
        x.numel(),
        n * in_f,
        "linear: input {:?} does not flatten to [{n}, {in_f}]",
        x.shape
    );
    let mut out = vec![0.0f32; n * out_f];
    for img in 0..n {
        let xi = &x.data[img * in_f..(img + 1) * in_f];
        for o in 0..out_f {
            let wr = &l.weight.data[o * in_f..(o + 1) * in_f];
            let mut acc = 0.0f32;
            for (a, b) in wr.iter().zip(xi) {
                acc += *a * *b;
            }
            out[img * out_f + o] = acc + l.bias[o];
        }
    }
    Tensor::new(vec![n, out_f], out)
}

/// Gradient of [`linear`] with respect to its input: `gx[n,i] = Σ_o g[n,o] W[o,i]`
/// (summed over `o` in order); `g` is `[N, out]`, returns `[N, in]`.
pub fn linear_backward_input(g: &Tensor, l: &Linear) -> Tensor {
    let (out_f, in_f) = (l.out_features(), l.in_features());
    let n = g.shape[0];
    assert_eq!(
        g.numel(),
        n * out_f,
        "linear_backward_input: gradient shape"
    );
    let mut out = vec![0.0f32; n * in_f];
    for img in 0..n {
        let dst = &mut out[img * in_f..(img + 1) * in_f];
        for o in 0..out_f {
            let go = g.data[img * out_f + o];
            let wr = &l.weight.data[o * in_f..(o + 1) * in_f];
            for (d, w) in dst.iter_mut().zip(wr) {
                *d += go * *w;
            }
        }
    }
    Tensor::new(vec![n, in_f], out)
}

/// `max(x, 0)` elementwise (exact zeros stay exact).
pub fn relu(x: &Tensor) -> Tensor {
    map(x, |v| if v > 0.0 { v } else { 0.0 })
}

/// Batch norm in eval mode: `y = (x − mean) / sqrt(var + eps) · γ + β` per channel.
pub fn batch_norm(x: &Tensor, bn: &BatchNorm2d) -> Tensor {
    let (n, c, h, w) = dims4(x, "batch_norm input");
    assert_eq!(bn.gamma.len(), c, "batch_norm: channel count");
    let mut out = x.data.clone();
    for img in 0..n {
        for ch in 0..c {
            let denom = (bn.running_var[ch] + bn.eps).sqrt();
            let (mean, gamma, beta) = (bn.running_mean[ch], bn.gamma[ch], bn.beta[ch]);
            let start = (img * c + ch) * h * w;
            for v in &mut out[start..start + h * w] {
                *v = (*v - mean) / denom * gamma + beta;
            }
        }
    }
    Tensor::new(x.shape.clone(), out)
}

/// Flat index (within one channel plane) of the maximum of `plane + eps` in the pooling
/// window of output cell `(oy, ox)`: padding never wins, ties go to the first position
/// in row-major window order. `None` only if the window lies entirely in the padding.
fn window_argmax(
    plane: &[f32],
    (h, w): (usize, usize),
    pool: &MaxPool2d,
    (oy, ox): (usize, usize),
    eps: f32,
) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for ky in 0..pool.kernel {
        let iy = oy * pool.stride + ky;
        if iy < pool.padding || iy - pool.padding >= h {
            continue;
        }
        let iy = iy - pool.padding;
        for kx in 0..pool.kernel {
            let ix = ox * pool.stride + kx;
            if ix < pool.padding || ix - pool.padding >= w {
                continue;
            }
            let idx = iy * w + ix - pool.padding;
            let v = plane[idx] + eps;
            if best.is_none_or(|(_, b)| v > b) {
                best = Some((idx, v));
            }
        }
    }
    best.map(|(idx, _)| idx)
}

/// Max pooling (floor or ceil mode); padding never wins, ties go to the first position in
/// row-major window order.
pub fn max_pool2d(x: &Tensor, pool: &MaxPool2d) -> Tensor {
    let (n, c, h, w) = dims4(x, "max_pool2d input");
    let (ho, wo) = pool.out_hw(h, w);
    let mut out = vec![0.0f32; n * c * ho * wo];
    for p in 0..n * c {
        let plane = &x.data[p * h * w..(p + 1) * h * w];
        for oy in 0..ho {
            for ox in 0..wo {
                out[(p * ho + oy) * wo + ox] =
                    window_argmax(plane, (h, w), pool, (oy, ox), 0.0).map_or(0.0, |i| plane[i]);
            }
        }
    }
    Tensor::new(vec![n, c, ho, wo], out)
}

/// Routes each output cell's `r` to the argmax of `x + eps` in its window (first-wins ties,
/// padding never wins), summing where windows overlap. Returns a tensor shaped like `x`.
/// `eps = 0` gives the max-pool gradient, `eps = 1e-9` the RSP winner-takes-all rule.
pub fn max_pool2d_route(x: &Tensor, r: &Tensor, pool: &MaxPool2d, eps: f32) -> Tensor {
    let (n, c, h, w) = dims4(x, "max_pool2d_route input");
    let (ho, wo) = pool.out_hw(h, w);
    assert_eq!(
        r.shape,
        vec![n, c, ho, wo],
        "max_pool2d_route: relevance shape"
    );
    let mut out = vec![0.0f32; n * c * h * w];
    for p in 0..n * c {
        let plane = &x.data[p * h * w..(p + 1) * h * w];
        for oy in 0..ho {
            for ox in 0..wo {
                if let Some(i) = window_argmax(plane, (h, w), pool, (oy, ox), eps) {
                    out[p * h * w + i] += r.data[(p * ho + oy) * wo + ox];
                }
            }
        }
    }
    Tensor::new(x.shape.clone(), out)
}

/// Average pooling (adaptive or windowed, [`AvgPool2d::bin`]); each cell is the float32
/// sum of its range in row-major order, divided by its count along the height and then
/// by its count along the width.
pub fn avg_pool2d(x: &Tensor, pool: &AvgPool2d) -> Tensor {
    let (n, c, h, w) = dims4(x, "avg_pool2d input");
    let (oh, ow) = pool.out_hw(h, w);
    let mut out = vec![0.0f32; n * c * oh * ow];
    for p in 0..n * c {
        let plane = &x.data[p * h * w..(p + 1) * h * w];
        for oy in 0..oh {
            let (y0, y1, cy) = pool.bin(oy, h, oh);
            for ox in 0..ow {
                let (x0, x1, cx) = pool.bin(ox, w, ow);
                let mut sum = 0.0f32;
                for iy in y0..y1 {
                    for ix in x0..x1 {
                        sum += plane[iy * w + ix];
                    }
                }
                out[(p * oh + oy) * ow + ox] = sum / cy as f32 / cx as f32;
            }
        }
    }
    Tensor::new(vec![n, c, oh, ow], out)
}

/// Gradient of [`avg_pool2d`]: every cell's `g / count_h / count_w` is added to each
/// input position of its range. Returns `[N, C, in_hw.0, in_hw.1]`.
pub fn avg_pool2d_backward(g: &Tensor, pool: &AvgPool2d, in_hw: (usize, usize)) -> Tensor {
    let (n, c, oh, ow) = dims4(g, "avg_pool2d_backward gradient");
    let (h, w) = in_hw;
    let mut out = vec![0.0f32; n * c * h * w];
    for p in 0..n * c {
        for oy in 0..oh {
            let (y0, y1, cy) = pool.bin(oy, h, oh);
            for ox in 0..ow {
                let (x0, x1, cx) = pool.bin(ox, w, ow);
                let share = g.data[(p * oh + oy) * ow + ox] / cy as f32 / cx as f32;
                for iy in y0..y1 {
                    for ix in x0..x1 {
                        out[p * h * w + iy * w + ix] += share;
                    }
                }
            }
        }
    }
    Tensor::new(vec![n, c, h, w], out)
}

/// `inputs` (`[N, C_i, ·]`) side by side along the channels.
pub fn concat_channels(inputs: &[&Tensor]) -> Tensor {
    let n = inputs[0].shape[0];
    let plane: usize = inputs[0].shape[2..].iter().product();
    let channels: usize = inputs.iter().map(|t| t.shape[1]).sum();
    let mut data = Vec::with_capacity(n * channels * plane);
    for b in 0..n {
        for t in inputs {
            let per_image = t.shape[1] * plane;
            data.extend_from_slice(&t.data[b * per_image..(b + 1) * per_image]);
        }
    }
    let mut shape = inputs[0].shape.clone();
    shape[1] = channels;
    Tensor::new(shape, data)
}

/// Channels `offset .. offset + count` of `t` `[N, C, ·]`.
pub fn channel_slice(t: &Tensor, offset: usize, count: usize) -> Tensor {
    let (n, c) = (t.shape[0], t.shape[1]);
    let plane: usize = t.shape[2..].iter().product();
    let mut data = Vec::with_capacity(n * count * plane);
    for b in 0..n {
        let from = (b * c + offset) * plane;
        data.extend_from_slice(&t.data[from..from + count * plane]);
    }
    let mut shape = t.shape.clone();
    shape[1] = count;
    Tensor::new(shape, data)
}

/// Elementwise sum of two equally shaped tensors.
pub fn add(a: &Tensor, b: &Tensor) -> Tensor {
    zip(a, b, |x, y| x + y)
}

/// Host softmax and top-k: the oracle uses the library's (they are host helpers, not
/// GPU kernels under test; the GPU's `softmax`/`top_k` shaders are checked against them).
pub use crate::tensor::{softmax, top_k};

/// Applies `f` to every element.
pub(crate) fn map(x: &Tensor, f: impl Fn(f32) -> f32) -> Tensor {
    Tensor::new(x.shape.clone(), x.data.iter().map(|&v| f(v)).collect())
}

/// Combines two equally shaped tensors elementwise.
pub(crate) fn zip(a: &Tensor, b: &Tensor, f: impl Fn(f32, f32) -> f32) -> Tensor {
    assert_eq!(a.shape, b.shape, "elementwise op on different shapes");
    Tensor::new(
        a.shape.clone(),
        a.data.iter().zip(&b.data).map(|(&x, &y)| f(x, y)).collect(),
    )
}

/// `a / b` where `b ≠ 0`, `0` where `b == 0` (exact zero test), as the authors'
/// `safe_divide`.
pub fn sdiv(a: f32, b: f32) -> f32 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

/// Float64 sum of a slice, rounded to float32.
pub fn sum32(v: &[f32]) -> f32 {
    v.iter().map(|&x| x as f64).sum::<f64>() as f32
}

/// Runs `f` on every image of the batch and concatenates the results.
pub fn per_image(n: usize, f: impl Fn(usize) -> Tensor) -> Tensor {
    Tensor::concat0(&(0..n).map(f).collect::<Vec<_>>())
}

/// Image `i` of a batch as a `[1, ...]` tensor.
pub fn image(t: &Tensor, i: usize) -> Tensor {
    t.slice0(i..i + 1)
}
