//! RSP end to end on the GPU: forward pass, head gradient, initial relevance and the
//! layer-by-layer sectional propagation, recorded into one submission per batch.

use anyhow::{bail, Result};

use super::baselines::GradientRules;
use super::propagate::{propagate_head, walk};
use super::rules::RspRules;
use super::{Init, PassOutputs, Request};
use crate::gpu::{Binding, GpuTensor, Recorder};
use crate::models::gpu::{Forward, GpuModel};
use crate::models::graph::INPUT;
use crate::ops::{self, NO_CLASS};

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
            let grad = propagate_head(
                rec,
                model,
                fwd,
                &seeds,
                &GradientRules { rows_per_image: k },
            );
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
    let out = rec.ctx.empty(&act.shape);
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
