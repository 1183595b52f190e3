//! Whole models on the GPU against the CPU reference. Tiny random models are built here
//! in torchvision naming, written to safetensors files and loaded with
//! `Model::from_file` (so the loader's architecture inference is exercised too):
//! VGG with and without batch norm, ResNet with Bottleneck and with BasicBlock.
//! For each: GPU logits vs `reference::model::forward`, and the full GPU `explain`
//! (Grad-CAM and comparative init, every layer recorded) vs `reference::model::explain`.
//! Also: float16/bfloat16 weights, the `model.` prefix, timm's VGG head layout, weights
//! split over several bindings, batches vs single images, and determinism.
//!
//! `cargo test --release --test gpu models:: -- --nocapture` prints every measured error.

use crate::{common, support};
use std::path::PathBuf;

use rsp::compare::{compare, Tolerance};
use rsp::explain::{explain, Explanation, Request};
use rsp::gpu::{ContextOptions, GpuContext, Recorder};
use rsp::layers::AvgPool2d;
use rsp::models::gpu::GpuModel;
use rsp::models::graph::Layer;
use rsp::models::vgg::explain_index;
use rsp::reference::model as refmodel;
use rsp::{Init, Model, Tensor};
use safetensors::tensor::Dtype;

use crate::support::{assert_bits_eq, assert_close, resnet_state, vgg_state, StateDict, REL_TOL};

/// VGG config `[8, 'M', 13, 11, 'M']`.
const VGG_CFG: [Option<usize>; 5] = [Some(8), None, Some(13), Some(11), None];

/// VGG without BN, adaptive pool 2×2 (from a 4×5 map: non-divisible bins).
fn vgg_plain() -> StateDict {
    vgg_state(&VGG_CFG, false, 2, 20, 10, 1)
}

/// VGG with BN, adaptive pool 7×7 (from a 3×4 map: overlapping bins).
fn vgg_bn() -> StateDict {
    vgg_state(&VGG_CFG, true, 7, 24, 10, 2)
}

/// Bottleneck ResNet [2, 1, 1, 1], stem 8, block outputs 16/24/20/28.
fn resnet_bottleneck() -> StateDict {
    resnet_state(true, [2, 1, 1, 1], 8, [4, 6, 5, 7], 10, 3)
}

/// BasicBlock ResNet [2, 1, 1, 1], widths 8/10/12/14 (layer1 without downsample).
fn resnet_basic() -> StateDict {
    resnet_state(false, [2, 1, 1, 1], 8, [8, 10, 12, 14], 10, 4)
}

/// Two different normalised-image-like inputs.
fn input(h: usize, w: usize, seed: u64) -> Tensor {
    support::map(&common::random(&[2, 3, h, w], seed), |v| v * 2.0 + 0.1)
}

struct Saved {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn save(sd: &StateDict, dtype: Dtype) -> Saved {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.safetensors");
    sd.save(&path, dtype);
    Saved { _dir: dir, path }
}

fn load(sd: &StateDict, dtype: Dtype) -> Model {
    let f = save(sd, dtype);
    Model::from_file(&f.path).unwrap_or_else(|e| panic!("model does not load: {e:#}"))
}

fn gpu_logits(ctx: &GpuContext, gm: &GpuModel, x: &Tensor) -> Tensor {
    let mut rec = Recorder::new(ctx);
    let xg = ctx.upload(x);
    let fwd = gm.forward(&mut rec, &xg);
    rec.submit();
    drop(rec);
    ctx.read(&fwd.logits).unwrap()
}

fn gpu_explain(
    ctx: &GpuContext,
    gm: &GpuModel,
    x: &Tensor,
    init: &Init,
    targets: Option<Vec<usize>>,
    record_layers: bool,
) -> Explanation {
    explain(
        ctx,
        gm,
        x,
        &Request {
            init: init.clone(),
            targets,
            record_layers,
            ..Request::default()
        },
    )
    .unwrap_or_else(|e| panic!("GPU explain failed: {e:#}"))
}

/// GPU forward and explain (both inits, every layer recorded) against the reference.
fn check_against_reference(what: &str, model: &Model, x: &Tensor) {
    let ctx = common::gpu();
    let gm = GpuModel::upload(ctx, model);
    let trace = refmodel::forward(model, x);
    assert_close(
        &format!("{what} logits"),
        &gpu_logits(ctx, &gm, x),
        &trace.logits,
        REL_TOL,
    );
    let mut failures = Vec::new();
    let mut worst = (0.0f64, String::new());
    for init in [Init::GradCam, Init::Comparative { k: 3 }] {
        let g = gpu_explain(ctx, &gm, x, &init, None, true);
        let c = refmodel::explain(model, x, None, &init, true).unwrap();
        assert_eq!(g.target, c.target, "{what} {init:?}: targets");
        let gn: Vec<&str> = g.layers.iter().map(|(n, _)| n.as_str()).collect();
        let cn: Vec<&str> = c.layers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(gn, cn, "{what} {init:?}: recorded layer names");
        assert!(!gn.is_empty());
        let mut pairs = vec![
            ("init".to_string(), &g.init, &c.init),
            ("relevance".to_string(), &g.relevance, &c.relevance),
        ];
        for ((name, gt), (_, ct)) in g.layers.iter().zip(&c.layers) {
            pairs.push((format!("layer {name}"), gt, ct));
        }
        for (name, gt, ct) in pairs {
            let label = format!("{what} {init:?} {name}");
            match compare(&label, gt, ct, Tolerance::GOLDEN) {
                Ok(rep) => {
                    if rep.rel_max_err > worst.0 {
                        worst = (rep.rel_max_err, label);
                    }
                }
                Err(e) => failures.push(e),
            }
        }
    }
    // Starting from a caller-supplied initial relevance (the reference's comparative one).
    let given = refmodel::explain(model, x, None, &Init::Comparative { k: 3 }, false)
        .unwrap()
        .init;
    let g = gpu_explain(ctx, &gm, x, &Init::Given(given.clone()), None, false);
    let c = refmodel::explain(model, x, None, &Init::Given(given.clone()), false).unwrap();
    assert_bits_eq(&format!("{what} given init"), &g.init, &given);
    if let Err(e) = compare(
        &format!("{what} given-init relevance"),
        &g.relevance,
        &c.relevance,
        Tolerance::GOLDEN,
    ) {
        failures.push(e);
    }
    println!("{what}: worst rel_max {:.3e} ({})", worst.0, worst.1);
    assert!(
        failures.is_empty(),
        "{what}: {} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The output size of the model's adaptive average pool.
fn avgpool_size(model: &Model) -> Option<(usize, usize)> {
    match model.graph.node("avgpool")?.layer {
        Layer::AvgPool(AvgPool2d::Adaptive { out }) => Some(out),
        _ => None,
    }
}

/// The stride of the convolution `name`, if the model has one.
fn conv_stride(model: &Model, name: &str) -> Option<usize> {
    match &model.graph.node(name)?.layer {
        Layer::Conv { conv, .. } => Some(conv.stride),
        _ => None,
    }
}

#[test]
fn vgg_without_bn_matches_reference() {
    let model = load(&vgg_plain(), Dtype::F32);
    assert_eq!(avgpool_size(&model), Some((2, 2)), "{}", model.describe());
    assert_eq!(explain_index(&model.graph), Some(6)); // features.6 = ReLU after the 3rd conv
    check_against_reference("vgg", &model, &input(16, 20, 10));
}

#[test]
fn vgg_with_bn_matches_reference() {
    let model = load(&vgg_bn(), Dtype::F32);
    assert_eq!(avgpool_size(&model), Some((7, 7)), "{}", model.describe());
    assert!(model.describe().contains("BN"), "{}", model.describe());
    check_against_reference("vgg_bn", &model, &input(13, 17, 11));
}

#[test]
fn resnet_bottleneck_matches_reference() {
    let model = load(&resnet_bottleneck(), Dtype::F32);
    assert!(
        model.describe().contains("Bottleneck [2,1,1,1]"),
        "{}",
        model.describe()
    );
    // Inferred geometry: stride 2 on the 3×3 of the first block of layer2..4,
    // downsample where the shape changes (layer1.0 by channels only).
    assert!(conv_stride(&model, "layer1.0.downsample.0").is_some());
    assert!(conv_stride(&model, "layer1.1.downsample.0").is_none());
    assert_eq!(conv_stride(&model, "layer1.0.conv2"), Some(1));
    for s in 2..=4 {
        assert_eq!(conv_stride(&model, &format!("layer{s}.0.conv2")), Some(2));
        assert_eq!(conv_stride(&model, &format!("layer{s}.0.conv1")), Some(1));
        assert_eq!(
            conv_stride(&model, &format!("layer{s}.0.downsample.0")),
            Some(2)
        );
    }
    check_against_reference("resnet_bottleneck", &model, &input(35, 29, 12));
}

#[test]
fn resnet_basic_block_matches_reference() {
    let model = load(&resnet_basic(), Dtype::F32);
    assert!(
        model.describe().contains("BasicBlock [2,1,1,1]"),
        "{}",
        model.describe()
    );
    for b in 0..2 {
        assert!(conv_stride(&model, &format!("layer1.{b}.downsample.0")).is_none());
    }
    for s in 2..=4 {
        assert_eq!(conv_stride(&model, &format!("layer{s}.0.conv1")), Some(2));
        assert!(conv_stride(&model, &format!("layer{s}.0.downsample.0")).is_some());
    }
    check_against_reference("resnet_basic", &model, &input(33, 30, 13));
}

/// float16 and bfloat16 copies of weights that are multiples of 1/64 (exact in both)
/// load to the same float32 values and give bit-identical GPU logits.
#[test]
fn half_precision_weights_load_and_match() {
    let ctx = common::gpu();
    for (what, sd, x) in [
        ("vgg_bn", vgg_bn().quantized(64.0), input(13, 17, 20)),
        (
            "resnet_basic",
            resnet_basic().quantized(64.0),
            input(33, 30, 21),
        ),
    ] {
        let reference = load(&sd, Dtype::F32);
        let want = gpu_logits(ctx, &GpuModel::upload(ctx, &reference), &x);
        assert_close(
            &format!("{what} quantized logits vs cpu"),
            &want,
            &refmodel::forward(&reference, &x).logits,
            REL_TOL,
        );
        for dtype in [Dtype::F16, Dtype::BF16] {
            let model = load(&sd, dtype);
            assert_eq!(model.describe(), reference.describe());
            let got = gpu_logits(ctx, &GpuModel::upload(ctx, &model), &x);
            assert_bits_eq(&format!("{what} {dtype:?} logits"), &got, &want);
        }
    }
}

/// Non-representable values are rounded by the conversion: the half-precision model still
/// loads and stays close to the float32 one.
#[test]
fn half_precision_rounding_stays_close() {
    let ctx = common::gpu();
    let sd = vgg_plain();
    let x = input(16, 20, 22);
    let want = gpu_logits(ctx, &GpuModel::upload(ctx, &load(&sd, Dtype::F32)), &x);
    for (dtype, tol) in [(Dtype::F16, 5e-3), (Dtype::BF16, 5e-2)] {
        let got = gpu_logits(ctx, &GpuModel::upload(ctx, &load(&sd, dtype)), &x);
        assert_close(&format!("vgg {dtype:?} logits vs f32"), &got, &want, tol);
    }
}

#[test]
fn model_prefix_loads_the_same_model() {
    let ctx = common::gpu();
    for (what, sd, x) in [
        ("vgg", vgg_plain(), input(16, 20, 30)),
        ("resnet_bottleneck", resnet_bottleneck(), input(35, 29, 31)),
    ] {
        let plain = load(&sd, Dtype::F32);
        let prefixed = load(&sd.renamed(|n| format!("model.{n}")), Dtype::F32);
        assert_eq!(plain.describe(), prefixed.describe());
        let a = gpu_logits(ctx, &GpuModel::upload(ctx, &plain), &x);
        let b = gpu_logits(ctx, &GpuModel::upload(ctx, &prefixed), &x);
        assert_bits_eq(&format!("{what} 'model.' prefix logits"), &b, &a);
    }
}

/// timm's VGG head: `pre_logits.fc1` as a 7×7 convolution weight `[out, C, 7, 7]`,
/// `pre_logits.fc2` as a 1×1 convolution `[out, out, 1, 1]`, then `head.fc`.
#[test]
fn timm_vgg_head_layout_matches_torchvision() {
    let ctx = common::gpu();
    let tv = vgg_bn();
    let mut timm = StateDict {
        floats: Vec::new(),
        ints: tv.ints.clone(),
    };
    for (name, t) in &tv.floats {
        let (new, shape): (String, Option<Vec<usize>>) = match name.as_str() {
            "classifier.0.weight" => (
                "pre_logits.fc1.weight".into(),
                Some(vec![t.shape[0], 11, 7, 7]),
            ),
            "classifier.0.bias" => ("pre_logits.fc1.bias".into(), None),
            "classifier.3.weight" => (
                "pre_logits.fc2.weight".into(),
                Some(vec![t.shape[0], t.shape[1], 1, 1]),
            ),
            "classifier.3.bias" => ("pre_logits.fc2.bias".into(), None),
            "classifier.6.weight" => ("head.fc.weight".into(), None),
            "classifier.6.bias" => ("head.fc.bias".into(), None),
            other => (other.to_string(), None),
        };
        let t = match shape {
            Some(s) => t.clone().reshape(&s),
            None => t.clone(),
        };
        timm.push(new, t);
    }
    assert!(timm
        .floats
        .iter()
        .any(|(n, _)| n == "pre_logits.fc1.weight"));
    let a = load(&tv, Dtype::F32);
    let b = load(&timm, Dtype::F32);
    assert_eq!(avgpool_size(&b), Some((7, 7)), "{}", b.describe());
    let linears = b.graph.nodes.iter();
    let linears = linears.filter(|n| matches!(n.layer, Layer::Linear(_)));
    assert_eq!(linears.count(), 3);
    let x = input(13, 17, 40);
    let (ga, gb) = (GpuModel::upload(ctx, &a), GpuModel::upload(ctx, &b));
    assert_bits_eq(
        "timm vs torchvision logits",
        &gpu_logits(ctx, &gb, &x),
        &gpu_logits(ctx, &ga, &x),
    );
    let ea = gpu_explain(ctx, &ga, &x, &Init::GradCam, None, false);
    let eb = gpu_explain(ctx, &gb, &x, &Init::GradCam, None, false);
    assert_bits_eq(
        "timm vs torchvision relevance",
        &eb.relevance,
        &ea.relevance,
    );
}

/// Acceptance test for weights larger than one storage binding: with bindings capped at
/// 64 KiB, classifier.0 (70 × 539 floats = 147 KiB) is split into 3 row chunks; logits
/// and relevance equal those of the unsplit model.
#[test]
fn weights_larger_than_a_binding_are_split() {
    let sd = vgg_state(&VGG_CFG, false, 7, 70, 10, 5);
    assert!(sd.get("classifier.0.weight").numel() * 4 > 64 * 1024);
    let model = load(&sd, Dtype::F32);
    let small = GpuContext::new(&ContextOptions {
        max_binding_override: Some(64 * 1024),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("GPU tests need a wgpu adapter: {e:#}"));
    let ctx = common::gpu();
    let whole = GpuModel::upload(ctx, &model);
    let split = GpuModel::upload(&small, &model);
    let chunks = |m: &GpuModel| {
        let linears = m.graph.nodes.iter().filter_map(|n| match &n.layer {
            Layer::Linear(l) => Some(l.chunks.len()),
            _ => None,
        });
        linears.collect::<Vec<_>>()
    };
    assert_eq!(chunks(&whole), vec![1, 1, 1]);
    assert_eq!(chunks(&split), vec![3, 1, 1]);
    let x = input(13, 17, 50);
    assert_bits_eq(
        "split logits",
        &gpu_logits(&small, &split, &x),
        &gpu_logits(ctx, &whole, &x),
    );
    let cpu = refmodel::explain(&model, &x, None, &Init::GradCam, false).unwrap();
    for init in [Init::GradCam, Init::Comparative { k: 3 }] {
        let a = gpu_explain(ctx, &whole, &x, &init, None, false);
        let b = gpu_explain(&small, &split, &x, &init, None, false);
        assert_eq!(a.target, b.target);
        assert_close(&format!("split init {init:?}"), &b.init, &a.init, REL_TOL);
        assert_close(
            &format!("split relevance {init:?}"),
            &b.relevance,
            &a.relevance,
            REL_TOL,
        );
        if init == Init::GradCam {
            compare(
                "split vs cpu",
                &b.relevance,
                &cpu.relevance,
                Tolerance::GOLDEN,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
    }

    // A larger image (a 42 KiB tensor per image under the 64 KiB cap): the batch of
    // two runs as two passes whose results are concatenated.
    let x = input(24, 28, 51);
    assert!(split.largest_tensor_per_image(24, 28) > 32 * 1024);
    assert!(split.largest_tensor_per_image(24, 28) <= 64 * 1024);
    for init in [Init::GradCam, Init::Comparative { k: 3 }] {
        let a = gpu_explain(ctx, &whole, &x, &init, Some(vec![2, 5]), true);
        let b = gpu_explain(&small, &split, &x, &init, Some(vec![2, 5]), true);
        assert_eq!(b.target, vec![2, 5]);
        assert_bits_eq("two-pass logits", &b.logits, &a.logits);
        assert_close(
            &format!("two-pass init {init:?}"),
            &b.init,
            &a.init,
            REL_TOL,
        );
        assert_close(
            &format!("two-pass relevance {init:?}"),
            &b.relevance,
            &a.relevance,
            REL_TOL,
        );
        let names = |e: &Explanation| e.layers.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&b), names(&a));
        for ((name, lb), (_, la)) in b.layers.iter().zip(&a.layers) {
            assert_close(&format!("two-pass {init:?} {name}"), lb, la, REL_TOL);
        }
        // The same initial relevance, given: split per pass, bit-identical maps.
        let given = Init::Given(a.init.clone());
        let ga = gpu_explain(ctx, &whole, &x, &given, Some(vec![2, 5]), false);
        let gb = gpu_explain(&small, &split, &x, &given, Some(vec![2, 5]), false);
        assert_bits_eq("two-pass given init", &gb.init, &a.init);
        assert_bits_eq("two-pass given relevance", &gb.relevance, &ga.relevance);
        assert_bits_eq("given init reproduces", &ga.relevance, &a.relevance);
    }
}

/// A batch of two different images with different explicit targets: each image's
/// explanation equals explaining it alone, and matches the reference.
#[test]
fn batch_equals_single_images_with_explicit_targets() {
    let ctx = common::gpu();
    for (what, sd, x) in [
        ("vgg_bn", vgg_bn(), input(13, 17, 60)),
        ("resnet_bottleneck", resnet_bottleneck(), input(35, 29, 61)),
    ] {
        let model = load(&sd, Dtype::F32);
        let gm = GpuModel::upload(ctx, &model);
        let targets = vec![3, 7];
        for init in [Init::GradCam, Init::Comparative { k: 3 }] {
            let both = gpu_explain(ctx, &gm, &x, &init, Some(targets.clone()), true);
            assert_eq!(both.target, targets);
            let cpu = refmodel::explain(&model, &x, Some(&targets), &init, false).unwrap();
            compare(
                &format!("{what} {init:?} batch vs cpu"),
                &both.relevance,
                &cpu.relevance,
                Tolerance::GOLDEN,
            )
            .unwrap_or_else(|e| panic!("{e}"));
            for (i, &t) in targets.iter().enumerate() {
                let xi = Tensor::stack(&[x.index0(i)]);
                let one = gpu_explain(ctx, &gm, &xi, &init, Some(vec![t]), true);
                assert_eq!(one.target, vec![t]);
                let label = format!("{what} {init:?} image {i}");
                assert_bits_eq(
                    &format!("{label} logits"),
                    &one.logits,
                    &Tensor::stack(&[both.logits.index0(i)]),
                );
                assert_bits_eq(
                    &format!("{label} init"),
                    &one.init,
                    &Tensor::stack(&[both.init.index0(i)]),
                );
                assert_bits_eq(
                    &format!("{label} relevance"),
                    &one.relevance,
                    &Tensor::stack(&[both.relevance.index0(i)]),
                );
                for ((name, a), (_, b)) in one.layers.iter().zip(&both.layers) {
                    assert_bits_eq(
                        &format!("{label} layer {name}"),
                        a,
                        &Tensor::stack(&[b.index0(i)]),
                    );
                }
            }
        }
    }
}

#[test]
fn explain_is_deterministic() {
    let ctx = common::gpu();
    for (what, sd, x) in [
        ("vgg", vgg_plain(), input(16, 20, 70)),
        ("resnet_basic", resnet_basic(), input(33, 30, 71)),
    ] {
        let model = load(&sd, Dtype::F32);
        let gm = GpuModel::upload(ctx, &model);
        for init in [Init::GradCam, Init::Comparative { k: 3 }] {
            let a = gpu_explain(ctx, &gm, &x, &init, None, true);
            let b = gpu_explain(ctx, &gm, &x, &init, None, true);
            assert_eq!(a.target, b.target);
            assert_bits_eq(&format!("{what} {init:?} logits"), &a.logits, &b.logits);
            assert_bits_eq(&format!("{what} {init:?} init"), &a.init, &b.init);
            assert_bits_eq(
                &format!("{what} {init:?} relevance"),
                &a.relevance,
                &b.relevance,
            );
            for ((name, ta), (_, tb)) in a.layers.iter().zip(&b.layers) {
                assert_bits_eq(&format!("{what} {init:?} {name}"), ta, tb);
            }
        }
    }
}

/// Classes with no positive evidence: fc rows that are all negative (A ≥ 0 after the
/// last ReLU, so their cams are ≤ 0 everywhere) with large biases so that they are the
/// top-2 predictions. The Grad-CAM init of the target and the comparative init of the
/// target and a competitor take the `max|cam|` fallback; GPU and reference agree.
#[test]
fn init_fallback_without_positive_evidence() {
    let ctx = common::gpu();
    let mut sd = resnet_basic();
    let w = sd.get_mut("fc.weight");
    let c = w.shape[1];
    for v in &mut w.data[..2 * c] {
        *v = -v.abs() - 0.01;
    }
    let b = sd.get_mut("fc.bias");
    b.data[0] = 500.0;
    b.data[1] = 400.0;
    let model = load(&sd, Dtype::F32);
    let gm = GpuModel::upload(ctx, &model);
    let x = input(65, 60, 80);
    for init in [Init::GradCam, Init::Comparative { k: 3 }] {
        let g = gpu_explain(ctx, &gm, &x, &init, None, false);
        let cpu = refmodel::explain(&model, &x, None, &init, false).unwrap();
        assert_eq!(
            g.target,
            vec![0, 0],
            "{init:?}: class 0 must be the top-1: {:?}",
            g.logits
        );
        assert!(
            g.init.data.iter().any(|&v| v != 0.0),
            "{init:?}: init is all zero"
        );
        if init == Init::GradCam {
            // max|cam| normalisation: every entry in [-1, 0], the extreme one at -1.
            for i in 0..2 {
                let m = g.init.index0(i).data.iter().fold(0.0f32, |a, &v| a.min(v));
                // WGSL allows 2.5 ulp in f32 division (NVIDIA gives -0.99999994 here).
                assert!(
                    (m + 1.0).abs() <= 1e-6,
                    "image {i}: fallback normalisation gave {m}"
                );
            }
            assert!(g.init.data.iter().all(|&v| v <= 0.0));
        }
        for (name, a, r) in [
            ("init", &g.init, &cpu.init),
            ("relevance", &g.relevance, &cpu.relevance),
        ] {
            let rep = compare(
                &format!("fallback {init:?} {name}"),
                a,
                r,
                Tolerance::GOLDEN,
            )
            .unwrap_or_else(|e| panic!("{e}"));
            println!("{rep}");
        }
    }
}

/// Invalid requests are errors, not panics.
#[test]
fn explain_rejects_bad_arguments() {
    let ctx = common::gpu();
    let model = load(&vgg_plain(), Dtype::F32);
    let gm = GpuModel::upload(ctx, &model);
    let x = input(16, 20, 90);
    let try_explain = |x: &Tensor, init: Init, targets: Option<Vec<usize>>| {
        explain(
            ctx,
            &gm,
            x,
            &Request {
                init,
                targets,
                record_layers: false,
                ..Request::default()
            },
        )
    };
    /// (what, input, init, targets, text the error must contain)
    type Case<'a> = (&'a str, Tensor, Init, Option<Vec<usize>>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "target out of range",
            x.clone(),
            Init::GradCam,
            Some(vec![1, 10]),
            "10",
        ),
        (
            "one target for two images",
            x.clone(),
            Init::GradCam,
            Some(vec![1]),
            "target",
        ),
        ("K = 1", x.clone(), Init::Comparative { k: 1 }, None, "2"),
        (
            "K > classes",
            x.clone(),
            Init::Comparative { k: 11 },
            None,
            "11",
        ),
        (
            "given init of the wrong shape",
            x.clone(),
            Init::Given(Tensor::zeros(&[2, 11, 4, 4])),
            None,
            "init",
        ),
        (
            "4 input channels",
            Tensor::zeros(&[1, 4, 16, 20]),
            Init::GradCam,
            None,
            "[1, 4, 16, 20]",
        ),
        (
            "3-D input",
            Tensor::zeros(&[3, 16, 20]),
            Init::GradCam,
            None,
            "[3, 16, 20]",
        ),
    ];
    for (what, x, init, targets, needle) in cases {
        match try_explain(&x, init, targets) {
            Ok(_) => panic!("{what}: accepted"),
            Err(e) => {
                let msg = format!("{e:#}");
                println!("{what}: {msg}");
                assert!(msg.contains(needle), "{what}: '{msg}' lacks '{needle}'");
            }
        }
    }
}

/// Errors carry their kind (`rsp::error`): a class out of range is invalid input, an
/// adapter that does not exist (no DX12 on Linux) a device error; the Python binding
/// raises ValueError and RuntimeError by them.
#[test]
fn errors_are_typed_by_kind() {
    let ctx = common::gpu();
    let f = common::golden("vgg_tiny");
    let model = Model::from_tensors(&f).unwrap();
    let gm = GpuModel::upload(ctx, &model);
    let input = common::get(&f, "input");
    let req = Request {
        targets: Some(vec![model.num_classes()]),
        ..Request::default()
    };
    let Err(e) = explain(ctx, &gm, &input, &req) else {
        panic!("target out of range accepted");
    };
    assert_eq!(rsp::error::kind(&e), rsp::ErrorKind::InvalidInput, "{e:#}");
    if cfg!(target_os = "linux") {
        let Err(e) = GpuContext::new(&ContextOptions {
            backend: rsp::gpu::Backend::Dx12,
            ..Default::default()
        }) else {
            panic!("a DX12 adapter on Linux");
        };
        assert_eq!(rsp::error::kind(&e), rsp::ErrorKind::Device, "{e:#}");
    }
}
