// Packing pass of the subgroup GEMM (gemm_subgroup.wgsl), appended to an op file like
// gemm_tiled.wgsl: it evaluates the op's `load_a` or `load_b` once per element and
// writes the operand as a plain matrix, so the GEMM's inner loop reads whole vec4s
// instead of recomputing convolution indices per element. Per problem z:
//   A (PACK_B false): [MP][KP], row-major, rows padded to a multiple of 32, K to 4;
//   B (PACK_B true):  [KP][NP], row-major, columns padded to a multiple of 32.
// Padding is zero, so padded k steps add fma(0, 0, acc) = acc, exactly as the tiled
// skeleton's zero-filled tiles do. Each invocation writes one vec4 (four consecutive
// elements of the contiguous axis); the grid is (vec4s of a row / 64, at least the
// rows, problems).

override PACK_B: bool = false;

@group(0) @binding(6) var<storage, read_write> packed: array<vec4<f32>>;


@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let kp = (gemm_k() + 3u) / 4u * 4u;
    var rows = (gemm_m() + 31u) / 32u * 32u;
    var cols = kp;
    if (PACK_B) {
        rows = kp;
        cols = (gemm_n() + 31u) / 32u * 32u;
    }
    let c4 = gid.x;
    if (c4 * 4u >= cols || gid.y >= rows) {
        return;
    }
    let z = gid.z;
    let row = gid.y;
    let col = 4u * c4;
    packed[(z * rows + row) * (cols / 4u) + c4] = vec4<f32>(
        padded_operand(z, row, col, PACK_B),
        padded_operand(z, row, col + 1u, PACK_B),
        padded_operand(z, row, col + 2u, PACK_B),
        padded_operand(z, row, col + 3u, PACK_B),
    );
}
