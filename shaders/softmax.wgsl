// Row-wise softmax (numerically stable), one workgroup per row.

struct Params {
    classes: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<logits_t>;
@group(0) @binding(1) var<storage, read_write> probs: array<probs_t>;
@group(0) @binding(2) var<uniform> p: Params;

var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let base = wg.x * p.classes;
    var m = -3.4e38;
    for (var i = lid; i < p.classes; i += 256u) {
        m = max(m, f32(logits[base + i]));
    }
    red[lid] = m;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] = max(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    let row_max = red[0];
    workgroupBarrier();
    var total = 0.0;
    for (var i = lid; i < p.classes; i += 256u) {
        total += exp(f32(logits[base + i]) - row_max);
    }
    red[lid] = total;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let z = red[0];
    for (var i = lid; i < p.classes; i += 256u) {
        probs[base + i] = probs_t(exp(f32(logits[base + i]) - row_max) / z);
    }
}
