//! Whole-model reference: the forward pass over the model's graph keeping every
//! activation, one backward walk parameterised by a CPU rule set ([`Rules`]), the head
//! gradient `∂y_t/∂A`, and [`explain`], which walks RSP's rules (`rsp.rs`) from the
//! explanation layer down to the pixels, optionally recording the relevance at the
//! input of every module under the golden files' names.

use anyhow::{bail, ensure, Result};

use crate::explain::{Explanation, Init};
use crate::layers::{BatchNorm2d, Conv2d, Linear, MaxPool2d};
use crate::models::graph::{ActId, Layer, INPUT};
use crate::models::Model;
use crate::tensor::Tensor;

use super::baselines::Gradient;
use super::ops::{
    adaptive_avg_pool2d, add, batch_norm, conv2d, dims4, linear, max_pool2d, relu, top_k,
};
use super::rsp::{comparative_init, gradcam_init, RspRules};

/// Every activation of one forward pass.
#[derive(Clone, Debug)]
pub struct ForwardTrace {
    /// `acts[id]` is activation `id` of the model's graph (0: the input).
    pub acts: Vec<Tensor>,
    /// `[N, classes]` (`[N, 0]` for features-only weights).
    pub logits: Tensor,
    /// The explanation-layer activation `A` `[N, C, h, w]`.
    pub act: Tensor,
}

/// Runs the model on `input` `[N, 3, H, W]` and keeps every activation.
pub fn forward(model: &Model, input: &Tensor) -> ForwardTrace {
    let g = &model.graph;
    let mut acts = vec![input.clone()];
    for node in &g.nodes[..g.forward_len()] {
        let x = &acts[node.inputs[0]];
        let y = match &node.layer {
            Layer::Conv { conv, .. } => conv2d(
                x,
                &conv.weight,
                conv.bias.as_deref(),
                conv.stride,
                conv.padding,
            ),
            Layer::BatchNorm(bn) => batch_norm(x, bn),
            Layer::Relu => relu(x),
            Layer::MaxPool(p) => max_pool2d(x, p),
            Layer::AvgPool { out } => adaptive_avg_pool2d(x, *out),
            Layer::Flatten => {
                let n = x.shape[0];
                x.clone().reshape(&[n, x.numel() / n.max(1)])
            }
            Layer::Linear(l) => linear(x, l),
            Layer::Add => add(x, &acts[node.inputs[1]]),
        };
        acts.push(y);
    }
    let logits = match g.logits {
        Some(id) => acts[id].clone(),
        None => Tensor::zeros(&[input.shape[0], 0]),
    };
    let act = acts[g.explain].clone();
    ForwardTrace { acts, logits, act }
}

/// What a method does at each kind of layer on the CPU (the twin of
/// `explain::propagate::LayerRules`): each maps the signal `r` at the layer's output
/// to the signal at its input, given the layer's input `x` (for ReLU: its output).
pub trait Rules {
    /// `first`: the convolution reads the image.
    fn conv(&self, x: &Tensor, r: &Tensor, c: &Conv2d, first: bool) -> Tensor;
    fn linear(&self, x: &Tensor, r: &Tensor, l: &Linear) -> Tensor;
    /// The linear layer that writes the logits.
    fn top_linear(&self, x: &Tensor, seed: &Tensor, l: &Linear) -> Tensor {
        self.linear(x, seed, l)
    }
    fn relu(&self, out: &Tensor, r: &Tensor) -> Tensor;
    fn max_pool(&self, x: &Tensor, r: &Tensor, p: &MaxPool2d) -> Tensor;
    fn avg_pool(&self, x: &Tensor, r: &Tensor) -> Tensor;
    fn batch_norm(&self, x: &Tensor, r: &Tensor, bn: &BatchNorm2d) -> Tensor;
    fn residual(&self, a: &Tensor, b: &Tensor, r: &Tensor) -> (Tensor, Tensor);
}

/// Walks `seed` at activation `from` back to activation `to` through every layer
/// between them; signals of layers that read the same activation are summed. With
/// `log`, the signal at each layer's input is recorded under its module name (an
/// addition's two inputs as `name.0`, `name.1`), and the total at a container's input
/// under the container's name.
pub fn walk(
    model: &Model,
    trace: &ForwardTrace,
    (from, seed): (ActId, Tensor),
    to: ActId,
    rules: &dyn Rules,
    mut log: Option<&mut Vec<(String, Tensor)>>,
) -> Tensor {
    let g = &model.graph;
    let mut pending: Vec<Option<Tensor>> = vec![None; from + 1];
    pending[from] = Some(seed);
    for i in (to..from).rev() {
        let node = &g.nodes[i];
        let Some(r) = pending[i + 1].take() else {
            continue;
        };
        if let Some(log) = log.as_deref_mut() {
            for (_, name) in g.marks.iter().filter(|(a, _)| *a == i + 1) {
                log.push((name.clone(), r.clone()));
            }
        }
        let x = &trace.acts[node.inputs[0]];
        let signals = match &node.layer {
            Layer::Conv { conv, first } => vec![rules.conv(x, &r, conv, *first)],
            Layer::BatchNorm(bn) => vec![rules.batch_norm(x, &r, bn)],
            Layer::Relu => vec![rules.relu(&trace.acts[i + 1], &r)],
            Layer::MaxPool(p) => vec![rules.max_pool(x, &r, p)],
            Layer::AvgPool { .. } => vec![rules.avg_pool(x, &r)],
            Layer::Flatten => {
                let shape = [&r.shape[..1], &x.shape[1..]].concat();
                vec![r.reshape(&shape)]
            }
            Layer::Linear(l) if g.logits == Some(i + 1) => vec![rules.top_linear(x, &r, l)],
            Layer::Linear(l) => vec![rules.linear(x, &r, l)],
            Layer::Add => {
                let (a, b) = rules.residual(x, &trace.acts[node.inputs[1]], &r);
                vec![a, b]
            }
        };
        if let Some(log) = log.as_deref_mut() {
            if let [s] = &signals[..] {
                for name in std::iter::once(&node.name).chain(&node.aliases) {
                    log.push((name.clone(), s.clone()));
                }
            } else {
                for (k, s) in signals.iter().enumerate() {
                    log.push((format!("{}.{k}", node.name), s.clone()));
                }
            }
        }
        for (&input, s) in node.inputs.iter().zip(signals) {
            assert!(
                input >= to,
                "walk: '{}' reads below the walk's end",
                node.name
            );
            pending[input] = Some(match pending[input].take() {
                Some(earlier) => add(&earlier, &s),
                None => s,
            });
        }
    }
    pending[to].take().expect("the walk reaches its end")
}

/// `∂ logit[classes[n]] / ∂A` for every image `n` (`classes.len()` = batch size), shaped
/// like `A`: the gradient walked from a one-hot at the logits down to the explanation
/// layer.
pub fn head_gradient(model: &Model, trace: &ForwardTrace, classes: &[usize]) -> Tensor {
    let n = trace.logits.shape[0];
    let num_classes = trace.logits.shape[1];
    assert_eq!(classes.len(), n, "head_gradient: one class per image");
    let mut onehot = vec![0.0f32; n * num_classes];
    for (i, &c) in classes.iter().enumerate() {
        assert!(
            c < num_classes,
            "class {c} out of range ({num_classes} classes)"
        );
        onehot[i * num_classes + c] = 1.0;
    }
    let onehot = Tensor::new(vec![n, num_classes], onehot);
    let g = &model.graph;
    let logits = g.logits.expect("head_gradient needs a classifier");
    walk(model, trace, (logits, onehot), g.explain, &Gradient, None)
}

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
