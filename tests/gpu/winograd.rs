//! The Winograd F(2×2, 3×3) variant (`winograd-2x2`) forced on every 3×3 stride-1
//! forward convolution, against the CPU reference: the convolution itself (with bias,
//! fused ReLU, odd sizes and no padding) and RSP's conv rule, whose relative
//! contributions are Winograd convolutions with per-problem weights. Its results
//! round differently from the direct kernels, so each test also checks that they are
//! not bit-identical to the fallback's (so the variant really ran) while staying
//! within the op tests' bound of the reference. Whole explanations with it are in
//! `autotune.rs`.

use crate::{common, support};
use std::sync::OnceLock;

use rsp::gpu::{ContextOptions, GpuContext, Recorder};
use rsp::layers::{Conv2d, ConvGeometry};
use rsp::ops::rsp::sectional_conv;
use rsp::ops::{self, GpuConv};
use rsp::reference::ops as cpu_ops;
use rsp::reference::rsp as cpu_rules;
use rsp::Tensor;

use crate::support::{assert_close, run_on, signed_sparse, uniform, REL_TOL};

fn winograd() -> &'static GpuContext {
    static CTX: OnceLock<GpuContext> = OnceLock::new();
    CTX.get_or_init(|| {
        GpuContext::new(&ContextOptions {
            gemm_kernel: Some("winograd-2x2".to_string()),
            ..Default::default()
        })
        .expect("GPU tests need a wgpu adapter")
    })
}

/// Both contexts' outputs of `f`: (Winograd, fallback).
fn both(
    f: impl Fn(&mut Recorder<'static>) -> Vec<rsp::gpu::GpuTensor>,
) -> (Vec<Tensor>, Vec<Tensor>) {
    (run_on(winograd(), &f), run_on(common::gpu(), &f))
}

fn assert_ran_winograd(name: &str, got: &Tensor, fallback: &Tensor) {
    let differ = got
        .data
        .iter()
        .zip(&fallback.data)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    assert!(
        differ > 0,
        "{name}: bit-identical to the fallback, so Winograd did not run"
    );
}

/// `(n, c_in, h, w, c_out, padding)`, all 3×3 stride 1.
const CASES: [(usize, usize, usize, usize, usize, usize); 4] = [
    (2, 13, 9, 11, 67, 1), // odd sizes: a last tile half outside the output
    (1, 64, 8, 8, 32, 1),  // even sizes, many input channels
    (2, 5, 7, 6, 3, 0),    // no padding: 5×4 output
    (1, 3, 2, 3, 4, 1),    // smaller than one tile in height
];

#[test]
fn winograd_convolution_matches_the_reference() {
    for (i, &(n, ci, h, w, co, pad)) in CASES.iter().enumerate() {
        let conv = Conv2d {
            weight: support::kaiming(&[co, ci, 3, 3], 300 + i as u64),
            bias: Some(uniform(&[co], 310 + i as u64, -0.5, 0.5).data),
            stride: 1,
            padding: pad,
        };
        let x = common::random(&[n, ci, h, w], 320 + i as u64);
        let (got, fallback) = both(|rec| {
            let gc = GpuConv::upload(rec.ctx, &conv);
            let xg = rec.ctx.upload(&x);
            vec![
                ops::conv2d(rec, &xg, &gc, false),
                ops::conv2d(rec, &xg, &gc, true),
            ]
        });
        let want = cpu_ops::conv2d(&x, &conv.weight, conv.bias.as_deref(), 1, pad);
        let name = format!("winograd conv2d {:?}", CASES[i]);
        assert_close(&name, &got[0], &want, REL_TOL);
        assert_close(
            &format!("{name} relu"),
            &got[1],
            &cpu_ops::relu(&want),
            REL_TOL,
        );
        assert!(got[1].data.iter().all(|&v| v >= 0.0));
        assert_ran_winograd(&name, &got[0], &fallback[0]);
    }
}

#[test]
fn winograd_rsp_conv_rule_matches_the_reference() {
    for (i, &(n, ci, h, w, co, pad)) in CASES.iter().enumerate() {
        let g = ConvGeometry {
            c_out: co,
            c_in: ci,
            kh: 3,
            kw: 3,
            stride: 1,
            padding: pad,
        };
        let (ho, wo) = g.out_hw(h, w);
        let seed = 400 + 10 * i as u64;
        let x = support::post_relu(&[n, ci, h, w], seed, 0.5);
        let r = signed_sparse(&[n, co, ho, wo], seed + 1, 0.3);
        let (got, fallback) = both(|rec| {
            let xg = rec.ctx.upload(&x);
            let rg = rec.ctx.upload(&r);
            vec![sectional_conv(rec, &xg, &rg, &g)]
        });
        let want = cpu_rules::conv_rule(&x, &r, &g);
        let name = format!("winograd conv rule {:?}", CASES[i]);
        assert_close(&name, &got[0], &want, REL_TOL);
        assert_ran_winograd(&name, &got[0], &fallback[0]);
    }
}
