// Large-tile GEMM skeleton for GPUs, completing the same op files as gemm_tiled.wgsl
// (gemm_m/n/k, gemm_k_splits, load_a, load_b, store_c, split_k_range). A workgroup is
// 16×16 threads owning a BM×BN tile of C (BM = 16·TM, BN = 16·TN: 128×128, 128×64 or
// 64×128), each thread a TM×TN register block (8×8, 8×4 or 4×8). Per k a thread reads
// TM/4 + TN/4 vec4s of workgroup memory for TM·TN FMAs (4 FMAs per scalar loaded at
// 8×8, where the tiled skeleton's 4×4 block does 2). A thread's rows are TM/4 groups
// of four, WG_Y·4 rows apart (columns likewise), so neighbouring threads read
// neighbouring vec4s. Each K tile (BK = 16 or 32) is loaded from global memory into
// registers while the previous one is multiplied, then stored to workgroup memory:
// two barriers per K tile. Rows of the staged tiles may be padded by one vec4 (PAD4).
// Workgroups whose tile lies inside M and N skip every bounds check but K's; the
// workgroup order is swizzled in bands of GROUP_M tile rows so that consecutive
// workgroups share rows of A and columns of B in L2.
//
// Every output is one fma chain over ascending K from 0 (split-K ranges as the op
// defines them), exactly as in gemm_tiled.wgsl, so the results are the fallback's bit
// for bit; zero padding past K adds exact zeros.

override TM: u32 = 8u;
override TN: u32 = 8u;
override BK: u32 = 16u;
override PAD4: u32 = 1u;
override GROUP_M: u32 = 8u;
const WG: u32 = 16u;
const THREADS: u32 = 256u;
override BM: u32 = WG * TM;
override BN: u32 = WG * TN;
// vec4s per staged k row, padding included.
override ROW_A4: u32 = BM / 4u + PAD4;
override ROW_B4: u32 = BN / 4u + PAD4;
override TILE_A4: u32 = BK * ROW_A4;
override TILE_B4: u32 = BK * ROW_B4;
// Elements of each operand tile one thread stages per K tile (at most 16).
override LOADS_A: u32 = BK * BM / THREADS;
override LOADS_B: u32 = BK * BN / THREADS;

// [BK][BM] and [BK][BN] as vec4s of four consecutive rows (columns).
var<workgroup> tile_a: array<vec4<f32>, TILE_A4>;
var<workgroup> tile_b: array<vec4<f32>, TILE_B4>;

// Element e of the A tile at K offset k0 (consecutive threads walk K, contiguous in
// weight rows), unchecked where the whole tile lies inside the problem (`full`).
fn stage_a(z: u32, m0: u32, k0: u32, M: u32, K: u32, full: bool, e: u32) -> f32 {
    let ak = e % BK;
    let am = e / BK;
    if (full || (m0 + am < M && k0 + ak < K)) {
        return load_a(z, m0 + am, k0 + ak);
    }
    return 0.0;
}

// Element e of the B tile at K offset k0 (consecutive threads walk N).
fn stage_b(z: u32, n0: u32, k0: u32, N: u32, K: u32, full: bool, e: u32) -> f32 {
    let bn = e % BN;
    let bk = e / BN;
    if (full || (n0 + bn < N && k0 + bk < K)) {
        return load_b(z, k0 + bk, n0 + bn);
    }
    return 0.0;
}

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let splits = gemm_k_splits();
    let z = wg.z / splits;
    let split = wg.z % splits;
    // Bands of GROUP_M tile rows, walked column by column.
    let pid = wg.y * groups.x + wg.x;
    let band = GROUP_M * groups.x;
    let first_row = (pid / band) * GROUP_M;
    let rows_in_band = min(groups.y - first_row, GROUP_M);
    let tile_m = first_row + (pid % band) % rows_in_band;
    let tile_n = (pid % band) / rows_in_band;
    let m0 = tile_m * BM;
    let n0 = tile_n * BN;
    let M = gemm_m();
    let N = gemm_n();
    let k_range = split_k_range(split);
    let k_lo = k_range.x;
    let K = k_range.y;
    let inside = m0 + BM <= M && n0 + BN <= N;

    var acc: array<vec4<f32>, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    var next_a: array<f32, 16>;
    var next_b: array<f32, 16>;

    // The first K tile into registers.
    var k0 = k_lo;
    let full0 = inside && k0 + BK <= K;
    for (var t = 0u; t < LOADS_A; t++) {
        next_a[t] = stage_a(z, m0, k0, M, K, full0, li + t * THREADS);
    }
    for (var t = 0u; t < LOADS_B; t++) {
        next_b[t] = stage_b(z, n0, k0, N, K, full0, li + t * THREADS);
    }

    for (; k0 < K; k0 += BK) {
        for (var t = 0u; t < LOADS_A; t++) {
            let e = li + t * THREADS;
            let ak = e % BK;
            let am = e / BK;
            tile_a[ak * ROW_A4 + am / 4u][am % 4u] = next_a[t];
        }
        for (var t = 0u; t < LOADS_B; t++) {
            let e = li + t * THREADS;
            let bn = e % BN;
            let bk = e / BN;
            tile_b[bk * ROW_B4 + bn / 4u][bn % 4u] = next_b[t];
        }
        workgroupBarrier();
        // The next K tile into registers while this one is multiplied.
        let k1 = k0 + BK;
        if (k1 < K) {
            let full = inside && k1 + BK <= K;
            for (var t = 0u; t < LOADS_A; t++) {
                next_a[t] = stage_a(z, m0, k1, M, K, full, li + t * THREADS);
            }
            for (var t = 0u; t < LOADS_B; t++) {
                next_b[t] = stage_b(z, n0, k1, N, K, full, li + t * THREADS);
            }
        }
        for (var kk = 0u; kk < BK; kk++) {
            var a: array<vec4<f32>, 2>;
            var b: array<vec4<f32>, 2>;
            for (var h = 0u; h < TM / 4u; h++) {
                a[h] = tile_a[kk * ROW_A4 + h * WG + lid.y];
            }
            for (var g = 0u; g < TN / 4u; g++) {
                b[g] = tile_b[kk * ROW_B4 + g * WG + lid.x];
            }
            for (var h = 0u; h < TM / 4u; h++) {
                for (var r = 0u; r < 4u; r++) {
                    for (var g = 0u; g < TN / 4u; g++) {
                        let i = (h * 4u + r) * 2u + g;
                        acc[i] = fma(vec4<f32>(a[h][r]), b[g], acc[i]);
                    }
                }
            }
        }
        workgroupBarrier();
    }

    for (var h = 0u; h < TM / 4u; h++) {
        for (var r = 0u; r < 4u; r++) {
            let m = m0 + (h * WG + lid.y) * 4u + r;
            for (var g = 0u; g < TN / 4u; g++) {
                let v = acc[(h * 4u + r) * 2u + g];
                let n = n0 + (g * WG + lid.x) * 4u;
                for (var c = 0u; c < 4u; c++) {
                    if (inside || (m < M && n + c < N)) {
                        store_c(z, split, m, n + c, v[c]);
                    }
                }
            }
        }
    }
}
