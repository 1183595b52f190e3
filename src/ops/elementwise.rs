//! Elementwise kernels (`shaders/elementwise.wgsl`): ReLU, residual add, batch norm,
//! and the small elementwise steps of the backward rules.

use crate::gpu::{grid_1d, Binding, GpuContext, GpuTensor, Recorder};
use crate::models::layers::BatchNorm2d;

/// Operation selector of elementwise.wgsl (its `OP` override).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ElementwiseOp {
    Relu = 0,
    Add = 1,
    BatchNorm = 2,
    ReluGrad = 3,
    RspBatchNorm = 4,
    ZbSum = 5,
    RspShift = 6,
    SplitSum = 7,
}

/// Shape facts the kernel needs besides the element count.
#[derive(Clone, Copy, Default)]
pub(crate) struct Layout {
    pub per_image: usize,
    pub channels: usize,
    pub hw: usize,
    pub rows_per_image: usize,
}

impl Layout {
    pub fn nchw(t: &GpuTensor) -> Self {
        let c = t.shape.get(1).copied().unwrap_or(1);
        let hw: usize = t.shape.iter().skip(2).product();
        Layout {
            per_image: c * hw,
            channels: c,
            hw: hw.max(1),
            rows_per_image: 1,
        }
    }
}

pub(crate) fn elementwise(
    rec: &mut Recorder,
    op: ElementwiseOp,
    relu: bool,
    out_shape: &[usize],
    inputs: [Option<&GpuTensor>; 3],
    layout: Layout,
) -> GpuTensor {
    let out = rec.ctx.empty(out_shape);
    let numel = out.numel();
    let unused = rec.unused();
    let [a, b, c] = inputs.map(|t| t.map(Binding::read).unwrap_or(unused));
    let bindings = [a, b, c, Binding::write(&out)];
    let params = [
        numel as u32,
        layout.per_image.max(1) as u32,
        layout.channels.max(1) as u32,
        layout.hw.max(1) as u32,
        layout.rows_per_image.max(1) as u32,
        0,
        0,
        0,
    ];
    rec.dispatch(
        "elementwise",
        &[("OP", op as u32 as f64), ("RELU", relu as u8 as f64)],
        &bindings,
        &params,
        grid_1d(numel),
    );
    out
}

/// `max(x, 0)`.
pub fn relu(rec: &mut Recorder, x: &GpuTensor) -> GpuTensor {
    elementwise(
        rec,
        ElementwiseOp::Relu,
        false,
        &x.shape,
        [Some(x), None, None],
        Layout::nchw(x),
    )
}

/// `a + b` (residual add), optionally followed by ReLU.
pub fn add(rec: &mut Recorder, a: &GpuTensor, b: &GpuTensor, relu: bool) -> GpuTensor {
    assert_eq!(a.shape, b.shape, "add: shapes differ");
    elementwise(
        rec,
        ElementwiseOp::Add,
        relu,
        &a.shape,
        [Some(a), Some(b), None],
        Layout::nchw(a),
    )
}

/// Batch norm's folded per-channel affine map on the GPU: `[scale (C) | shift (C)]`.
pub struct GpuBatchNorm {
    pub channels: usize,
    pub scale_shift: GpuTensor,
}

impl GpuBatchNorm {
    pub fn upload(ctx: &GpuContext, bn: &BatchNorm2d) -> Self {
        let (scale, shift) = bn.scale_shift();
        let mut packed = scale;
        packed.extend(shift);
        GpuBatchNorm {
            channels: bn.gamma.len(),
            scale_shift: ctx.upload_slice(&[packed.len()], &packed),
        }
    }
}

/// Batch norm in eval mode, optionally followed by ReLU.
pub fn batch_norm(rec: &mut Recorder, x: &GpuTensor, bn: &GpuBatchNorm, relu: bool) -> GpuTensor {
    assert_eq!(x.shape[1], bn.channels, "batch_norm: channel count differs");
    elementwise(
        rec,
        ElementwiseOp::BatchNorm,
        relu,
        &x.shape,
        [Some(x), None, Some(&bn.scale_shift)],
        Layout::nchw(x),
    )
}

/// ReLU backward: `g · [act > 0]`, where `g` holds `rows_per_image` rows (gradient
/// seeds) for each image of `act`.
pub fn relu_grad(
    rec: &mut Recorder,
    g: &GpuTensor,
    act: &GpuTensor,
    rows_per_image: usize,
) -> GpuTensor {
    let per_image = act.numel() / act.shape[0];
    elementwise(
        rec,
        ElementwiseOp::ReluGrad,
        false,
        &g.shape,
        [Some(g), Some(act), None],
        Layout {
            per_image,
            channels: 1,
            hw: 1,
            rows_per_image,
        },
    )
}
