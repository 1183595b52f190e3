// Direct GEMM skeleton for CPU-class devices (lavapipe, SwiftShader): no workgroup
// memory and no barriers. It is appended to an op file like gemm_tiled.wgsl and uses
// the op's split form of the loads: `k_tap(z, k)` (what column k of A and row k of B
// address, the same for every row and column), `column(z, n)` (what column n of B
// needs for every k) and `load_a_at(z, m, tap)`, `load_b_at(z, tap, column)`, so the
// index arithmetic of a column is done once, not once per k.
// A workgroup is LANES invocations along N; all of them work on the same ROWS rows of
// C, so each k's A values are the same in every lane (uniform loads, which a SIMD CPU
// compiler issues once for all lanes) while each lane loads its own COLS values of B
// (LANES apart, so neighbouring lanes read neighbouring columns). Each element of C
// is summed in ascending K order with one fma per k, with split-K chunks aligned as in
// gemm_tiled.wgsl, so both skeletons give the same results.

override LANES: u32 = 8u;
// Rows of C per workgroup: 4 or 8 (one vec4 accumulator each, four columns). The rows
// are written out one by one below rather than as an array indexed in a loop, because
// a dynamically indexed private array becomes per-lane scratch memory on a SIMD CPU
// compiler instead of registers.
override ROWS: u32 = 8u;

// Stores one row of a lane's block: columns n, n + LANES, n + 2·LANES, n + 3·LANES.
fn store_row(z: u32, split: u32, m: u32, n: u32, M: u32, N: u32, v: vec4<f32>) {
    if (m >= M) {
        return;
    }
    if (n < N) {
        store_c(z, split, m, n, v.x);
    }
    if (n + LANES < N) {
        store_c(z, split, m, n + LANES, v.y);
    }
    if (n + 2u * LANES < N) {
        store_c(z, split, m, n + 2u * LANES, v.z);
    }
    if (n + 3u * LANES < N) {
        store_c(z, split, m, n + 3u * LANES, v.w);
    }
}

fn load_b_or_zero(z: u32, kt: KTap, col: Column, n: u32, N: u32) -> f32 {
    if (n < N) {
        return load_b_at(z, kt, col);
    }
    return 0.0;
}

@compute @workgroup_size(LANES, 1, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let splits = gemm_k_splits();
    let z = wg.z / splits;
    let split = wg.z % splits;
    let M = gemm_m();
    let N = gemm_n();
    let k_range = split_k_range(split);
    let k_lo = k_range.x;
    let K = k_range.y;
    let m0 = wg.y * ROWS;
    let n0 = wg.x * (4u * LANES) + lid.x;
    // Columns past N index column N − 1 (never stored), so every column is valid.
    let c0 = column(z, min(n0, N - 1u));
    let c1 = column(z, min(n0 + LANES, N - 1u));
    let c2 = column(z, min(n0 + 2u * LANES, N - 1u));
    let c3 = column(z, min(n0 + 3u * LANES, N - 1u));
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    for (var k = k_lo; k < K; k++) {
        let kt = k_tap(z, k);
        let b = vec4<f32>(
            load_b_or_zero(z, kt, c0, n0, N),
            load_b_or_zero(z, kt, c1, n0 + LANES, N),
            load_b_or_zero(z, kt, c2, n0 + 2u * LANES, N),
            load_b_or_zero(z, kt, c3, n0 + 3u * LANES, N),
        );
        if (m0 < M) {
            acc0 = fma(vec4<f32>(load_a_at(z, m0, kt)), b, acc0);
        }
        if (ROWS > 1u && m0 + 1u < M) {
            acc1 = fma(vec4<f32>(load_a_at(z, m0 + 1u, kt)), b, acc1);
        }
        if (ROWS > 2u && m0 + 2u < M) {
            acc2 = fma(vec4<f32>(load_a_at(z, m0 + 2u, kt)), b, acc2);
        }
        if (ROWS > 3u && m0 + 3u < M) {
            acc3 = fma(vec4<f32>(load_a_at(z, m0 + 3u, kt)), b, acc3);
        }
        if (ROWS > 4u && m0 + 4u < M) {
            acc4 = fma(vec4<f32>(load_a_at(z, m0 + 4u, kt)), b, acc4);
        }
        if (ROWS > 5u && m0 + 5u < M) {
            acc5 = fma(vec4<f32>(load_a_at(z, m0 + 5u, kt)), b, acc5);
        }
        if (ROWS > 6u && m0 + 6u < M) {
            acc6 = fma(vec4<f32>(load_a_at(z, m0 + 6u, kt)), b, acc6);
        }
        if (ROWS > 7u && m0 + 7u < M) {
            acc7 = fma(vec4<f32>(load_a_at(z, m0 + 7u, kt)), b, acc7);
        }
    }
    store_row(z, split, m0, n0, M, N, acc0);
    if (ROWS > 1u) {
        store_row(z, split, m0 + 1u, n0, M, N, acc1);
    }
    if (ROWS > 2u) {
        store_row(z, split, m0 + 2u, n0, M, N, acc2);
    }
    if (ROWS > 3u) {
        store_row(z, split, m0 + 3u, n0, M, N, acc3);
    }
    if (ROWS > 4u) {
        store_row(z, split, m0 + 4u, n0, M, N, acc4);
    }
    if (ROWS > 5u) {
        store_row(z, split, m0 + 5u, n0, M, N, acc5);
    }
    if (ROWS > 6u) {
        store_row(z, split, m0 + 6u, n0, M, N, acc6);
    }
    if (ROWS > 7u) {
        store_row(z, split, m0 + 7u, n0, M, N, acc7);
    }
}
