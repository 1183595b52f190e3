//! ONNX models (`src/models/onnx/`): the fixtures of `tests/onnx/` (tiny random-weight
//! models of each family, exported with both exporters of torch.onnx by
//! `tools/export_onnx.py`) against PyTorch's logits and input gradient, on the GPU and
//! in the CPU oracle; the golden cases' models exported to ONNX against the golden maps
//! and, bit for bit, against the same models read from safetensors; the default
//! explanation layer; relevance conservation per layer on the concatenation families;
//! and the models rsp refuses.

use std::path::{Path, PathBuf};

use crate::common;
use crate::support::sum64;
use rsp::compare::{compare, Tolerance};
use rsp::explain::{explain, Method, Request};
use rsp::models::gpu::GpuModel;
use rsp::models::graph::Layer;
use rsp::models::weights::TensorFile;
use rsp::reference::{baselines as refb, model as refmodel, walk};
use rsp::{Init, Model, Tensor};

const FAMILIES: [&str; 7] = [
    "vgg_bn",
    "resnet",
    "densenet",
    "densenet_fresh",
    "inception",
    "squeezenet",
    "alexnet",
];

/// The exports of `family`: both exporters, but only the legacy one for the freshly
/// initialised DenseNet (its equal batch-norm tensors stored once, copied by Identity
/// nodes; the dynamo exporter folds batch norm away).
fn exporters(family: &str) -> &'static [&'static str] {
    if family.ends_with("_fresh") {
        &["legacy"]
    } else {
        &["legacy", "dynamo"]
    }
}

fn onnx_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx")
}

fn expected(family: &str) -> TensorFile {
    TensorFile::read(&onnx_dir().join(format!("{family}.expected.safetensors"))).unwrap()
}

fn load(path: &Path) -> Model {
    Model::from_file(path).unwrap_or_else(|e| panic!("{} does not load: {e:#}", path.display()))
}

fn fixture(family: &str, exporter: &str) -> Model {
    load(&onnx_dir().join(format!("{family}.{exporter}.onnx")))
}

/// `max |a − b| / max |b|`.
fn rel_max(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape, b.shape);
    let diff = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| (x - y).abs() as f64)
        .fold(0.0, f64::max);
    let scale = b.data.iter().map(|y| y.abs() as f64).fold(0.0, f64::max);
    diff / scale.max(f64::MIN_POSITIVE)
}

/// `‖a − b‖₂ / ‖b‖₂`.
fn rel_l2(a: &Tensor, b: &Tensor) -> f64 {
    let d: f64 = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum();
    let n: f64 = b.data.iter().map(|y| (*y as f64).powi(2)).sum();
    (d / n).sqrt()
}

#[test]
fn fixtures_logits_match_pytorch_on_gpu_and_cpu() {
    let ctx = common::gpu();
    let mut report = Vec::new();
    for family in FAMILIES {
        let e = expected(family);
        let input = common::get(&e, "input");
        let want = common::get(&e, "logits");
        for &exporter in exporters(family) {
            let model = fixture(family, exporter);
            let gpu = GpuModel::upload(ctx, &model).predict(ctx, &input).unwrap();
            let cpu = walk::forward(&model, &input).logits;
            let (eg, ec) = (rel_max(&gpu, &want), rel_max(&cpu, &want));
            println!("{family}.{exporter}: logits vs PyTorch GPU {eg:.2e}, CPU {ec:.2e}");
            if eg > 1e-5 || ec > 1e-5 {
                report.push(format!("{family}.{exporter}: GPU {eg:.2e}, CPU {ec:.2e}"));
            }
        }
    }
    assert!(
        report.is_empty(),
        "logits off PyTorch's by more than 1e-5:\n{}",
        report.join("\n")
    );
}

#[test]
fn fixtures_gradient_matches_pytorch() {
    let ctx = common::gpu();
    let mut report = Vec::new();
    for family in FAMILIES {
        let e = expected(family);
        let input = common::get(&e, "input");
        let want = common::get(&e, "grad");
        let target = e.get_int("target").unwrap()[0] as usize;
        for &exporter in exporters(family) {
            let model = fixture(family, exporter);
            let gm = GpuModel::upload(ctx, &model);
            let req = Request::method(Method::Gradient, Some(vec![target]));
            let gpu = explain(ctx, &gm, &input, &req).unwrap().relevance;
            let cpu = refb::explain_method(&model, &input, Method::Gradient, Some(&[target]))
                .unwrap()
                .relevance;
            let (eg, ec) = (rel_l2(&gpu, &want), rel_l2(&cpu, &want));
            println!("{family}.{exporter}: gradient vs autograd rel L2 GPU {eg:.2e}, CPU {ec:.2e}");
            if eg > 1e-5 || ec > 1e-5 {
                report.push(format!("{family}.{exporter}: GPU {eg:.2e}, CPU {ec:.2e}"));
            }
        }
    }
    assert!(
        report.is_empty(),
        "gradient off autograd's:\n{}",
        report.join("\n")
    );
}

/// The golden cases' models, exported with batch norm kept (`tests/golden/*.onnx`, whose
/// weights are external data inside the golden safetensors file): the golden logits,
/// initial relevance and maps through `--weights x.onnx`, and the same maps bit for bit
/// as the model read from safetensors.
#[test]
fn golden_models_through_onnx_reproduce_the_golden_maps() {
    let ctx = common::gpu();
    let mut failures = Vec::new();
    for case in common::GOLDEN_CASES {
        let f = common::golden(case);
        let onnx = load(&common::golden_dir().join(format!("{case}.onnx")));
        let st = Model::from_tensors(&f).unwrap();
        let input = common::get(&f, "input");
        let go = GpuModel::upload(ctx, &onnx);
        let gs = GpuModel::upload(ctx, &st);
        for (init, key) in [
            (Init::GradCam, "gradcam"),
            (Init::Comparative { k: 3 }, "comparative"),
        ] {
            let req = Request {
                init: init.clone(),
                targets: None,
                record_layers: false,
                ..Request::default()
            };
            let a = explain(ctx, &go, &input, &req).unwrap();
            let b = explain(ctx, &gs, &input, &req).unwrap();
            let cpu = refmodel::explain(&onnx, &input, None, &init, false).unwrap();
            for (what, got, want) in [
                ("logits", &a.logits, common::get(&f, "logits")),
                (
                    &format!("init.{key}") as &str,
                    &a.init,
                    common::get(&f, &format!("init.{key}")),
                ),
                (
                    "map",
                    &a.relevance,
                    common::get(&f, &format!("rsp.{key}.out")),
                ),
                (
                    "cpu map",
                    &cpu.relevance,
                    common::get(&f, &format!("rsp.{key}.out")),
                ),
            ] {
                if let Err(e) = compare(
                    &format!("{case} {key} {what}"),
                    got,
                    &want,
                    Tolerance::GOLDEN,
                ) {
                    failures.push(e);
                }
            }
            for (what, x, y) in [
                ("logits", &a.logits, &b.logits),
                ("init", &a.init, &b.init),
                ("map", &a.relevance, &b.relevance),
            ] {
                if x.data
                    .iter()
                    .map(|v| v.to_bits())
                    .ne(y.data.iter().map(|v| v.to_bits()))
                {
                    failures.push(format!(
                        "{case} {key}: {what} differs from the safetensors model's"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn default_explanation_layer_is_the_builders() {
    for case in common::GOLDEN_CASES {
        let onnx = load(&common::golden_dir().join(format!("{case}.onnx")));
        let st = Model::from_tensors(&common::golden(case)).unwrap();
        let (ho, hs) = (onnx.graph.act_shapes(64, 64), st.graph.act_shapes(64, 64));
        assert_eq!(
            ho[onnx.graph.explain], hs[st.graph.explain],
            "{case}: explanation layer shape"
        );
        // Both are the last image-shaped ReLU.
        let spatial = onnx.graph.spatial();
        let last_relu = onnx
            .graph
            .nodes
            .iter()
            .enumerate()
            .rposition(|(i, n)| matches!(n.layer, Layer::Relu) && spatial[i + 1])
            .unwrap();
        assert_eq!(onnx.graph.explain, last_relu + 1, "{case}");
    }
    let vgg = load(&common::golden_dir().join("vgg_tiny.onnx"));
    assert_eq!(vgg.explain_layer(), Some("features.13"));
    // The families: the last Fire module's and inception block's concatenation,
    // DenseNet's final ReLU.
    for (family, layer) in [
        ("densenet", "relu"),
        ("inception", "inception4a.concat"),
        ("squeezenet", "features.6.concat"),
        ("alexnet", "features.7"),
    ] {
        assert_eq!(
            fixture(family, "legacy").explain_layer(),
            Some(layer),
            "{family}"
        );
    }
}

#[test]
fn explain_layer_can_be_chosen_and_is_checked() {
    let mut m = fixture("densenet", "legacy");
    m.set_explain_layer("features.denseblock2.concat").unwrap();
    assert_eq!(m.explain_layer(), Some("features.denseblock2.concat"));
    for (bad, why) in [
        ("nope", "is not a layer"),
        ("flatten", "flattened"),
        (
            "features.denseblock2.denselayer2.conv1",
            "a later layer reads",
        ),
    ] {
        let e = m.set_explain_layer(bad).unwrap_err().to_string();
        assert!(e.contains(why), "{bad}: {e}");
    }
    // RSP from the chosen layer runs on the GPU and matches the CPU oracle.
    let ctx = common::gpu();
    let input = common::get(&expected("densenet"), "input");
    let gm = GpuModel::upload(ctx, &m);
    let a = explain(ctx, &gm, &input, &Request::default()).unwrap();
    let c = refmodel::explain(&m, &input, None, &Init::GradCam, false).unwrap();
    assert_eq!(a.init.shape, vec![1, 16, 4, 4]);
    compare(
        "densenet from denseblock2",
        &a.relevance,
        &c.relevance,
        Tolerance::GOLDEN,
    )
    .unwrap();
}

/// The signal at the output of node `i` in a walk's log: its one reader's input entry
/// (or that reader's part for a multi-input reader), or the seed at the explanation
/// layer.
fn output_signal<'a>(
    model: &Model,
    log: &'a [(String, Tensor)],
    i: usize,
    init: Option<&'a Tensor>,
) -> Option<&'a Tensor> {
    let g = &model.graph;
    if i + 1 == g.explain && init.is_some() {
        return init;
    }
    let readers: Vec<usize> = (0..g.nodes.len())
        .filter(|&j| g.nodes[j].inputs.contains(&(i + 1)))
        .collect();
    let [j] = readers[..] else { return None };
    let reader = &g.nodes[j];
    let key = if reader.inputs.len() == 1 {
        reader.name.clone()
    } else {
        let k = reader.inputs.iter().position(|&a| a == i + 1)?;
        format!("{}.{k}", reader.name)
    };
    log.iter().find(|(n, _)| *n == key).map(|(_, t)| t)
}

/// RSP and LRP-ε per layer on the families with concatenations: every layer whose rule
/// conserves hands on the total it received (docs/method.md §3 for RSP: ReLU, max pool,
/// average pool over windows that tile their input, concatenation, pre-activation batch
/// norm, convolutions larger than 1×1 and the first convolution; for LRP-ε the layers
/// its ε does not touch: ReLU, max pool, concatenation), and RSP's GPU map is the CPU
/// oracle's.
#[test]
fn rsp_and_lrp_conserve_relevance_per_layer() {
    let ctx = common::gpu();
    let mut checked = 0;
    let mut failures = Vec::new();
    for family in ["densenet", "inception", "squeezenet"] {
        let model = fixture(family, "legacy");
        let input = common::get(&expected(family), "input");
        let gm = GpuModel::upload(ctx, &model);
        for method in [Method::Rsp, Method::LrpEpsilon] {
            let req = Request {
                record_layers: true,
                ..Request::method(method, None)
            };
            let e = explain(ctx, &gm, &input, &req).unwrap();
            let cpu = match method {
                Method::Rsp => refmodel::explain(&model, &input, None, &Init::GradCam, true),
                _ => {
                    let mut c = refb::explain_method(&model, &input, method, None).unwrap();
                    c.layers.clear();
                    Ok(c)
                }
            }
            .unwrap();
            if method == Method::Rsp {
                compare(
                    &format!("{family} rsp"),
                    &e.relevance,
                    &cpu.relevance,
                    Tolerance::GOLDEN,
                )
                .unwrap();
            }
            let g = &model.graph;
            for (i, node) in g.nodes.iter().enumerate() {
                let conserving = match &node.layer {
                    Layer::Relu | Layer::MaxPool(_) | Layer::Concat => true,
                    Layer::AvgPool(_) => method == Method::Rsp,
                    Layer::BatchNorm(_) => method == Method::Rsp && !g.reads_conv(i),
                    Layer::Conv { conv, first } => {
                        method == Method::Rsp && (*first || conv.kernel().0 > 1)
                    }
                    _ => false,
                };
                if !conserving || i + 1 > g.explain && method == Method::Rsp {
                    continue;
                }
                let seed = (method == Method::Rsp).then_some(&e.init);
                let Some(out) = output_signal(&model, &e.layers, i, seed) else {
                    continue;
                };
                let inputs: Vec<&Tensor> = if node.inputs.len() == 1 {
                    e.layers
                        .iter()
                        .filter(|(n, _)| *n == node.name)
                        .map(|(_, t)| t)
                        .collect()
                } else {
                    (0..node.inputs.len())
                        .filter_map(|k| {
                            let key = format!("{}.{k}", node.name);
                            e.layers.iter().find(|(n, _)| *n == key).map(|(_, t)| t)
                        })
                        .collect()
                };
                if inputs.len() != node.inputs.len() {
                    continue;
                }
                let s_in: f64 = inputs.iter().map(|t| sum64(t)).sum();
                let s_out = sum64(out);
                let mass: f64 = out.data.iter().map(|v| v.abs() as f64).sum();
                checked += 1;
                if (s_in - s_out).abs() > 1e-4 * mass.max(1e-12) {
                    failures.push(format!(
                        "{family} {method} {}: Σ out {s_out:.6e}, Σ in {s_in:.6e}",
                        node.name
                    ));
                }
            }
        }
    }
    assert!(checked > 60, "only {checked} layers checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Grouped convolutions, ReLU6 (`Clip`) and SiLU are refused in one line naming the
/// node and its op.
#[test]
fn unsupported_models_are_refused_naming_the_node() {
    for (file, want) in [
        (
            "refuse_grouped.onnx",
            "has group=4: grouped convolutions are not supported yet",
        ),
        (
            "refuse_relu6.onnx",
            "(Clip) is not supported: rsp explains ReLU networks",
        ),
        (
            "refuse_silu.onnx",
            "is not supported: rsp explains ReLU networks",
        ),
    ] {
        let path = onnx_dir().join(file);
        let e = format!("{:#}", Model::from_file(&path).unwrap_err());
        assert!(e.contains(want) && e.contains(file), "{file}: {e}");
        assert!(!e.contains('\n'), "{file}: more than one line: {e}");
        assert_eq!(
            rsp::error::kind(&Model::from_file(&path).unwrap_err()),
            rsp::error::ErrorKind::InvalidInput
        );
    }
}

/// The relevance's total is the target logit's share; here only that a SqueezeNet
/// (logits from a convolution and a global pool) runs every method but RAP, which is
/// refused because it starts at a linear layer.
#[test]
fn conv_logits_run_every_method_but_rap() {
    let ctx = common::gpu();
    let model = fixture("squeezenet", "legacy");
    assert_eq!(model.num_classes(), 10);
    let input = common::get(&expected("squeezenet"), "input");
    let gm = GpuModel::upload(ctx, &model);
    for method in Method::ALL {
        let r = explain(ctx, &gm, &input, &Request::method(method, None));
        if method == Method::Rap {
            let e = format!("{:#}", r.unwrap_err());
            assert!(e.contains("RAP starts at a linear layer"), "{e}");
        } else {
            let e = r.unwrap_or_else(|e| panic!("{method}: {e:#}"));
            assert!(e.relevance.data.iter().all(|v| v.is_finite()), "{method}");
        }
    }
}
