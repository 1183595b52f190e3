//! Cascading randomisation (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS
//! 2018): the model's weighted layers are re-initialised one at a time from the logits
//! down, and an explanation method that depends on what the model learned must change
//! as they are.

use super::graph::Layer;
use super::model::Model;
use super::zoo::Rng;
use crate::layers::{Conv2d, Linear};

/// Names of the weighted layers (convolutions and linear layers, torchvision naming),
/// from the logits to the input: the order in which the cascade re-initialises them.
/// Batch norms keep their statistics (they are not re-initialised).
pub fn cascade_order(model: &Model) -> Vec<String> {
    model
        .graph
        .weighted_layers_from_top()
        .into_iter()
        .map(String::from)
        .collect()
}

/// Re-initialises the layer `name` (one of [`cascade_order`]) in place: convolutions
/// He-normal (std √(2 / fan_out), torchvision's ResNet/VGG init) with zero bias, linear
/// layers N(0, 0.01) with zero bias (torchvision's VGG classifier init). Returns false
/// if the model has no such layer.
pub fn reinitialise(model: &mut Model, name: &str, seed: u64) -> bool {
    let mut rng = Rng(seed
        ^ name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
        }));
    let conv = |c: &mut Conv2d, rng: &mut Rng| {
        let (kh, kw) = c.kernel();
        let std = (2.0 / (c.out_channels() * kh * kw) as f32).sqrt();
        c.weight.data = rng.fill(c.weight.numel(), std);
        if let Some(b) = &mut c.bias {
            b.iter_mut().for_each(|v| *v = 0.0);
        }
    };
    let linear = |l: &mut Linear, rng: &mut Rng| {
        l.weight.data = rng.fill(l.weight.numel(), 0.01);
        l.bias.iter_mut().for_each(|v| *v = 0.0);
    };
    match model.graph.node_mut(name).map(|n| &mut n.layer) {
        Some(Layer::Conv { conv: c, .. }) => conv(c, &mut rng),
        Some(Layer::Linear(l)) => linear(l, &mut rng),
        _ => return false,
    }
    true
}
