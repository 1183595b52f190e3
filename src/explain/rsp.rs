//! RSP on the GPU: its backward rules (spec §3) as dispatches over the resident
//! activations, [`RspRules`], the rule set that applies them over the backward walk, and
//! [`record`], which adds the head gradient, the initial relevance (spec §2) and the
//! walk to a pass. Each rule maps the relevance `r` at a layer's output to the
//! relevance at its input.

use anyhow::{bail, Result};

use super::baselines::GradientRules;
use super::propagate::{walk, LayerRules};
use super::{Init, PassOutputs, Request, RSP_EPS};
use crate::gpu::{Binding, GpuTensor, Recorder};
use crate::layers::{ConvGeometry, MaxPool2d};
use crate::models::gpu::{Forward, GpuModel};
use crate::models::graph::INPUT;
use crate::ops::conv::{conv_gemm, dgrad_gemm, wgrad_gemm};
use crate::ops::elementwise::{elementwise, residual_split, ElementwiseOp, Layout, ResidualSplit};
use crate::ops::{
    self, max_pool2d_route, min_max, sum_and_count_nonzero, GpuBatchNorm, GpuConv, GpuLinear,
    NO_CLASS,
};

/// Records RSP for one pass: the classes to explain, the initial relevance at the
/// explanation layer and the walk of [`RspRules`] down to the pixels.
pub(super) fn record(
    rec: &mut Recorder,
    model: &GpuModel,
    fwd: &Forward,
    req: &Request,
    log: Option<&mut Vec<(String, GpuTensor)>>,
) -> Result<PassOutputs> {
    let n = fwd.logits.shape[0];
    // Classes to differentiate: the target first, then (comparative) its competitors.
    let k = match req.init {
        Init::Comparative { k } => k,
        _ => 1,
    };
    let first: Vec<u32> = match &req.targets {
        Some(t) => t.iter().map(|&c| c as u32).collect(),
        None => vec![NO_CLASS; n],
    };
    // Without a classifier (features-only weights, given init) there is nothing to rank.
    let chosen = (model.num_classes() > 0).then(|| ops::top_k(rec, &fwd.logits, &first, k));

    let init = match &req.init {
        Init::Given(t) => {
            if t.shape != fwd.explain_act.shape {
                bail!(
                    "initial relevance 'init' has shape {:?}, but the explanation layer is {:?}",
                    t.shape,
                    fwd.explain_act.shape
                );
            }
            rec.ctx.upload(t)
        }
        _ => {
            let chosen = chosen.as_ref().expect("a classifier ranks the classes");
            let seeds = ops::one_hot(rec, &chosen.top, n * k, model.num_classes());
            let logits = model.graph.logits.expect("a classifier ranks the classes");
            let head = GradientRules { rows_per_image: k };
            let start = (logits, seeds);
            let grad = walk(rec, model, fwd, start, model.graph.explain, &head, None);
            initial_relevance(
                rec,
                &fwd.explain_act,
                &grad,
                k,
                matches!(req.init, Init::Comparative { .. }),
            )
        }
    };
    let explain = model.graph.explain;
    let relevance = walk(
        rec,
        model,
        fwd,
        (explain, init.clone()),
        INPUT,
        &RspRules,
        log,
    );
    Ok(PassOutputs {
        target: chosen.map(|c| c.target),
        logits: fwd.logits.clone(),
        init,
        relevance,
        layers: Vec::new(),
    })
}

/// RSP's initial relevance from A and the head gradients (spec §2).
pub fn initial_relevance(
    rec: &mut Recorder,
    act: &GpuTensor,
    grad: &GpuTensor,
    k: usize,
    comparative: bool,
) -> GpuTensor {
    let (n, c, h, w) = (act.shape[0], act.shape[1], act.shape[2], act.shape[3]);
    let scratch = rec.ctx.empty(&grad.shape);
    let out = rec.ctx.empty_activation(&act.shape);
    rec.dispatch(
        "rsp_init",
        &[("MODE", comparative as u8 as f64)],
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
pub fn rsp_conv_rule(
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
        "rsp_conv_rule: relevance shape"
    );
    let ctx = rec.ctx;
    let unused = rec.unused();
    // 1. G± = wgrad(x⁺, R±), one pair per image: [N·2, C_out, C_in, kh, kw].
    let maps = wgrad_gemm(rec, 1, x, r, g, 2 * n);
    // 2. Q± = sdiv(R±, conv(x⁺, G±) ⊙ M±).
    let q = ctx.empty(&[2 * n, g.c_out, ho, wo]);
    conv_gemm(
        rec,
        "conv2d_fwd",
        &[("MODE", 1.0), ("RELU", 0.0)],
        &[
            Binding::read(x),
            Binding::read(&maps),
            Binding::read(r),
            unused,
            Binding::write(&q),
        ],
        g,
        (h, w),
        (g.c_out, ho * wo, 2 * n),
        1,
    );
    // 3. C = factor · x⁺ ⊙ (convT(Q⁺, G⁺) − convT(Q⁻, G⁻)); the authors pick the
    //    variant by kernel height (`kernel_size[0] != 1`).
    let full_rule = g.kh != 1;
    let c = ctx.empty_as(&[n, g.c_in, h, w], r.dtype);
    dgrad_gemm(
        rec,
        &[("MODE", 1.0), ("FACTOR", if full_rule { 2.0 } else { 1.0 })],
        &[
            Binding::read(&q),
            Binding::read(&maps),
            Binding::read(x),
            unused,
            Binding::write(&c),
        ],
        g,
        (h, w),
        g.c_in,
        n,
    );
    drop((maps, q));
    if !full_rule {
        return c;
    }
    // 4. Purging shift: R_in = C − (Σ R / #{C ≠ 0}) · [C ≠ 0].
    let stats = sum_and_count_nonzero(rec, r, &c);
    elementwise(
        rec,
        ElementwiseOp::RspShift,
        false,
        &c.shape,
        [Some(&c), Some(&stats), None],
        Layout::nchw(&c),
    )
}

/// First convolution (3 input channels): the bounded-input z^B rule on the real
/// weights with L = min(x), H = max(x) per image.
pub fn rsp_first_conv_rule(
    rec: &mut Recorder,
    x: &GpuTensor,
    r: &GpuTensor,
    conv: &GpuConv,
) -> GpuTensor {
    let g = &conv.geom;
    let (n, h, w) = (x.shape[0], x.shape[2], x.shape[3]);
    let (ho, wo) = g.out_hw(h, w);
    let ctx = rec.ctx;
    let bounds = min_max(rec, x);
    // S = sdiv(R, conv(x, W) − conv(L, W⁺) − conv(H, W⁻)).
    let s = ctx.empty(&[n, g.c_out, ho, wo]);
    conv_gemm(
        rec,
        "conv2d_fwd",
        &[("MODE", 2.0), ("RELU", 0.0)],
        &[
            Binding::read(x),
            Binding::read(&conv.weight),
            Binding::read(r),
            Binding::read(&bounds),
            Binding::write(&s),
        ],
        g,
        (h, w),
        (g.c_out, ho * wo, n),
        1,
    );
    // x ⊙ convT(S, W), −L ⊙ convT(S, W⁺), −H ⊙ convT(S, W⁻), then their sum.
    let terms = ctx.empty(&[n, 3, g.c_in, h, w]);
    dgrad_gemm(
        rec,
        &[("MODE", 2.0), ("FACTOR", 1.0)],
        &[
            Binding::read(&s),
            Binding::read(&conv.weight),
            Binding::read(x),
            Binding::read(&bounds),
            Binding::write(&terms),
        ],
        g,
        (h, w),
        3 * g.c_in,
        n,
    );
    let per_image = g.c_in * h * w;
    elementwise(
        rec,
        ElementwiseOp::ZbSum,
        false,
        &[n, g.c_in, h, w],
        [Some(&terms), None, None],
        Layout {
            per_image,
            channels: 1,
            hw: 1,
            rows_per_image: 1,
        },
    )
}

/// Max pool: winner takes all, at the argmax of `x + 1e-9` (first in row-major order).
pub fn rsp_maxpool_rule(
    rec: &mut Recorder,
    x: &GpuTensor,
    r: &GpuTensor,
    pool: &MaxPool2d,
) -> GpuTensor {
    max_pool2d_route(rec, x, r, pool, 1, RSP_EPS)
}

/// Batch norm: identity where the BN input is live (`x · scale ≠ 0`), 0 elsewhere.
pub fn rsp_batchnorm_rule(
    rec: &mut Recorder,
    bn_input: &GpuTensor,
    r: &GpuTensor,
    bn: &GpuBatchNorm,
) -> GpuTensor {
    elementwise(
        rec,
        ElementwiseOp::RspBatchNorm,
        false,
        &r.shape,
        [Some(r), Some(bn_input), Some(&bn.scale_shift)],
        Layout::nchw(r),
    )
}

/// Residual addition `out = a + b`: R split in proportion to `pos(a) + 1e-9` and
/// `pos(b) + 1e-9`. Returns `(R_a, R_b)`.
pub fn rsp_residual_rule(
    rec: &mut Recorder,
    a: &GpuTensor,
    b: &GpuTensor,
    r: &GpuTensor,
) -> (GpuTensor, GpuTensor) {
    residual_split(rec, a, b, r, ResidualSplit::Rsp)
}

/// RSP as a rule set: the z^B rule on the convolution that reads the image, the
/// sectional rule on every other convolution, identity through ReLUs (RSP's relevance
/// is signed and ReLU masks are already in the activations the conv rules read).
/// RSP starts at the explanation layer, so it never walks the classifier head; its
/// linear and average-pool rules are the gradient's, for completeness.
pub struct RspRules;

impl LayerRules for RspRules {
    fn conv(
        &self,
        rec: &mut Recorder,
        x: &GpuTensor,
        r: &GpuTensor,
        conv: &GpuConv,
        first: bool,
    ) -> GpuTensor {
        if first {
            rsp_first_conv_rule(rec, x, r, conv)
        } else {
            rsp_conv_rule(rec, x, r, &conv.geom)
        }
    }
    fn linear(&self, rec: &mut Recorder, x: &GpuTensor, r: &GpuTensor, l: &GpuLinear) -> GpuTensor {
        GradientRules::default().linear(rec, x, r, l)
    }
    fn relu(&self, _: &mut Recorder, _: &GpuTensor, r: &GpuTensor) -> GpuTensor {
        r.clone()
    }
    fn max_pool(
        &self,
        rec: &mut Recorder,
        x: &GpuTensor,
        r: &GpuTensor,
        pool: &MaxPool2d,
    ) -> GpuTensor {
        rsp_maxpool_rule(rec, x, r, pool)
    }
    fn avg_pool(&self, rec: &mut Recorder, x: &GpuTensor, r: &GpuTensor) -> GpuTensor {
        GradientRules::default().avg_pool(rec, x, r)
    }
    fn batch_norm(
        &self,
        rec: &mut Recorder,
        x: &GpuTensor,
        r: &GpuTensor,
        bn: &GpuBatchNorm,
    ) -> GpuTensor {
        rsp_batchnorm_rule(rec, x, r, bn)
    }
    fn residual(
        &self,
        rec: &mut Recorder,
        a: &GpuTensor,
        b: &GpuTensor,
        r: &GpuTensor,
    ) -> (GpuTensor, GpuTensor) {
        rsp_residual_rule(rec, a, b, r)
    }
}
