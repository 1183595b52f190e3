// Elementwise kernels over flat tensors, one thread per output element. OP selects:
// RELU                  out = max(a, 0)
// ADD                   out = a + b              (residual add; RELU fuses the ReLU)
// BATCH_NORM            out = a·scale[ch] + shift[ch] (eval mode; c = [scale | shift])
// RELU_GRAD             out = a · [b > 0], where a has `rows_per_image` rows for each
//                       row of b (several gradient seeds of one image share its mask)
// LIVE_MASK_BATCH_NORM  out = a · [b·scale[ch] ≠ 0] (RSP's and LRP's batch-norm rule:
//                       identity where the BN input is live)
// ZB_SUM                out[n, j] = Σ_s a[n, s, j] for s in 0..3 (first-layer z^B terms)
// RSP_SHIFT             out = a − (S/n)·[a ≠ 0] with (S, n) = b[2·image], b[2·image + 1]
//                       (RSP purging shift; S = Σ R, n = #{C ≠ 0})
// SPLIT_SUM             out[z, j] = Σ_s a[z·S + s, j] for s in 0..S (S = rows_per_image),
//                       in split order: the partials of a split-K GEMM
// STAB_DIV              out = a / (b + EPS·sign(b)), 0 where b = 0 (LRP's stabilised
//                       ratio R / z; EPS = 0 gives RSP's safe division)
// MUL                   out = a · b, where a has `rows_per_image` rows for each row of b
//                       (x ⊙ backward(s), or input × gradient)
// LRP_BATCH_NORM_EPS    out = a · (b·scale[ch]) / stab(b·scale[ch] + shift[ch]) (LRP-ε of
//                       a batch norm as its own affine layer; c = [scale | shift])
// LRP_BATCH_NORM_POS    out = a · [b·scale[ch] > 0] (LRP-α1β0 of a batch norm: its one
//                       weighted input is the whole positive part; the shift is left out)
// BATCH_NORM_GRAD       out = a · scale[ch]      (batch norm backward)

// The OP selectors (`ops::elementwise::ElementwiseOp` in Rust).
const OP_RELU: u32 = 0u;
const OP_ADD: u32 = 1u;
const OP_BATCH_NORM: u32 = 2u;
const OP_RELU_GRAD: u32 = 3u;
const OP_LIVE_MASK_BATCH_NORM: u32 = 4u;
const OP_ZB_SUM: u32 = 5u;
const OP_RSP_SHIFT: u32 = 6u;
const OP_SPLIT_SUM: u32 = 7u;
const OP_STAB_DIV: u32 = 8u;
const OP_MUL: u32 = 9u;
const OP_LRP_BATCH_NORM_EPS: u32 = 10u;
const OP_LRP_BATCH_NORM_POS: u32 = 11u;
const OP_BATCH_NORM_GRAD: u32 = 12u;

override OP: u32 = 0u;
override RELU: bool = false;
// LRP-ε stabiliser of STAB_DIV and LRP_BN_EPS.
override EPS: f32 = 0.0;

fn stab_div(num: f32, z: f32) -> f32 {
    if (z == 0.0) {
        return 0.0;
    }
    return num / (z + EPS * sign(z));
}

struct Params {
    numel: u32,
    // elements of one image (or one row) of the output
    per_image: u32,
    channels: u32,
    hw: u32,
    rows_per_image: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> a: array<a_t>;
@group(0) @binding(1) var<storage, read> b: array<b_t>;
@group(0) @binding(2) var<storage, read> c: array<c_t>;
@group(0) @binding(3) var<storage, read_write> out: array<out_t>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 256u;
    if (idx >= p.numel) {
        return;
    }
    let ch = (idx / p.hw) % p.channels;
    var v = 0.0;
    switch OP {
        case OP_RELU: {
            v = max(f32(a[idx]), 0.0);
        }
        case OP_ADD: {
            v = f32(a[idx]) + f32(b[idx]);
        }
        case OP_BATCH_NORM: {
            v = f32(a[idx]) * f32(c[ch]) + f32(c[p.channels + ch]);
        }
        case OP_RELU_GRAD: {
            let row = idx / p.per_image;
            let src = (row / p.rows_per_image) * p.per_image + idx % p.per_image;
            v = select(0.0, f32(a[idx]), f32(b[src]) > 0.0);
        }
        case OP_LIVE_MASK_BATCH_NORM: {
            v = select(0.0, f32(a[idx]), f32(b[idx]) * f32(c[ch]) != 0.0);
        }
        case OP_ZB_SUM: {
            let n = idx / p.per_image;
            let j = idx % p.per_image;
            let base = n * 3u * p.per_image + j;
            v = f32(a[base]) + f32(a[base + p.per_image]) + f32(a[base + 2u * p.per_image]);
        }
        case OP_RSP_SHIFT: {
            let n = idx / p.per_image;
            let x = f32(a[idx]);
            if (x != 0.0) {
                v = x - f32(b[2u * n]) / f32(b[2u * n + 1u]);
            }
        }
        case OP_STAB_DIV: {
            v = stab_div(f32(a[idx]), f32(b[idx]));
        }
        case OP_MUL: {
            let row = idx / p.per_image;
            let src = (row / p.rows_per_image) * p.per_image + idx % p.per_image;
            v = f32(a[idx]) * f32(b[src]);
        }
        case OP_LRP_BATCH_NORM_EPS: {
            let zx = f32(b[idx]) * f32(c[ch]);
            v = f32(a[idx]) * stab_div(zx, zx + f32(c[p.channels + ch]));
        }
        case OP_LRP_BATCH_NORM_POS: {
            v = select(0.0, f32(a[idx]), f32(b[idx]) * f32(c[ch]) > 0.0);
        }
        case OP_BATCH_NORM_GRAD: {
            v = f32(a[idx]) * f32(c[ch]);
        }
        case OP_SPLIT_SUM, default: {
            let z = idx / p.per_image;
            let j = idx % p.per_image;
            for (var s = 0u; s < p.rows_per_image; s++) {
                v += f32(a[(z * p.rows_per_image + s) * p.per_image + j]);
            }
        }
    }
    if (RELU) {
        v = max(v, 0.0);
    }
    out[idx] = out_t(v);
}
