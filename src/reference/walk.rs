//! The reference's forward pass over the model's graph, keeping every activation, and
//! its one backward walk, parameterised by a CPU rule set ([`Rules`]).

use crate::layers::{AvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d};
use crate::models::graph::{ActId, BackwardStep, Layer, Node};
use crate::models::Model;
use crate::tensor::Tensor;

use super::ops::{
    add, avg_pool2d, batch_norm, channel_slice, concat_channels, conv2d, linear, max_pool2d, relu,
};

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
            Layer::AvgPool(p) => avg_pool2d(x, p),
            Layer::Flatten => {
                let n = x.shape[0];
                x.clone().reshape(&[n, x.numel() / n.max(1)])
            }
            Layer::Linear(l) => linear(x, l),
            Layer::Add => add(x, &acts[node.inputs[1]]),
            Layer::Concat => {
                let inputs: Vec<&Tensor> = node.inputs.iter().map(|&k| &acts[k]).collect();
                concat_channels(&inputs)
            }
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
    fn avg_pool(&self, x: &Tensor, r: &Tensor, p: &AvgPool2d) -> Tensor;
    fn batch_norm(&self, x: &Tensor, r: &Tensor, bn: &BatchNorm2d) -> Tensor;
    /// Batch norm that does not follow a convolution (DenseNet's order).
    fn batch_norm_pre_activation(&self, x: &Tensor, r: &Tensor, bn: &BatchNorm2d) -> Tensor {
        self.batch_norm(x, r, bn)
    }
    fn residual(&self, a: &Tensor, b: &Tensor, r: &Tensor) -> (Tensor, Tensor);
}

/// Walks `seed` at activation `from` back to activation `to` with `rules` over the
/// reference forward `trace` (the traversal, the sums at shared inputs and the `log`
/// are [`Graph::walk_back`](crate::models::graph::Graph::walk_back)'s): with `log`, the
/// signal at each layer's input is recorded under its module name (an addition's two
/// inputs as `name.0`, `name.1`), and the total at a container's input under the
/// container's name.
pub fn walk(
    model: &Model,
    trace: &ForwardTrace,
    start: (ActId, Tensor),
    to: ActId,
    rules: &dyn Rules,
    log: Option<&mut Vec<(String, Tensor)>>,
) -> Tensor {
    let mut step = CpuStep {
        model,
        trace,
        rules,
    };
    model.graph.walk_back(&mut step, start, to, log)
}

/// [`walk`]'s step: a node's rule from `rules`, sums as plain additions.
struct CpuStep<'a> {
    model: &'a Model,
    trace: &'a ForwardTrace,
    rules: &'a dyn Rules,
}

impl BackwardStep<Conv2d, BatchNorm2d, Linear> for CpuStep<'_> {
    type Signal = Tensor;

    fn node(
        &mut self,
        i: usize,
        node: &Node<Conv2d, BatchNorm2d, Linear>,
        r: Tensor,
    ) -> Vec<Tensor> {
        let (rules, acts) = (self.rules, &self.trace.acts);
        let x = &acts[node.inputs[0]];
        match &node.layer {
            Layer::Conv { conv, first } => vec![rules.conv(x, &r, conv, *first)],
            Layer::BatchNorm(bn) if self.model.graph.reads_conv(i) => {
                vec![rules.batch_norm(x, &r, bn)]
            }
            Layer::BatchNorm(bn) => vec![rules.batch_norm_pre_activation(x, &r, bn)],
            Layer::Relu => vec![rules.relu(&acts[i + 1], &r)],
            Layer::MaxPool(p) => vec![rules.max_pool(x, &r, p)],
            Layer::AvgPool(p) => vec![rules.avg_pool(x, &r, p)],
            Layer::Flatten => {
                let shape = [&r.shape[..1], &x.shape[1..]].concat();
                vec![r.reshape(&shape)]
            }
            Layer::Linear(l) if self.model.graph.logits == Some(i + 1) => {
                vec![rules.top_linear(x, &r, l)]
            }
            Layer::Linear(l) => vec![rules.linear(x, &r, l)],
            Layer::Add => {
                let (a, b) = rules.residual(x, &acts[node.inputs[1]], &r);
                vec![a, b]
            }
            // Every method's rule: each input's signal is its own channel slice.
            Layer::Concat => {
                let mut offset = 0;
                node.inputs
                    .iter()
                    .map(|&k| {
                        let c = acts[k].shape[1];
                        offset += c;
                        channel_slice(&r, offset - c, c)
                    })
                    .collect()
            }
        }
    }

    fn sum(&mut self, a: Tensor, b: Tensor) -> Tensor {
        add(&a, &b)
    }
}
