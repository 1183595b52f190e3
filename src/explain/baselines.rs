//! The baselines RSP is compared with, each a small rule set over [`propagate`]:
//!
//! | method | seed at the logits | rules | after |
//! |---|---|---|---|
//! | gradient | one-hot | [`GradientRules`] | |
//! | gradient × input | one-hot | [`GradientRules`] | `⊙ input` |
//! | Grad-CAM | one-hot | [`GradientRules`] to `A` | `ReLU(Σ_c mean(∂y/∂A_c) A_c)`, upsampled |
//! | LRP-ε | one-hot × logit | [`LrpRules`] ε, z^B first layer | |
//! | LRP-α1β0 | one-hot × logit | [`LrpRules`] z⁺, z^B first layer | |
//! | CLRP | (target − mean of the others) × logit | [`LrpRules`] z⁺ | `ReLU` |
//! | SGLRP | softmax gradient | [`LrpRules`] z⁺ | |
//! | RAP | one-hot | [`RapRules`] | |

use anyhow::{bail, Result};

use super::propagate::{propagate, propagate_head, LayerRules};
use super::rsp::in_passes;
use super::rules::{rsp_batchnorm_rule, rsp_first_conv_rule};
use super::{Explanation, Method};
use crate::gpu::{GpuContext, GpuTensor, Recorder};
use crate::layers::MaxPool2d;
use crate::models::gpu::GpuModel;
use crate::ops::rap::{rap_step, RapStep};
use crate::ops::{self, GpuBatchNorm, GpuConv, GpuLinear, ResidualSplit, Seed, Weights, NO_CLASS};
use crate::tensor::Tensor;

/// Plain backpropagation of the gradient.
pub struct GradientRules;

impl LayerRules for GradientRules {
    fn conv(&self, rec: &mut Recorder, x: &GpuTensor, r: &GpuTensor, c: &GpuConv) -> GpuTensor {
        let hw = (x.shape[2], x.shape[3]);
        ops::conv2d_dgrad(rec, r, &c.weight, &c.geom, hw, Weights::Signed)
    }
    fn linear(&self, rec: &mut Recorder, _: &GpuTensor, r: &GpuTensor, l: &GpuLinear) -> GpuTensor {
        ops::linear_grad(rec, r, l)
    }
    fn relu(&self, rec: &mut Recorder, out: &GpuTensor, r: &GpuTensor) -> GpuTensor {
        ops::relu_grad(rec, r, out, 1)
    }
    fn max_pool(
        &self,
        rec: &mut Recorder,
        x: &GpuTensor,
        r: &GpuTensor,
        p: &MaxPool2d,
    ) -> GpuTensor {
        ops::max_pool2d_route(rec, x, r, p, 1, 0.0)
    }
    fn avg_pool(&self, rec: &mut Recorder, x: &GpuTensor, r: &GpuTensor) -> GpuTensor {
        ops::adaptive_avg_pool2d_grad(rec, r, (x.shape[2], x.shape[3]))
    }
    fn batch_norm(
        &self,
        rec: &mut Recorder,
        _: &GpuTensor,
        r: &GpuTensor,
        bn: &GpuBatchNorm,
    ) -> GpuTensor {
        ops::batch_norm_grad(rec, r, bn)
    }
    fn residual(
        &self,
        _: &mut Recorder,
        _: &GpuTensor,
        _: &GpuTensor,
        r: &GpuTensor,
    ) -> (GpuTensor, GpuTensor) {
        (r.clone(), r.clone())
    }
}

/// Layer-wise relevance propagation (Bach et al. 2015; Montavon et al. 2019): every
/// affine layer redistributes `R_in = x ⊙ Wᵀ(R / z)` with
/// - `epsilon: Some(ε)`: the ε-rule, `z = Wx + b` stabilised as `z + ε·sign(z)`;
/// - `epsilon: None`: the α1β0 (z⁺) rule, `W → pos(W)` and no bias (inputs are
///   post-ReLU, so `x·pos(W)` is the positive part of every contribution).
///
/// The first convolution (3 input channels) takes the z^B rule with the image's own
/// bounds `L = min(x)`, `H = max(x)` (as RSP does); ReLUs pass relevance unchanged, max
/// pools route it to the winner, batch norms are their own one-input affine layers.
pub struct LrpRules {
    pub epsilon: Option<f32>,
}

impl LrpRules {
    fn weights(&self) -> Weights {
        match self.epsilon {
            Some(_) => Weights::Signed,
            None => Weights::Positive,
        }
    }
    fn eps(&self) -> f32 {
        self.epsilon.unwrap_or(0.0)
    }
}

impl LayerRules for LrpRules {
    fn conv(&self, rec: &mut Recorder, x: &GpuTensor, r: &GpuTensor, c: &GpuConv) -> GpuTensor {
        if c.geom.c_in == 3 {
            return rsp_first_conv_rule(rec, x, r, c);
        }
        let z = ops::conv2d_z(rec, x, c, self.weights());
        let s = ops::stab_div(rec, r, &z, self.eps());
        let hw = (x.shape[2], x.shape[3]);
        let back = ops::conv2d_dgrad(rec, &s, &c.weight, &c.geom, hw, self.weights());
        ops::mul(rec, &back, x)
    }
    fn linear(&self, rec: &mut Recorder, x: &GpuTensor, r: &GpuTensor, l: &GpuLinear) -> GpuTensor {
        let z = ops::linear_z(rec, x, l, self.weights());
        let s = ops::stab_div(rec, r, &z, self.eps());
        let back = ops::linear_grad_with(rec, &s, l, self.weights());
        ops::mul(rec, &back, x)
    }
    fn relu(&self, _: &mut Recorder, _: &GpuTensor, r: &GpuTensor) -> GpuTensor {
        r.clone()
    }
    fn max_pool(
        &self,
        rec: &mut Recorder,
        x: &GpuTensor,
        r: &GpuTensor,
        p: &MaxPool2d,
    ) -> GpuTensor {
        ops::max_pool2d_route(rec, x, r, p, 1, 0.0)
    }
    fn avg_pool(&self, rec: &mut Recorder, x: &GpuTensor, r: &GpuTensor) -> GpuTensor {
        let out_hw = (r.shape[2], r.shape[3]);
        let z = ops::adaptive_avg_pool2d(rec, x, out_hw);
        let s = ops::stab_div(rec, r, &z, self.eps());
        let back = ops::adaptive_avg_pool2d_grad(rec, &s, (x.shape[2], x.shape[3]));
        ops::mul(rec, &back, x)
    }
    fn batch_norm(
        &self,
        rec: &mut Recorder,
        x: &GpuTensor,
        r: &GpuTensor,
        bn: &GpuBatchNorm,
    ) -> GpuTensor {
        ops::lrp_batch_norm(rec, r, x, bn, self.epsilon)
    }
    fn residual(
        &self,
        rec: &mut Recorder,
        a: &GpuTensor,
        b: &GpuTensor,
        r: &GpuTensor,
    ) -> (GpuTensor, GpuTensor) {
        let split = match self.epsilon {
            Some(e) => ResidualSplit::Epsilon(e),
            None => ResidualSplit::Positive,
        };
        ops::residual_split(rec, a, b, r, split)
    }
}

/// Relative Attributing Propagation (Nam, Kim, Lee, AAAI 2020), for networks whose
/// hidden layers see non-negative (post-ReLU) inputs. With `P = x·pos(W)` and
/// `N = x·min(W, 0)` the positive and negative contributions of each input:
/// - the last linear layer splits the target logit into its signed contributions
///   `x_i·w_ti` (the bias shared between the positive and negative parts in proportion)
///   and keeps their absolute values, rescaled to sum to the logit ("absolute influence");
/// - every hidden conv/linear layer sends the positive relevance through the positive
///   contributions and through the negative ones (in proportion `1/(P − N)`), the
///   negative relevance through the negative contributions (convolutions) or the
///   positive ones (linear layers), then shifts every live unit uniformly so the layer
///   conserves relevance ("uniform shifting");
/// - the first convolution takes the z^B rule, pools the z-rule (winner-take-all for
///   max), batch norm passes relevance through live units, residual additions split it
///   in proportion to `pos(a)` and `pos(b)`.
///
/// The per-layer arithmetic follows the PyTorch RAP of OpenXAI's `pnpxai`, the public
/// implementation by the authors' consortium (the paper's own TensorFlow code covers VGG
/// only).
pub struct RapRules;

impl LayerRules for RapRules {
    fn conv(&self, rec: &mut Recorder, x: &GpuTensor, r: &GpuTensor, c: &GpuConv) -> GpuTensor {
        if c.geom.c_in == 3 {
            return rsp_first_conv_rule(rec, x, r, c);
        }
        let hw = (x.shape[2], x.shape[3]);
        rap_hidden(
            rec,
            x,
            r,
            false,
            &|rec, w| ops::conv2d_z(rec, x, c, w),
            &|rec, s, w| ops::conv2d_dgrad(rec, s, &c.weight, &c.geom, hw, w),
        )
    }
    fn linear(&self, rec: &mut Recorder, x: &GpuTensor, r: &GpuTensor, l: &GpuLinear) -> GpuTensor {
        rap_hidden(
            rec,
            x,
            r,
            true,
            &|rec, w| ops::linear_z(rec, x, l, w),
            &|rec, s, w| ops::linear_grad_with(rec, s, l, w),
        )
    }
    fn top_linear(
        &self,
        rec: &mut Recorder,
        x: &GpuTensor,
        seed: &GpuTensor,
        l: &GpuLinear,
    ) -> GpuTensor {
        let p = ops::linear_z(rec, x, l, Weights::Positive);
        let n = ops::linear_z(rec, x, l, Weights::Negative);
        let parts = [Some(seed), Some(&p), Some(&n), Some(&l.bias)];
        let sp = rap_step(rec, RapStep::TopPositive, true, parts, seed);
        let sn = rap_step(rec, RapStep::TopNegative, true, parts, seed);
        let bp = ops::linear_grad_with(rec, &sp, l, Weights::Positive);
        let bn = ops::linear_grad_with(rec, &sn, l, Weights::Negative);
        let back = ops::add(rec, &bp, &bn, false);
        let c = ops::mul(rec, &back, x);
        let stats = ops::sum_and_abs_sum(rec, &c);
        rap_step(
            rec,
            RapStep::Normalise,
            true,
            [Some(&c), Some(&stats), None, None],
            &c,
        )
    }
    fn relu(&self, _: &mut Recorder, _: &GpuTensor, r: &GpuTensor) -> GpuTensor {
        r.clone()
    }
    fn max_pool(
        &self,
        rec: &mut Recorder,
        x: &GpuTensor,
        r: &GpuTensor,
        p: &MaxPool2d,
    ) -> GpuTensor {
        ops::max_pool2d_route(rec, x, r, p, 1, 0.0)
    }
    fn avg_pool(&self, rec: &mut Recorder, x: &GpuTensor, r: &GpuTensor) -> GpuTensor {
        LrpRules { epsilon: Some(0.0) }.avg_pool(rec, x, r)
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
        ops::residual_split(rec, a, b, r, ResidualSplit::Positive)
    }
}

/// RAP's hidden-layer rule for a layer given by its contributions `z(w)` (input `x`
/// through `pos(W)` or `min(W, 0)`, no bias) and their adjoint `back(s, w)`.
fn rap_hidden(
    rec: &mut Recorder,
    x: &GpuTensor,
    r: &GpuTensor,
    linear: bool,
    z: &dyn Fn(&mut Recorder, Weights) -> GpuTensor,
    back: &dyn Fn(&mut Recorder, &GpuTensor, Weights) -> GpuTensor,
) -> GpuTensor {
    let p = z(rec, Weights::Positive);
    let n = z(rec, Weights::Negative);
    let through_pos = [Some(r), Some(&p), None, None];
    let sp = rap_step(rec, RapStep::HiddenPositive, linear, through_pos, r);
    let through_neg = [Some(r), Some(&p), Some(&n), None];
    let sn = rap_step(rec, RapStep::HiddenNegative, linear, through_neg, r);
    let bp = back(rec, &sp, Weights::Positive);
    let bn = back(rec, &sn, Weights::Negative);
    let sum = ops::add(rec, &bp, &bn, false);
    let c = ops::mul(rec, &sum, x);
    rap_shift(rec, &c, r)
}

/// RAP's uniform shift: `C − [C≠0]·(ΣC − ΣR)/#{C≠0}` per image.
fn rap_shift(rec: &mut Recorder, c: &GpuTensor, r: &GpuTensor) -> GpuTensor {
    let stats_r = ops::sum_and_count_nonzero(rec, r, c);
    let stats_c = ops::sum_and_count_nonzero(rec, c, c);
    rap_step(
        rec,
        RapStep::Shift,
        false,
        [Some(c), Some(&stats_r), Some(&stats_c), None],
        c,
    )
}

/// Explains `input` `[N, 3, H, W]` (normalised) with a baseline `method` for `targets`
/// (default: each image's top-1 class). [`Explanation::init`] holds the seed at the
/// logits; [`Explanation::relevance`] is `[N, 3, H, W]`, or `[N, 1, H, W]` for
/// Grad-CAM (its map bilinearly resized to the input).
pub fn explain_method(
    ctx: &GpuContext,
    model: &GpuModel,
    input: &Tensor,
    method: Method,
    targets: Option<&[usize]>,
) -> Result<Explanation> {
    if input.shape.len() != 4 || input.shape[1] != 3 {
        bail!("input must be [N, 3, H, W], got {:?}", input.shape);
    }
    if method == Method::Rsp {
        bail!("explain_method runs the baselines; RSP is explain::explain");
    }
    let n = input.shape[0];
    let classes = model.num_classes();
    if classes == 0 {
        bail!("these weights have no classifier: {method} needs one");
    }
    if let Some(t) = targets {
        if t.len() != n {
            bail!("{} targets given for {n} images", t.len());
        }
        if let Some(bad) = t.iter().find(|&&c| c >= classes) {
            bail!("target class {bad} is out of range (the model has {classes} classes)");
        }
    }
    if classes < 2 && matches!(method, Method::Clrp | Method::Sglrp) {
        bail!("{method} contrasts classes and needs at least 2");
    }
    in_passes(ctx, model, input, |sub, range| {
        pass(ctx, model, sub, method, targets.map(|t| &t[range]))
    })
}

fn pass(
    ctx: &GpuContext,
    model: &GpuModel,
    input: &Tensor,
    method: Method,
    targets: Option<&[usize]>,
) -> Result<Explanation> {
    let n = input.shape[0];
    let classes = model.num_classes();
    let mut rec = Recorder::new(ctx);
    let x = ctx.upload(input);
    let fwd = model.forward(&mut rec, &x);
    let first: Vec<u32> = match targets {
        Some(t) => t.iter().map(|&c| c as u32).collect(),
        None => vec![NO_CLASS; n],
    };
    let chosen = ops::top_k(&mut rec, &fwd.logits, &first, 1);
    let seed_kind = match method {
        Method::Clrp => Seed::Contrastive,
        Method::Sglrp => Seed::SoftmaxGradient,
        _ => Seed::OneHot,
    };
    // LRP methods start from the prediction (one-hot × logit, spec §6), SGLRP from
    // the softmax gradient, the gradient methods from the one-hot.
    let scores = match method {
        Method::Sglrp => Some(ops::softmax(&mut rec, &fwd.logits)),
        m if m.is_lrp() => Some(fwd.logits.clone()),
        _ => None,
    };
    let seed = ops::logit_seed(
        &mut rec,
        seed_kind,
        &chosen.target,
        n,
        classes,
        scores.as_ref(),
    );
    let epsilon = LrpRules {
        epsilon: Some(method.lrp_epsilon()),
    };
    let positive = LrpRules { epsilon: None };
    let relevance = match method {
        Method::Gradient => propagate(&mut rec, model, &fwd, &seed, &GradientRules),
        Method::GradientTimesInput => {
            let g = propagate(&mut rec, model, &fwd, &seed, &GradientRules);
            ops::mul(&mut rec, &g, &x)
        }
        Method::GradCam => {
            let g = propagate_head(&mut rec, model, &fwd, &seed, &GradientRules);
            let cam = ops::grad_cam(&mut rec, &fwd.explain_act, &g);
            ops::upsample_bilinear(&mut rec, &cam, (input.shape[2], input.shape[3]))
        }
        Method::LrpEpsilon => propagate(&mut rec, model, &fwd, &seed, &epsilon),
        Method::LrpAlphaBeta | Method::Sglrp => propagate(&mut rec, model, &fwd, &seed, &positive),
        Method::Clrp => {
            let r = propagate(&mut rec, model, &fwd, &seed, &positive);
            ops::relu(&mut rec, &r)
        }
        Method::Rap => propagate(&mut rec, model, &fwd, &seed, &RapRules),
        Method::Rsp => unreachable!("checked by explain_method"),
    };
    rec.submit();
    drop(rec);
    let parts = [
        (&chosen.target, n),
        (fwd.logits.buffer(), fwd.logits.numel()),
        (seed.buffer(), seed.numel()),
        (relevance.buffer(), relevance.numel()),
    ];
    let mut words = ctx.read_buffers(&parts)?.into_iter();
    let target = words
        .next()
        .expect("target")
        .iter()
        .map(|&c| c as usize)
        .collect();
    let mut next = |shape: &[usize]| {
        let w = words.next().expect("one readback per part");
        Tensor::new(shape.to_vec(), bytemuck::cast_slice(&w).to_vec())
    };
    Ok(Explanation {
        logits: next(&fwd.logits.shape),
        target,
        init: next(&seed.shape),
        relevance: next(&relevance.shape),
        layers: Vec::new(),
    })
}
