//! RSP end to end on the GPU: forward pass, head gradient, initial relevance and the
//! layer-by-layer sectional propagation, recorded into one submission per batch.

use anyhow::{bail, Result};

use super::rules::{
    rsp_batchnorm_rule, rsp_conv_rule, rsp_first_conv_rule, rsp_maxpool_rule, rsp_residual_rule,
};
use super::{Explanation, Init, NO_TARGET};
use crate::gpu::{Binding, GpuContext, GpuTensor, Recorder};
use crate::models::gpu::{Forward, GpuModel, GpuVggLayer, Saved};
use crate::ops::{self, GpuConv, NO_CLASS};
use crate::tensor::Tensor;

/// What to explain and how.
#[derive(Clone, Debug)]
pub struct RspOptions {
    pub init: Init,
    /// Class to explain per image; `None`: the top-1 prediction of each image.
    pub targets: Option<Vec<usize>>,
    /// Keep and return the relevance at every module's input (golden naming).
    pub record_layers: bool,
}

impl Default for RspOptions {
    fn default() -> Self {
        RspOptions {
            init: Init::GradCam,
            targets: None,
            record_layers: false,
        }
    }
}

/// Explains a batch `input` `[N, 3, H, W]` (already normalised). The batch is split
/// into passes small enough that no tensor exceeds the adapter's binding limit.
pub fn explain(
    ctx: &GpuContext,
    model: &GpuModel,
    input: &Tensor,
    opts: &RspOptions,
) -> Result<Explanation> {
    if input.shape.len() != 4 || input.shape[1] != 3 {
        bail!("input must be [N, 3, H, W], got {:?}", input.shape);
    }
    let n = input.shape[0];
    let classes = model.num_classes();
    if let Some(t) = &opts.targets {
        if t.len() != n {
            bail!("{} targets given for {n} images", t.len());
        }
        if let Some(bad) = t.iter().find(|&&c| c >= classes) {
            bail!("target class {bad} is out of range (the model has {classes} classes)");
        }
    }
    if classes == 0 && !matches!(opts.init, Init::Given(_)) {
        bail!("these weights have no classifier: explain them from a given initial relevance (--init-relevance)");
    }
    if let Init::Comparative { k } = opts.init {
        if k < 2 || k > classes {
            bail!("--compare-k must be between 2 and the number of classes ({classes}), got {k}");
        }
    }
    in_passes(ctx, model, input, |sub, range| {
        let mut sub_opts = opts.clone();
        sub_opts.targets = opts.targets.as_ref().map(|t| t[range.clone()].to_vec());
        if let Init::Given(t) = &opts.init {
            let per = t.numel() / t.shape[0];
            sub_opts.init = Init::Given(Tensor::new(
                [vec![range.len()], t.shape[1..].to_vec()].concat(),
                t.data[range.start * per..range.end * per].to_vec(),
            ));
        }
        explain_pass(ctx, model, sub, &sub_opts)
    })
}

/// Runs `pass` over sub-batches small enough that no tensor exceeds the adapter's
/// binding limit (`pass` gets the sub-batch and its image range) and joins the results.
pub(crate) fn in_passes(
    ctx: &GpuContext,
    model: &GpuModel,
    input: &Tensor,
    mut pass: impl FnMut(&Tensor, std::ops::Range<usize>) -> Result<Explanation>,
) -> Result<Explanation> {
    let n = input.shape[0];
    let per_image = model.largest_tensor_per_image(input.shape[2], input.shape[3]);
    if per_image > ctx.max_binding {
        bail!(
            "one {}×{} image needs a {} MiB tensor, more than this adapter binds at once ({} MiB); use a smaller --size",
            input.shape[2],
            input.shape[3],
            per_image >> 20,
            ctx.max_binding >> 20
        );
    }
    let chunk = ((ctx.max_binding / per_image.max(1)) as usize).clamp(1, n);
    let mut parts = Vec::new();
    for start in (0..n).step_by(chunk) {
        let end = (start + chunk).min(n);
        let sub = Tensor::new(
            [vec![end - start], input.shape[1..].to_vec()].concat(),
            input.data[start * input.numel() / n..end * input.numel() / n].to_vec(),
        );
        parts.push(pass(&sub, start..end)?);
    }
    Ok(concat(parts))
}

fn concat(parts: Vec<Explanation>) -> Explanation {
    if parts.len() == 1 {
        return parts.into_iter().next().unwrap();
    }
    let cat = |f: &dyn Fn(&Explanation) -> &Tensor| {
        let first = f(&parts[0]);
        let n: usize = parts.iter().map(|p| f(p).shape[0]).sum();
        let mut shape = first.shape.clone();
        shape[0] = n;
        Tensor::new(
            shape,
            parts.iter().flat_map(|p| f(p).data.clone()).collect(),
        )
    };
    let layers = parts[0]
        .layers
        .iter()
        .enumerate()
        .map(|(i, (name, _))| (name.clone(), cat(&|p: &Explanation| &p.layers[i].1)))
        .collect();
    Explanation {
        logits: cat(&|p| &p.logits),
        target: parts.iter().flat_map(|p| p.target.clone()).collect(),
        init: cat(&|p| &p.init),
        relevance: cat(&|p| &p.relevance),
        layers,
    }
}

/// One batch that fits the binding limit: everything is recorded, submitted once, and
/// only the requested outputs are read back.
fn explain_pass(
    ctx: &GpuContext,
    model: &GpuModel,
    input: &Tensor,
    opts: &RspOptions,
) -> Result<Explanation> {
    let n = input.shape[0];
    let mut rec = Recorder::new(ctx);
    let x = ctx.upload(input);
    let fwd = model.forward(&mut rec, &x);

    // Classes to differentiate: the target first, then (comparative) its competitors.
    let k = match opts.init {
        Init::Comparative { k } => k,
        _ => 1,
    };
    let first: Vec<u32> = match &opts.targets {
        Some(t) => t.iter().map(|&c| c as u32).collect(),
        None => vec![NO_CLASS; n],
    };
    // Without a classifier (features-only weights, given init) there is nothing to rank.
    let chosen = (model.num_classes() > 0).then(|| ops::top_k(&mut rec, &fwd.logits, &first, k));

    let init = match &opts.init {
        Init::Given(t) => {
            if t.shape != fwd.explain_act.shape {
                bail!(
                    "initial relevance 'init' has shape {:?}, but the explanation layer is {:?}",
                    t.shape,
                    fwd.explain_act.shape
                );
            }
            ctx.upload(t)
        }
        _ => {
            let chosen = chosen.as_ref().expect("a classifier ranks the classes");
            let seeds = ops::one_hot(&mut rec, &chosen.top, n * k, model.num_classes());
            let grad = head_gradient(&mut rec, model, &fwd, &seeds, k);
            initial_relevance(
                &mut rec,
                &fwd.explain_act,
                &grad,
                k,
                matches!(opts.init, Init::Comparative { .. }),
            )
        }
    };

    let mut layers: Vec<(String, GpuTensor)> = Vec::new();
    let mut record = |name: String, t: &GpuTensor| {
        if opts.record_layers {
            layers.push((name, t.clone()));
        }
    };
    let relevance = match model {
        GpuModel::Vgg(m) => {
            let Saved::Vgg(saved) = &fwd.saved else {
                unreachable!()
            };
            let mut r = init.clone();
            for pos in (0..=m.explain_pos).rev() {
                let (index, layer) = &m.features[pos];
                let x = || saved[pos].as_ref().expect("layer input kept");
                r = match layer {
                    GpuVggLayer::Relu => r,
                    GpuVggLayer::MaxPool(p) => rsp_maxpool_rule(&mut rec, x(), &r, p),
                    GpuVggLayer::BatchNorm(b) => rsp_batchnorm_rule(&mut rec, x(), &r, b),
                    GpuVggLayer::Conv(c) => conv_rule(&mut rec, x(), &r, c),
                };
                record(format!("features.{index}"), &r);
            }
            r
        }
        GpuModel::ResNet(m) => {
            let Saved::ResNet {
                input,
                bn1_input,
                maxpool_input,
                blocks,
            } = &fwd.saved
            else {
                unreachable!()
            };
            let mut r = init.clone();
            for (s, stage) in m.layers.iter().enumerate().rev() {
                for (b, block) in stage.iter().enumerate().rev() {
                    let acts = &blocks[s][b];
                    let p = format!("layer{}.{b}", s + 1);
                    let last = if block.conv3.is_some() { 3 } else { 2 };
                    record(format!("{p}.relu{last}"), &r);
                    let (r_main, r_skip) = rsp_residual_rule(&mut rec, &acts.main, &acts.skip, &r);
                    record(format!("{p}.add.0"), &r_main);
                    record(format!("{p}.add.1"), &r_skip);
                    let r_skip = match &block.downsample {
                        Some((dc, dbn)) => {
                            let t = rsp_batchnorm_rule(
                                &mut rec,
                                acts.downsample_bn_input.as_ref().unwrap(),
                                &r_skip,
                                dbn,
                            );
                            record(format!("{p}.downsample.1"), &t);
                            let t = conv_rule(&mut rec, &acts.input, &t, dc);
                            record(format!("{p}.downsample.0"), &t);
                            record(format!("{p}.downsample"), &t);
                            t
                        }
                        None => r_skip,
                    };
                    // Main branch in reverse: [bn3 conv3 relu2] bn2 conv2 relu1 bn1 conv1.
                    let mut convs: Vec<(&GpuConv, &crate::ops::GpuBatchNorm)> =
                        vec![(&block.conv1, &block.bn1), (&block.conv2, &block.bn2)];
                    if let Some((c3, bn3)) = &block.conv3 {
                        convs.push((c3, bn3));
                    }
                    let mut t = r_main;
                    for (j, (conv, bn)) in convs.iter().enumerate().rev() {
                        t = rsp_batchnorm_rule(&mut rec, &acts.bn_inputs[j], &t, bn);
                        record(format!("{p}.bn{}", j + 1), &t);
                        let conv_in = if j == 0 {
                            &acts.input
                        } else {
                            &acts.conv_inputs[j - 1]
                        };
                        t = conv_rule(&mut rec, conv_in, &t, conv);
                        record(format!("{p}.conv{}", j + 1), &t);
                        if j > 0 {
                            record(format!("{p}.relu{j}"), &t);
                        }
                    }
                    r = ops::add(&mut rec, &t, &r_skip, false);
                    record(p.clone(), &r);
                }
                record(format!("layer{}", s + 1), &r);
            }
            r = rsp_maxpool_rule(&mut rec, maxpool_input, &r, &m.maxpool);
            record("maxpool".into(), &r);
            record("relu".into(), &r);
            r = rsp_batchnorm_rule(&mut rec, bn1_input, &r, &m.bn1);
            record("bn1".into(), &r);
            r = conv_rule(&mut rec, input, &r, &m.conv1);
            record("conv1".into(), &r);
            r
        }
    };
    rec.submit();
    drop(rec);

    // Everything the caller gets, in one readback.
    let mut parts: Vec<(&wgpu::Buffer, usize)> = vec![
        (chosen.as_ref().map_or(init.buffer(), |c| &c.target), n),
        (fwd.logits.buffer(), fwd.logits.numel()),
        (init.buffer(), init.numel()),
        (relevance.buffer(), relevance.numel()),
    ];
    parts.extend(layers.iter().map(|(_, t)| (t.buffer(), t.numel())));
    let mut words = ctx.read_buffers(&parts)?.into_iter();
    let target_words = words.next().expect("target words");
    let target = match (&chosen, &opts.targets) {
        (Some(_), _) => target_words.iter().map(|&c| c as usize).collect(),
        // No classifier: the caller's targets, or NO_TARGET.
        (None, Some(t)) => t.clone(),
        (None, None) => vec![NO_TARGET; n],
    };
    let mut next = |shape: &[usize]| {
        let w = words.next().expect("one readback per part");
        Tensor::new(shape.to_vec(), bytemuck::cast_slice(&w).to_vec())
    };
    let logits = next(&fwd.logits.shape);
    let init_host = next(&init.shape);
    let relevance_host = next(&relevance.shape);
    let layers = layers
        .iter()
        .map(|(name, t)| (name.clone(), next(&t.shape)))
        .collect();
    Ok(Explanation {
        logits,
        target,
        init: init_host,
        relevance: relevance_host,
        layers,
    })
}

/// The z^B rule for the first convolution (chosen, as the authors do, by 3 input
/// channels), the sectional rule elsewhere.
fn conv_rule(rec: &mut Recorder, x: &GpuTensor, r: &GpuTensor, conv: &GpuConv) -> GpuTensor {
    if conv.geom.c_in == 3 {
        rsp_first_conv_rule(rec, x, r, conv)
    } else {
        rsp_conv_rule(rec, x, r, &conv.geom)
    }
}

/// ∂y/∂A for each seed row (`k` rows per image), back through the head on the GPU.
pub fn head_gradient(
    rec: &mut Recorder,
    model: &GpuModel,
    fwd: &Forward,
    seeds: &GpuTensor,
    k: usize,
) -> GpuTensor {
    let a = &fwd.explain_act;
    let (c, h, w) = (a.shape[1], a.shape[2], a.shape[3]);
    let rows = seeds.shape[0];
    match model {
        GpuModel::Vgg(m) => {
            let mut g = seeds.clone();
            for (i, l) in m.classifier.iter().enumerate().rev() {
                g = ops::linear_grad(rec, &g, l);
                if i > 0 {
                    g = ops::relu_grad(rec, &g, &fwd.head[1 + i], k);
                }
            }
            let pooled = &fwd.head[0];
            let g = g.reshaped(&[rows, c, m.avgpool.0, m.avgpool.1]);
            let mut g = ops::adaptive_avg_pool2d_grad(rec, &g, (pooled.shape[2], pooled.shape[3]));
            // Back through the layers between A and the adaptive pool (the last max pool).
            for (_, l) in m.features[m.explain_pos + 1..].iter().rev() {
                if let GpuVggLayer::MaxPool(p) = l {
                    g = ops::max_pool2d_route(rec, a, &g, p, k, 0.0);
                }
            }
            g
        }
        GpuModel::ResNet(m) => {
            let g = ops::linear_grad(rec, seeds, &m.fc).reshaped(&[rows, c, 1, 1]);
            ops::adaptive_avg_pool2d_grad(rec, &g, (h, w))
        }
    }
}

/// RSP's initial relevance from A and the head gradients (spec §2).
pub fn initial_relevance(
    rec: &mut Recorder,
    act: &GpuTensor,
    grad: &GpuTensor,
    k: usize,
    comparative: bool,
) -> GpuTensor {
    let (n, c, h, w) = (act.shape[0], act.shape[1], act.shape[2], act.shape[3]);
    let scratch = rec.ctx.empty(&grad.shape);
    let out = rec.ctx.empty(&act.shape);
    rec.dispatch(
        "rsp_init",
        &[("MODE", comparative as u8 as f64)],
        &[
            Binding::read(act),
            Binding::read(grad),
            Binding::write(&scratch),
            Binding::write(&out),
        ],
        &[c as u32, (h * w) as u32, k as u32, 0],
        [n as u32, 1, 1],
    );
    out
}
