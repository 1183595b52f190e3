//! A model as one list of typed layers. Every node reads one or more activations and
//! writes one; residual blocks and concatenations make the list a DAG. The forward pass, every backward
//! walk (RSP and the baselines, GPU and CPU), MAC counting, memory sizing and cascading
//! randomisation iterate this one description.
//!
//! The same graph type carries host parameters ([`ModelGraph`], what loaders build) or
//! uploaded ones (`models::gpu::GpuGraph`); [`Graph::map_params`] converts one into the
//! other without touching the structure.

use crate::layers::{AvgPool2d, BatchNorm2d, Conv2d, ConvGeometry, Linear, MaxPool2d};
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
    /// Average pooling, adaptive or windowed.
    AvgPool(AvgPool2d),
    /// `[N, C, H, W]` to `[N, C·H·W]` (no data movement).
    Flatten,
    Linear(L),
    /// Residual addition of the node's two inputs.
    Add,
    /// The node's inputs (any number, equal batch and spatial size) side by side along
    /// the channels, in input order.
    Concat,
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

impl<C: ConvParams, B, L: LinearParams> Node<C, B, L> {
    /// The per-image shape of this node's output, given every activation's shape so far.
    pub fn out_shape(&self, shapes: &[Vec<usize>]) -> Vec<usize> {
        let x = &shapes[self.inputs[0]];
        match &self.layer {
            Layer::Conv { conv, .. } => {
                let g = conv.geometry();
                let (ho, wo) = g.out_hw(x[1], x[2]);
                vec![g.c_out, ho, wo]
            }
            Layer::MaxPool(p) => {
                let (ho, wo) = p.out_hw(x[1], x[2]);
                vec![x[0], ho, wo]
            }
            Layer::AvgPool(p) => {
                let (ho, wo) = p.out_hw(x[1], x[2]);
                vec![x[0], ho, wo]
            }
            Layer::Concat => {
                let c = self.inputs.iter().map(|&i| shapes[i][0]).sum();
                [&[c][..], &x[1..]].concat()
            }
            Layer::Flatten => vec![x.iter().product()],
            Layer::Linear(l) => vec![l.out_features()],
            Layer::BatchNorm(_) | Layer::Relu | Layer::Add => x.clone(),
        }
    }
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
                    Layer::AvgPool(p) => Layer::AvgPool(*p),
                    Layer::Flatten => Layer::Flatten,
                    Layer::Linear(l) => Layer::Linear(linear(l)),
                    Layer::Add => Layer::Add,
                    Layer::Concat => Layer::Concat,
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

    /// Number of classes (the logits' width); 0 for features-only weights. The logits
    /// are a linear layer's output, or a convolution's carried to them by
    /// shape-keeping or pooling layers (SqueezeNet's classifier: conv, ReLU, global
    /// pool, flatten).
    pub fn num_classes(&self) -> usize {
        let mut id = match self.logits {
            Some(id) => id,
            None => return 0,
        };
        while id > INPUT {
            let node = &self.nodes[id - 1];
            match &node.layer {
                Layer::Linear(l) => return l.out_features(),
                Layer::Conv { conv, .. } => return conv.geometry().c_out,
                Layer::Relu
                | Layer::BatchNorm(_)
                | Layer::AvgPool(_)
                | Layer::MaxPool(_)
                | Layer::Flatten => id = node.inputs[0],
                Layer::Add | Layer::Concat => return 0,
            }
        }
        0
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
            let out = node.out_shape(&shapes);
            shapes.push(out);
        }
        shapes
    }

    /// Whether activation `a` is image-shaped: no flatten or linear layer lies between
    /// it and the input.
    pub fn spatial(&self) -> Vec<bool> {
        let mut spatial = vec![true];
        for node in &self.nodes {
            let flat = matches!(node.layer, Layer::Flatten | Layer::Linear(_));
            spatial.push(!flat && node.inputs.iter().all(|&i| spatial[i]));
        }
        spatial
    }

    /// Whether every path from the input to the logits passes through activation `a`:
    /// no layer after it reads an activation before it. Only such an activation can be
    /// the explanation layer (the walks from the logits to it and from it to the input
    /// are then complete).
    pub fn is_cut(&self, a: ActId) -> bool {
        self.nodes[a.min(self.nodes.len())..]
            .iter()
            .all(|n| n.inputs.iter().all(|&i| i >= a))
    }

    /// The explanation layer rsp picks for a graph that names none: the output of the
    /// last ReLU or concatenation that is image-shaped, a cut ([`Graph::is_cut`]) and
    /// comes before the last convolution or linear layer (the head). This is VGG's
    /// `features.29`, ResNet's `layer4`, DenseNet's final ReLU, GoogLeNet's last
    /// inception block and SqueezeNet's last Fire module.
    pub fn default_explain(&self) -> Option<ActId> {
        let head = self
            .nodes
            .iter()
            .rposition(|n| matches!(n.layer, Layer::Conv { .. } | Layer::Linear(_)))?;
        let spatial = self.spatial();
        (0..head)
            .rev()
            .find(|&i| {
                matches!(self.nodes[i].layer, Layer::Relu | Layer::Concat)
                    && spatial[i + 1]
                    && self.is_cut(i + 1)
            })
            .map(|i| i + 1)
    }

    /// Makes the output of the layer named `name` the explanation layer; it must be
    /// image-shaped, before the logits and a cut ([`Graph::is_cut`]).
    pub fn set_explain(&mut self, name: &str) -> Result<(), String> {
        let Some(i) = self.nodes.iter().position(|n| n.name == name) else {
            let mut names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
            names.truncate(8);
            return Err(format!(
                "'{name}' is not a layer of this model (`rsp inspect` lists \
                 them; the first are {})",
                names.join(", ")
            ));
        };
        let a = i + 1;
        if !self.spatial()[a] {
            return Err(format!(
                "'{name}': its output is flattened; the explanation layer \
                 must be image-shaped (channels × height × width)"
            ));
        }
        if self.logits.is_some_and(|l| a >= l) {
            return Err(format!("'{name}' is not before the logits"));
        }
        if !self.is_cut(a) {
            return Err(format!(
                "'{name}': a later layer reads an activation from before \
                 it (inside a residual block or a concatenation), so not every path to \
                 the logits passes through it"
            ));
        }
        self.explain = a;
        Ok(())
    }

    /// [`Graph::act_shapes`], checked: every window fits, every layer receives the
    /// channels or features its parameters expect, summed and concatenated inputs
    /// agree. The error names the layer.
    pub fn checked_shapes(&self, h: usize, w: usize) -> Result<Vec<Vec<usize>>, String> {
        let shapes = self.act_shapes(h, w);
        for (i, node) in self.nodes.iter().enumerate() {
            let x = &shapes[node.inputs[0]];
            let out = &shapes[i + 1];
            let spatial = |what: &str| -> Result<(), String> {
                if x.len() != 3 {
                    return Err(format!(
                        "layer '{}' ({what}) needs an image-shaped input, got {x:?}",
                        node.name
                    ));
                }
                if out.len() == 3 && out[1] * out[2] == 0 {
                    return Err(format!(
                        "layer '{}' ({what}): its window does not fit its {}×{} input \
                         (the model's input is {h}×{w})",
                        node.name, x[1], x[2]
                    ));
                }
                Ok(())
            };
            match &node.layer {
                Layer::Conv { conv, .. } => {
                    let g = conv.geometry();
                    spatial("convolution")?;
                    if x[0] != g.c_in {
                        return Err(format!(
                            "layer '{}' (convolution) expects {} input channels, gets {}",
                            node.name, g.c_in, x[0]
                        ));
                    }
                    if x[1] + 2 * g.padding < g.kh || x[2] + 2 * g.padding < g.kw {
                        return Err(format!(
                            "layer '{}' (convolution): its {}×{} kernel does not fit its {}×{} \
                             input (the model's input is {h}×{w})",
                            node.name, g.kh, g.kw, x[1], x[2]
                        ));
                    }
                }
                Layer::MaxPool(_) => spatial("max pool")?,
                Layer::AvgPool(_) => spatial("average pool")?,
                Layer::BatchNorm(_) => spatial("batch norm")?,
                Layer::Linear(l) => {
                    if x.iter().product::<usize>() != l.in_features() {
                        return Err(format!(
                            "layer '{}' (linear) expects {} input features, gets {x:?} \
                             (the model's input is {h}×{w})",
                            node.name,
                            l.in_features()
                        ));
                    }
                }
                Layer::Add => {
                    if shapes[node.inputs[1]] != *x {
                        return Err(format!(
                            "layer '{}' (addition) adds {x:?} to {:?}",
                            node.name, shapes[node.inputs[1]]
                        ));
                    }
                }
                Layer::Concat => {
                    for &k in &node.inputs {
                        if shapes[k].len() != 3 || shapes[k][1..] != x[1..] {
                            return Err(format!(
                                "layer '{}' (concatenation) joins {x:?} and {:?}",
                                node.name, shapes[k]
                            ));
                        }
                    }
                }
                Layer::Relu | Layer::Flatten => {}
            }
        }
        Ok(shapes)
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

    /// Whether a linear layer writes the logits (RAP's start needs one).
    pub fn logits_from_linear(&self) -> bool {
        self.logits
            .is_some_and(|id| matches!(self.nodes[id - 1].layer, Layer::Linear(_)))
    }

    /// Whether node `i` reads a convolution's output (batch norm in the conv → BN →
    /// ReLU order of VGG and ResNet, rather than DenseNet's BN → ReLU → conv).
    pub fn reads_conv(&self, i: usize) -> bool {
        let input = self.nodes[i].inputs[0];
        input > INPUT && matches!(self.nodes[input - 1].layer, Layer::Conv { .. })
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

    /// The nodes appended so far.
    pub fn nodes(&self) -> &[Node<C, B, L>] {
        &self.nodes
    }

    /// The node appended as number `i` (0-based), for a loader that completes a layer
    /// later (the ONNX importer adds a MatMul's bias when its Add follows).
    pub fn node_mut(&mut self, i: usize) -> &mut Node<C, B, L> {
        &mut self.nodes[i]
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
