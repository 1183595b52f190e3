//! Whole-model reference of RSP: [`explain`], which forms the initial relevance from
//! the head gradients and walks RSP's rules (`rsp.rs`) from the explanation layer down
//! to the pixels, optionally recording the relevance at the input of every module
//! under the golden files' names. The forward pass and the walk are `walk.rs`, the
//! head gradient `rules.rs` (re-exported here).

use anyhow::{bail, ensure, Result};

use crate::explain::{Explanation, Init};
use crate::models::graph::INPUT;
use crate::models::Model;
use crate::tensor::Tensor;

use super::ops::{dims4, top_k};
use super::rsp::{comparative_init, gradcam_init, RspRules};
pub use super::rules::head_gradient;
pub use super::walk::{forward, walk, ForwardTrace, Rules};

/// The classes compared by the comparative initialisation for one image: the top-`k`
/// predictions with `target` first; if `target` is not among them, `target` followed by
/// the `k − 1` best other classes.
pub fn comparative_classes(logits_row: &[f32], target: usize, k: usize) -> Vec<usize> {
    let mut classes = vec![target];
    classes.extend(
        top_k(logits_row, logits_row.len())
            .into_iter()
            .filter(|&c| c != target)
            .take(k.saturating_sub(1)),
    );
    classes
}

/// Explains `input` `[N, 3, H, W]` with RSP: forward pass, initial relevance at the
/// explanation layer (`init`), then the rules of spec §3 down to the pixels.
/// `target` defaults to the argmax of each image's logits (ties → lower index). With
/// `record_layers`, [`Explanation::layers`] holds the relevance at the input of every
/// module on the path under the golden names (`features.13` … `features.0`;
/// `layer4.0.relu3`, `layer4.0.add.0`, … , `conv1`).
pub fn explain(
    model: &Model,
    input: &Tensor,
    target: Option<&[usize]>,
    init: &Init,
    record_layers: bool,
) -> Result<Explanation> {
    ensure!(
        input.shape.len() == 4 && input.shape[0] >= 1 && input.shape[1] == 3,
        "input must be [N, 3, H, W] with N >= 1, got {:?}",
        input.shape
    );
    if let Some(i) = input.data.iter().position(|v| !v.is_finite()) {
        bail!("input holds a non-finite value at flat index {i}");
    }
    ensure!(
        model.num_classes() > 0,
        "the CPU reference needs a classifier (these weights are features only)"
    );
    let n = input.shape[0];
    let trace = forward(model, input);
    let num_classes = trace.logits.shape[1];
    let rows: Vec<&[f32]> = trace.logits.data.chunks(num_classes).collect();
    let target: Vec<usize> = match target {
        Some(t) => {
            ensure!(
                t.len() == n,
                "{} target classes given for a batch of {n}",
                t.len()
            );
            if let Some(&bad) = t.iter().find(|&&c| c >= num_classes) {
                bail!("target class {bad} out of range: the model has {num_classes} classes");
            }
            t.to_vec()
        }
        None => rows.iter().map(|row| top_k(row, 1)[0]).collect(),
    };
    let init_rel = match init {
        Init::GradCam => gradcam_init(&trace.act, &head_gradient(model, &trace, &target)),
        Init::Comparative { k } => {
            let k = *k;
            ensure!(
                (2..=num_classes).contains(&k),
                "comparative initialisation needs 2 <= K <= {num_classes} classes, got K = {k}"
            );
            let per_image: Vec<Vec<usize>> = rows
                .iter()
                .zip(&target)
                .map(|(row, &t)| comparative_classes(row, t, k))
                .collect();
            let grads: Vec<Tensor> = (0..k)
                .map(|j| {
                    let cls: Vec<usize> = per_image.iter().map(|c| c[j]).collect();
                    head_gradient(model, &trace, &cls)
                })
                .collect();
            comparative_init(&trace.act, &grads)
        }
        Init::Given(t) => {
            ensure!(
                t.shape == trace.act.shape,
                "given initial relevance has shape {:?}, the explanation layer is {:?}",
                t.shape,
                trace.act.shape
            );
            if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
                bail!("given initial relevance holds a non-finite value at flat index {i}");
            }
            t.clone()
        }
    };
    let mut layers = Vec::new();
    let relevance = walk(
        model,
        &trace,
        (model.graph.explain, init_rel.clone()),
        INPUT,
        &RspRules,
        record_layers.then_some(&mut layers),
    );
    Ok(Explanation {
        logits: trace.logits,
        target,
        init: init_rel,
        relevance,
        layers,
    })
}

/// Spatial mean of a `[N, C, h, w]` gradient per channel (the Grad-CAM weights
/// `ḡ_c`), `[N, C]`; sums in float64, rounded to float32 before the division.
pub fn channel_means(g: &Tensor) -> Tensor {
    let (n, c, h, w) = dims4(g, "channel_means");
    let hw = h * w;
    let data = g
        .data
        .chunks(hw.max(1))
        .take(n * c)
        .map(|p| p.iter().map(|&v| v as f64).sum::<f64>() as f32 / hw as f32)
        .collect();
    Tensor::new(vec![n, c], data)
}
