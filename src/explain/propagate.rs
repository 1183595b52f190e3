//! One backward walk from the logits to the pixels for every model, parameterised by a
//! [`LayerRules`] object that says what each kind of layer does to the relevance (or
//! gradient) passing through it. A method is a rule set plus a seed at the logits; the
//! walk, the saved activations and the scheduler are shared.

use crate::gpu::{GpuTensor, Recorder};
use crate::layers::MaxPool2d;
use crate::models::gpu::{Forward, GpuModel, GpuVggLayer, Saved};
use crate::ops::{GpuBatchNorm, GpuConv, GpuLinear};

/// What a backward method does at each kind of layer. Every function maps the signal
/// `r` at the layer's output to the signal at its input, given the layer's input `x`
/// (for ReLU: its output).
pub trait LayerRules {
    /// Convolution with input `x`. The first convolution (3 input channels) is
    /// included: a rule set may treat it differently (LRP's z^B rule).
    fn conv(&self, rec: &mut Recorder, x: &GpuTensor, r: &GpuTensor, conv: &GpuConv) -> GpuTensor;
    /// Fully connected layer with input `x` `[N, in]`; `r` is `[N, out]`.
    fn linear(&self, rec: &mut Recorder, x: &GpuTensor, r: &GpuTensor, l: &GpuLinear) -> GpuTensor;
    /// The last linear layer (the logits), which receives the seed itself. Most rule
    /// sets treat it like any other; RAP starts differently.
    fn top_linear(
        &self,
        rec: &mut Recorder,
        x: &GpuTensor,
        seed: &GpuTensor,
        l: &GpuLinear,
    ) -> GpuTensor {
        self.linear(rec, x, seed, l)
    }
    /// ReLU whose output is `out`.
    fn relu(&self, rec: &mut Recorder, out: &GpuTensor, r: &GpuTensor) -> GpuTensor;
    /// Max pool with input `x`.
    fn max_pool(
        &self,
        rec: &mut Recorder,
        x: &GpuTensor,
        r: &GpuTensor,
        pool: &MaxPool2d,
    ) -> GpuTensor;
    /// Adaptive average pool with input `x`; `r` has the pooled size.
    fn avg_pool(&self, rec: &mut Recorder, x: &GpuTensor, r: &GpuTensor) -> GpuTensor;
    /// Batch norm (eval mode) with input `x`.
    fn batch_norm(
        &self,
        rec: &mut Recorder,
        x: &GpuTensor,
        r: &GpuTensor,
        bn: &GpuBatchNorm,
    ) -> GpuTensor;
    /// Residual addition `a + b`: the signals of the two summands.
    fn residual(
        &self,
        rec: &mut Recorder,
        a: &GpuTensor,
        b: &GpuTensor,
        r: &GpuTensor,
    ) -> (GpuTensor, GpuTensor);
}

/// Walks `seed` `[N, classes]` from the logits back to the pixels `[N, 3, H, W]`
/// through every layer of `model`, reading the activations `fwd` kept.
pub fn propagate(
    rec: &mut Recorder,
    model: &GpuModel,
    fwd: &Forward,
    seed: &GpuTensor,
    rules: &dyn LayerRules,
) -> GpuTensor {
    let r = propagate_head(rec, model, fwd, seed, rules);
    propagate_features(rec, model, fwd, r, rules)
}

/// From the logits to the explanation layer `A` (the activation Grad-CAM and RSP start
/// from), shaped like `A`.
pub fn propagate_head(
    rec: &mut Recorder,
    model: &GpuModel,
    fwd: &Forward,
    seed: &GpuTensor,
    rules: &dyn LayerRules,
) -> GpuTensor {
    let n = seed.shape[0];
    match model {
        GpuModel::Vgg(m) => {
            // head = [last pool output, adaptive pool output, hidden outputs...]; the
            // input of classifier[i] is head[1 + i] (flattened).
            let mut r = seed.clone();
            let last = m.classifier.len() - 1;
            for (i, l) in m.classifier.iter().enumerate().rev() {
                let x = &fwd.head[1 + i];
                let flat = x.reshaped(&[n, l.in_features]);
                r = if i == last {
                    rules.top_linear(rec, &flat, &r, l)
                } else {
                    rules.linear(rec, &flat, &r, l)
                };
                if i > 0 {
                    r = rules.relu(rec, x, &r);
                }
            }
            let pooled = &fwd.head[0];
            let r = r.reshaped(&fwd.head[1].shape);
            let mut r = rules.avg_pool(rec, pooled, &r);
            // The layers between A and the adaptive pool: the last max pool (ReLUs after
            // A would be identities on a non-negative input).
            for (_, l) in m.features[m.explain_pos + 1..].iter().rev() {
                if let GpuVggLayer::MaxPool(p) = l {
                    r = rules.max_pool(rec, &fwd.explain_act, &r, p);
                }
            }
            r
        }
        GpuModel::ResNet(m) => {
            let pooled = &fwd.head[0];
            let flat = pooled.reshaped(&[n, m.fc.in_features]);
            let r = rules.top_linear(rec, &flat, seed, &m.fc);
            let r = r.reshaped(&pooled.shape);
            rules.avg_pool(rec, &fwd.explain_act, &r)
        }
    }
}

/// From the explanation layer `A` down to the pixels.
pub fn propagate_features(
    rec: &mut Recorder,
    model: &GpuModel,
    fwd: &Forward,
    mut r: GpuTensor,
    rules: &dyn LayerRules,
) -> GpuTensor {
    match (model, &fwd.saved) {
        (GpuModel::Vgg(m), Saved::Vgg(saved)) => {
            for pos in (0..=m.explain_pos).rev() {
                let input = || saved[pos].as_ref().expect("layer input kept");
                r = match &m.features[pos].1 {
                    GpuVggLayer::Relu => {
                        let out = if pos == m.explain_pos {
                            &fwd.explain_act
                        } else {
                            saved[pos + 1].as_ref().expect("ReLU output kept")
                        };
                        rules.relu(rec, out, &r)
                    }
                    GpuVggLayer::MaxPool(p) => rules.max_pool(rec, input(), &r, p),
                    GpuVggLayer::BatchNorm(b) => rules.batch_norm(rec, input(), &r, b),
                    GpuVggLayer::Conv(c) => rules.conv(rec, input(), &r, c),
                };
            }
            r
        }
        (
            GpuModel::ResNet(m),
            Saved::ResNet {
                input,
                bn1_input,
                maxpool_input,
                blocks,
            },
        ) => {
            // Output of every block: the next block's input, and A after the last.
            let acts: Vec<_> = blocks.iter().flatten().collect();
            let outputs: Vec<&GpuTensor> = acts
                .iter()
                .skip(1)
                .map(|a| &a.input)
                .chain([&fwd.explain_act])
                .collect();
            let gpu_blocks: Vec<_> = m.layers.iter().flatten().collect();
            for (i, (block, a)) in gpu_blocks.iter().zip(&acts).enumerate().rev() {
                r = rules.relu(rec, outputs[i], &r);
                let (r_main, r_skip) = rules.residual(rec, &a.main, &a.skip, &r);
                let r_skip = match (&block.downsample, &a.downsample_bn_input) {
                    (Some((dc, dbn)), Some(bn_in)) => {
                        let t = rules.batch_norm(rec, bn_in, &r_skip, dbn);
                        rules.conv(rec, &a.input, &t, dc)
                    }
                    _ => r_skip,
                };
                // Main branch in reverse: [bn3 conv3 relu2] bn2 conv2 relu1 bn1 conv1.
                let mut convs = vec![(&block.conv1, &block.bn1), (&block.conv2, &block.bn2)];
                if let Some((c3, bn3)) = &block.conv3 {
                    convs.push((c3, bn3));
                }
                let mut t = r_main;
                for (j, (conv, bn)) in convs.iter().enumerate().rev() {
                    t = rules.batch_norm(rec, &a.bn_inputs[j], &t, bn);
                    let conv_in = if j == 0 {
                        &a.input
                    } else {
                        &a.conv_inputs[j - 1]
                    };
                    t = rules.conv(rec, conv_in, &t, conv);
                    if j > 0 {
                        t = rules.relu(rec, &a.conv_inputs[j - 1], &t);
                    }
                }
                r = crate::ops::add(rec, &t, &r_skip, false);
            }
            r = rules.max_pool(rec, maxpool_input, &r, &m.maxpool);
            r = rules.relu(rec, maxpool_input, &r);
            r = rules.batch_norm(rec, bn1_input, &r, &m.bn1);
            rules.conv(rec, input, &r, &m.conv1)
        }
        _ => unreachable!("forward pass does not belong to this model"),
    }
}
