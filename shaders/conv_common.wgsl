// Geometry shared by the three convolution kernels (prepended to each of them).
// A convolution maps an input [C_in, H, W] to an output [C_out, Ho, Wo] with a
// kh×kw kernel, stride and zero padding; `taps` is C_in·kh·kw, one row of the weight.
// Kernel size and stride are pipeline constants, so the index arithmetic of the
// implicit GEMM divides by compile-time values (the uniform copies are informational).

// The convolution op files' MODE (`ops::gemm::ConvMode` in Rust): a plain convolution,
// RSP's sections (two problems per image), the z^B rule's bounded input.
const MODE_PLAIN: u32 = 0u;
const MODE_SECTIONS: u32 = 1u;
const MODE_ZBOX: u32 = 2u;

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
    // a pass's count of weight sets, images or problems (Winograd transforms)
    count: u32,
}

@group(0) @binding(5) var<uniform> p: ConvParams;

fn gemm_k_splits() -> u32 {
    return max(p.k_splits, 1u);
}

fn taps_in() -> u32 {
    return p.c_in * KH * KW;
}
