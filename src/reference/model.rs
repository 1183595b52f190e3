//! Whole-model reference: forward pass that keeps every activation the RSP rules read,
//! the head gradient `∂y_t/∂A`, and [`explain`], which walks the rules of `rsp.rs` from
//! the explanation layer down to the pixels, optionally recording the relevance at the
//! input of every module under the golden files' names.

use anyhow::{bail, ensure, Result};

use crate::explain::{Explanation, Init};
use crate::layers::{BatchNorm2d, Conv2d};
use crate::models::resnet::{Block, ResNet};
use crate::models::vgg::{Vgg, VggLayer};
use crate::models::Model;
use crate::tensor::Tensor;

use super::ops::{
    adaptive_avg_pool2d, adaptive_avg_pool2d_backward, add, batch_norm, conv2d, conv2d_dgrad,
    dims4, linear, linear_backward_input, max_pool2d, max_pool2d_route, relu, top_k, zip,
};
use super::rsp::{
    batchnorm_rule, comparative_init, conv_rule, first_conv_rule, gradcam_init, maxpool_rule,
    residual_rule,
};

/// Everything the forward pass keeps for the head gradient and the backward rules.
#[derive(Clone, Debug)]
pub struct ForwardTrace {
    /// `[N, classes]`
    pub logits: Tensor,
    /// The explanation-layer activation `A` `[N, C, h, w]` (VGG: output of
    /// `features[explain_position]`; ResNet: output of `layer4`).
    pub act: Tensor,
    /// Architecture-specific activations.
    pub detail: TraceDetail,
}

/// The architecture-specific part of a [`ForwardTrace`].
#[derive(Clone, Debug)]
pub enum TraceDetail {
    /// Trace of a [`Vgg`].
    Vgg(VggTrace),
    /// Trace of a [`ResNet`].
    ResNet(ResNetTrace),
}

/// VGG activations.
#[derive(Clone, Debug)]
pub struct VggTrace {
    /// `inputs[k]` is the input of `features[k]` (position `k` in `Vgg::features`), for
    /// every module, including those after the explanation layer.
    pub inputs: Vec<Tensor>,
    /// Output of the last `features` module (the adaptive average pool's input).
    pub features_out: Tensor,
    /// Output of the adaptive average pool (the classifier input before flattening).
    pub pooled: Tensor,
    /// Output (pre-ReLU) of every classifier Linear except the last.
    pub hidden: Vec<Tensor>,
}

/// ResNet activations.
#[derive(Clone, Debug)]
pub struct ResNetTrace {
    /// The network input (`conv1`'s input).
    pub input: Tensor,
    /// `conv1` output (`bn1`'s input).
    pub conv1_out: Tensor,
    /// `relu` output (`maxpool`'s input).
    pub relu_out: Tensor,
    /// `blocks[s][b]` for `layer{s+1}.{b}`.
    pub blocks: Vec<Vec<BlockTrace>>,
}

/// Activations of one residual block. For a BasicBlock `c3`/`r2` are absent and `c2`
/// is the input of `bn2`.
#[derive(Clone, Debug)]
pub struct BlockTrace {
    /// Block input (input of `conv1` and of the skip path).
    pub x: Tensor,
    /// `conv1` output (`bn1`'s input).
    pub c1: Tensor,
    /// `relu1` output (`conv2`'s input).
    pub r1: Tensor,
    /// `conv2` output (`bn2`'s input).
    pub c2: Tensor,
    /// Bottleneck: `relu2` output (`conv3`'s input).
    pub r2: Option<Tensor>,
    /// Bottleneck: `conv3` output (`bn3`'s input).
    pub c3: Option<Tensor>,
    /// Residual-branch input of the addition (output of the last BN of the main path).
    pub main: Tensor,
    /// `downsample.0` output (`downsample.1`'s input), if the block has a downsample.
    pub ds_conv: Option<Tensor>,
    /// Skip-branch input of the addition (downsample output, or `x`).
    pub skip: Tensor,
}

fn conv_fwd(x: &Tensor, c: &Conv2d) -> Tensor {
    conv2d(x, &c.weight, c.bias.as_deref(), c.stride, c.padding)
}

/// Runs the model on `input` `[N, 3, H, W]` and keeps the activations RSP needs.
pub fn forward(model: &Model, input: &Tensor) -> ForwardTrace {
    match model {
        Model::Vgg(m) => forward_vgg(m, input),
        Model::ResNet(m) => forward_resnet(m, input),
    }
}

fn forward_vgg(m: &Vgg, input: &Tensor) -> ForwardTrace {
    let pos = m.explain_position();
    let mut inputs = Vec::with_capacity(m.features.len());
    let mut x = input.clone();
    for (_, layer) in &m.features {
        let y = match layer {
            VggLayer::Conv(c) => conv_fwd(&x, c),
            VggLayer::BatchNorm(bn) => batch_norm(&x, bn),
            VggLayer::Relu => relu(&x),
            VggLayer::MaxPool(p) => max_pool2d(&x, p),
        };
        inputs.push(std::mem::replace(&mut x, y));
    }
    let features_out = x;
    let act = if pos + 1 < inputs.len() {
        inputs[pos + 1].clone()
    } else {
        features_out.clone()
    };
    let pooled = adaptive_avg_pool2d(&features_out, m.avgpool);
    let n = pooled.shape[0];
    let mut h = pooled.clone().reshape(&[n, pooled.numel() / n.max(1)]);
    let mut hidden = Vec::new();
    for (li, l) in m.classifier.iter().enumerate() {
        let z = linear(&h, l);
        if li + 1 < m.classifier.len() {
            h = relu(&z);
            hidden.push(z);
        } else {
            h = z;
        }
    }
    ForwardTrace {
        logits: h,
        act,
        detail: TraceDetail::Vgg(VggTrace {
            inputs,
            features_out,
            pooled,
            hidden,
        }),
    }
}

fn forward_block(b: &Block, x: &Tensor) -> (BlockTrace, Tensor) {
    let c1 = conv_fwd(x, &b.conv1);
    let r1 = relu(&batch_norm(&c1, &b.bn1));
    let c2 = conv_fwd(&r1, &b.conv2);
    let (r2, c3, main) = match (&b.conv3, &b.bn3) {
        (Some(conv3), Some(bn3)) => {
            let r2 = relu(&batch_norm(&c2, &b.bn2));
            let c3 = conv_fwd(&r2, conv3);
            let main = batch_norm(&c3, bn3);
            (Some(r2), Some(c3), main)
        }
        _ => (None, None, batch_norm(&c2, &b.bn2)),
    };
    let (ds_conv, skip) = match &b.downsample {
        Some((dc, dbn)) => {
            let d = conv_fwd(x, dc);
            let s = batch_norm(&d, dbn);
            (Some(d), s)
        }
        None => (None, x.clone()),
    };
    let out = relu(&add(&main, &skip));
    let trace = BlockTrace {
        x: x.clone(),
        c1,
        r1,
        c2,
        r2,
        c3,
        main,
        ds_conv,
        skip,
    };
    (trace, out)
}

fn forward_resnet(m: &ResNet, input: &Tensor) -> ForwardTrace {
    let conv1_out = conv_fwd(input, &m.conv1);
    let relu_out = relu(&batch_norm(&conv1_out, &m.bn1));
    let mut x = max_pool2d(&relu_out, &m.maxpool);
    let mut blocks = Vec::with_capacity(m.layers.len());
    for stage in &m.layers {
        let mut traces = Vec::with_capacity(stage.len());
        for b in stage {
            let (t, out) = forward_block(b, &x);
            traces.push(t);
            x = out;
        }
        blocks.push(traces);
    }
    let act = x;
    let pooled = adaptive_avg_pool2d(&act, (1, 1));
    let logits = linear(&pooled, &m.fc);
    ForwardTrace {
        logits,
        act,
        detail: TraceDetail::ResNet(ResNetTrace {
            input: input.clone(),
            conv1_out,
            relu_out,
            blocks,
        }),
    }
}

/// Gradient of `x ↦ f(x)` for one forward module, given its input and the gradient at its
/// output (used on the VGG head between the explanation layer and the average pool).
fn vgg_layer_backward(layer: &VggLayer, input: &Tensor, g: &Tensor) -> Tensor {
    match layer {
        VggLayer::Relu => zip(input, g, |x, gv| if x > 0.0 { gv } else { 0.0 }),
        VggLayer::MaxPool(p) => max_pool2d_route(input, g, p, 0.0),
        VggLayer::BatchNorm(bn) => bn_backward(bn, g),
        VggLayer::Conv(c) => {
            let (_, _, h, w) = dims4(input, "conv backward input");
            conv2d_dgrad(g, &c.weight, c.stride, c.padding, (h, w))
        }
    }
}

fn bn_backward(bn: &BatchNorm2d, g: &Tensor) -> Tensor {
    let (n, c, h, w) = dims4(g, "batch-norm backward");
    let mut out = g.data.clone();
    for p in 0..n * c {
        let scale = bn.gamma[p % c] / (bn.running_var[p % c] + bn.eps).sqrt();
        for v in &mut out[p * h * w..(p + 1) * h * w] {
            *v *= scale;
        }
    }
    Tensor::new(g.shape.clone(), out)
}

/// `∂ logit[classes[n]] / ∂A` for every image `n` (`classes.len()` = batch size), shaped
/// like `A`. VGG: back through the classifier (ReLU masks from the forward pass), the
/// adaptive average pool and the modules after the explanation layer (the last max pool,
/// first-wins argmax); ResNet: fc and the global average pool.
pub fn head_gradient(model: &Model, trace: &ForwardTrace, classes: &[usize]) -> Tensor {
    let n = trace.logits.shape[0];
    let num_classes = trace.logits.shape[1];
    assert_eq!(classes.len(), n, "head_gradient: one class per image");
    let mut onehot = vec![0.0f32; n * num_classes];
    for (i, &c) in classes.iter().enumerate() {
        assert!(
            c < num_classes,
            "class {c} out of range ({num_classes} classes)"
        );
        onehot[i * num_classes + c] = 1.0;
    }
    let onehot = Tensor::new(vec![n, num_classes], onehot);
    match (model, &trace.detail) {
        (Model::Vgg(m), TraceDetail::Vgg(t)) => {
            let mut g = onehot;
            for (li, l) in m.classifier.iter().enumerate().rev() {
                g = linear_backward_input(&g, l);
                if li > 0 {
                    g = zip(
                        &t.hidden[li - 1],
                        &g,
                        |z, gv| if z > 0.0 { gv } else { 0.0 },
                    );
                }
            }
            let g = g.reshape(&t.pooled.shape);
            let (_, _, fh, fw) = dims4(&t.features_out, "features output");
            let mut g = adaptive_avg_pool2d_backward(&g, (fh, fw));
            let pos = m.explain_position();
            for k in (pos + 1..m.features.len()).rev() {
                g = vgg_layer_backward(&m.features[k].1, &t.inputs[k], &g);
            }
            g
        }
        (Model::ResNet(m), TraceDetail::ResNet(_)) => {
            let c = m.fc.in_features();
            let g = linear_backward_input(&onehot, &m.fc).reshape(&[n, c, 1, 1]);
            let (_, _, h, w) = dims4(&trace.act, "layer4 output");
            adaptive_avg_pool2d_backward(&g, (h, w))
        }
        _ => panic!("head_gradient: trace does not belong to this model"),
    }
}

/// Collects per-module relevance when asked to.
struct Recorder {
    enabled: bool,
    layers: Vec<(String, Tensor)>,
}

impl Recorder {
    fn put(&mut self, name: impl Into<String>, r: &Tensor) {
        if self.enabled {
            self.layers.push((name.into(), r.clone()));
        }
    }
}

fn rsp_vgg(m: &Vgg, t: &VggTrace, init: Tensor, rec: &mut Recorder) -> Tensor {
    let pos = m.explain_position();
    let first_conv = m
        .features
        .iter()
        .position(|(_, l)| matches!(l, VggLayer::Conv(_)));
    let mut r = init;
    for k in (0..=pos).rev() {
        let (idx, layer) = &m.features[k];
        let x = &t.inputs[k];
        r = match layer {
            VggLayer::Relu => r,
            VggLayer::MaxPool(p) => maxpool_rule(x, &r, p),
            VggLayer::BatchNorm(bn) => batchnorm_rule(x, &r, bn),
            VggLayer::Conv(c) if Some(k) == first_conv => first_conv_rule(x, &r, c),
            VggLayer::Conv(c) => conv_rule(x, &r, &c.geometry()),
        };
        rec.put(format!("features.{idx}"), &r);
    }
    r
}

fn rsp_block(b: &Block, t: &BlockTrace, r: Tensor, name: &str, rec: &mut Recorder) -> Tensor {
    let bottleneck = b.is_bottleneck();
    let last_relu = if bottleneck { "relu3" } else { "relu2" };
    rec.put(format!("{name}.{last_relu}"), &r);
    let (ra, rb) = residual_rule(&t.main, &t.skip, &r);
    rec.put(format!("{name}.add.0"), &ra);
    rec.put(format!("{name}.add.1"), &rb);
    let skip = match (&b.downsample, &t.ds_conv) {
        (Some((dc, dbn)), Some(dout)) => {
            let r = batchnorm_rule(dout, &rb, dbn);
            rec.put(format!("{name}.downsample.1"), &r);
            let r = conv_rule(&t.x, &r, &dc.geometry());
            rec.put(format!("{name}.downsample.0"), &r);
            rec.put(format!("{name}.downsample"), &r);
            r
        }
        _ => rb,
    };
    let mut r = ra;
    if let (Some(conv3), Some(bn3), Some(c3), Some(r2)) = (&b.conv3, &b.bn3, &t.c3, &t.r2) {
        r = batchnorm_rule(c3, &r, bn3);
        rec.put(format!("{name}.bn3"), &r);
        r = conv_rule(r2, &r, &conv3.geometry());
        rec.put(format!("{name}.conv3"), &r);
        rec.put(format!("{name}.relu2"), &r);
    }
    r = batchnorm_rule(&t.c2, &r, &b.bn2);
    rec.put(format!("{name}.bn2"), &r);
    r = conv_rule(&t.r1, &r, &b.conv2.geometry());
    rec.put(format!("{name}.conv2"), &r);
    rec.put(format!("{name}.relu1"), &r);
    r = batchnorm_rule(&t.c1, &r, &b.bn1);
    rec.put(format!("{name}.bn1"), &r);
    r = conv_rule(&t.x, &r, &b.conv1.geometry());
    rec.put(format!("{name}.conv1"), &r);
    let out = add(&r, &skip);
    rec.put(name, &out);
    out
}

fn rsp_resnet(m: &ResNet, t: &ResNetTrace, init: Tensor, rec: &mut Recorder) -> Tensor {
    let mut r = init;
    for (s, stage) in m.layers.iter().enumerate().rev() {
        for (bi, b) in stage.iter().enumerate().rev() {
            let name = format!("layer{}.{bi}", s + 1);
            r = rsp_block(b, &t.blocks[s][bi], r, &name, rec);
        }
        rec.put(format!("layer{}", s + 1), &r);
    }
    r = maxpool_rule(&t.relu_out, &r, &m.maxpool);
    rec.put("maxpool", &r);
    rec.put("relu", &r);
    r = batchnorm_rule(&t.conv1_out, &r, &m.bn1);
    rec.put("bn1", &r);
    r = first_conv_rule(&t.input, &r, &m.conv1);
    rec.put("conv1", &r);
    r
}

/// The classes compared by the comparative initialisation for one image: the top-`k`
/// predictions with `target` first; if `target` is not among them, `target` followed by
/// the `k − 1` best other classes.
pub fn comparative_classes(logits_row: &[f32], target: usize, k: usize) -> Vec<usize> {
    let mut classes = vec![target];
    classes.extend(
        top_k(logits_row, logits_row.len())
            .into_iter()
            .filter(|&c| c != target)
            .take(k.saturating_sub(1)),
    );
    classes
}

/// Explains `input` `[N, 3, H, W]` with RSP: forward pass, initial relevance at the
/// explanation layer (`init`), then the rules of spec §3 down to the pixels.
/// `target` defaults to the argmax of each image's logits (ties → lower index). With
/// `record_layers`, [`Explanation::layers`] holds the relevance at the input of every
/// module on the path under the golden names (`features.13` … `features.0`;
/// `layer4.0.relu3`, `layer4.0.add.0`, … , `conv1`).
pub fn explain(
    model: &Model,
    input: &Tensor,
    target: Option<&[usize]>,
    init: &Init,
    record_layers: bool,
) -> Result<Explanation> {
    ensure!(
        input.shape.len() == 4 && input.shape[0] >= 1 && input.shape[1] == 3,
        "input must be [N, 3, H, W] with N >= 1, got {:?}",
        input.shape
    );
    if let Some(i) = input.data.iter().position(|v| !v.is_finite()) {
        bail!("input holds a non-finite value at flat index {i}");
    }
    ensure!(
        model.num_classes() > 0,
        "the CPU reference needs a classifier (these weights are features only)"
    );
    let n = input.shape[0];
    let trace = forward(model, input);
    let num_classes = trace.logits.shape[1];
    let rows: Vec<&[f32]> = trace.logits.data.chunks(num_classes).collect();
    let target: Vec<usize> = match target {
        Some(t) => {
            ensure!(
                t.len() == n,
                "{} target classes given for a batch of {n}",
                t.len()
            );
            if let Some(&bad) = t.iter().find(|&&c| c >= num_classes) {
                bail!("target class {bad} out of range: the model has {num_classes} classes");
            }
            t.to_vec()
        }
        None => rows.iter().map(|row| top_k(row, 1)[0]).collect(),
    };
    let init_rel = match init {
        Init::GradCam => gradcam_init(&trace.act, &head_gradient(model, &trace, &target)),
        Init::Comparative { k } => {
            let k = *k;
            ensure!(
                (2..=num_classes).contains(&k),
                "comparative initialisation needs 2 <= K <= {num_classes} classes, got K = {k}"
            );
            let per_image: Vec<Vec<usize>> = rows
                .iter()
                .zip(&target)
                .map(|(row, &t)| comparative_classes(row, t, k))
                .collect();
            let grads: Vec<Tensor> = (0..k)
                .map(|j| {
                    let cls: Vec<usize> = per_image.iter().map(|c| c[j]).collect();
                    head_gradient(model, &trace, &cls)
                })
                .collect();
            comparative_init(&trace.act, &grads)
        }
        Init::Given(t) => {
            ensure!(
                t.shape == trace.act.shape,
                "given initial relevance has shape {:?}, the explanation layer is {:?}",
                t.shape,
                trace.act.shape
            );
            if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
                bail!("given initial relevance holds a non-finite value at flat index {i}");
            }
            t.clone()
        }
    };
    let mut rec = Recorder {
        enabled: record_layers,
        layers: Vec::new(),
    };
    let relevance = match (model, &trace.detail) {
        (Model::Vgg(m), TraceDetail::Vgg(t)) => rsp_vgg(m, t, init_rel.clone(), &mut rec),
        (Model::ResNet(m), TraceDetail::ResNet(t)) => rsp_resnet(m, t, init_rel.clone(), &mut rec),
        _ => unreachable!("forward returns the trace of its model"),
    };
    Ok(Explanation {
        logits: trace.logits,
        target,
        init: init_rel,
        relevance,
        layers: rec.layers,
    })
}

/// Spatial mean of a `[N, C, h, w]` gradient per channel (the Grad-CAM weights
/// `ḡ_c`), `[N, C]`; sums in float64, rounded to float32 before the division.
pub fn channel_means(g: &Tensor) -> Tensor {
    let (n, c, h, w) = dims4(g, "channel_means");
    let hw = h * w;
    let data = g
        .data
        .chunks(hw.max(1))
        .take(n * c)
        .map(|p| p.iter().map(|&v| v as f64).sum::<f64>() as f32 / hw as f32)
        .collect();
    Tensor::new(vec![n, c], data)
}
