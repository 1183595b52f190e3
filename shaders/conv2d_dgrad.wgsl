// Transposed convolution (adjoint w.r.t. the input) as implicit GEMMs, one per stride
// phase: C[z, i, pixel] = Σ_(o,u,v) A[i, (o,u,v)] · B[(o,u,v), pixel].
// Input pixel (y, x) only meets the kernel taps u ≡ y + pad, v ≡ x + pad (mod STRIDE),
// so the pixels are grouped by phase (py, px) = ((y + pad) mod S, (x + pad) mod S) and
// each phase's GEMM runs over its own taps only (per output channel at most 4 of 9 for a
// 3×3 stride-2 kernel, 16 of 49 for the 7×7 stem, 1 of 1 in one phase of four for a 1×1
// stride-2 kernel) instead of multiplying the zeros of the other taps. Stride 1 is one
// phase with every tap, in the usual order. The phase is a pipeline constant (one
// dispatch per phase), so its tap counts are compile-time values.
// MODE 0: data gradient, out = convT(S, W); with POS_WEIGHTS, convT(S, pos(W)) (LRP-α1β0),
//         with NEG_WEIGHTS, convT(S, min(W, 0)) (RAP).
// MODE 1: RSP sectional redistribution and combination. K holds both sections, the
//         hostile one negated, so one pass gives convT(Q⁺, G⁺) − convT(Q⁻, G⁻); the
//         epilogue multiplies by pos(x) and FACTOR (2 for kernels larger than 1×1):
//         C = FACTOR · (C⁺ − C⁻). The purging shift follows in elementwise RSP_SHIFT.
// MODE 2: RSP first layer (z^B). M holds three stacked copies of the input channels
//         with weights (W, pos(W), min(W, 0)); the epilogue scales them by (x, −L, −H)
//         into [N, 3, C_in, H, W], which zb_sum adds up.

override MODE: u32 = 0u;
override FACTOR: f32 = 1.0;
override POS_WEIGHTS: bool = false;
override NEG_WEIGHTS: bool = false;
// The phase's residues (py, px), each in 0..STRIDE.
override PHASE_Y: u32 = 0u;
override PHASE_X: u32 = 0u;

@group(0) @binding(0) var<storage, read> s: array<s_t>;
@group(0) @binding(1) var<storage, read> w: array<weight_t>;
@group(0) @binding(2) var<storage, read> x: array<x_t>;
@group(0) @binding(3) var<storage, read> bounds: array<bounds_t>;
@group(0) @binding(4) var<storage, read_write> out: array<out_t>;

// First input row (column) of residue r: the smallest y ≥ 0 with (y + pad) mod S = r.
fn phase_start(r: u32) -> u32 {
    return (r + STRIDE - p.pad % STRIDE) % STRIDE;
}

// Pixels of residue r along a side of `len`.
fn phase_len(r: u32, len: u32) -> u32 {
    let start = phase_start(r);
    if (start >= len) {
        return 0u;
    }
    return (len - start + STRIDE - 1u) / STRIDE;
}

// Offset within one input image of the phase's pixel n.
fn phase_pixel(n: u32) -> u32 {
    let pw = phase_len(PHASE_X, p.w);
    let y = phase_start(PHASE_Y) + (n / pw) * STRIDE;
    let xx = phase_start(PHASE_X) + (n % pw) * STRIDE;
    return y * p.w + xx;
}

// Kernel taps u ≡ PHASE_Y (mod STRIDE) in 0..KH (and likewise along x): ⌈(KH − r)/S⌉,
// which is 0 when r ≥ KH (a 1×1 stride-2 kernel reaches one phase of four; the others
// have K = 0 and only write zeros).
override PHASE_KH: u32 = (KH + STRIDE - 1u - PHASE_Y) / STRIDE;
override PHASE_KW: u32 = (KW + STRIDE - 1u - PHASE_X) / STRIDE;

fn phase_taps() -> u32 {
    return p.c_out * PHASE_KH * PHASE_KW;
}

// Kernel tap (o, u, v) of column t of the phase's taps. (Never called for a phase
// without taps; the max() only keeps its divisors non-zero at pipeline creation.)
fn phase_tap(t: u32) -> vec3<u32> {
    let kw = max(PHASE_KW, 1u);
    let per = max(PHASE_KH * PHASE_KW, 1u);
    let o = t / per;
    let u = PHASE_Y + ((t % per) / kw) * STRIDE;
    let v = PHASE_X + (t % kw) * STRIDE;
    return vec3<u32>(o, u, v);
}

fn gemm_m() -> u32 {
    if (MODE == MODE_ZBOX) {
        return 3u * p.c_in;
    }
    return p.c_in;
}

fn gemm_n() -> u32 {
    return phase_len(PHASE_Y, p.h) * phase_len(PHASE_X, p.w);
}

fn gemm_k() -> u32 {
    if (MODE == MODE_SECTIONS) {
        return 2u * phase_taps();
    }
    return phase_taps();
}

// Column k of A / row k of B: the kernel tap (o, u, v) and, in MODE 1, the section
// (shared by every row and column of a k).
struct KTap {
    section: u32,
    o: u32,
    u: u32,
    v: u32,
}

fn k_tap(z: u32, k: u32) -> KTap {
    var section = 0u;
    if (MODE == MODE_SECTIONS) {
        section = k / phase_taps();
    }
    let tap = phase_tap(k % phase_taps());
    return KTap(section, tap.x, tap.y, tap.z);
}

// Column n of B: the phase's input pixel (y, x).
struct Column {
    y: u32,
    x: u32,
}

fn column(z: u32, n: u32) -> Column {
    let pix = phase_pixel(n);
    return Column(pix / p.w, pix % p.w);
}

fn load_a_at(z: u32, m: u32, kt: KTap) -> f32 {
    let kk = KH * KW;
    let uv = kt.u * KW + kt.v;
    if (MODE == MODE_SECTIONS) {
        let g = f32(w[((z * 2u + kt.section) * p.c_out + kt.o) * taps_in() + m * kk + uv]);
        if (kt.section == 0u) {
            return g;
        }
        return -g;
    }
    if (MODE == MODE_ZBOX) {
        let section = m / p.c_in;
        let v = f32(w[kt.o * taps_in() + (m % p.c_in) * kk + uv]);
        if (section == 0u) {
            return v;
        }
        if (section == 1u) {
            return max(v, 0.0);
        }
        return min(v, 0.0);
    }
    let v = f32(w[kt.o * taps_in() + m * kk + uv]);
    if (POS_WEIGHTS) {
        return max(v, 0.0);
    }
    if (NEG_WEIGHTS) {
        return min(v, 0.0);
    }
    return v;
}

fn load_b_at(z: u32, kt: KTap, col: Column) -> f32 {
    // (y + pad − u) is a multiple of STRIDE by the choice of phase.
    let ty = i32(col.y + p.pad) - i32(kt.u);
    let tx = i32(col.x + p.pad) - i32(kt.v);
    if (ty < 0 || tx < 0) {
        return 0.0;
    }
    let oy = u32(ty) / STRIDE;
    let ox = u32(tx) / STRIDE;
    if (oy >= p.ho || ox >= p.wo) {
        return 0.0;
    }
    var row = z;
    if (MODE == MODE_SECTIONS) {
        row = row * 2u + kt.section;
    }
    return f32(s[row * p.c_out * p.ho * p.wo + (kt.o * p.ho + oy) * p.wo + ox]);
}

fn load_a(z: u32, m: u32, k: u32) -> f32 {
    return load_a_at(z, m, k_tap(z, k));
}

fn load_b(z: u32, k: u32, n: u32) -> f32 {
    return load_b_at(z, k_tap(z, k), column(z, n));
}

fn store_c(z: u32, split: u32, m: u32, n: u32, acc: f32) {
    let hw = p.h * p.w;
    let img = z;
    let pix = phase_pixel(n);
    if (MODE == MODE_PLAIN) {
        out[(img * p.c_in + m) * hw + pix] = out_t(acc);
        return;
    }
    if (MODE == MODE_SECTIONS) {
        let xv = max(f32(x[(img * p.c_in + m) * hw + pix]), 0.0);
        out[(img * p.c_in + m) * hw + pix] = out_t(FACTOR * (xv * acc));
        return;
    }
    let section = m / p.c_in;
    let i = m % p.c_in;
    var coef = f32(x[(img * p.c_in + i) * hw + pix]);
    if (section > 0u) {
        coef = -f32(bounds[img * 2u + section - 1u]);
    }
    out[((img * 3u + section) * p.c_in + i) * hw + pix] = out_t(coef * acc);
}
