//! The CPU reference against the golden vectors (the cases in `tests/golden/`, and in the
//! `extra_*` tests the full-size ones of `$RSP_EXTRA_GOLDEN`; see
//! `tests/golden/README.md`), plus property tests of the individual rules (conservation,
//! adjointness, tie-breaking).
//!
//! Run in release: `cargo test --release --test gpu reference:: -- --nocapture` prints
//! the measured error of every compared tensor.

use crate::common;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use rsp::compare::{compare, Report, Tolerance};
use rsp::layers::{AvgPool2d, ConvGeometry, MaxPool2d};
use rsp::models::weights::TensorFile;
use rsp::reference::{model as refmodel, ops, rsp as rules};
use rsp::{Init, Model, Tensor};

/// Loads a golden case from `tests/golden/`. A missing or unreadable file is a failure,
/// never a skip.
fn load_case(case: &str) -> (TensorFile, Model) {
    load_path(
        case,
        &common::golden_dir().join(format!("{case}.safetensors")),
    )
}

fn load_path(case: &str, path: &Path) -> (TensorFile, Model) {
    let file = TensorFile::read(path).unwrap_or_else(|e| {
        panic!(
            "golden file {} is missing or unreadable ({e:#})",
            path.display()
        )
    });
    let model = Model::from_tensors(&file).unwrap_or_else(|e| {
        panic!(
            "cannot build the {case} model from {}: {e:#}",
            path.display()
        )
    });
    (file, model)
}

fn golden<'a>(file: &'a TensorFile, name: &str) -> &'a Tensor {
    file.get(name)
        .unwrap_or_else(|e| panic!("golden tensor missing: {e:#}"))
}

fn golden_ints(file: &TensorFile, name: &str) -> Vec<usize> {
    file.get_int(name)
        .unwrap_or_else(|e| panic!("golden tensor missing: {e:#}"))
        .iter()
        .map(|&v| v as usize)
        .collect()
}

/// Collects comparison results and fails once at the end with every mismatch.
struct Checker {
    case: String,
    reports: Vec<Report>,
    failures: Vec<String>,
}

impl Checker {
    fn new(case: &str) -> Self {
        Checker {
            case: case.to_string(),
            reports: Vec::new(),
            failures: Vec::new(),
        }
    }

    fn check(&mut self, name: &str, actual: &Tensor, reference: &Tensor, tol: Tolerance) {
        match compare(&format!("{}/{name}", self.case), actual, reference, tol) {
            Ok(rep) => {
                println!("ok   {rep}");
                self.reports.push(rep);
            }
            Err(msg) => {
                println!("FAIL {msg}");
                self.failures.push(msg);
            }
        }
    }

    fn fail(&mut self, msg: String) {
        println!("FAIL {msg}");
        self.failures.push(msg);
    }

    fn finish(self) {
        if let Some(w) = self
            .reports
            .iter()
            .max_by(|a, b| a.rel_max_err.total_cmp(&b.rel_max_err))
        {
            println!(
                "{}: {} tensors match; worst rel_max {:.3e} ({})",
                self.case,
                self.reports.len(),
                w.rel_max_err,
                w.name
            );
        }
        assert!(
            self.failures.is_empty(),
            "{}: {} golden comparison(s) failed:\n{}",
            self.case,
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

fn golden_case(case: &str) {
    let (file, model) = load_case(case);
    check_case(case, &file, &model);
}

fn check_case(case: &str, file: &TensorFile, model: &Model) {
    let mut ck = Checker::new(case);
    let input = golden(file, "input");
    let target = golden_ints(file, "target")[0];
    let classes = golden_ints(file, "comparative.classes");

    // Forward pass, explanation-layer activation, predictions.
    let trace = refmodel::forward(model, input);
    ck.check(
        "logits",
        &trace.logits,
        golden(file, "logits"),
        Tolerance::GOLDEN,
    );
    ck.check(
        "gradcam.act",
        &trace.act,
        golden(file, "gradcam.act"),
        Tolerance::GOLDEN,
    );
    let top = ops::top_k(&trace.logits.data, classes.len());
    if top != classes {
        ck.fail(format!(
            "{case}: top-{} classes {top:?}, golden {classes:?}",
            classes.len()
        ));
    }

    // Grad-CAM weights: spatial means of the head gradient per channel.
    for (j, &c) in classes.iter().enumerate() {
        let g = refmodel::head_gradient(model, &trace, &[c]);
        let gold = golden(file, &format!("gradcam.grad.top{j}"));
        ck.check(
            &format!("mean(gradcam.grad.top{j})"),
            &refmodel::channel_means(&g),
            &refmodel::channel_means(gold),
            Tolerance::GOLDEN,
        );
    }

    // RSP from the Grad-CAM initialisation, every module recorded.
    let ex = refmodel::explain(model, input, None, &Init::GradCam, true)
        .unwrap_or_else(|e| panic!("{case}: explain failed: {e:#}"));
    if ex.target != vec![target] {
        ck.fail(format!("{case}: target {:?}, golden {target}", ex.target));
    }
    ck.check(
        "init.gradcam",
        &ex.init,
        golden(file, "init.gradcam"),
        Tolerance::GOLDEN,
    );
    let prefix = "rsp.gradcam.rel.";
    let golden_names: BTreeSet<&str> = file
        .floats
        .keys()
        .filter_map(|k| k.strip_prefix(prefix))
        .collect();
    assert!(
        !golden_names.is_empty(),
        "{case}: no {prefix}* tensors in the golden file"
    );
    let ours: BTreeSet<&str> = ex.layers.iter().map(|(n, _)| n.as_str()).collect();
    for (name, rel) in &ex.layers {
        match file.floats.get(&format!("{prefix}{name}")) {
            Some(gold) => ck.check(&format!("{prefix}{name}"), rel, gold, Tolerance::GOLDEN),
            None => ck.fail(format!(
                "{case}: recorded layer '{name}' has no golden {prefix}{name}"
            )),
        }
    }
    for name in golden_names.difference(&ours) {
        ck.fail(format!(
            "{case}: golden {prefix}{name} was not recorded by explain"
        ));
    }
    if ours.len() != ex.layers.len() {
        ck.fail(format!("{case}: a layer name was recorded twice"));
    }
    ck.check(
        "rsp.gradcam.out",
        &ex.relevance,
        golden(file, "rsp.gradcam.out"),
        Tolerance::GOLDEN,
    );

    // RSP from the comparative initialisation (K = 3).
    let exc = refmodel::explain(model, input, None, &Init::Comparative { k: 3 }, false)
        .unwrap_or_else(|e| panic!("{case}: comparative explain failed: {e:#}"));
    ck.check(
        "init.comparative",
        &exc.init,
        golden(file, "init.comparative"),
        Tolerance::GOLDEN,
    );
    ck.check(
        "rsp.comparative.out",
        &exc.relevance,
        golden(file, "rsp.comparative.out"),
        Tolerance::GOLDEN,
    );
    ck.finish();
}

#[test]
fn vgg_tiny_matches_golden() {
    golden_case("vgg_tiny");
}

#[test]
fn resnet_bottleneck_narrow_matches_golden() {
    golden_case("resnet_bottleneck_narrow");
}

#[test]
fn resnet_basic_narrow_matches_golden() {
    golden_case("resnet_basic_narrow");
}

/// Every case of `tests/golden/` has a test above (a new file needs one).
#[test]
fn every_in_repo_golden_file_is_checked() {
    let mut found: Vec<String> = std::fs::read_dir(common::golden_dir())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".safetensors").map(String::from)
        })
        .collect();
    found.sort();
    let mut want: Vec<String> = common::GOLDEN_CASES.map(String::from).to_vec();
    want.sort();
    assert_eq!(
        found, want,
        "tests/golden/*.safetensors vs common::GOLDEN_CASES"
    );
}

/// The full-size cases of `$RSP_EXTRA_GOLDEN` (not in the repository).
#[test]
#[ignore = "needs $RSP_EXTRA_GOLDEN (the full-size golden files); .ci/run runs it"]
fn extra_full_size_cases_match_golden() {
    let test = "extra_full_size_cases_match_golden";
    for case in common::EXTRA_GOLDEN_CASES {
        let path = common::extra_golden_path(case, test);
        let (file, model) = load_path(case, &path);
        check_case(case, &file, &model);
        given_init_case(case, &file, &model);
    }
}

/// The directory of `$RSP_EXTRA_GOLDEN` also holds the VGG case, which the repository
/// ships a copy of: the copy must be the same bytes.
#[test]
#[ignore = "needs $RSP_EXTRA_GOLDEN (the full-size golden files); .ci/run runs it"]
fn extra_vgg_tiny_is_the_in_repo_copy() {
    let test = "extra_vgg_tiny_is_the_in_repo_copy";
    let dir = common::extra_golden_dir(test);
    for name in ["vgg_tiny.safetensors", "vgg_tiny.json"] {
        let theirs = dir.join(name);
        let ours = common::golden_dir().join(name);
        let a = std::fs::read(&theirs)
            .unwrap_or_else(|e| panic!("{test}: cannot read {}: {e}", theirs.display()));
        let b = std::fs::read(&ours).unwrap();
        assert!(
            a == b,
            "{} differs from {}",
            ours.display(),
            theirs.display()
        );
    }
}

fn given_init_case(case: &str, file: &TensorFile, model: &Model) {
    let mut ck = Checker::new(&format!("given-init/{case}"));
    let init = golden(file, "init.gradcam").clone();
    let ex = refmodel::explain(
        model,
        golden(file, "input"),
        None,
        &Init::Given(init),
        false,
    )
    .unwrap_or_else(|e| panic!("{case}: explain failed: {e:#}"));
    ck.check(
        "rsp.gradcam.out",
        &ex.relevance,
        golden(file, "rsp.gradcam.out"),
        Tolerance::GOLDEN,
    );
    ck.finish();
}

#[test]
fn given_init_reproduces_golden_output() {
    for case in common::GOLDEN_CASES {
        let (file, model) = load_case(case);
        given_init_case(case, &file, &model);
    }
}

// ---------------------------------------------------------------------------------------
// Rule properties on random data.

fn random(rng: &mut StdRng, shape: &[usize], zero_frac: f64, lo: f32, hi: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|_| {
            if rng.random_bool(zero_frac) {
                0.0
            } else {
                rng.random_range(lo..hi)
            }
        })
        .collect();
    Tensor::new(shape.to_vec(), data)
}

fn sum64(t: &Tensor) -> f64 {
    t.sum_f64()
}

fn abs_sum64(t: &Tensor) -> f64 {
    t.data.iter().map(|&v| (v as f64).abs()).sum()
}

/// Σ R_in must equal Σ R up to float32 rounding: we allow 1e-5 of the total mass moved.
fn assert_conserved(what: &str, r: &Tensor, r_in: &Tensor) {
    let (s, s_in) = (sum64(r), sum64(r_in));
    let scale = abs_sum64(r) + abs_sum64(r_in);
    let err = (s - s_in).abs() / scale;
    println!("{what}: sum R {s:.9}, sum R_in {s_in:.9}, |diff|/mass {err:.2e}");
    assert!(
        err <= 1e-5,
        "{what}: relevance not conserved: sum R = {s}, sum R_in = {s_in} (|diff|/mass {err:.2e})"
    );
    assert!(
        r_in.data.iter().all(|v| v.is_finite()),
        "{what}: non-finite relevance"
    );
}

#[test]
fn conv_rule_conserves_relevance() {
    let mut rng = StdRng::seed_from_u64(0x5EED);
    // (c_in, c_out, h, w, k, stride, padding, batch)
    let cases = [
        (5, 6, 9, 7, 3, 1, 1, 2), // 3×3 stride 1, odd sizes
        (4, 7, 9, 7, 3, 2, 1, 1), // 3×3 stride 2, odd sizes
        (3, 5, 8, 6, 3, 2, 0, 1), // stride 2 without padding: last row/col uncovered
        (8, 5, 5, 3, 1, 1, 0, 2), // 1×1
        (8, 6, 7, 5, 1, 2, 0, 1), // 1×1 stride 2 (downsample), odd sizes
    ];
    for (ci, co, h, w, k, s, p, n) in cases {
        let geom = ConvGeometry {
            c_out: co,
            c_in: ci,
            kh: k,
            kw: k,
            stride: s,
            padding: p,
        };
        let (ho, wo) = geom.out_hw(h, w);
        // Post-ReLU-like input (20 % exact zeros) and signed relevance with exact zeros.
        let x = random(&mut rng, &[n, ci, h, w], 0.2, 0.0, 2.0);
        let r = random(&mut rng, &[n, co, ho, wo], 0.1, -1.0, 1.0);
        let r_in = rules::conv_rule(&x, &r, &geom);
        assert_eq!(r_in.shape, x.shape);
        for i in 0..n {
            let what = format!("conv_rule {k}x{k} s{s} p{p} {ci}->{co} {h}x{w} image {i}");
            assert_conserved(&what, &r.index0(i), &r_in.index0(i));
        }
        // Inputs that are exactly zero carry no relevance.
        for (xv, rv) in x.data.iter().zip(&r_in.data) {
            if *xv == 0.0 {
                assert_eq!(*rv, 0.0, "relevance on a zero input");
            }
        }
    }
}

#[test]
fn first_conv_rule_conserves_relevance() {
    let mut rng = StdRng::seed_from_u64(11);
    let weight = random(&mut rng, &[4, 3, 3, 3], 0.0, -1.0, 1.0);
    let conv = rsp::layers::Conv2d {
        weight,
        bias: Some(vec![0.3, -0.2, 0.1, 0.0]),
        stride: 2,
        padding: 1,
    };
    let x = random(&mut rng, &[2, 3, 9, 8], 0.0, -2.0, 2.5);
    let r = random(&mut rng, &[2, 4, 5, 4], 0.0, -1.0, 1.0);
    let r_in = rsp::reference::rules::zbox_first_conv(&x, &r, &conv);
    for i in 0..2 {
        assert_conserved(
            &format!("first_conv_rule image {i}"),
            &r.index0(i),
            &r_in.index0(i),
        );
    }
}

#[test]
fn maxpool_and_residual_rules_conserve_relevance() {
    let mut rng = StdRng::seed_from_u64(3);
    for (pool, h, w) in [
        (
            MaxPool2d {
                kernel: 3,
                stride: 2,
                padding: 1,
                ceil_mode: false,
            },
            7,
            9,
        ),
        (
            MaxPool2d {
                kernel: 2,
                stride: 2,
                padding: 0,
                ceil_mode: false,
            },
            5,
            5,
        ),
    ] {
        let x = random(&mut rng, &[2, 3, h, w], 0.3, 0.0, 1.0);
        let (ho, wo) = pool.out_hw(h, w);
        let r = random(&mut rng, &[2, 3, ho, wo], 0.0, -1.0, 1.0);
        let r_in = rules::maxpool_rule(&x, &r, &pool);
        assert_eq!(r_in.shape, x.shape);
        assert_conserved(&format!("maxpool {pool:?} {h}x{w}"), &r, &r_in);
    }
    let a = random(&mut rng, &[2, 4, 5, 3], 0.2, -1.0, 1.0);
    let b = random(&mut rng, &[2, 4, 5, 3], 0.2, -1.0, 1.0);
    let r = random(&mut rng, &[2, 4, 5, 3], 0.0, -1.0, 1.0);
    let (ra, rb) = rules::residual_rule(&a, &b, &r);
    assert_conserved("residual", &r, &ops::add(&ra, &rb));
    // Both branches non-positive: the 1e-9s split R evenly.
    let z = Tensor::zeros(&[1, 1, 1, 1]);
    let one = Tensor::new(vec![1, 1, 1, 1], vec![1.0]);
    let (ra, rb) = rules::residual_rule(&z, &ops::relu(&z), &one);
    assert_eq!((ra.data[0], rb.data[0]), (0.5, 0.5));
}

#[test]
fn max_pool_ties_go_to_first_position_and_padding_never_wins() {
    let pool = MaxPool2d {
        kernel: 2,
        stride: 2,
        padding: 0,
        ceil_mode: false,
    };
    // Window (row-major): [1, 3, 3, 0] -> first 3 (flat 1); [2, 2, 2, 2] -> flat 2;
    // [0, 0, 0, 0] -> flat 8 (the 1e-9 shift keeps the tie).
    let x = Tensor::new(
        vec![1, 1, 4, 4],
        vec![
            1.0, 3.0, 2.0, 2.0, //
            3.0, 0.0, 2.0, 2.0, //
            0.0, 0.0, -1.0, 5.0, //
            0.0, 0.0, 5.0, 5.0,
        ],
    );
    let y = ops::max_pool2d(&x, &pool);
    assert_eq!(y.data, vec![3.0, 2.0, 0.0, 5.0]);
    let r = Tensor::new(vec![1, 1, 2, 2], vec![10.0, 20.0, 30.0, 40.0]);
    for eps in [0.0, rsp::explain::RSP_EPS] {
        let routed = ops::max_pool2d_route(&x, &r, &pool, eps);
        let mut want = vec![0.0; 16];
        want[1] = 10.0;
        want[2] = 20.0;
        want[8] = 30.0;
        want[11] = 40.0;
        assert_eq!(routed.data, want, "eps {eps}");
    }
    // Padding (-inf) never wins, even over negative values; overlapping windows add up.
    let pool = MaxPool2d {
        kernel: 3,
        stride: 2,
        padding: 1,
        ceil_mode: false,
    };
    let x = Tensor::new(vec![1, 1, 3, 3], vec![-5.0; 9]);
    let y = ops::max_pool2d(&x, &pool);
    assert_eq!(y.data, vec![-5.0; 4]);
    let r = Tensor::new(vec![1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]);
    let routed = ops::max_pool2d_route(&x, &r, &pool, 0.0);
    // Every window's first in-bounds position is (0,0), (0,1), (1,0) or (1,1).
    assert_eq!(
        routed.data,
        vec![1.0, 2.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0]
    );
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.numel(), b.numel());
    a.data
        .iter()
        .zip(&b.data)
        .map(|(&x, &y)| x as f64 * y as f64)
        .sum()
}

#[test]
fn conv_adjoints_and_pool_backward_are_consistent() {
    let mut rng = StdRng::seed_from_u64(99);
    for (ci, co, h, w, k, s, p) in [
        (3, 4, 7, 6, 3, 2, 1),
        (2, 3, 5, 5, 1, 1, 0),
        (3, 2, 8, 9, 7, 2, 3),
    ] {
        let x = random(&mut rng, &[2, ci, h, w], 0.0, -1.0, 1.0);
        let wt = random(&mut rng, &[co, ci, k, k], 0.0, -1.0, 1.0);
        let y = ops::conv2d(&x, &wt, None, s, p);
        let g = random(&mut rng, &y.shape, 0.0, -1.0, 1.0);
        // <conv(x, w), g> = <x, dgrad(g, w)> = Σ_n <w, wgrad(x, g)[n]>
        let lhs = dot(&y, &g);
        let dx = ops::conv2d_dgrad(&g, &wt, s, p, (h, w));
        let dw = ops::conv2d_wgrad(&x, &g, k, k, s, p);
        assert_eq!(dw.shape, vec![2, co, ci, k, k]);
        let rhs_x = dot(&x, &dx);
        let rhs_w = dot(&wt, &dw.index0(0)) + dot(&wt, &dw.index0(1));
        let tol = 1e-4 * lhs.abs().max(1.0);
        assert!((lhs - rhs_x).abs() < tol, "dgrad adjoint: {lhs} vs {rhs_x}");
        assert!((lhs - rhs_w).abs() < tol, "wgrad adjoint: {lhs} vs {rhs_w}");
        // A single-element brute-force check of conv2d with a bias.
        let bias: Vec<f32> = (0..co).map(|o| o as f32 * 0.5).collect();
        let yb = ops::conv2d(&x, &wt, Some(&bias), s, p);
        let (ho, wo) = (y.shape[2], y.shape[3]);
        let (img, o, oy, ox) = (1, co - 1, ho - 1, wo / 2);
        let mut want = bias[o] as f64;
        for i in 0..ci {
            for u in 0..k {
                for v in 0..k {
                    let (iy, ix) = (
                        (oy * s + u) as isize - p as isize,
                        (ox * s + v) as isize - p as isize,
                    );
                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                        want += wt.data[((o * ci + i) * k + u) * k + v] as f64
                            * x.data[((img * ci + i) * h + iy as usize) * w + ix as usize] as f64;
                    }
                }
            }
        }
        let got = yb.data[((img * co + o) * ho + oy) * wo + ox] as f64;
        assert!((got - want).abs() < 1e-4, "conv2d: {got} vs {want}");
    }
    // Adaptive average pool with overlapping PyTorch bins (5 -> 3: [0,2), [1,4), [3,5)).
    let x = random(&mut rng, &[1, 2, 5, 7], 0.0, -1.0, 1.0);
    let pool = AvgPool2d::Adaptive { out: (3, 2) };
    let y = ops::avg_pool2d(&x, &pool);
    // Output (1, 1) averages rows 1..4 and columns 3..7 (7 -> 2: [0,4), [3,7)).
    let mut want = 0.0f32;
    for iy in 1..4 {
        for ix in 3..7 {
            want += x.data[iy * 7 + ix];
        }
    }
    want /= 12.0;
    assert!(
        (y.data[3] - want).abs() < 1e-6,
        "adaptive pool bin: {} vs {want}",
        y.data[3]
    );
    let g = random(&mut rng, &y.shape, 0.0, -1.0, 1.0);
    let gx = ops::avg_pool2d_backward(&g, &pool, (5, 7));
    assert!(
        (dot(&y, &g) - dot(&x, &gx)).abs() < 1e-5,
        "adaptive pool adjoint"
    );
}

#[test]
fn comparative_classes_put_the_target_first() {
    let logits = [0.1, 0.9, 0.5, 0.9, -1.0];
    assert_eq!(ops::top_k(&logits, 3), vec![1, 3, 2]);
    assert_eq!(refmodel::comparative_classes(&logits, 1, 3), vec![1, 3, 2]);
    assert_eq!(refmodel::comparative_classes(&logits, 3, 3), vec![3, 1, 2]);
    // Target outside the top-K: target + the K−1 best others.
    assert_eq!(refmodel::comparative_classes(&logits, 4, 3), vec![4, 1, 3]);
}

#[test]
fn batch_of_two_explains_each_image_independently() {
    let (file, model) = load_case("vgg_tiny");
    let x = golden(&file, "input");
    let flipped = {
        let mut t = x.clone();
        let (c, h, w) = (3, x.shape[2], x.shape[3]);
        for ch in 0..c {
            for y in 0..h {
                let row = &mut t.data[(ch * h + y) * w..(ch * h + y + 1) * w];
                row.reverse();
            }
        }
        t
    };
    let batch = Tensor::stack(&[x.index0(0), flipped.index0(0)]);
    for init in [Init::GradCam, Init::Comparative { k: 3 }] {
        let both = refmodel::explain(&model, &batch, None, &init, false).unwrap();
        for (i, single) in [x, &flipped].into_iter().enumerate() {
            let one = refmodel::explain(&model, single, None, &init, false).unwrap();
            assert_eq!(both.target[i], one.target[0]);
            assert_eq!(
                both.relevance.index0(i).data,
                one.relevance.index0(0).data,
                "{init:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Architectures without a golden file: VGG with batch norm, ResNet with BasicBlocks.

fn uniform(rng: &mut StdRng, shape: &[usize], lo: f32, hi: f32) -> Tensor {
    random(rng, shape, 0.0, lo, hi)
}

/// Kaiming-uniform weights for a conv/linear with `fan_in` inputs.
fn kaiming(rng: &mut StdRng, shape: &[usize]) -> Tensor {
    let fan_in: usize = shape[1..].iter().product();
    let a = (6.0 / fan_in as f32).sqrt();
    uniform(rng, shape, -a, a)
}

fn push_bn(rng: &mut StdRng, w: &mut Vec<(String, Tensor)>, name: &str, c: usize) {
    w.push((format!("{name}.weight"), uniform(rng, &[c], 0.5, 1.5)));
    w.push((format!("{name}.bias"), uniform(rng, &[c], -0.2, 0.2)));
    w.push((
        format!("{name}.running_mean"),
        uniform(rng, &[c], -0.2, 0.2),
    ));
    w.push((format!("{name}.running_var"), uniform(rng, &[c], 0.5, 2.0)));
}

fn synthetic_model(tensors: Vec<(String, Tensor)>) -> Model {
    let file = TensorFile {
        path: PathBuf::from("synthetic.safetensors"),
        floats: tensors.into_iter().collect(),
        ints: Default::default(),
        metadata: Default::default(),
    };
    Model::from_tensors(&file).expect("synthetic model loads")
}

/// Runs both initialisations and checks names, shapes, finiteness and conservation.
fn smoke_explain(model: &Model, input: &Tensor, expected_names: &[String]) {
    for init in [Init::GradCam, Init::Comparative { k: 3 }] {
        let ex = refmodel::explain(model, input, None, &init, true).unwrap();
        assert_eq!(ex.relevance.shape, input.shape);
        let names: Vec<&str> = ex.layers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, expected_names, "{init:?}");
        for (name, r) in &ex.layers {
            assert!(r.data.iter().all(|v| v.is_finite()), "{name}: non-finite");
        }
        for i in 0..input.shape[0] {
            assert_conserved(
                &format!("{} {init:?} image {i}", model.describe()),
                &ex.init.index0(i),
                &ex.relevance.index0(i),
            );
        }
    }
}

#[test]
fn vgg_with_batch_norm_explains_and_conserves() {
    let mut rng = StdRng::seed_from_u64(21);
    let mut w = Vec::new();
    // make_layers([8, 'M', 16, 16, 'M'], batch_norm=True): conv bn relu pool conv bn relu
    // conv bn relu pool = features 0..10.
    for (idx, ci, co) in [(0, 3, 8), (4, 8, 16), (7, 16, 16)] {
        w.push((
            format!("features.{idx}.weight"),
            kaiming(&mut rng, &[co, ci, 3, 3]),
        ));
        w.push((
            format!("features.{idx}.bias"),
            uniform(&mut rng, &[co], -0.1, 0.1),
        ));
        push_bn(&mut rng, &mut w, &format!("features.{}", idx + 1), co);
    }
    for (idx, i, o) in [(0, 64, 32), (3, 32, 32), (6, 32, 10)] {
        w.push((
            format!("classifier.{idx}.weight"),
            kaiming(&mut rng, &[o, i]),
        ));
        w.push((
            format!("classifier.{idx}.bias"),
            uniform(&mut rng, &[o], -0.05, 0.05),
        ));
    }
    let model = synthetic_model(w);
    assert_eq!(rsp::models::vgg::explain_index(&model.graph), Some(9));
    let input = uniform(&mut rng, &[2, 3, 12, 12], -2.0, 2.5);
    let names: Vec<String> = (0..=9).rev().map(|i| format!("features.{i}")).collect();
    smoke_explain(&model, &input, &names);
}

#[test]
fn resnet_basic_block_explains_and_conserves() {
    let mut rng = StdRng::seed_from_u64(34);
    let mut w = Vec::new();
    w.push((
        "conv1.weight".to_string(),
        kaiming(&mut rng, &[16, 3, 7, 7]),
    ));
    push_bn(&mut rng, &mut w, "bn1", 16);
    // BasicBlock ResNet [2, 1, 1, 1], widths 16/32/32/32.
    let mut c_in = 16;
    let mut expected = Vec::new();
    for (s, (blocks, width)) in [(2, 16), (1, 32), (1, 32), (1, 32)].into_iter().enumerate() {
        let mut stage_names = Vec::new();
        for b in 0..blocks {
            let p = format!("layer{}.{b}", s + 1);
            let ci = if b == 0 { c_in } else { width };
            w.push((
                format!("{p}.conv1.weight"),
                kaiming(&mut rng, &[width, ci, 3, 3]),
            ));
            push_bn(&mut rng, &mut w, &format!("{p}.bn1"), width);
            w.push((
                format!("{p}.conv2.weight"),
                kaiming(&mut rng, &[width, width, 3, 3]),
            ));
            push_bn(&mut rng, &mut w, &format!("{p}.bn2"), width);
            let mut names = vec![
                format!("{p}.relu2"),
                format!("{p}.add.0"),
                format!("{p}.add.1"),
            ];
            // torchvision: stages 2-4 downsample in their first block.
            if b == 0 && s > 0 {
                w.push((
                    format!("{p}.downsample.0.weight"),
                    kaiming(&mut rng, &[width, ci, 1, 1]),
                ));
                push_bn(&mut rng, &mut w, &format!("{p}.downsample.1"), width);
                for n in ["downsample.1", "downsample.0", "downsample"] {
                    names.push(format!("{p}.{n}"));
                }
            }
            for n in ["bn2", "conv2", "relu1", "bn1", "conv1"] {
                names.push(format!("{p}.{n}"));
            }
            names.push(p);
            stage_names.push(names);
        }
        for names in stage_names.into_iter().rev() {
            expected.extend(names);
        }
        expected.push(format!("layer{}", s + 1));
        c_in = width;
    }
    // Stages are walked from layer4 down to layer1.
    let mut ordered = Vec::new();
    for s in (1..=4).rev() {
        let prefix = format!("layer{s}.");
        let stage = format!("layer{s}");
        ordered.extend(
            expected
                .iter()
                .filter(|n| n.starts_with(&prefix) || **n == stage)
                .cloned(),
        );
    }
    ordered.extend(["maxpool", "relu", "bn1", "conv1"].map(String::from));
    w.push(("fc.weight".to_string(), kaiming(&mut rng, &[7, 32])));
    w.push(("fc.bias".to_string(), uniform(&mut rng, &[7], -0.1, 0.1)));
    let model = synthetic_model(w);
    assert!(
        model.describe().contains("BasicBlock"),
        "{}",
        model.describe()
    );
    let input = uniform(&mut rng, &[1, 3, 32, 32], -2.0, 2.5);
    smoke_explain(&model, &input, &ordered);
}
