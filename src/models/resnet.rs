//! ResNet (torchvision layout: `conv1, bn1, layer1..4, fc`), BasicBlock and
//! Bottleneck v1.5 (stride on the 3×3 conv), as a
//! [`ModelGraph`](super::graph::ModelGraph).

use super::graph::{ActId, GraphBuilder, Layer, INPUT};
use super::model::{Family, Model};
use crate::layers::{AvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d};

/// A residual block's parameters. BasicBlock has `conv3/bn3 = None`.
#[derive(Clone, Debug)]
pub struct Block {
    pub conv1: Conv2d,
    pub bn1: BatchNorm2d,
    pub conv2: Conv2d,
    pub bn2: BatchNorm2d,
    pub conv3: Option<Conv2d>,
    pub bn3: Option<BatchNorm2d>,
    /// 1×1 conv + batch norm on the skip path (`downsample.0`, `downsample.1`).
    pub downsample: Option<(Conv2d, BatchNorm2d)>,
}

impl Block {
    pub fn is_bottleneck(&self) -> bool {
        self.conv3.is_some()
    }
}

/// torchvision's stem max pool (3×3, stride 2, padding 1).
pub const STEM_POOL: MaxPool2d = MaxPool2d {
    kernel: 3,
    stride: 2,
    padding: 1,
    ceil_mode: false,
};

fn conv(c: Conv2d) -> Layer<Conv2d, BatchNorm2d, Linear> {
    Layer::Conv {
        conv: c,
        first: false,
    }
}

/// A ResNet from its stem, `layers[s][b]` (`layer{s+1}.{b}`) and `fc`. The
/// explanation layer is `layer4`'s output.
pub fn build(conv1: Conv2d, bn1: BatchNorm2d, layers: Vec<Vec<Block>>, fc: Linear) -> Model {
    let family = Family::ResNet {
        bottleneck: layers[0][0].is_bottleneck(),
        blocks: layers.iter().map(Vec::len).collect(),
    };
    let mut g = GraphBuilder::default();
    let x = g.push("conv1", conv(conv1), &[INPUT]);
    let x = g.push("bn1", Layer::BatchNorm(bn1), &[x]);
    let x = g.push("relu", Layer::Relu, &[x]);
    let mut x: ActId = g.push("maxpool", Layer::MaxPool(STEM_POOL), &[x]);
    for (s, stage) in layers.into_iter().enumerate() {
        for (i, block) in stage.into_iter().enumerate() {
            let p = format!("layer{}.{i}", s + 1);
            g.mark(x, p.as_str());
            if i == 0 {
                g.mark(x, format!("layer{}", s + 1));
            }
            let input = x;
            let mut t = g.push(format!("{p}.conv1"), conv(block.conv1), &[input]);
            t = g.push(format!("{p}.bn1"), Layer::BatchNorm(block.bn1), &[t]);
            t = g.push(format!("{p}.relu1"), Layer::Relu, &[t]);
            t = g.push(format!("{p}.conv2"), conv(block.conv2), &[t]);
            t = g.push(format!("{p}.bn2"), Layer::BatchNorm(block.bn2), &[t]);
            let mut last_relu = 2;
            if let (Some(c3), Some(bn3)) = (block.conv3, block.bn3) {
                t = g.push(format!("{p}.relu2"), Layer::Relu, &[t]);
                t = g.push(format!("{p}.conv3"), conv(c3), &[t]);
                t = g.push(format!("{p}.bn3"), Layer::BatchNorm(bn3), &[t]);
                last_relu = 3;
            }
            // torchvision's order: the skip path after the main branch.
            let skip = match block.downsample {
                Some((dc, dbn)) => {
                    let d = g.push(format!("{p}.downsample.0"), conv(dc), &[input]);
                    g.alias_last(format!("{p}.downsample"));
                    g.push(format!("{p}.downsample.1"), Layer::BatchNorm(dbn), &[d])
                }
                None => input,
            };
            let sum = g.push(format!("{p}.add"), Layer::Add, &[t, skip]);
            x = g.push(format!("{p}.relu{last_relu}"), Layer::Relu, &[sum]);
        }
    }
    let explain = x;
    let x = g.push("avgpool", Layer::AvgPool(AvgPool2d::GLOBAL), &[x]);
    let x = g.push("flatten", Layer::Flatten, &[x]);
    let logits = g.push("fc", Layer::Linear(fc), &[x]);
    Model {
        family,
        graph: g.finish(explain, Some(logits)),
        readout: Default::default(),
        class_names: None,
        input_size: None,
    }
}
