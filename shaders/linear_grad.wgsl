// Gradient of a fully connected layer w.r.t. its input, for one row-chunk of the
// weight (weights larger than a storage binding are split by rows):
//   g_in[r, j] = Σ_i W[i, j] · g[r, row_offset + i].
// Each thread owns one input feature j of one row r and walks the weight rows in
// order. At small batch that is too few threads for a large GPU, so the rows are also
// split into groups of `rows_per_split` (the dispatch's z axis): group s writes its
// partial sum to slot split_base + s of [R, splits_total, in], and the slots are summed
// in order afterwards (elementwise SPLIT_SUM), so the result is deterministic.

// POS_WEIGHTS: back through pos(W) instead (LRP-α1β0); NEG_WEIGHTS: through min(W, 0).

override POS_WEIGHTS: bool = false;
override NEG_WEIGHTS: bool = false;

struct Params {
    in_features: u32,
    out_features: u32,
    row_offset: u32,
    rows: u32,
    rows_per_split: u32,
    split_base: u32,
    splits_total: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> g: array<g_t>;
@group(0) @binding(1) var<storage, read> w: array<weight_t>;
@group(0) @binding(2) var<storage, read_write> g_in: array<g_in_t>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let r = gid.y;
    let split = gid.z;
    if (j >= p.in_features) {
        return;
    }
    let lo = split * p.rows_per_split;
    let hi = min(p.rows, lo + p.rows_per_split);
    var s = 0.0;
    for (var i = lo; i < hi; i++) {
        var wv = f32(w[i * p.in_features + j]);
        if (POS_WEIGHTS) {
            wv = max(wv, 0.0);
        }
        if (NEG_WEIGHTS) {
            wv = min(wv, 0.0);
        }
        s = fma(wv, f32(g[r * p.out_features + p.row_offset + i]), s);
    }
    g_in[(r * p.splits_total + p.split_base + split) * p.in_features + j] = g_in_t(s);
}
