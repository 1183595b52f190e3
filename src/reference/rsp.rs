//! The RSP rules of `docs/method.md` §3 and the initialisations of §2, one small function
//! each, written after the authors' released arithmetic (see `tests/golden/README.md`).
//!
//! All tensors are batched NCHW; every rule works image by image (the authors sum the
//! channel attribution maps over the batch, which couples images; per image equals their
//! batch-1 output). Elementwise work is float32; whole-tensor sums (normalisers, the shift
//! total) are accumulated in float64 and rounded once to float32. Exact-zero tests
//! (`sdiv`, masks, `#{C ≠ 0}`) are done on the float32 values the rule produced.

use crate::explain::RSP_EPS;
use crate::layers::{AvgPool2d, BatchNorm2d, Conv2d, ConvGeometry, Linear, MaxPool2d};

use super::rules::{live_mask_batch_norm, zbox_first_conv, Gradient};
use super::walk::Rules;
use crate::tensor::Tensor;

use super::ops::{
    conv2d, conv2d_dgrad, conv2d_wgrad, dims4, image, map, max_pool2d_route, per_image, sdiv,
    sum32, zip,
};

/// The two sections of one hidden-layer convolution for one image: returns
/// `(C⁺, C⁻)` with `C± = x⁺ ⊙ convT(sdiv(R±, Z±), G±)`, `G± = wgrad(x⁺, R±)`,
/// `Z± = conv(x⁺, G±) ⊙ [R± ≠ 0]`.
fn sections(xp: &Tensor, r: &Tensor, geom: &ConvGeometry) -> (Tensor, Tensor) {
    let (_, _, h, w) = dims4(xp, "conv_rule input");
    let section = |rs: &Tensor| -> Tensor {
        let g = conv2d_wgrad(xp, rs, geom.kh, geom.kw, geom.stride, geom.padding)
            .reshape(&[geom.c_out, geom.c_in, geom.kh, geom.kw]);
        let z = conv2d(xp, &g, None, geom.stride, geom.padding);
        // Z is masked by [R± ≠ 0]; sdiv(R±, Z) is then 0 wherever R± or Z is 0.
        let s = zip(rs, &z, |rv, zv| if rv != 0.0 { sdiv(rv, zv) } else { 0.0 });
        let back = conv2d_dgrad(&s, &g, geom.stride, geom.padding, (h, w));
        zip(xp, &back, |a, b| a * b)
    };
    let r_pos = map(r, |v| if v > 0.0 { v } else { 0.0 });
    let r_neg = map(r, |v| if v < 0.0 { -v } else { 0.0 });
    (section(&r_pos), section(&r_neg))
}

/// Hidden-layer convolution rule (spec §3). `x` is the layer input `[N, C_in, H, W]`,
/// `r` the relevance at its output `[N, C_out, Ho, Wo]`. Only the geometry is used,
/// never the weight values. Kernels with `kh != 1` get the full rule
/// `C = 2(C⁺ − C⁻)`, `R_in = C − (ΣR / #{C≠0})·[C≠0]`; 1×1 kernels get `C⁺ − C⁻`.
pub fn conv_rule(x: &Tensor, r: &Tensor, geom: &ConvGeometry) -> Tensor {
    let (n, ci, h, w) = dims4(x, "conv_rule input");
    assert_eq!(ci, geom.c_in, "conv_rule: input channels");
    let (ho, wo) = geom.out_hw(h, w);
    assert_eq!(
        r.shape,
        vec![n, geom.c_out, ho, wo],
        "conv_rule: relevance shape"
    );
    per_image(n, |i| {
        let xp = map(&image(x, i), |v| if v > 0.0 { v } else { 0.0 });
        let ri = image(r, i);
        let (cp, cn) = sections(&xp, &ri, geom);
        if geom.kh == 1 {
            return zip(&cp, &cn, |a, b| a - b);
        }
        let c = zip(&cp, &cn, |a, b| 2.0 * (a - b));
        // S = Σ(R⁺ − R⁻) = ΣR; shift = sdiv(S, #{C ≠ 0}) on the non-zero units.
        let total = sum32(&ri.data);
        let count = c.data.iter().filter(|&&v| v != 0.0).count();
        let shift = sdiv(total, count as f32);
        map(&c, |v| if v != 0.0 { v - shift } else { v })
    })
}

/// Max-pool rule: winner takes all. Each output cell sends its whole `R` to the argmax
/// of `x + 1e-9` in its window (first position in row-major order on ties; padding
/// never wins).
pub fn maxpool_rule(x: &Tensor, r: &Tensor, pool: &MaxPool2d) -> Tensor {
    max_pool2d_route(x, r, pool, RSP_EPS)
}

/// Residual addition `out = a + b` (spec §3, extension): with `a' = pos(a) + 1e-9`,
/// `b' = pos(b) + 1e-9`, returns `(a' · R/(a'+b'), b' · R/(a'+b'))` (R signed).
pub fn residual_rule(a: &Tensor, b: &Tensor, r: &Tensor) -> (Tensor, Tensor) {
    assert_eq!(a.shape, b.shape, "residual_rule: branch shapes");
    assert_eq!(a.shape, r.shape, "residual_rule: relevance shape");
    let lift = |v: f32| (if v > 0.0 { v } else { 0.0 }) + RSP_EPS;
    let len = r.numel();
    let (mut ra, mut rb) = (vec![0.0f32; len], vec![0.0f32; len]);
    for k in 0..len {
        let (ap, bp) = (lift(a.data[k]), lift(b.data[k]));
        let s = sdiv(r.data[k], ap + bp);
        ra[k] = ap * s;
        rb[k] = bp * s;
    }
    (
        Tensor::new(r.shape.clone(), ra),
        Tensor::new(r.shape.clone(), rb),
    )
}

/// Channel-wise Grad-CAM-without-sum map of one image's `[C,h,w]` data:
/// `cam[c] = act[c] · mean_{h,w} grad[c]`.
fn cam(act: &[f32], grad: &[f32], c: usize) -> Vec<f32> {
    let hw = act.len() / c;
    let mut out = vec![0.0f32; act.len()];
    for ch in 0..c {
        let g = &grad[ch * hw..(ch + 1) * hw];
        let weight = sum32(g) / hw as f32;
        for (o, &a) in out[ch * hw..(ch + 1) * hw].iter_mut().zip(&act[ch * hw..]) {
            *o = a * weight;
        }
    }
    out
}

/// `cam / (max(cam) + 1e-9)` in place; if `max(cam) ≤ 0` (no positive evidence, where the
/// authors' formula breaks down) divides by `max|cam|` instead and warns on stderr.
fn normalise_cam(cam: &mut [f32], what: &str) {
    let max = cam.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let denom = if max > 0.0 {
        max + RSP_EPS
    } else {
        let max_abs = cam.iter().fold(0.0f32, |a, &b| a.max(b.abs()));
        eprintln!(
            "warning: {what}: max(cam) = {max} ≤ 0 (no positive evidence); \
             normalising by max|cam| = {max_abs} instead"
        );
        max_abs
    };
    for v in cam.iter_mut() {
        *v = sdiv(*v, denom);
    }
}

/// Grad-CAM-without-sum initialisation (spec §2a), per image:
/// `cam = act · mean_{h,w}(grad)`, `R_L = cam / (max(cam) + 1e-9)` (max over the whole
/// image's tensor; `max|cam|` fallback when `max(cam) ≤ 0`). `act` and `grad` are
/// `[N, C, h, w]`.
pub fn gradcam_init(act: &Tensor, grad: &Tensor) -> Tensor {
    let (n, c, _, _) = dims4(act, "gradcam_init activation");
    assert_eq!(act.shape, grad.shape, "gradcam_init: gradient shape");
    per_image(n, |i| {
        let mut m = cam(&image(act, i).data, &image(grad, i).data, c);
        normalise_cam(&mut m, "gradcam init");
        let mut shape = act.shape.clone();
        shape[0] = 1;
        Tensor::new(shape, m)
    })
}

/// Comparative-gradient initialisation (spec §2b, the authors' `relative_GAM` with the
/// target as the compared class). `grads[j]` is `∂y_{c_j}/∂A` for the K ≥ 2 compared
/// classes, `grads[0]` the target's. Per image:
/// `D = (K−1)·cam_0 − Σ_{j≥1} cam_j` (each cam max-normalised), `P = pos(D)/(ΣP+1e-9)`,
/// `N = (neg(D)/max neg(D)) / (Σ+1e-9) · ΣP` (0 if `D` has no negative entry),
/// channel sum `d` of `P − N`, `r = 2·d[d>0]/(Σ+1e-9) − d[d≤0]/(Σ+1e-9)`, `R_L = r / C`
/// on every channel.
pub fn comparative_init(act: &Tensor, grads: &[Tensor]) -> Tensor {
    let (n, c, h, w) = dims4(act, "comparative_init activation");
    assert!(
        grads.len() >= 2,
        "comparative_init needs at least two classes"
    );
    for g in grads {
        assert_eq!(g.shape, act.shape, "comparative_init: gradient shape");
    }
    let k = grads.len();
    let hw = h * w;
    per_image(n, |i| {
        let a = image(act, i).data;
        let cams: Vec<Vec<f32>> = grads
            .iter()
            .enumerate()
            .map(|(j, g)| {
                let mut m = cam(&a, &image(g, i).data, c);
                normalise_cam(&mut m, &format!("comparative init (class rank {j})"));
                m
            })
            .collect();
        // D = (K−1)·cam_target − Σ others (the others summed first, as the authors do).
        let mut others = vec![0.0f32; a.len()];
        for m in &cams[1..] {
            for (o, v) in others.iter_mut().zip(m) {
                *o += v;
            }
        }
        let d: Vec<f32> = cams[0]
            .iter()
            .zip(&others)
            .map(|(t, o)| t * (k - 1) as f32 - o)
            .collect();
        let pos: Vec<f32> = d.iter().map(|&v| if v > 0.0 { v } else { 0.0 }).collect();
        let pos_sum = sum32(&pos) + RSP_EPS;
        let pos: Vec<f32> = pos.iter().map(|v| v / pos_sum).collect();
        let neg: Vec<f32> = d.iter().map(|&v| if v < 0.0 { -v } else { 0.0 }).collect();
        let neg_max = neg.iter().fold(0.0f32, |m, &v| m.max(v));
        let neg: Vec<f32> = if neg_max > 0.0 {
            let scaled: Vec<f32> = neg.iter().map(|v| v / neg_max).collect();
            let scaled_sum = sum32(&scaled) + RSP_EPS;
            let pos_total = sum32(&pos);
            scaled.iter().map(|v| v / scaled_sum * pos_total).collect()
        } else {
            vec![0.0; d.len()]
        };
        // Channel sum of D' = P − N per location (a whole-axis reduction: float64).
        let mut acc = vec![0.0f64; hw];
        for ch in 0..c {
            for (q, sv) in acc.iter_mut().enumerate() {
                *sv += (pos[ch * hw + q] - neg[ch * hw + q]) as f64;
            }
        }
        let s: Vec<f32> = acc.iter().map(|&v| v as f32).collect();
        let target: Vec<f32> = s.iter().map(|&v| if v > 0.0 { v } else { 0.0 }).collect();
        let hostile: Vec<f32> = s.iter().map(|&v| if v > 0.0 { 0.0 } else { v }).collect();
        let t_sum = sum32(&target) + RSP_EPS;
        let h_sum = sum32(&hostile) + RSP_EPS;
        let r: Vec<f32> = target
            .iter()
            .zip(&hostile)
            .map(|(t, hv)| t / t_sum * 2.0 - hv / h_sum)
            .collect();
        let mut out = vec![0.0f32; c * hw];
        for ch in 0..c {
            for q in 0..hw {
                out[ch * hw + q] = r[q] / c as f32;
            }
        }
        Tensor::new(vec![1, c, h, w], out)
    })
}

/// RSP as a CPU rule set over `model::walk`: z^B on the convolution that reads the
/// image, the sectional rule elsewhere, identity through ReLUs. RSP starts at the
/// explanation layer; its head rules are the gradient's.
pub struct RspRules;

impl Rules for RspRules {
    fn conv(&self, x: &Tensor, r: &Tensor, c: &Conv2d, first: bool) -> Tensor {
        if first {
            zbox_first_conv(x, r, c)
        } else {
            conv_rule(x, r, &c.geometry())
        }
    }
    fn linear(&self, x: &Tensor, r: &Tensor, l: &Linear) -> Tensor {
        Gradient.linear(x, r, l)
    }
    fn relu(&self, _: &Tensor, r: &Tensor) -> Tensor {
        r.clone()
    }
    fn max_pool(&self, x: &Tensor, r: &Tensor, p: &MaxPool2d) -> Tensor {
        maxpool_rule(x, r, p)
    }
    fn avg_pool(&self, x: &Tensor, r: &Tensor, p: &AvgPool2d) -> Tensor {
        Gradient.avg_pool(x, r, p)
    }
    fn batch_norm(&self, x: &Tensor, r: &Tensor, bn: &BatchNorm2d) -> Tensor {
        live_mask_batch_norm(x, r, bn)
    }
    fn batch_norm_pre_activation(&self, _: &Tensor, r: &Tensor, _: &BatchNorm2d) -> Tensor {
        r.clone()
    }
    fn residual(&self, a: &Tensor, b: &Tensor, r: &Tensor) -> (Tensor, Tensor) {
        residual_rule(a, b, r)
    }
}
