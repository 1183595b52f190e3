// Cooperative-matrix GEMM skeleton (matrix units; `enable wgpu_cooperative_matrix;`),
// over the f16 planes and block scales that gemm_planes.wgsl wrote (binding 6: A,
// binding 7: B; layout there). The arithmetic is the split-fp32 scheme of
// `src/ops/split_fp32.rs` (docs/split-fp32.md); the data movement follows the fast
// Vulkan kernels (NVIDIA's vk_cooperative_matrix_perf, llama.cpp's coopmat1 path):
// - a workgroup of 8 subgroups of 32 computes a 128 × BN tile of C (BN 128 or 64),
//   each subgroup 32 × BN/2 as 2 × BN/32 blocks of 16×16 f32 accumulators, held in
//   registers over the whole K loop;
// - per 32-deep K step the planes are copied as raw f16 (16-byte words from global
//   memory) into workgroup memory whose rows are padded by 8 f16 (16 bytes), so the
//   matrix loads of neighbouring rows fall in different banks;
// - the next step's words are fetched into registers right after the second barrier,
//   while the matrix units work on this step: two barriers per step, no atomics.
// Products per 16-deep step: hi_A·hi_B into accumulator 0; with SPLIT, hi_A·lo_B then
// lo_A·hi_B into accumulator 1 (a product of lo planes weighs 2^-11). With SPLIT the
// unit's accumulators restart from zero every step and are added into f32 ones
// outside it (a truncating unit's error would otherwise build up over K); without it
// (the half-precision mode) one accumulator sums the whole of K. On store:
// c = (C1·2^-11 + C0)·2^-s_A(m)·2^-s_B(n). Split-K chunks follow `split_k_range`.

override SPLIT: bool = true;
override BN: u32 = 128u;

const BM: u32 = 128u;
const BK: u32 = 32u;
// Padding of each workgroup-memory row, in f16.
const SKEW: u32 = 8u;
const A_STRIDE: u32 = 40u; // BK + SKEW
const B_STRIDE_MAX: u32 = 136u; // 128 + SKEW
const SCALE_BLOCK: u32 = 64u;
const K_PAD: u32 = 32u;
// 2^-11: the weight of an accumulator-1 product relative to accumulator 0's.
const LO_WEIGHT: f32 = 0.00048828125;

@group(0) @binding(6) var<storage, read> planes_a: array<vec4<u32>>;
@group(0) @binding(7) var<storage, read> planes_b: array<vec4<u32>>;

var<workgroup> a_hi: array<f16, 5120>; // BM * A_STRIDE
var<workgroup> a_lo: array<f16, 5120>;
var<workgroup> b_hi: array<f16, 4352>; // BK * B_STRIDE_MAX
var<workgroup> b_lo: array<f16, 4352>;
// One 16×16 block of C per subgroup on its way to `store_c`.
var<workgroup> c_stage: array<f32, 2048>;

// An operand's planes (as gemm_planes.wgsl pads them), in u32 words.
struct Planes {
    // Words of the scale header (padded to a multiple of 4).
    header: u32,
    // Rows of one problem's plane.
    rows: u32,
    // Words per row of a plane.
    row: u32,
    // Words of all Z problems' hi planes: the lo planes follow them.
    hi: u32,
}

fn padded_k() -> u32 {
    return (gemm_k() + K_PAD - 1u) / K_PAD * K_PAD;
}

fn planes_of_a(problems: u32) -> Planes {
    let mp = (gemm_m() + BM - 1u) / BM * BM;
    let kp = padded_k();
    return Planes((problems * (mp / SCALE_BLOCK) + 3u) / 4u * 4u, mp, kp / 2u, problems * mp * kp / 2u);
}

fn planes_of_b(problems: u32) -> Planes {
    let np = (gemm_n() + BN - 1u) / BN * BN;
    let kp = padded_k();
    return Planes((problems * (np / SCALE_BLOCK) + 3u) / 4u * 4u, kp, np / 2u, problems * kp * np / 2u);
}

// This thread's words of A for the K step at k0: rows li/4 and li/4 + 64 of the
// tile, 8 f16 of K each; hi in [0, 2), lo in [2, 4). Zero past the split's end.
fn fetch_a(p: Planes, z: u32, m0: u32, k0: u32, k_hi: u32, li: u32, dst: ptr<function, array<vec4<u32>, 4>>) {
    for (var r = 0u; r < 2u; r += 1u) {
        let k = k0 + (li % 4u) * 8u;
        let at = p.header + (z * p.rows + m0 + li / 4u + 64u * r) * p.row + k / 2u;
        (*dst)[r] = vec4<u32>();
        (*dst)[2u + r] = vec4<u32>();
        if (k < k_hi) {
            (*dst)[r] = planes_a[at / 4u];
            if (SPLIT) {
                (*dst)[2u + r] = planes_a[(at + p.hi) / 4u];
            }
        }
    }
}

// This thread's words of B for the K step at k0: BN/64 of the step's 32 rows of BN/8
// words each; hi in [0, 2), lo in [2, 4). Zero past the split's end.
fn fetch_b(p: Planes, z: u32, n0: u32, k0: u32, k_hi: u32, li: u32, dst: ptr<function, array<vec4<u32>, 4>>) {
    for (var r = 0u; r < BN / 64u; r += 1u) {
        let e = li + 256u * r;
        let k = k0 + e / (BN / 8u);
        let at = p.header + (z * p.rows + k) * p.row + n0 / 2u + (e % (BN / 8u)) * 4u;
        (*dst)[r] = vec4<u32>();
        (*dst)[2u + r] = vec4<u32>();
        if (k < k_hi) {
            (*dst)[r] = planes_b[at / 4u];
            if (SPLIT) {
                (*dst)[2u + r] = planes_b[(at + p.hi) / 4u];
            }
        }
    }
}

fn word_of(v: vec4<u32>, i: u32) -> u32 {
    return v[i];
}

fn scale_of_a(z: u32, m: u32) -> i32 {
    let mp = (gemm_m() + BM - 1u) / BM * BM;
    let w = z * (mp / SCALE_BLOCK) + m / SCALE_BLOCK;
    return bitcast<i32>(word_of(planes_a[w / 4u], w % 4u));
}

fn scale_of_b(z: u32, n: u32) -> i32 {
    let np = (gemm_n() + BN - 1u) / BN * BN;
    let w = z * (np / SCALE_BLOCK) + n / SCALE_BLOCK;
    return bitcast<i32>(word_of(planes_b[w / 4u], w % 4u));
}

// v · 2^-s in two factors: ldexp's exponent must stay within f32's normal range.
fn unscaled(v: f32, s: i32) -> f32 {
    let half = s / 2;
    return ldexp(ldexp(v, -half), half - s);
}

// The 8 f16 of a 16-byte word into workgroup memory at `at` (A when `into_a`).
fn put8(w: vec4<u32>, into_a: bool, lo: bool, at: u32) {
    for (var i = 0u; i < 4u; i += 1u) {
        let pair = unpack2x16float(w[i]);
        let x = f16(pair.x);
        let y = f16(pair.y);
        if (into_a) {
            if (lo) {
                a_lo[at + 2u * i] = x;
                a_lo[at + 2u * i + 1u] = y;
            } else {
                a_hi[at + 2u * i] = x;
                a_hi[at + 2u * i + 1u] = y;
            }
        } else {
            if (lo) {
                b_lo[at + 2u * i] = x;
                b_lo[at + 2u * i + 1u] = y;
            } else {
                b_hi[at + 2u * i] = x;
                b_hi[at + 2u * i + 1u] = y;
            }
        }
    }
}

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let splits = gemm_k_splits();
    let problems = groups.z / splits;
    let z = wg.z / splits;
    let split = wg.z % splits;
    let m0 = wg.y * BM;
    let n0 = wg.x * BN;
    let M = gemm_m();
    let N = gemm_n();
    let k_range = split_k_range(split);
    let k_lo = k_range.x;
    let k_hi = k_range.y;
    let pa = planes_of_a(problems);
    let pb = planes_of_b(problems);
    let b_stride = BN + SKEW;
    // This subgroup's 32 × BN/2 part of the tile: blocks (i, j), i < 2, j < nb.
    let sr = (sg / 2u) * 32u;
    let sc = (sg % 2u) * (BN / 2u);
    let nb = BN / 32u;

    var c0: array<coop_mat16x16<f32, C>, 8>;
    var c1: array<coop_mat16x16<f32, C>, 8>;
    for (var b = 0u; b < 8u; b += 1u) {
        c0[b] = coop_mat16x16<f32, C>();
        c1[b] = coop_mat16x16<f32, C>();
    }

    // The words of one K step, in registers.
    var ra: array<vec4<u32>, 4>;
    var rb: array<vec4<u32>, 4>;
    fetch_a(pa, z, m0, k_lo, k_hi, li, &ra);
    fetch_b(pb, z, n0, k_lo, k_hi, li, &rb);
    for (var k0 = k_lo; k0 < k_hi; k0 += BK) {
        // Every subgroup is done reading the previous step's operands.
        workgroupBarrier();
        for (var r = 0u; r < 2u; r += 1u) {
            let at = (li / 4u + 64u * r) * A_STRIDE + (li % 4u) * 8u;
            put8(ra[r], true, false, at);
            if (SPLIT) {
                put8(ra[2u + r], true, true, at);
            }
        }
        for (var r = 0u; r < BN / 64u; r += 1u) {
            let e = li + 256u * r;
            let at = (e / (BN / 8u)) * b_stride + (e % (BN / 8u)) * 8u;
            put8(rb[r], false, false, at);
            if (SPLIT) {
                put8(rb[2u + r], false, true, at);
            }
        }
        workgroupBarrier();
        // Prefetch the next step while the matrix units work on this one.
        fetch_a(pa, z, m0, k0 + BK, k_hi, li, &ra);
        fetch_b(pb, z, n0, k0 + BK, k_hi, li, &rb);

        var u0: array<coop_mat16x16<f32, C>, 8>;
        var u1: array<coop_mat16x16<f32, C>, 8>;
        for (var b = 0u; b < 8u; b += 1u) {
            u0[b] = coop_mat16x16<f32, C>();
            u1[b] = coop_mat16x16<f32, C>();
        }
        for (var kk = 0u; kk < BK; kk += 16u) {
            for (var i = 0u; i < 2u; i += 1u) {
                let a = coopLoadT<coop_mat16x16<f16, A>>(&a_hi[(sr + 16u * i) * A_STRIDE + kk], A_STRIDE);
                var al = coop_mat16x16<f16, A>();
                if (SPLIT) {
                    al = coopLoadT<coop_mat16x16<f16, A>>(&a_lo[(sr + 16u * i) * A_STRIDE + kk], A_STRIDE);
                }
                for (var j = 0u; j < nb; j += 1u) {
                    let bh = coopLoadT<coop_mat16x16<f16, B>>(&b_hi[kk * b_stride + sc + 16u * j], b_stride);
                    let at = i * nb + j;
                    if (SPLIT) {
                        let bl = coopLoadT<coop_mat16x16<f16, B>>(&b_lo[kk * b_stride + sc + 16u * j], b_stride);
                        u0[at] = coopMultiplyAdd(a, bh, u0[at]);
                        u1[at] = coopMultiplyAdd(a, bl, u1[at]);
                        u1[at] = coopMultiplyAdd(al, bh, u1[at]);
                    } else {
                        c0[at] = coopMultiplyAdd(a, bh, c0[at]);
                    }
                }
            }
        }
        if (SPLIT) {
            for (var b = 0u; b < 2u * nb; b += 1u) {
                c0[b] = c0[b] + u0[b];
                c1[b] = c1[b] + u1[b];
            }
        }
    }

    // Each subgroup stores its blocks one at a time through its own 16×16 of c_stage.
    let stage = sg * 256u;
    for (var b = 0u; b < 2u * nb; b += 1u) {
        var c = c0[b];
        if (SPLIT) {
            c = c1[b] * LO_WEIGHT + c0[b];
        }
        coopStoreT(c, &c_stage[stage], 16u);
        workgroupBarrier();
        let i = b / nb;
        let j = b % nb;
        for (var e = lane; e < 256u; e += 32u) {
            let m = m0 + sr + 16u * i + e / 16u;
            let n = n0 + sc + 16u * j + e % 16u;
            if (m < M && n < N) {
                let v = unscaled(unscaled(c_stage[stage + e], scale_of_a(z, m)), scale_of_b(z, n));
                store_c(z, split, m, n, v);
            }
        }
        workgroupBarrier();
    }
}
