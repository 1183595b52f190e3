// Gradient of a fully connected layer w.r.t. its input, for one row-chunk of the
// weight: g_in[r, j] (+)= Σ_i W[i, j] · g[r, row_offset + i]. Chunks are applied one
// after another (ACCUMULATE for all but the first), so the sum order is fixed.

// POS_WEIGHTS: back through pos(W) instead (LRP-α1β0); NEG_WEIGHTS: through min(W, 0).

override ACCUMULATE: bool = false;
override POS_WEIGHTS: bool = false;
override NEG_WEIGHTS: bool = false;

struct Params {
    in_features: u32,
    out_features: u32,
    row_offset: u32,
    rows: u32,
}

@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> g_in: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let r = gid.y;
    if (j >= p.in_features) {
        return;
    }
    var s = 0.0;
    for (var i = 0u; i < p.rows; i++) {
        var wv = w[i * p.in_features + j];
        if (POS_WEIGHTS) {
            wv = max(wv, 0.0);
        }
        if (NEG_WEIGHTS) {
            wv = min(wv, 0.0);
        }
        s = fma(wv, g[r * p.out_features + p.row_offset + i], s);
    }
    let dst = r * p.in_features + j;
    if (ACCUMULATE) {
        s += g_in[dst];
    }
    g_in[dst] = s;
}
