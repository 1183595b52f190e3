//! ResNet (torchvision layout: `conv1, bn1, layer1..4, fc`), BasicBlock and
//! Bottleneck v1.5 (stride on the 3×3 conv).

use crate::layers::{BatchNorm2d, Conv2d, Linear, MaxPool2d};

/// A residual block. BasicBlock has `conv3/bn3 = None`.
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
};

#[derive(Clone, Debug)]
pub struct ResNet {
    pub conv1: Conv2d,
    pub bn1: BatchNorm2d,
    pub maxpool: MaxPool2d,
    /// `layers[s][b]` is `layer{s+1}.{b}`.
    pub layers: Vec<Vec<Block>>,
    pub fc: Linear,
}

impl ResNet {
    pub fn num_classes(&self) -> usize {
        self.fc.out_features()
    }
}
