//! Rule pieces the reference's methods share, owned by none of them: the gradient's
//! rule set and the head gradient `∂y_t/∂A` it gives, the bounded-input z^B rule of
//! the first convolution (RSP and LRP) and the live-mask batch-norm rule.

use crate::layers::{AvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d};
use crate::models::Model;
use crate::tensor::Tensor;

use super::ops::{
    avg_pool2d_backward, conv2d, conv2d_dgrad, dims4, image, linear_backward_input, map,
    max_pool2d_route, per_image, sdiv, zip,
};
use super::walk::{walk, ForwardTrace, Rules};

/// Plain backpropagation of the gradient.
pub struct Gradient;

impl Rules for Gradient {
    fn conv(&self, x: &Tensor, r: &Tensor, c: &Conv2d, _first: bool) -> Tensor {
        conv2d_dgrad(r, &c.weight, c.stride, c.padding, (x.shape[2], x.shape[3]))
    }
    fn linear(&self, _: &Tensor, r: &Tensor, l: &Linear) -> Tensor {
        linear_backward_input(r, l)
    }
    fn relu(&self, out: &Tensor, r: &Tensor) -> Tensor {
        zip(r, out, |g, o| if o > 0.0 { g } else { 0.0 })
    }
    fn max_pool(&self, x: &Tensor, r: &Tensor, p: &MaxPool2d) -> Tensor {
        max_pool2d_route(x, r, p, 0.0)
    }
    fn avg_pool(&self, x: &Tensor, r: &Tensor, p: &AvgPool2d) -> Tensor {
        avg_pool2d_backward(r, p, (x.shape[2], x.shape[3]))
    }
    fn batch_norm(&self, _: &Tensor, r: &Tensor, bn: &BatchNorm2d) -> Tensor {
        let (scale, _) = bn.scale_shift();
        per_channel(r, |ch, g| g * scale[ch])
    }
    fn residual(&self, _: &Tensor, _: &Tensor, r: &Tensor) -> (Tensor, Tensor) {
        (r.clone(), r.clone())
    }
}

/// `∂ logit[classes[n]] / ∂A` for every image `n` (`classes.len()` = batch size), shaped
/// like `A`: the gradient walked from a one-hot at the logits down to the explanation
/// layer.
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
    let g = &model.graph;
    let logits = g.logits.expect("head_gradient needs a classifier");
    walk(model, trace, (logits, onehot), g.explain, &Gradient, None)
}

/// First-layer (pixel) convolution: the bounded-input z^B rule on the real weights, with
/// `L = min(x)` and `H = max(x)` over the whole image (per sample), zero padding, the
/// conv bias ignored and `R` signed:
/// `R_in = x ⊙ convT(S,W) − L ⊙ convT(S,W⁺) − H ⊙ convT(S,W⁻)`, `S = sdiv(R, Z)`,
/// `Z = conv(x,W) − conv(L,W⁺) − conv(H,W⁻)`.
pub fn zbox_first_conv(x: &Tensor, r: &Tensor, conv: &Conv2d) -> Tensor {
    let (n, _, h, w) = dims4(x, "zbox_first_conv input");
    let (s, p) = (conv.stride, conv.padding);
    let w_pos = map(&conv.weight, |v| if v > 0.0 { v } else { 0.0 });
    let w_neg = map(&conv.weight, |v| if v < 0.0 { v } else { 0.0 });
    per_image(n, |i| {
        let xi = image(x, i);
        let lo_v = xi.data.iter().fold(f32::INFINITY, |a, &b| a.min(b));
        let hi_v = xi.data.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let lo = map(&xi, |_| lo_v);
        let hi = map(&xi, |_| hi_v);
        let za = conv2d(&xi, &conv.weight, None, s, p);
        let zl = conv2d(&lo, &w_pos, None, s, p);
        let zh = conv2d(&hi, &w_neg, None, s, p);
        let z = zip(&zip(&za, &zl, |a, b| a - b), &zh, |a, b| a - b);
        let ri = image(r, i);
        assert_eq!(ri.shape, z.shape, "zbox_first_conv: relevance shape");
        let sv = zip(&ri, &z, sdiv);
        let ca = conv2d_dgrad(&sv, &conv.weight, s, p, (h, w));
        let cl = conv2d_dgrad(&sv, &w_pos, s, p, (h, w));
        let ch = conv2d_dgrad(&sv, &w_neg, s, p, (h, w));
        let mut out = zip(&xi, &ca, |a, b| a * b);
        for (k, o) in out.data.iter_mut().enumerate() {
            *o = *o - lo_v * cl.data[k] - hi_v * ch.data[k];
        }
        out
    })
}

/// Batch-norm rule (eval): identity on units where the BN input times the BN scale is
/// non-zero (`x ≠ 0` and `γ ≠ 0`), 0 elsewhere. `bn_input` is the BN layer's input.
pub fn live_mask_batch_norm(bn_input: &Tensor, r: &Tensor, bn: &BatchNorm2d) -> Tensor {
    let (n, c, h, w) = dims4(bn_input, "live_mask_batch_norm input");
    assert_eq!(
        r.shape, bn_input.shape,
        "live_mask_batch_norm: relevance shape"
    );
    let mut out = r.data.clone();
    for p in 0..n * c {
        let gamma = bn.gamma[p % c];
        let range = p * h * w..(p + 1) * h * w;
        for (o, &xv) in out[range.clone()].iter_mut().zip(&bn_input.data[range]) {
            if xv == 0.0 || gamma == 0.0 {
                *o = 0.0;
            }
        }
    }
    Tensor::new(r.shape.clone(), out)
}

pub fn per_channel(t: &Tensor, f: impl Fn(usize, f32) -> f32) -> Tensor {
    let (_, c, h, w) = dims4(t, "per-channel map");
    let data = t
        .data
        .iter()
        .enumerate()
        .map(|(i, &v)| f((i / (h * w)) % c, v))
        .collect();
    Tensor::new(t.shape.clone(), data)
}
