//! One backward walk over a model's graph for every method, parameterised by a
//! [`LayerRules`] object that says what each kind of layer does to the relevance (or
//! gradient) passing through it. RSP, the head gradient and every baseline are rule
//! sets over this walk; the graph, the saved activations and the dispatch recorder are
//! shared.

use crate::gpu::{GpuTensor, Recorder};
use crate::layers::MaxPool2d;
use crate::models::gpu::{Forward, GpuModel};
use crate::models::graph::{ActId, Layer};
use crate::ops::{self, GpuBatchNorm, GpuConv, GpuLinear};

/// What a backward method does at each kind of layer. Every function maps the signal
/// `r` at the layer's output to the signal at its input, given the layer's input `x`
/// (for ReLU: its output).
pub trait LayerRules {
    /// Convolution with input `x`; `first`: it reads the image (a rule set may treat it
    /// differently, e.g. with the z^B rule).
    fn conv(
        &self,
        rec: &mut Recorder,
        x: &GpuTensor,
        r: &GpuTensor,
        conv: &GpuConv,
        first: bool,
    ) -> GpuTensor;
    /// Fully connected layer with input `x` `[N, in]`; `r` is `[N, out]`.
    fn linear(&self, rec: &mut Recorder, x: &GpuTensor, r: &GpuTensor, l: &GpuLinear) -> GpuTensor;
    /// The linear layer that writes the logits, which receives the seed itself. Most
    /// rule sets treat it like any other; RAP starts differently.
    fn top_linear(
        &self,
        rec: &mut Recorder,
        x: &GpuTensor,
        seed: &GpuTensor,
        l: &GpuLinear,
    ) -> GpuTensor {
        self.linear(rec, x, seed, l)
    }
    /// ReLU whose output is `out`.
    fn relu(&self, rec: &mut Recorder, out: &GpuTensor, r: &GpuTensor) -> GpuTensor;
    /// Max pool with input `x`.
    fn max_pool(
        &self,
        rec: &mut Recorder,
        x: &GpuTensor,
        r: &GpuTensor,
        pool: &MaxPool2d,
    ) -> GpuTensor;
    /// Adaptive average pool with input `x`; `r` has the pooled size.
    fn avg_pool(&self, rec: &mut Recorder, x: &GpuTensor, r: &GpuTensor) -> GpuTensor;
    /// Batch norm (eval mode) with input `x`.
    fn batch_norm(
        &self,
        rec: &mut Recorder,
        x: &GpuTensor,
        r: &GpuTensor,
        bn: &GpuBatchNorm,
    ) -> GpuTensor;
    /// Residual addition `a + b`: the signals of the two summands.
    fn residual(
        &self,
        rec: &mut Recorder,
        a: &GpuTensor,
        b: &GpuTensor,
        r: &GpuTensor,
    ) -> (GpuTensor, GpuTensor);
}

/// Walks `seed` at activation `from` back to activation `to` (`from > to`) through
/// every layer between them, reading the activations `fwd` kept. Where an activation
/// feeds several layers (a residual block's input), their signals are summed. With
/// `log`, the signal at the input of every layer walked is pushed under the layer's
/// module name (see `models::graph::Node::name`), and the total at a container's input
/// under the container's name.
pub fn walk(
    rec: &mut Recorder,
    model: &GpuModel,
    fwd: &Forward,
    (from, seed): (ActId, GpuTensor),
    to: ActId,
    rules: &dyn LayerRules,
    mut log: Option<&mut Vec<(String, GpuTensor)>>,
) -> GpuTensor {
    let g = &model.graph;
    let mut pending: Vec<Option<GpuTensor>> = vec![None; from + 1];
    pending[from] = Some(seed);
    for i in (to..from).rev() {
        let node = &g.nodes[i];
        let out_id = i + 1;
        let Some(r) = pending[out_id].take() else {
            continue;
        };
        if let Some(log) = log.as_deref_mut() {
            for (_, name) in g.marks.iter().filter(|(a, _)| *a == out_id) {
                log.push((name.clone(), r.clone()));
            }
        }
        let x = |k: usize| fwd.act(node.inputs[k]);
        let signals = match &node.layer {
            Layer::Conv { conv, first } => vec![rules.conv(rec, x(0), &r, conv, *first)],
            Layer::BatchNorm(b) => vec![rules.batch_norm(rec, x(0), &r, b)],
            Layer::Relu => vec![rules.relu(rec, fwd.act(out_id), &r)],
            Layer::MaxPool(p) => vec![rules.max_pool(rec, x(0), &r, p)],
            Layer::AvgPool { .. } => vec![rules.avg_pool(rec, x(0), &r)],
            Layer::Flatten => {
                let shape = [&r.shape[..1], &x(0).shape[1..]].concat();
                vec![r.reshaped(&shape)]
            }
            Layer::Linear(l) if g.logits == Some(out_id) => {
                vec![rules.top_linear(rec, x(0), &r, l)]
            }
            Layer::Linear(l) => vec![rules.linear(rec, x(0), &r, l)],
            Layer::Add => {
                let (a, b) = rules.residual(rec, x(0), x(1), &r);
                vec![a, b]
            }
        };
        if let Some(log) = log.as_deref_mut() {
            if signals.len() == 1 {
                for name in std::iter::once(&node.name).chain(&node.aliases) {
                    log.push((name.clone(), signals[0].clone()));
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
                "walk: layer '{}' reads an activation below the walk's end",
                node.name
            );
            pending[input] = Some(match pending[input].take() {
                Some(earlier) => ops::add(rec, &earlier, &s, false),
                None => s,
            });
        }
    }
    pending[to].take().expect("the walk reaches its end")
}
