//! RSP's own GPU ops: the initial relevance (spec §2) and the sectional rule for hidden
//! convolutions (spec §3, "the core RSP rule"): the sections' channel attribution maps (weight gradients in
//! [`ConvMode::Sections`]), the relative contributions and sectional redistribution
//! (a forward and a transposed convolution in that mode) and the purging shift. The
//! layer's trained weights do not enter; only its geometry does.

use super::conv::{conv_gemm, dgrad_gemm, wgrad_gemm, ConvMode, ConvShape, GemmOp, Weights};
use super::elementwise::{elementwise, ElementwiseOp, Layout};
use super::reduce::sum_and_count_nonzero;
use crate::gpu::{Binding, GpuTensor, Recorder};
use crate::layers::ConvGeometry;

/// How the initial relevance is formed at the explanation layer (rsp_init.wgsl's
/// `MODE`, named alike there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitialRelevance {
    /// The max-normalised Grad-CAM of the target (spec §2a).
    GradCam = 0,
    /// The relative split of the `k` classes' normalised maps (spec §2b).
    Comparative = 1,
}

/// RSP's initial relevance from A and the head gradients of the `k` classes per image
/// (spec §2).
pub fn initial_relevance(
    rec: &mut Recorder,
    act: &GpuTensor,
    grad: &GpuTensor,
    k: usize,
    init: InitialRelevance,
) -> GpuTensor {
    let (n, c, h, w) = (act.shape[0], act.shape[1], act.shape[2], act.shape[3]);
    let scratch = rec.ctx.empty(&grad.shape);
    let out = rec.ctx.empty_activation(&act.shape);
    rec.dispatch(
        "rsp_init",
        &[("MODE", init as u32 as f64)],
        &[
            Binding::read(act),
            Binding::read(grad),
            Binding::write(&scratch),
            Binding::write(&out),
        ],
        &[c as u32, (h * w) as u32, k as u32, 0],
        [n as u32, 1, 1],
    );
    out
}

/// Hidden convolution (spec §3, "the core RSP rule"): channel attribution maps with
/// purging, relative contributions, sectional redistribution and hostile propagation,
/// then `2·(C⁺ − C⁻)` and the purging shift — or, for 1×1 kernels, `C⁺ − C⁻` alone.
/// The layer's trained weights do not enter; only its geometry does.
pub fn sectional_conv(
    rec: &mut Recorder,
    x: &GpuTensor,
    r: &GpuTensor,
    g: &ConvGeometry,
) -> GpuTensor {
    let (n, h, w) = (x.shape[0], x.shape[2], x.shape[3]);
    let (ho, wo) = g.out_hw(h, w);
    assert_eq!(
        r.shape,
        [n, g.c_out, ho, wo],
        "sectional_conv: relevance shape"
    );
    let ctx = rec.ctx;
    let unused = rec.unused();
    // 1. G± = wgrad(x⁺, R±), one pair per image: [N·2, C_out, C_in, kh, kw].
    let maps = wgrad_gemm(rec, ConvMode::Sections, x, r, g, 2 * n);
    // 2. Q± = sdiv(R±, conv(x⁺, G±) ⊙ M±).
    let q = ctx.empty(&[2 * n, g.c_out, ho, wo]);
    let shape = ConvShape {
        geom: *g,
        hw: (h, w),
    };
    let sections = GemmOp::ConvForward {
        mode: ConvMode::Sections,
        relu: false,
        weights: Weights::Signed,
        shape,
    };
    conv_gemm(
        rec,
        sections,
        &[
            Binding::read(x),
            Binding::read(&maps),
            Binding::read(r),
            unused,
            Binding::write(&q),
        ],
        (g.c_out, ho * wo, 2 * n),
        1,
    );
    // 3. C = factor · x⁺ ⊙ (convT(Q⁺, G⁺) − convT(Q⁻, G⁻)); the authors pick the
    //    variant by kernel height (`kernel_size[0] != 1`).
    let full_rule = g.kh != 1;
    let c = ctx.empty_as(&[n, g.c_in, h, w], r.dtype);
    dgrad_gemm(
        rec,
        (ConvMode::Sections, Weights::Signed),
        &[
            Binding::read(&q),
            Binding::read(&maps),
            Binding::read(x),
            unused,
            Binding::write(&c),
        ],
        shape,
        g.c_in,
        n,
    );
    drop((maps, q));
    if !full_rule {
        return c;
    }
    purging_shift(rec, r, &c)
}

/// The purging shift of the sectional rule: `R_in = C − (Σ R / #{C ≠ 0}) · [C ≠ 0]`
/// per image, so that the relevance `r` that arrived is conserved.
pub fn purging_shift(rec: &mut Recorder, r: &GpuTensor, c: &GpuTensor) -> GpuTensor {
    let stats = sum_and_count_nonzero(rec, r, c);
    elementwise(
        rec,
        ElementwiseOp::RspShift,
        false,
        &c.shape,
        [Some(c), Some(&stats), None],
        Layout::nchw(c),
    )
}

/// Elements of the largest tensor RSP's rules allocate per image for the convolution
/// `g` over an `h × w` input: the z^B rule's three terms (input-sized), the sections'
/// outputs (two output-sized maps) or their channel attribution maps (two
/// weight-shaped ones).
pub fn largest_tensor_per_image(g: &ConvGeometry, (h, w): (usize, usize)) -> usize {
    let (ho, wo) = g.out_hw(h, w);
    [
        3 * g.c_in * h * w,
        2 * g.c_out * ho * wo,
        2 * g.c_out * g.c_in * g.kh * g.kw,
    ]
    .into_iter()
    .max()
    .unwrap_or(0)
}
