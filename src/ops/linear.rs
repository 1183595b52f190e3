//! Fully connected layers. A weight larger than one storage binding may span
//! (`GpuContext::max_binding`; 128 MiB on many adapters, while VGG16's first classifier
//! weight is 411 MB) is split into row chunks, each bound and dispatched on its own.

use crate::gpu::{Binding, GpuContext, GpuTensor, Recorder};
use crate::models::layers::Linear;
use crate::ops::conv::Weights;

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
        let row_bytes = (in_f * 4) as u64;
        let rows_per_chunk = ((ctx.max_binding / row_bytes) as usize).clamp(1, out_f);
        let chunks = (0..out_f)
            .step_by(rows_per_chunk)
            .map(|row_offset| {
                let rows = rows_per_chunk.min(out_f - row_offset);
                let data = &l.weight.data[row_offset * in_f..(row_offset + rows) * in_f];
                WeightChunk {
                    row_offset,
                    rows,
                    weight: ctx.upload_slice(&[rows, in_f], data),
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

    fn params(&self, c: &WeightChunk) -> [u32; 4] {
        [self.in_features, self.out_features, c.row_offset, c.rows].map(|v| v as u32)
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
        rec.dispatch(
            "linear",
            &[
                ("RELU", relu as u8 as f64),
                ("POS_WEIGHTS", (weights == Weights::Positive) as u8 as f64),
                ("NEG_WEIGHTS", (weights == Weights::Negative) as u8 as f64),
            ],
            &[
                Binding::read(x),
                Binding::read(&c.weight),
                Binding::read(&l.bias),
                Binding::write(&out),
            ],
            &l.params(c),
            [c.rows as u32, n as u32, 1],
        );
    }
    out
}

/// Gradient w.r.t. the input: `g W` for `g` `[R, out]`, giving `[R, in]`.
pub fn linear_grad(rec: &mut Recorder, g: &GpuTensor, l: &GpuLinear) -> GpuTensor {
    linear_grad_with(rec, g, l, Weights::Signed)
}

/// `g W` or `g pos(W)` (LRP-α1β0), `[R, in]`.
pub fn linear_grad_with(
    rec: &mut Recorder,
    g: &GpuTensor,
    l: &GpuLinear,
    weights: Weights,
) -> GpuTensor {
    let rows = g.shape[0];
    let out = rec.ctx.empty(&[rows, l.in_features]);
    for (i, c) in l.chunks.iter().enumerate() {
        rec.dispatch(
            "linear_grad",
            &[
                ("ACCUMULATE", (i > 0) as u8 as f64),
                ("POS_WEIGHTS", (weights == Weights::Positive) as u8 as f64),
                ("NEG_WEIGHTS", (weights == Weights::Negative) as u8 as f64),
            ],
            &[
                Binding::read(g),
                Binding::read(&c.weight),
                Binding::write(&out),
            ],
            &l.params(c),
            [l.in_features.div_ceil(256) as u32, rows as u32, 1],
        );
    }
    out
}
