// Tiled GEMM skeleton shared by the convolution kernels (forward, data gradient,
// weight gradient). It is appended to an op file that defines the problem:
//   fn gemm_m() -> u32, fn gemm_n() -> u32, fn gemm_k() -> u32, fn gemm_k_splits() -> u32
//   fn load_a(z: u32, m: u32, k: u32) -> f32     A is M×K
//   fn load_b(z: u32, k: u32, n: u32) -> f32     B is K×N
//   fn store_c(z: u32, split: u32, m: u32, n: u32, acc: f32)
// so convolutions run as implicit GEMMs (no im2col buffer). Each 16×16 workgroup owns a
// 64×64 tile of C, each thread a 4×4 register block; A and B are staged through
// workgroup memory 16 columns of K at a time. Split-K: the dispatch's z axis holds
// problems × splits, and split s sums its own contiguous range of K (the op stores a
// partial per split, summed afterwards in split order). Every sum runs in ascending K
// order, so results are deterministic.

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;

var<workgroup> tile_a: array<f32, 1024>; // [BK][BM]
var<workgroup> tile_b: array<f32, 1024>; // [BK][BN]

// Stores one row of a thread's register block: columns n, n+16, n+32, n+48.
fn store_row(z: u32, split: u32, m: u32, n: u32, M: u32, N: u32, v: vec4<f32>) {
    if (m >= M) {
        return;
    }
    if (n < N) {
        store_c(z, split, m, n, v.x);
    }
    if (n + 16u < N) {
        store_c(z, split, m, n + 16u, v.y);
    }
    if (n + 32u < N) {
        store_c(z, split, m, n + 32u, v.z);
    }
    if (n + 48u < N) {
        store_c(z, split, m, n + 48u, v.w);
    }
}

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let splits = gemm_k_splits();
    let z = wg.z / splits;
    let split = wg.z % splits;
    let m0 = wg.y * BM;
    let n0 = wg.x * BN;
    let M = gemm_m();
    let N = gemm_n();
    let k_total = gemm_k();
    let chunk = ((k_total + splits - 1u) / splits + BK - 1u) / BK * BK;
    let k_lo = split * chunk;
    let K = min(k_total, k_lo + chunk);
    // The 4×4 register block lives in four vec4s (not an indexed array), so it stays in
    // registers: row i of the block is acc_i, column j is component j.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = k_lo; k0 < K; k0 += BK) {
        for (var t = 0u; t < 4u; t++) {
            let e = li + t * 256u;
            // A: consecutive threads walk K (contiguous in weight rows).
            let ak = e % BK;
            let am = e / BK;
            var va = 0.0;
            if (m0 + am < M && k0 + ak < K) {
                va = load_a(z, m0 + am, k0 + ak);
            }
            tile_a[ak * BM + am] = va;
            // B: consecutive threads walk N (contiguous output pixels).
            let bn = e % BN;
            let bk = e / BN;
            var vb = 0.0;
            if (n0 + bn < N && k0 + bk < K) {
                vb = load_b(z, k0 + bk, n0 + bn);
            }
            tile_b[bk * BN + bn] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let ia = kk * BM + lid.y;
            let ib = kk * BN + lid.x;
            let a = vec4<f32>(tile_a[ia], tile_a[ia + 16u], tile_a[ia + 32u], tile_a[ia + 48u]);
            let b = vec4<f32>(tile_b[ib], tile_b[ib + 16u], tile_b[ib + 32u], tile_b[ib + 48u]);
            acc0 = fma(vec4<f32>(a.x), b, acc0);
            acc1 = fma(vec4<f32>(a.y), b, acc1);
            acc2 = fma(vec4<f32>(a.z), b, acc2);
            acc3 = fma(vec4<f32>(a.w), b, acc3);
        }
        workgroupBarrier();
    }
    store_row(z, split, m0 + lid.y, n0 + lid.x, M, N, acc0);
    store_row(z, split, m0 + lid.y + 16u, n0 + lid.x, M, N, acc1);
    store_row(z, split, m0 + lid.y + 32u, n0 + lid.x, M, N, acc2);
    store_row(z, split, m0 + lid.y + 48u, n0 + lid.x, M, N, acc3);
}
