//! Split-fp32 proven on the CPU: the arithmetic of `rsp::ops::split_fp32` (the planned
//! cooperative-matrix kernel) emulated on the real GEMM operands of every convolution
//! of the golden cases, against an f64 sum, next to the f32 fallback's own error.
//!
//! Problems, per conv layer of the CPU reference forward pass:
//! - `fwd`: A = weights `[C_out, C_in·kh·kw]`, B = im2col of the layer's input;
//! - `dgrad`: A = weightsᵀ, B = an upstream gradient `[C_out, Ho·Wo]` (before col2im);
//!   the layer's output activation stands in for the gradient;
//! - `wgrad`: A = the same stand-in gradient, B = im2colᵀ (K = Ho·Wo, the longest sums).
//!
//! Per output, `tol` = |x − ref| / (|ref| + median|ref|) (the project's tolerance
//! metric) and `rel` = |x − ref| / |ref| over |ref| ≥ 1e-3 · max|ref|; each pooled over
//! all problems. `cargo test --release --test gpu split_fp32:: -- --nocapture` prints the
//! table `docs/split-fp32.md` quotes.

use crate::common;
use half::f16;

use rsp::gpu::GpuContext;
use rsp::layers::Conv2d;
use rsp::models::graph::Layer;
use rsp::ops::conv::{conv2d_planes, GemmKernel, GpuConv};
use rsp::ops::split_fp32::{gemm, gemm_f32, gemm_f64, pack, Axis, Matrix, Order, Scheme, UnitSum};
use rsp::reference::model as refmodel;
use rsp::{Model, Tensor};

struct Problem {
    name: String,
    a: Matrix,
    b: Matrix,
}

/// im2col of `x` `[1, C, H, W]`: `[C·kh·kw, Ho·Wo]`, rows in the weights' `(c, u, v)`
/// order, zero padding.
fn im2col(x: &Tensor, kh: usize, kw: usize, stride: usize, pad: usize) -> Matrix {
    let (c, h, w) = (x.shape[1], x.shape[2], x.shape[3]);
    let ho = (h + 2 * pad - kh) / stride + 1;
    let wo = (w + 2 * pad - kw) / stride + 1;
    let mut out = Vec::with_capacity(c * kh * kw * ho * wo);
    for ci in 0..c {
        for u in 0..kh {
            for v in 0..kw {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let (iy, ix) = (
                            (oy * stride + u) as isize - pad as isize,
                            (ox * stride + v) as isize - pad as isize,
                        );
                        let inside = iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w;
                        out.push(if inside {
                            x.data[(ci * h + iy as usize) * w + ix as usize]
                        } else {
                            0.0
                        });
                    }
                }
            }
        }
    }
    Matrix::new(c * kh * kw, ho * wo, out)
}

/// The three GEMM problems of every convolution of a golden case.
fn problems(case: &str) -> Vec<Problem> {
    let file = common::golden(case);
    let model = Model::from_tensors(&file).expect("golden model");
    let input = file.get("input").expect("golden input");
    assert_eq!(input.shape[0], 1, "one image");
    let trace = refmodel::forward(&model, input);
    let mut out = Vec::new();
    for (i, node) in model.graph.nodes[..model.graph.forward_len()]
        .iter()
        .enumerate()
    {
        let Layer::Conv { conv, .. } = &node.layer else {
            continue;
        };
        let x = &trace.acts[node.inputs[0]];
        let y = &trace.acts[i + 1];
        let (kh, kw) = conv.kernel();
        let weights = Matrix::new(
            conv.out_channels(),
            conv.in_channels() * kh * kw,
            conv.weight.data.clone(),
        );
        let cols = im2col(x, kh, kw, conv.stride, conv.padding);
        let grad = Matrix::new(y.shape[1], y.shape[2] * y.shape[3], y.data.clone());
        let name = format!("{case}/{}", node.name);
        out.push(Problem {
            name: format!("{name} fwd"),
            a: weights.clone(),
            b: cols.clone(),
        });
        out.push(Problem {
            name: format!("{name} dgrad"),
            a: weights.transpose(),
            b: grad.clone(),
        });
        out.push(Problem {
            name: format!("{name} wgrad"),
            a: grad,
            b: cols.transpose(),
        });
    }
    out
}

/// The first `shaders/gemm_coop.wgsl` (replaced after commit 1bcda6a), emulated: 64×64×32 tiles, a scale per tile
/// and K step putting the tile's maximum in [2^14, 2^15), hi = the scaled value cut to
/// 11 significant bits (then f16), lo = f16(remainder · 2^11); per 32-deep step hi·hi
/// and (hi·lo, lo·hi per 16-step) in two zeroed accumulators, `t + u·2^-11`, unscaled
/// and added to C in f32.
fn old_skeleton(a: &Matrix, b: &Matrix) -> Matrix {
    const T: usize = 64;
    const BK: usize = 32;
    let (m, n, k) = (a.rows, b.cols, a.cols);
    let steps = k.div_ceil(BK);
    let exp_of = |max: f32| -> i32 {
        if max == 0.0 {
            0
        } else {
            (14 - (((max.to_bits() >> 23) & 0xff) as i32 - 127)).clamp(-126, 126)
        }
    };
    let tile_exps = |rows: usize, at: &dyn Fn(usize, usize) -> f32| -> Vec<i32> {
        let mut e = Vec::new();
        for t in 0..rows.div_ceil(T) {
            for s in 0..steps {
                let mut max = 0.0f32;
                for r in t * T..((t + 1) * T).min(rows) {
                    for kk in s * BK..((s + 1) * BK).min(k) {
                        max = max.max(at(r, kk).abs());
                    }
                }
                e.push(exp_of(max));
            }
        }
        e
    };
    let ea = tile_exps(m, &|r, kk| a.at(r, kk));
    let eb = tile_exps(n, &|c, kk| b.at(kk, c));
    let split = |v: f32, e: i32| -> (f32, f32) {
        let v = v * 2f32.powi(e);
        let hi = f32::from_bits(v.to_bits() & 0xffff_e000);
        (
            f16::from_f32(hi).to_f32(),
            f16::from_f32((v - hi) * 2048.0).to_f32(),
        )
    };
    let mut out = vec![0.0f32; m * n];
    for r in 0..m {
        for c in 0..n {
            let mut acc = 0.0f32;
            for s in 0..steps {
                let (xa, xb) = (ea[(r / T) * steps + s], eb[(c / T) * steps + s]);
                let (mut t, mut u) = (0.0f32, 0.0f32);
                for kk in (s * BK..((s + 1) * BK).min(k)).step_by(16) {
                    let ks = kk..(kk + 16).min(k);
                    let pairs: Vec<_> = ks
                        .map(|q| (split(a.at(r, q), xa), split(b.at(q, c), xb)))
                        .collect();
                    for ((ah, _), (bh, _)) in &pairs {
                        t += ah * bh;
                    }
                    for ((ah, _), (_, bl)) in &pairs {
                        u += ah * bl;
                    }
                    for ((_, al), (bh, _)) in &pairs {
                        u += al * bh;
                    }
                }
                t += u * 2f32.powi(-11);
                acc += (t * 2f32.powi(-xa)) * 2f32.powi(-xb);
            }
            out[r * n + c] = acc;
        }
    }
    Matrix::new(m, n, out)
}

/// One way of computing the GEMM.
#[derive(Clone, Copy)]
enum Method {
    F32,
    Split {
        scheme: Scheme,
        block: usize,
        order: Order,
    },
    Old,
}

const SEQ: Order = Order {
    unit: UnitSum::Sequential,
    flush: 0,
};
/// The specified order: the unit's accumulators restart every 32 k (two MMA steps) and
/// are added into f32 accumulators outside it.
const SPEC: Order = Order {
    unit: UnitSum::Sequential,
    flush: 2,
};
/// The same on the truncating model of NVIDIA's units.
const TRUNC: Order = Order {
    unit: UnitSum::Truncating,
    flush: 2,
};
const fn split(scheme: Scheme, block: usize, order: Order) -> Method {
    Method::Split {
        scheme,
        block,
        order,
    }
}
/// The chosen scheme as specified, and on the truncating model.
const CHOSEN: usize = 5;
const CHOSEN_TRUNC: usize = 6;

const METHODS: [(&str, Method); 11] = [
    ("f32 fallback (fma, ascending k)", Method::F32),
    ("f16 only /64, flush 32", split(Scheme::F16, 64, SPEC)),
    ("split2 /row, whole K", split(Scheme::SPLIT2, 1, SEQ)),
    ("split2 /64, whole K", split(Scheme::SPLIT2, 64, SEQ)),
    (
        "split2 /matrix, whole K",
        split(Scheme::SPLIT2, usize::MAX, SEQ),
    ),
    (
        "**split2 /64, flush 32** (chosen)",
        split(Scheme::SPLIT2, 64, SPEC),
    ),
    (
        "split2 /64, flush 32, truncating",
        split(Scheme::SPLIT2, 64, TRUNC),
    ),
    (
        "split2 /64, whole K, truncating",
        split(
            Scheme::SPLIT2,
            64,
            Order {
                unit: UnitSum::Truncating,
                flush: 0,
            },
        ),
    ),
    (
        "split2+lo·lo /64, flush 32",
        split(Scheme::SPLIT2_LOLO, 64, SPEC),
    ),
    (
        "split3 (6 products) /64, flush 32",
        split(Scheme::SPLIT3, 64, SPEC),
    ),
    ("old gemm_coop.wgsl", Method::Old),
];

/// Of an operand's nonzero values, how many have a subnormal (or flushed) hi or lo
/// plane after packing with `block`; and log2 of its widest magnitude ratio.
fn subnormals(m: &Matrix, axis: Axis, block: usize) -> (usize, usize, f64) {
    let p = pack(m, axis, block, 2);
    let tiny = |h: f16| h != f16::ZERO && !h.is_normal();
    let mut count = 0;
    let mut nonzero = 0;
    let (mut lo, mut hi) = (f32::INFINITY, 0.0f32);
    for (i, &v) in m.data.iter().enumerate() {
        if v == 0.0 {
            continue;
        }
        nonzero += 1;
        lo = lo.min(v.abs());
        hi = hi.max(v.abs());
        let (h, l) = (p.planes[0][i], p.planes[1][i]);
        if tiny(h) || tiny(l) || h == f16::ZERO {
            count += 1;
        }
    }
    let range = if nonzero > 0 {
        (hi / lo).log2() as f64
    } else {
        0.0
    };
    (count, nonzero, range)
}

fn run(method: Method, p: &Problem) -> Matrix {
    match method {
        Method::F32 => gemm_f32(&p.a, &p.b),
        Method::Split {
            scheme,
            block,
            order,
        } => {
            let pa = pack(&p.a, Axis::Rows, block, scheme.planes);
            let pb = pack(&p.b, Axis::Cols, block, scheme.planes);
            gemm(&pa, &pb, scheme, order)
        }
        Method::Old => old_skeleton(&p.a, &p.b),
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Per-output errors of `x` against `reference`: (tol metric, plain relative).
fn errors(x: &Matrix, reference: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let med = median(&mut reference.iter().map(|r| r.abs()).collect::<Vec<_>>());
    let max = reference.iter().fold(0.0f64, |m, r| m.max(r.abs()));
    let mut tol = Vec::with_capacity(reference.len());
    let mut rel = Vec::new();
    for (&v, &r) in x.data.iter().zip(reference) {
        let d = (v as f64 - r).abs();
        tol.push(d / (r.abs() + med).max(f64::MIN_POSITIVE));
        if r.abs() >= 1e-3 * max && r != 0.0 {
            rel.push(d / r.abs());
        }
    }
    (tol, rel)
}

#[derive(Default, Clone)]
struct Pool {
    tol: Vec<f64>,
    rel: Vec<f64>,
}

impl Pool {
    fn stats(&self) -> (f64, f64, f64, f64) {
        let worst = |v: &[f64]| v.iter().fold(0.0f64, |m, &e| m.max(e));
        (
            median(&mut self.tol.clone()),
            worst(&self.tol),
            median(&mut self.rel.clone()),
            worst(&self.rel),
        )
    }
}

#[test]
fn split_fp32_reaches_f32_accuracy_on_the_golden_convolutions() {
    let start = std::time::Instant::now();
    let problems: Vec<Problem> = common::GOLDEN_CASES
        .iter()
        .flat_map(|c| problems(c))
        .collect();
    let mut pools = vec![Pool::default(); METHODS.len()];
    println!("per problem: worst tol error of f32 | f16 | chosen | chosen, truncating");
    let (mut sub64, mut sub_matrix, mut nonzero, mut range) = (0, 0, 0, 0.0f64);
    for p in &problems {
        let reference = gemm_f64(&p.a, &p.b);
        for (m, axis) in [(&p.a, Axis::Rows), (&p.b, Axis::Cols)] {
            let (c64, nz, r) = subnormals(m, axis, 64);
            sub64 += c64;
            sub_matrix += subnormals(m, axis, usize::MAX).0;
            nonzero += nz;
            range = range.max(r);
        }
        let mut worst = Vec::new();
        for (pool, (_, method)) in pools.iter_mut().zip(METHODS) {
            let (tol, rel) = errors(&run(method, p), &reference);
            worst.push(tol.iter().fold(0.0f64, |m, &e| m.max(e)));
            pool.tol.extend(tol);
            pool.rel.extend(rel);
        }
        println!(
            "  {:<44} M {:>4} N {:>5} K {:>5}  {:.2e} | {:.2e} | {:.2e} | {:.2e}",
            p.name,
            p.a.rows,
            p.b.cols,
            p.a.cols,
            worst[0],
            worst[1],
            worst[CHOSEN],
            worst[CHOSEN_TRUNC]
        );
    }
    let outputs = pools[0].tol.len();
    println!(
        "\n{} problems, {outputs} outputs; errors against an f64 sum",
        problems.len()
    );
    println!("| method | tol median | tol worst | rel median | rel worst |");
    println!("|---|---|---|---|---|");
    let stats: Vec<_> = pools.iter().map(Pool::stats).collect();
    for ((name, _), s) in METHODS.iter().zip(&stats) {
        println!(
            "| {name} | {:.2e} | {:.2e} | {:.2e} | {:.2e} |",
            s.0, s.1, s.2, s.3
        );
    }
    println!(
        "operand values with a subnormal or zero plane: {sub64} of {nonzero} (scale /64), \
         {sub_matrix} (one scale per matrix); widest operand range 2^{range:.1}"
    );
    println!("emulated in {:.1} s", start.elapsed().as_secs_f64());

    let (f32s, f16s) = (stats[0], stats[1]);
    for i in [CHOSEN, CHOSEN_TRUNC] {
        let (name, s) = (METHODS[i].0, stats[i]);
        assert!(
            s.0 <= 2.0 * f32s.0,
            "{name}: median {:.2e}, f32 {:.2e}",
            s.0,
            f32s.0
        );
        assert!(
            s.1 <= 4.0 * f32s.1,
            "{name}: worst {:.2e}, f32 {:.2e}",
            s.1,
            f32s.1
        );
        assert!(s.1 <= 1e-5, "{name}: worst {:.2e}", s.1);
        assert!(
            s.2 <= 2.0 * f32s.2 && s.3 <= 4.0 * f32s.3,
            "{name}: plain relative error"
        );
    }
    // The check can fail: plain f16 inputs are far from f32 level.
    assert!(
        f16s.0 > 8.0 * f32s.0 && f16s.1 > 1e-5,
        "f16 median {:.2e}, worst {:.2e}",
        f16s.0,
        f16s.1
    );
}

/// Why a scale per block and not per matrix: the golden operands span at most 2^22
/// (no plane is subnormal either way), but relevance can span far more. One real
/// operand with its 64-column blocks moved 2^-16 apart each (2^-48 over four blocks)
/// underflows f16 under one scale per matrix, not under a scale per 64 columns
/// (errors measured per block of outputs, each against its own median).
#[test]
fn one_scale_per_matrix_loses_blocks_far_below_the_maximum() {
    let p = problems("vgg_tiny")
        .into_iter()
        .find(|p| p.name == "vgg_tiny/features.7 fwd")
        .expect("features.7");
    let mut b = p.b.clone();
    for r in 0..b.rows {
        for c in 0..b.cols {
            b.data[r * b.cols + c] *= 2f32.powi(-16 * (c / 64) as i32);
        }
    }
    let wide = Problem {
        name: "features.7 fwd, blocks 2^-16 apart".into(),
        a: p.a,
        b,
    };
    // Errors per 64-column block (each block its own median), worst over blocks.
    let reference = gemm_f64(&wide.a, &wide.b);
    let n = wide.b.cols;
    let worst = |method| {
        let x = run(method, &wide);
        let mut worst = 0.0f64;
        for c0 in (0..n).step_by(64) {
            let cols: Vec<usize> = (0..x.rows)
                .flat_map(|r| (c0..(c0 + 64).min(n)).map(move |c| r * n + c))
                .collect();
            let xs = Matrix::new(cols.len(), 1, cols.iter().map(|&i| x.data[i]).collect());
            let rs: Vec<f64> = cols.iter().map(|&i| reference[i]).collect();
            worst = errors(&xs, &rs).0.into_iter().fold(worst, f64::max);
        }
        worst
    };
    let f32_worst = worst(Method::F32);
    let (per64, per_matrix) = (
        worst(split(Scheme::SPLIT2, 64, SPEC)),
        worst(split(Scheme::SPLIT2, usize::MAX, SPEC)),
    );
    println!(
        "{}: worst tol error f32 {f32_worst:.2e}, split2 /64 {per64:.2e}, /matrix {per_matrix:.2e}",
        wide.name
    );
    assert!(per64 <= 4.0 * f32_worst && per64 <= 1e-5);
    assert!(per_matrix > 1e-3);
}

/// One operand as `gemm_planes.wgsl` wrote it: the block exponents and the planes of
/// problem 0, unpadded to `rows × cols`, and whether every padding element is zero.
struct GpuPlanes {
    exps: Vec<i32>,
    planes: Vec<Vec<u16>>,
    padding_zero: bool,
}

/// Decodes the words of one operand (one problem): `lines` scale blocks' worth of
/// header, then `planes` planes of `prows × pcols` f16, of which `rows × cols` hold
/// the matrix.
fn decode_planes(
    words: &[u32],
    (rows, cols): (usize, usize),
    (prows, pcols): (usize, usize),
    blocks: usize,
    planes: usize,
) -> GpuPlanes {
    let header = blocks.next_multiple_of(4);
    let half = |i: usize| (words[header + i / 2] >> (16 * (i % 2))) as u16;
    let mut padding_zero = true;
    let mut out = vec![Vec::with_capacity(rows * cols); planes];
    for (p, plane) in out.iter_mut().enumerate() {
        for r in 0..prows {
            for c in 0..pcols {
                let h = half(p * prows * pcols + r * pcols + c);
                if r < rows && c < cols {
                    plane.push(h);
                } else if h != 0 {
                    padding_zero = false;
                }
            }
        }
    }
    GpuPlanes {
        exps: words[..blocks].iter().map(|&w| w as i32).collect(),
        planes: out,
        padding_zero,
    }
}

fn assert_planes_match(name: &str, gpu: &GpuPlanes, cpu: &rsp::ops::split_fp32::Packed) {
    let blocks = cpu.exps.len();
    assert_eq!(gpu.exps[..blocks], cpu.exps[..], "{name}: block exponents");
    assert!(
        gpu.exps[blocks..].iter().all(|&e| e == 0),
        "{name}: padding blocks scaled"
    );
    assert!(gpu.padding_zero, "{name}: nonzero padding");
    for (p, (g, c)) in gpu.planes.iter().zip(&cpu.planes).enumerate() {
        let differ = g.iter().zip(c).filter(|(g, c)| **g != c.to_bits()).count();
        assert_eq!(
            differ,
            0,
            "{name}: plane {p}: {differ} of {} f16 differ",
            c.len()
        );
    }
}

/// Checks the GPU pack pass of `kernel` on `conv(x)` against `split_fp32::pack`.
fn check_pack_pass(ctx: &GpuContext, name: &str, conv: &Conv2d, x: &Tensor, kernel: GemmKernel) {
    let gpu_conv = GpuConv::upload(ctx, conv);
    let (a_words, b_words) = conv2d_planes(ctx, &ctx.upload(x), &gpu_conv, kernel)
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let (kh, kw) = conv.kernel();
    let a = Matrix::new(
        conv.out_channels(),
        conv.in_channels() * kh * kw,
        conv.weight.data.clone(),
    );
    let b = im2col(x, kh, kw, conv.stride, conv.padding);
    let planes = if kernel.split_planes() { 2 } else { 1 };
    let (rows, cols) = kernel.block;
    let kp = a.cols.next_multiple_of(32);
    let mp = a.rows.next_multiple_of(rows);
    let np = b.cols.next_multiple_of(cols);
    let gpu_a = decode_planes(&a_words, (a.rows, a.cols), (mp, kp), mp / 64, planes);
    let gpu_b = decode_planes(&b_words, (b.rows, b.cols), (kp, np), np / 64, planes);
    assert_planes_match(
        &format!("{name} A"),
        &gpu_a,
        &pack(&a, Axis::Rows, 64, planes),
    );
    assert_planes_match(
        &format!("{name} B"),
        &gpu_b,
        &pack(&b, Axis::Cols, 64, planes),
    );
}

/// The pack pass of the cooperative-matrix kernels (`gemm_planes.wgsl`) runs on any
/// adapter: on this one it must write the specification's block exponents and f16
/// planes bit for bit (both roundings through `pack2x16float`), with zero padding, for
/// the first convolution of every golden case and for an input whose 64-pixel blocks
/// lie 2^10 apart (so that the blocks' scales differ), in both plane layouts (split:
/// hi and lo, 64-column tiles; f16: hi only, 128-column tiles).
#[test]
fn gpu_pack_pass_writes_the_specified_planes() {
    let ctx = common::gpu();
    for kernel in ["coop-128x64-split", "coop-128x128-f16"] {
        let kernel = GemmKernel::parse(kernel).expect("a cooperative-matrix variant");
        for case in common::GOLDEN_CASES {
            let file = common::golden(case);
            let model = Model::from_tensors(&file).expect("golden model");
            let input = file.get("input").expect("golden input");
            let conv = model.graph.nodes[..model.graph.forward_len()]
                .iter()
                .find_map(|node| match &node.layer {
                    Layer::Conv { conv, .. } => Some(conv),
                    _ => None,
                })
                .expect("a convolution");
            check_pack_pass(ctx, &format!("{kernel} {case}"), conv, input, kernel);
            let mut spread = input.clone();
            let (h, w) = (spread.shape[2], spread.shape[3]);
            for (i, v) in spread.data.iter_mut().enumerate() {
                let pixel = i % (h * w);
                *v *= 2f32.powi(-10 * ((pixel / 64) % 4) as i32);
            }
            check_pack_pass(
                ctx,
                &format!("{kernel} {case} spread"),
                conv,
                &spread,
                kernel,
            );
        }
    }
}
