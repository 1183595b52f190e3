//! RSP on the GPU: [`RspRules`], the rule set of its backward rules (spec §3) over the
//! backward walk — the sectional rule (`ops::rsp`), the z^B rule (`ops::zbox`), the
//! live-mask batch norm, winner-take-all pooling and the residual split — and
//! [`record`], which adds the head gradient, the initial relevance (spec §2) and the
//! walk to a pass. Each rule maps the relevance `r` at a layer's output to the
//! relevance at its input.

use anyhow::{bail, Result};

use super::baselines::GradientRules;
use super::propagate::{walk, LayerRules};
use super::{Init, PassOutputs, Request, RSP_EPS};
use crate::gpu::{GpuTensor, Recorder};
use crate::layers::{AvgPool2d, MaxPool2d};
use crate::models::gpu::{Forward, GpuModel};
use crate::models::graph::INPUT;
use crate::ops::elementwise::{residual_split, ResidualSplit};
use crate::ops::rsp::InitialRelevance;
use crate::ops::{self, max_pool2d_route, GpuBatchNorm, GpuConv, GpuLinear, NO_CLASS};

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
            let init = match req.init {
                Init::Comparative { .. } => InitialRelevance::Comparative,
                _ => InitialRelevance::GradCam,
            };
            ops::rsp::initial_relevance(rec, &fwd.explain_act, &grad, k, init)
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

/// Max pool: winner takes all, at the argmax of `x + 1e-9` (first in row-major order).
pub fn rsp_maxpool_rule(
    rec: &mut Recorder,
    x: &GpuTensor,
    r: &GpuTensor,
    pool: &MaxPool2d,
) -> GpuTensor {
    max_pool2d_route(rec, x, r, pool, 1, RSP_EPS)
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
            ops::zbox_first_conv(rec, x, r, conv)
        } else {
            ops::rsp::sectional_conv(rec, x, r, &conv.geom)
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
    fn avg_pool(
        &self,
        rec: &mut Recorder,
        x: &GpuTensor,
        r: &GpuTensor,
        pool: &AvgPool2d,
    ) -> GpuTensor {
        GradientRules::default().avg_pool(rec, x, r, pool)
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
    fn batch_norm_pre_activation(
        &self,
        _: &mut Recorder,
        _: &GpuTensor,
        r: &GpuTensor,
        _: &GpuBatchNorm,
    ) -> GpuTensor {
        r.clone()
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
