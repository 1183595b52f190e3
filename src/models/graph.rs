//! A model as one list of typed layers. Every node reads one or two activations and
//! writes one; residual blocks make the list a DAG. The forward pass, every backward
//! walk (RSP and the baselines, GPU and CPU), MAC counting, memory sizing and cascading
//! randomisation iterate this one description.
//!
//! The same graph type carries host parameters ([`ModelGraph`], what loaders build) or
//! uploaded ones (`models::gpu::GpuGraph`); [`Graph::map_params`] converts one into the
//! other without touching the structure.

use crate::layers::{BatchNorm2d, Conv2d, ConvGeometry, Linear, MaxPool2d};
use crate::ops::rsp::largest_tensor_per_image;

/// Index of an activation: 0 is the network input, node `i` writes activation `i + 1`.
pub type ActId = usize;

/// The network input.
pub const INPUT: ActId = 0;

/// What a node computes.
#[derive(Clone, Debug)]
pub enum Layer<C, B, L> {
    /// Convolution. `first`: it reads the image itself (set once, at load); RSP, LRP
    /// and RAP use the bounded-input z^B rule there.
    Conv {
        conv: C,
        first: bool,
    },
    /// Batch normalisation in eval mode.
    BatchNorm(B),
    Relu,
    MaxPool(MaxPool2d),
    /// Adaptive average pooling to a fixed output size.
    AvgPool {
        out: (usize, usize),
    },
    /// `[N, C, H, W]` to `[N, C·H·W]` (no data movement).
    Flatten,
    Linear(L),
    /// Residual addition of the node's two inputs.
    Add,
}

/// One layer of a model: its torchvision module name, what it computes, and the
/// activations it reads.
#[derive(Clone, Debug)]
pub struct Node<C, B, L> {
    /// Module name in torchvision naming (`features.28`, `layer4.2.conv3`,
    /// `layer4.2.add`); the relevance at its input is recorded under this name (an
    /// `Add` records `name.0` and `name.1`).
    pub name: String,
    /// Further names of the module's input (a one-module `Sequential` such as
    /// `layer1.0.downsample`).
    pub aliases: Vec<String>,
    pub layer: Layer<C, B, L>,
    pub inputs: Vec<ActId>,
}

/// A model's layers in forward order (every node's inputs come before it).
#[derive(Clone, Debug)]
pub struct Graph<C, B, L> {
    pub nodes: Vec<Node<C, B, L>>,
    /// The explanation layer `A`, where Grad-CAM and RSP's initial relevance live.
    pub explain: ActId,
    /// The logits, or `None` for features-only weights.
    pub logits: Option<ActId>,
    /// Names of container modules whose input is an activation (`layer1.0`, `layer1`);
    /// the total relevance arriving there is recorded under them.
    pub marks: Vec<(ActId, String)>,
}

/// Graph with host parameters, as loaded from a weights file.
pub type ModelGraph = Graph<Conv2d, BatchNorm2d, Linear>;

/// Parameters a convolution node carries, host or GPU: the walks need the geometry.
pub trait ConvParams {
    fn geometry(&self) -> ConvGeometry;
}

/// Parameters a linear node carries, host or GPU.
pub trait LinearParams {
    fn in_features(&self) -> usize;
    fn out_features(&self) -> usize;
}

impl ConvParams for Conv2d {
    fn geometry(&self) -> ConvGeometry {
        Conv2d::geometry(self)
    }
}

impl LinearParams for Linear {
    fn in_features(&self) -> usize {
        Linear::in_features(self)
    }
    fn out_features(&self) -> usize {
        Linear::out_features(self)
    }
}

/// What one backward walk does at a node, for [`Graph::walk_back`]: the GPU's rule sets
/// (`explain::propagate`) and the CPU oracle's (`reference::walk`) each implement it
/// with their own arithmetic.
pub trait BackwardStep<C, B, L> {
    /// The signal carried back (a GPU tensor, a host tensor).
    type Signal: Clone;
    /// The signals at the inputs of node `i` (in `node.inputs` order), from `r` at its
    /// output.
    fn node(&mut self, i: usize, node: &Node<C, B, L>, r: Self::Signal) -> Vec<Self::Signal>;
    /// The sum of the signals of two layers that read the same activation.
    fn sum(&mut self, a: Self::Signal, b: Self::Signal) -> Self::Signal;
}

impl<C, B, L> Graph<C, B, L> {
    /// Walks `seed` at activation `from` back to activation `to` (`from > to`) through
    /// every node between them, in reverse order, with `step` at each node; where an
    /// activation feeds several nodes (a residual block's input), their signals are
    /// summed. With `log`, the signal at the input of every node walked is pushed under
    /// its module name and aliases (an addition's two inputs as `name.0`, `name.1`), and
    /// the total at a container's input under the container's name
    /// ([`Graph::marks`]).
    pub fn walk_back<S: BackwardStep<C, B, L>>(
        &self,
        step: &mut S,
        (from, seed): (ActId, S::Signal),
        to: ActId,
        mut log: Option<&mut Vec<(String, S::Signal)>>,
    ) -> S::Signal {
        let mut pending: Vec<Option<S::Signal>> = vec![None; from + 1];
        pending[from] = Some(seed);
        for i in (to..from).rev() {
            let node = &self.nodes[i];
            let Some(r) = pending[i + 1].take() else {
                continue;
            };
            if let Some(log) = log.as_deref_mut() {
                for (_, name) in self.marks.iter().filter(|(a, _)| *a == i + 1) {
                    log.push((name.clone(), r.clone()));
                }
            }
            let signals = step.node(i, node, r);
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
                    "walk: layer '{}' reads an activation below the walk's end",
                    node.name
                );
                pending[input] = Some(match pending[input].take() {
                    Some(earlier) => step.sum(earlier, s),
                    None => s,
                });
            }
        }
        pending[to].take().expect("the walk reaches its end")
    }
}

impl<C: ConvParams, B, L: LinearParams> Graph<C, B, L> {
    /// The same graph with every parameter converted (e.g. uploaded to the GPU).
    pub fn map_params<C2, B2, L2>(
        &self,
        mut conv: impl FnMut(&C) -> C2,
        mut bn: impl FnMut(&B) -> B2,
        mut linear: impl FnMut(&L) -> L2,
    ) -> Graph<C2, B2, L2> {
        let nodes = self
            .nodes
            .iter()
            .map(|n| Node {
                name: n.name.clone(),
                aliases: n.aliases.clone(),
                inputs: n.inputs.clone(),
                layer: match &n.layer {
                    Layer::Conv { conv: c, first } => Layer::Conv {
                        conv: conv(c),
                        first: *first,
                    },
                    Layer::BatchNorm(b) => Layer::BatchNorm(bn(b)),
                    Layer::Relu => Layer::Relu,
                    Layer::MaxPool(p) => Layer::MaxPool(*p),
                    Layer::AvgPool { out } => Layer::AvgPool { out: *out },
                    Layer::Flatten => Layer::Flatten,
                    Layer::Linear(l) => Layer::Linear(linear(l)),
                    Layer::Add => Layer::Add,
                },
            })
            .collect();
        Graph {
            nodes,
            explain: self.explain,
            logits: self.logits,
            marks: self.marks.clone(),
        }
    }

    /// Number of classes (the logits' width); 0 for features-only weights.
    pub fn num_classes(&self) -> usize {
        match self.logits {
            Some(id) => match &self.nodes[id - 1].layer {
                Layer::Linear(l) => l.out_features(),
                _ => 0,
            },
            None => 0,
        }
    }

    /// The number of nodes the forward pass runs: up to the logits, or up to the
    /// explanation layer for features-only weights.
    pub fn forward_len(&self) -> usize {
        self.logits.unwrap_or(self.explain)
    }

    /// Per-image shape of every activation for an `[3, h, w]` input.
    pub fn act_shapes(&self, h: usize, w: usize) -> Vec<Vec<usize>> {
        let mut shapes = vec![vec![3, h, w]];
        for node in &self.nodes {
            let x = &shapes[node.inputs[0]];
            let out = match &node.layer {
                Layer::Conv { conv, .. } => {
                    let g = conv.geometry();
                    let (ho, wo) = g.out_hw(x[1], x[2]);
                    vec![g.c_out, ho, wo]
                }
                Layer::MaxPool(p) => {
                    let (ho, wo) = p.out_hw(x[1], x[2]);
                    vec![x[0], ho, wo]
                }
                Layer::AvgPool { out } => vec![x[0], out.0, out.1],
                Layer::Flatten => vec![x.iter().product()],
                Layer::Linear(l) => vec![l.out_features()],
                Layer::BatchNorm(_) | Layer::Relu | Layer::Add => x.clone(),
            };
            shapes.push(out);
        }
        shapes
    }

    /// Multiply-accumulates of one forward pass at `h × w` (convolutions and linear
    /// layers; pooling and elementwise work are not counted).
    pub fn forward_macs(&self, h: usize, w: usize) -> u64 {
        let shapes = self.act_shapes(h, w);
        let mut total = 0u64;
        for (i, node) in self.nodes.iter().enumerate() {
            let out = &shapes[i + 1];
            total += match &node.layer {
                Layer::Conv { conv, .. } => {
                    let g = conv.geometry();
                    (g.c_in * g.kh * g.kw) as u64 * out.iter().product::<usize>() as u64
                }
                Layer::Linear(l) => (l.in_features() * l.out_features()) as u64,
                _ => 0,
            };
        }
        total
    }

    /// Bytes of the largest single tensor one image needs at `h × w` (the tensors
    /// RSP's convolution rules allocate, `ops::rsp::largest_tensor_per_image`): the
    /// batch is split so that no binding exceeds the adapter's limit.
    pub fn largest_tensor_per_image(&self, h: usize, w: usize) -> u64 {
        let shapes = self.act_shapes(h, w);
        let mut worst = 0usize;
        for node in &self.nodes {
            if let Layer::Conv { conv, .. } = &node.layer {
                let x = &shapes[node.inputs[0]];
                worst = worst.max(largest_tensor_per_image(&conv.geometry(), (x[1], x[2])));
            }
        }
        worst as u64 * 4
    }

    /// Names of the weighted layers (convolutions and linear layers) from the logits
    /// to the input.
    pub fn weighted_layers_from_top(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .rev()
            .filter(|n| matches!(n.layer, Layer::Conv { .. } | Layer::Linear(_)))
            .map(|n| n.name.as_str())
            .collect()
    }

    /// The node named `name`.
    pub fn node_mut(&mut self, name: &str) -> Option<&mut Node<C, B, L>> {
        self.nodes.iter_mut().find(|n| n.name == name)
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&Node<C, B, L>> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// Appends nodes in forward order; loaders and the model zoo describe a family with it.
pub struct GraphBuilder<C, B, L> {
    nodes: Vec<Node<C, B, L>>,
    marks: Vec<(ActId, String)>,
}

impl<C: ConvParams, B, L: LinearParams> Default for GraphBuilder<C, B, L> {
    fn default() -> Self {
        GraphBuilder {
            nodes: Vec::new(),
            marks: Vec::new(),
        }
    }
}

impl<C: ConvParams, B, L: LinearParams> GraphBuilder<C, B, L> {
    /// Appends `layer` reading `inputs`; returns the activation it writes. A
    /// convolution is marked `first` here when it reads the network input.
    pub fn push(
        &mut self,
        name: impl Into<String>,
        layer: Layer<C, B, L>,
        inputs: &[ActId],
    ) -> ActId {
        let layer = match layer {
            Layer::Conv { conv, .. } => Layer::Conv {
                conv,
                first: inputs == [INPUT],
            },
            other => other,
        };
        self.nodes.push(Node {
            name: name.into(),
            aliases: Vec::new(),
            layer,
            inputs: inputs.to_vec(),
        });
        self.nodes.len()
    }

    /// Gives the last node's input a further module name.
    pub fn alias_last(&mut self, name: impl Into<String>) {
        if let Some(n) = self.nodes.last_mut() {
            n.aliases.push(name.into());
        }
    }

    /// Names a container module whose input is `act`.
    pub fn mark(&mut self, act: ActId, name: impl Into<String>) {
        self.marks.push((act, name.into()));
    }

    /// The finished graph with its explanation layer and logits.
    pub fn finish(self, explain: ActId, logits: Option<ActId>) -> Graph<C, B, L> {
        Graph {
            nodes: self.nodes,
            explain,
            logits,
            marks: self.marks,
        }
    }
}
