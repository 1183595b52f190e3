// Cooperative-matrix GEMM skeleton (tensor cores; `enable wgpu_cooperative_matrix;`).
// A workgroup of four 32-lane subgroups computes a 64×64 tile of C, each subgroup a
// 32×32 quarter as 2×2 accumulators of 16×16 f32 (f16 × f16 → f32 matrix products).
// Each 32-deep step of K:
//   1. the op's `load_a`/`load_b` fill an f32 stage (A as [64][32], B as [32][64]), and
//      each tile's largest magnitude is reduced into a workgroup atomic;
//   2. each operand tile is scaled by a power of two that puts its largest magnitude
//      in [2^14, 2^15) (f16 overflows at 65504 and loses precision below 2^-14;
//      activations and relevance span far more than that) and rounded to f16 (`hi`);
//      with SPLIT, `hi` is instead cut to f16's 11 significant bits and the
//      remainder, times 2^11, rounded to f16 (`lo`);
//   3. the subgroups multiply: with SPLIT, hi·hi plus (hi·lo + lo·hi)·2^-11, the
//      split-fp32 product of Ootomo & Yokota (2022), which keeps about f32's accuracy;
//      without, hi·hi alone (the half-precision mode);
//   4. the step's product is unscaled and added to the f32 accumulators in f32
//      arithmetic, outside the matrix unit.
// The accumulators go through the stage once more so that each thread can call the
// op's `store_c` for its share of the tile. Results are close to, not bit-identical
// with, the f32 skeletons (different rounding and summation order); the autotuner
// accepts this variant only within a tolerance (`ops::gemm`). Split-K chunks follow
// `split_k_range` like every skeleton.

override SPLIT: bool = true;
const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 32u;
const THREADS: u32 = 128u;
const STAGE_A: u32 = 2048u; // BM * BK
const STAGE_B: u32 = 2048u; // BK * BN
// 2^-11: the weight of a `lo` part relative to its `hi` part.
const LO_WEIGHT: f32 = 0.00048828125;

// A as [BM][BK] then B as [BK][BN] during the K loop; C as [BM][BN] after it.
var<workgroup> stage: array<f32, 4096>;
var<workgroup> a_hi: array<f16, STAGE_A>;
var<workgroup> a_lo: array<f16, STAGE_A>;
var<workgroup> b_hi: array<f16, STAGE_B>;
var<workgroup> b_lo: array<f16, STAGE_B>;
// Bit patterns of the tiles' largest magnitudes (non-negative floats order like their
// bits), [parity][A, B]: a step reduces into one pair while the other is cleared.
var<workgroup> tile_max: array<atomic<u32>, 4>;

// The exponent s with 2^s · max in [2^14, 2^15), clamped so that 2^s and 2^-s are
// normal f32 numbers (0 for an all-zero tile).
fn scale_exponent(max_bits: u32) -> i32 {
    if (max_bits == 0u) {
        return 0;
    }
    let e = i32((max_bits >> 23u) & 0xffu) - 127;
    return clamp(14 - e, -126, 126);
}

// v (scaled, |v| < 2^15) as (hi, lo · 2^11) with v = hi + lo · 2^-11: hi keeps the
// top 11 significant bits (a value f16 holds exactly where it is normal), found on the
// bits rather than by an f32 → f16 → f32 round trip, which a shader compiler may
// treat as the identity and so leave lo at zero.
fn split_f16(v: f32) -> vec2<f32> {
    let hi = bitcast<f32>(bitcast<u32>(v) & 0xffffe000u);
    return vec2<f32>(hi, (v - hi) * 2048.0);
}

@compute @workgroup_size(128, 1, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_id) sg: u32,
) {
    let splits = gemm_k_splits();
    let z = wg.z / splits;
    let split = wg.z % splits;
    let m0 = wg.y * BM;
    let n0 = wg.x * BN;
    let M = gemm_m();
    let N = gemm_n();
    let k_range = split_k_range(split);
    let k_lo = k_range.x;
    let K = k_range.y;
    // This subgroup's 32×32 quarter of the tile.
    let sr = (sg / 2u) * 32u;
    let sc = (sg % 2u) * 32u;
    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    if (li < 4u) {
        atomicStore(&tile_max[li], 0u);
    }
    workgroupBarrier();
    var parity = 0u;
    for (var k0 = k_lo; k0 < K; k0 += BK) {
        var amax = 0.0;
        for (var e = li; e < STAGE_A; e += THREADS) {
            let m = m0 + e / BK;
            let k = k0 + e % BK;
            var v = 0.0;
            if (m < M && k < K) {
                v = load_a(z, m, k);
            }
            stage[e] = v;
            amax = max(amax, abs(v));
        }
        var bmax = 0.0;
        for (var e = li; e < STAGE_B; e += THREADS) {
            let k = k0 + e / BN;
            let n = n0 + e % BN;
            var v = 0.0;
            if (n < N && k < K) {
                v = load_b(z, k, n);
            }
            stage[STAGE_A + e] = v;
            bmax = max(bmax, abs(v));
        }
        atomicMax(&tile_max[2u * parity], bitcast<u32>(amax));
        atomicMax(&tile_max[2u * parity + 1u], bitcast<u32>(bmax));
        workgroupBarrier();
        let ea = scale_exponent(atomicLoad(&tile_max[2u * parity]));
        let eb = scale_exponent(atomicLoad(&tile_max[2u * parity + 1u]));
        // The other pair was last read before the previous step's final barrier.
        if (li < 2u) {
            atomicStore(&tile_max[2u * (1u - parity) + li], 0u);
        }
        let sa = ldexp(1.0, ea);
        let sb = ldexp(1.0, eb);
        for (var e = li; e < STAGE_A; e += THREADS) {
            let v = stage[e] * sa;
            if (SPLIT) {
                let hl = split_f16(v);
                a_hi[e] = f16(hl.x);
                a_lo[e] = f16(hl.y);
            } else {
                a_hi[e] = f16(v);
            }
        }
        for (var e = li; e < STAGE_B; e += THREADS) {
            let v = stage[STAGE_A + e] * sb;
            if (SPLIT) {
                let hl = split_f16(v);
                b_hi[e] = f16(hl.x);
                b_lo[e] = f16(hl.y);
            } else {
                b_hi[e] = f16(v);
            }
        }
        workgroupBarrier();
        var t00 = coop_mat16x16<f32, C>();
        var t01 = coop_mat16x16<f32, C>();
        var t10 = coop_mat16x16<f32, C>();
        var t11 = coop_mat16x16<f32, C>();
        var u00 = coop_mat16x16<f32, C>();
        var u01 = coop_mat16x16<f32, C>();
        var u10 = coop_mat16x16<f32, C>();
        var u11 = coop_mat16x16<f32, C>();
        for (var kk = 0u; kk < BK; kk += 16u) {
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&a_hi[sr * BK + kk], BK);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&a_hi[(sr + 16u) * BK + kk], BK);
            let b0 = coopLoadT<coop_mat16x16<f16, B>>(&b_hi[kk * BN + sc], BN);
            let b1 = coopLoadT<coop_mat16x16<f16, B>>(&b_hi[kk * BN + sc + 16u], BN);
            t00 = coopMultiplyAdd(a0, b0, t00);
            t01 = coopMultiplyAdd(a0, b1, t01);
            t10 = coopMultiplyAdd(a1, b0, t10);
            t11 = coopMultiplyAdd(a1, b1, t11);
            if (SPLIT) {
                let a0l = coopLoadT<coop_mat16x16<f16, A>>(&a_lo[sr * BK + kk], BK);
                let a1l = coopLoadT<coop_mat16x16<f16, A>>(&a_lo[(sr + 16u) * BK + kk], BK);
                let b0l = coopLoadT<coop_mat16x16<f16, B>>(&b_lo[kk * BN + sc], BN);
                let b1l = coopLoadT<coop_mat16x16<f16, B>>(&b_lo[kk * BN + sc + 16u], BN);
                u00 = coopMultiplyAdd(a0, b0l, u00);
                u00 = coopMultiplyAdd(a0l, b0, u00);
                u01 = coopMultiplyAdd(a0, b1l, u01);
                u01 = coopMultiplyAdd(a0l, b1, u01);
                u10 = coopMultiplyAdd(a1, b0l, u10);
                u10 = coopMultiplyAdd(a1l, b0, u10);
                u11 = coopMultiplyAdd(a1, b1l, u11);
                u11 = coopMultiplyAdd(a1l, b1, u11);
            }
        }
        if (SPLIT) {
            t00 = t00 + u00 * LO_WEIGHT;
            t01 = t01 + u01 * LO_WEIGHT;
            t10 = t10 + u10 * LO_WEIGHT;
            t11 = t11 + u11 * LO_WEIGHT;
        }
        // Two factors: 2^-(ea + eb) alone may leave f32's range.
        let ua = ldexp(1.0, -ea);
        let ub = ldexp(1.0, -eb);
        c00 = c00 + (t00 * ua) * ub;
        c01 = c01 + (t01 * ua) * ub;
        c10 = c10 + (t10 * ua) * ub;
        c11 = c11 + (t11 * ua) * ub;
        workgroupBarrier();
        parity = 1u - parity;
    }
    coopStoreT(c00, &stage[sr * BN + sc], BN);
    coopStoreT(c01, &stage[sr * BN + sc + 16u], BN);
    coopStoreT(c10, &stage[(sr + 16u) * BN + sc], BN);
    coopStoreT(c11, &stage[(sr + 16u) * BN + sc + 16u], BN);
    workgroupBarrier();
    for (var e = li; e < BM * BN; e += THREADS) {
        let m = m0 + e / BN;
        let n = n0 + e % BN;
        if (m < M && n < N) {
            store_c(z, split, m, n, stage[e]);
        }
    }
}
