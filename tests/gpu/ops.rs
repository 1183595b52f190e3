//! Every GPU op against its CPU twin in `rsp::reference::ops`, on random inputs with
//! awkward shapes (odd and non-square sizes, stride 2, padding, 1×1/3×3/7×7 kernels,
//! channel counts that are not multiples of the workgroup tiles, batch 2).
//! Criterion: `max|gpu − cpu| / max|cpu| ≤ 1e-5` (exact equality where the op does no
//! arithmetic that could round differently).
//!
//! `cargo test --release --test gpu ops:: -- --nocapture` prints every measured error.

use crate::{common, support};
use rsp::gpu::{ContextOptions, GpuContext, GpuTensor, Recorder};
use rsp::layers::{AvgPool2d, BatchNorm2d, Conv2d, ConvGeometry, Linear, MaxPool2d};
use rsp::ops::{self, GpuBatchNorm, GpuConv, GpuLinear, NO_CLASS};
use rsp::reference::model::comparative_classes;
use rsp::reference::ops as cpu;
use rsp::Tensor;

use crate::support::{
    assert_bits_eq, assert_close, each_tile, each_tile_shape, map, run, run1, uniform, REL_TOL,
};

/// `(n, c_in, h, w, c_out, kh, kw, stride, padding)`
type ConvCase = (
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
);

const CONV_CASES: [ConvCase; 8] = [
    (2, 3, 13, 10, 5, 7, 7, 2, 3), // 7×7 stride 2 pad 3 (ResNet stem), non-square
    (2, 13, 9, 11, 67, 3, 3, 1, 1), // 3×3 s1 p1, c_out over one 64-tile
    (2, 67, 7, 5, 13, 3, 3, 2, 1), // 3×3 s2 p1, odd sizes
    (2, 70, 6, 9, 13, 1, 1, 1, 0), // 1×1
    (2, 13, 9, 11, 70, 1, 1, 2, 0), // 1×1 stride 2 (downsample), odd sizes
    (2, 5, 8, 8, 3, 3, 3, 2, 0),   // stride 2 without padding: last row/col uncovered
    (1, 5, 4, 3, 3, 3, 3, 1, 0),   // valid convolution, tiny output
    (2, 4, 5, 6, 5, 1, 3, 1, 1),   // non-square 1×3 kernel with padding
];

/// M (output channels) and N (output pixels) over 128, so the large-tile variants run
/// whole interior tiles (their unchecked path) beside edge tiles; with the cases above
/// in the tests that compare every tile variant bit for bit.
const LARGE_TILE_CASE: ConvCase = (1, 16, 12, 13, 130, 3, 3, 1, 1);

/// The conv cases plus [`LARGE_TILE_CASE`].
fn tile_cases() -> impl Iterator<Item = &'static ConvCase> {
    CONV_CASES.iter().chain(std::iter::once(&LARGE_TILE_CASE))
}

/// Every exact tile variant on [`LARGE_TILE_CASE`] (the large tiles' interior and edge
/// tiles), every tiled shape on the other cases.
fn tiles_for(
    case: &ConvCase,
    what: &str,
    f: impl Fn(&mut Recorder<'static>) -> Vec<GpuTensor>,
) -> Vec<Tensor> {
    if case == &LARGE_TILE_CASE {
        each_tile(what, &f)
    } else {
        each_tile_shape(what, &f)
    }
}

fn conv_layer(case: &ConvCase, seed: u64, bias: bool) -> Conv2d {
    let &(_, ci, _, _, co, kh, kw, s, p) = case;
    Conv2d {
        weight: support::kaiming(&[co, ci, kh, kw], seed),
        bias: bias.then(|| uniform(&[co], seed + 1, -0.5, 0.5).data),
        stride: s,
        padding: p,
    }
}

#[test]
fn conv2d_forward_bias_and_fused_relu() {
    for (i, case) in tile_cases().enumerate() {
        let &(n, ci, h, w, ..) = case;
        let bias = i != 3; // one bias-free convolution
        let conv = conv_layer(case, 100 + i as u64, bias);
        let x = common::random(&[n, ci, h, w], 200 + i as u64);
        let [plain, relu]: [Tensor; 2] = tiles_for(case, &format!("conv2d {case:?}"), |rec| {
            let gc = GpuConv::upload(rec.ctx, &conv);
            let xg = rec.ctx.upload(&x);
            vec![
                ops::conv2d(rec, &xg, &gc, false),
                ops::conv2d(rec, &xg, &gc, true),
            ]
        })
        .try_into()
        .unwrap();
        let want = cpu::conv2d(
            &x,
            &conv.weight,
            conv.bias.as_deref(),
            conv.stride,
            conv.padding,
        );
        assert_close(&format!("conv2d {case:?}"), &plain, &want, REL_TOL);
        assert_close(
            &format!("conv2d+relu {case:?}"),
            &relu,
            &cpu::relu(&want),
            REL_TOL,
        );
        assert!(relu.data.iter().all(|&v| v >= 0.0));
    }
}

#[test]
fn conv2d_dgrad_matches_transposed_convolution() {
    for (i, case) in tile_cases().enumerate() {
        let &(n, _, h, w, co, ..) = case;
        let conv = conv_layer(case, 300 + i as u64, false);
        let g = conv.geometry();
        let (ho, wo) = g.out_hw(h, w);
        let s = common::random(&[n, co, ho, wo], 400 + i as u64);
        let out = tiles_for(case, &format!("conv2d_dgrad {case:?}"), |rec| {
            let wg = rec.ctx.upload(&conv.weight);
            let sg = rec.ctx.upload(&s);
            vec![ops::conv2d_dgrad(
                rec,
                &sg,
                &wg,
                &g,
                (h, w),
                ops::Weights::Signed,
            )]
        })
        .remove(0);
        let want = cpu::conv2d_dgrad(&s, &conv.weight, g.stride, g.padding, (h, w));
        assert_close(&format!("conv2d_dgrad {case:?}"), &out, &want, REL_TOL);
    }
}

#[test]
fn conv2d_wgrad_matches_per_image_weight_gradient() {
    for (i, case) in tile_cases().enumerate() {
        let &(n, ci, h, w, co, kh, kw, ..) = case;
        let conv = conv_layer(case, 500 + i as u64, false);
        let g = conv.geometry();
        let (ho, wo) = g.out_hw(h, w);
        let x = common::random(&[n, ci, h, w], 600 + i as u64);
        let s = common::random(&[n, co, ho, wo], 700 + i as u64);
        let out = tiles_for(case, &format!("conv2d_wgrad {case:?}"), |rec| {
            let xg = rec.ctx.upload(&x);
            let sg = rec.ctx.upload(&s);
            vec![ops::conv2d_wgrad(rec, &xg, &sg, &g)]
        })
        .remove(0);
        let want = cpu::conv2d_wgrad(&x, &s, kh, kw, g.stride, g.padding);
        assert_eq!(out.shape, vec![n, co, ci, kh, kw]);
        assert_close(&format!("conv2d_wgrad {case:?}"), &out, &want, REL_TOL);
    }
}

#[test]
fn conv2d_wgrad_split_k_matches_reference() {
    // Large output maps with few channels: the weight gradient's K axis (output
    // pixels) is split across workgroups and the partials are summed in split order.
    let cases: [ConvCase; 2] = [(1, 5, 48, 40, 7, 3, 3, 1, 1), (2, 3, 61, 75, 6, 7, 7, 2, 3)];
    for (i, case) in cases.iter().enumerate() {
        let &(n, ci, h, w, co, kh, kw, ..) = case;
        let conv = conv_layer(case, 800 + i as u64, false);
        let g = conv.geometry();
        let (ho, wo) = g.out_hw(h, w);
        let fill = common::gpu().fill_workgroups;
        let splits = rsp::ops::conv::wgrad_splits(&g, (h, w), n, fill, u64::MAX);
        assert!(splits > 1, "{case:?} should exercise split-K, got {splits}");
        let x = common::random(&[n, ci, h, w], 900 + i as u64);
        let s = common::random(&[n, co, ho, wo], 950 + i as u64);
        // The large tiles on the first split case.
        let tiles = if i == 0 { each_tile } else { each_tile_shape };
        let out = tiles(
            &format!("conv2d_wgrad split {case:?}"),
            &|rec: &mut Recorder<'static>| {
                let xg = rec.ctx.upload(&x);
                let sg = rec.ctx.upload(&s);
                vec![ops::conv2d_wgrad(rec, &xg, &sg, &g)]
            },
        )
        .remove(0);
        let want = cpu::conv2d_wgrad(&x, &s, kh, kw, g.stride, g.padding);
        assert_close(
            &format!("conv2d_wgrad split {splits} {case:?}"),
            &out,
            &want,
            REL_TOL,
        );
    }
}

fn linear_layer(out_f: usize, in_f: usize, seed: u64) -> Linear {
    Linear {
        weight: support::kaiming(&[out_f, in_f], seed),
        bias: uniform(&[out_f], seed + 1, -0.5, 0.5).data,
    }
}

#[test]
fn linear_forward_with_and_without_relu() {
    // (input shape, out_features): a pooled NCHW map (637 = 13·7·7 > 256 threads),
    // a tiny layer, and a 2-D input.
    let cases: [(&[usize], usize); 3] = [(&[2, 13, 7, 7], 70), (&[2, 5], 3), (&[3, 300], 67)];
    for (i, (shape, out_f)) in cases.into_iter().enumerate() {
        let n = shape[0];
        let in_f: usize = shape[1..].iter().product();
        let l = linear_layer(out_f, in_f, 800 + i as u64);
        let x = common::random(shape, 900 + i as u64);
        // The large tiles on the first case.
        let tiles = if i == 0 { each_tile } else { each_tile_shape };
        let [plain, relu]: [Tensor; 2] =
            tiles(&format!("linear {shape:?}"), &|rec: &mut Recorder<
                'static,
            >| {
                let gl = GpuLinear::upload(rec.ctx, &l);
                let xg = rec.ctx.upload(&x);
                vec![
                    ops::linear(rec, &xg, &gl, false),
                    ops::linear(rec, &xg, &gl, true),
                ]
            })
            .try_into()
            .unwrap();
        let want = cpu::linear(&x, &l);
        assert_eq!(want.shape, vec![n, out_f]);
        assert_close(
            &format!("linear {shape:?}->{out_f}"),
            &plain,
            &want,
            REL_TOL,
        );
        assert_close(
            &format!("linear+relu {shape:?}->{out_f}"),
            &relu,
            &cpu::relu(&want),
            REL_TOL,
        );
    }
}

#[test]
fn linear_grad_matches_input_gradient() {
    // (2, 300, 37): 300 weight rows in 4 groups of 75, summed afterwards.
    for (i, (rows, out_f, in_f)) in [(3, 70, 637), (2, 3, 5), (4, 67, 300), (2, 300, 37)]
        .into_iter()
        .enumerate()
    {
        let l = linear_layer(out_f, in_f, 1000 + i as u64);
        let g = common::random(&[rows, out_f], 1100 + i as u64);
        // The large tiles on the first case.
        let tiles = if i == 0 { each_tile } else { each_tile_shape };
        let [out]: [Tensor; 1] = tiles(
            &format!("linear_grad {rows} {out_f}"),
            &|rec: &mut Recorder<'static>| {
                let gl = GpuLinear::upload(rec.ctx, &l);
                let gg = rec.ctx.upload(&g);
                vec![ops::linear_grad(rec, &gg, &gl)]
            },
        )
        .try_into()
        .unwrap();
        let want = cpu::linear_backward_input(&g, &l);
        assert_close(
            &format!("linear_grad [{rows},{out_f}]x[{out_f},{in_f}]"),
            &out,
            &want,
            REL_TOL,
        );
    }
}

/// The tree-sum kernel (`tree-256`, inexact: a fixed tree instead of ascending K)
/// forced on the linear layers stays within the reference tolerance of the CPU.
#[test]
fn linear_layers_on_the_tree_kernel_match_the_reference() {
    let ctx = GpuContext::new(&ContextOptions {
        gemm_kernel: Some("tree-256".into()),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("GPU tests need a wgpu adapter: {e:#}"));
    let (rows, out_f, in_f) = (2, 70, 637);
    let l = linear_layer(out_f, in_f, 1300);
    let x = common::random(&[rows, in_f], 1301);
    let g = common::random(&[rows, out_f], 1302);
    let gl = GpuLinear::upload(&ctx, &l);
    let mut rec = Recorder::new(&ctx);
    let (xg, gg) = (ctx.upload(&x), ctx.upload(&g));
    let y = ops::linear(&mut rec, &xg, &gl, true);
    let gx = ops::linear_grad(&mut rec, &gg, &gl);
    rec.submit();
    drop(rec);
    let want = cpu::relu(&cpu::linear(&x, &l));
    assert_close("linear on tree-256", &ctx.read(&y).unwrap(), &want, REL_TOL);
    let want = cpu::linear_backward_input(&g, &l);
    assert_close(
        "linear_grad on tree-256",
        &ctx.read(&gx).unwrap(),
        &want,
        REL_TOL,
    );
}

/// A linear layer whose weight is split into row chunks (a context whose storage
/// bindings are capped at 4 KiB) gives the result of the unsplit layer.
#[test]
fn linear_split_into_row_chunks_matches_unsplit() {
    let small = GpuContext::new(&ContextOptions {
        max_binding_override: Some(4096),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("GPU tests need a wgpu adapter: {e:#}"));
    let (rows, out_f, in_f) = (3, 70, 300);
    let l = linear_layer(out_f, in_f, 1200);
    let x = common::random(&[rows, in_f], 1201);
    let g = common::random(&[rows, out_f], 1202);
    let on = |ctx: &GpuContext| -> (usize, Tensor, Tensor, Tensor) {
        let gl = GpuLinear::upload(ctx, &l);
        let mut rec = Recorder::new(ctx);
        let xg = ctx.upload(&x);
        let gg = ctx.upload(&g);
        let y = ops::linear(&mut rec, &xg, &gl, false);
        let yr = ops::linear(&mut rec, &xg, &gl, true);
        let gx = ops::linear_grad(&mut rec, &gg, &gl);
        rec.submit();
        drop(rec);
        (
            gl.chunks.len(),
            ctx.read(&y).unwrap(),
            ctx.read(&yr).unwrap(),
            ctx.read(&gx).unwrap(),
        )
    };
    let (chunks_whole, y1, yr1, gx1) = on(common::gpu());
    let (chunks_split, y2, yr2, gx2) = on(&small);
    assert_eq!(chunks_whole, 1);
    // 1200-byte rows, 3 per 4 KiB binding: 24 chunks, the last with one row.
    assert_eq!(chunks_split, 24);
    // Each output row is computed by the same kernel in the same order either way.
    assert_bits_eq("linear split vs unsplit", &y2, &y1);
    assert_bits_eq("linear+relu split vs unsplit", &yr2, &yr1);
    assert_close("linear_grad split vs unsplit", &gx2, &gx1, REL_TOL);
    assert_close("linear split vs cpu", &y2, &cpu::linear(&x, &l), REL_TOL);
    assert_close(
        "linear_grad split vs cpu",
        &gx2,
        &cpu::linear_backward_input(&g, &l),
        REL_TOL,
    );
}

#[test]
fn relu_and_add_are_exact() {
    let shape = [2, 5, 9, 11];
    let a = support::signed_sparse(&shape, 1300, 0.3);
    let b = support::signed_sparse(&shape, 1301, 0.3);
    let [r, s, sr]: [Tensor; 3] = run(|rec| {
        let ag = rec.ctx.upload(&a);
        let bg = rec.ctx.upload(&b);
        vec![
            ops::relu(rec, &ag),
            ops::add(rec, &ag, &bg, false),
            ops::add(rec, &ag, &bg, true),
        ]
    })
    .try_into()
    .unwrap();
    // max/add round identically on both sides (−0.0 == 0.0 is accepted).
    assert_eq!(r.data, cpu::relu(&a).data, "relu");
    let sum = cpu::add(&a, &b);
    assert_eq!(s.data, sum.data, "add");
    assert_eq!(sr.data, cpu::relu(&sum).data, "add+relu");
    assert_close("relu", &r, &cpu::relu(&a), 0.0);
}

#[test]
fn batch_norm_with_and_without_relu() {
    let (n, c, h, w) = (2, 13, 6, 7);
    let bn = BatchNorm2d {
        gamma: {
            let mut g = uniform(&[c], 1400, 0.5, 1.5).data;
            g[4] = 0.0; // a dead channel
            g[7] = -0.8; // a negative scale
            g
        },
        beta: uniform(&[c], 1401, -0.2, 0.2).data,
        running_mean: uniform(&[c], 1402, -0.2, 0.2).data,
        running_var: uniform(&[c], 1403, 0.5, 1.5).data,
        eps: 1e-5,
    };
    let x = support::signed_sparse(&[n, c, h, w], 1404, 0.2);
    let [plain, relu]: [Tensor; 2] = run(|rec| {
        let gb = GpuBatchNorm::upload(rec.ctx, &bn);
        let xg = rec.ctx.upload(&x);
        vec![
            ops::batch_norm(rec, &xg, &gb, false),
            ops::batch_norm(rec, &xg, &gb, true),
        ]
    })
    .try_into()
    .unwrap();
    let want = cpu::batch_norm(&x, &bn);
    assert_close("batch_norm", &plain, &want, REL_TOL);
    assert_close("batch_norm+relu", &relu, &cpu::relu(&want), REL_TOL);
}

/// CPU twin of `relu_grad` with `rows` gradient rows per image of `act`.
fn relu_grad_cpu(g: &Tensor, act: &Tensor, rows: usize) -> Tensor {
    let per = act.numel() / act.shape[0];
    let data = g
        .data
        .iter()
        .enumerate()
        .map(|(i, &gv)| {
            let a = act.data[(i / per / rows) * per + i % per];
            if a > 0.0 {
                gv
            } else {
                0.0
            }
        })
        .collect();
    Tensor::new(g.shape.clone(), data)
}

#[test]
fn relu_grad_with_two_rows_per_image() {
    // A classifier activation [N, F] and a feature map [N, C, h, w]; act has exact zeros
    // and negatives, the gradient has 2 rows (seeds) per image.
    for (i, act_shape) in [vec![2, 67], vec![2, 13, 4, 5]].into_iter().enumerate() {
        let act = support::signed_sparse(&act_shape, 1500 + i as u64, 0.3);
        let mut g_shape = act_shape.clone();
        g_shape[0] *= 2;
        let g = common::random(&g_shape, 1600 + i as u64);
        let out = run1(|rec| {
            let ag = rec.ctx.upload(&act);
            let gg = rec.ctx.upload(&g);
            ops::relu_grad(rec, &gg, &ag, 2)
        });
        let want = relu_grad_cpu(&g, &act, 2);
        assert_eq!(out.data, want.data, "relu_grad {act_shape:?}");
    }
    // One row per image.
    let act = support::signed_sparse(&[2, 70], 1700, 0.3);
    let g = common::random(&[2, 70], 1701);
    let out = run1(|rec| {
        let ag = rec.ctx.upload(&act);
        let gg = rec.ctx.upload(&g);
        ops::relu_grad(rec, &gg, &ag, 1)
    });
    assert_eq!(
        out.data,
        relu_grad_cpu(&g, &act, 1).data,
        "relu_grad rows 1"
    );
}

const POOL_2: MaxPool2d = MaxPool2d {
    kernel: 2,
    stride: 2,
    padding: 0,
    ceil_mode: false,
};
const POOL_3: MaxPool2d = MaxPool2d {
    kernel: 3,
    stride: 2,
    padding: 1,
    ceil_mode: false,
};
/// GoogLeNet's and SqueezeNet's: the last window runs past the input's end.
const POOL_3_CEIL: MaxPool2d = MaxPool2d {
    kernel: 3,
    stride: 2,
    padding: 0,
    ceil_mode: true,
};

/// Max-pool inputs full of ties: values in {−1, −0.5, 0, 0.5, 1}, an all-zero block
/// (windows whose every element ties), a plane that is all negative (padding must never
/// win) and a plane that is all equal.
fn tie_input(shape: &[usize], seed: u64) -> Tensor {
    let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
    let mut x = map(&common::random(shape, seed), |v| (v * 2.0).round() / 2.0);
    for img in 0..n {
        for y in 0..h.min(5) {
            for xx in 0..w.min(5) {
                x.data[((img * c) * h + y) * w + xx] = 0.0;
            }
        }
        let neg = (img * c + 1) * h * w;
        for v in &mut x.data[neg..neg + h * w] {
            *v = -v.abs() - 0.25;
        }
        let flat = (img * c + 2) * h * w;
        for v in &mut x.data[flat..flat + h * w] {
            *v = 0.5;
        }
    }
    x
}

#[test]
fn max_pool2d_forward_with_ties_and_padding() {
    for (pool, shape) in [
        (POOL_2, [2, 5, 9, 11]),
        (POOL_3, [2, 5, 10, 13]),
        (POOL_3_CEIL, [2, 5, 10, 13]),
    ] {
        let x = tie_input(&shape, 1800);
        let out = run1(|rec| {
            let xg = rec.ctx.upload(&x);
            ops::max_pool2d(rec, &xg, &pool)
        });
        let want = cpu::max_pool2d(&x, &pool);
        assert_eq!(out.shape, want.shape);
        assert_eq!(out.data, want.data, "max_pool2d {pool:?} {shape:?}");
        // The all-negative plane stays negative: padding never wins.
        let (ho, wo) = pool.out_hw(shape[2], shape[3]);
        let plane = &out.data[ho * wo..2 * ho * wo];
        assert!(plane.iter().all(|&v| v < 0.0), "padding won a window");
    }
}

#[test]
fn max_pool2d_route_first_position_ties() {
    for (pool, shape) in [
        (POOL_2, [2, 5, 9, 11]),
        (POOL_3, [2, 5, 10, 13]),
        (POOL_3_CEIL, [2, 5, 10, 13]),
    ] {
        let x = tie_input(&shape, 1900);
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
        let (ho, wo) = pool.out_hw(h, w);
        for rows in [1usize, 2] {
            // Distinct relevance per output cell, so a wrong winner is visible.
            let r = common::random(&[n * rows, c, ho, wo], 2000 + rows as u64);
            // CPU: repeat each image `rows` times.
            let x_rep = Tensor::stack(
                &(0..n * rows)
                    .map(|row| x.index0(row / rows))
                    .collect::<Vec<_>>(),
            );
            for eps in [0.0f32, 1e-9] {
                let out = run1(|rec| {
                    let xg = rec.ctx.upload(&x);
                    let rg = rec.ctx.upload(&r);
                    ops::max_pool2d_route(rec, &xg, &rg, &pool, rows, eps)
                });
                let want = cpu::max_pool2d_route(&x_rep, &r, &pool, eps);
                assert_close(
                    &format!("max_pool2d_route {pool:?} {shape:?} rows {rows} eps {eps:e}"),
                    &out,
                    &want,
                    REL_TOL,
                );
                // Routing moves values without arithmetic except where windows
                // overlap (3×3/2): exact for the 2×2/2 pool.
                if pool == POOL_2 {
                    assert_eq!(out.data, want.data);
                }
            }
        }
    }
    // Explicit first-position check: a 2×2 window of equal values routes to its
    // top-left element; an all-zero 3×3 window with padding routes to the first
    // in-image element.
    let x = Tensor::new(vec![1, 1, 2, 2], vec![0.0; 4]);
    let r = Tensor::new(vec![1, 1, 1, 1], vec![3.0]);
    let out = run1(|rec| {
        let xg = rec.ctx.upload(&x);
        let rg = rec.ctx.upload(&r);
        ops::max_pool2d_route(rec, &xg, &rg, &POOL_2, 1, 1e-9)
    });
    assert_eq!(out.data, vec![3.0, 0.0, 0.0, 0.0]);
    let x = Tensor::new(vec![1, 1, 3, 3], vec![0.0; 9]);
    let r = Tensor::new(vec![1, 1, 2, 2], vec![1.0, 2.0, 4.0, 8.0]);
    let out = run1(|rec| {
        let xg = rec.ctx.upload(&x);
        let rg = rec.ctx.upload(&r);
        ops::max_pool2d_route(rec, &xg, &rg, &POOL_3, 1, 0.0)
    });
    // Windows start at (−1,−1), (−1,1), (1,−1), (1,1): first in-image elements
    // (0,0), (0,1), (1,0), (1,1).
    assert_eq!(out.data, vec![1.0, 2.0, 0.0, 4.0, 8.0, 0.0, 0.0, 0.0, 0.0]);
}

#[test]
fn avg_pool2d_forward_and_gradient() {
    let adaptive = |out| AvgPool2d::Adaptive { out };
    let window = |kernel, stride, padding, ceil_mode, count_include_pad| AvgPool2d::Window {
        kernel,
        stride,
        padding,
        ceil_mode,
        count_include_pad,
    };
    // Adaptive: non-divisible bins, an axis smaller than the output (overlapping bins),
    // the identity and the global pool. Windowed: DenseNet's transition (2/2), padded
    // windows with and without the padding in the divisor, ceil mode with a last window
    // that runs past the input.
    let cases: [([usize; 4], AvgPool2d); 9] = [
        ([2, 5, 10, 13], adaptive((7, 7))),
        ([2, 3, 9, 6], adaptive((7, 7))),
        ([2, 5, 7, 7], adaptive((7, 7))),
        ([2, 67, 3, 4], adaptive((1, 1))),
        ([2, 4, 13, 10], adaptive((2, 3))),
        ([2, 6, 8, 9], window(2, 2, 0, false, true)),
        ([2, 3, 9, 7], window(3, 2, 1, false, true)),
        ([2, 3, 9, 7], window(3, 2, 1, false, false)),
        ([2, 3, 10, 8], window(3, 2, 1, true, false)),
    ];
    for (i, (shape, pool)) in cases.into_iter().enumerate() {
        let x = common::random(&shape, 2100 + i as u64);
        let rows = 2 * shape[0]; // gradient with two seeds per image
        let out_hw = pool.out_hw(shape[2], shape[3]);
        let g = common::random(&[rows, shape[1], out_hw.0, out_hw.1], 2200 + i as u64);
        let [fwd, grad]: [Tensor; 2] = run(|rec| {
            let xg = rec.ctx.upload(&x);
            let gg = rec.ctx.upload(&g);
            vec![
                ops::avg_pool2d(rec, &xg, &pool),
                ops::avg_pool2d_grad(rec, &gg, &pool, (shape[2], shape[3])),
            ]
        })
        .try_into()
        .unwrap();
        assert_close(
            &format!("avg_pool2d {shape:?} {pool:?}"),
            &fwd,
            &cpu::avg_pool2d(&x, &pool),
            REL_TOL,
        );
        assert_close(
            &format!("avg_pool2d_grad {pool:?} -> {shape:?}"),
            &grad,
            &cpu::avg_pool2d_backward(&g, &pool, (shape[2], shape[3])),
            REL_TOL,
        );
    }
}

#[test]
fn concat_and_channel_slices_match_reference() {
    let parts = [
        common::random(&[2, 3, 5, 6], 2300),
        common::random(&[2, 1, 5, 6], 2301),
        common::random(&[2, 4, 5, 6], 2302),
    ];
    let r = common::random(&[4, 8, 5, 6], 2303);
    let got = run(|rec| {
        let ups: Vec<_> = parts.iter().map(|t| rec.ctx.upload(t)).collect();
        let refs: Vec<_> = ups.iter().collect();
        let rg = rec.ctx.upload(&r);
        vec![
            ops::concat_channels(rec, &refs),
            ops::channel_slice(rec, &rg, 0, 3),
            ops::channel_slice(rec, &rg, 3, 1),
            ops::channel_slice(rec, &rg, 4, 4),
        ]
    });
    let refs: Vec<&Tensor> = parts.iter().collect();
    let joined = cpu::concat_channels(&refs);
    assert_eq!(got[0].shape, vec![2, 8, 5, 6]);
    assert_eq!(got[0].data, joined.data, "concat");
    for (k, (offset, count)) in [(0, 3), (3, 1), (4, 4)].into_iter().enumerate() {
        let want = cpu::channel_slice(&r, offset, count);
        assert_eq!(got[k + 1].data, want.data, "slice {offset}+{count}");
    }
    // The slices partition the signal: concatenated again they are the signal.
    let slices: Vec<&Tensor> = got[1..].iter().collect();
    assert_eq!(cpu::concat_channels(&slices).data, r.data);
}

#[test]
fn softmax_rows() {
    for (i, (rows, classes, scale)) in [(3, 10, 10.0f32), (2, 1003, 4.0), (1, 1, 1.0)]
        .into_iter()
        .enumerate()
    {
        let logits = map(&common::random(&[rows, classes], 2300 + i as u64), |v| {
            v * scale
        });
        let out = run1(|rec| {
            let lg = rec.ctx.upload(&logits);
            ops::softmax(rec, &lg)
        });
        assert_close(
            &format!("softmax [{rows},{classes}]"),
            &out,
            &cpu::softmax(&logits),
            REL_TOL,
        );
    }
}

/// Runs top_k on the GPU and returns `(top, target)` as host vectors.
fn gpu_top_k(scores: &Tensor, first: &[u32], k: usize) -> (Vec<usize>, Vec<usize>) {
    let ctx = common::gpu();
    let mut rec = Recorder::new(ctx);
    let sg = ctx.upload(scores);
    let ci = ops::top_k(&mut rec, &sg, first, k);
    rec.submit();
    drop(rec);
    let top = ctx.read_raw(&ci.top, ci.rows * ci.k).unwrap();
    let target = ctx.read_raw(&ci.target, ci.rows).unwrap();
    (
        top.into_iter().map(|v| v as usize).collect(),
        target.into_iter().map(|v| v as usize).collect(),
    )
}

#[test]
fn top_k_descending_ties_to_lower_index_and_forced_first() {
    let classes = 12;
    let mut scores = common::random(&[5, classes], 2400);
    // Row 1: a three-way tie for the maximum and a tie below it.
    for (c, v) in [(2, 1.5), (5, 1.5), (9, 1.5), (0, 0.4), (11, 0.4)] {
        scores.data[classes + c] = v;
    }
    // Row 4: every score equal.
    for v in &mut scores.data[4 * classes..] {
        *v = -0.25;
    }
    let row = |r: usize| &scores.data[r * classes..(r + 1) * classes];
    let argmin = |r: usize| {
        (0..classes)
            .min_by(|&a, &b| row(r)[a].total_cmp(&row(r)[b]))
            .unwrap()
    };
    // Forced classes: row 2 the lowest-scoring class, row 3 its own top class (must
    // not appear twice), row 4 the last class of an all-tie row.
    let top_of_3 = cpu::top_k(row(3), 1)[0];
    let first = [NO_CLASS, NO_CLASS, argmin(2) as u32, top_of_3 as u32, 11];
    for k in [1usize, 3, classes] {
        let (top, target) = gpu_top_k(&scores, &first, k);
        for r in 0..5 {
            let want = if first[r] == NO_CLASS {
                cpu::top_k(row(r), k)
            } else {
                comparative_classes(row(r), first[r] as usize, k)
            };
            assert_eq!(
                &top[r * k..(r + 1) * k],
                want.as_slice(),
                "top_k k={k} row {r}"
            );
            assert_eq!(target[r], want[0], "target k={k} row {r}");
        }
    }
    let (top, _) = gpu_top_k(&scores, &first, 3);
    assert_eq!(&top[3..6], &[2, 5, 9], "ties go to the lower index");
    assert_eq!(
        &top[12..15],
        &[11, 0, 1],
        "forced class first, then ties in order"
    );
}

#[test]
fn one_hot_rows() {
    let classes = 1003;
    let class_of_row: [u32; 5] = [0, 1002, 7, 7, 500];
    let ctx = common::gpu();
    let mut rec = Recorder::new(ctx);
    let buf = ctx.constant_buffer(
        bytemuck::cast_slice(&class_of_row),
        wgpu::BufferUsages::STORAGE,
    );
    let out = ops::one_hot(&mut rec, &buf, class_of_row.len(), classes);
    rec.submit();
    drop(rec);
    let out = ctx.read(&out).unwrap();
    assert_eq!(out.shape, vec![5, classes]);
    let mut want = vec![0.0f32; 5 * classes];
    for (r, &c) in class_of_row.iter().enumerate() {
        want[r * classes + c as usize] = 1.0;
    }
    assert_eq!(out.data, want);
}

#[test]
fn min_max_per_image() {
    // 3·11·13 = 429 elements per image (more than one pass of 256 threads); image 1 is
    // shifted to be all positive, so its minimum is not 0 or negative.
    let mut a = common::random(&[3, 3, 11, 13], 2500);
    let per = 3 * 11 * 13;
    for v in &mut a.data[per..2 * per] {
        *v = *v * 0.5 + 2.0;
    }
    for v in &mut a.data[2 * per..] {
        *v = *v * 0.5 - 3.0;
    }
    let out = run1(|rec| {
        let ag = rec.ctx.upload(&a);
        ops::min_max(rec, &ag)
    });
    assert_eq!(out.shape, vec![3, 2]);
    for i in 0..3 {
        let img = &a.data[i * per..(i + 1) * per];
        let lo = img.iter().fold(f32::INFINITY, |m, &v| m.min(v));
        let hi = img.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        assert_eq!(out.data[2 * i], lo, "min of image {i}");
        assert_eq!(out.data[2 * i + 1], hi, "max of image {i}");
    }
}

#[test]
fn sum_and_count_nonzero_per_image() {
    // a and b have different sizes per image (the shift statistics read R and C).
    let a = uniform(&[2, 5, 7, 9], 2600, -0.2, 1.0);
    let b = support::signed_sparse(&[2, 13, 9, 10], 2601, 0.4);
    let out = run1(|rec| {
        let ag = rec.ctx.upload(&a);
        let bg = rec.ctx.upload(&b);
        ops::sum_and_count_nonzero(rec, &ag, &bg)
    });
    assert_eq!(out.shape, vec![2, 2]);
    let (pa, pb) = (a.numel() / 2, b.numel() / 2);
    for i in 0..2 {
        let sum: f64 = a.data[i * pa..(i + 1) * pa].iter().map(|&v| v as f64).sum();
        let mass: f64 = a.data[i * pa..(i + 1) * pa]
            .iter()
            .map(|&v| (v as f64).abs())
            .sum();
        let count = b.data[i * pb..(i + 1) * pb]
            .iter()
            .filter(|&&v| v != 0.0)
            .count();
        let err = (out.data[2 * i] as f64 - sum).abs() / mass;
        println!("sum_and_count_nonzero image {i}: |sum err|/mass = {err:.3e}");
        assert!(
            err <= REL_TOL,
            "sum of image {i}: {} vs {sum}",
            out.data[2 * i]
        );
        assert_eq!(out.data[2 * i + 1], count as f32, "count of image {i}");
        assert!(count > 0 && count < pb);
    }
}

#[test]
fn reductions_over_many_chunks_per_image() {
    // Images large enough for several stage-1 workgroups per image (16384 elements
    // each), with a and b of different sizes; uneven last chunks.
    let a = uniform(&[2, 9, 71, 80], 2700, -0.3, 1.0);
    let b = support::signed_sparse(&[2, 13, 67, 75], 2701, 0.3);
    let (stats, bounds) = {
        let out = run(|rec| {
            let ag = rec.ctx.upload(&a);
            let bg = rec.ctx.upload(&b);
            vec![
                ops::sum_and_count_nonzero(rec, &ag, &bg),
                ops::min_max(rec, &ag),
            ]
        });
        (out[0].clone(), out[1].clone())
    };
    let (pa, pb) = (a.numel() / 2, b.numel() / 2);
    assert!(pa > 3 * 16384 && pb > 3 * 16384);
    for i in 0..2 {
        let img = &a.data[i * pa..(i + 1) * pa];
        let sum: f64 = img.iter().map(|&v| v as f64).sum();
        let mass: f64 = img.iter().map(|&v| (v as f64).abs()).sum();
        let err = (stats.data[2 * i] as f64 - sum).abs() / mass;
        assert!(err <= REL_TOL, "sum of image {i}: rel err {err:e}");
        let count = b.data[i * pb..(i + 1) * pb]
            .iter()
            .filter(|&&v| v != 0.0)
            .count();
        assert_eq!(stats.data[2 * i + 1], count as f32, "count of image {i}");
        let lo = img.iter().fold(f32::INFINITY, |m, &v| m.min(v));
        let hi = img.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        assert_eq!(
            (bounds.data[2 * i], bounds.data[2 * i + 1]),
            (lo, hi),
            "bounds of image {i}"
        );
    }
}

#[test]
fn conv_geometry_out_hw_matches_reference_shapes() {
    // The GPU dispatchers size their outputs with ConvGeometry::out_hw; make sure it
    // agrees with the reference's floor-mode sizes on every case above.
    for case in CONV_CASES {
        let (n, ci, h, w, co, kh, kw, s, p) = case;
        let g = ConvGeometry {
            c_out: co,
            c_in: ci,
            kh,
            kw,
            stride: s,
            padding: p,
        };
        let x = Tensor::zeros(&[n, ci, h, w]);
        let y = cpu::conv2d(&x, &Tensor::zeros(&[co, ci, kh, kw]), None, s, p);
        assert_eq!((y.shape[2], y.shape[3]), g.out_hw(h, w), "{case:?}");
    }
}

/// Runs convolution case `case` with f16 weights on `ctx` (forward with ReLU and data
/// gradient of random inputs drawn from `seed`), with what f32 arithmetic gives on the
/// f16-rounded weights: `(y, dx, want_y, want_dx)`.
fn f16_weight_conv(
    ctx: &GpuContext,
    case: &ConvCase,
    seed: u64,
) -> (GpuTensor, GpuTensor, Tensor, Tensor) {
    let &(n, ci, h, w, co, ..) = case;
    let conv = conv_layer(case, seed, true);
    let g = conv.geometry();
    let (ho, wo) = g.out_hw(h, w);
    let x = common::random(&[n, ci, h, w], seed + 100);
    let s = common::random(&[n, co, ho, wo], seed + 200);
    let gc = GpuConv::upload(ctx, &conv);
    assert_eq!(gc.weight.dtype, rsp::gpu::DType::F16);
    assert_eq!(gc.weight.bytes(), conv.weight.numel() as u64 * 2);
    let mut rec = Recorder::new(ctx);
    let (xg, sg) = (ctx.upload(&x), ctx.upload(&s));
    let y = ops::conv2d(&mut rec, &xg, &gc, true);
    let dx = ops::conv2d_dgrad(&mut rec, &sg, &gc.weight, &g, (h, w), ops::Weights::Signed);
    rec.submit();
    drop(rec);
    let rounded = common::round_to_f16(&conv.weight);
    let want_y = cpu::relu(&cpu::conv2d(
        &x,
        &rounded,
        conv.bias.as_deref(),
        g.stride,
        g.padding,
    ));
    let want_dx = cpu::conv2d_dgrad(&s, &rounded, g.stride, g.padding, (h, w));
    (y, dx, want_y, want_dx)
}

/// With weights stored in f16 (`--weights-dtype f16`), convolution forward, its data
/// gradient, the linear layer and its gradient compute exactly what f32 arithmetic
/// gives on the f16-rounded weights: only storage changes, accumulation stays f32.
#[test]
fn f16_weights_match_the_reference_on_rounded_weights() {
    let ctx = common::gpu_f16_weights();
    for (i, case) in CONV_CASES.iter().enumerate() {
        let (y, dx, want_y, want_dx) = f16_weight_conv(ctx, case, 1300 + 10 * i as u64);
        let y = ctx.read(&y).unwrap();
        assert_close(&format!("f16 conv2d {case:?}"), &y, &want_y, REL_TOL);
        let dx = ctx.read(&dx).unwrap();
        assert_close(
            &format!("f16 conv2d_dgrad {case:?}"),
            &dx,
            &want_dx,
            REL_TOL,
        );
    }
    // An odd element count (the last f16 shares its 32-bit word with padding).
    let (rows, out_f, in_f) = (3, 7, 301);
    let l = linear_layer(out_f, in_f, 1600);
    let x = common::random(&[rows, in_f], 1601);
    let g = common::random(&[rows, out_f], 1602);
    let gl = GpuLinear::upload(ctx, &l);
    assert_eq!(gl.chunks[0].weight.dtype, rsp::gpu::DType::F16);
    let mut rec = Recorder::new(ctx);
    let (xg, gg) = (ctx.upload(&x), ctx.upload(&g));
    let y = ops::linear(&mut rec, &xg, &gl, false);
    let gx = ops::linear_grad(&mut rec, &gg, &gl);
    rec.submit();
    drop(rec);
    let rounded = Linear {
        weight: common::round_to_f16(&l.weight),
        bias: l.bias.clone(),
    };
    let y = ctx.read(&y).unwrap();
    assert_close("f16 linear", &y, &cpu::linear(&x, &rounded), REL_TOL);
    let gx = ctx.read(&gx).unwrap();
    assert_close(
        "f16 linear_grad",
        &gx,
        &cpu::linear_backward_input(&g, &rounded),
        REL_TOL,
    );
}

/// Under `--precision f16` a convolution's output is an f16 activation: the f32 result
/// on f16-rounded weights, rounded once to f16 (within one f16 rounding of it, as the
/// f32 sums of the GPU and the CPU may round to neighbouring halves), and its data
/// gradient keeps the f32 type of the gradient it receives.
#[test]
fn f16_precision_stores_activations_as_rounded_f32_results() {
    let ctx = common::gpu_f16();
    assert_eq!(ctx.activation_dtype(), rsp::gpu::DType::F16);
    for (i, case) in CONV_CASES.iter().enumerate() {
        let (y, dx, want_y, want_dx) = f16_weight_conv(ctx, case, 1700 + 10 * i as u64);
        assert_eq!(y.dtype, rsp::gpu::DType::F16);
        assert_eq!(y.bytes(), y.numel() as u64 * 2);
        assert_eq!(dx.dtype, rsp::gpu::DType::F32);
        let y = ctx.read(&y).unwrap();
        for (k, (&got, &want)) in y.data.iter().zip(&want_y.data).enumerate() {
            assert_eq!(
                got,
                half::f16::from_f32(got).to_f32(),
                "{case:?} [{k}] not an f16"
            );
            let ulp = half::f16::from_f32(want.abs()).to_f32() * 2f32.powi(-10);
            assert!(
                (got - want).abs() <= ulp.max(6e-8) + 1e-5 * want.abs(),
                "{case:?} [{k}]: {got} vs {want}"
            );
        }
        let dx = ctx.read(&dx).unwrap();
        assert_close(
            &format!("f16 precision dgrad {case:?}"),
            &dx,
            &want_dx,
            REL_TOL,
        );
    }
}
