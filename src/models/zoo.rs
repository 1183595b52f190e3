//! torchvision architectures with random weights (He-normal convs, small biases,
//! eval-mode BN statistics), for benchmarks and tests where only shapes matter.

use super::graph::Layer;
use super::model::{Model, BN_EPS};
use super::resnet::Block;
use crate::layers::{BatchNorm2d, Conv2d, Linear, MaxPool2d};
use crate::tensor::Tensor;

pub(crate) use crate::rng::SplitMix64 as Rng;

/// A tensor of uniform values in `[lo, hi)` from `seed` (deterministic).
pub fn random_tensor(shape: &[usize], seed: u64, lo: f32, hi: f32) -> Tensor {
    let mut rng = Rng(seed);
    let n = shape.iter().product();
    Tensor::new(
        shape.to_vec(),
        (0..n).map(|_| lo + (hi - lo) * rng.unit_f32()).collect(),
    )
}

fn conv(
    rng: &mut Rng,
    c_out: usize,
    c_in: usize,
    k: usize,
    stride: usize,
    padding: usize,
    bias: bool,
) -> Conv2d {
    let std = (2.0 / (c_out * k * k) as f32).sqrt();
    Conv2d {
        weight: Tensor::new(vec![c_out, c_in, k, k], rng.fill(c_out * c_in * k * k, std)),
        bias: bias.then(|| rng.fill(c_out, 0.05)),
        stride,
        padding,
    }
}

fn bn(rng: &mut Rng, c: usize) -> BatchNorm2d {
    BatchNorm2d {
        gamma: (0..c).map(|_| 0.5 + rng.unit_f32()).collect(),
        beta: (0..c).map(|_| 0.2 * (rng.unit_f32() - 0.5)).collect(),
        running_mean: (0..c).map(|_| 0.2 * (rng.unit_f32() - 0.5)).collect(),
        running_var: (0..c).map(|_| 0.5 + 1.5 * rng.unit_f32()).collect(),
        eps: BN_EPS,
    }
}

fn linear(rng: &mut Rng, out: usize, inp: usize) -> Linear {
    Linear {
        weight: Tensor::new(
            vec![out, inp],
            rng.fill(out * inp, (2.0 / inp as f32).sqrt()),
        ),
        bias: rng.fill(out, 0.01),
    }
}

/// torchvision VGG configuration by depth (11, 13, 16, 19); `0` marks a max pool.
pub fn vgg_config(depth: usize) -> Option<Vec<usize>> {
    Some(match depth {
        11 => vec![64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0],
        13 => vec![
            64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0,
        ],
        16 => vec![
            64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
        ],
        19 => vec![
            64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512,
            512, 0,
        ],
        _ => return None,
    })
}

/// A VGG in torchvision's layout: `cfg` widths (0 = max pool), classifier
/// `hidden`-`hidden`-`classes` on a 7×7 (`pool`) adaptive pool.
pub fn vgg(
    cfg: &[usize],
    batch_norm: bool,
    hidden: usize,
    classes: usize,
    pool: usize,
    seed: u64,
) -> Model {
    let mut rng = Rng(seed);
    let mut features: Vec<super::vgg::Feature> = Vec::new();
    let mut c = 3;
    for &v in cfg {
        let i = features.len();
        if v == 0 {
            features.push((
                i,
                Layer::MaxPool(MaxPool2d {
                    kernel: 2,
                    stride: 2,
                    padding: 0,
                    ceil_mode: false,
                }),
            ));
            continue;
        }
        features.push((
            i,
            Layer::Conv {
                conv: conv(&mut rng, v, c, 3, 1, 1, true),
                first: false,
            },
        ));
        if batch_norm {
            features.push((i + 1, Layer::BatchNorm(bn(&mut rng, v))));
        }
        features.push((features.len(), Layer::Relu));
        c = v;
    }
    let classifier = vec![
        (
            "classifier.0".into(),
            linear(&mut rng, hidden, c * pool * pool),
        ),
        ("classifier.3".into(), linear(&mut rng, hidden, hidden)),
        ("classifier.6".into(), linear(&mut rng, classes, hidden)),
    ];
    super::vgg::build(features, (pool, pool), classifier)
}

/// Block counts of torchvision ResNets by depth, and whether they use Bottlenecks.
pub fn resnet_config(depth: usize) -> Option<([usize; 4], bool)> {
    Some(match depth {
        18 => ([2, 2, 2, 2], false),
        34 => ([3, 4, 6, 3], false),
        50 => ([3, 4, 6, 3], true),
        101 => ([3, 4, 23, 3], true),
        152 => ([3, 8, 36, 3], true),
        _ => return None,
    })
}

/// A ResNet in torchvision's layout with stage widths `width·(1, 2, 4, 8)`
/// (torchvision: width 64).
pub fn resnet(
    blocks: [usize; 4],
    bottleneck: bool,
    width: usize,
    classes: usize,
    seed: u64,
) -> Model {
    let mut rng = Rng(seed);
    let expansion = if bottleneck { 4 } else { 1 };
    let conv1 = conv(&mut rng, width, 3, 7, 2, 3, false);
    let bn1 = bn(&mut rng, width);
    let mut c = width;
    let mut layers = Vec::new();
    for (s, &count) in blocks.iter().enumerate() {
        let planes = width << s;
        let mut stage = Vec::new();
        for b in 0..count {
            let stride = if s > 0 && b == 0 { 2 } else { 1 };
            let out = planes * expansion;
            let block = if bottleneck {
                Block {
                    conv1: conv(&mut rng, planes, c, 1, 1, 0, false),
                    bn1: bn(&mut rng, planes),
                    conv2: conv(&mut rng, planes, planes, 3, stride, 1, false),
                    bn2: bn(&mut rng, planes),
                    conv3: Some(conv(&mut rng, out, planes, 1, 1, 0, false)),
                    bn3: Some(bn(&mut rng, out)),
                    downsample: None,
                }
            } else {
                Block {
                    conv1: conv(&mut rng, planes, c, 3, stride, 1, false),
                    bn1: bn(&mut rng, planes),
                    conv2: conv(&mut rng, planes, planes, 3, 1, 1, false),
                    bn2: bn(&mut rng, planes),
                    conv3: None,
                    bn3: None,
                    downsample: None,
                }
            };
            let downsample = (stride != 1 || c != out).then(|| {
                (
                    conv(&mut rng, out, c, 1, stride, 0, false),
                    bn(&mut rng, out),
                )
            });
            stage.push(Block {
                downsample,
                ..block
            });
            c = out;
        }
        layers.push(stage);
    }
    let fc = linear(&mut rng, classes, c);
    super::resnet::build(conv1, bn1, layers, fc)
}

/// A torchvision model by name (`vgg16`, `vgg16_bn`, `resnet50`, ...) with random
/// weights and 1000 classes.
pub fn by_name(name: &str, seed: u64) -> Option<Model> {
    if let Some(rest) = name.strip_prefix("vgg") {
        let (depth, bn) = match rest.strip_suffix("_bn") {
            Some(d) => (d, true),
            None => (rest, false),
        };
        let cfg = vgg_config(depth.parse().ok()?)?;
        return Some(vgg(&cfg, bn, 4096, 1000, 7, seed));
    }
    let depth = name.strip_prefix("resnet")?.parse().ok()?;
    let (blocks, bottleneck) = resnet_config(depth)?;
    Some(resnet(blocks, bottleneck, 64, 1000, seed))
}
