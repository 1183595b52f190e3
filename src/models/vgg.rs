//! VGG (torchvision `features.N` / `classifier.M` layout, with or without batch norm).

use crate::layers::{BatchNorm2d, Conv2d, Linear, MaxPool2d};

/// One module of `features`, in order. `index` is torchvision's `features.N` index.
#[derive(Clone, Debug)]
pub enum VggLayer {
    Conv(Conv2d),
    BatchNorm(BatchNorm2d),
    Relu,
    MaxPool(MaxPool2d),
}

#[derive(Clone, Debug)]
pub struct Vgg {
    /// `(features index, module)`; indices are consecutive from 0.
    pub features: Vec<(usize, VggLayer)>,
    /// Output size of the adaptive average pool (7×7 for torchvision VGG).
    pub avgpool: (usize, usize),
    /// The classifier's Linear layers; every one but the last is followed by
    /// ReLU and Dropout (identity in eval mode). Empty for a features-only file, which
    /// can only be explained from a given initial relevance.
    pub classifier: Vec<Linear>,
}

impl Vgg {
    /// Position in `features` of the explanation layer: the last ReLU before the last
    /// max pool (torchvision VGG16: `features.29`). RSP runs over `features[..=pos]`.
    pub fn explain_position(&self) -> usize {
        let last_pool = self
            .features
            .iter()
            .rposition(|(_, l)| matches!(l, VggLayer::MaxPool(_)))
            .expect("a VGG always ends its features with a max pool");
        self.features[..last_pool]
            .iter()
            .rposition(|(_, l)| matches!(l, VggLayer::Relu))
            .expect("a ReLU precedes the last max pool")
    }

    pub fn num_classes(&self) -> usize {
        self.classifier
            .last()
            .map(|l| l.out_features())
            .unwrap_or(0)
    }
}
