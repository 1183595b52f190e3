//! Model definitions built from safetensors weights in torchvision naming (optionally
//! timm's VGG head naming and a `model.` prefix). The architecture is inferred from the
//! tensor names and shapes, so small test models in the same layout load too.

pub mod gpu;
pub mod graph;
pub mod hub;
mod model;
pub mod onnx;
pub mod randomize;
pub mod resnet;
pub mod vgg;
pub mod weights;
pub mod zoo;

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, Result};

use crate::layers::{BatchNorm2d, Conv2d, Linear, MaxPool2d};

use graph::Layer;
pub use model::{Family, Model, Readout, BN_EPS};
use resnet::Block;
use weights::{TensorFile, WeightView};

impl Model {
    /// Loads a model: an ONNX graph (`.onnx`), or a safetensors file whose tensor names
    /// say VGG or ResNet.
    pub fn from_file(path: &Path) -> Result<Model> {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
        {
            return onnx::load(path);
        }
        let file = TensorFile::read(path)?;
        Model::from_tensors(&file)
    }

    /// The model `file` describes; a file that describes none is invalid input.
    pub fn from_tensors(file: &TensorFile) -> Result<Model> {
        Self::build(file).map_err(|e| crate::error::invalid(format!("{e:#}")))
    }

    fn build(file: &TensorFile) -> Result<Model> {
        let w = WeightView::new(file);
        let tensors: Vec<(&str, &[usize])> = w
            .names()
            .map(|n| {
                let full = format!("{}{n}", w.prefix);
                (n, file.floats[&full].shape.as_slice())
            })
            .collect();
        let mut model = match recognise(&tensors) {
            Ok(Recognised::Vgg) => load_vgg(&w)?,
            Ok(Recognised::ResNet) => load_resnet(&w)?,
            Err(why) => bail!("{}: {why}", w.file_name()),
        };
        // The synthetic benchmark's trainer records its (multi-label) class names.
        if let Some(meta) = file.metadata.get("rsp_synth") {
            let names = serde_json::from_str::<serde_json::Value>(meta)
                .ok()
                .and_then(|v| v.get("classes").cloned())
                .and_then(|c| serde_json::from_value::<Vec<String>>(c).ok());
            if let Some(names) = names.filter(|n| n.len() == model.num_classes()) {
                model.class_names = Some(names);
                model.readout = Readout::Sigmoid;
            }
        }
        Ok(model)
    }
}

/// The architectures rsp builds from a state dict's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recognised {
    Vgg,
    ResNet,
}

/// How to get any other ReLU CNN into rsp.
const EXPORT_HINT: &str = "rsp builds torchvision VGG and ResNet from safetensors; export \
    any other ReLU CNN to ONNX (torch.onnx.export(model, x, \"model.onnx\")) and pass \
    --weights model.onnx";

/// Which torchvision architecture a state dict's `(name, shape)` list is, accepting
/// only what the VGG and ResNet builders reproduce exactly: VGG's 3×3 convolutions
/// (`features.N`, `classifier.M` or timm's head), ResNet's 7×7 stem and ungrouped
/// BasicBlock or Bottleneck blocks (`conv1`, `bn1`, `layerS.B.…`, `fc`; wide ResNets
/// included). Anything else, AlexNet's 11×11 and 5×5 kernels, DenseNet, ResNeXt's
/// grouped convolutions, is refused with the reason and the ONNX route.
pub fn recognise(tensors: &[(&str, &[usize])]) -> std::result::Result<Recognised, String> {
    let has = |n: &str| tensors.iter().any(|(k, _)| *k == n);
    let shape = |n: &str| tensors.iter().find(|(k, _)| *k == n).map(|(_, s)| *s);
    let param = |rest: &str, allowed: &[&str]| allowed.contains(&rest);
    const BN: [&str; 4] = ["weight", "bias", "running_mean", "running_var"];
    if has("features.0.weight") {
        for &(name, s) in tensors {
            let ok = if let Some(rest) = name.strip_prefix("features.") {
                match rest.split_once('.') {
                    Some((idx, p)) => idx.parse::<usize>().is_ok() && param(p, &BN),
                    None => false,
                }
            } else if let Some(rest) = name.strip_prefix("classifier.") {
                matches!(rest.split_once('.'), Some((idx, p)) if idx.parse::<usize>().is_ok() && param(p, &["weight", "bias"]))
            } else {
                ["pre_logits.fc1.", "pre_logits.fc2.", "head.fc."]
                    .iter()
                    .any(|h| {
                        name.strip_prefix(h)
                            .is_some_and(|p| param(p, &["weight", "bias"]))
                    })
            };
            if !ok {
                return Err(format!(
                    "tensor '{name}' is not part of a torchvision VGG (its features are \
                     plain convolutions, batch norms and pools); {EXPORT_HINT}"
                ));
            }
            if name.starts_with("features.")
                && s.len() == 4
                && !s.contains(&0)
                && (s[2], s[3]) != (3, 3)
            {
                return Err(format!(
                    "tensor '{name}' is a {}×{} convolution: not a VGG, whose convolutions \
                     are all 3×3 (AlexNet's are 11×11, 5×5 and 3×3); {EXPORT_HINT}",
                    s[2], s[3]
                ));
            }
        }
        return Ok(Recognised::Vgg);
    }
    if has("conv1.weight") && has("layer1.0.conv1.weight") {
        // (Empty dimensions are the builders' to report.)
        if let Some(s) = shape("conv1.weight")
            .filter(|s| !s.contains(&0) && (s.len() != 4 || (s[2], s[3]) != (7, 7)))
        {
            return Err(format!(
                "tensor 'conv1.weight' has shape {s:?}: not torchvision's ResNet stem (a 7×7 \
                 convolution); {EXPORT_HINT}"
            ));
        }
        for &(name, s) in tensors {
            let ok = if let Some(p) = name.strip_prefix("conv1.") {
                p == "weight"
            } else if let Some(p) = name.strip_prefix("bn1.") {
                param(p, &BN)
            } else if let Some(p) = name.strip_prefix("fc.") {
                param(p, &["weight", "bias"])
            } else if let Some(rest) = name.strip_prefix("layer") {
                let parts: Vec<&str> = rest.splitn(3, '.').collect();
                match parts[..] {
                    [stage, block, p] => {
                        matches!(stage, "1" | "2" | "3" | "4")
                            && block.parse::<usize>().is_ok()
                            && match p.rsplit_once('.') {
                                Some(("conv1" | "conv2" | "conv3" | "downsample.0", w)) => {
                                    w == "weight"
                                }
                                Some(("bn1" | "bn2" | "bn3" | "downsample.1", b)) => param(b, &BN),
                                _ => false,
                            }
                    }
                    _ => false,
                }
            } else {
                false
            };
            if !ok {
                return Err(format!(
                    "tensor '{name}' is not part of a torchvision ResNet; {EXPORT_HINT}"
                ));
            }
            // Every block's conv2 reads its conv1's output with one group.
            if let Some(block) = name.strip_suffix(".conv2.weight") {
                let c1 = shape(&format!("{block}.conv1.weight"));
                if let Some(c1) = c1.filter(|c1| s.len() == 4 && !s.contains(&0) && c1[0] != s[1]) {
                    return Err(format!(
                        "tensor '{name}' has shape {s:?} after {} channels: a grouped \
                         convolution ({} groups, ResNeXt); rsp does not build grouped \
                         convolutions yet",
                        c1[0],
                        c1[0] / s[1].max(1)
                    ));
                }
            }
        }
        return Ok(Recognised::ResNet);
    }
    let found: Vec<&str> = tensors.iter().take(3).map(|(n, _)| *n).collect();
    Err(format!(
        "unknown weight layout (tensors {found:?}{}): not a torchvision VGG \
         ('features.0.weight') or ResNet ('conv1.weight', 'layer1.0.conv1.weight'); \
         {EXPORT_HINT}",
        if tensors.len() > 3 { ", ..." } else { "" }
    ))
}

fn conv(
    w: &WeightView,
    name: &str,
    c_in: Option<usize>,
    stride: usize,
    padding: usize,
    bias: bool,
) -> Result<Conv2d> {
    let weight = w.tensor(&format!("{name}.weight"), &[None, c_in, None, None])?;
    let c_out = weight.shape[0];
    let bias = if bias {
        Some(w.vector(&format!("{name}.bias"), c_out)?)
    } else {
        None
    };
    Ok(Conv2d {
        weight,
        bias,
        stride,
        padding,
    })
}

fn batchnorm(w: &WeightView, name: &str, c: usize) -> Result<BatchNorm2d> {
    Ok(BatchNorm2d {
        gamma: w.vector(&format!("{name}.weight"), c)?,
        beta: w.vector(&format!("{name}.bias"), c)?,
        running_mean: w.vector(&format!("{name}.running_mean"), c)?,
        running_var: w.vector(&format!("{name}.running_var"), c)?,
        eps: BN_EPS,
    })
}

fn linear(w: &WeightView, name: &str, in_features: Option<usize>) -> Result<Linear> {
    let weight_name = format!("{name}.weight");
    let raw = w.tensor(
        &weight_name,
        &vec![
            None;
            w.file
                .get(&format!("{}{weight_name}", w.prefix))?
                .shape
                .len()
        ],
    )?;
    // timm stores VGG's first two classifier layers as convolutions (`pre_logits.fc1`
    // is 4096×512×7×7); flattening (c, h, w) matches torchvision's Linear layout.
    if raw.shape.len() != 2 && raw.shape.len() != 4 {
        bail!(
            "{}: tensor '{}{weight_name}' has shape {:?}, expected a 2-D linear weight",
            w.file_name(),
            w.prefix,
            raw.shape
        );
    }
    let out = raw.shape[0];
    let inp = raw.numel() / out;
    if let Some(e) = in_features {
        if e != inp {
            bail!(
                "{}: tensor '{}{weight_name}' has {inp} input features, expected {e}",
                w.file_name(),
                w.prefix
            );
        }
    }
    let weight = raw.reshape(&[out, inp]);
    let bias = w.vector(&format!("{name}.bias"), out)?;
    Ok(Linear { weight, bias })
}

fn load_vgg(w: &WeightView) -> Result<Model> {
    // Indices of `features.N` modules that carry parameters.
    let indices: BTreeSet<usize> = w
        .names()
        .filter_map(|n| n.strip_prefix("features."))
        .filter_map(|n| n.split('.').next()?.parse().ok())
        .collect();
    let last = *indices.iter().max().unwrap();
    let mut features: Vec<vgg::Feature> = Vec::new();
    let mut channels = 3usize;
    // Walk torchvision's `make_layers` order: conv [bn] relu, with a max pool after the
    // ReLU wherever the next parameter-carrying index leaves a gap for it.
    let mut idx = 0;
    while idx <= last + 2 {
        let prev_is_relu = matches!(features.last(), Some((_, Layer::Relu)));
        let layer = if indices.contains(&idx) {
            if w.has(&format!("features.{idx}.running_mean")) {
                Layer::BatchNorm(batchnorm(w, &format!("features.{idx}"), channels)?)
            } else {
                let c = conv(w, &format!("features.{idx}"), Some(channels), 1, 1, true)?;
                channels = c.out_channels();
                Layer::Conv {
                    conv: c,
                    first: false,
                }
            }
        } else if prev_is_relu {
            Layer::MaxPool(MaxPool2d {
                kernel: 2,
                stride: 2,
                padding: 0,
                ceil_mode: false,
            })
        } else if features.is_empty() {
            bail!("{}: VGG layout without 'features.0' conv", w.file_name());
        } else {
            Layer::Relu
        };
        let is_pool = matches!(layer, Layer::MaxPool(_));
        features.push((idx, layer));
        idx += 1;
        if idx > last && is_pool {
            break;
        }
    }
    if !matches!(features.last(), Some((_, Layer::MaxPool(_)))) {
        bail!(
            "{}: could not infer VGG features ending in a max pool from tensor names",
            w.file_name()
        );
    }

    // Classifier: torchvision `classifier.{0,3,6}` or timm `pre_logits.fc1/fc2` + `head.fc`.
    let mut names: Vec<String> = Vec::new();
    if w.has("pre_logits.fc1.weight") {
        names.extend(["pre_logits.fc1", "pre_logits.fc2", "head.fc"].map(String::from));
    } else {
        let mut cls: Vec<usize> = w
            .names()
            .filter_map(|n| n.strip_prefix("classifier."))
            .filter_map(|n| n.split('.').next()?.parse().ok())
            .collect::<BTreeSet<usize>>()
            .into_iter()
            .collect();
        cls.sort();
        names.extend(cls.iter().map(|i| format!("classifier.{i}")));
    }
    if names.is_empty() {
        // A features-only file (e.g. a reference case shipped without its 500 MB
        // classifier) still explains from a given initial relevance.
        return Ok(vgg::build(features, (7, 7), Vec::new()));
    }
    let mut classifier = Vec::new();
    let mut in_features = None;
    for n in &names {
        let l = linear(w, n, in_features)?;
        in_features = Some(l.out_features());
        classifier.push((n.clone(), l));
    }
    let first_in = classifier[0].1.in_features();
    if first_in % channels != 0 {
        bail!(
            "{}: classifier input {first_in} is not a multiple of the last conv's {channels} channels",
            w.file_name()
        );
    }
    let cells = first_in / channels;
    let side = (cells as f64).sqrt().round() as usize;
    if side * side != cells {
        bail!(
            "{}: classifier input {first_in} = {channels} × {cells} is not a square pooled map",
            w.file_name()
        );
    }
    Ok(vgg::build(features, (side, side), classifier))
}

fn load_resnet(w: &WeightView) -> Result<Model> {
    let conv1 = conv(w, "conv1", Some(3), 2, 3, false)?;
    let mut channels = conv1.out_channels();
    let bn1 = batchnorm(w, "bn1", channels)?;
    let bottleneck_net = w.has("layer1.0.conv3.weight");
    let mut layers = Vec::new();
    for s in 1..=4 {
        let mut blocks = Vec::new();
        let mut b = 0;
        while w.has(&format!("layer{s}.{b}.conv1.weight")) {
            let p = format!("layer{s}.{b}");
            // torchvision: the first block of stages 2-4 downsamples by 2.
            let stride = if s > 1 && b == 0 { 2 } else { 1 };
            // Decided once for the whole network, so a missing conv3 is reported as such.
            let bottleneck = bottleneck_net;
            let block = if bottleneck {
                let conv1 = conv(w, &format!("{p}.conv1"), Some(channels), 1, 0, false)?;
                let bn1 = batchnorm(w, &format!("{p}.bn1"), conv1.out_channels())?;
                let conv2 = conv(
                    w,
                    &format!("{p}.conv2"),
                    Some(conv1.out_channels()),
                    stride,
                    1,
                    false,
                )?;
                let bn2 = batchnorm(w, &format!("{p}.bn2"), conv2.out_channels())?;
                let conv3 = conv(
                    w,
                    &format!("{p}.conv3"),
                    Some(conv2.out_channels()),
                    1,
                    0,
                    false,
                )?;
                let bn3 = batchnorm(w, &format!("{p}.bn3"), conv3.out_channels())?;
                Block {
                    conv1,
                    bn1,
                    conv2,
                    bn2,
                    conv3: Some(conv3),
                    bn3: Some(bn3),
                    downsample: None,
                }
            } else {
                let conv1 = conv(w, &format!("{p}.conv1"), Some(channels), stride, 1, false)?;
                let bn1 = batchnorm(w, &format!("{p}.bn1"), conv1.out_channels())?;
                let conv2 = conv(
                    w,
                    &format!("{p}.conv2"),
                    Some(conv1.out_channels()),
                    1,
                    1,
                    false,
                )?;
                let bn2 = batchnorm(w, &format!("{p}.bn2"), conv2.out_channels())?;
                Block {
                    conv1,
                    bn1,
                    conv2,
                    bn2,
                    conv3: None,
                    bn3: None,
                    downsample: None,
                }
            };
            let out_c = block.conv3.as_ref().unwrap_or(&block.conv2).out_channels();
            let downsample = if w.has(&format!("{p}.downsample.0.weight")) {
                let dc = conv(
                    w,
                    &format!("{p}.downsample.0"),
                    Some(channels),
                    stride,
                    0,
                    false,
                )?;
                if dc.out_channels() != out_c {
                    bail!("{}: tensor '{}{p}.downsample.0.weight' has {} output channels, expected {out_c}", w.file_name(), w.prefix, dc.out_channels());
                }
                let dbn = batchnorm(w, &format!("{p}.downsample.1"), out_c)?;
                Some((dc, dbn))
            } else {
                if stride != 1 || out_c != channels {
                    bail!(
                        "{}: block {p} changes shape but has no 'downsample.0.weight'",
                        w.file_name()
                    );
                }
                None
            };
            blocks.push(Block {
                downsample,
                ..block
            });
            channels = out_c;
            b += 1;
        }
        if blocks.is_empty() {
            bail!(
                "{}: missing tensor '{}layer{s}.0.conv1.weight'",
                w.file_name(),
                w.prefix
            );
        }
        layers.push(blocks);
    }
    let fc = linear(w, "fc", Some(channels))?;
    Ok(resnet::build(conv1, bn1, layers, fc))
}
