// Tiled GEMM skeleton shared by the convolution kernels (forward, data gradient,
// weight gradient). It is appended to an op file that defines the problem:
//   fn gemm_m() -> u32, fn gemm_n() -> u32, fn gemm_k() -> u32, fn gemm_k_splits() -> u32
//   fn load_a(z: u32, m: u32, k: u32) -> f32     A is M×K
//   fn load_b(z: u32, k: u32, n: u32) -> f32     B is K×N
//   fn store_c(z: u32, split: u32, m: u32, n: u32, acc: f32)
// so convolutions run as implicit GEMMs (no im2col buffer). A workgroup of WG_X × WG_Y
// threads owns a (4·WG_Y)×(4·WG_X) tile of C, each thread a 4×4 register block whose
// rows are WG_Y apart and columns WG_X apart; A and B are staged through workgroup
// memory 16 columns of K at a time. The tile shape is a pipeline constant chosen per
// problem shape on the host (`ops::conv::GemmTile`): 64×64 for large problems, 16- or
// 32-row tiles when M is that small (the first layer's z^B data gradient has M = 9),
// 32×32 when 64×64 tiles would leave a large GPU idle (late layers at batch 1).
// Split-K: the dispatch's z axis holds problems × splits, and split s sums its own
// contiguous range of K (the op stores a partial per split, summed afterwards in split
// order). Every sum runs in ascending K order, so results are deterministic and the
// same for every tile shape.

override WG_X: u32 = 16u;
override WG_Y: u32 = 16u;
const BK: u32 = 16u;
override BM: u32 = 4u * WG_Y;
override BN: u32 = 4u * WG_X;
override TILE_A: u32 = BK * BM;
override TILE_B: u32 = BK * BN;

var<workgroup> tile_a: array<f32, TILE_A>; // [BK][BM]
var<workgroup> tile_b: array<f32, TILE_B>; // [BK][BN]

// Stores one row of a thread's register block: columns n, n+WG_X, n+2·WG_X, n+3·WG_X.
fn store_row(z: u32, split: u32, m: u32, n: u32, M: u32, N: u32, v: vec4<f32>) {
    if (m >= M) {
        return;
    }
    if (n < N) {
        store_c(z, split, m, n, v.x);
    }
    if (n + WG_X < N) {
        store_c(z, split, m, n + WG_X, v.y);
    }
    if (n + 2u * WG_X < N) {
        store_c(z, split, m, n + 2u * WG_X, v.z);
    }
    if (n + 3u * WG_X < N) {
        store_c(z, split, m, n + 3u * WG_X, v.w);
    }
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let threads = WG_X * WG_Y;
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
        // A: consecutive threads walk K (contiguous in weight rows).
        for (var e = li; e < TILE_A; e += threads) {
            let ak = e % BK;
            let am = e / BK;
            var va = 0.0;
            if (m0 + am < M && k0 + ak < K) {
                va = load_a(z, m0 + am, k0 + ak);
            }
            tile_a[ak * BM + am] = va;
        }
        // B: consecutive threads walk N (contiguous output pixels).
        for (var e = li; e < TILE_B; e += threads) {
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
            let a = vec4<f32>(tile_a[ia], tile_a[ia + WG_Y], tile_a[ia + 2u * WG_Y], tile_a[ia + 3u * WG_Y]);
            let b = vec4<f32>(tile_b[ib], tile_b[ib + WG_X], tile_b[ib + 2u * WG_X], tile_b[ib + 3u * WG_X]);
            acc0 = fma(vec4<f32>(a.x), b, acc0);
            acc1 = fma(vec4<f32>(a.y), b, acc1);
            acc2 = fma(vec4<f32>(a.z), b, acc2);
            acc3 = fma(vec4<f32>(a.w), b, acc3);
        }
        workgroupBarrier();
    }
    store_row(z, split, m0 + lid.y, n0 + lid.x, M, N, acc0);
    store_row(z, split, m0 + lid.y + WG_Y, n0 + lid.x, M, N, acc1);
    store_row(z, split, m0 + lid.y + 2u * WG_Y, n0 + lid.x, M, N, acc2);
    store_row(z, split, m0 + lid.y + 3u * WG_Y, n0 + lid.x, M, N, acc3);
}
