//! The GPU RSP rules (`rsp::ops::rsp`, `rsp::ops::zbox`, `rsp::explain::rsp`) against the CPU reference rules
//! (`rsp::reference::rsp`) on awkward shapes, with post-ReLU-like inputs (many exact
//! zeros, including whole zero windows) and signed relevance with exact zeros; plus
//! conservation of relevance (Σ R_in = Σ R) measured on the GPU's own output.
//! Criterion: `max|gpu − cpu| / max|cpu| ≤ 1e-5`.
//!
//! `cargo test --release --test gpu rules:: -- --nocapture` prints every measured error.

use crate::{common, support};
use rsp::explain::rsp::{rsp_maxpool_rule, rsp_residual_rule};
use rsp::gpu::Recorder;
use rsp::layers::{BatchNorm2d, Conv2d, ConvGeometry, MaxPool2d};
use rsp::ops::rsp::sectional_conv;
use rsp::ops::{live_mask_batch_norm, zbox_first_conv, GpuBatchNorm, GpuConv};
use rsp::reference::rsp as cpu;
use rsp::reference::rules as cpu_rules;
use rsp::Tensor;

use crate::support::{
    abs_sum64, assert_close, default_tile, each_tile, each_tile_shape, run, run1, signed_sparse,
    sum64, uniform, REL_TOL,
};

/// `|Σ R_in − Σ R| ≤ 1e-5 · |Σ R|` per image; R is built with a clear net sign so that
/// `|Σ R|` is a sizeable fraction of the mass `Σ|R|`.
fn assert_conserved(what: &str, r: &Tensor, r_in: &Tensor) -> f64 {
    let mut worst = 0.0f64;
    for i in 0..r.shape[0] {
        let (ri, ii) = (r.index0(i), r_in.index0(i));
        let (s, s_in) = (sum64(&ri), sum64(&ii));
        assert!(
            s.abs() > 0.05 * abs_sum64(&ri),
            "{what}: test relevance has no clear net sign"
        );
        let err = (s_in - s).abs() / s.abs();
        println!("{what} image {i}: sum R {s:.7}, sum R_in {s_in:.7}, rel err {err:.3e}");
        assert!(
            err <= REL_TOL,
            "{what} image {i}: not conserved: sum R = {s}, sum R_in = {s_in} (rel {err:.3e})"
        );
        assert!(ii.data.iter().all(|v| v.is_finite()), "{what}: non-finite");
        worst = worst.max(err);
    }
    worst
}

/// `(n, c_in, h, w, c_out, k, stride, padding)`
type RuleCase = (usize, usize, usize, usize, usize, usize, usize, usize);

const HIDDEN_CASES: [RuleCase; 6] = [
    (2, 13, 9, 7, 67, 3, 1, 1), // 3×3 s1 p1, c_out over one 64-tile, non-square
    (2, 70, 10, 13, 5, 3, 2, 1), // 3×3 s2 p1, even×odd
    (2, 5, 8, 8, 3, 3, 2, 0),   // 3×3 s2 without padding (uncovered last row/col)
    (2, 67, 6, 9, 13, 1, 1, 0), // 1×1 s1
    (2, 13, 9, 11, 70, 1, 2, 0), // 1×1 s2 (downsample)
    (1, 3, 5, 4, 2, 1, 1, 0),   // tiny 1×1 with few channels: all-zero pixels
];

fn geometry(case: &RuleCase) -> ConvGeometry {
    let &(_, ci, _, _, co, k, s, p) = case;
    ConvGeometry {
        c_out: co,
        c_in: ci,
        kh: k,
        kw: k,
        stride: s,
        padding: p,
    }
}

/// A post-ReLU input with `zero_frac` exact zeros and, in image 0, a whole zero patch
/// (all channels) so that some windows see only zeros (Z = 0 → sdiv gives 0).
fn hidden_input(case: &RuleCase, seed: u64, zero_frac: f32) -> Tensor {
    let &(n, ci, h, w, ..) = case;
    let mut x = support::post_relu(&[n, ci, h, w], seed, zero_frac);
    for c in 0..ci {
        for y in 0..h.min(3) {
            for xx in 0..w.min(4) {
                x.data[(c * h + y) * w + xx] = 0.0;
            }
        }
    }
    x
}

#[test]
fn conv_rule_matches_reference() {
    for (i, case) in HIDDEN_CASES.iter().enumerate() {
        let g = geometry(case);
        let &(n, _, h, w, co, ..) = case;
        let (ho, wo) = g.out_hw(h, w);
        for (j, (x_zero, r_zero)) in [(0.5, 0.3), (0.85, 0.6)].into_iter().enumerate() {
            let seed = 100 * i as u64 + 10 * j as u64;
            let x = hidden_input(case, seed, x_zero);
            let r = signed_sparse(&[n, co, ho, wo], seed + 1, r_zero);
            let name = format!("conv_rule {case:?} zeros x {x_zero} r {r_zero}");
            // Every tile variant on the first case (3×3 stride 1, 67 output channels),
            // every tiled shape on the stride-2 one; the other geometries (whose index
            // arithmetic lives in the op file, not the tile) with the heuristic tile.
            let tiles = match i {
                0 => each_tile,
                1 => each_tile_shape,
                _ => default_tile,
            };
            let out = tiles(&name, &|rec: &mut Recorder<'static>| {
                let xg = rec.ctx.upload(&x);
                let rg = rec.ctx.upload(&r);
                vec![sectional_conv(rec, &xg, &rg, &g)]
            })
            .remove(0);
            let want = cpu::conv_rule(&x, &r, &g);
            assert_eq!(out.shape, x.shape);
            assert_close(&name, &out, &want, REL_TOL);
            // Exact zeros agree: zero inputs get exactly zero relevance on both sides,
            // and the purging shift touches the same units.
            let flips = out
                .data
                .iter()
                .zip(&want.data)
                .filter(|(a, b)| (**a == 0.0) != (**b == 0.0))
                .count();
            assert_eq!(flips, 0, "{name}: exact-zero pattern differs");
            for (xv, rv) in x.data.iter().zip(&out.data) {
                if *xv == 0.0 {
                    assert_eq!(*rv, 0.0, "{name}: relevance on a zero input");
                }
            }
        }
    }
}

/// Relevance with a net positive sign (≈ 70 % positive mass) and exact zeros.
fn net_positive(shape: &[usize], seed: u64) -> Tensor {
    support::map(&signed_sparse(shape, seed, 0.3), |v| {
        if v < 0.0 {
            v * 0.5
        } else {
            v
        }
    })
}

#[test]
fn conv_rule_conserves_relevance_on_gpu() {
    // Dense enough inputs that no window is all zero (otherwise Z = 0 drops relevance).
    let cases: [RuleCase; 4] = [
        (2, 13, 9, 7, 67, 3, 1, 1),
        (2, 70, 10, 13, 5, 3, 2, 1),
        (2, 67, 6, 9, 13, 1, 1, 0),
        (2, 13, 9, 11, 70, 1, 2, 0),
    ];
    for (i, case) in cases.iter().enumerate() {
        let g = geometry(case);
        let &(n, ci, h, w, co, ..) = case;
        let (ho, wo) = g.out_hw(h, w);
        let x = support::post_relu(&[n, ci, h, w], 1000 + i as u64, 0.5);
        let r = net_positive(&[n, co, ho, wo], 1100 + i as u64);
        let out = run1(|rec| {
            let xg = rec.ctx.upload(&x);
            let rg = rec.ctx.upload(&r);
            sectional_conv(rec, &xg, &rg, &g)
        });
        assert_conserved(&format!("conv_rule {case:?}"), &r, &out);
    }
}

fn first_conv(c_out: usize, k: usize, stride: usize, padding: usize, seed: u64) -> Conv2d {
    Conv2d {
        weight: support::kaiming(&[c_out, 3, k, k], seed),
        // The rule ignores the bias; give it one anyway.
        bias: Some(uniform(&[c_out], seed + 1, -0.3, 0.3).data),
        stride,
        padding,
    }
}

/// `(n, h, w, c_out, k, stride, padding)` of first (pixel) convolutions.
const FIRST_CASES: [(usize, usize, usize, usize, usize, usize, usize); 3] = [
    (2, 17, 14, 13, 7, 2, 3), // ResNet stem 7×7/2 p3, non-square, odd
    (2, 9, 12, 8, 3, 1, 1),   // VGG first conv 3×3 p1
    (1, 10, 7, 70, 7, 2, 3),  // c_out over one 64-tile
];

#[test]
fn first_conv_rule_matches_reference() {
    for (i, &(n, h, w, co, k, s, p)) in FIRST_CASES.iter().enumerate() {
        let conv = first_conv(co, k, s, p, 2000 + i as u64);
        let (ho, wo) = conv.geometry().out_hw(h, w);
        // Normalised-image-like input (signed), relevance signed with exact zeros.
        let x = support::map(&common::random(&[n, 3, h, w], 2100 + i as u64), |v| v * 2.2);
        let r = signed_sparse(&[n, co, ho, wo], 2200 + i as u64, 0.3);
        // Every tile variant on the first (7×7 stride-2 stem) case, the heuristic tile
        // on the others.
        let tiles = if i == 0 { each_tile } else { default_tile };
        let out = tiles(&format!("first_conv_rule {i}"), &|rec: &mut Recorder<
            'static,
        >| {
            let gc = GpuConv::upload(rec.ctx, &conv);
            let xg = rec.ctx.upload(&x);
            let rg = rec.ctx.upload(&r);
            vec![zbox_first_conv(rec, &xg, &rg, &gc)]
        })
        .remove(0);
        let want = cpu_rules::zbox_first_conv(&x, &r, &conv);
        assert_close(
            &format!("first_conv_rule n{n} {h}x{w} -> {co} k{k} s{s} p{p}"),
            &out,
            &want,
            REL_TOL,
        );
        // Conservation on the GPU's output.
        let r_net = net_positive(&[n, co, ho, wo], 2300 + i as u64);
        let out = run1(|rec| {
            let gc = GpuConv::upload(rec.ctx, &conv);
            let xg = rec.ctx.upload(&x);
            let rg = rec.ctx.upload(&r_net);
            zbox_first_conv(rec, &xg, &rg, &gc)
        });
        assert_conserved(&format!("first_conv_rule k{k} s{s} p{p}"), &r_net, &out);
    }
}

#[test]
fn maxpool_rule_matches_reference_and_conserves() {
    let pools = [
        MaxPool2d {
            kernel: 2,
            stride: 2,
            padding: 0,
            ceil_mode: false,
        },
        MaxPool2d {
            kernel: 3,
            stride: 2,
            padding: 1,
            ceil_mode: false,
        },
        MaxPool2d {
            kernel: 3,
            stride: 2,
            padding: 0,
            ceil_mode: true,
        },
    ];
    for (i, (pool, shape)) in [
        (pools[0], [2, 13, 9, 11]),
        (pools[1], [2, 5, 10, 13]),
        (pools[2], [2, 5, 10, 13]),
    ]
    .into_iter()
    .enumerate()
    {
        // Post-ReLU input with ties: values in {0, 0.5, 1} (many all-zero windows).
        let x = support::map(&support::post_relu(&shape, 3000 + i as u64, 0.5), |v| {
            (v * 1.0).round() / 2.0
        });
        let (ho, wo) = pool.out_hw(shape[2], shape[3]);
        let r = net_positive(&[shape[0], shape[1], ho, wo], 3100 + i as u64);
        let out = run1(|rec| {
            let xg = rec.ctx.upload(&x);
            let rg = rec.ctx.upload(&r);
            rsp_maxpool_rule(rec, &xg, &rg, &pool)
        });
        let want = cpu::maxpool_rule(&x, &r, &pool);
        assert_close(&format!("maxpool_rule {pool:?}"), &out, &want, REL_TOL);
        assert_conserved(&format!("maxpool_rule {pool:?}"), &r, &out);
    }
}

#[test]
fn batchnorm_rule_matches_reference() {
    let (n, c, h, w) = (2, 13, 5, 6);
    let bn = BatchNorm2d {
        gamma: {
            let mut g = uniform(&[c], 4000, 0.5, 1.5).data;
            g[3] = 0.0; // dead channel: no relevance passes
            g[8] = -0.7;
            g
        },
        beta: uniform(&[c], 4001, -0.2, 0.2).data,
        running_mean: uniform(&[c], 4002, -0.2, 0.2).data,
        running_var: uniform(&[c], 4003, 0.5, 1.5).data,
        eps: 1e-5,
    };
    let bn_input = signed_sparse(&[n, c, h, w], 4004, 0.3);
    let r = signed_sparse(&[n, c, h, w], 4005, 0.3);
    let out = run1(|rec| {
        let gb = GpuBatchNorm::upload(rec.ctx, &bn);
        let xg = rec.ctx.upload(&bn_input);
        let rg = rec.ctx.upload(&r);
        live_mask_batch_norm(rec, &xg, &rg, &gb)
    });
    let want = cpu_rules::live_mask_batch_norm(&bn_input, &r, &bn);
    // A mask: exact.
    assert_eq!(out.data, want.data, "batchnorm_rule");
    assert_close("batchnorm_rule", &out, &want, 0.0);
}

#[test]
fn residual_rule_matches_reference_and_conserves() {
    let shape = [2, 67, 3, 5];
    let a = signed_sparse(&shape, 5000, 0.3);
    let b = signed_sparse(&shape, 5001, 0.3);
    let r = net_positive(&shape, 5002);
    let [ra, rb]: [Tensor; 2] = run(|rec| {
        let ag = rec.ctx.upload(&a);
        let bg = rec.ctx.upload(&b);
        let rg = rec.ctx.upload(&r);
        let (ra, rb) = rsp_residual_rule(rec, &ag, &bg, &rg);
        vec![ra, rb]
    })
    .try_into()
    .unwrap();
    let (wa, wb) = cpu::residual_rule(&a, &b, &r);
    assert_close("residual_rule R_a", &ra, &wa, REL_TOL);
    assert_close("residual_rule R_b", &rb, &wb, REL_TOL);
    // R_a + R_b = R elementwise (to float32 rounding) and in total.
    let both = Tensor::new(
        r.shape.clone(),
        ra.data.iter().zip(&rb.data).map(|(x, y)| x + y).collect(),
    );
    assert_close("residual_rule R_a + R_b vs R", &both, &r, REL_TOL);
    assert_conserved("residual_rule", &r, &both);
}
