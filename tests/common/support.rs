//! Helpers shared by the GPU-vs-CPU tests: the relative error criterion (checked by the
//! library's `rsp::compare`), input generators with exact zeros and ties, and tiny
//! torchvision-layout models written to safetensors files.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;

use rsp::compare::{compare, measure, Tolerance};
use rsp::gpu::{GpuTensor, Recorder};
use rsp::Tensor;
use safetensors::tensor::{Dtype, TensorView};

use crate::common;

/// Records `f` on the shared context, submits, and reads every returned tensor back.
pub fn run(f: impl FnOnce(&mut Recorder<'static>) -> Vec<GpuTensor>) -> Vec<Tensor> {
    run_on(common::gpu(), f)
}

/// [`run`] on a given context.
pub fn run_on(
    ctx: &'static rsp::gpu::GpuContext,
    f: impl FnOnce(&mut Recorder<'static>) -> Vec<GpuTensor>,
) -> Vec<Tensor> {
    let mut rec = Recorder::new(ctx);
    let outs = f(&mut rec);
    rec.submit();
    drop(rec);
    outs.iter().map(|t| ctx.read(t).unwrap()).collect()
}

/// Like [`run`] for one output.
pub fn run1(f: impl FnOnce(&mut Recorder<'static>) -> GpuTensor) -> Tensor {
    run(|rec| vec![f(rec)]).remove(0)
}

/// The bound of the op and rule tests: `max|gpu − cpu| ≤ REL_TOL · max|cpu|`
/// ([`Tolerance::MaxRel`]); also their bound on relative errors of sums.
pub const REL_TOL: f64 = 1e-5;

/// `max|a − r| / max|r|` in float64 ([`measure`]'s `rel_max_err`; 0 when both are
/// identical, infinite on NaN or when only the error is non-zero).
pub fn rel_err(actual: &Tensor, reference: &Tensor) -> f64 {
    let e = measure("rel_err", actual, reference).rel_max_err;
    if e.is_nan() {
        f64::INFINITY
    } else {
        e
    }
}

/// Asserts `gpu` is within [`Tolerance::MaxRel`]` { rel_max: tol }` of `cpu` (the
/// library's [`compare`]), printing the measurement; returns it.
pub fn assert_close(name: &str, gpu: &Tensor, cpu: &Tensor, tol: f64) -> f64 {
    match compare(name, gpu, cpu, Tolerance::MaxRel { rel_max: tol }) {
        Ok(rep) => {
            println!("{name}: max|gpu-cpu|/max|cpu| = {:.3e}", rep.rel_max_err);
            rep.rel_max_err
        }
        Err(msg) => panic!("{msg}"),
    }
}

/// Asserts bit-identical tensors (NaN-free), with the first differing element on failure.
pub fn assert_bits_eq(name: &str, a: &Tensor, b: &Tensor) {
    assert_eq!(a.shape, b.shape, "{name}: shape mismatch");
    if let Some(i) = a
        .data
        .iter()
        .zip(&b.data)
        .position(|(x, y)| x.to_bits() != y.to_bits())
    {
        panic!(
            "{name}: not bit-identical at flat index {i}: {} vs {} ({})",
            a.data[i],
            b.data[i],
            measure(name, a, b)
        );
    }
}

/// `f` applied to every element.
pub fn map(t: &Tensor, f: impl Fn(f32) -> f32) -> Tensor {
    Tensor::new(t.shape.clone(), t.data.iter().map(|&v| f(v)).collect())
}

/// Uniform values in `[lo, hi)` (deterministic).
pub fn uniform(shape: &[usize], seed: u64, lo: f32, hi: f32) -> Tensor {
    map(&common::random(shape, seed), |v| {
        lo + (v + 1.0) * 0.5 * (hi - lo)
    })
}

/// Signed values in [-1, 1) with roughly `zero_frac` of them exactly zero.
pub fn signed_sparse(shape: &[usize], seed: u64, zero_frac: f32) -> Tensor {
    let mask = common::random(shape, seed ^ 0x9E37_79B9_7F4A_7C15);
    let mut t = common::random(shape, seed);
    for (v, m) in t.data.iter_mut().zip(&mask.data) {
        if (m + 1.0) * 0.5 < zero_frac {
            *v = 0.0;
        }
    }
    t
}

/// Post-ReLU-like activations: non-negative, roughly `zero_frac` exact zeros.
pub fn post_relu(shape: &[usize], seed: u64, zero_frac: f32) -> Tensor {
    map(&signed_sparse(shape, seed, zero_frac), |v| v.abs() * 2.0)
}

/// Kaiming-uniform weights for a layer whose fan-in is the product of `shape[1..]`.
pub fn kaiming(shape: &[usize], seed: u64) -> Tensor {
    let fan_in: usize = shape[1..].iter().product();
    let a = (6.0 / fan_in as f32).sqrt();
    map(&common::random(shape, seed), |v| v * a)
}

/// Sum in float64.
pub fn sum64(t: &Tensor) -> f64 {
    t.sum_f64()
}

/// Σ|t| in float64.
pub fn abs_sum64(t: &Tensor) -> f64 {
    t.data.iter().map(|&v| (v as f64).abs()).sum()
}

// -------------------------------------------------------------------------------------
// Tiny models in torchvision naming.

/// A state dict: float tensors in insertion order plus int64 scalars
/// (`num_batches_tracked`).
#[derive(Clone, Default)]
pub struct StateDict {
    pub floats: Vec<(String, Tensor)>,
    pub ints: Vec<(String, i64)>,
}

impl StateDict {
    pub fn push(&mut self, name: impl Into<String>, t: Tensor) {
        self.floats.push((name.into(), t));
    }

    pub fn get(&self, name: &str) -> &Tensor {
        &self
            .floats
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no tensor {name}"))
            .1
    }

    pub fn get_mut(&mut self, name: &str) -> &mut Tensor {
        &mut self
            .floats
            .iter_mut()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no tensor {name}"))
            .1
    }

    pub fn remove(&mut self, name: &str) -> Tensor {
        let i = self
            .floats
            .iter()
            .position(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no tensor {name}"));
        self.floats.remove(i).1
    }

    /// Renames every tensor with `f`.
    pub fn renamed(&self, f: impl Fn(&str) -> String) -> StateDict {
        StateDict {
            floats: self.floats.iter().map(|(n, t)| (f(n), t.clone())).collect(),
            ints: self.ints.iter().map(|(n, v)| (f(n), *v)).collect(),
        }
    }

    /// Every float rounded to a multiple of `1/q` (exactly representable in float16
    /// and bfloat16 when `q = 64` and the values stay below 2 in magnitude).
    pub fn quantized(&self, q: f32) -> StateDict {
        let mut out = self.clone();
        for (_, t) in &mut out.floats {
            *t = map(t, |v| (v * q).round() / q);
        }
        out
    }

    fn push_bn(&mut self, name: &str, c: usize, seed: u64) {
        self.push(format!("{name}.weight"), uniform(&[c], seed, 0.5, 1.5));
        self.push(format!("{name}.bias"), uniform(&[c], seed + 1, -0.2, 0.2));
        self.push(
            format!("{name}.running_mean"),
            uniform(&[c], seed + 2, -0.2, 0.2),
        );
        self.push(
            format!("{name}.running_var"),
            uniform(&[c], seed + 3, 0.5, 1.5),
        );
        self.ints.push((format!("{name}.num_batches_tracked"), 7));
    }

    /// Writes the state dict as a safetensors file; floats stored as `dtype`
    /// (F32, F16 or BF16), the int64 scalars as I64.
    pub fn save(&self, path: &Path, dtype: Dtype) {
        let mut bytes: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = Vec::new();
        for (name, t) in &self.floats {
            let raw: Vec<u8> = match dtype {
                Dtype::F32 => t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                Dtype::F16 => t
                    .data
                    .iter()
                    .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                    .collect(),
                Dtype::BF16 => t
                    .data
                    .iter()
                    .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                    .collect(),
                other => panic!("save: unsupported dtype {other:?}"),
            };
            bytes.push((name.clone(), t.shape.clone(), dtype, raw));
        }
        for (name, v) in &self.ints {
            bytes.push((name.clone(), vec![], Dtype::I64, v.to_le_bytes().to_vec()));
        }
        save_raw(path, &bytes);
    }
}

/// Writes raw `(name, shape, dtype, little-endian bytes)` tensors as a safetensors file.
pub fn save_raw(path: &Path, tensors: &[(String, Vec<usize>, Dtype, Vec<u8>)]) {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, shape, dtype, raw)| {
            (
                n.clone(),
                TensorView::new(*dtype, shape.clone(), raw).expect("valid tensor view"),
            )
        })
        .collect();
    let data = safetensors::tensor::serialize(views, None::<HashMap<String, String>>)
        .expect("serialize safetensors");
    std::fs::write(path, data).expect("write safetensors file");
}

/// A torchvision VGG from a `make_layers` config (`None` = 'M'), with or without batch
/// norm, adaptive pool `pool × pool`, classifier `C·pool² → hidden → hidden → classes`.
pub fn vgg_state(
    cfg: &[Option<usize>],
    bn: bool,
    pool: usize,
    hidden: usize,
    classes: usize,
    seed: u64,
) -> StateDict {
    let mut sd = StateDict::default();
    let mut idx = 0;
    let mut c_in = 3;
    let mut s = seed * 1000;
    for v in cfg {
        match v {
            None => idx += 1,
            Some(c) => {
                sd.push(
                    format!("features.{idx}.weight"),
                    kaiming(&[*c, c_in, 3, 3], s),
                );
                sd.push(
                    format!("features.{idx}.bias"),
                    uniform(&[*c], s + 1, -0.1, 0.1),
                );
                s += 2;
                idx += 1;
                if bn {
                    sd.push_bn(&format!("features.{idx}"), *c, s);
                    s += 4;
                    idx += 1;
                }
                idx += 1; // ReLU
                c_in = *c;
            }
        }
    }
    let dims = [c_in * pool * pool, hidden, hidden, classes];
    for (j, k) in [0, 3, 6].into_iter().enumerate() {
        sd.push(
            format!("classifier.{k}.weight"),
            kaiming(&[dims[j + 1], dims[j]], s),
        );
        sd.push(
            format!("classifier.{k}.bias"),
            uniform(&[dims[j + 1]], s + 1, -0.05, 0.05),
        );
        s += 2;
    }
    sd
}

/// A torchvision ResNet. `bottleneck`: Bottleneck v1.5 (expansion 4, `planes[s]` the
/// inner width) or BasicBlock (expansion 1). `stem` is conv1's width.
pub fn resnet_state(
    bottleneck: bool,
    blocks: [usize; 4],
    stem: usize,
    planes: [usize; 4],
    classes: usize,
    seed: u64,
) -> StateDict {
    let mut sd = StateDict::default();
    let mut s = seed * 1000;
    let mut next = || {
        s += 10;
        s
    };
    sd.push("conv1.weight", kaiming(&[stem, 3, 7, 7], next()));
    sd.push_bn("bn1", stem, next());
    let expansion = if bottleneck { 4 } else { 1 };
    let mut c_in = stem;
    for st in 0..4 {
        let p = planes[st];
        let out = p * expansion;
        for b in 0..blocks[st] {
            let name = format!("layer{}.{b}", st + 1);
            let stride = if st > 0 && b == 0 { 2 } else { 1 };
            if bottleneck {
                sd.push(
                    format!("{name}.conv1.weight"),
                    kaiming(&[p, c_in, 1, 1], next()),
                );
                sd.push_bn(&format!("{name}.bn1"), p, next());
                sd.push(
                    format!("{name}.conv2.weight"),
                    kaiming(&[p, p, 3, 3], next()),
                );
                sd.push_bn(&format!("{name}.bn2"), p, next());
                sd.push(
                    format!("{name}.conv3.weight"),
                    kaiming(&[out, p, 1, 1], next()),
                );
                sd.push_bn(&format!("{name}.bn3"), out, next());
            } else {
                sd.push(
                    format!("{name}.conv1.weight"),
                    kaiming(&[p, c_in, 3, 3], next()),
                );
                sd.push_bn(&format!("{name}.bn1"), p, next());
                sd.push(
                    format!("{name}.conv2.weight"),
                    kaiming(&[p, p, 3, 3], next()),
                );
                sd.push_bn(&format!("{name}.bn2"), p, next());
            }
            if stride != 1 || c_in != out {
                sd.push(
                    format!("{name}.downsample.0.weight"),
                    kaiming(&[out, c_in, 1, 1], next()),
                );
                sd.push_bn(&format!("{name}.downsample.1"), out, next());
            }
            c_in = out;
        }
    }
    sd.push("fc.weight", kaiming(&[classes, c_in], next()));
    sd.push("fc.bias", uniform(&[classes], next(), -0.1, 0.1));
    sd
}

/// Runs `f` once on a context forcing each exact tile variant (every tiled shape and
/// every large tile the adapter holds) and checks that all give bit-identical outputs
/// (each sums K in the same order); returns the first one's.
pub fn each_tile(what: &str, f: &dyn Fn(&mut Recorder<'static>) -> Vec<GpuTensor>) -> Vec<Tensor> {
    on_tiles(what, true, f)
}

/// [`each_tile`] over the checked tiled shapes only: the op tests run the large tiles,
/// whose kernels are the costliest to build, on one case per op and mode, and every
/// tiled shape on every case.
pub fn each_tile_shape(
    what: &str,
    f: &dyn Fn(&mut Recorder<'static>) -> Vec<GpuTensor>,
) -> Vec<Tensor> {
    on_tiles(what, false, f)
}

/// `f` on the shared default context only (the heuristic tile), with [`each_tile`]'s
/// signature: for the cases a test checks against the CPU reference alone, once
/// [`each_tile`] has compared every variant on one of its cases.
pub fn default_tile(
    _what: &str,
    f: &dyn Fn(&mut Recorder<'static>) -> Vec<GpuTensor>,
) -> Vec<Tensor> {
    run(f)
}

fn on_tiles(
    what: &str,
    large: bool,
    f: &dyn Fn(&mut Recorder<'static>) -> Vec<GpuTensor>,
) -> Vec<Tensor> {
    use rsp::gpu::shaders::Skeleton;
    let mut first: Option<Vec<Tensor>> = None;
    for (i, name) in common::exact_tile_variants().into_iter().enumerate() {
        let kernel = rsp::ops::gemm::GemmKernel::parse(&name).expect("a variant name");
        if kernel.skeleton == Skeleton::Large && !large {
            continue;
        }
        let ctx = common::gpu_with_tile(i);
        assert_eq!(ctx.gemm_kernel.as_deref(), Some(name.as_str()));
        if !kernel.supported(ctx) {
            continue;
        }
        let outs = run_on(ctx, f);
        match &first {
            None => first = Some(outs),
            Some(want) => {
                for (o, w) in outs.iter().zip(want) {
                    assert_bits_eq(&format!("{what} with {name}"), o, w);
                }
            }
        }
    }
    first.unwrap()
}
