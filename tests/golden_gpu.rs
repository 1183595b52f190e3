//! Golden parity of the GPU path: logits, initial relevance (both inits), every stored
//! per-layer relevance and the final maps against the authors' reference outputs.

mod common;

use rsp::compare::{compare, Tolerance};
use rsp::explain::{explain, RspOptions};
use rsp::models::gpu::GpuModel;
use rsp::{Init, Model};

fn check_case(case: &str) {
    let ctx = common::gpu();
    let f = common::golden(case);
    let model = Model::from_tensors(&f).unwrap();
    let gm = GpuModel::upload(ctx, &model);
    let input = common::get(&f, "input");
    let failures = std::cell::RefCell::new(Vec::new());
    let check = |name: &str, actual: &rsp::Tensor, reference: &rsp::Tensor| match compare(
        name,
        actual,
        reference,
        Tolerance::GOLDEN,
    ) {
        Ok(r) => println!("{r}"),
        Err(e) => failures.borrow_mut().push(e),
    };

    let gc = explain(
        ctx,
        &gm,
        &input,
        &RspOptions {
            init: Init::GradCam,
            targets: None,
            record_layers: true,
        },
    )
    .unwrap();
    check("logits", &gc.logits, &common::get(&f, "logits"));
    assert_eq!(
        gc.target[0] as i64,
        f.get_int("target").unwrap()[0],
        "{case}: target"
    );
    check("init.gradcam", &gc.init, &common::get(&f, "init.gradcam"));
    let prefix = "rsp.gradcam.rel.";
    let stored: Vec<&String> = f.floats.keys().filter(|k| k.starts_with(prefix)).collect();
    assert!(!stored.is_empty());
    for key in stored {
        let name = &key[prefix.len()..];
        match gc.layers.iter().find(|(n, _)| n == name) {
            Some((_, t)) => check(key, t, &common::get(&f, key)),
            None => failures
                .borrow_mut()
                .push(format!("{key}: not produced by the GPU path")),
        }
    }
    check(
        "rsp.gradcam.out",
        &gc.relevance,
        &common::get(&f, "rsp.gradcam.out"),
    );

    let cmp = explain(
        ctx,
        &gm,
        &input,
        &RspOptions {
            init: Init::Comparative { k: 3 },
            targets: None,
            record_layers: false,
        },
    )
    .unwrap();
    check(
        "init.comparative",
        &cmp.init,
        &common::get(&f, "init.comparative"),
    );
    check(
        "rsp.comparative.out",
        &cmp.relevance,
        &common::get(&f, "rsp.comparative.out"),
    );

    // Starting from the stored initial relevance reproduces the stored map.
    let given = explain(
        ctx,
        &gm,
        &input,
        &RspOptions {
            init: Init::Given(common::get(&f, "init.gradcam")),
            targets: None,
            record_layers: false,
        },
    )
    .unwrap();
    check(
        "rsp.gradcam.out (given init)",
        &given.relevance,
        &common::get(&f, "rsp.gradcam.out"),
    );
    let failures = failures.into_inner();
    assert!(
        failures.is_empty(),
        "{case}: {} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn vgg_tiny_matches_golden_on_gpu() {
    check_case("vgg_tiny");
}

#[test]
fn resnet_tiny_matches_golden_on_gpu() {
    check_case("resnet_tiny");
}
