//! The GPU rule sets of the methods RSP is compared with ([`GradientRules`],
//! [`LrpRules`], [`RapRules`], each a [`LayerRules`] over the backward walk [`walk`]) and
//! their driver [`record`], which runs a method as its entry in
//! [`METHODS`](super::METHODS) says (seed, rule set, stop, post-processing).

use super::propagate::{walk, LayerRules};
use super::{MethodSpec, PassOutputs, Post, RuleSet, Seed, SeedScale, WalkStop};
use crate::gpu::{GpuTensor, Recorder};
use crate::layers::{AvgPool2d, MaxPool2d};
use crate::models::gpu::{Forward, GpuModel};
use crate::models::graph::INPUT;
use crate::ops::rap::{rap_step, RapStep};
use crate::ops::{self, GpuBatchNorm, GpuConv, GpuLinear, ResidualSplit, Weights, NO_CLASS};

/// Plain backpropagation of the gradient, for `rows_per_image` seed rows per image
/// (RSP's comparative initialisation differentiates K classes at once).
pub struct GradientRules {
    pub rows_per_image: usize,
}

impl Default for GradientRules {
    fn default() -> Self {
        GradientRules { rows_per_image: 1 }
    }
}

impl LayerRules for GradientRules {
    fn conv(
        &self,
        rec: &mut Recorder,
        x: &GpuTensor,
        r: &GpuTensor,
        c: &GpuConv,
        _first: bool,
    ) -> GpuTensor {
        let hw = (x.shape[2], x.shape[3]);
        ops::conv2d_dgrad(rec, r, &c.weight, &c.geom, hw, Weights::Signed)
    }
    fn linear(&self, rec: &mut Recorder, _: &GpuTensor, r: &GpuTensor, l: &GpuLinear) -> GpuTensor {
        ops::linear_grad(rec, r, l)
    }
    fn relu(&self, rec: &mut Recorder, out: &GpuTensor, r: &GpuTensor) -> GpuTensor {
        ops::relu_grad(rec, r, out, self.rows_per_image)
    }
    fn max_pool(
        &self,
        rec: &mut Recorder,
        x: &GpuTensor,
        r: &GpuTensor,
        p: &MaxPool2d,
    ) -> GpuTensor {
        ops::max_pool2d_route(rec, x, r, p, self.rows_per_image, 0.0)
    }
    fn avg_pool(
        &self,
        rec: &mut Recorder,
        x: &GpuTensor,
        r: &GpuTensor,
        pool: &AvgPool2d,
    ) -> GpuTensor {
        ops::avg_pool2d_grad(rec, r, pool, (x.shape[2], x.shape[3]))
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
    fn conv(
        &self,
        rec: &mut Recorder,
        x: &GpuTensor,
        r: &GpuTensor,
        c: &GpuConv,
        first: bool,
    ) -> GpuTensor {
        if first {
            return ops::zbox_first_conv(rec, x, r, c);
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
    fn avg_pool(
        &self,
        rec: &mut Recorder,
        x: &GpuTensor,
        r: &GpuTensor,
        pool: &AvgPool2d,
    ) -> GpuTensor {
        let z = ops::avg_pool2d(rec, x, pool);
        let s = ops::stab_div(rec, r, &z, self.eps());
        let back = ops::avg_pool2d_grad(rec, &s, pool, (x.shape[2], x.shape[3]));
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
    fn conv(
        &self,
        rec: &mut Recorder,
        x: &GpuTensor,
        r: &GpuTensor,
        c: &GpuConv,
        first: bool,
    ) -> GpuTensor {
        if first {
            return ops::zbox_first_conv(rec, x, r, c);
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
    fn avg_pool(
        &self,
        rec: &mut Recorder,
        x: &GpuTensor,
        r: &GpuTensor,
        pool: &AvgPool2d,
    ) -> GpuTensor {
        LrpRules { epsilon: Some(0.0) }.avg_pool(rec, x, r, pool)
    }
    fn batch_norm(
        &self,
        rec: &mut Recorder,
        x: &GpuTensor,
        r: &GpuTensor,
        bn: &GpuBatchNorm,
    ) -> GpuTensor {
        ops::live_mask_batch_norm(rec, x, r, bn)
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

/// The GPU rule objects of a walking [`RuleSet`] (RSP has its own driver).
fn layer_rules(set: RuleSet) -> Box<dyn LayerRules> {
    match set {
        RuleSet::Gradient => Box::new(GradientRules::default()),
        RuleSet::LrpEpsilon(e) => Box::new(LrpRules { epsilon: Some(e) }),
        RuleSet::LrpPositive => Box::new(LrpRules { epsilon: None }),
        RuleSet::Rap => Box::new(RapRules),
        RuleSet::Rsp => unreachable!("RSP is recorded by explain::rsp::record"),
    }
}

/// Records a method that walks from the logits (every method but RSP) for one pass,
/// as its [`MethodSpec`] says: the seed at the logits for `targets` (default: each
/// image's top-1 class), the walk with its rule set, the post-processing.
pub(super) fn record(
    rec: &mut Recorder,
    model: &GpuModel,
    fwd: &Forward,
    x: &GpuTensor,
    spec: &MethodSpec,
    targets: Option<&[usize]>,
    log: Option<&mut Vec<(String, GpuTensor)>>,
) -> PassOutputs {
    let (n, classes) = (fwd.logits.shape[0], model.num_classes());
    let first: Vec<u32> = match targets {
        Some(t) => t.iter().map(|&c| c as u32).collect(),
        None => vec![NO_CLASS; n],
    };
    let chosen = ops::top_k(rec, &fwd.logits, &first, 1);
    // The seed shader reads the probabilities for the softmax gradient, the logits to
    // scale by the target's logit.
    let scores = match (spec.seed, spec.scale) {
        (Seed::SoftmaxGradient, _) => Some(ops::softmax(rec, &fwd.logits)),
        (_, SeedScale::TargetLogit) => Some(fwd.logits.clone()),
        (_, SeedScale::One) => None,
    };
    let seed = ops::logit_seed(rec, spec.seed, &chosen.target, n, classes, scores.as_ref());
    let logits = model.graph.logits.expect("checked: a classifier");
    let start = (logits, seed.clone());
    let rules = layer_rules(spec.rules);
    let stop = match spec.stop {
        WalkStop::Input => INPUT,
        WalkStop::ExplainLayer => model.graph.explain,
    };
    let r = walk(rec, model, fwd, start, stop, rules.as_ref(), log);
    let relevance = match spec.post {
        Post::None => r,
        Post::TimesInput => ops::mul(rec, &r, x),
        Post::Relu => ops::relu(rec, &r),
        Post::GradCam => {
            let cam = ops::grad_cam(rec, &fwd.explain_act, &r);
            ops::upsample_bilinear(rec, &cam, (x.shape[2], x.shape[3]))
        }
    };
    PassOutputs {
        target: Some(chosen.target),
        logits: fwd.logits.clone(),
        init: seed,
        relevance,
        layers: Vec::new(),
    }
}
