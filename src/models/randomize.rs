//! Cascading randomisation (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS
//! 2018): the model's weighted layers are re-initialised one at a time from the logits
//! down, and an explanation method that depends on what the model learned must change
//! as they are.

use super::vgg::VggLayer;
use super::zoo::Rng;
use super::Model;
use crate::layers::{Conv2d, Linear};

/// Names of the weighted layers (convolutions and linear layers, torchvision naming),
/// from the logits to the input: the order in which the cascade re-initialises them.
/// Batch norms keep their statistics (they are not re-initialised).
pub fn cascade_order(model: &Model) -> Vec<String> {
    let mut names = Vec::new();
    match model {
        Model::Vgg(m) => {
            // classifier indices in torchvision's Sequential: Linear, ReLU, Dropout.
            for i in (0..m.classifier.len()).rev() {
                names.push(format!("classifier.{}", 3 * i));
            }
            for (idx, l) in m.features.iter().rev() {
                if matches!(l, VggLayer::Conv(_)) {
                    names.push(format!("features.{idx}"));
                }
            }
        }
        Model::ResNet(m) => {
            names.push("fc".into());
            for (s, stage) in m.layers.iter().enumerate().rev() {
                for (b, block) in stage.iter().enumerate().rev() {
                    let p = format!("layer{}.{b}", s + 1);
                    if block.conv3.is_some() {
                        names.push(format!("{p}.conv3"));
                    }
                    names.push(format!("{p}.conv2"));
                    names.push(format!("{p}.conv1"));
                    if block.downsample.is_some() {
                        names.push(format!("{p}.downsample.0"));
                    }
                }
            }
            names.push("conv1".into());
        }
    }
    names
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
    match model {
        Model::Vgg(m) => {
            if let Some(i) = name.strip_prefix("classifier.") {
                let Some(l) = i
                    .parse::<usize>()
                    .ok()
                    .filter(|i| i % 3 == 0)
                    .and_then(|i| m.classifier.get_mut(i / 3))
                else {
                    return false;
                };
                linear(l, &mut rng);
                return true;
            }
            let Some(idx) = name
                .strip_prefix("features.")
                .and_then(|i| i.parse::<usize>().ok())
            else {
                return false;
            };
            match m.features.iter_mut().find(|(i, _)| *i == idx) {
                Some((_, VggLayer::Conv(c))) => {
                    conv(c, &mut rng);
                    true
                }
                _ => false,
            }
        }
        Model::ResNet(m) => {
            if name == "fc" {
                linear(&mut m.fc, &mut rng);
                return true;
            }
            if name == "conv1" {
                conv(&mut m.conv1, &mut rng);
                return true;
            }
            for (s, stage) in m.layers.iter_mut().enumerate() {
                for (b, block) in stage.iter_mut().enumerate() {
                    let p = format!("layer{}.{b}.", s + 1);
                    let Some(rest) = name.strip_prefix(&p) else {
                        continue;
                    };
                    let target = match rest {
                        "conv1" => Some(&mut block.conv1),
                        "conv2" => Some(&mut block.conv2),
                        "conv3" => block.conv3.as_mut(),
                        "downsample.0" => block.downsample.as_mut().map(|(c, _)| c),
                        _ => None,
                    };
                    return match target {
                        Some(c) => {
                            conv(c, &mut rng);
                            true
                        }
                        None => false,
                    };
                }
            }
            false
        }
    }
}
