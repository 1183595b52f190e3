//! The baselines (gradient, gradient × input, Grad-CAM, LRP-ε, LRP-α1β0, CLRP, SGLRP,
//! RAP)
//! on the GPU against their CPU reference, on tiny random VGG (with and without batch
//! norm) and ResNet (Bottleneck and BasicBlock) models loaded through the real loader;
//! plus properties that do not depend on the reference: LRP-α1β0 conserves relevance
//! in a bias-free VGG, RAP conserves the logit, SGLRP's seed sums to zero, CLRP is non-negative, Grad-CAM is the
//! textbook formula, the gradient matches finite differences, and the bilinear resize
//! matches torch's values.
//!
//! `cargo test --release --test gpu baselines:: -- --nocapture` prints every error.

use crate::{common, support};
use rsp::compare::{compare, Tolerance};
use rsp::explain::{explain, noisy_copies, Method, Request, Smooth};
use rsp::gpu::Recorder;
use rsp::models::gpu::GpuModel;
use rsp::ops;
use rsp::reference::{baselines as refb, model as refmodel};
use rsp::{Model, Tensor};
use safetensors::tensor::Dtype;

use crate::support::{assert_close, resnet_state, vgg_state, StateDict, REL_TOL};

const VGG_CFG: [Option<usize>; 5] = [Some(8), None, Some(13), Some(11), None];

fn load(sd: &StateDict) -> Model {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.safetensors");
    sd.save(&path, Dtype::F32);
    Model::from_file(&path).unwrap_or_else(|e| panic!("model does not load: {e:#}"))
}

fn input(h: usize, w: usize, seed: u64) -> Tensor {
    support::map(&common::random(&[2, 3, h, w], seed), |v| v * 2.0 + 0.1)
}

/// Every baseline on the GPU against the reference (targets: top-1, then given).
fn check_all_methods(what: &str, model: &Model, x: &Tensor) {
    let ctx = common::gpu();
    let gm = GpuModel::upload(ctx, model);
    let mut failures = Vec::new();
    for method in Method::ALL.into_iter().filter(|&m| m != Method::Rsp) {
        for targets in [None, Some(vec![3usize, 7])] {
            let t = targets.as_deref();
            let g = explain(
                ctx,
                &gm,
                x,
                &Request::method(method, t.map(<[usize]>::to_vec)),
            )
            .unwrap_or_else(|e| panic!("{what} {method}: GPU failed: {e:#}"));
            let c = refb::explain_method(model, x, method, t).unwrap();
            assert_eq!(g.target, c.target, "{what} {method}: targets");
            if let Some(t) = t {
                assert_eq!(g.target, t, "{what} {method}: given targets kept");
            }
            for (name, gt, ct) in [
                ("seed", &g.init, &c.init),
                ("map", &g.relevance, &c.relevance),
            ] {
                let label = format!("{what} {method} {targets:?} {name}");
                // (Grad-CAM of a class the image shows no evidence for is legitimately 0.)
                assert!(
                    t.is_some() || ct.data.iter().any(|&v| v != 0.0),
                    "{label}: reference is all zero"
                );
                match compare(&label, gt, ct, Tolerance::GOLDEN) {
                    Ok(rep) => println!("{label}: rel_max {:.3e}", rep.rel_max_err),
                    Err(e) => failures.push(e),
                }
            }
            let expect_channels = if method == Method::GradCam { 1 } else { 3 };
            assert_eq!(
                g.relevance.shape,
                [x.shape[0], expect_channels, x.shape[2], x.shape[3]],
                "{what} {method}: map shape"
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{what}: {} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn vgg_baselines_match_reference() {
    let model = load(&vgg_state(&VGG_CFG, false, 2, 20, 10, 1));
    check_all_methods("vgg", &model, &input(16, 20, 10));
}

#[test]
fn vgg_bn_baselines_match_reference() {
    let model = load(&vgg_state(&VGG_CFG, true, 7, 24, 10, 2));
    check_all_methods("vgg_bn", &model, &input(13, 17, 11));
}

#[test]
fn resnet_bottleneck_baselines_match_reference() {
    let model = load(&resnet_state(true, [2, 1, 1, 1], 8, [4, 6, 5, 7], 10, 3));
    check_all_methods("resnet_bottleneck", &model, &input(29, 35, 12));
}

#[test]
fn resnet_basic_baselines_match_reference() {
    let model = load(&resnet_state(
        false,
        [2, 1, 1, 1],
        8,
        [8, 10, 12, 14],
        10,
        4,
    ));
    check_all_methods("resnet_basic", &model, &input(32, 32, 13));
}

/// A VGG whose biases are all zero: every z⁺ denominator that receives relevance is
/// positive, so LRP-α1β0 with z^B at the bottom must conserve the seed (the target's
/// logit) exactly, up to float32 rounding; SGLRP's seed sums to 0, so its map does too.
#[test]
fn lrp_alpha_beta_conserves_relevance_without_biases() {
    let mut sd = vgg_state(&VGG_CFG, false, 2, 20, 10, 5);
    for (name, t) in sd.floats.iter_mut() {
        if name.ends_with(".bias") {
            t.data.iter_mut().for_each(|v| *v = 0.0);
        }
    }
    let model = load(&sd);
    let ctx = common::gpu();
    let gm = GpuModel::upload(ctx, &model);
    let x = input(16, 20, 14);
    let lrp = explain(ctx, &gm, &x, &Request::method(Method::LrpAlphaBeta, None)).unwrap();
    let sglrp = explain(ctx, &gm, &x, &Request::method(Method::Sglrp, None)).unwrap();
    let per_image = lrp.relevance.numel() / 2;
    for i in 0..2 {
        let part = &lrp.relevance.data[i * per_image..(i + 1) * per_image];
        let total: f64 = part.iter().map(|&v| v as f64).sum();
        let logit = lrp.logits.data[i * 10 + lrp.target[i]] as f64;
        println!("image {i}: Σ R_pixel = {total:.7}, logit {logit:.7}");
        assert!(
            logit > 0.0,
            "top-1 logit of a bias-free ReLU net is positive"
        );
        assert!(
            (total - logit).abs() < 1e-4 * logit,
            "image {i}: Σ R = {total} vs logit {logit}"
        );
        let sg = &sglrp.relevance.data[i * per_image..(i + 1) * per_image];
        let sum: f64 = sg.iter().map(|&v| v as f64).sum();
        let abs: f64 = sg.iter().map(|&v| (v as f64).abs()).sum();
        println!("image {i}: SGLRP Σ R = {sum:.3e}, Σ|R| = {abs:.3e}");
        assert!(
            abs > 0.0 && sum.abs() <= 1e-4 * abs,
            "SGLRP sum {sum} of {abs}"
        );
        let seed_row = &sglrp.init.data[i * 10..(i + 1) * 10];
        let seed_sum: f32 = seed_row.iter().sum();
        assert!(seed_sum.abs() < 1e-6, "SGLRP seed sums to {seed_sum}");
    }
}

/// RAP's top layer splits the logit into contributions whose total is the logit, and
/// every hidden layer shifts its units to conserve relevance: the pixels sum to the
/// target logit (also with biases, unlike LRP).
#[test]
fn rap_conserves_the_logit() {
    let model = load(&vgg_state(&VGG_CFG, false, 2, 20, 10, 9));
    let ctx = common::gpu();
    let gm = GpuModel::upload(ctx, &model);
    let x = input(16, 20, 18);
    let rap = explain(ctx, &gm, &x, &Request::method(Method::Rap, None)).unwrap();
    let per_image = rap.relevance.numel() / 2;
    for i in 0..2 {
        let total: f64 = rap.relevance.data[i * per_image..(i + 1) * per_image]
            .iter()
            .map(|&v| v as f64)
            .sum();
        let logit = rap.logits.data[i * 10 + rap.target[i]] as f64;
        println!("image {i}: RAP Σ R_pixel = {total:.6}, logit {logit:.6}");
        assert!(
            (total - logit).abs() <= 1e-3 * logit.abs().max(1.0),
            "image {i}: Σ R = {total} vs logit {logit}"
        );
    }
}

#[test]
fn clrp_is_non_negative_and_lrp_eps_differs_from_alpha_beta() {
    let model = load(&resnet_state(
        false,
        [1, 1, 1, 1],
        8,
        [8, 10, 12, 14],
        10,
        6,
    ));
    let ctx = common::gpu();
    let gm = GpuModel::upload(ctx, &model);
    let x = input(32, 32, 15);
    let clrp = explain(ctx, &gm, &x, &Request::method(Method::Clrp, None)).unwrap();
    assert!(clrp.relevance.data.iter().all(|&v| v >= 0.0));
    assert!(clrp.relevance.data.iter().any(|&v| v > 0.0));
    let row: f32 = clrp.init.data[..10].iter().sum();
    assert!(
        row.abs() < 1e-6,
        "CLRP seed: target minus the others' mean sums to {row}"
    );
    let eps = explain(ctx, &gm, &x, &Request::method(Method::LrpEpsilon, None)).unwrap();
    let ab = explain(ctx, &gm, &x, &Request::method(Method::LrpAlphaBeta, None)).unwrap();
    assert!(support::rel_err(&eps.relevance, &ab.relevance) > 1e-3);
}

/// Grad-CAM on the GPU equals the formula of Selvaraju et al. written out here, from
/// the reference's activation and gradient at the explanation layer.
#[test]
fn grad_cam_is_the_textbook_formula() {
    let model = load(&vgg_state(&VGG_CFG, false, 2, 20, 10, 7));
    let x = input(16, 20, 16);
    let (act, grad) = refb::explanation_layer_gradient(&model, &x, &[2, 5]);
    let (n, c, h, w) = (act.shape[0], act.shape[1], act.shape[2], act.shape[3]);
    let mut want = vec![0.0f32; n * h * w];
    for i in 0..n {
        for p in 0..h * w {
            let mut s = 0.0f64;
            for ch in 0..c {
                let plane = (i * c + ch) * h * w;
                let alpha: f64 = grad.data[plane..plane + h * w]
                    .iter()
                    .map(|&v| v as f64)
                    .sum::<f64>()
                    / (h * w) as f64;
                s += alpha * act.data[plane + p] as f64;
            }
            want[i * h * w + p] = s.max(0.0) as f32;
        }
    }
    let want = Tensor::new(vec![n, 1, h, w], want);
    assert!(want.data.iter().any(|&v| v > 0.0));
    let ctx = common::gpu();
    let got = support::run1(|rec: &mut Recorder| {
        let a = ctx.upload(&act);
        let g = ctx.upload(&grad);
        ops::grad_cam(rec, &a, &g)
    });
    assert_close("grad_cam vs formula", &got, &want, REL_TOL);
    assert_close(
        "reference grad_cam vs formula",
        &refb::grad_cam(&act, &grad),
        &want,
        REL_TOL,
    );
}

/// torch: F.interpolate([[1, 2], [3, 4]], size=(4, 4), mode='bilinear',
/// align_corners=False).
#[test]
fn bilinear_resize_matches_torch() {
    let t = Tensor::new(vec![1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]);
    let want = Tensor::new(
        vec![1, 1, 4, 4],
        vec![
            1.0, 1.25, 1.75, 2.0, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3.0, 3.25, 3.75, 4.0,
        ],
    );
    let ctx = common::gpu();
    let got = support::run1(|rec: &mut Recorder| {
        let g = ctx.upload(&t);
        ops::upsample_bilinear(rec, &g, (4, 4))
    });
    assert_close("gpu upsample", &got, &want, 1e-7);
    assert_close(
        "cpu upsample",
        &refb::upsample_bilinear(&t, (4, 4)),
        &want,
        1e-7,
    );
    // Non-integer ratio, down and up: GPU and CPU agree.
    let r = common::random(&[2, 3, 5, 7], 3);
    let got = support::run1(|rec: &mut Recorder| {
        let g = ctx.upload(&r);
        ops::upsample_bilinear(rec, &g, (11, 4))
    });
    assert_close(
        "upsample 5x7→11x4",
        &got,
        &refb::upsample_bilinear(&r, (11, 4)),
        REL_TOL,
    );
}

/// The gradient map against central finite differences of the reference forward pass
/// (the network is piecewise linear: away from kinks the difference quotient is exact).
#[test]
fn gradient_matches_finite_differences() {
    let model = load(&vgg_state(&VGG_CFG, false, 2, 20, 10, 8));
    let x = input(16, 20, 17);
    let x1 = x.index0(0).reshape(&[1, 3, 16, 20]);
    let ctx = common::gpu();
    let gm = GpuModel::upload(ctx, &model);
    let g = explain(
        ctx,
        &gm,
        &x1,
        &Request::method(Method::Gradient, Some(vec![4])),
    )
    .unwrap();
    let logit = |t: &Tensor| refmodel::forward(&model, t).logits.data[4] as f64;
    let h = 1e-3f32;
    let mut checked = 0;
    for idx in (0..x1.numel()).step_by(97) {
        let mut plus = x1.clone();
        plus.data[idx] += h;
        let mut minus = x1.clone();
        minus.data[idx] -= h;
        let fd = (logit(&plus) - logit(&minus)) / (2.0 * h as f64);
        let an = g.relevance.data[idx] as f64;
        let scale = g.relevance.max_abs() as f64;
        assert!(
            (fd - an).abs() <= 2e-2 * scale,
            "pixel {idx}: finite difference {fd:.5} vs gradient {an:.5}"
        );
        checked += 1;
    }
    assert!(checked >= 9);
}

/// SmoothGrad: the averaged map is the mean of the method over the noisy copies, for the
/// class of the clean image; without noise it is the plain map; with noise it differs.
#[test]
fn smooth_is_the_mean_over_noisy_copies_for_the_clean_class() {
    let ctx = common::gpu();
    let model = load(&vgg_state(&VGG_CFG, false, 2, 20, 10, 1));
    let gm = GpuModel::upload(ctx, &model);
    let x = input(16, 20, 12);
    for method in [Method::Gradient, Method::Rsp, Method::GradCam] {
        let plain = explain(ctx, &gm, &x, &Request::method(method, None)).unwrap();
        let smooth = Smooth {
            samples: 3,
            noise: 0.2,
            seed: 5,
        };
        let req = Request {
            smooth: Some(smooth),
            ..Request::method(method, None)
        };
        let averaged = explain(ctx, &gm, &x, &req).unwrap();
        assert_eq!(
            averaged.target, plain.target,
            "{method}: the clean image's class"
        );
        assert_eq!(
            averaged.logits.data, plain.logits.data,
            "{method}: clean logits"
        );
        // By hand: the noisy batch, each copy explained for its image's class, averaged.
        let noisy = noisy_copies(&x, &smooth);
        let rows: Vec<usize> = plain.target.iter().flat_map(|&t| [t; 3]).collect();
        let each = explain(ctx, &gm, &noisy, &Request::method(method, Some(rows))).unwrap();
        let per = each.relevance.numel() / 6;
        let mut mean = vec![0.0f32; 2 * per];
        for (r, chunk) in each.relevance.data.chunks(per).enumerate() {
            for (m, v) in mean[(r / 3) * per..(r / 3 + 1) * per].iter_mut().zip(chunk) {
                *m += v / 3.0;
            }
        }
        let mean = Tensor::new(averaged.relevance.shape.clone(), mean);
        assert_close(
            &format!("{method} smooth"),
            &averaged.relevance,
            &mean,
            1e-5,
        );
        let moved = averaged
            .relevance
            .data
            .iter()
            .zip(&plain.relevance.data)
            .any(|(a, b)| (a - b).abs() > 1e-3 * plain.relevance.max_abs());
        assert!(moved, "{method}: noise 0.2 left the map unchanged");
        // Without noise the average of identical maps is the plain map.
        let quiet = Request {
            smooth: Some(Smooth {
                noise: 0.0,
                ..smooth
            }),
            ..Request::method(method, None)
        };
        let same = explain(ctx, &gm, &x, &quiet).unwrap();
        assert_close(
            &format!("{method} noise 0"),
            &same.relevance,
            &plain.relevance,
            1e-6,
        );
    }
    let bad = Request {
        smooth: Some(Smooth {
            samples: 0,
            noise: 0.1,
            seed: 0,
        }),
        ..Request::default()
    };
    let e = explain(ctx, &gm, &x, &bad).unwrap_err().to_string();
    assert!(e.contains("at least 1 sample"), "{e}");
}

/// A kept forward pass (what `rsp serve` caches per image) gives every method, RSP with
/// both initialisations included, the same bits as a whole `explain`, in any order and
/// for any class: no backward pass writes into the kept activations.
#[test]
fn a_kept_forward_pass_explains_like_a_whole_pass() {
    use rsp::explain::{ForwardPass, Init};
    let ctx = common::gpu();
    let model = load(&resnet_state(
        false,
        [1, 1, 1, 1],
        8,
        [8, 8, 12, 12],
        10,
        41,
    ));
    let gm = GpuModel::upload(ctx, &model);
    let x = input(32, 32, 43);
    let kept = ForwardPass::new(ctx, &gm, &x).unwrap();
    assert_eq!(kept.images(), 2);
    assert!(kept.bytes() >= x.numel() as u64 * 4, "{}", kept.bytes());
    let whole_logits = model_logits(&gm, &x);
    support::assert_bits_eq("logits", &kept.logits, &whole_logits);
    let mut requests = Vec::new();
    for targets in [None, Some(vec![3usize, 7]), Some(vec![1, 1])] {
        for method in Method::ALL {
            requests.push(Request::method(method, targets.clone()));
        }
        requests.push(Request {
            init: Init::Comparative { k: 3 },
            ..Request::method(Method::Rsp, targets.clone())
        });
    }
    // Twice over, so that a method runs after every other one has used the pass.
    for round in 0..2 {
        for req in &requests {
            let what = format!(
                "round {round} {} {:?} {:?}",
                req.method, req.init, req.targets
            );
            let a = kept.explain(ctx, &gm, req).unwrap();
            let b = explain(ctx, &gm, &x, req).unwrap();
            assert_eq!(a.target, b.target, "{what}: target");
            support::assert_bits_eq(&format!("{what}: map"), &a.relevance, &b.relevance);
            support::assert_bits_eq(&format!("{what}: init"), &a.init, &b.init);
            support::assert_bits_eq(&format!("{what}: logits"), &a.logits, &b.logits);
        }
    }
    let smooth = Request {
        smooth: Some(Smooth {
            samples: 2,
            noise: 0.1,
            seed: 0,
        }),
        ..Request::default()
    };
    let err = kept.explain(ctx, &gm, &smooth).unwrap_err();
    assert_eq!(rsp::error::kind(&err), rsp::ErrorKind::InvalidInput);
}

fn model_logits(gm: &GpuModel, x: &Tensor) -> Tensor {
    gm.predict(common::gpu(), x).unwrap()
}
