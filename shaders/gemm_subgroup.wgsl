// Subgroup GEMM skeleton for CPU-class devices with 8-wide subgroups (lavapipe): one
// workgroup is one subgroup of 8 lanes and computes a 32×32 block of C, each lane 32
// rows × 4 consecutive columns. It reads the operands gemm_pack.wgsl wrote (A as
// [MP][KP], B as [KP][NP], per problem) with vec4 loads:
//   B: each lane loads the vec4 of its 4 columns for one k;
//   A: each lane loads 4 consecutive k of one row (lane i: rows i, i + 8, i + 16,
//      i + 24), and subgroupBroadcast hands every row's value to all lanes.
// With PACKED_A false, A is not packed: each lane calls the op's `load_a` for its rows
// (four loads where the packed form has one vec4), which is cheaper when N fits in one
// or two blocks, since packing costs those same loads plus a store and a reload.
// On a SIMD CPU compiler every load inside a loop costs about as much as a loop over
// the lanes, while a broadcast is a register shuffle, so this does 4 k × 32 rows × 4
// columns of fma per 8 vec4 loads. The rows are written out (not loops) because the
// compiler does not unroll loops and a dynamically indexed private array lives in
// memory rather than in registers.
// Each element of C is summed in ascending K order with one fma per k, with split-K
// chunks aligned as in gemm_tiled.wgsl, so both skeletons give the same results.


override PACKED_A: bool = true;

@group(0) @binding(6) var<storage, read> packed_a: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> packed_b: array<vec4<f32>>;

fn a_or_zero(z: u32, m: u32, k: u32) -> f32 {
    if (m < gemm_m() && k < gemm_k()) {
        return load_a(z, m, k);
    }
    return 0.0;
}

// A at rows `m` (this lane's), k = 4·k4 .. 4·k4 + 3: one vec4 of the packed operand
// (`packed` indexes it), or four `load_a` calls.
fn a4(z: u32, packed: u32, m: u32, k4: u32) -> vec4<f32> {
    if (PACKED_A) {
        return packed_a[packed];
    }
    let k = 4u * k4;
    return vec4<f32>(a_or_zero(z, m, k), a_or_zero(z, m, k + 1u), a_or_zero(z, m, k + 2u), a_or_zero(z, m, k + 3u));
}

// acc[r] += broadcast of lane r's `a` × b, for the 8 rows one A load covers.
fn rank1(a: f32, b: vec4<f32>, acc: ptr<function, array<vec4<f32>, 8>>) {
    (*acc)[0] = fma(vec4<f32>(subgroupBroadcast(a, 0u)), b, (*acc)[0]);
    (*acc)[1] = fma(vec4<f32>(subgroupBroadcast(a, 1u)), b, (*acc)[1]);
    (*acc)[2] = fma(vec4<f32>(subgroupBroadcast(a, 2u)), b, (*acc)[2]);
    (*acc)[3] = fma(vec4<f32>(subgroupBroadcast(a, 3u)), b, (*acc)[3]);
    (*acc)[4] = fma(vec4<f32>(subgroupBroadcast(a, 4u)), b, (*acc)[4]);
    (*acc)[5] = fma(vec4<f32>(subgroupBroadcast(a, 5u)), b, (*acc)[5]);
    (*acc)[6] = fma(vec4<f32>(subgroupBroadcast(a, 6u)), b, (*acc)[6]);
    (*acc)[7] = fma(vec4<f32>(subgroupBroadcast(a, 7u)), b, (*acc)[7]);
}

// Four k steps (a.x .. a.w against b0 .. b3), in ascending k.
fn rank4(a: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>,
         acc: ptr<function, array<vec4<f32>, 8>>) {
    rank1(a.x, b0, acc);
    rank1(a.y, b1, acc);
    rank1(a.z, b2, acc);
    rank1(a.w, b3, acc);
}

// Stores rows m0 .. m0 + 7 of a lane's block (columns n .. n + 3).
fn store_rows(z: u32, split: u32, m0: u32, n: u32, acc: ptr<function, array<vec4<f32>, 8>>) {
    let M = gemm_m();
    let N = gemm_n();
    for (var r = 0u; r < 8u; r++) {
        let m = m0 + r;
        if (m >= M) {
            return;
        }
        let v = (*acc)[r];
        for (var c = 0u; c < 4u; c++) {
            if (n + c < N) {
                store_c(z, split, m, n + c, v[c]);
            }
        }
    }
}

@compute @workgroup_size(8, 1, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let splits = gemm_k_splits();
    let z = wg.z / splits;
    let split = wg.z % splits;
    let k_range = split_k_range(split);
    let k_lo = k_range.x;
    let K = k_range.y;
    // Packed sizes (gemm_pack.wgsl), in vec4s per row.
    let kp4 = (gemm_k() + 3u) / 4u;
    let mp = (gemm_m() + 31u) / 32u * 32u;
    let np4 = (gemm_n() + 31u) / 32u * 8u;
    let m0 = wg.y * 32u;
    let n4 = wg.x * 8u + lane;
    let a_row = (z * mp + m0 + lane) * kp4;
    let a_step = 8u * kp4;
    let b_col = z * kp4 * 4u * np4 + n4;
    var acc0: array<vec4<f32>, 8>;
    var acc1: array<vec4<f32>, 8>;
    var acc2: array<vec4<f32>, 8>;
    var acc3: array<vec4<f32>, 8>;
    for (var k4 = k_lo / 4u; k4 < (K + 3u) / 4u; k4++) {
        let b = b_col + 4u * k4 * np4;
        let b0 = packed_b[b];
        let b1 = packed_b[b + np4];
        let b2 = packed_b[b + 2u * np4];
        let b3 = packed_b[b + 3u * np4];
        let m = m0 + lane;
        rank4(a4(z, a_row + k4, m, k4), b0, b1, b2, b3, &acc0);
        rank4(a4(z, a_row + a_step + k4, m + 8u, k4), b0, b1, b2, b3, &acc1);
        rank4(a4(z, a_row + 2u * a_step + k4, m + 16u, k4), b0, b1, b2, b3, &acc2);
        rank4(a4(z, a_row + 3u * a_step + k4, m + 24u, k4), b0, b1, b2, b3, &acc3);
    }
    let n = 4u * n4;
    store_rows(z, split, m0, n, &acc0);
    store_rows(z, split, m0 + 8u, n, &acc1);
    store_rows(z, split, m0 + 16u, n, &acc2);
    store_rows(z, split, m0 + 24u, n, &acc3);
}
