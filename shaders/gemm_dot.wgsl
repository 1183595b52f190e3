// Dot-product GEMM skeleton for problems with few columns of C (the fully connected
// layers at small batch, where every tile of the other skeletons is mostly padding):
// one invocation per output C[m, n], 64 invocations along M per workgroup, each
// summing its K range in ascending order with one fma per k from zero, as every exact
// skeleton does, so it gives their bits. Loads go through the op's split form
// (`k_tap`, `column`, `load_a_at`, `load_b_at`), so a column's index arithmetic is done
// once. Fast where A's rows are contiguous along M for neighbouring invocations (a
// transposed weight, as in the linear gradient).

@compute @workgroup_size(64, 1, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let splits = gemm_k_splits();
    let z = wg.z / splits;
    let split = wg.z % splits;
    let m = wg.y * 64u + lid.x;
    let n = wg.x;
    if (m >= gemm_m() || n >= gemm_n()) {
        return;
    }
    let k_range = split_k_range(split);
    let col = column(z, n);
    var acc = 0.0;
    for (var k = k_range.x; k < k_range.y; k++) {
        let kt = k_tap(z, k);
        acc = fma(load_a_at(z, m, kt), load_b_at(z, kt, col), acc);
    }
    store_c(z, split, m, n, acc);
}
