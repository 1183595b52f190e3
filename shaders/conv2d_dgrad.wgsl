// Transposed convolution (adjoint w.r.t. the input) as an implicit GEMM:
// C[z, i, pixel] = Σ_(o,u,v) A[i, (o,u,v)] · B[(o,u,v), pixel].
// MODE 0: data gradient, out = convT(S, W); with POS_WEIGHTS, convT(S, pos(W)) (LRP-α1β0),
//         with NEG_WEIGHTS, convT(S, min(W, 0)) (RAP).
// MODE 1: RSP sectional redistribution and combination. K holds both sections, the
//         hostile one negated, so one pass gives convT(Q⁺, G⁺) − convT(Q⁻, G⁻); the
//         epilogue multiplies by pos(x) and FACTOR (2 for kernels larger than 1×1):
//         C = FACTOR · (C⁺ − C⁻). The purging shift follows in rsp_shift.wgsl.
// MODE 2: RSP first layer (z^B). M holds three stacked copies of the input channels
//         with weights (W, pos(W), min(W, 0)); the epilogue scales them by (x, −L, −H)
//         into [N, 3, C_in, H, W], which zb_sum adds up.

override MODE: u32 = 0u;
override FACTOR: f32 = 1.0;
override POS_WEIGHTS: bool = false;
override NEG_WEIGHTS: bool = false;

@group(0) @binding(0) var<storage, read> s: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<weight_t>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> bounds: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn gemm_m() -> u32 {
    if (MODE == 2u) {
        return 3u * p.c_in;
    }
    return p.c_in;
}

fn gemm_n() -> u32 {
    return p.h * p.w;
}

fn gemm_k() -> u32 {
    if (MODE == 1u) {
        return 2u * taps_out();
    }
    return taps_out();
}

fn load_a(z: u32, m: u32, k: u32) -> f32 {
    let kk = KH * KW;
    let t = k % taps_out();
    let o = t / kk;
    let uv = t % kk;
    if (MODE == 1u) {
        let section = k / taps_out();
        let g = f32(w[((z * 2u + section) * p.c_out + o) * taps_in() + m * kk + uv]);
        if (section == 0u) {
            return g;
        }
        return -g;
    }
    if (MODE == 2u) {
        let section = m / p.c_in;
        let v = f32(w[o * taps_in() + (m % p.c_in) * kk + uv]);
        if (section == 0u) {
            return v;
        }
        if (section == 1u) {
            return max(v, 0.0);
        }
        return min(v, 0.0);
    }
    let v = f32(w[o * taps_in() + m * kk + uv]);
    if (POS_WEIGHTS) {
        return max(v, 0.0);
    }
    if (NEG_WEIGHTS) {
        return min(v, 0.0);
    }
    return v;
}

fn load_b(z: u32, k: u32, n: u32) -> f32 {
    let kk = KH * KW;
    let t = k % taps_out();
    let o = t / kk;
    let u = (t % kk) / KW;
    let v = t % KW;
    let off = output_tap(o, u, v, n / p.w, n % p.w);
    if (off < 0) {
        return 0.0;
    }
    var row = z;
    if (MODE == 1u) {
        row = z * 2u + k / taps_out();
    }
    return s[row * p.c_out * p.ho * p.wo + u32(off)];
}

fn store_c(z: u32, split: u32, m: u32, n: u32, acc: f32) {
    let hw = p.h * p.w;
    if (MODE == 0u) {
        out[(z * p.c_in + m) * hw + n] = acc;
        return;
    }
    if (MODE == 1u) {
        let xv = max(x[(z * p.c_in + m) * hw + n], 0.0);
        out[(z * p.c_in + m) * hw + n] = FACTOR * (xv * acc);
        return;
    }
    let section = m / p.c_in;
    let i = m % p.c_in;
    var coef = x[(z * p.c_in + i) * hw + n];
    if (section > 0u) {
        coef = -bounds[z * 2u + section - 1u];
    }
    out[((z * 3u + section) * p.c_in + i) * hw + n] = coef * acc;
}
