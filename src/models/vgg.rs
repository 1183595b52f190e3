//! VGG (torchvision `features.N` / `classifier.M` layout, with or without batch norm)
//! as a [`ModelGraph`].

use super::graph::{ActId, GraphBuilder, Layer, ModelGraph, INPUT};
use super::model::{Family, Model};
use crate::layers::{AvgPool2d, BatchNorm2d, Conv2d, Linear};

/// One `features` module: torchvision's index `N` of `features.N` and the layer.
pub type Feature = (usize, Layer<Conv2d, BatchNorm2d, Linear>);

/// Position in `features` of the explanation layer: the last ReLU before the last max
/// pool (torchvision VGG16: `features.29`).
fn explain_position(features: &[Feature]) -> Option<usize> {
    let last_pool = features
        .iter()
        .rposition(|(_, l)| matches!(l, Layer::MaxPool(_)))?;
    features[..last_pool]
        .iter()
        .rposition(|(_, l)| matches!(l, Layer::Relu))
}

/// A VGG from its `features` (ending in a max pool, with a ReLU before it), the
/// adaptive pool's output size and its classifier's linear layers by module name (every
/// one but the last followed by ReLU and Dropout, an identity in eval mode). An empty
/// classifier gives a features-only model, explained from a given initial relevance.
pub fn build(
    features: Vec<Feature>,
    avgpool: (usize, usize),
    classifier: Vec<(String, Linear)>,
) -> Model {
    let explain_pos = explain_position(&features).expect("VGG features end in ReLU ... max pool");
    let convs = features
        .iter()
        .filter(|(_, l)| matches!(l, Layer::Conv { .. }))
        .count();
    let batch_norm = features
        .iter()
        .any(|(_, l)| matches!(l, Layer::BatchNorm(_)));
    let mut b = GraphBuilder::default();
    let mut x: ActId = INPUT;
    let mut explain = INPUT;
    for (pos, (index, layer)) in features.into_iter().enumerate() {
        x = b.push(format!("features.{index}"), layer, &[x]);
        if pos == explain_pos {
            explain = x;
        }
    }
    let mut logits = None;
    if !classifier.is_empty() {
        x = b.push(
            "avgpool",
            Layer::AvgPool(AvgPool2d::Adaptive { out: avgpool }),
            &[x],
        );
        x = b.push("flatten", Layer::Flatten, &[x]);
        let last = classifier.len() - 1;
        for (i, (name, l)) in classifier.into_iter().enumerate() {
            x = b.push(name.as_str(), Layer::Linear(l), &[x]);
            if i < last {
                x = b.push(format!("{name}.relu"), Layer::Relu, &[x]);
            }
        }
        logits = Some(x);
    }
    Model {
        family: Family::Vgg { convs, batch_norm },
        graph: b.finish(explain, logits),
        readout: Default::default(),
        class_names: None,
        input_size: None,
    }
}

/// The explanation layer's `features` index of a VGG graph (e.g. 29 for VGG16).
pub fn explain_index(graph: &ModelGraph) -> Option<usize> {
    graph.nodes[graph.explain.checked_sub(1)?]
        .name
        .strip_prefix("features.")?
        .parse()
        .ok()
}
