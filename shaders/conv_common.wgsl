// Geometry shared by the three convolution kernels (prepended to each of them).
// A convolution maps an input [C_in, H, W] to an output [C_out, Ho, Wo] with a
// kh×kw kernel, stride and zero padding; `taps` is C_in·kh·kw, one row of the weight.
// Kernel size and stride are pipeline constants, so the index arithmetic of the
// implicit GEMM divides by compile-time values (the uniform copies are informational).

override KH: u32 = 3u;
override KW: u32 = 3u;
override STRIDE: u32 = 1u;

struct ConvParams {
    c_in: u32,
    h: u32,
    w: u32,
    c_out: u32,
    ho: u32,
    wo: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    // split-K factor of the GEMM (1: no split)
    k_splits: u32,
    _pad1: u32,
}

@group(0) @binding(5) var<uniform> p: ConvParams;

fn gemm_k_splits() -> u32 {
    return max(p.k_splits, 1u);
}

fn taps_in() -> u32 {
    return p.c_in * KH * KW;
}

fn taps_out() -> u32 {
    return p.c_out * KH * KW;
}

// Offset within one input image of the element that kernel tap `t` = (c, u, v) reads
// for output pixel (oy, ox); -1 where the tap falls into the zero padding.
fn input_tap(t: u32, oy: u32, ox: u32) -> i32 {
    let kk = KH * KW;
    let c = t / kk;
    let u = (t % kk) / KW;
    let v = t % KW;
    let iy = i32(oy * STRIDE + u) - i32(p.pad);
    let ix = i32(ox * STRIDE + v) - i32(p.pad);
    if (iy < 0 || ix < 0 || iy >= i32(p.h) || ix >= i32(p.w)) {
        return -1;
    }
    return i32((c * p.h + u32(iy)) * p.w + u32(ix));
}

// Offset within one output image of the element that input pixel (y, x) meets through
// kernel tap (o, u, v) in the transposed convolution; -1 where there is none.
fn output_tap(o: u32, u: u32, v: u32, y: u32, x: u32) -> i32 {
    let ty = i32(y + p.pad) - i32(u);
    let tx = i32(x + p.pad) - i32(v);
    if (ty < 0 || tx < 0) {
        return -1;
    }
    if (u32(ty) % STRIDE != 0u || u32(tx) % STRIDE != 0u) {
        return -1;
    }
    let oy = u32(ty) / STRIDE;
    let ox = u32(tx) / STRIDE;
    if (oy >= p.ho || ox >= p.wo) {
        return -1;
    }
    return i32((o * p.ho + oy) * p.wo + ox);
}
