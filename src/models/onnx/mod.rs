//! ONNX models: a graph exported by `torch.onnx.export` (either exporter), tf2onnx or any
//! other tool, mapped node by node onto rsp's graph of typed layers. What rsp cannot
//! build exactly is refused with the file, the node and its op named; nothing is
//! approximated.
//!
//! Supported: Conv (groups = 1, square stride, equal padding), Relu, BatchNormalization
//! (its epsilon read from the node), MaxPool and AveragePool (any square window, ceil
//! mode), GlobalAveragePool and ReduceMean over the spatial axes, Flatten, Reshape and
//! Squeeze that flatten, Gemm, MatMul (+ Add of its bias), Add of two activations,
//! Concat along the channels, Identity, Dropout and Constant. Layer names come from the
//! initializers (torchvision's module names, `features.0`) or from the exporter's scope
//! (`/features/features.1/Relu` → `features.1`), so `--save-relevance` and
//! `--explain-layer` read the way the PyTorch model does.

pub mod proto;
mod tensors;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use prost::Message;

use super::graph::{ActId, GraphBuilder, Layer, ModelGraph, INPUT};
use super::model::{Family, Model};
use crate::layers::{AvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d};
use crate::tensor::Tensor;
use proto::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};

/// Ops that make a network something other than a ReLU network.
const NON_RELU_ACTIVATIONS: &[&str] = &[
    "Sigmoid",
    "Tanh",
    "Clip",
    "LeakyRelu",
    "PRelu",
    "Elu",
    "Selu",
    "Celu",
    "Gelu",
    "HardSigmoid",
    "HardSwish",
    "Softplus",
    "Softsign",
    "Mish",
    "Mul",
    "Swish",
    "ThresholdedRelu",
];

/// Loads the ONNX model at `path`; a file rsp cannot build exactly is invalid input,
/// named with what is wrong.
pub fn load(path: &Path) -> Result<Model> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read model file {}", path.display()))?;
    import(path, &bytes).map_err(|e| crate::error::invalid(format!("{}: {e:#}", path.display())))
}

fn import(path: &Path, bytes: &[u8]) -> Result<Model> {
    let model = ModelProto::decode(bytes)
        .map_err(|e| anyhow::anyhow!("not a readable ONNX model (truncated or corrupt?): {e}"))?;
    let graph = model
        .graph
        .as_ref()
        .context("the ONNX model has no graph")?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut importer = Importer::new(graph, dir)?;
    for node in &graph.node {
        importer.node(node)?;
    }
    let out = graph
        .output
        .first()
        .context("the graph has no output")?
        .name
        .clone();
    let logits = importer.act_named(&out, "the graph's output")?;
    let shape = &importer.shapes[logits];
    if shape.len() != 1 {
        bail!(
            "the graph's output '{out}' has per-image shape {shape:?}; rsp explains \
             classifiers whose output is one logit per class"
        );
    }
    let input_size = importer.input_size;
    let convs = importer
        .graph
        .nodes()
        .iter()
        .filter(|n| matches!(n.layer, Layer::Conv { .. }))
        .count();
    let layers = importer.graph.nodes().len();
    let mut g: ModelGraph = importer.graph.finish(INPUT, Some(logits));
    let (h, w) = input_size.unwrap_or((224, 224));
    g.checked_shapes(h, w).map_err(|e| anyhow::anyhow!(e))?;
    g.explain = g
        .default_explain()
        .context("no image-shaped ReLU or concatenation output before the head to explain from")?;
    Ok(Model {
        family: Family::Onnx {
            file: path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            layers,
            convs,
        },
        graph: g,
        readout: Default::default(),
        class_names: None,
        input_size,
    })
}

/// Import state: the layers so far, what each ONNX value name is, and the constants.
struct Importer<'a> {
    dir: PathBuf,
    consts: HashMap<&'a str, &'a TensorProto>,
    /// ONNX value name → the activation that holds it.
    acts: HashMap<String, ActId>,
    graph: GraphBuilder<Conv2d, BatchNorm2d, Linear>,
    /// Per-image shape of every activation.
    shapes: Vec<Vec<usize>>,
    names: HashSet<String>,
    /// Activations written by a MatMul, whose bias a following Add may supply: the
    /// node index.
    bias_pending: HashMap<ActId, usize>,
    input_size: Option<(usize, usize)>,
}

/// An attribute of `node` by name.
fn attr<'n>(node: &'n NodeProto, name: &str) -> Option<&'n AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn attr_i(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).map_or(default, |a| a.i)
}

fn attr_f(node: &NodeProto, name: &str, default: f32) -> f32 {
    attr(node, name).map_or(default, |a| a.f)
}

fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

/// How a node is named in messages: its ONNX name, else its first output.
fn display(node: &NodeProto) -> String {
    let name = if node.name.is_empty() {
        node.output.first().map(String::as_str).unwrap_or("?")
    } else {
        &node.name
    };
    format!("node '{name}' ({})", node.op_type)
}

/// The module path a node belongs to, from the legacy exporter's scoped name
/// (`/features/denseblock1/denselayer1/relu1/Relu`) or the dynamo exporter's
/// `namespace` metadata (`…/features.3: torch.nn.modules.pooling.MaxPool2d/max_pool2d:
/// aten…`): the segments joined with dots, a segment that already carries its parent's
/// path (`features.1` under `features`) taken as it is.
fn scope(node: &NodeProto) -> String {
    let namespace = node
        .metadata_props
        .iter()
        .find(|p| p.key == "namespace")
        .map(|p| p.value.as_str());
    let segments: Vec<&str> = match namespace {
        Some(ns) => {
            let parts: Vec<&str> = ns.split('/').collect();
            parts[..parts.len().saturating_sub(1)]
                .iter()
                .map(|p| p.split(':').next().unwrap_or("").trim())
                .collect()
        }
        None if node.name.starts_with('/') => {
            let parts: Vec<&str> = node.name.split('/').skip(1).collect();
            parts[..parts.len().saturating_sub(1)].to_vec()
        }
        None => Vec::new(),
    };
    let mut path = String::new();
    for seg in segments.into_iter().filter(|s| !s.is_empty()) {
        let (parent, last) = match path.rsplit_once('.') {
            Some((p, l)) => (format!("{p}."), l),
            None => (String::new(), path.as_str()),
        };
        path = if path.is_empty() || seg.starts_with(&format!("{path}.")) {
            seg.to_string()
        } else if seg.starts_with(&format!("{last}.")) {
            // A Sequential's child named relative to it (`branch3` → `branch3.0`).
            format!("{parent}{seg}")
        } else {
            format!("{path}.{seg}")
        };
    }
    path
}

impl<'a> Importer<'a> {
    fn new(graph: &'a GraphProto, dir: PathBuf) -> Result<Self> {
        let consts: HashMap<&str, &TensorProto> = graph
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let inputs: Vec<_> = graph
            .input
            .iter()
            .filter(|i| !consts.contains_key(i.name.as_str()))
            .collect();
        let [input] = inputs[..] else {
            bail!(
                "the graph has {} inputs besides its weights; rsp explains models with one \
                 image input",
                inputs.len()
            );
        };
        let dims: Vec<Option<usize>> = input
            .r#type
            .as_ref()
            .and_then(|t| t.tensor_type.as_ref())
            .and_then(|t| t.shape.as_ref())
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| usize::try_from(d.dim_value).ok().filter(|&v| v > 0))
                    .collect()
            })
            .unwrap_or_default();
        if dims.len() != 4 || dims[1].is_some_and(|c| c != 3) {
            bail!(
                "input '{}' has shape {:?}; rsp explains image classifiers with an \
                 [N, 3, H, W] input",
                input.name,
                dims.iter()
                    .map(|d| d.map_or("?".to_string(), |v| v.to_string()))
                    .collect::<Vec<_>>()
            );
        }
        let input_size = match (dims[2], dims[3]) {
            (Some(h), Some(w)) => Some((h, w)),
            _ => None,
        };
        let (h, w) = input_size.unwrap_or((224, 224));
        Ok(Importer {
            dir,
            consts,
            acts: HashMap::from([(input.name.clone(), INPUT)]),
            graph: GraphBuilder::default(),
            shapes: vec![vec![3, h, w]],
            names: HashSet::new(),
            bias_pending: HashMap::new(),
            input_size,
        })
    }

    /// The activation named `name`, read by `what`.
    fn act_named(&self, name: &str, what: &str) -> Result<ActId> {
        if let Some(&a) = self.acts.get(name) {
            return Ok(a);
        }
        if self.consts.contains_key(name) {
            bail!("{what} reads the constant '{name}' where rsp expects an activation");
        }
        bail!("{what} reads '{name}', which no earlier node and no graph input produces")
    }

    /// Input `k` of `node` as an activation.
    fn act(&self, node: &NodeProto, k: usize) -> Result<ActId> {
        let name = node
            .input
            .get(k)
            .filter(|n| !n.is_empty())
            .with_context(|| format!("{} has no input {k}", display(node)))?;
        self.act_named(name, &display(node))
    }

    /// Input `k` of `node` as a constant (an initializer or a `Constant` node's value);
    /// `None` where the optional input is absent.
    fn constant(&self, node: &NodeProto, k: usize) -> Result<Option<&'a TensorProto>> {
        let Some(name) = node.input.get(k).filter(|n| !n.is_empty()) else {
            return Ok(None);
        };
        match self.consts.get(name.as_str()) {
            Some(t) => Ok(Some(*t)),
            None if self.acts.contains_key(name) => bail!(
                "{}: input {k} '{name}' is computed by the graph; rsp needs it to be a \
                 constant (an initializer)",
                display(node)
            ),
            None => bail!(
                "{} reads '{name}', which no earlier node, initializer or graph input \
                 produces",
                display(node)
            ),
        }
    }

    fn required_constant(&self, node: &NodeProto, k: usize) -> Result<&'a TensorProto> {
        self.constant(node, k)?
            .with_context(|| format!("{} has no input {k}", display(node)))
    }

    fn floats(&self, t: &TensorProto) -> Result<Tensor> {
        tensors::float_tensor(t, &self.dir)
    }

    fn ints(&self, t: &TensorProto) -> Result<Vec<i64>> {
        tensors::int_list(t, &self.dir)
    }

    /// A unique layer name for `node`: its weight's module name, else its scope, with
    /// the op appended for ops that are not modules of their own.
    fn layer_name(&mut self, node: &NodeProto, weight: Option<&str>) -> String {
        let op = node.op_type.to_lowercase();
        let base = match weight {
            Some(w) => w.strip_suffix(".weight").unwrap_or(w).to_string(),
            None => {
                let scope = scope(node);
                let functional = matches!(
                    node.op_type.as_str(),
                    "Add" | "Concat" | "Flatten" | "Reshape" | "Squeeze" | "ReduceMean"
                );
                // A module that already named a layer inside it (BasicConv2d's conv and
                // bn) applies this op functionally: `….0.relu`.
                let contains_layers = self
                    .names
                    .iter()
                    .any(|n| n.starts_with(&format!("{scope}.")));
                match (scope.is_empty(), functional || contains_layers) {
                    (true, _) => op.clone(),
                    (false, true) => format!("{scope}.{op}"),
                    (false, false) => scope,
                }
            }
        };
        let mut name = base.clone();
        let mut k = 1;
        while self.names.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.names.insert(name.clone());
        name
    }

    /// Appends a layer reading `inputs` and names `node`'s first output after it.
    fn push(
        &mut self,
        node: &NodeProto,
        name: String,
        layer: Layer<Conv2d, BatchNorm2d, Linear>,
        inputs: &[ActId],
    ) -> ActId {
        let id = self.graph.push(name, layer, inputs);
        let shape = self.graph.nodes()[id - 1].out_shape(&self.shapes);
        self.shapes.push(shape);
        self.alias(node, id);
        id
    }

    /// `node`'s first output is the activation `id` (no layer of its own).
    fn alias(&mut self, node: &NodeProto, id: ActId) {
        if let Some(out) = node.output.first() {
            self.acts.insert(out.clone(), id);
        }
    }

    /// A square window's `(kernel, stride, padding)` from a pooling or convolution
    /// node's attributes, or an error naming what rsp cannot build.
    fn window(
        &self,
        node: &NodeProto,
        kernel: Option<(usize, usize)>,
    ) -> Result<(usize, usize, usize)> {
        let what = display(node);
        let ints = |name: &str, default: Vec<i64>| attr_ints(node, name).unwrap_or(default);
        let kernel = match attr_ints(node, "kernel_shape") {
            Some(k) if k.len() == 2 => (k[0] as usize, k[1] as usize),
            Some(k) => bail!("{what} has kernel_shape {k:?}; rsp builds 2-D layers"),
            None => kernel.with_context(|| format!("{what} has no kernel_shape"))?,
        };
        let strides = ints("strides", vec![1, 1]);
        let pads = ints("pads", vec![0, 0, 0, 0]);
        let dilations = ints("dilations", vec![1, 1]);
        if dilations.iter().any(|&d| d != 1) {
            bail!("{what} has dilations {dilations:?}: dilated windows are not supported");
        }
        if let Some(a) = attr(node, "auto_pad") {
            let mode = String::from_utf8_lossy(&a.s);
            if !(mode.is_empty()
                || mode == "NOTSET"
                || mode == "VALID" && pads.iter().all(|&p| p == 0))
            {
                bail!("{what} has auto_pad {mode}: give explicit pads (re-export with torch.onnx)");
            }
        }
        if strides.len() != 2 || strides[0] != strides[1] || strides[0] < 1 {
            bail!("{what} has strides {strides:?}: rsp builds equal strides along both axes");
        }
        if pads.len() != 4 || pads.iter().any(|&p| p != pads[0]) || pads[0] < 0 {
            bail!("{what} has pads {pads:?}: rsp builds the same padding on every side");
        }
        Ok((
            kernel.0.max(kernel.1),
            strides[0] as usize,
            pads[0] as usize,
        ))
    }

    fn node(&mut self, node: &'a NodeProto) -> Result<()> {
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            bail!(
                "{} is in the custom domain '{}': rsp reads standard ONNX ops only",
                display(node),
                node.domain
            );
        }
        let what = display(node);
        match node.op_type.as_str() {
            "Constant" => {
                let value = attr(node, "value")
                    .and_then(|a| a.t.as_ref())
                    .with_context(|| format!("{what} has no tensor 'value'"))?;
                let out = node.output.first().context("Constant without output")?;
                self.consts.insert(out.as_str(), value);
            }
            "Identity" | "Dropout" => {
                // The legacy exporter stores equal parameters once and copies them with
                // Identity nodes (a freshly initialised BN's ones and zeros).
                let input = node.input.first().map(String::as_str).unwrap_or("");
                if let Some(&t) = self.consts.get(input) {
                    let out = node.output.first().context("Identity without output")?;
                    self.consts.insert(out.as_str(), t);
                    return Ok(());
                }
                let x = self.act(node, 0)?;
                self.alias(node, x);
            }
            "Relu" => {
                let x = self.act(node, 0)?;
                let name = self.layer_name(node, None);
                self.push(node, name, Layer::Relu, &[x]);
            }
            "Conv" => self.conv(node)?,
            "BatchNormalization" => self.batch_norm(node)?,
            "MaxPool" => {
                let x = self.act(node, 0)?;
                if node.output.get(1).is_some_and(|o| !o.is_empty()) {
                    bail!("{what} also outputs indices, which rsp does not build");
                }
                let (k, stride, padding) = self.window(node, None)?;
                if attr_ints(node, "kernel_shape").is_some_and(|k| k[0] != k[1]) {
                    bail!("{what} has a non-square window: rsp builds square pooling windows");
                }
                self.pool_fits(node, k, padding)?;
                let pool = MaxPool2d {
                    kernel: k,
                    stride,
                    padding,
                    ceil_mode: attr_i(node, "ceil_mode", 0) != 0,
                };
                let name = self.layer_name(node, None);
                self.push(node, name, Layer::MaxPool(pool), &[x]);
            }
            "AveragePool" => {
                let x = self.act(node, 0)?;
                let (k, stride, padding) = self.window(node, None)?;
                if attr_ints(node, "kernel_shape").is_some_and(|k| k[0] != k[1]) {
                    bail!("{what} has a non-square window: rsp builds square pooling windows");
                }
                self.pool_fits(node, k, padding)?;
                let pool = AvgPool2d::Window {
                    kernel: k,
                    stride,
                    padding,
                    ceil_mode: attr_i(node, "ceil_mode", 0) != 0,
                    count_include_pad: attr_i(node, "count_include_pad", 0) != 0,
                };
                let name = self.layer_name(node, None);
                self.push(node, name, Layer::AvgPool(pool), &[x]);
            }
            "GlobalAveragePool" => {
                let x = self.image_act(node)?;
                let name = self.layer_name(node, None);
                self.push(node, name, Layer::AvgPool(AvgPool2d::GLOBAL), &[x]);
            }
            "ReduceMean" => {
                let x = self.image_act(node)?;
                let axes = match attr_ints(node, "axes") {
                    Some(a) => a,
                    None => match self.constant(node, 1)? {
                        Some(t) => self.ints(t)?,
                        None => bail!("{what} reduces over every axis; rsp builds a mean over the spatial axes"),
                    },
                };
                let mut axes: Vec<i64> = axes
                    .iter()
                    .map(|&a| if a < 0 { a + 4 } else { a })
                    .collect();
                axes.sort();
                if axes != [2, 3] {
                    bail!("{what} averages over axes {axes:?}; rsp builds the mean over the spatial axes (2, 3)");
                }
                let name = self.layer_name(node, None);
                let keep = attr_i(node, "keepdims", 1) != 0;
                if keep {
                    self.push(node, name, Layer::AvgPool(AvgPool2d::GLOBAL), &[x]);
                } else {
                    let p = self.push(node, name.clone(), Layer::AvgPool(AvgPool2d::GLOBAL), &[x]);
                    let flat = self.layer_name(node, Some(&format!("{name}.flatten")));
                    self.push(node, flat, Layer::Flatten, &[p]);
                }
            }
            "Flatten" => {
                let x = self.act(node, 0)?;
                let axis = attr_i(node, "axis", 1);
                if axis != 1 {
                    bail!("{what} flattens from axis {axis}; rsp builds the flatten from axis 1");
                }
                self.flatten(node, x);
            }
            "Reshape" | "Squeeze" => self.reshape(node)?,
            "Gemm" => self.gemm(node)?,
            "MatMul" => {
                let x = self.act(node, 0)?;
                let b = self.floats(self.required_constant(node, 1)?)?;
                if b.shape.len() != 2 || self.shapes[x].len() != 1 {
                    bail!(
                        "{what} multiplies {:?} by {:?}; rsp builds a matrix product of \
                         flattened features with a 2-D weight",
                        self.shapes[x],
                        b.shape
                    );
                }
                let weight = transpose(&b);
                let out = weight.shape[0];
                let w_name = node.input[1].clone();
                let name = self.layer_name(node, Some(&w_name));
                let l = Linear {
                    weight,
                    bias: vec![0.0; out],
                };
                let id = self.push(node, name, Layer::Linear(l), &[x]);
                self.bias_pending.insert(id, id - 1);
            }
            "Add" => self.add(node)?,
            "Concat" => {
                let axis = attr_i(node, "axis", 1);
                let inputs = (0..node.input.len())
                    .map(|k| self.act(node, k))
                    .collect::<Result<Vec<_>>>()?;
                if inputs.iter().any(|&i| self.shapes[i].len() != 3) || !(axis == 1 || axis == -3) {
                    bail!("{what} concatenates along axis {axis}; rsp builds concatenations of image-shaped activations along the channels");
                }
                if let [x] = inputs[..] {
                    self.alias(node, x);
                    return Ok(());
                }
                let first = &self.shapes[inputs[0]];
                if let Some(&bad) = inputs.iter().find(|&&i| self.shapes[i][1..] != first[1..]) {
                    bail!(
                        "{what} joins activations of spatial sizes {:?} and {:?}",
                        &first[1..],
                        &self.shapes[bad][1..]
                    );
                }
                let name = self.layer_name(node, None);
                self.push(node, name, Layer::Concat, &inputs);
            }
            op if NON_RELU_ACTIVATIONS.contains(&op) => {
                bail!("{what} is not supported: rsp explains ReLU networks")
            }
            "Softmax" | "LogSoftmax" => bail!(
                "{what} is not supported: rsp explains the logits; export the model without \
                 its softmax"
            ),
            _ => bail!(
                "{what} is not supported: rsp imports Conv, Relu, BatchNormalization, \
                 MaxPool, AveragePool, GlobalAveragePool, ReduceMean, Flatten, Reshape, \
                 Squeeze, Gemm, MatMul, Add, Concat, Identity, Dropout and Constant"
            ),
        }
        Ok(())
    }

    /// Input 0 of `node`, which must be image-shaped.
    fn image_act(&self, node: &NodeProto) -> Result<ActId> {
        let x = self.act(node, 0)?;
        if self.shapes[x].len() != 3 {
            bail!(
                "{} reads a flattened activation {:?}; it needs an image-shaped one",
                display(node),
                self.shapes[x]
            );
        }
        Ok(x)
    }

    /// PyTorch allows padding up to half the window; a window wholly in the padding
    /// would average or maximise over nothing.
    fn pool_fits(&self, node: &NodeProto, kernel: usize, padding: usize) -> Result<()> {
        if 2 * padding > kernel {
            bail!(
                "{} pads {padding} around a window of {kernel}: at most half the window",
                display(node)
            );
        }
        Ok(())
    }

    fn flatten(&mut self, node: &NodeProto, x: ActId) {
        if self.shapes[x].len() == 1 {
            self.alias(node, x);
        } else {
            let name = self.layer_name(node, None);
            self.push(node, name, Layer::Flatten, &[x]);
        }
    }

    fn reshape(&mut self, node: &NodeProto) -> Result<()> {
        let what = display(node);
        let x = self.act(node, 0)?;
        let shape = self.shapes[x].clone();
        let numel: usize = shape.iter().product();
        let target: Vec<i64> = if node.op_type == "Squeeze" {
            let axes = match attr_ints(node, "axes") {
                Some(a) => Some(a),
                None => self.constant(node, 1)?.map(|t| self.ints(t)).transpose()?,
            };
            let dropped: Vec<usize> = match axes {
                Some(a) => a
                    .iter()
                    .map(|&v| if v < 0 { (v + 4) as usize } else { v as usize })
                    .collect(),
                None => (1..=shape.len()).filter(|&d| shape[d - 1] == 1).collect(),
            };
            let kept: Vec<i64> = (1..=shape.len())
                .filter(|d| !dropped.contains(d) || shape[d - 1] != 1)
                .map(|d| shape[d - 1] as i64)
                .collect();
            [vec![-1], kept].concat()
        } else {
            self.ints(self.required_constant(node, 1)?)?
        };
        let rest = &target[1.min(target.len())..];
        let batch_ok = target.first().is_some_and(|&b| b == -1 || b == 0 || b == 1);
        if batch_ok && rest.len() == 1 && (rest[0] == -1 || rest[0] == numel as i64) {
            self.flatten(node, x);
            return Ok(());
        }
        if batch_ok && rest.iter().map(|&v| v as usize).eq(shape.iter().copied()) {
            self.alias(node, x);
            return Ok(());
        }
        bail!(
            "{what} reshapes a per-image {shape:?} to {target:?}; rsp builds reshapes that \
             flatten the features of each image"
        )
    }

    fn conv(&mut self, node: &NodeProto) -> Result<()> {
        let what = display(node);
        let x = self.image_act(node)?;
        let w_proto = self.required_constant(node, 1)?;
        let weight = self.floats(w_proto)?;
        if weight.shape.len() != 4 {
            bail!(
                "{what}: weight '{}' has shape {:?}, expected 4-D",
                w_proto.name,
                weight.shape
            );
        }
        let group = attr_i(node, "group", 1);
        if group != 1 {
            bail!(
                "Conv '{}' has group={group}: grouped convolutions are not supported yet",
                node.name
            );
        }
        let (kh, kw) = (weight.shape[2], weight.shape[3]);
        if attr_ints(node, "kernel_shape").is_some_and(|k| k != [kh as i64, kw as i64]) {
            bail!(
                "{what}: kernel_shape disagrees with its weight's shape {:?}",
                weight.shape
            );
        }
        let (_, stride, padding) = self.window(node, Some((kh, kw)))?;
        let c_in = self.shapes[x][0];
        if weight.shape[1] != c_in {
            bail!(
                "{what}: weight '{}' expects {} input channels, its input has {c_in}",
                w_proto.name,
                weight.shape[1]
            );
        }
        let c_out = weight.shape[0];
        let bias = match self.constant(node, 2)? {
            Some(b) => {
                let b = self.floats(b)?;
                if b.data.len() != c_out {
                    bail!(
                        "{what}: bias has {} values for {c_out} output channels",
                        b.data.len()
                    );
                }
                Some(b.data)
            }
            None => None,
        };
        let conv = Conv2d {
            weight,
            bias,
            stride,
            padding,
        };
        let name = self.layer_name(node, Some(&w_proto.name));
        let id = self.push(node, name, Layer::Conv { conv, first: false }, &[x]);
        let s = &self.shapes[id];
        if s[1] * s[2] == 0 {
            bail!(
                "{what}: its {kh}×{kw} kernel does not fit its {:?} input",
                self.shapes[x]
            );
        }
        Ok(())
    }

    fn batch_norm(&mut self, node: &NodeProto) -> Result<()> {
        let what = display(node);
        let x = self.image_act(node)?;
        if attr_i(node, "training_mode", 0) != 0 {
            bail!("{what} is in training mode; export the model in eval mode");
        }
        let c = self.shapes[x][0];
        let vec = |k: usize, role: &str| -> Result<Vec<f32>> {
            let t = self.floats(self.required_constant(node, k)?)?;
            if t.data.len() != c {
                bail!(
                    "{what}: {role} has {} values for {c} channels",
                    t.data.len()
                );
            }
            Ok(t.data)
        };
        let bn = BatchNorm2d {
            gamma: vec(1, "scale")?,
            beta: vec(2, "bias")?,
            running_mean: vec(3, "mean")?,
            running_var: vec(4, "var")?,
            eps: attr_f(node, "epsilon", 1e-5),
        };
        let scale_name = node.input[1].clone();
        let name = self.layer_name(node, Some(&scale_name));
        self.push(node, name, Layer::BatchNorm(bn), &[x]);
        Ok(())
    }

    fn gemm(&mut self, node: &NodeProto) -> Result<()> {
        let what = display(node);
        let x = self.act(node, 0)?;
        if self.shapes[x].len() != 1 {
            bail!(
                "{what} reads an image-shaped {:?}; flatten it first",
                self.shapes[x]
            );
        }
        if attr_i(node, "transA", 0) != 0 {
            bail!("{what} transposes its activation (transA=1)");
        }
        let (alpha, beta) = (attr_f(node, "alpha", 1.0), attr_f(node, "beta", 1.0));
        if alpha != 1.0 || beta != 1.0 {
            bail!("{what} has alpha={alpha}, beta={beta}; rsp builds alpha = beta = 1");
        }
        let w_proto = self.required_constant(node, 1)?;
        let b = self.floats(w_proto)?;
        if b.shape.len() != 2 {
            bail!(
                "{what}: weight '{}' has shape {:?}, expected 2-D",
                w_proto.name,
                b.shape
            );
        }
        let weight = if attr_i(node, "transB", 0) != 0 {
            b
        } else {
            transpose(&b)
        };
        let (out, inp) = (weight.shape[0], weight.shape[1]);
        if inp != self.shapes[x][0] {
            bail!(
                "{what}: weight '{}' expects {inp} input features, its input has {}",
                w_proto.name,
                self.shapes[x][0]
            );
        }
        let bias = match self.constant(node, 2)? {
            None => vec![0.0; out],
            Some(c) => {
                let c = self.floats(c)?;
                match c.data.len() {
                    n if n == out => c.data,
                    1 => vec![c.data[0]; out],
                    n => bail!("{what}: bias has {n} values for {out} outputs"),
                }
            }
        };
        let name = self.layer_name(node, Some(&w_proto.name));
        self.push(node, name, Layer::Linear(Linear { weight, bias }), &[x]);
        Ok(())
    }

    fn add(&mut self, node: &NodeProto) -> Result<()> {
        let what = display(node);
        let is_act = |k: usize| node.input.get(k).is_some_and(|n| self.acts.contains_key(n));
        if is_act(0) && is_act(1) {
            let (a, b) = (self.act(node, 0)?, self.act(node, 1)?);
            if self.shapes[a] != self.shapes[b] {
                bail!(
                    "{what} adds {:?} to {:?}; rsp builds sums of equal shapes",
                    self.shapes[a],
                    self.shapes[b]
                );
            }
            let name = self.layer_name(node, None);
            self.push(node, name, Layer::Add, &[a, b]);
            return Ok(());
        }
        let (k_act, k_const) = if is_act(0) { (0, 1) } else { (1, 0) };
        let x = self.act(node, k_act)?;
        let c = self.floats(self.required_constant(node, k_const)?)?;
        match self.bias_pending.remove(&x) {
            Some(i) => {
                let Layer::Linear(l) = &mut self.graph.node_mut(i).layer else {
                    unreachable!("bias_pending holds linear layers")
                };
                if c.data.len() != l.out_features() {
                    bail!(
                        "{what}: bias has {} values for {} outputs",
                        c.data.len(),
                        l.out_features()
                    );
                }
                l.bias = c.data;
                self.alias(node, x);
                Ok(())
            }
            None => bail!(
                "{what} adds a constant to an activation; rsp builds that only as the bias \
                 of a MatMul"
            ),
        }
    }
}

/// `[r, c]` to `[c, r]`.
fn transpose(t: &Tensor) -> Tensor {
    let (r, c) = (t.shape[0], t.shape[1]);
    let mut data = vec![0.0f32; r * c];
    for i in 0..r {
        for j in 0..c {
            data[j * r + i] = t.data[i * c + j];
        }
    }
    Tensor::new(vec![c, r], data)
}
