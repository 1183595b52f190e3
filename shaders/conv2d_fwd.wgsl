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

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<weight_t>;
@group(0) @binding(2) var<storage, read> bias_or_r: array<f32>;
@group(0) @binding(3) var<storage, read> bounds: array<f32>;
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
    return p.ho * p.wo;
}

fn gemm_k() -> u32 {
    if (MODE == 2u) {
        return 3u * taps_in();
    }
    return taps_in();
}

fn load_a(z: u32, m: u32, k: u32) -> f32 {
    if (MODE == 1u) {
        return f32(w[(z * p.c_out + m) * taps_in() + k]);
    }
    if (MODE == 2u) {
        let section = k / taps_in();
        let v = f32(w[m * taps_in() + k % taps_in()]);
        if (section == 0u) {
            return v;
        }
        if (section == 1u) {
            return -max(v, 0.0);
        }
        return -min(v, 0.0);
    }
    if (POS_WEIGHTS) {
        return max(f32(w[m * taps_in() + k]), 0.0);
    }
    if (NEG_WEIGHTS) {
        return min(f32(w[m * taps_in() + k]), 0.0);
    }
    return f32(w[m * taps_in() + k]);
}

fn load_b(z: u32, k: u32, n: u32) -> f32 {
    let img = image_of(z);
    let base = img * p.c_in * p.h * p.w;
    let oy = n / p.wo;
    let ox = n % p.wo;
    if (MODE == 2u) {
        let section = k / taps_in();
        let off = input_tap(k % taps_in(), oy, ox);
        if (off < 0) {
            return 0.0;
        }
        if (section == 0u) {
            return x[base + u32(off)];
        }
        return bounds[img * 2u + section - 1u];
    }
    let off = input_tap(k, oy, ox);
    if (off < 0) {
        return 0.0;
    }
    let v = x[base + u32(off)];
    if (MODE == 1u) {
        return max(v, 0.0);
    }
    return v;
}

fn store_c(z: u32, split: u32, m: u32, n: u32, acc: f32) {
    let hw = p.ho * p.wo;
    let dst = (z * p.c_out + m) * hw + n;
    if (MODE == 0u) {
        var v = acc;
        if (!POS_WEIGHTS && !NEG_WEIGHTS) {
            v += bias_or_r[m];
        }
        if (RELU) {
            v = max(v, 0.0);
        }
        out[dst] = v;
        return;
    }
    var r = bias_or_r[(image_of(z) * p.c_out + m) * hw + n];
    if (MODE == 1u) {
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
    out[dst] = q;
}
