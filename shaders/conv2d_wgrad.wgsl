// Weight-shaped correlation of a relevance (or gradient) with the layer input, per
// image, as an implicit GEMM: G[z, o, t] = Σ_pixel A[o, pixel] · B[pixel, t].
// MODE 0: weight gradient of image z, wgrad(x, S).
// The long K axis (all output pixels) is split across workgroups when the output tile
// grid alone would leave the GPU idle (see `ops::conv::wgrad_splits`).
// MODE 1: RSP channel attribution maps with purging. z = 2·image + section; A is the
//         section's part of R (pos(R) for the target, neg(R) for the hostile section),
//         B is pos(x), so a unit only ever contributes to its own section's map.

override MODE: u32 = 0u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> s: array<f32>;
@group(0) @binding(2) var<storage, read> unused_a: array<f32>;
@group(0) @binding(3) var<storage, read> unused_b: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn image_of(z: u32) -> u32 {
    if (MODE == 1u) {
        return z / 2u;
    }
    return z;
}

fn gemm_m() -> u32 {
    return p.c_out;
}

fn gemm_n() -> u32 {
    return taps_in();
}

fn gemm_k() -> u32 {
    return p.ho * p.wo;
}

fn load_a(z: u32, m: u32, k: u32) -> f32 {
    let r = s[(image_of(z) * p.c_out + m) * p.ho * p.wo + k];
    if (MODE == 1u) {
        if (z % 2u == 0u) {
            return max(r, 0.0);
        }
        return max(-r, 0.0);
    }
    return r;
}

fn load_b(z: u32, k: u32, n: u32) -> f32 {
    let off = input_tap(n, k / p.wo, k % p.wo);
    if (off < 0) {
        return 0.0;
    }
    let v = x[image_of(z) * p.c_in * p.h * p.w + u32(off)];
    if (MODE == 1u) {
        return max(v, 0.0);
    }
    return v;
}

// With split-K, `out` holds one partial map per (z, split), summed in split order by
// elementwise.wgsl's SPLIT_SUM.
fn store_c(z: u32, split: u32, m: u32, n: u32, acc: f32) {
    out[((z * gemm_k_splits() + split) * p.c_out + m) * taps_in() + n] = acc;
}
