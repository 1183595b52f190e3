//! Attribution methods. RSP (Relative Sectional Propagation) is the product; its rules
//! run as WGSL shaders over the activations the forward pass keeps on the GPU. RSP and
//! the baselines it is compared with are rule sets over one backward walk
//! ([`propagate::walk`]); [`explain`] is the one entry point for all of them.

pub mod baselines;
mod method;
pub mod propagate;
pub mod relevance_file;
mod request;
pub mod rsp;

use anyhow::Result;

use crate::error::Param;
use crate::gpu::{GpuContext, GpuTensor, Recorder};
use crate::models::gpu::GpuModel;
use crate::tensor::Tensor;

pub use method::{
    Method, MethodSpec, Post, RuleSet, Seed, SeedScale, WalkStop, LRP_EPSILON, METHODS,
};
pub use request::{ExplainOptions, Init, InitKind, Request, Smooth};

/// Small constant the authors add in normalisations and to max-pool/residual inputs.
pub const RSP_EPS: f32 = 1e-9;

/// `Explanation::target` entry when no class was explained (features-only weights
/// explained from a given initial relevance without a target).
pub const NO_TARGET: usize = usize::MAX;

/// The result of explaining a batch.
#[derive(Clone, Debug)]
pub struct Explanation {
    /// `[N, classes]`
    pub logits: Tensor,
    /// Explained class per image ([`NO_TARGET`] where none was).
    pub target: Vec<usize>,
    /// Initial relevance at the explanation layer `[N, C, h, w]`.
    pub init: Tensor,
    /// Pixel relevance `[N, 3, H, W]`.
    pub relevance: Tensor,
    /// Relevance at the input of named modules (golden naming: `features.13`,
    /// `layer4.0.conv3`, ...), recorded only when asked for.
    pub layers: Vec<(String, Tensor)>,
}

/// `samples` noisy copies of every image of `input` `[N, 3, H, W]`, image by image
/// (`[N·samples, 3, H, W]`), as [`Smooth`] draws them.
pub fn noisy_copies(input: &Tensor, smooth: &Smooth) -> Tensor {
    let n = input.shape[0];
    let mut rng = crate::models::zoo::Rng(smooth.seed);
    let mut parts = Vec::with_capacity(n * smooth.samples);
    for i in 0..n {
        let img = input.slice0(i..i + 1);
        let lo = img.data.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = img.data.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sigma = smooth.noise * (hi - lo);
        for _ in 0..smooth.samples {
            let noise = rng.fill(img.numel(), sigma);
            let data = img.data.iter().zip(noise).map(|(x, e)| x + e).collect();
            parts.push(Tensor::new(img.shape.clone(), data));
        }
    }
    Tensor::concat0(&parts)
}

/// The mean over consecutive groups of `k` rows of `t` `[N·k, ...]`: `[N, ...]`,
/// summed in row order.
fn mean_of_groups(t: &Tensor, k: usize) -> Tensor {
    let n = t.shape[0] / k;
    let inner = t.numel() / t.shape[0].max(1);
    let mut out = vec![0.0f32; n * inner];
    for (row, chunk) in t.data.chunks(inner.max(1)).enumerate() {
        let dst = &mut out[(row / k) * inner..(row / k + 1) * inner];
        for (o, v) in dst.iter_mut().zip(chunk) {
            *o += v;
        }
    }
    out.iter_mut().for_each(|v| *v /= k as f32);
    let mut shape = t.shape.clone();
    shape[0] = n;
    Tensor::new(shape, out)
}

/// [`explain`] with [`Request::smooth`] set.
fn explain_smoothed(
    ctx: &GpuContext,
    model: &GpuModel,
    input: &Tensor,
    req: &Request,
    smooth: &Smooth,
) -> Result<Explanation> {
    if smooth.samples == 0 {
        crate::error::bail_option!(Param::Smooth, "needs at least 1 sample");
    }
    if !(smooth.noise >= 0.0 && smooth.noise.is_finite()) {
        crate::error::bail_option!(
            Param::Noise,
            "must be a finite value >= 0, got {}",
            smooth.noise
        );
    }
    if matches!(req.init, Init::Given(_)) {
        crate::error::bail_option!(
            Param::Smooth,
            "averages over noisy inputs; a given initial relevance fits only one"
        );
    }
    let n = input.shape[0];
    let k = smooth.samples;
    // The classes are those of the clean images.
    let logits = model.predict(ctx, input)?;
    let c = logits.shape[1];
    let targets: Vec<usize> = match &req.targets {
        Some(t) => t.clone(),
        None => (0..n)
            .map(|i| crate::tensor::top_k(&logits.data[i * c..(i + 1) * c], 1)[0])
            .collect(),
    };
    let inner = Request {
        targets: Some(
            targets
                .iter()
                .flat_map(|&t| std::iter::repeat_n(t, k))
                .collect(),
        ),
        smooth: None,
        ..req.clone()
    };
    let e = explain(ctx, model, &noisy_copies(input, smooth), &inner)?;
    Ok(Explanation {
        logits,
        target: targets,
        init: mean_of_groups(&e.init, k),
        relevance: mean_of_groups(&e.relevance, k),
        layers: e
            .layers
            .iter()
            .map(|(name, t)| (name.clone(), mean_of_groups(t, k)))
            .collect(),
    })
}

/// Refuses a request no pass can run on a batch of this `shape`: no `[N, 3, H, W]`,
/// targets that do not fit the batch or the classes, an initialisation or a method the
/// model cannot serve.
fn check_request(model: &GpuModel, shape: &[usize], req: &Request) -> Result<()> {
    check_batch_shape(shape)?;
    model
        .graph
        .checked_shapes(shape[2], shape[3])
        .map_err(crate::error::invalid)?;
    let n = shape[0];
    let classes = model.num_classes();
    let method = req.method;
    if method == Method::Rap && !model.graph.logits_from_linear() {
        crate::error::bail_invalid!(
            "RAP starts at a linear layer that writes the logits; this model's logits come \
             from another layer (use another method)"
        );
    }
    if let Some(t) = &req.targets {
        if t.len() != n {
            crate::error::bail_invalid!("{} targets given for {n} images", t.len());
        }
        if let Some(bad) = t.iter().find(|&&c| c >= classes) {
            crate::error::bail_invalid!(
                "target class {bad} is out of range (the model has {classes} classes)"
            );
        }
    }
    match (method, &req.init) {
        (Method::Rsp, Init::Given(_)) => {}
        (Method::Rsp, _) if classes == 0 => crate::error::bail_invalid!(
            "these weights have no classifier: explain them from a given initial relevance (--init-relevance)"
        ),
        (Method::Rsp, Init::Comparative { k }) if *k < 2 || *k > classes => crate::error::bail_option!(
            Param::CompareK,
            "must be between 2 and the number of classes ({classes}), got {k}"
        ),
        (Method::Rsp, _) => {}
        (_, Init::Given(_)) => crate::error::bail_invalid!("{method} starts at the logits; a given initial relevance is RSP's"),
        _ if classes == 0 => crate::error::bail_invalid!("these weights have no classifier: {method} needs one"),
        _ if classes < method.spec().min_classes => {
            crate::error::bail_invalid!(
                "{method} contrasts classes and needs at least {} (the model has {classes})",
                method.spec().min_classes
            )
        }
        _ => {}
    }
    Ok(())
}

/// Refuses a batch that is no `[N, 3, H, W]`.
fn check_batch_shape(shape: &[usize]) -> Result<()> {
    if shape.len() != 4 || shape[1] != 3 {
        crate::error::bail_invalid!("input must be [N, 3, H, W], got {shape:?}");
    }
    Ok(())
}

/// How many images of `input` one pass holds without a tensor over the adapter's
/// binding limit (at most the batch); refuses an image too large for any pass.
fn images_per_pass(ctx: &GpuContext, model: &GpuModel, input: &Tensor) -> Result<usize> {
    let per_image = model.largest_tensor_per_image(input.shape[2], input.shape[3]);
    if per_image > ctx.max_binding {
        crate::error::bail_option!(
            Param::Size,
            "is too large here: one {}×{} image needs a {} MiB tensor, more than this adapter binds at once ({} MiB)",
            input.shape[2],
            input.shape[3],
            per_image >> 20,
            ctx.max_binding >> 20
        );
    }
    Ok(((ctx.max_binding / per_image.max(1)) as usize).clamp(1, input.shape[0]))
}

/// A forward pass kept resident on the GPU, so that further explanations of the same
/// images (other classes, other methods) run only their backward part: what
/// `rsp serve` caches per uploaded image. Its activations stay allocated while it
/// lives ([`ForwardPass::bytes`]).
pub struct ForwardPass {
    input: GpuTensor,
    forward: crate::models::gpu::Forward,
    /// `[N, classes]`, read back once.
    pub logits: Tensor,
}

impl ForwardPass {
    /// Runs the forward pass of `input` `[N, 3, H, W]` (already normalised; one pass
    /// must hold the whole batch) and keeps every activation on the GPU.
    pub fn new(ctx: &GpuContext, model: &GpuModel, input: &Tensor) -> Result<Self> {
        check_batch_shape(&input.shape)?;
        if images_per_pass(ctx, model, input)? < input.shape[0] {
            crate::error::bail_invalid!(
                "a kept forward pass holds the batch in one pass; {} images of {}×{} do not fit this adapter's binding limit",
                input.shape[0],
                input.shape[2],
                input.shape[3]
            );
        }
        let mut rec = Recorder::new(ctx);
        let x = ctx.upload(input);
        let forward = model.forward(&mut rec, &x);
        rec.submit();
        drop(rec);
        let logits = forward.logits.host_from_words(
            &ctx.read_buffers(&[(forward.logits.buffer(), forward.logits.words())])?[0],
        );
        Ok(ForwardPass {
            input: x,
            forward,
            logits,
        })
    }

    /// The images' count.
    pub fn images(&self) -> usize {
        self.input.shape[0]
    }

    /// GPU memory its kept tensors hold (input and every activation; buffers shared
    /// between activations counted once).
    pub fn bytes(&self) -> u64 {
        let mut seen = std::collections::HashSet::new();
        std::iter::once(&self.input)
            .chain(self.forward.acts.iter().flatten())
            .filter(|t| seen.insert(t.buffer() as *const wgpu::Buffer))
            .map(|t| t.buffer().size())
            .sum()
    }

    /// Explains the kept images as `req` asks, like [`explain`] on the same input,
    /// recording only the method's backward part. SmoothGrad is refused: it needs
    /// forward passes of noisy copies.
    pub fn explain(
        &self,
        ctx: &GpuContext,
        model: &GpuModel,
        req: &Request,
    ) -> Result<Explanation> {
        check_request(model, &self.input.shape, req)?;
        if req.smooth.is_some() {
            crate::error::bail_invalid!(
                "SmoothGrad explains noisy copies of the images; it cannot reuse a kept forward pass"
            );
        }
        let rec = Recorder::new(ctx);
        record_and_read(rec, model, &self.forward, &self.input, req)
    }
}

/// Explains a batch `input` `[N, 3, H, W]` (already normalised) as `req` asks.
/// [`Explanation::init`] holds RSP's initial relevance, or a baseline's seed at the
/// logits; [`Explanation::relevance`] is `[N, 3, H, W]`, or `[N, 1, H, W]` for Grad-CAM
/// (its map bilinearly resized to the input). The batch is split into passes small
/// enough that no tensor exceeds the adapter's binding limit.
pub fn explain(
    ctx: &GpuContext,
    model: &GpuModel,
    input: &Tensor,
    req: &Request,
) -> Result<Explanation> {
    check_request(model, &input.shape, req)?;
    let n = input.shape[0];
    let method = req.method;
    if let Some(smooth) = &req.smooth {
        return explain_smoothed(ctx, model, input, req, smooth);
    }
    let chunk = images_per_pass(ctx, model, input)?;
    let mut parts = Vec::new();
    for start in (0..n).step_by(chunk) {
        let range = start..(start + chunk).min(n);
        let sub = Request {
            method,
            init: match &req.init {
                Init::Given(t) => Init::Given(t.slice0(range.clone())),
                other => other.clone(),
            },
            targets: req.targets.as_ref().map(|t| t[range.clone()].to_vec()),
            record_layers: req.record_layers,
            smooth: None,
        };
        parts.push(pass(ctx, model, &input.slice0(range), &sub)?);
    }
    Ok(Explanation::concat0(parts))
}

/// What one pass leaves on the GPU for the caller.
struct PassOutputs {
    /// The explained class per image (`u32` words), if a classifier chose them.
    target: Option<wgpu::Buffer>,
    logits: GpuTensor,
    init: GpuTensor,
    relevance: GpuTensor,
    layers: Vec<(String, GpuTensor)>,
}

/// One batch that fits the binding limit: everything is recorded, submitted once, and
/// only the requested outputs are read back.
fn pass(ctx: &GpuContext, model: &GpuModel, input: &Tensor, req: &Request) -> Result<Explanation> {
    let mut rec = Recorder::new(ctx);
    let x = ctx.upload(input);
    let fwd = model.forward(&mut rec, &x);
    record_and_read(rec, model, &fwd, &x, req)
}

/// Records `req`'s method over the forward pass `fwd` of `x`, submits everything the
/// recorder holds and reads back the outputs in one readback.
fn record_and_read(
    mut rec: Recorder,
    model: &GpuModel,
    fwd: &crate::models::gpu::Forward,
    x: &GpuTensor,
    req: &Request,
) -> Result<Explanation> {
    let ctx = rec.ctx;
    let n = x.shape[0];
    let mut layers = Vec::new();
    let log = req.record_layers.then_some(&mut layers);
    let spec = req.method.spec();
    let out = match spec.rules {
        RuleSet::Rsp => rsp::record(&mut rec, model, fwd, req, log)?,
        _ => baselines::record(&mut rec, model, fwd, x, spec, req.targets.as_deref(), log),
    };
    let out = PassOutputs { layers, ..out };
    rec.submit();
    drop(rec);

    // Everything the caller gets, in one readback.
    let mut parts: Vec<(&wgpu::Buffer, usize)> = vec![
        (out.target.as_ref().unwrap_or(out.init.buffer()), n),
        (out.logits.buffer(), out.logits.words()),
        (out.init.buffer(), out.init.words()),
        (out.relevance.buffer(), out.relevance.words()),
    ];
    parts.extend(out.layers.iter().map(|(_, t)| (t.buffer(), t.words())));
    let mut words = ctx.read_buffers(&parts)?.into_iter();
    let target_words = words.next().expect("target words");
    let target = match (&out.target, &req.targets) {
        (Some(_), _) => target_words.iter().map(|&c| c as usize).collect(),
        // No classifier: the caller's targets, or NO_TARGET.
        (None, Some(t)) => t.clone(),
        (None, None) => vec![NO_TARGET; n],
    };
    // Each part decoded by its own element type: under `--precision f16` RSP's initial
    // relevance and its per-layer sections are f16.
    let mut next = |t: &GpuTensor| t.host_from_words(&words.next().expect("one readback per part"));
    Ok(Explanation {
        logits: next(&out.logits),
        target,
        init: next(&out.init),
        relevance: next(&out.relevance),
        layers: out
            .layers
            .iter()
            .map(|(name, t)| (name.clone(), next(t)))
            .collect(),
    })
}

impl Explanation {
    /// Joins explanations of consecutive sub-batches.
    pub fn concat0(parts: Vec<Explanation>) -> Explanation {
        if parts.len() == 1 {
            return parts.into_iter().next().unwrap();
        }
        let cat = |f: &dyn Fn(&Explanation) -> &Tensor| {
            Tensor::concat0(&parts.iter().map(f).collect::<Vec<_>>())
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

    /// Signed heatmap `[N, H, W]`: the channel sum of the pixel relevance.
    pub fn heatmap(&self) -> Tensor {
        let (n, c, h, w) = (
            self.relevance.shape[0],
            self.relevance.shape[1],
            self.relevance.shape[2],
            self.relevance.shape[3],
        );
        let mut out = vec![0.0f32; n * h * w];
        for i in 0..n {
            for ch in 0..c {
                let src = &self.relevance.data[(i * c + ch) * h * w..(i * c + ch + 1) * h * w];
                for (o, s) in out[i * h * w..(i + 1) * h * w].iter_mut().zip(src) {
                    *o += s;
                }
            }
        }
        Tensor::new(vec![n, h, w], out)
    }
}
