// Pack pass of the cooperative-matrix GEMM (gemm_coop.wgsl), appended to an op file
// like gemm_tiled.wgsl: it writes the op's A or B operand as f16 planes with one
// power-of-two scale per block of 64 rows of A (columns of B) over the whole of K, the
// scheme `src/ops/split_fp32.rs` specifies and `docs/split-fp32.md` measures. One
// buffer of u32 words per operand and Z problems:
//   scales: [Z][lines / 64] exponents s (i32 bits), padded to a multiple of 4 words;
//   hi:     A as [Z][MP][KP], B as [Z][KP][NP], two f16 per word along the row;
//   lo:     the same shape (SPLIT only), f16((v·2^s − hi)·2^11).
// MP is M rounded up to 128 (the GEMM's tile rows), KP is K rounded up to 32 (its K
// step), NP is N rounded up to COL_PAD (its tile columns); padding is zero.
// PASS 0 reduces each block's largest magnitude (one workgroup of 256 per block and
// problem, a tree sum in workgroup memory); PASS 1 writes the planes (one invocation
// per word, 256 per workgroup). The f16 roundings go through pack2x16float and the
// hi part is read back from its bits, so no compiler can fold the round trip away.

override PACK_B: bool = false;
override PASS: u32 = 0u;
override SPLIT: bool = true;
override COL_PAD: u32 = 128u;

const SCALE_BLOCK: u32 = 64u;
const ROW_PAD: u32 = 128u;
const K_PAD: u32 = 32u;
// A scale puts a block's largest magnitude in [2^14, 2^15).
const TOP_EXP: i32 = 14;

@group(0) @binding(6) var<storage, read_write> planes: array<u32>;

var<workgroup> block_max: array<f32, 256>;

fn padded_rows() -> u32 {
    return (gemm_m() + ROW_PAD - 1u) / ROW_PAD * ROW_PAD;
}

fn padded_k() -> u32 {
    return (gemm_k() + K_PAD - 1u) / K_PAD * K_PAD;
}

fn padded_cols() -> u32 {
    return (gemm_n() + COL_PAD - 1u) / COL_PAD * COL_PAD;
}

// Scale blocks per problem: of rows of A or columns of B.
fn blocks() -> u32 {
    if (PACK_B) {
        return padded_cols() / SCALE_BLOCK;
    }
    return padded_rows() / SCALE_BLOCK;
}

// The exponent of |v|'s leading bit (v ≠ 0), subnormals included.
fn leading_exponent(v: f32) -> i32 {
    let bits = bitcast<u32>(abs(v));
    let e = i32(bits >> 23u);
    if (e == 0) {
        return -149 + (31 - i32(countLeadingZeros(bits)));
    }
    return e - 127;
}

// v · 2^s in two factors: ldexp's exponent must stay within f32's normal range.
fn scaled(v: f32, s: i32) -> f32 {
    let half = s / 2;
    return ldexp(ldexp(v, half), s - half);
}

// The value of the f16 with bits `h` (finite), decoded with integer arithmetic:
// lavapipe (Mesa 25.0) folds unpack2x16float(pack2x16float(v)) back to v for the second
// component, which would leave that lo plane at zero.
fn f16_bits_value(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let mantissa = h & 0x3ffu;
    if (e == 0u) {
        // Zero or subnormal: mantissa · 2^-24, exact in f32.
        return bitcast<f32>(sign | bitcast<u32>(f32(mantissa) * 5.9604645e-8));
    }
    return bitcast<f32>(sign | ((e + 112u) << 23u) | (mantissa << 13u));
}


fn block_scale_pass(z: u32, block: u32, li: u32, problems: u32) {
    let k = gemm_k();
    var largest = 0.0;
    for (var e = li; e < SCALE_BLOCK * k; e += 256u) {
        if (PACK_B) {
            largest = max(largest, abs(padded_operand(z, e / SCALE_BLOCK, block * SCALE_BLOCK + e % SCALE_BLOCK, PACK_B)));
        } else {
            largest = max(largest, abs(padded_operand(z, block * SCALE_BLOCK + e / k, e % k, PACK_B)));
        }
    }
    block_max[li] = largest;
    workgroupBarrier();
    for (var width = 128u; width > 0u; width /= 2u) {
        if (li < width) {
            block_max[li] = max(block_max[li], block_max[li + width]);
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        var s = 0;
        if (block_max[0] > 0.0) {
            s = TOP_EXP - leading_exponent(block_max[0]);
        }
        planes[z * blocks() + block] = bitcast<u32>(s);
    }
}

fn plane_pass(z: u32, row: u32, word: u32, problems: u32) {
    var rows = padded_rows();
    var cols = padded_k();
    if (PACK_B) {
        rows = padded_k();
        cols = padded_cols();
    }
    if (row >= rows || 2u * word >= cols) {
        return;
    }
    let col = 2u * word;
    var line = row;
    if (PACK_B) {
        line = col;
    }
    let s = bitcast<i32>(planes[z * blocks() + line / SCALE_BLOCK]);
    let v = vec2<f32>(scaled(padded_operand(z, row, col, PACK_B), s), scaled(padded_operand(z, row, col + 1u, PACK_B), s));
    let hi = pack2x16float(v);
    let header = (problems * blocks() + 3u) / 4u * 4u;
    let plane_words = rows * cols / 2u;
    let at = (z * rows + row) * (cols / 2u) + word;
    planes[header + at] = hi;
    if (SPLIT) {
        let back = vec2<f32>(f16_bits_value(hi & 0xffffu), f16_bits_value(hi >> 16u));
        let rest = (v - back) * 2048.0;
        planes[header + problems * plane_words + at] = pack2x16float(rest);
    }
}

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    if (PASS == 0u) {
        block_scale_pass(wg.z, wg.x, li, groups.z);
    } else {
        plane_pass(wg.z, wg.y, wg.x * 256u + li, groups.z);
    }
}
