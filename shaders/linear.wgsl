// Fully connected layer over one row-chunk of the weight (weights larger than a storage
// binding are split by rows): out[n, row_offset + i] = Σ_j W[i, j] · x[n, j] + b.
// One workgroup per (output row, image); a fixed-order tree sum keeps it deterministic.

// POS_WEIGHTS: x pos(W)^T without bias, the z⁺ of LRP-α1β0; NEG_WEIGHTS: x min(W, 0)^T
// without bias (RAP).

override RELU: bool = false;
override POS_WEIGHTS: bool = false;
override NEG_WEIGHTS: bool = false;

struct Params {
    in_features: u32,
    out_features: u32,
    row_offset: u32,
    rows: u32,
}

@group(0) @binding(0) var<storage, read> x: array<x_t>;
@group(0) @binding(1) var<storage, read> w: array<weight_t>;
@group(0) @binding(2) var<storage, read> bias: array<bias_t>;
@group(0) @binding(3) var<storage, read_write> out: array<out_t>;
@group(0) @binding(4) var<uniform> p: Params;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = wg.x;
    let n = wg.y;
    var s = 0.0;
    for (var j = lid; j < p.in_features; j += 256u) {
        var wv = f32(w[i * p.in_features + j]);
        if (POS_WEIGHTS) {
            wv = max(wv, 0.0);
        }
        if (NEG_WEIGHTS) {
            wv = min(wv, 0.0);
        }
        s = fma(wv, f32(x[n * p.in_features + j]), s);
    }
    partial[lid] = s;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let row = p.row_offset + i;
        var v = partial[0];
        if (!POS_WEIGHTS && !NEG_WEIGHTS) {
            v += f32(bias[row]);
        }
        if (RELU) {
            v = max(v, 0.0);
        }
        out[n * p.out_features + row] = out_t(v);
    }
}
