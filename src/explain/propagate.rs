//! One backward walk over a model's graph for every method, parameterised by a
//! [`LayerRules`] object that says what each kind of layer does to the relevance (or
//! gradient) passing through it. RSP, the head gradient and every baseline are rule
//! sets over this walk; the graph, the saved activations and the dispatch recorder are
//! shared.

use crate::gpu::{GpuTensor, Recorder};
use crate::layers::{AvgPool2d, MaxPool2d};
use crate::models::gpu::{Forward, GpuModel};
use crate::models::graph::{ActId, BackwardStep, Layer, Node};
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
    /// Average pool with input `x`; `r` has the pooled size.
    fn avg_pool(
        &self,
        rec: &mut Recorder,
        x: &GpuTensor,
        r: &GpuTensor,
        pool: &AvgPool2d,
    ) -> GpuTensor;
    /// Batch norm (eval mode) with input `x`.
    fn batch_norm(
        &self,
        rec: &mut Recorder,
        x: &GpuTensor,
        r: &GpuTensor,
        bn: &GpuBatchNorm,
    ) -> GpuTensor;
    /// Batch norm that does not follow a convolution (DenseNet's pre-activation
    /// order: concatenation → BN → ReLU → conv). Most rule sets treat it like any
    /// other batch norm; RSP passes the relevance through (docs/method.md §3).
    fn batch_norm_pre_activation(
        &self,
        rec: &mut Recorder,
        x: &GpuTensor,
        r: &GpuTensor,
        bn: &GpuBatchNorm,
    ) -> GpuTensor {
        self.batch_norm(rec, x, r, bn)
    }
    /// Residual addition `a + b`: the signals of the two summands.
    fn residual(
        &self,
        rec: &mut Recorder,
        a: &GpuTensor,
        b: &GpuTensor,
        r: &GpuTensor,
    ) -> (GpuTensor, GpuTensor);
}

/// Walks `seed` at activation `from` back to activation `to` (`from > to`) with
/// `rules`, reading the activations `fwd` kept (the traversal, the sums at shared
/// inputs and the `log` are [`Graph::walk_back`](crate::models::graph::Graph::walk_back)'s).
/// With `log`, the signal at the input of every layer walked is pushed under the
/// layer's module name (see `models::graph::Node::name`).
pub fn walk(
    rec: &mut Recorder,
    model: &GpuModel,
    fwd: &Forward,
    start: (ActId, GpuTensor),
    to: ActId,
    rules: &dyn LayerRules,
    log: Option<&mut Vec<(String, GpuTensor)>>,
) -> GpuTensor {
    let mut step = GpuStep {
        rec,
        model,
        fwd,
        rules,
    };
    model.graph.walk_back(&mut step, start, to, log)
}

/// [`walk`]'s step: a node's rule from `rules`, sums as GPU additions.
struct GpuStep<'a, 'r, 'c> {
    rec: &'r mut Recorder<'c>,
    model: &'a GpuModel,
    fwd: &'a Forward,
    rules: &'a dyn LayerRules,
}

impl BackwardStep<GpuConv, GpuBatchNorm, GpuLinear> for GpuStep<'_, '_, '_> {
    type Signal = GpuTensor;

    fn node(
        &mut self,
        i: usize,
        node: &Node<GpuConv, GpuBatchNorm, GpuLinear>,
        r: GpuTensor,
    ) -> Vec<GpuTensor> {
        let (rec, rules, fwd) = (&mut *self.rec, self.rules, self.fwd);
        let x = |k: usize| fwd.act(node.inputs[k]);
        match &node.layer {
            Layer::Conv { conv, first } => vec![rules.conv(rec, x(0), &r, conv, *first)],
            Layer::BatchNorm(b) if self.model.graph.reads_conv(i) => {
                vec![rules.batch_norm(rec, x(0), &r, b)]
            }
            Layer::BatchNorm(b) => vec![rules.batch_norm_pre_activation(rec, x(0), &r, b)],
            Layer::Relu => vec![rules.relu(rec, fwd.act(i + 1), &r)],
            Layer::MaxPool(p) => vec![rules.max_pool(rec, x(0), &r, p)],
            Layer::AvgPool(p) => vec![rules.avg_pool(rec, x(0), &r, p)],
            Layer::Flatten => {
                let shape = [&r.shape[..1], &x(0).shape[1..]].concat();
                vec![r.reshaped(&shape)]
            }
            Layer::Linear(l) if self.model.graph.logits == Some(i + 1) => {
                vec![rules.top_linear(rec, x(0), &r, l)]
            }
            Layer::Linear(l) => vec![rules.linear(rec, x(0), &r, l)],
            Layer::Add => {
                let (a, b) = rules.residual(rec, x(0), x(1), &r);
                vec![a, b]
            }
            // Every method's rule: each input's signal is its own channel slice (exact,
            // and conserving: the slices partition the output).
            Layer::Concat => {
                let mut offset = 0;
                (0..node.inputs.len())
                    .map(|k| {
                        let c = x(k).shape[1];
                        offset += c;
                        ops::channel_slice(rec, &r, offset - c, c)
                    })
                    .collect()
            }
        }
    }

    fn sum(&mut self, a: GpuTensor, b: GpuTensor) -> GpuTensor {
        ops::add(self.rec, &a, &b, false)
    }
}
