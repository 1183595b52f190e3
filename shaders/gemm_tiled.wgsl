// Tiled GEMM skeleton shared by the convolution kernels (forward, data gradient,
// weight gradient). It is appended to an op file that defines the problem:
//   fn gemm_m() -> u32, fn gemm_n() -> u32, fn gemm_k() -> u32, fn gemm_k_splits() -> u32
//   fn load_a(z: u32, m: u32, k: u32) -> f32     A is M×K
//   fn load_b(z: u32, k: u32, n: u32) -> f32     B is K×N
//   fn store_c(z: u32, split: u32, m: u32, n: u32, acc: f32)
// so convolutions run as implicit GEMMs (no im2col buffer). A workgroup of WG_X × WG_Y
// threads owns a (4·WG_Y)×(4·WG_X) tile of C, each thread a 4×4 register block of 4
// consecutive rows and 4 consecutive columns; A and B are staged through workgroup
// memory 16 columns of K at a time, stored as vec4s of consecutive rows (columns), so
// each k costs a thread two vector loads for 16 FMAs (rows WG_Y apart would need
// eight scalar loads). The tile shape is a pipeline constant chosen per problem on the
// host (`ops::conv::GemmTile`): 16, 32 or 64 rows × 16, 32 or 64 columns, the fewest
// that hold M and N, and 32×32 where 64×64 tiles would leave a large GPU idle.
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
override TILE_A4: u32 = TILE_A / 4u;
override TILE_B4: u32 = TILE_B / 4u;

// [BK][BM] and [BK][BN], four consecutive rows (columns) per vec4, so a thread reads
// its 4 rows of A and 4 columns of B for one k with two vector loads.
var<workgroup> tile_a: array<vec4<f32>, TILE_A4>;
var<workgroup> tile_b: array<vec4<f32>, TILE_B4>;

// Stores one row of a thread's register block: columns n .. n+3.
fn store_row(z: u32, split: u32, m: u32, n: u32, M: u32, N: u32, v: vec4<f32>) {
    if (m >= M) {
        return;
    }
    if (n < N) {
        store_c(z, split, m, n, v.x);
    }
    if (n + 1u < N) {
        store_c(z, split, m, n + 1u, v.y);
    }
    if (n + 2u < N) {
        store_c(z, split, m, n + 2u, v.z);
    }
    if (n + 3u < N) {
        store_c(z, split, m, n + 3u, v.w);
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
    let k_range = split_k_range(split);
    let k_lo = k_range.x;
    let K = k_range.y;
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
            let ia = ak * BM + am;
            tile_a[ia / 4u][ia % 4u] = va;
        }
        // B: consecutive threads walk N (contiguous output pixels).
        for (var e = li; e < TILE_B; e += threads) {
            let bn = e % BN;
            let bk = e / BN;
            var vb = 0.0;
            if (n0 + bn < N && k0 + bk < K) {
                vb = load_b(z, k0 + bk, n0 + bn);
            }
            let ib = bk * BN + bn;
            tile_b[ib / 4u][ib % 4u] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let a = tile_a[kk * WG_Y + lid.y];
            let b = tile_b[kk * WG_X + lid.x];
            acc0 = fma(vec4<f32>(a.x), b, acc0);
            acc1 = fma(vec4<f32>(a.y), b, acc1);
            acc2 = fma(vec4<f32>(a.z), b, acc2);
            acc3 = fma(vec4<f32>(a.w), b, acc3);
        }
        workgroupBarrier();
    }
    let m = m0 + 4u * lid.y;
    let n = n0 + 4u * lid.x;
    store_row(z, split, m, n, M, N, acc0);
    store_row(z, split, m + 1u, n, M, N, acc1);
    store_row(z, split, m + 2u, n, M, N, acc2);
    store_row(z, split, m + 3u, n, M, N, acc3);
}
