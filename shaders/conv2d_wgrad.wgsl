// Weight-shaped correlation of a relevance (or gradient) with the layer input, per
// image, as an implicit GEMM: G[z, o, t] = Σ_pixel A[o, pixel] · B[pixel, t].
// MODE 0: weight gradient of image z, wgrad(x, S).
// The long K axis (all output pixels) is split across workgroups when the output tile
// grid alone would leave the GPU idle (see `ops::conv::wgrad_splits`).
// MODE 1: RSP channel attribution maps with purging. z = 2·image + section; A is the
//         section's part of R (pos(R) for the target, neg(R) for the hostile section),
//         B is pos(x), so a unit only ever contributes to its own section's map.

override MODE: u32 = 0u;

@group(0) @binding(0) var<storage, read> x: array<x_t>;
@group(0) @binding(1) var<storage, read> s: array<s_t>;
@group(0) @binding(2) var<storage, read> unused_a: array<unused_a_t>;
@group(0) @binding(3) var<storage, read> unused_b: array<unused_b_t>;
@group(0) @binding(4) var<storage, read_write> out: array<out_t>;

fn image_of(z: u32) -> u32 {
    if (MODE == MODE_SECTIONS) {
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

// Output pixel k (shared by every row and column of a k).
struct KTap {
    k: u32,
    oy: u32,
    ox: u32,
}

fn k_tap(z: u32, k: u32) -> KTap {
    return KTap(k, k / p.wo, k % p.wo);
}

// Column n of B is kernel tap n = (c, u, v) of the input image.
struct Column {
    img: u32,
    c: u32,
    u: u32,
    v: u32,
}

fn column(z: u32, n: u32) -> Column {
    let kk = KH * KW;
    return Column(image_of(z), n / kk, (n % kk) / KW, n % KW);
}

fn load_a_at(z: u32, m: u32, kt: KTap) -> f32 {
    let r = f32(s[(image_of(z) * p.c_out + m) * p.ho * p.wo + kt.k]);
    if (MODE == MODE_SECTIONS) {
        if (z % 2u == 0u) {
            return max(r, 0.0);
        }
        return max(-r, 0.0);
    }
    return r;
}

fn load_b_at(z: u32, kt: KTap, col: Column) -> f32 {
    let iy = i32(kt.oy * STRIDE + col.u) - i32(p.pad);
    let ix = i32(kt.ox * STRIDE + col.v) - i32(p.pad);
    if (iy < 0 || ix < 0 || iy >= i32(p.h) || ix >= i32(p.w)) {
        return 0.0;
    }
    let v = f32(x[((col.img * p.c_in + col.c) * p.h + u32(iy)) * p.w + u32(ix)]);
    if (MODE == MODE_SECTIONS) {
        return max(v, 0.0);
    }
    return v;
}

fn load_a(z: u32, m: u32, k: u32) -> f32 {
    return load_a_at(z, m, k_tap(z, k));
}

fn load_b(z: u32, k: u32, n: u32) -> f32 {
    return load_b_at(z, k_tap(z, k), column(z, n));
}

// With split-K, `out` holds one partial map per (z, split), summed in split order by
// elementwise.wgsl's SPLIT_SUM.
fn store_c(z: u32, split: u32, m: u32, n: u32, acc: f32) {
    out[((z * gemm_k_splits() + split) * p.c_out + m) * taps_in() + n] = out_t(acc);
}
