// Convolution forward as an implicit GEMM: C[z, o, pixel] = Σ_t A[o, t] · B[t, pixel].
// MODE 0: inference, out = conv(x, W) + bias (optionally ReLU).
// MODE 1: RSP relative contributions. z = 2·image + section (0 target, 1 hostile);
//         the weights are that section's channel attribution map G (one per z), the
//         input is pos(x), and the epilogue stores sdiv(R_section, Z) directly: the
//         mask [R_section ≠ 0] needs no separate pass because sdiv(0, ·) = 0.
// MODE 2: RSP first layer (z^B): K is three stacked copies of the taps, with weights
//         (W, −pos(W), −min(W, 0)) against inputs (x, L, H) where L/H are the image's
//         min/max inside the image and 0 in the padding; stores sdiv(R, Z).
// POS_WEIGHTS (MODE 0): conv(x, pos(W)) without bias, the z⁺ of LRP-α1β0;
// NEG_WEIGHTS: conv(x, min(W, 0)) without bias (RAP's negative contributions).

override MODE: u32 = 0u;
override RELU: bool = false;
override POS_WEIGHTS: bool = false;
override NEG_WEIGHTS: bool = false;

@group(0) @binding(0) var<storage, read> x: array<x_t>;
@group(0) @binding(1) var<storage, read> w: array<weight_t>;
@group(0) @binding(2) var<storage, read> bias_or_r: array<bias_or_r_t>;
@group(0) @binding(3) var<storage, read> bounds: array<bounds_t>;
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
    return p.ho * p.wo;
}

fn gemm_k() -> u32 {
    if (MODE == MODE_ZBOX) {
        return 3u * taps_in();
    }
    return taps_in();
}

// Where column k of A and row k of B come from: the kernel tap (c, u, v) and, in
// MODE 2, which of the three stacked copies. Shared by every row and column of a k.
struct KTap {
    t: u32,
    section: u32,
    c: u32,
    u: u32,
    v: u32,
}

fn k_tap(z: u32, k: u32) -> KTap {
    var t = k;
    var section = 0u;
    if (MODE == MODE_ZBOX) {
        section = k / taps_in();
        t = k % taps_in();
    }
    let kk = KH * KW;
    return KTap(t, section, t / kk, (t % kk) / KW, t % KW);
}

// What column n of B needs for every k: its image and the input position of tap (0, 0).
struct Column {
    img: u32,
    iy0: i32,
    ix0: i32,
}

fn column(z: u32, n: u32) -> Column {
    let oy = n / p.wo;
    let ox = n % p.wo;
    return Column(image_of(z), i32(oy * STRIDE) - i32(p.pad), i32(ox * STRIDE) - i32(p.pad));
}

fn load_a_at(z: u32, m: u32, kt: KTap) -> f32 {
    if (MODE == MODE_SECTIONS) {
        return f32(w[(z * p.c_out + m) * taps_in() + kt.t]);
    }
    let v = f32(w[m * taps_in() + kt.t]);
    if (MODE == MODE_ZBOX) {
        if (kt.section == 0u) {
            return v;
        }
        if (kt.section == 1u) {
            return -max(v, 0.0);
        }
        return -min(v, 0.0);
    }
    if (POS_WEIGHTS) {
        return max(v, 0.0);
    }
    if (NEG_WEIGHTS) {
        return min(v, 0.0);
    }
    return v;
}

// The convolution's input as the GEMM sees it (pos(x) in MODE 1), 0 in the padding.
// Also read by the Winograd input transform (gemm_winograd.wgsl).
fn load_input(img: u32, c: u32, iy: i32, ix: i32) -> f32 {
    if (iy < 0 || ix < 0 || iy >= i32(p.h) || ix >= i32(p.w)) {
        return 0.0;
    }
    let v = f32(x[((img * p.c_in + c) * p.h + u32(iy)) * p.w + u32(ix)]);
    if (MODE == MODE_SECTIONS) {
        return max(v, 0.0);
    }
    return v;
}

fn load_b_at(z: u32, kt: KTap, col: Column) -> f32 {
    let iy = col.iy0 + i32(kt.u);
    let ix = col.ix0 + i32(kt.v);
    if (MODE == MODE_ZBOX && kt.section > 0u) {
        if (iy < 0 || ix < 0 || iy >= i32(p.h) || ix >= i32(p.w)) {
            return 0.0;
        }
        return f32(bounds[col.img * 2u + kt.section - 1u]);
    }
    return load_input(col.img, kt.c, iy, ix);
}

fn load_a(z: u32, m: u32, k: u32) -> f32 {
    return load_a_at(z, m, k_tap(z, k));
}

fn load_b(z: u32, k: u32, n: u32) -> f32 {
    return load_b_at(z, k_tap(z, k), column(z, n));
}

fn store_c(z: u32, split: u32, m: u32, n: u32, acc: f32) {
    let hw = p.ho * p.wo;
    let dst = (z * p.c_out + m) * hw + n;
    if (MODE == MODE_PLAIN) {
        var v = acc;
        if (!POS_WEIGHTS && !NEG_WEIGHTS) {
            v += f32(bias_or_r[m]);
        }
        if (RELU) {
            v = max(v, 0.0);
        }
        out[dst] = out_t(v);
        return;
    }
    var r = f32(bias_or_r[(image_of(z) * p.c_out + m) * hw + n]);
    if (MODE == MODE_SECTIONS) {
        if (z % 2u == 0u) {
            r = max(r, 0.0);
        } else {
            r = max(-r, 0.0);
        }
    }
    var q = 0.0;
    if (acc != 0.0) {
        q = r / acc;
    }
    out[dst] = out_t(q);
}
