//! Elementwise kernels (`shaders/elementwise.wgsl`, and `shaders/residual_rule.wgsl` for
//! the residual splits): ReLU, residual add, batch norm, and the small elementwise steps
//! of the backward rules.

use crate::gpu::{grid_1d, Binding, DType, GpuContext, GpuTensor, Recorder};
use crate::layers::BatchNorm2d;

/// Operation selector of elementwise.wgsl (its `OP` override), each value named there
/// `OP_` + the variant's name in upper snake case (a test checks both agree).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ElementwiseOp {
    Relu = 0,
    Add = 1,
    BatchNorm = 2,
    ReluGrad = 3,
    LiveMaskBatchNorm = 4,
    ZbSum = 5,
    RspShift = 6,
    SplitSum = 7,
    StabDiv = 8,
    Mul = 9,
    LrpBatchNormEps = 10,
    LrpBatchNormPos = 11,
    BatchNormGrad = 12,
}

impl ElementwiseOp {
    #[cfg(test)]
    pub(crate) const ALL: [ElementwiseOp; 13] = {
        use ElementwiseOp::*;
        [
            Relu,
            Add,
            BatchNorm,
            ReluGrad,
            LiveMaskBatchNorm,
            ZbSum,
            RspShift,
            SplitSum,
            StabDiv,
            Mul,
            LrpBatchNormEps,
            LrpBatchNormPos,
            BatchNormGrad,
        ]
    };

    /// Whether the result is stored in the element type of the first input: an
    /// activation (forward), or the relevance or gradient a backward step receives
    /// (so a walk keeps its seed's type; under `--precision f16` RSP's relevance is
    /// f16, the gradients and LRP's and RAP's quotient-driven signals stay f32).
    /// Quotients, sums of split partials and final maps are f32.
    fn stores_like_its_input(self) -> bool {
        use ElementwiseOp::*;
        match self {
            Relu | Add | BatchNorm | ReluGrad | LiveMaskBatchNorm | RspShift | LrpBatchNormEps
            | LrpBatchNormPos | BatchNormGrad => true,
            ZbSum | SplitSum | StabDiv | Mul => false,
        }
    }
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
    elementwise_eps(rec, op, relu, 0.0, out_shape, inputs, layout)
}

/// [`elementwise`] with the LRP stabiliser `eps` of the ops that read it.
pub(crate) fn elementwise_eps(
    rec: &mut Recorder,
    op: ElementwiseOp,
    relu: bool,
    eps: f32,
    out_shape: &[usize],
    inputs: [Option<&GpuTensor>; 3],
    layout: Layout,
) -> GpuTensor {
    let out = if op.stores_like_its_input() {
        rec.ctx
            .empty_as(out_shape, inputs[0].map_or(DType::F32, |a| a.dtype))
    } else {
        rec.ctx.empty(out_shape)
    };
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
        &[
            ("OP", op as u32 as f64),
            ("RELU", relu as u8 as f64),
            ("EPS", eps as f64),
        ],
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

/// LRP's stabilised ratio `r / (z + eps·sign(z))`, 0 where `z = 0` (`eps = 0`: the safe
/// division `sdiv`).
pub fn stab_div(rec: &mut Recorder, r: &GpuTensor, z: &GpuTensor, eps: f32) -> GpuTensor {
    assert_eq!(r.numel(), z.numel(), "stab_div: sizes differ");
    elementwise_eps(
        rec,
        ElementwiseOp::StabDiv,
        false,
        eps,
        &r.shape,
        [Some(r), Some(z), None],
        Layout::nchw(r),
    )
}

/// `a ⊙ b`, shaped like `a`; `b` is broadcast over the `a.shape[0] / b.shape[0]` rows
/// that `a` holds per row of `b`.
pub fn mul(rec: &mut Recorder, a: &GpuTensor, b: &GpuTensor) -> GpuTensor {
    let per_image = b.numel() / b.shape[0];
    assert_eq!(a.numel() / a.shape[0], per_image, "mul: row sizes differ");
    assert_eq!(a.shape[0] % b.shape[0], 0, "mul: row counts do not divide");
    elementwise(
        rec,
        ElementwiseOp::Mul,
        false,
        &a.shape,
        [Some(a), Some(b), None],
        Layout {
            per_image,
            channels: 1,
            hw: 1,
            rows_per_image: a.shape[0] / b.shape[0],
        },
    )
}

/// Batch norm backward w.r.t. its input: `g · scale[ch]`.
pub fn batch_norm_grad(rec: &mut Recorder, g: &GpuTensor, bn: &GpuBatchNorm) -> GpuTensor {
    elementwise(
        rec,
        ElementwiseOp::BatchNormGrad,
        false,
        &g.shape,
        [Some(g), None, Some(&bn.scale_shift)],
        Layout::nchw(g),
    )
}

/// LRP through a batch norm treated as its own affine layer `z = x·scale + shift`:
/// `Some(eps)`: the ε-rule `r · x·scale / stab(z)`; `None`: α1β0, `r · [x·scale > 0]`.
pub fn lrp_batch_norm(
    rec: &mut Recorder,
    r: &GpuTensor,
    x: &GpuTensor,
    bn: &GpuBatchNorm,
    eps: Option<f32>,
) -> GpuTensor {
    let op = match eps {
        Some(_) => ElementwiseOp::LrpBatchNormEps,
        None => ElementwiseOp::LrpBatchNormPos,
    };
    elementwise_eps(
        rec,
        op,
        false,
        eps.unwrap_or(0.0),
        &r.shape,
        [Some(r), Some(x), Some(&bn.scale_shift)],
        Layout::nchw(r),
    )
}

/// How [`residual_split`] shares the relevance of `out = a + b`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ResidualSplit {
    /// RSP: in proportion to `pos(a) + 1e-9` and `pos(b) + 1e-9`.
    Rsp,
    /// LRP-ε: `a / stab(a + b)` and `b / stab(a + b)`.
    Epsilon(f32),
    /// LRP-α1β0: in proportion to `pos(a)` and `pos(b)`.
    Positive,
}

/// Splits the relevance `r` of a residual addition `a + b` into `(R_a, R_b)`.
pub fn residual_split(
    rec: &mut Recorder,
    a: &GpuTensor,
    b: &GpuTensor,
    r: &GpuTensor,
    split: ResidualSplit,
) -> (GpuTensor, GpuTensor) {
    let ra = rec.ctx.empty_as(&r.shape, r.dtype);
    let rb = rec.ctx.empty_as(&r.shape, r.dtype);
    let numel = r.numel();
    let (mode, eps) = match split {
        ResidualSplit::Rsp => (0.0, 0.0),
        ResidualSplit::Epsilon(e) => (1.0, e as f64),
        ResidualSplit::Positive => (2.0, 0.0),
    };
    rec.dispatch(
        "residual_rule",
        &[("MODE", mode), ("EPS", eps)],
        &[
            Binding::read(a),
            Binding::read(b),
            Binding::read(r),
            Binding::write(&ra),
            Binding::write(&rb),
        ],
        &[numel as u32, 0, 0, 0],
        grid_1d(numel),
    );
    (ra, rb)
}

/// The batch-norm rule of RSP and LRP: the relevance passes where the BN input is live
/// (`x · scale ≠ 0`) and is 0 elsewhere.
pub fn live_mask_batch_norm(
    rec: &mut Recorder,
    bn_input: &GpuTensor,
    r: &GpuTensor,
    bn: &GpuBatchNorm,
) -> GpuTensor {
    elementwise(
        rec,
        ElementwiseOp::LiveMaskBatchNorm,
        false,
        &r.shape,
        [Some(r), Some(bn_input), Some(&bn.scale_shift)],
        Layout::nchw(r),
    )
}
