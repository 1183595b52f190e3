// Shared by every GEMM op file (prepended after the op's own common part): the split
// of K, and the operands as padded matrices. The op file defines gemm_m/n/k(),
// gemm_k_splits() and load_a/load_b.

// Split-K: split `split` of gemm_k_splits() sums K in [lo, hi): chunks of ⌈K / splits⌉
// rounded up to SPLIT_ALIGN (the tiled skeleton's K tile), the same in every GEMM
// skeleton, so all of them sum each output over the same ranges in the same order.
const SPLIT_ALIGN: u32 = 16u;

fn split_k_range(split: u32) -> vec2<u32> {
    let k_total = gemm_k();
    let splits = gemm_k_splits();
    let chunk = ((k_total + splits - 1u) / splits + SPLIT_ALIGN - 1u) / SPLIT_ALIGN * SPLIT_ALIGN;
    let lo = split * chunk;
    return vec2<u32>(lo, min(k_total, lo + chunk));
}

// Element (row, col) of the op's A (or B, with `of_b`) as a padded matrix: zero past M,
// N or K (the pack skeletons' padding).
fn padded_operand(z: u32, row: u32, col: u32, of_b: bool) -> f32 {
    if (of_b) {
        if (row >= gemm_k() || col >= gemm_n()) {
            return 0.0;
        }
        return load_b(z, row, col);
    }
    if (row >= gemm_m() || col >= gemm_k()) {
        return 0.0;
    }
    return load_a(z, row, col);
}
