// Tree-reduction GEMM skeleton for problems with few columns of C and a long K (the
// fully connected layers at small batch): one workgroup of 256 invocations per output
// C[m, n]. Invocation i sums k = lo + i, lo + i + 256, … of the K range (neighbouring
// invocations read neighbouring k, contiguous in a weight row), then the 256 partial
// sums are added by a fixed-order tree in workgroup memory: deterministic, but not the
// ascending-K order of the exact skeletons, so accepted within a tolerance.

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let splits = gemm_k_splits();
    let z = wg.z / splits;
    let split = wg.z % splits;
    let m = wg.y;
    let n = wg.x;
    // The grid is exactly M × N (one workgroup per output), so every invocation of a
    // workgroup reaches the barriers below.
    let k_range = split_k_range(split);
    var s = 0.0;
    for (var k = k_range.x + li; k < k_range.y; k += 256u) {
        s = fma(load_a(z, m, k), load_b(z, k, n), s);
    }
    partial[li] = s;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (li < stride) {
            partial[li] += partial[li + stride];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        store_c(z, split, m, n, partial[0]);
    }
}
