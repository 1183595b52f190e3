// Gradient of a fully connected layer w.r.t. its input, for one row-chunk of the
// weight (weights larger than a storage binding are split by rows), as a GEMM op
// completed by any GEMM skeleton:
//   C[m, n] = Σ_k W[k, m] · g[n, row_offset + k]
// with M the input features, N the gradient rows and K the chunk's weight rows. At
// small batch that is a long K over few outputs, so K is split (`k_splits`, in
// split_k_range's order): split s of the chunk writes its partial sum to slot
// split_base + s of [R, splits_total, in], and the slots are summed in order afterwards
// (elementwise SPLIT_SUM), so the result is deterministic.

// POS_WEIGHTS: back through pos(W) instead (LRP-α1β0); NEG_WEIGHTS: through min(W, 0).

override POS_WEIGHTS: bool = false;
override NEG_WEIGHTS: bool = false;

struct LinearGradParams {
    in_features: u32,
    out_features: u32,
    row_offset: u32,
    rows: u32,
    grad_rows: u32,
    k_splits: u32,
    split_base: u32,
    splits_total: u32,
}

@group(0) @binding(0) var<storage, read> g: array<g_t>;
@group(0) @binding(1) var<storage, read> w: array<weight_t>;
@group(0) @binding(2) var<storage, read> unused_a: array<unused_a_t>;
@group(0) @binding(3) var<storage, read> unused_b: array<unused_b_t>;
@group(0) @binding(4) var<storage, read_write> g_in: array<g_in_t>;
@group(0) @binding(5) var<uniform> p: LinearGradParams;

fn gemm_m() -> u32 {
    return p.in_features;
}

fn gemm_n() -> u32 {
    return p.grad_rows;
}

fn gemm_k() -> u32 {
    return p.rows;
}

fn gemm_k_splits() -> u32 {
    return max(p.k_splits, 1u);
}

// The direct skeleton's split loads: nothing to hoist but the indices.
struct KTap {
    k: u32,
}

struct Column {
    n: u32,
}

fn k_tap(z: u32, k: u32) -> KTap {
    return KTap(k);
}

fn column(z: u32, n: u32) -> Column {
    return Column(n);
}

fn load_a_at(z: u32, m: u32, kt: KTap) -> f32 {
    let v = f32(w[kt.k * p.in_features + m]);
    if (POS_WEIGHTS) {
        return max(v, 0.0);
    }
    if (NEG_WEIGHTS) {
        return min(v, 0.0);
    }
    return v;
}

fn load_b_at(z: u32, kt: KTap, col: Column) -> f32 {
    return f32(g[col.n * p.out_features + p.row_offset + kt.k]);
}

fn load_a(z: u32, m: u32, k: u32) -> f32 {
    return load_a_at(z, m, KTap(k));
}

fn load_b(z: u32, k: u32, n: u32) -> f32 {
    return load_b_at(z, KTap(k), Column(n));
}

fn store_c(z: u32, split: u32, m: u32, n: u32, acc: f32) {
    g_in[(n * p.splits_total + p.split_base + split) * p.in_features + m] = g_in_t(acc);
}
