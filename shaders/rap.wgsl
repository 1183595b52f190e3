// Elementwise steps of RAP (Relative Attributing Propagation, Nam et al. AAAI 2020),
// for layers whose input x is non-negative (post-ReLU). P = x·pos(W) and N = x·min(W, 0)
// (no bias) are the positive and negative contributions, sdiv(a, b) = a/b or 0 at b = 0.
// MODE (`ops::rap::RapStep` in Rust):
// TOP_POSITIVE:    s⁺ = seed·([P ≠ 0] + sdiv(bias·sdiv(P, P + N), P))  (top layer: the
// TOP_NEGATIVE:    s⁻ = seed·([N ≠ 0] + sdiv(bias·sdiv(N, P + N), N))   bias is shared
//                  between the positive and negative contributions in proportion)
// HIDDEN_POSITIVE: sdiv(R⁺, P), or with LINEAR sdiv(R, P)   (through pos(W))
// HIDDEN_NEGATIVE: −([N ≠ 0]·sdiv(R, P − N) + sdiv(R⁻, −N)), the last term only for
//                  convolutions (through min(W, 0); negated because the contributions
//                  are the magnitudes −N)
// NORMALISE:       |a|·sdiv(Σa, Σ|a|) with (Σa, Σ|a|) = stats[2n], stats[2n + 1]
// SHIFT:           a − [a ≠ 0]·sdiv(ΣC − ΣR, #{C ≠ 0}) with (ΣR, #) = b[2n..], (ΣC, #) = c[2n..]
const TOP_POSITIVE: u32 = 0u;
const TOP_NEGATIVE: u32 = 1u;
const HIDDEN_POSITIVE: u32 = 2u;
const HIDDEN_NEGATIVE: u32 = 3u;
const NORMALISE: u32 = 4u;
const SHIFT: u32 = 5u;

override MODE: u32 = 0u;
override LINEAR: bool = false;

struct Params {
    numel: u32,
    // elements per image (per row for the top layer)
    per_image: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> a: array<a_t>;
@group(0) @binding(1) var<storage, read> b: array<b_t>;
@group(0) @binding(2) var<storage, read> c: array<c_t>;
@group(0) @binding(3) var<storage, read> d: array<d_t>;
@group(0) @binding(4) var<storage, read_write> out: array<out_t>;
@group(0) @binding(5) var<uniform> p: Params;

fn sdiv(x: f32, y: f32) -> f32 {
    if (y == 0.0) {
        return 0.0;
    }
    return x / y;
}

fn live(x: f32) -> f32 {
    return select(0.0, 1.0, x != 0.0);
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 256u;
    if (idx >= p.numel) {
        return;
    }
    let n = idx / p.per_image;
    var v = 0.0;
    switch MODE {
        case TOP_POSITIVE, TOP_NEGATIVE: {
            // a = seed, b = P, c = N, d = bias (per class)
            let pos = f32(b[idx]);
            let neg = f32(c[idx]);
            let bias = f32(d[idx % p.per_image]);
            var part = pos;
            if (MODE == TOP_NEGATIVE) {
                part = neg;
            }
            v = f32(a[idx]) * (live(part) + sdiv(bias * sdiv(part, pos + neg), part));
        }
        case HIDDEN_POSITIVE: {
            // a = R, b = P
            var r = f32(a[idx]);
            if (!LINEAR) {
                r = max(r, 0.0);
            }
            v = sdiv(r, f32(b[idx]));
        }
        case HIDDEN_NEGATIVE: {
            // a = R, b = P, c = N
            let r = f32(a[idx]);
            let neg = f32(c[idx]);
            v = live(neg) * sdiv(r, f32(b[idx]) - neg);
            if (!LINEAR) {
                v += sdiv(min(r, 0.0), -neg);
            }
            v = -v;
        }
        case NORMALISE: {
            // a = C, b = stats
            v = abs(f32(a[idx])) * sdiv(f32(b[2u * n]), f32(b[2u * n + 1u]));
        }
        case SHIFT, default: {
            // a = C, b = (ΣR, #), c = (ΣC, #)
            let x = f32(a[idx]);
            v = x - live(x) * sdiv(f32(c[2u * n]) - f32(b[2u * n]), f32(c[2u * n + 1u]));
        }
    }
    out[idx] = out_t(v);
}
