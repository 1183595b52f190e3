//! Models on the GPU: weights uploaded once, and a forward pass that keeps every
//! activation the backward rules will read (the input of each layer on the explained
//! path) resident, recorded into the caller's [`Recorder`] with no host round-trip.

use crate::gpu::{GpuContext, GpuTensor, Recorder};
use crate::layers::MaxPool2d;
use crate::models::resnet::ResNet;
use crate::models::vgg::{Vgg, VggLayer};
use crate::models::Model;
use crate::ops::{self, GpuBatchNorm, GpuConv, GpuLinear};

pub enum GpuVggLayer {
    Conv(GpuConv),
    BatchNorm(GpuBatchNorm),
    Relu,
    MaxPool(MaxPool2d),
}

pub struct GpuVgg {
    pub features: Vec<(usize, GpuVggLayer)>,
    pub avgpool: (usize, usize),
    pub classifier: Vec<GpuLinear>,
    /// Position in `features` of the explanation layer (last ReLU before the last pool).
    pub explain_pos: usize,
}

pub struct GpuBlock {
    pub conv1: GpuConv,
    pub bn1: GpuBatchNorm,
    pub conv2: GpuConv,
    pub bn2: GpuBatchNorm,
    pub conv3: Option<(GpuConv, GpuBatchNorm)>,
    pub downsample: Option<(GpuConv, GpuBatchNorm)>,
}

pub struct GpuResNet {
    pub conv1: GpuConv,
    pub bn1: GpuBatchNorm,
    pub maxpool: MaxPool2d,
    pub layers: Vec<Vec<GpuBlock>>,
    pub fc: GpuLinear,
}

/// A model whose weights live on the GPU.
// One value per loaded model, passed by reference: the variants' size difference is
// irrelevant, and boxing would only add an indirection to every layer access.
#[allow(clippy::large_enum_variant)]
pub enum GpuModel {
    Vgg(GpuVgg),
    ResNet(GpuResNet),
}

/// Activations of one residual block kept for the backward rules.
pub struct BlockActs {
    /// Block input (input of conv1 and of the skip path).
    pub input: GpuTensor,
    /// Inputs of the batch norms (conv outputs): bn1, bn2 and (Bottleneck) bn3.
    pub bn_inputs: Vec<GpuTensor>,
    /// Inputs of conv2 and (Bottleneck) conv3, post-ReLU.
    pub conv_inputs: Vec<GpuTensor>,
    /// The two summands of the residual add: main branch (after the last BN) and skip.
    pub main: GpuTensor,
    pub skip: GpuTensor,
    /// Input of the downsample BN, if any.
    pub downsample_bn_input: Option<GpuTensor>,
}

/// What the forward pass leaves on the GPU.
pub struct Forward {
    pub logits: GpuTensor,
    /// The explanation layer's activation A `[N, C, h, w]`.
    pub explain_act: GpuTensor,
    /// Head activations for the backward passes: VGG `[last max-pool output, adaptive
    /// pool output, post-ReLU hidden linear outputs...]`; ResNet `[global pool output]`.
    pub head: Vec<GpuTensor>,
    pub saved: Saved,
}

pub enum Saved {
    /// Input of each `features` position up to the explanation layer (None where a
    /// fused ReLU's input was never materialised; ReLU's rule does not read it).
    Vgg(Vec<Option<GpuTensor>>),
    ResNet {
        input: GpuTensor,
        bn1_input: GpuTensor,
        maxpool_input: GpuTensor,
        blocks: Vec<Vec<BlockActs>>,
    },
}

impl GpuModel {
    /// Uploads all weights (split where one exceeds the binding limit).
    pub fn upload(ctx: &GpuContext, model: &Model) -> Self {
        match model {
            Model::Vgg(m) => GpuModel::Vgg(upload_vgg(ctx, m)),
            Model::ResNet(m) => GpuModel::ResNet(upload_resnet(ctx, m)),
        }
    }

    /// Number of classes; 0 for a features-only VGG.
    pub fn num_classes(&self) -> usize {
        match self {
            GpuModel::Vgg(m) => m.classifier.last().map_or(0, |l| l.out_features),
            GpuModel::ResNet(m) => m.fc.out_features,
        }
    }

    /// Runs the forward pass of `x` `[N, 3, H, W]`, keeping what RSP needs.
    pub fn forward(&self, rec: &mut Recorder, x: &GpuTensor) -> Forward {
        match self {
            GpuModel::Vgg(m) => forward_vgg(rec, m, x),
            GpuModel::ResNet(m) => forward_resnet(rec, m, x),
        }
    }

    /// Bytes of the largest single tensor one image needs at `h × w` (activations,
    /// channel attribution maps, z^B terms): the batch is split so that no binding
    /// exceeds the adapter's limit.
    pub fn largest_tensor_per_image(&self, h: usize, w: usize) -> u64 {
        let mut worst = 0u64;
        let mut visit_conv = |c: &GpuConv, h: usize, w: usize| {
            let g = &c.geom;
            let (ho, wo) = g.out_hw(h, w);
            let sizes = [
                3 * g.c_in * h * w,
                g.c_out * ho * wo * 2,
                2 * g.c_out * g.c_in * g.kh * g.kw,
            ];
            worst = worst.max(sizes.into_iter().max().unwrap() as u64 * 4);
            (ho, wo)
        };
        match self {
            GpuModel::Vgg(m) => {
                let (mut h, mut w) = (h, w);
                for (_, l) in &m.features {
                    match l {
                        GpuVggLayer::Conv(c) => (h, w) = visit_conv(c, h, w),
                        GpuVggLayer::MaxPool(p) => (h, w) = p.out_hw(h, w),
                        _ => {}
                    }
                }
            }
            GpuModel::ResNet(m) => {
                let (mut h, mut w) = visit_conv(&m.conv1, h, w);
                (h, w) = m.maxpool.out_hw(h, w);
                for b in m.layers.iter().flatten() {
                    let hw_in = (h, w);
                    (h, w) = visit_conv(&b.conv1, h, w);
                    (h, w) = visit_conv(&b.conv2, h, w);
                    if let Some((c3, _)) = &b.conv3 {
                        (h, w) = visit_conv(c3, h, w);
                    }
                    if let Some((d, _)) = &b.downsample {
                        visit_conv(d, hw_in.0, hw_in.1);
                    }
                }
            }
        }
        worst
    }
}

fn upload_vgg(ctx: &GpuContext, m: &Vgg) -> GpuVgg {
    let features = m
        .features
        .iter()
        .map(|(i, l)| {
            let g = match l {
                VggLayer::Conv(c) => GpuVggLayer::Conv(GpuConv::upload(ctx, c)),
                VggLayer::BatchNorm(b) => GpuVggLayer::BatchNorm(GpuBatchNorm::upload(ctx, b)),
                VggLayer::Relu => GpuVggLayer::Relu,
                VggLayer::MaxPool(p) => GpuVggLayer::MaxPool(*p),
            };
            (*i, g)
        })
        .collect();
    GpuVgg {
        features,
        avgpool: m.avgpool,
        classifier: m
            .classifier
            .iter()
            .map(|l| GpuLinear::upload(ctx, l))
            .collect(),
        explain_pos: m.explain_position(),
    }
}

fn upload_resnet(ctx: &GpuContext, m: &ResNet) -> GpuResNet {
    let layers = m
        .layers
        .iter()
        .map(|stage| {
            stage
                .iter()
                .map(|b| GpuBlock {
                    conv1: GpuConv::upload(ctx, &b.conv1),
                    bn1: GpuBatchNorm::upload(ctx, &b.bn1),
                    conv2: GpuConv::upload(ctx, &b.conv2),
                    bn2: GpuBatchNorm::upload(ctx, &b.bn2),
                    conv3: b
                        .conv3
                        .as_ref()
                        .zip(b.bn3.as_ref())
                        .map(|(c, n)| (GpuConv::upload(ctx, c), GpuBatchNorm::upload(ctx, n))),
                    downsample: b
                        .downsample
                        .as_ref()
                        .map(|(c, n)| (GpuConv::upload(ctx, c), GpuBatchNorm::upload(ctx, n))),
                })
                .collect()
        })
        .collect();
    GpuResNet {
        conv1: GpuConv::upload(ctx, &m.conv1),
        bn1: GpuBatchNorm::upload(ctx, &m.bn1),
        maxpool: m.maxpool,
        layers,
        fc: GpuLinear::upload(ctx, &m.fc),
    }
}

fn forward_vgg(rec: &mut Recorder, m: &GpuVgg, x: &GpuTensor) -> Forward {
    let mut saved: Vec<Option<GpuTensor>> = Vec::new();
    let mut cur = x.clone();
    let mut pos = 0;
    while pos <= m.explain_pos {
        saved.push(Some(cur.clone()));
        // A ReLU right after a conv or BN is fused into it; its input is not needed.
        let relu_next = matches!(m.features.get(pos + 1), Some((_, GpuVggLayer::Relu)));
        let fuse = relu_next && pos < m.explain_pos;
        cur = match &m.features[pos].1 {
            GpuVggLayer::Conv(c) => ops::conv2d(rec, &cur, c, fuse),
            GpuVggLayer::BatchNorm(b) => ops::batch_norm(rec, &cur, b, fuse),
            GpuVggLayer::Relu => ops::relu(rec, &cur),
            GpuVggLayer::MaxPool(p) => ops::max_pool2d(rec, &cur, p),
        };
        if fuse
            && !matches!(
                m.features[pos].1,
                GpuVggLayer::Relu | GpuVggLayer::MaxPool(_)
            )
        {
            saved.push(None);
            pos += 1;
        }
        pos += 1;
    }
    let explain_act = cur.clone();
    if m.classifier.is_empty() {
        // Features-only weights: nothing to classify with; logits are [N, 0].
        return Forward {
            logits: rec.ctx.empty(&[x.shape[0], 0]),
            explain_act,
            head: Vec::new(),
            saved: Saved::Vgg(saved),
        };
    }
    // Head: the remaining features (the last max pool), the adaptive pool, the classifier.
    let mut head = Vec::new();
    for (_, l) in &m.features[m.explain_pos + 1..] {
        cur = match l {
            GpuVggLayer::MaxPool(p) => ops::max_pool2d(rec, &cur, p),
            GpuVggLayer::Relu => ops::relu(rec, &cur),
            _ => panic!("VGG head after the explanation layer must be pooling only"),
        };
    }
    head.push(cur.clone());
    cur = ops::adaptive_avg_pool2d(rec, &cur, m.avgpool);
    head.push(cur.clone());
    let last = m.classifier.len() - 1;
    for (i, l) in m.classifier.iter().enumerate() {
        cur = ops::linear(rec, &cur, l, i < last);
        if i < last {
            head.push(cur.clone());
        }
    }
    Forward {
        logits: cur,
        explain_act,
        head,
        saved: Saved::Vgg(saved),
    }
}

fn forward_resnet(rec: &mut Recorder, m: &GpuResNet, x: &GpuTensor) -> Forward {
    let c1 = ops::conv2d(rec, x, &m.conv1, false);
    let pool_in = ops::batch_norm(rec, &c1, &m.bn1, true);
    let mut cur = ops::max_pool2d(rec, &pool_in, &m.maxpool);
    let mut blocks = Vec::new();
    for stage in &m.layers {
        let mut stage_acts = Vec::new();
        for b in stage {
            let input = cur.clone();
            let mut bn_inputs = Vec::new();
            let mut conv_inputs = Vec::new();
            let t = ops::conv2d(rec, &input, &b.conv1, false);
            bn_inputs.push(t.clone());
            let t = ops::batch_norm(rec, &t, &b.bn1, true);
            conv_inputs.push(t.clone());
            let t = ops::conv2d(rec, &t, &b.conv2, false);
            bn_inputs.push(t.clone());
            let main = if let Some((c3, bn3)) = &b.conv3 {
                let t = ops::batch_norm(rec, &t, &b.bn2, true);
                conv_inputs.push(t.clone());
                let t = ops::conv2d(rec, &t, c3, false);
                bn_inputs.push(t.clone());
                ops::batch_norm(rec, &t, bn3, false)
            } else {
                ops::batch_norm(rec, &t, &b.bn2, false)
            };
            let (skip, downsample_bn_input) = match &b.downsample {
                Some((dc, dbn)) => {
                    let d = ops::conv2d(rec, &input, dc, false);
                    (ops::batch_norm(rec, &d, dbn, false), Some(d))
                }
                None => (input.clone(), None),
            };
            cur = ops::add(rec, &main, &skip, true);
            stage_acts.push(BlockActs {
                input,
                bn_inputs,
                conv_inputs,
                main,
                skip,
                downsample_bn_input,
            });
        }
        blocks.push(stage_acts);
    }
    let explain_act = cur.clone();
    let pooled = ops::adaptive_avg_pool2d(rec, &cur, (1, 1));
    let logits = ops::linear(rec, &pooled, &m.fc, false);
    Forward {
        logits,
        explain_act,
        head: vec![pooled],
        saved: Saved::ResNet {
            input: x.clone(),
            bn1_input: c1,
            maxpool_input: pool_in,
            blocks,
        },
    }
}
