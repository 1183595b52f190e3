//! The model the engine runs and explains: its graph, its family (for descriptions)
//! and its readout. Built by the loaders (`models/mod.rs`: torchvision weights) and
//! the family builders (`vgg.rs`, `resnet.rs`).

use super::graph::ModelGraph;
use crate::error::Param;
use crate::tensor::Tensor;

/// torchvision's batch-norm epsilon (not stored in state dicts).
pub const BN_EPS: f32 = 1e-5;

/// A classifier the engine can run and explain: its layers as one graph, and the
/// family it was built as (for descriptions).
#[derive(Clone, Debug)]
pub struct Model {
    pub family: Family,
    pub graph: ModelGraph,
    /// How the logits read as probabilities.
    pub readout: Readout,
    /// Class names from the weights file's metadata, if it has them.
    pub class_names: Option<Vec<String>>,
    /// The `(height, width)` the model was exported for, where its file fixes one (an
    /// ONNX graph with a static input shape); `None` for any size.
    pub input_size: Option<(usize, usize)>,
}

/// How a classifier's logits read as probabilities: softmax for single-label
/// classifiers (ImageNet), an independent sigmoid per class for multi-label ones (the
/// synthetic benchmark's models, VOC/COCO heads).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Readout {
    #[default]
    Softmax,
    Sigmoid,
}

impl Readout {
    pub fn name(self) -> &'static str {
        match self {
            Readout::Softmax => "softmax",
            Readout::Sigmoid => "sigmoid",
        }
    }

    /// Probabilities of `logits` `[N, C]`.
    pub fn probabilities(self, logits: &Tensor) -> Tensor {
        match self {
            Readout::Softmax => crate::tensor::softmax(logits),
            Readout::Sigmoid => Tensor::new(
                logits.shape.clone(),
                logits
                    .data
                    .iter()
                    .map(|&z| 1.0 / (1.0 + (-z).exp()))
                    .collect(),
            ),
        }
    }
}

/// The architecture family a [`Model`] was built as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Family {
    Vgg {
        convs: usize,
        batch_norm: bool,
    },
    ResNet {
        bottleneck: bool,
        blocks: Vec<usize>,
    },
    /// Any graph imported from an ONNX file.
    Onnx {
        file: String,
        layers: usize,
        convs: usize,
    },
}

impl Model {
    /// Number of classes; 0 for features-only weights.
    pub fn num_classes(&self) -> usize {
        self.graph.num_classes()
    }

    /// A short human description, e.g. `VGG (13 convs, BN) -> 1000 classes`.
    pub fn describe(&self) -> String {
        match &self.family {
            Family::Vgg { convs, batch_norm } => format!(
                "VGG ({convs} convs{}) -> {} classes",
                if *batch_norm { ", BN" } else { "" },
                self.num_classes()
            ),
            Family::ResNet { bottleneck, blocks } => {
                let blocks: Vec<String> = blocks.iter().map(|b| b.to_string()).collect();
                let kind = if *bottleneck {
                    "Bottleneck"
                } else {
                    "BasicBlock"
                };
                format!(
                    "ResNet ({kind} [{}]) -> {} classes",
                    blocks.join(","),
                    self.num_classes()
                )
            }
            Family::Onnx {
                file,
                layers,
                convs,
            } => format!(
                "ONNX {file} ({layers} layers, {convs} convs) -> {} classes",
                self.num_classes()
            ),
        }
    }

    /// Makes the output of the layer `name` the explanation layer (where RSP's initial
    /// relevance and Grad-CAM start), instead of the one the model chose.
    pub fn set_explain_layer(&mut self, name: &str) -> anyhow::Result<()> {
        self.graph
            .set_explain(name)
            .map_err(|detail| crate::error::bad_option(Param::ExplainLayer, detail))
    }

    /// The name of the layer whose output is the explanation layer.
    pub fn explain_layer(&self) -> Option<&str> {
        let a = self.graph.explain.checked_sub(1)?;
        Some(self.graph.nodes[a].name.as_str())
    }

    /// The input side length to use when none is asked for: the size the model was
    /// exported for, else 224.
    pub fn default_size(&self) -> u32 {
        self.input_size.map_or(224, |(h, _)| h as u32)
    }

    /// Checks that an `h × w` input fits the model: the size its file was exported for
    /// if it fixes one, else every layer's window and feature count at that size.
    pub fn check_input_size(&self, h: usize, w: usize) -> anyhow::Result<()> {
        if let Some((eh, ew)) = self.input_size {
            if (eh, ew) != (h, w) {
                return Err(crate::error::bad_option(
                    Param::Size,
                    format!(
                        "{h}: the model was exported for {eh}×{ew} inputs (use {eh}, or \
                         export it again at the size you need)"
                    ),
                ));
            }
        }
        self.graph
            .checked_shapes(h, w)
            .map(|_| ())
            .map_err(crate::error::invalid)
    }

    /// Multiply-accumulates of one forward pass at `h × w` (convolutions and linear
    /// layers; pooling and elementwise work are not counted).
    pub fn forward_macs(&self, h: usize, w: usize) -> u64 {
        self.graph.forward_macs(h, w)
    }
}
