//! Kernel variants and the autotuner on the GPU: every exact GEMM variant, forced for
//! the whole explanation, gives the fallback's maps bit for bit and the golden maps
//! within the golden tolerance; Winograd, forced, holds the golden tolerance without
//! being bit-identical; the autotuner times each problem once, writes its cache and
//! reuses it; a corrupt or deleted cache only causes a re-tune; a deliberately wrong
//! variant is rejected by the correctness check and never chosen. The matrix-unit
//! (cooperative-matrix) variants, which lavapipe does not have, are forced where the
//! adapter has them and must hold the golden tolerance (split-fp32) or the f16 drift
//! bound. With `$RSP_EXTRA_GOLDEN`, the full-size Bottleneck case is checked the same
//! way, autotuned and forced.

use crate::common;
use std::path::Path;
use std::sync::Mutex;

use rsp::compare::{compare, Tolerance};
use rsp::explain::{explain, Method, Request};
use rsp::gpu::tune::Trial;
use rsp::gpu::{Autotune, ContextOptions, GpuContext, Precision};
use rsp::models::gpu::GpuModel;
use rsp::models::weights::TensorFile;
use rsp::ops::gemm::{GemmKernel, Offer};
use rsp::{Model, Tensor};

/// Forced variants also run with naga's runtime checks: one per skeleton (the subgroup
/// kernel runs the packing skeleton too).
const ONE_PER_SKELETON: [&str; 5] = [
    "tiled-64x16-unchecked",
    "large-128x128-k16",
    "direct-8x16",
    "subgroup-32x32",
    "dot-64",
];
/// Every variant of the registry but the test hook.
fn all_variants() -> Vec<GemmKernel> {
    GemmKernel::all()
        .filter(|k| k.offer != Offer::TestHook)
        .collect()
}

/// The matrix-unit variants, each with the precision it is offered in and the bound on
/// `‖map − map_fallback‖₂ / ‖map_fallback‖₂` it must hold besides (split-fp32 must
/// also hold the golden tolerance).
const MATRIX_UNIT_VARIANTS: [(&str, Precision, f64); 3] = [
    ("coop-128x64-split", Precision::F32, 1e-4),
    ("coop-128x128-f16", Precision::F16, 5e-2),
    ("coop-128x64-f16", Precision::F16, 5e-2),
];

/// RSP maps (Grad-CAM init) and an LRP-α1β0 map, which together run every GEMM kernel
/// in its main modes (forward, z⁺ forward, z^B, data gradient with pos(W), RSP
/// redistribution, weight gradients).
fn maps(ctx: &GpuContext, case: &str) -> Vec<Tensor> {
    maps_of(ctx, &common::golden(case))
}

fn maps_of(ctx: &GpuContext, f: &TensorFile) -> Vec<Tensor> {
    let model = Model::from_tensors(f).unwrap();
    let gm = GpuModel::upload(ctx, &model);
    let input = common::get(f, "input");
    let rsp = explain(ctx, &gm, &input, &Request::default()).unwrap();
    let lrp = explain(
        ctx,
        &gm,
        &input,
        &Request::method(Method::LrpAlphaBeta, None),
    )
    .unwrap();
    vec![rsp.relevance, lrp.relevance]
}

fn context(opts: ContextOptions) -> GpuContext {
    GpuContext::new(&opts).expect("GPU tests need a wgpu adapter")
}

fn assert_bit_identical(what: &str, a: &[Tensor], b: &[Tensor]) {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.shape, y.shape, "{what}: map {i} shape");
        let differ = x
            .data
            .iter()
            .zip(&y.data)
            .filter(|(p, q)| p.to_bits() != q.to_bits() && !(**p == 0.0 && **q == 0.0))
            .count();
        assert_eq!(differ, 0, "{what}: map {i} differs in {differ} elements");
    }
}

/// The fallback's maps of a golden case (the default context), computed once.
fn fallback_maps(case: &'static str) -> &'static [Tensor] {
    static MAPS: Mutex<Vec<(&str, &'static [Tensor])>> = Mutex::new(Vec::new());
    if let Some((_, m)) = MAPS.lock().unwrap().iter().find(|(c, _)| *c == case) {
        return m;
    }
    let m: &'static [Tensor] = Box::leak(maps(common::gpu(), case).into_boxed_slice());
    MAPS.lock().unwrap().push((case, m));
    m
}

/// `name` forced for whole explanations of the smallest golden case (RSP and LRP-α1β0
/// together run every GEMM mode) gives the fallback's maps bit for bit and the golden
/// map within tolerance; for one variant per skeleton, also with naga's runtime checks
/// compiled in (the kernels' own guards already keep every access in bounds, so nothing
/// may change). The convolution geometries of the ResNets (7×7 stride-2 stem, 1×1 and
/// stride-2 layers) meet every tiled and large-tile variant in ops.rs and rules.rs, and
/// every forced variant on the full-size Bottleneck ResNet in the extra test below
/// (which `.ci/run` runs).
fn forced_variant_gives_the_fallback_maps_and_golden_parity(name: &str) {
    let case = "vgg_tiny";
    let variant = GemmKernel::parse(name).unwrap();
    let ctx = common::gpu_forcing(name);
    if !variant.supported(ctx) {
        println!("{name}: not supported by this adapter");
        return;
    }
    let got = maps(ctx, case);
    assert_bit_identical(&format!("{case} {variant}"), &got, fallback_maps(case));
    compare(
        &format!("{case} {variant} rsp.gradcam.out"),
        &got[0],
        &common::get(&common::golden(case), "rsp.gradcam.out"),
        Tolerance::GOLDEN,
    )
    .unwrap();
    if ONE_PER_SKELETON.contains(&name) {
        let checked = context(ContextOptions {
            gemm_kernel: Some(variant.to_string()),
            checked_shaders: true,
            ..Default::default()
        });
        let got_checked = maps(&checked, case);
        assert_bit_identical(&format!("{case} {variant} checked"), &got_checked, &got);
    }
}

/// One test per variant forced for whole explanations, so the harness runs them side
/// by side: one unchecked tile and two large tiles (every tile shape is compared
/// kernel by kernel in ops.rs and rules.rs), direct kernels of both block heights at
/// the narrowest and widest lane counts, both subgroup kernels (where the adapter has
/// 8-wide subgroups) and the dot-product kernel (one output per invocation; the inexact
/// tree-sum kernel is forced in the extra golden test below, against the golden
/// tolerance).
macro_rules! forced_variant_tests {
    ($($test:ident: $name:literal,)*) => {
        /// Every variant the tests below force.
        const FORCED: &[&str] = &[$($name),*];
        $(
            #[test]
            fn $test() {
                forced_variant_gives_the_fallback_maps_and_golden_parity($name);
            }
        )*
    };
}

forced_variant_tests! {
    forced_tiled_64x16_unchecked: "tiled-64x16-unchecked",
    forced_large_128x128_k16: "large-128x128-k16",
    forced_large_64x128_k32: "large-64x128-k32",
    forced_direct_4x8: "direct-4x8",
    forced_direct_8x64: "direct-8x64",
    forced_direct_8x16: "direct-8x16",
    forced_subgroup_32x32: "subgroup-32x32",
    forced_subgroup_32x32_packb: "subgroup-32x32-packb",
    forced_dot_64: "dot-64",
}

#[test]
fn one_variant_per_skeleton_is_among_the_forced_ones() {
    for name in ONE_PER_SKELETON {
        assert!(FORCED.contains(&name), "{name}");
    }
}

/// The full-size Bottleneck case of `$RSP_EXTRA_GOLDEN` (not in the repository): the
/// autotuner's exact choices (timed afresh on this device) and each forced exact
/// variant give the fallback's maps bit for bit and the golden map within the golden
/// tolerance; with the inexact variants offered or forced (Winograd, split-fp32 where
/// the adapter has matrix units), the golden tolerance.
#[test]
#[ignore = "needs $RSP_EXTRA_GOLDEN (the full-size golden files); .ci/run runs it"]
fn extra_resnet_tiny_golden_parity_autotuned_and_forced() {
    let test = "extra_resnet_tiny_golden_parity_autotuned_and_forced";
    let f = common::extra_golden("resnet_tiny", test);
    let want = common::get(&f, "rsp.gradcam.out");
    let fallback = maps_of(common::gpu(), &f);
    let dir = tempfile::tempdir().unwrap();
    let tuned = context(ContextOptions {
        autotune: Autotune::Fresh,
        autotune_cache: Some(dir.path().join("autotune.json")),
        exact_kernels: true,
        ..Default::default()
    });
    let mut runs = vec![("autotuned".to_string(), maps_of(&tuned, &f))];
    // With the inexact variants the autotuner may choose Winograd or split-fp32
    // products: golden tolerance, not bit identity.
    let inexact = context(ContextOptions {
        autotune: Autotune::Fresh,
        autotune_cache: Some(dir.path().join("autotune-inexact.json")),
        ..Default::default()
    });
    let mut close = vec![("autotuned with inexact variants", maps_of(&inexact, &f))];
    let mut forced = vec!["winograd-2x2", "tree-256"];
    if inexact.matrix_units {
        forced.push("coop-128x64-split");
    }
    for name in forced {
        let ctx = context(ContextOptions {
            gemm_kernel: Some(name.to_string()),
            ..Default::default()
        });
        close.push((name, maps_of(&ctx, &f)));
    }
    for (what, got) in close {
        let l2 = rsp::compare::measure(what, &got[0], &fallback[0]);
        println!("resnet_tiny {what} vs fallback: {l2}");
        compare(
            &format!("resnet_tiny {what} rsp.gradcam.out"),
            &got[0],
            &want,
            Tolerance::GOLDEN,
        )
        .unwrap();
    }
    for name in FORCED {
        let ctx = context(ContextOptions {
            gemm_kernel: Some(name.to_string()),
            ..Default::default()
        });
        if GemmKernel::parse(name).unwrap().supported(&ctx) {
            runs.push((name.to_string(), maps_of(&ctx, &f)));
        }
    }
    for (what, got) in runs {
        assert_bit_identical(&format!("resnet_tiny {what}"), &got, &fallback);
        compare(
            &format!("resnet_tiny {what} rsp.gradcam.out"),
            &got[0],
            &want,
            Tolerance::GOLDEN,
        )
        .unwrap();
    }
}

/// Each matrix-unit variant forced for whole explanations on the in-repository cases
/// (and once with naga's runtime checks): within its bound of the fallback's maps,
/// and split-fp32 within the golden tolerance. On an adapter without cooperative
/// matrices (lavapipe) the variants are not supported, and forcing one builds no
/// cooperative-matrix module and gives the fallback's maps of its precision bit for bit.
#[test]
fn matrix_unit_variants_hold_their_tolerance_where_the_adapter_has_them() {
    if !common::gpu().adapter.matrix_f16_f32 {
        println!(
            "{}: no 16x16x16 f16->f32 cooperative matrices; checking that the matrix-unit \
             variants are never run",
            common::gpu().adapter.name
        );
        for (name, precision, _) in MATRIX_UNIT_VARIANTS {
            let ctx = context(ContextOptions {
                gemm_kernel: Some(name.to_string()),
                precision,
                ..Default::default()
            });
            assert!(
                !ctx.matrix_units,
                "{name}: matrix units on an adapter without them"
            );
            assert!(
                !GemmKernel::parse(name).unwrap().supported(&ctx),
                "{name}: supported on an adapter without cooperative matrices"
            );
            let got = maps(&ctx, "vgg_tiny");
            if let Some(m) = ctx
                .built_modules()
                .iter()
                .find(|s| s.shader.skeleton.needs_cooperative_matrix())
            {
                panic!("{name}: built {} without cooperative matrices", m.label());
            }
            let fallback = match precision {
                Precision::F32 => common::gpu(),
                Precision::F16 => common::gpu_f16(),
            };
            assert_bit_identical(
                &format!("vgg_tiny {name} forced without matrix units"),
                &got,
                &maps(fallback, "vgg_tiny"),
            );
        }
        return;
    }
    for case in ["vgg_tiny", "resnet_bottleneck_narrow"] {
        let fallback = maps(common::gpu(), case);
        let golden = common::golden(case);
        for (name, precision, bound) in MATRIX_UNIT_VARIANTS {
            for checked in [false, true] {
                if checked && case != "vgg_tiny" {
                    continue;
                }
                let ctx = context(ContextOptions {
                    gemm_kernel: Some(name.to_string()),
                    precision,
                    checked_shaders: checked,
                    ..Default::default()
                });
                assert!(
                    GemmKernel::parse(name).unwrap().supported(&ctx),
                    "{name}: the adapter reports matrix units but the variant is not offered"
                );
                let got = maps(&ctx, case);
                for (i, (g, f)) in got.iter().zip(&fallback).enumerate() {
                    let r = rsp::compare::measure(&format!("{case} {name} map {i}"), g, f);
                    println!("{r}");
                    assert!(r.rel_l2_err <= bound, "{r}");
                }
                if precision == Precision::F32 {
                    compare(
                        &format!("{case} {name} rsp.gradcam.out"),
                        &got[0],
                        &common::get(&golden, "rsp.gradcam.out"),
                        Tolerance::GOLDEN,
                    )
                    .unwrap();
                }
            }
        }
    }
}

/// Winograd forced for whole explanations (every 3×3 stride-1 forward convolution,
/// inference and RSP's relative contributions): golden tolerance on the in-repository
/// cases, and not bit-identical to the fallback (so it ran).
#[test]
fn winograd_explanations_hold_the_golden_tolerance() {
    let ctx = context(ContextOptions {
        gemm_kernel: Some("winograd-2x2".to_string()),
        ..Default::default()
    });
    for case in ["vgg_tiny", "resnet_basic_narrow"] {
        let golden = common::golden(case);
        let got = maps(&ctx, case);
        let fallback = maps(common::gpu(), case);
        let r = rsp::compare::measure(&format!("{case} winograd-2x2"), &got[0], &fallback[0]);
        println!("{r}");
        assert!(r.rel_max_err > 0.0, "{case}: Winograd did not run");
        compare(
            &format!("{case} winograd-2x2 rsp.gradcam.out"),
            &got[0],
            &common::get(&golden, "rsp.gradcam.out"),
            Tolerance::GOLDEN,
        )
        .unwrap();
    }
}

#[test]
fn variant_names_round_trip() {
    for v in all_variants() {
        assert_eq!(GemmKernel::parse(&v.to_string()), Some(v), "{v}");
    }
    for bad in [
        "tiled-48x64",
        "direct-3x8",
        "direct-8x7",
        "tiled-64x64-fast",
        "",
    ] {
        assert_eq!(GemmKernel::parse(bad), None, "{bad}");
    }
}

fn tuned(path: &Path, mode: Autotune, broken: bool) -> (GpuContext, Vec<Tensor>) {
    let ctx = context(ContextOptions {
        autotune: mode,
        autotune_cache: Some(path.to_path_buf()),
        offer_broken_variant: broken,
        // The exact variants only: these tests compare bits.
        exact_kernels: true,
        ..Default::default()
    });
    let m = maps(&ctx, "vgg_tiny");
    (ctx, m)
}

/// The logits of the smallest golden case on a context tuning with `mode` into `path`
/// (the exact variants only), or on the default context: the forward pass's problems
/// are enough to show what the tuner keeps and when it re-times (whole autotuned
/// explanations are compared in the test after this one).
fn tuned_logits(path: Option<&Path>, mode: Autotune) -> (Option<GpuContext>, Vec<Tensor>) {
    let f = common::golden("vgg_tiny");
    let model = Model::from_tensors(&f).unwrap();
    let input = common::get(&f, "input");
    let ctx = path.map(|path| {
        context(ContextOptions {
            autotune: mode,
            autotune_cache: Some(path.to_path_buf()),
            exact_kernels: true,
            ..Default::default()
        })
    });
    let on = ctx.as_ref().unwrap_or(common::gpu());
    let logits = GpuModel::upload(on, &model).predict(on, &input).unwrap();
    (ctx, vec![logits])
}

#[test]
fn autotune_cache_is_written_once_reused_and_rebuilt_when_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("autotune.json");
    let (_, reference) = tuned_logits(None, Autotune::Off);
    let tune = |path: &Path, mode| {
        let (ctx, logits) = tuned_logits(Some(path), mode);
        (ctx.unwrap(), logits)
    };

    let (first, m1) = tune(&path, Autotune::On);
    let tuned_keys = first.tuner.measured();
    assert!(!tuned_keys.is_empty(), "nothing was tuned");
    assert!(path.exists(), "cache file not written");
    assert_bit_identical("autotuned", &m1, &reference);
    let written = std::fs::read_to_string(&path).unwrap();

    // Same cache: nothing is timed again, same choices, same maps.
    let (second, m2) = tune(&path, Autotune::On);
    assert!(
        second.tuner.measured().is_empty(),
        "re-timed {:?}",
        second.tuner.measured()
    );
    assert_bit_identical("second run", &m2, &m1);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), written);

    // A corrupt file, a missing file: tuned again, and the file is rewritten.
    for damage in ["corrupt", "deleted"] {
        if damage == "corrupt" {
            std::fs::write(&path, "{\"stamp\": 12, trailing").unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
        let (again, m3) = tune(&path, Autotune::On);
        assert_eq!(again.tuner.measured().len(), tuned_keys.len(), "{damage}");
        assert_bit_identical(damage, &m3, &reference);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"choices\""), "{damage}: not rewritten");
    }

    // Fresh re-times everything even with a good file.
    let (fresh, _) = tune(&path, Autotune::Fresh);
    assert_eq!(fresh.tuner.measured().len(), tuned_keys.len());
}

#[test]
fn a_wrong_variant_is_rejected_and_never_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("autotune.json");
    let (ctx, m) = tuned(&path, Autotune::Fresh, true);
    assert_bit_identical(
        "with a broken candidate",
        &m,
        &maps(common::gpu(), "vgg_tiny"),
    );
    let used = ctx.tuner.used();
    assert!(!used.is_empty());
    let mut rejected = 0;
    for (key, choice) in &used {
        let trial = choice
            .trials
            .get("broken-for-tests")
            .unwrap_or_else(|| panic!("{key}: broken variant not offered"));
        if let Trial::Rejected(_) = trial {
            rejected += 1;
        }
        // Whatever was chosen passed the check.
        assert!(
            matches!(choice.trials.get(&choice.variant), Some(Trial::Timed(_))),
            "{key}: chose {} which was not timed",
            choice.variant
        );
        if choice.variant == "broken-for-tests" {
            // Only possible where its half grid still covers every column.
            assert!(matches!(trial, Trial::Timed(_)));
        }
    }
    assert!(rejected > 0, "the broken variant was never caught");
}

/// Tuning keys anchor a problem's sizes to powers of two: after the golden VGG is tuned
/// on its 32×32 input, the same model on 28×28 and 26×26 inputs (other pixel counts at
/// every layer, most in the same power-of-two bracket) measures only the problems whose
/// bracket changed, not every shape afresh.
#[test]
fn similar_shapes_share_tuned_choices() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("autotune.json");
    let f = common::golden("vgg_tiny");
    let model = Model::from_tensors(&f).unwrap();
    let run = |side: usize| {
        let ctx = context(ContextOptions {
            autotune: Autotune::On,
            autotune_cache: Some(path.clone()),
            exact_kernels: true,
            ..Default::default()
        });
        let gm = GpuModel::upload(&ctx, &model);
        let input = common::random(&[1, 3, side, side], 7);
        explain(&ctx, &gm, &input, &Request::default()).unwrap();
        (ctx.tuner.measured().len(), ctx.tuner.used().len())
    };
    let (first, _) = run(32);
    let (second, used) = run(28);
    let (third, _) = run(26);
    println!("measured: 32 px {first}, then 28 px {second} of {used} looked up, 26 px {third}");
    assert!(first > 0);
    assert!(
        second < used,
        "28 px measured all {used} of its problems again"
    );
    assert_eq!(third, 0, "26 px falls in the brackets 28 px measured");
}
