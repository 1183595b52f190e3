//! CPU reference of the baselines (`crate::explain::baselines`): the same rule sets,
//! written directly over the reference forward trace, one plain loop per formula, and
//! the driver that runs a method as its entry in `crate::explain::METHODS` says.

use anyhow::{ensure, Result};

use crate::explain::{Explanation, Method, MethodSpec, Post, RuleSet, Seed, SeedScale, WalkStop};
use crate::layers::{AvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d};
use crate::models::graph::INPUT;
use crate::models::Model;
use crate::tensor::Tensor;

use super::ops::{
    avg_pool2d, avg_pool2d_backward, conv2d, conv2d_dgrad, dims4, linear_backward_input,
    max_pool2d_route, relu, softmax, top_k, zip,
};
use super::rules::{head_gradient, live_mask_batch_norm, zbox_first_conv, Gradient};
use super::walk::{forward, walk, Rules};

/// The stabilised ratio `r / (z + eps·sign(z))`, 0 where `z = 0`.
pub fn stab_div(r: f32, z: f32, eps: f32) -> f32 {
    if z == 0.0 {
        0.0
    } else {
        r / (z + eps * z.signum())
    }
}

/// LRP: `Some(ε)` the ε-rule, `None` the z⁺ (α1β0) rule; z^B in the first layer.
struct Lrp(Option<f32>);

impl Lrp {
    fn eps(&self) -> f32 {
        self.0.unwrap_or(0.0)
    }
    fn weight(&self, w: &Tensor) -> Tensor {
        match self.0 {
            Some(_) => w.clone(),
            None => Tensor::new(w.shape.clone(), w.data.iter().map(|v| v.max(0.0)).collect()),
        }
    }
    /// `x ⊙ back(r / z)`.
    fn redistribute(
        &self,
        x: &Tensor,
        z: &Tensor,
        r: &Tensor,
        back: impl Fn(&Tensor) -> Tensor,
    ) -> Tensor {
        let s = zip(r, z, |rv, zv| stab_div(rv, zv, self.eps()));
        let b = back(&s);
        Tensor::new(
            x.shape.clone(),
            x.data.iter().zip(&b.data).map(|(a, g)| a * g).collect(),
        )
    }
}

impl Rules for Lrp {
    fn conv(&self, x: &Tensor, r: &Tensor, c: &Conv2d, first: bool) -> Tensor {
        if first {
            return zbox_first_conv(x, r, c);
        }
        let w = self.weight(&c.weight);
        let bias = match self.0 {
            Some(_) => c.bias.clone(),
            None => None,
        };
        let z = conv2d(x, &w, bias.as_deref(), c.stride, c.padding);
        self.redistribute(x, &z, r, |s| {
            conv2d_dgrad(s, &w, c.stride, c.padding, (x.shape[2], x.shape[3]))
        })
    }
    fn linear(&self, x: &Tensor, r: &Tensor, l: &Linear) -> Tensor {
        let lw = Linear {
            weight: self.weight(&l.weight),
            bias: match self.0 {
                Some(_) => l.bias.clone(),
                None => vec![0.0; l.bias.len()],
            },
        };
        let z = super::ops::linear(x, &lw);
        self.redistribute(x, &z, r, |s| linear_backward_input(s, &lw))
    }
    fn relu(&self, _: &Tensor, r: &Tensor) -> Tensor {
        r.clone()
    }
    fn max_pool(&self, x: &Tensor, r: &Tensor, p: &MaxPool2d) -> Tensor {
        max_pool2d_route(x, r, p, 0.0)
    }
    fn avg_pool(&self, x: &Tensor, r: &Tensor, p: &AvgPool2d) -> Tensor {
        let z = avg_pool2d(x, p);
        self.redistribute(x, &z, r, |s| {
            avg_pool2d_backward(s, p, (x.shape[2], x.shape[3]))
        })
    }
    fn batch_norm(&self, x: &Tensor, r: &Tensor, bn: &BatchNorm2d) -> Tensor {
        let (scale, shift) = bn.scale_shift();
        let (_, c, h, w) = dims4(x, "lrp batch norm input");
        let data = r
            .data
            .iter()
            .zip(&x.data)
            .enumerate()
            .map(|(i, (&rv, &xv))| {
                let ch = (i / (h * w)) % c;
                let zx = xv * scale[ch];
                match self.0 {
                    Some(e) => rv * stab_div(zx, zx + shift[ch], e),
                    None => {
                        if zx > 0.0 {
                            rv
                        } else {
                            0.0
                        }
                    }
                }
            })
            .collect();
        Tensor::new(r.shape.clone(), data)
    }
    fn residual(&self, a: &Tensor, b: &Tensor, r: &Tensor) -> (Tensor, Tensor) {
        let share = |num: f32, other: f32, rv: f32| -> f32 {
            match self.0 {
                Some(e) => num * stab_div(rv, num + other, e),
                None => num.max(0.0) * stab_div(rv, num.max(0.0) + other.max(0.0), 0.0),
            }
        };
        let ra = (0..r.numel())
            .map(|i| share(a.data[i], b.data[i], r.data[i]))
            .collect();
        let rb = (0..r.numel())
            .map(|i| share(b.data[i], a.data[i], r.data[i]))
            .collect();
        (
            Tensor::new(r.shape.clone(), ra),
            Tensor::new(r.shape.clone(), rb),
        )
    }
}

/// RAP (see `explain::baselines::RapRules` for the rules in words).
struct Rap;

fn sdiv(a: f32, b: f32) -> f32 {
    stab_div(a, b, 0.0)
}

fn live(v: f32) -> f32 {
    if v != 0.0 {
        1.0
    } else {
        0.0
    }
}

fn clamp_weights(w: &Tensor, positive: bool) -> Tensor {
    let f = |v: f32| if positive { v.max(0.0) } else { v.min(0.0) };
    Tensor::new(w.shape.clone(), w.data.iter().map(|&v| f(v)).collect())
}

fn linear_no_bias(w: &Tensor) -> Linear {
    Linear {
        weight: w.clone(),
        bias: vec![0.0; w.shape[0]],
    }
}

/// `C − [C≠0]·(ΣC − ΣR)/#{C≠0}` per image.
fn rap_shift(c: Tensor, r: &Tensor) -> Tensor {
    let n = c.shape[0];
    let (pc, pr) = (c.numel() / n, r.numel() / n);
    let mut out = c.data.clone();
    for i in 0..n {
        let cs = &c.data[i * pc..(i + 1) * pc];
        let sum_c: f64 = cs.iter().map(|&v| v as f64).sum();
        let sum_r: f64 = r.data[i * pr..(i + 1) * pr].iter().map(|&v| v as f64).sum();
        let live_n = cs.iter().filter(|&&v| v != 0.0).count();
        let shift = sdiv((sum_c - sum_r) as f32, live_n as f32);
        for o in &mut out[i * pc..(i + 1) * pc] {
            *o -= live(*o) * shift;
        }
    }
    Tensor::new(c.shape, out)
}

impl Rap {
    /// `x ⊙ (back⁺(S⁺) + back⁻(S⁻))` for the hidden rule with contributions `p`, `n`.
    fn hidden(
        &self,
        x: &Tensor,
        r: &Tensor,
        p: &Tensor,
        n: &Tensor,
        linear: bool,
        back: impl Fn(&Tensor, bool) -> Tensor,
    ) -> Tensor {
        let sp = Tensor::new(
            r.shape.clone(),
            (0..r.numel())
                .map(|i| {
                    let rv = if linear {
                        r.data[i]
                    } else {
                        r.data[i].max(0.0)
                    };
                    sdiv(rv, p.data[i])
                })
                .collect(),
        );
        let sn = Tensor::new(
            r.shape.clone(),
            (0..r.numel())
                .map(|i| {
                    let (rv, pv, nv) = (r.data[i], p.data[i], n.data[i]);
                    let mut v = live(nv) * sdiv(rv, pv - nv);
                    if !linear {
                        v += sdiv(rv.min(0.0), -nv);
                    }
                    -v
                })
                .collect(),
        );
        let bp = back(&sp, true);
        let bn = back(&sn, false);
        let c = Tensor::new(
            x.shape.clone(),
            (0..x.numel())
                .map(|i| (bp.data[i] + bn.data[i]) * x.data[i])
                .collect(),
        );
        rap_shift(c, r)
    }
}

impl Rules for Rap {
    fn conv(&self, x: &Tensor, r: &Tensor, c: &Conv2d, first: bool) -> Tensor {
        if first {
            return zbox_first_conv(x, r, c);
        }
        let (wp, wn) = (
            clamp_weights(&c.weight, true),
            clamp_weights(&c.weight, false),
        );
        let p = conv2d(x, &wp, None, c.stride, c.padding);
        let n = conv2d(x, &wn, None, c.stride, c.padding);
        let hw = (x.shape[2], x.shape[3]);
        self.hidden(x, r, &p, &n, false, |s, pos| {
            conv2d_dgrad(s, if pos { &wp } else { &wn }, c.stride, c.padding, hw)
        })
    }
    fn linear(&self, x: &Tensor, r: &Tensor, l: &Linear) -> Tensor {
        let lp = linear_no_bias(&clamp_weights(&l.weight, true));
        let ln = linear_no_bias(&clamp_weights(&l.weight, false));
        let p = super::ops::linear(x, &lp);
        let n = super::ops::linear(x, &ln);
        self.hidden(x, r, &p, &n, true, |s, pos| {
            linear_backward_input(s, if pos { &lp } else { &ln })
        })
    }
    fn top_linear(&self, x: &Tensor, seed: &Tensor, l: &Linear) -> Tensor {
        let lp = linear_no_bias(&clamp_weights(&l.weight, true));
        let ln = linear_no_bias(&clamp_weights(&l.weight, false));
        let p = super::ops::linear(x, &lp);
        let n = super::ops::linear(x, &ln);
        let classes = l.out_features();
        let row = |part: &Tensor| {
            Tensor::new(
                seed.shape.clone(),
                (0..seed.numel())
                    .map(|i| {
                        let (pv, nv, b) = (p.data[i], n.data[i], l.bias[i % classes]);
                        let v = part.data[i];
                        seed.data[i] * (live(v) + sdiv(b * sdiv(v, pv + nv), v))
                    })
                    .collect(),
            )
        };
        let bp = linear_backward_input(&row(&p), &lp);
        let bn = linear_backward_input(&row(&n), &ln);
        let batch = x.shape[0];
        let per = x.numel() / batch;
        let c: Vec<f32> = (0..x.numel())
            .map(|i| (bp.data[i] + bn.data[i]) * x.data[i])
            .collect();
        let mut out = vec![0.0f32; c.len()];
        for i in 0..batch {
            let part = &c[i * per..(i + 1) * per];
            let sum: f64 = part.iter().map(|&v| v as f64).sum();
            let abs: f64 = part.iter().map(|&v| (v as f64).abs()).sum();
            let scale = sdiv(sum as f32, abs as f32);
            for (o, v) in out[i * per..(i + 1) * per].iter_mut().zip(part) {
                *o = v.abs() * scale;
            }
        }
        Tensor::new(x.shape.clone(), out)
    }
    fn relu(&self, _: &Tensor, r: &Tensor) -> Tensor {
        r.clone()
    }
    fn max_pool(&self, x: &Tensor, r: &Tensor, p: &MaxPool2d) -> Tensor {
        max_pool2d_route(x, r, p, 0.0)
    }
    fn avg_pool(&self, x: &Tensor, r: &Tensor, p: &AvgPool2d) -> Tensor {
        Lrp(Some(0.0)).avg_pool(x, r, p)
    }
    fn batch_norm(&self, x: &Tensor, r: &Tensor, bn: &BatchNorm2d) -> Tensor {
        live_mask_batch_norm(x, r, bn)
    }
    fn residual(&self, a: &Tensor, b: &Tensor, r: &Tensor) -> (Tensor, Tensor) {
        Lrp(None).residual(a, b, r)
    }
}

/// The seed rows at the logits of a method `spec` (see `shaders/logit_seed.wgsl`).
pub fn logit_seed(spec: &MethodSpec, logits: &Tensor, target: &[usize]) -> Tensor {
    let (n, c) = (logits.shape[0], logits.shape[1]);
    let probs = softmax(logits);
    let mut out = vec![0.0f32; n * c];
    for (i, &t) in target.iter().enumerate() {
        for k in 0..c {
            let hot = if k == t { 1.0 } else { 0.0 };
            let v = match spec.seed {
                Seed::OneHot => hot,
                Seed::Contrastive if k != t => -1.0 / (c.max(2) - 1) as f32,
                Seed::Contrastive => hot,
                Seed::SoftmaxGradient => probs.data[i * c + t] * (hot - probs.data[i * c + k]),
            };
            out[i * c + k] = match spec.scale {
                SeedScale::One => v,
                SeedScale::TargetLogit => v * logits.data[i * c + t],
            };
        }
    }
    Tensor::new(vec![n, c], out)
}

/// Textbook Grad-CAM `ReLU(Σ_c mean_hw(g_c) · A_c)` `[N, 1, h, w]`.
pub fn grad_cam(act: &Tensor, grad: &Tensor) -> Tensor {
    let (n, c, h, w) = dims4(act, "grad_cam activation");
    let hw = h * w;
    let mut out = vec![0.0f32; n * hw];
    for i in 0..n {
        for ch in 0..c {
            let plane = (i * c + ch) * hw..(i * c + ch + 1) * hw;
            let alpha = grad.data[plane.clone()].iter().sum::<f32>() / hw as f32;
            for (o, a) in out[i * hw..(i + 1) * hw].iter_mut().zip(&act.data[plane]) {
                *o += alpha * a;
            }
        }
    }
    Tensor::new(
        vec![n, 1, h, w],
        out.into_iter().map(|v| v.max(0.0)).collect(),
    )
}

/// Bilinear resize of every plane of `[N, C, h, w]` with half-pixel centres (torch's
/// `align_corners=False`).
pub fn upsample_bilinear(t: &Tensor, (oh, ow): (usize, usize)) -> Tensor {
    let (n, c, h, w) = dims4(t, "upsample input");
    let src = |dst: usize, in_len: usize, out_len: usize| {
        let pos = ((dst as f32 + 0.5) * in_len as f32 / out_len as f32 - 0.5).max(0.0);
        let i0 = (pos.floor() as usize).min(in_len - 1);
        let i1 = (i0 + 1).min(in_len - 1);
        (i0, i1, pos - i0 as f32)
    };
    let mut out = Vec::with_capacity(n * c * oh * ow);
    for p in 0..n * c {
        let plane = &t.data[p * h * w..(p + 1) * h * w];
        for y in 0..oh {
            let (y0, y1, ly) = src(y, h, oh);
            for x in 0..ow {
                let (x0, x1, lx) = src(x, w, ow);
                let top = plane[y0 * w + x0] * (1.0 - lx) + plane[y0 * w + x1] * lx;
                let bottom = plane[y1 * w + x0] * (1.0 - lx) + plane[y1 * w + x1] * lx;
                out.push(top * (1.0 - ly) + bottom * ly);
            }
        }
    }
    Tensor::new(vec![n, c, oh, ow], out)
}

/// Explains `input` with a baseline `method` on the CPU; the same contract as
/// `explain::explain` with `Request::method(method, target)` on the GPU.
pub fn explain_method(
    model: &Model,
    input: &Tensor,
    method: Method,
    target: Option<&[usize]>,
) -> Result<Explanation> {
    let spec = method.spec();
    ensure!(
        spec.rules != RuleSet::Rsp,
        "RSP is reference::model::explain"
    );
    ensure!(
        model.num_classes() > 0,
        "the baselines need a classifier (these weights are features only)"
    );
    let trace = forward(model, input);
    let classes = trace.logits.shape[1];
    let target: Vec<usize> = match target {
        Some(t) => t.to_vec(),
        None => trace
            .logits
            .data
            .chunks(classes)
            .map(|row| top_k(row, 1)[0])
            .collect(),
    };
    let seed = logit_seed(spec, &trace.logits, &target);
    let rules: Box<dyn Rules> = match spec.rules {
        RuleSet::Gradient => Box::new(Gradient),
        RuleSet::LrpEpsilon(e) => Box::new(Lrp(Some(e))),
        RuleSet::LrpPositive => Box::new(Lrp(None)),
        RuleSet::Rap => Box::new(Rap),
        RuleSet::Rsp => unreachable!("refused above"),
    };
    let stop = match spec.stop {
        WalkStop::Input => INPUT,
        WalkStop::ExplainLayer => model.graph.explain,
    };
    let logits = model.graph.logits.expect("checked: a classifier");
    let r = walk(
        model,
        &trace,
        (logits, seed.clone()),
        stop,
        rules.as_ref(),
        None,
    );
    let relevance = match spec.post {
        Post::None => r,
        Post::TimesInput => zip(&r, input, |g, x| g * x),
        Post::Relu => relu(&r),
        Post::GradCam => {
            upsample_bilinear(&grad_cam(&trace.act, &r), (input.shape[2], input.shape[3]))
        }
    };
    Ok(Explanation {
        logits: trace.logits,
        target,
        init: seed,
        relevance,
        layers: Vec::new(),
    })
}

/// `∂y_t/∂A` for each image (re-exported for tests of Grad-CAM's textbook formula).
pub fn explanation_layer_gradient(
    model: &Model,
    input: &Tensor,
    target: &[usize],
) -> (Tensor, Tensor) {
    let trace = forward(model, input);
    let g = head_gradient(model, &trace, target);
    (trace.act, g)
}
