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
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }
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
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                a[i] = tile_a[kk * BM + lid.y + i * 16u];
                b[i] = tile_b[kk * BN + lid.x + i * 16u];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] = fma(a[i], b[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            let m = m0 + lid.y + i * 16u;
            let n = n0 + lid.x + j * 16u;
            if (m < M && n < N) {
                store_c(z, split, m, n, acc[i * 4u + j]);
            }
        }
    }
}
