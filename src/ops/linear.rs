//! Fully connected layers as GEMM ops (`shaders/linear_fwd.wgsl`,
//! `shaders/linear_grad.wgsl`), run with the variant `ops::gemm` selects, tuned like
//! the convolutions. A weight larger than one storage binding may span
//! (`GpuContext::max_binding`; 128 MiB on many adapters, while VGG16's first classifier
//! weight is 411 MB) is split into row chunks, each bound and dispatched on its own.

use crate::gpu::{Binding, GpuContext, GpuTensor, Recorder};
use crate::layers::Linear;

use crate::ops::elementwise::{elementwise, ElementwiseOp, Layout};
use crate::ops::gemm::{self, GemmOp, GemmProblem, Weights};

/// One row-range of a linear weight.
pub struct WeightChunk {
    pub row_offset: usize,
    pub rows: usize,
    /// `[rows, in_features]`
    pub weight: GpuTensor,
}

pub struct GpuLinear {
    pub in_features: usize,
    pub out_features: usize,
    pub chunks: Vec<WeightChunk>,
    pub bias: GpuTensor,
}

impl GpuLinear {
    pub fn upload(ctx: &GpuContext, l: &Linear) -> Self {
        let (out_f, in_f) = (l.out_features(), l.in_features());
        let row_bytes = in_f as u64 * ctx.weight_dtype.bytes();
        let rows_per_chunk = ((ctx.max_binding / row_bytes) as usize).clamp(1, out_f);
        let chunks = (0..out_f)
            .step_by(rows_per_chunk)
            .map(|row_offset| {
                let rows = rows_per_chunk.min(out_f - row_offset);
                let data = &l.weight.data[row_offset * in_f..(row_offset + rows) * in_f];
                WeightChunk {
                    row_offset,
                    rows,
                    weight: ctx.upload_weights(&[rows, in_f], data),
                }
            })
            .collect();
        GpuLinear {
            in_features: in_f,
            out_features: out_f,
            chunks,
            bias: ctx.upload_slice(&[out_f], &l.bias),
        }
    }
}

/// `x W^T + b` for `x` `[N, in]` (any trailing shape that flattens to `in`),
/// optionally followed by ReLU.
pub fn linear(rec: &mut Recorder, x: &GpuTensor, l: &GpuLinear, relu: bool) -> GpuTensor {
    linear_with(rec, x, l, relu, Weights::Signed)
}

/// The pre-activation `z` of a linear layer with the given [`Weights`], `[N, out]`.
pub fn linear_z(rec: &mut Recorder, x: &GpuTensor, l: &GpuLinear, weights: Weights) -> GpuTensor {
    linear_with(rec, x, l, false, weights)
}

fn linear_with(
    rec: &mut Recorder,
    x: &GpuTensor,
    l: &GpuLinear,
    relu: bool,
    weights: Weights,
) -> GpuTensor {
    let n = x.shape[0];
    assert_eq!(
        x.numel() / n,
        l.in_features,
        "linear: input has the wrong feature count"
    );
    let out = rec.ctx.empty(&[n, l.out_features]);
    for c in &l.chunks {
        let params = [
            l.in_features,
            l.out_features,
            c.row_offset,
            c.rows,
            n,
            0,
            0,
            0,
        ];
        let bindings = [
            Binding::read(x),
            Binding::read(&c.weight),
            Binding::read(&l.bias),
            rec.unused(),
            Binding::write(&out),
        ];
        gemm::dispatch(
            rec,
            &GemmProblem {
                op: GemmOp::LinearForward {
                    relu,
                    weights,
                    in_features: l.in_features,
                },
                bindings: &bindings,
                params: &params.map(|v| v as u32),
                mnz: (c.rows, n, 1),
                splits: 1,
            },
        );
    }
    out
}

/// Gradient w.r.t. the input: `g W` for `g` `[R, out]`, giving `[R, in]`.
pub fn linear_grad(rec: &mut Recorder, g: &GpuTensor, l: &GpuLinear) -> GpuTensor {
    linear_grad_with(rec, g, l, Weights::Signed)
}

/// Threads a linear gradient should offer to keep a large GPU busy (VGG16's first
/// classifier layer at batch 1 has only 25088 without splitting its rows).
const LINEAR_GRAD_THREADS: usize = 256 * 1024;
/// Fewest weight rows one split of a linear gradient walks.
const LINEAR_GRAD_MIN_ROWS: usize = 64;

/// Row groups per weight chunk for a linear gradient of `rows` gradient rows: enough
/// threads for a large GPU, at least [`LINEAR_GRAD_MIN_ROWS`] weight rows per group,
/// and partials that fit one storage binding.
pub fn linear_grad_rows_per_split(l: &GpuLinear, rows: usize, max_binding: u64) -> usize {
    let threads = l.in_features.div_ceil(256) * 256 * rows;
    let wanted = LINEAR_GRAD_THREADS.div_ceil(threads.max(1));
    let by_rows = (l.out_features / LINEAR_GRAD_MIN_ROWS).max(1);
    let by_memory = (max_binding / (rows * l.in_features * 4).max(1) as u64).max(1) as usize;
    let splits = wanted.min(by_rows).min(by_memory).max(1);
    l.out_features.div_ceil(splits).max(1)
}

/// `g W` or `g pos(W)` (LRP-α1β0), `[R, in]`.
pub fn linear_grad_with(
    rec: &mut Recorder,
    g: &GpuTensor,
    l: &GpuLinear,
    weights: Weights,
) -> GpuTensor {
    let rows = g.shape[0];
    let per_split = linear_grad_rows_per_split(l, rows, rec.ctx.max_binding);
    let splits: Vec<usize> = l
        .chunks
        .iter()
        .map(|c| c.rows.div_ceil(per_split))
        .collect();
    let total: usize = splits.iter().sum();
    let partial = rec.ctx.empty(&[rows, total, l.in_features]);
    let mut base = 0;
    for (c, &n_split) in l.chunks.iter().zip(&splits) {
        let params = [
            l.in_features,
            l.out_features,
            c.row_offset,
            c.rows,
            rows,
            n_split,
            base,
            total,
        ];
        let bindings = [
            Binding::read(g),
            Binding::read(&c.weight),
            rec.unused(),
            rec.unused(),
            Binding::write(&partial),
        ];
        gemm::dispatch(
            rec,
            &GemmProblem {
                op: GemmOp::LinearGrad {
                    weights,
                    rows: c.rows,
                },
                bindings: &bindings,
                params: &params.map(|v| v as u32),
                mnz: (l.in_features, rows, 1),
                splits: n_split,
            },
        );
        base += n_split;
    }
    if total == 1 {
        return partial.reshaped(&[rows, l.in_features]);
    }
    elementwise(
        rec,
        ElementwiseOp::SplitSum,
        false,
        &[rows, l.in_features],
        [Some(&partial), None, None],
        Layout {
            per_image: l.in_features,
            channels: 1,
            hw: 1,
            rows_per_image: total,
        },
    )
}
